//! `import`: a root filesystem tarball (plain, gzip, zstd, bzip2 or xz) becomes a one-layer image.
//!
//! The tarball is read once: it is decompressed and its plain bytes go straight into the
//! content store's ingester, which hashes them and commits them atomically. The layer is
//! kept as a plain tar, as docker and podman keep an imported layer: its digest is its diff
//! ID, and it is marked to be gzip-compressed at its first push, like a committed layer
//! (see `Engine::distributable`), so an import costs no compression. Nothing is buffered, so
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
use stencil_cow_fs::compression::{decompress, detect_input};
use stencil_layerstore::ImageRecord;
use stencil_layerstore::image::media_type::OCI_LAYER;
use stencil_reference::{Digest, Reference};

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
        let (kind, peeked) =
            detect_input(tarball).with_context(|| format!("cannot read {source}"))?;
        let plain = decompress(kind, peeked).with_context(|| format!("cannot read {source}"))?;
        let mut checked = TarCheck {
            inner: plain,
            first_block: Vec::with_capacity(TAR_BLOCK),
            not_tar: false,
            read_error: None,
        };
        let (blob_digest, blob_size) = match self.store.ingest(&mut checked, None) {
            Ok(stored) => stored,
            Err(_) if checked.not_tar => bail!(
                "cannot import {source}: it is not a tar archive (plain, gzip, zstd, bzip2 or xz); give a root filesystem tarball"
            ),
            Err(_) if checked.read_error.is_some() => bail!(
                "cannot import {source}: it is truncated or corrupt ({})",
                checked.read_error.as_deref().unwrap_or_default()
            ),
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!("cannot import {source}")));
            }
        };

        // A plain tar: the blob is the diff.
        let layer = NewLayer {
            diff_id: blob_digest.clone(),
            blob_digest,
            size: blob_size,
            media_type: OCI_LAYER,
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

/// Refuses a stream whose first block is not a tar header before anything is committed.
struct TarCheck<R> {
    inner: R,
    first_block: Vec<u8>,
    /// Set when the first block was refused, so the caller can say so plainly.
    not_tar: bool,
    /// The source's own read error (a truncated gzip stream), kept for the message.
    read_error: Option<String>,
}

impl<R: Read> Read for TarCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
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
