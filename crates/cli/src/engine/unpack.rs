//! Unpacking layers into snapshots, once per chain ID, with the diff ID verified.
//!
//! A layer blob is decompressed on a helper thread that hashes the plain tar as it passes
//! and hands it to `apply_layer` through a pipe; the snapshot is committed under its chain
//! ID only when the hash equals the diff ID the image config promised. A layer whose
//! snapshot already exists costs nothing, whichever image brought it.

use std::io::{Read, Write};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};
use stencil_cow_fs::compression::{decompress, detect};
use stencil_cow_fs::{
    ApplyOptions, ErrorKind as SnapshotErrorKind, Kind, Snapshotter, apply_layer,
};
use stencil_layerstore::content::{Digester, Provider};
use stencil_layerstore::{ImageRecord, LayerRecord};
use stencil_reference::Digest;

use super::{Engine, PullEvent};

/// Read size between the decompressor and the pipe.
const CHUNK: usize = 256 * 1024;

impl Engine {
    /// Unpacks every layer of `image` that is not unpacked yet, bottom first; returns
    /// whether any layer needed work.
    pub fn unpack_image(
        &self,
        image: &ImageRecord,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<bool> {
        let mut unpacked_any = false;
        let mut parent: Option<&Digest> = None;
        for layer in &image.layers {
            if !self.has_snapshot(&layer.chain_id) {
                progress(PullEvent::Extracting {
                    digest: layer.blob_digest.clone(),
                });
            }
            let extracted = self.unpack_layer(layer, parent)?;
            unpacked_any |= extracted;
            progress(PullEvent::Extracted {
                digest: layer.blob_digest.clone(),
                existed: !extracted,
            });
            parent = Some(&layer.chain_id);
        }
        Ok(unpacked_any)
    }

    /// Whether the snapshot of `chain_id` is committed.
    pub fn has_snapshot(&self, chain_id: &Digest) -> bool {
        self.snapshots
            .stat(chain_id.as_str())
            .is_ok_and(|info| info.kind == Kind::Committed)
    }

    /// Makes sure `layer` is unpacked into the committed snapshot named by its chain ID on
    /// top of `parent` (the previous layer's chain ID). Returns `false` when it already was.
    pub(crate) fn unpack_layer(
        &self,
        layer: &LayerRecord,
        parent: Option<&Digest>,
    ) -> Result<bool> {
        let name = layer.chain_id.as_str();
        if self.has_snapshot(&layer.chain_id) {
            self.record_snapshot(&layer.chain_id)?;
            return Ok(false);
        }
        let key = format!(
            "extract-{}-{}",
            std::process::id(),
            &layer.chain_id.hex()[..16]
        );
        // A key left by a crashed run of this same process id is stale: start afresh.
        let _ = self.snapshots.remove(&key);
        self.snapshots
            .prepare(&key, parent.map(Digest::as_str))
            .with_context(|| {
                format!("cannot prepare a snapshot for layer {}", layer.blob_digest)
            })?;
        let result = self.apply_verified(layer, &key);
        let committed = result.and_then(|()| match self.snapshots.commit(name, &key) {
            Ok(()) => Ok(()),
            // Another process unpacked the same layer meanwhile: theirs is as good.
            Err(e) if e.kind() == SnapshotErrorKind::AlreadyExists => {
                Err(anyhow!("already unpacked by another process"))
            }
            Err(e) => Err(e.into()),
        });
        if let Err(error) = committed {
            let _ = self.snapshots.remove(&key);
            if self.has_snapshot(&layer.chain_id) {
                self.record_snapshot(&layer.chain_id)?;
                return Ok(false);
            }
            return Err(error);
        }
        self.record_snapshot(&layer.chain_id)?;
        Ok(true)
    }

    /// Records the committed snapshot of `chain_id` in the metadata database, with the
    /// snapshotter's directory id.
    pub(crate) fn record_snapshot(&self, chain_id: &Digest) -> Result<()> {
        let id = self
            .snapshots
            .stat(chain_id.as_str())
            .ok()
            .map(|info| info.id);
        self.store
            .record_snapshot(chain_id, chain_id.as_str(), id)?;
        Ok(())
    }

    fn apply_verified(&self, layer: &LayerRecord, key: &str) -> Result<()> {
        let target = self.snapshots.layer_target(key)?;
        let blob = self
            .content
            .open(&layer.blob_digest)
            .with_context(|| format!("layer {} is not in the store", layer.blob_digest))?;
        let Some(digester) = Digester::new(layer.diff_id.algorithm()) else {
            bail!(
                "cannot verify diff id {}: unsupported algorithm",
                layer.diff_id
            );
        };
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let hasher = thread::spawn(move || hash_plain_stream(blob, writer, digester));
        let options = ApplyOptions::default()
            .whiteouts(target.whiteouts)
            .parents(target.parents.clone());
        let mut reader = reader;
        let applied = apply_layer(&mut reader, &target.dir, &options);
        // Read what the tar parser left (end-of-archive padding) so the hash covers it all;
        // after a failure, closing the pipe stops the decompression instead.
        let drained = match &applied {
            Ok(_) => std::io::copy(&mut reader, &mut std::io::sink()),
            Err(_) => Ok(0),
        };
        drop(reader);
        let hashed = hasher
            .join()
            .map_err(|_| anyhow!("the decompression thread panicked"))?;
        applied.with_context(|| format!("cannot unpack layer {}", layer.blob_digest))?;
        drained.with_context(|| format!("cannot read layer {}", layer.blob_digest))?;
        let actual =
            hashed.with_context(|| format!("cannot decompress layer {}", layer.blob_digest))?;
        if actual != layer.diff_id {
            bail!(
                "layer {} is corrupt: its content hashes to {actual}, but the image config expects diff id {} (remove the image and pull it again)",
                layer.blob_digest,
                layer.diff_id
            );
        }
        Ok(())
    }
}

/// Decompresses `blob`, hashing the plain stream and writing it to `out`.
fn hash_plain_stream(
    blob: impl Read,
    mut out: std::io::PipeWriter,
    mut digester: Digester,
) -> Result<Digest> {
    let (kind, peeked) = detect(blob)?;
    let mut plain = decompress(kind, peeked)?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match plain.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        digester.update(&buffer[..n]);
        // A closed pipe means the applier stopped early; its error is the one reported.
        if out.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    Ok(digester.finish())
}
