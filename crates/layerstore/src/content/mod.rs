//! The content store: immutable blobs addressed by digest, written through verified ingests.
//!
//! The roles follow containerd's content store:
//!
//! - [`Provider`] reads a committed blob by digest ([`Provider::open`], [`Provider::info`]);
//! - [`Ingester`] hands out a [`ContentWriter`] keyed by an *ingest ref* (any caller-chosen
//!   string, for example `pull-docker.io/library/ubuntu@sha256:…`); the writer streams and
//!   hashes bytes, can be dropped and reopened to resume, and
//!   [`ContentWriter::commit`] verifies size and digest before the blob appears atomically;
//! - [`Manager`] lists ([`Manager::walk`]) and deletes blobs.
//!
//! [`LocalContent`] is the implementation on a local directory. It does not know about
//! images, manifests or the database: deciding which blobs are still needed is the job of
//! [`crate::Store`]'s garbage collection. [`testsuite`] holds the conformance checks that
//! every implementation of these traits must pass.
//!
//! ```
//! use std::io::{Read, Write};
//! use stencil_layerstore::content::{ContentWriter, Ingester, LocalContent, Provider, sha256_digest};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let content = LocalContent::open(dir.path()).unwrap();
//! let bytes = b"hello, layers";
//! let digest = sha256_digest(bytes);
//!
//! let mut writer = content.writer("example").unwrap();
//! writer.write_all(bytes).unwrap();
//! assert_eq!(writer.offset(), bytes.len() as u64);
//! writer.commit(bytes.len() as u64, &digest).unwrap();
//!
//! let mut read = String::new();
//! content.open(&digest).unwrap().read_to_string(&mut read).unwrap();
//! assert_eq!(read.as_bytes(), bytes);
//! assert_eq!(content.info(&digest).unwrap().size, bytes.len() as u64);
//! ```

mod digester;
mod ingest;
mod local;
pub mod testsuite;

use std::io::{Read, Seek, Write};
use std::time::SystemTime;

use stencil_reference::Digest;

use crate::error::Result;

pub use digester::{Digester, digest_reader, sha256_digest};
pub(crate) use ingest::remove_unheld as remove_unheld_ingest;
pub use ingest::{IngestStatus, LocalWriter};
pub use local::LocalContent;
pub(crate) use local::sync_dir as sync_directory;

/// What the store knows about one committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was committed (the file's modification time).
    pub committed_at: SystemTime,
}

/// Reads committed blobs.
pub trait Provider {
    /// A reader over one blob's bytes.
    type Reader: Read + Seek;

    /// Opens the blob `digest` for reading; [`crate::ErrorKind::BlobNotFound`] when absent.
    fn open(&self, digest: &Digest) -> Result<Self::Reader>;

    /// Size and commit time of the blob `digest`; [`crate::ErrorKind::BlobNotFound`] when
    /// absent.
    fn info(&self, digest: &Digest) -> Result<Info>;

    /// Whether the blob `digest` is committed.
    fn contains(&self, digest: &Digest) -> Result<bool> {
        match self.info(digest) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == crate::ErrorKind::BlobNotFound => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// Hands out writers keyed by an ingest ref.
///
/// Only one writer may hold a ref at a time, across threads and processes: a second
/// [`Ingester::writer`] call fails at once with [`crate::ErrorKind::InUse`] (it does not
/// wait), so bytes of two writers are never interleaved.
pub trait Ingester {
    /// The writer type.
    type Writer: ContentWriter;

    /// Opens the ingest `ingest_ref`, creating it or resuming it after the bytes already
    /// written (which are re-hashed, not trusted); see [`ContentWriter::offset`].
    fn writer(&self, ingest_ref: &str) -> Result<Self::Writer>;

    /// Removes the ingest `ingest_ref` and its bytes. Fails with
    /// [`crate::ErrorKind::InUse`] while a writer holds it; succeeds when it does not exist.
    fn abort(&self, ingest_ref: &str) -> Result<()>;

    /// The ingests present on disk, held or not.
    fn ingests(&self) -> Result<Vec<IngestStatus>>;
}

/// A writer into one ingest: bytes are hashed as they pass and land on disk.
pub trait ContentWriter: Write {
    /// The number of bytes written so far, including bytes from before a resume: the
    /// position to resume a download from (an HTTP `Range: bytes=OFFSET-` request).
    fn offset(&self) -> u64;

    /// The digest of the bytes written so far (sha256).
    fn digest(&self) -> Digest;

    /// Discards the bytes from `size` on and continues writing there (for a server that
    /// ignores a range request, `truncate(0)`). The remaining prefix is re-hashed.
    fn truncate(&mut self, size: u64) -> Result<()>;

    /// Makes the blob durable and visible as `expected`: flushes and fsyncs the data, checks
    /// that `size` bytes were written and that they hash to `expected` (sha256 or sha512),
    /// renames the file into place atomically and fsyncs the directory. On a mismatch
    /// ([`crate::ErrorKind::SizeMismatch`], [`crate::ErrorKind::DigestMismatch`]) nothing is
    /// committed and the ingest is removed. Committing a blob that already exists succeeds
    /// once the new bytes are verified.
    fn commit(self, size: u64, expected: &Digest) -> Result<()>;

    /// Removes this ingest and its bytes.
    fn abort(self) -> Result<()>;
}

/// Lists and deletes committed blobs.
pub trait Manager {
    /// Calls `visit` with every committed blob, in no particular order; stops at the first
    /// error `visit` returns.
    fn walk(&self, visit: &mut dyn FnMut(Info) -> Result<()>) -> Result<()>;

    /// Deletes the blob `digest`; [`crate::ErrorKind::BlobNotFound`] when absent.
    fn delete(&self, digest: &Digest) -> Result<()>;
}
