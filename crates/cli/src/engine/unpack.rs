//! Unpacking layers into snapshots, once per chain ID, with the diff ID verified.
//!
//! [`unpack_stream`] is the one way a layer becomes files: a decompressor thread, a hasher
//! thread that hashes the plain tar and passes it on, and `apply_layer` on the caller's
//! thread; the snapshot is committed under its chain ID only when the hash equals the diff
//! ID the image config promised. Pulls feed it from the network while the blob downloads
//! (the `pipeline` module); `load` and layers already in the store feed it from the blob.
//! A layer whose snapshot already exists costs nothing, whichever image brought it.
//!
//! ```text
//! compressed ──► inflate ──► hash (diff ID) ──► apply_layer ──► snapshot dir
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use stencil_cow_fs::compression::{decompress, detect};
use stencil_cow_fs::{
    ApplyOptions, ErrorKind as SnapshotErrorKind, Kind, LayerTarget, Snapshotter,
    apply_layer_tracked,
};
use stencil_layerstore::content::{Digester, Provider};
use stencil_layerstore::{ImageRecord, LayerRecord};
use stencil_reference::Digest;

use super::{Engine, PullEvent};

/// Bytes per piece of the plain stream.
const CHUNK: usize = 256 * 1024;
/// Pieces in flight between two threads of one layer's unpack.
const IN_FLIGHT: usize = 4;

impl Engine {
    /// Unpacks every layer of `image` that is not unpacked yet, bottom first; returns
    /// whether any layer needed work.
    pub fn unpack_image(
        &self,
        image: &ImageRecord,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<bool> {
        self.unpack_layers(&image.layers, None, progress)
    }

    /// Unpacks `layers` (a stack's upper part, bottom first) on top of the committed
    /// snapshot `parent`, one after the other; returns whether any layer needed work.
    pub(crate) fn unpack_layers(
        &self,
        layers: &[LayerRecord],
        parent: Option<&Digest>,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<bool> {
        let mut unpacked_any = false;
        let mut parent = parent;
        for layer in layers {
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
        let unpacked = unpack_stream(blob, &target, &layer.blob_digest, &layer.diff_id)?;
        self.store
            .set_uncompressed_size(&layer.diff_id, unpacked.size)?;
        Ok(())
    }
}

/// One piece of a byte stream handed between threads.
pub(crate) enum Piece {
    /// The next bytes.
    Bytes(Bytes),
    /// The stream is complete.
    End,
}

/// Reads a stream of [`Piece`]s; a sender gone before [`Piece::End`] is an error, so a cut
/// stream never looks like a short one.
pub(crate) struct PieceReader {
    receiver: Receiver<Piece>,
    current: Bytes,
    ended: bool,
}

impl PieceReader {
    pub(crate) fn new(receiver: Receiver<Piece>) -> PieceReader {
        PieceReader {
            receiver,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Piece::Bytes(bytes)) => self.current = bytes,
                Ok(Piece::End) => self.ended = true,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the layer stream stopped before its end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Unpacks the compressed layer `compressed` into `target`, checking that the plain tar
/// hashes to `diff_id`; returns the directories the layer implied without listing them
/// (see [`stencil_cow_fs::settle_implied_dirs`]).
///
/// Three threads share the work, so that on two cores inflating, hashing (sha256 is slow
/// without SHA extensions) and writing files overlap: a decompressor, a hasher that
/// forwards what it hashed, and the caller's thread applying the tar. Memory stays a few
/// chunks per layer.
/// What [`unpack_stream`] did.
pub(crate) struct Unpacked {
    /// Directories the layer implied without listing them (see `settle_implied_dirs`).
    pub implied_dirs: Vec<PathBuf>,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

pub(crate) fn unpack_stream(
    compressed: impl Read + Send,
    target: &LayerTarget,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<Unpacked> {
    let Some(mut digester) = Digester::new(diff_id.algorithm()) else {
        bail!("cannot verify diff id {diff_id}: unsupported algorithm");
    };
    let options = ApplyOptions::default()
        .whiteouts(target.whiteouts)
        .parents(target.parents.clone());
    let (applied, drained, inflated, hashed) = thread::scope(|scope| {
        let (plain_sender, plain_receiver) = sync_channel::<Piece>(IN_FLIGHT);
        let (hashed_sender, hashed_receiver) = sync_channel::<Piece>(IN_FLIGHT);
        let inflater = scope.spawn(move || inflate(compressed, plain_sender));
        let hasher = scope.spawn(move || {
            let mut size = 0u64;
            for piece in plain_receiver {
                if let Piece::Bytes(bytes) = &piece {
                    digester.update(bytes);
                    size += bytes.len() as u64;
                }
                // A closed channel means the applier stopped; its error is the one reported.
                if hashed_sender.send(piece).is_err() {
                    break;
                }
            }
            (digester.finish(), size)
        });
        let mut reader = PieceReader::new(hashed_receiver);
        let applied = apply_layer_tracked(&mut reader, &target.dir, &options);
        // Read what the tar parser left (end-of-archive padding) so the hash covers it all;
        // after a failure, closing the channel stops the decompression instead.
        let drained = match &applied {
            Ok(_) => std::io::copy(&mut reader, &mut std::io::sink()).map(|_| ()),
            Err(_) => Ok(()),
        };
        drop(reader);
        let hashed = hasher.join();
        let inflated = inflater.join();
        (applied, drained, inflated, hashed)
    });
    let inflated = inflated.map_err(|_| anyhow!("the decompression thread panicked"))?;
    let (hashed, size) = hashed.map_err(|_| anyhow!("the hashing thread panicked"))?;
    // The decompressor's own error (a truncated or corrupt stream) explains an apply
    // failure better than the tar parser's view of the missing bytes.
    inflated.with_context(|| format!("cannot decompress layer {blob}"))?;
    let applied = applied.with_context(|| format!("cannot unpack layer {blob}"))?;
    drained.with_context(|| format!("cannot read layer {blob}"))?;
    if &hashed != diff_id {
        bail!(
            "layer {blob} is corrupt: its content hashes to {hashed}, but the image config expects diff id {diff_id} (remove the image and pull it again)"
        );
    }
    // On disk before the snapshot can be committed; layers unpacking in parallel each
    // sync on their own thread, overlapping the others' work.
    stencil_cow_fs::sync_filesystem(&target.dir)
        .with_context(|| format!("cannot write layer {blob} to disk"))?;
    Ok(Unpacked {
        implied_dirs: applied.implied_dirs,
        size,
    })
}

/// Decompresses `compressed` into pieces sent to `out`, ending with [`Piece::End`].
fn inflate(compressed: impl Read, out: SyncSender<Piece>) -> Result<()> {
    let (kind, peeked) = detect(compressed)?;
    let mut plain = decompress(kind, peeked)?;
    loop {
        let mut chunk = BytesMut::zeroed(CHUNK);
        let mut filled = 0;
        while filled < CHUNK {
            match plain.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            // A closed channel means the consumers stopped early; their error is reported.
            let _ = out.send(Piece::End);
            return Ok(());
        }
        chunk.truncate(filled);
        if out.send(Piece::Bytes(chunk.freeze())).is_err() {
            return Ok(());
        }
    }
}
