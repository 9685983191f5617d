//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image.
//!
//! The tarball is read once: it is decompressed, its plain bytes are hashed (the diff ID)
//! and gzip-compressed straight into the content store's ingester, which hashes the
//! compressed bytes (the blob digest) and commits them atomically. Nothing is buffered, so
//! memory does not grow with the tarball. The config and manifest are written next, the
//! image is recorded in one transaction, and its layer is unpacked; if unpacking fails the
//! image is removed again, so bad input never leaves a half image behind.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::engine::{Engine, ImportOptions};
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let mut tarball = std::fs::File::open("rootfs.tar.gz")?;
//! let options = ImportOptions { changes: vec!["CMD [\"/bin/sh\"]".into()], ..ImportOptions::default() };
//! let image = engine.import(&mut tarball, &options)?;
//! println!("{}", image.config_digest);
//! # Ok(()) }
//! ```

use std::io::Read;

use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use serde_json::Map;
use stencil_cow_fs::compression::{decompress, detect};
use stencil_layerstore::ImageRecord;
use stencil_layerstore::content::Digester;
use stencil_layerstore::image::media_type::OCI_LAYER_GZIP;
use stencil_reference::{Algorithm, Digest, Reference};

use super::Engine;
use super::changes::apply_change;
use super::commit::{CommitOptions, HistoryEntry, NewLayer};

/// A tar archive is a sequence of 512-byte blocks; the first one is checked before
/// anything is stored.
const TAR_BLOCK: usize = 512;

/// Choices for [`Engine::import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dockerfile-style changes (`CMD …`, `ENV …`), applied in order.
    pub changes: Vec<String>,
    /// The history comment (`-m`).
    pub message: Option<String>,
    /// The name to tag the image with.
    pub reference: Option<Reference>,
    /// Where the tarball comes from, for the default history comment and for errors.
    pub source: String,
}

impl Engine {
    /// Imports the rootfs tarball read from `tarball` as a one-layer image, unpacks it and
    /// tags it when `options.reference` is given.
    pub fn import(&self, tarball: &mut dyn Read, options: &ImportOptions) -> Result<ImageRecord> {
        // Changes are checked before any byte is stored.
        let mut container_config = Map::new();
        for change in &options.changes {
            apply_change(&mut container_config, change)?;
        }
        if let Some(reference) = &options.reference
            && reference.digest().is_some()
        {
            bail!(
                "cannot import as {}: a digest cannot be chosen, give NAME[:TAG]",
                reference.familiar()
            );
        }
        let source = &options.source;
        let (kind, peeked) = detect(tarball).with_context(|| format!("cannot read {source}"))?;
        let plain = decompress(kind, peeked).with_context(|| format!("cannot read {source}"))?;
        let Some(digester) = Digester::new(Algorithm::Sha256) else {
            bail!("sha256 is not available to hash the layer");
        };
        let hashed = PlainTarHasher {
            inner: plain,
            digester,
            size: 0,
            first_block: Vec::with_capacity(TAR_BLOCK),
            not_tar: false,
            read_error: None,
        };
        let mut gzip = flate2::read::GzEncoder::new(hashed, flate2::Compression::default());
        let (blob_digest, blob_size) = match self.store.ingest(&mut gzip, None) {
            Ok(stored) => stored,
            Err(_) if gzip.get_ref().not_tar => bail!(
                "cannot import {source}: it is not a tar archive (plain, gzip or zstd); give a root filesystem tarball"
            ),
            Err(_) if gzip.get_ref().read_error.is_some() => bail!(
                "cannot import {source}: it is truncated or corrupt ({})",
                gzip.get_ref().read_error.as_deref().unwrap_or_default()
            ),
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!("cannot import {source}")));
            }
        };
        let hashed = gzip.into_inner();
        let diff_id = hashed.digester.finish();

        let layer = NewLayer {
            blob_digest,
            size: blob_size,
            diff_id,
            media_type: OCI_LAYER_GZIP,
        };
        let history = HistoryEntry {
            created: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            created_by: Some("stencil import"),
            author: None,
            comment: options.message.as_deref(),
        };
        let commit_options = CommitOptions {
            config: Some(container_config),
            ..CommitOptions::default()
        };
        let manifest_digest = self.image_manifest(None, Some(&layer), &commit_options, &history)?;
        let existed = self.store.image(&manifest_digest).is_ok();
        let image = self
            .store
            .record_image(&manifest_digest, None)
            .with_context(|| format!("cannot record the image imported from {source}"))?;
        if let Err(error) = self.unpack_image(&image, &|_| {}) {
            if !existed {
                self.discard_image(&manifest_digest);
            }
            return Err(error.context(format!("cannot import {source}")));
        }
        if let Some(reference) = &options.reference {
            self.store
                .tag(reference, &image.manifest_digest)
                .with_context(|| format!("cannot tag the imported image as {reference}"))?;
        }
        Ok(image)
    }

    /// Removes an image recorded by a failed import, pull or load, with its blobs.
    pub(crate) fn discard_image(&self, manifest_digest: &Digest) {
        let removed = Reference::parse("untagged")
            .map(|r| r.with_digest(manifest_digest.clone()))
            .map_err(anyhow::Error::from)
            .and_then(|r| self.store.remove_image(&r).map_err(anyhow::Error::from));
        if let Err(error) = removed {
            tracing::warn!(%manifest_digest, "could not remove the failed import: {error:#}");
        }
    }
}

/// Hashes the plain tar stream as the gzip encoder pulls it, and refuses a stream whose
/// first block is not a tar header before anything is committed.
struct PlainTarHasher<R> {
    inner: R,
    digester: Digester,
    size: u64,
    first_block: Vec<u8>,
    /// Set when the first block was refused, so the caller can say so plainly.
    not_tar: bool,
    /// The source's own read error (a truncated gzip stream), kept for the message.
    read_error: Option<String>,
}

impl<R: Read> Read for PlainTarHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Fill the whole buffer: the compressor then sees the same chunks whatever the
        // source's own read sizes, so the same tar always gives the same layer blob.
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(read) => n += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.read_error = Some(error.to_string());
                    return Err(error);
                }
            }
        }
        let checking = self.first_block.len() < TAR_BLOCK;
        if checking {
            let wanted = (TAR_BLOCK - self.first_block.len()).min(n);
            self.first_block.extend_from_slice(&buf[..wanted]);
            let complete = self.first_block.len() == TAR_BLOCK;
            if (complete || n == 0) && !is_tar_header(&self.first_block) {
                self.not_tar = true;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a tar archive",
                ));
            }
        }
        self.digester.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Whether `block` is a whole tar header block with a valid checksum, or the all-zero
/// block that ends an (empty) archive.
pub(crate) fn is_tar_header(block: &[u8]) -> bool {
    if block.len() != TAR_BLOCK {
        return false;
    }
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let text = text.trim_start_matches(' ');
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut entry = tar::Header::new_ustar();
        entry.set_size(0);
        entry.set_mode(0o644);
        entry.set_cksum();
        builder
            .append_data(&mut entry, name, &b""[..])
            .unwrap_or_else(|e| panic!("{e}"));
        builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_tar_headers_pass_the_first_block_check() {
        let good = header("etc/motd");
        assert!(is_tar_header(&good[..TAR_BLOCK]));
        assert!(is_tar_header(&[0u8; TAR_BLOCK]));
        let mut corrupt = good[..TAR_BLOCK].to_vec();
        corrupt[0] ^= 1;
        assert!(!is_tar_header(&corrupt));
        assert!(!is_tar_header(&[b'x'; TAR_BLOCK]));
        assert!(!is_tar_header(b"short"));
    }
}
