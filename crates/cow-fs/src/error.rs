//! The crate's one error type, [`Error`], and its coarse classification, [`ErrorKind`].
//!
//! Every variant carries the object at fault (a path inside the target, a tar entry name, a
//! snapshot key) so that a message read on its own says what went wrong and where. Callers
//! branch on [`Error::kind`], never on message text.
//!
//! ```
//! use stencil_cow_fs::{Error, ErrorKind};
//! let error = Error::InvalidWhiteout { entry: "a/.wh..".into() };
//! assert_eq!(error.kind(), ErrorKind::InvalidWhiteout);
//! assert!(error.to_string().contains("a/.wh.."));
//! ```

use std::io;
use std::path::PathBuf;

/// What went wrong, without the details; stable for callers to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A filesystem or stream operation failed.
    Io,
    /// The tar stream is malformed.
    CorruptArchive,
    /// The stream's compression is recognised but not supported.
    UnsupportedCompression,
    /// A tar entry type stencil does not apply.
    UnsupportedEntry,
    /// An entry or link name is not usable (empty, NUL, names the root).
    InvalidPath,
    /// A whiteout entry names nothing valid (`.wh.`, `.wh..`, `.wh...`).
    InvalidWhiteout,
    /// A configured cap (entries, bytes, path length) was exceeded.
    LimitExceeded,
    /// An owner id has no entry in the configured id mapping.
    UnmappedId,
    /// A snapshot key or name is not usable (empty, too long, holds NUL).
    InvalidKey,
    /// The snapshot key or name is not known.
    NotFound,
    /// The snapshot key or name is already taken.
    AlreadyExists,
    /// The snapshot is of the wrong kind for the operation (e.g. committing a view).
    InvalidState,
    /// The snapshot still has children and cannot be removed.
    InUse,
    /// A mount or unmount failed.
    Mount,
    /// The kernel lacks a feature this crate needs (openat2, overlayfs).
    Unsupported,
}

/// Errors of the cow-fs crate; see [`ErrorKind`] for the classification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on `path` (relative to the target root when inside one) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. "create file".
        op: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read or parsed as tar.
    #[error("corrupt layer archive near entry {entry:?}: {source}")]
    CorruptArchive {
        /// The last entry name read, or empty at the start.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The stream is compressed with an algorithm this crate does not decode.
    #[error("unsupported layer compression {algorithm} (use gzip, zstd or none)")]
    UnsupportedCompression {
        /// The detected algorithm.
        algorithm: &'static str,
    },
    /// The entry's tar type is not one stencil applies.
    #[error("unsupported tar entry type {kind:?} for {entry:?}")]
    UnsupportedEntry {
        /// The entry name.
        entry: String,
        /// The raw type byte.
        kind: u8,
    },
    /// The entry (or its link target) has a name that cannot be applied.
    #[error("invalid entry name {entry:?}: {reason}")]
    InvalidPath {
        /// The entry name.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A whiteout entry names nothing that can be deleted.
    #[error("invalid whiteout entry {entry:?}")]
    InvalidWhiteout {
        /// The entry name.
        entry: String,
    },
    /// A configured limit was exceeded while reading entry `entry`.
    #[error("layer exceeds the {limit} limit of {max} at entry {entry:?}")]
    LimitExceeded {
        /// Which limit ("entry count", "total bytes", "path length").
        limit: &'static str,
        /// The configured maximum.
        max: u64,
        /// The entry being read.
        entry: String,
    },
    /// The id mapping has no range holding `id`.
    #[error("{which} {id} of entry {entry:?} is not in the id mapping")]
    UnmappedId {
        /// "uid" or "gid".
        which: &'static str,
        /// The id in the layer.
        id: u64,
        /// The entry name.
        entry: String,
    },
    /// A snapshot key or name that cannot be stored.
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No snapshot has this key or name.
    #[error("snapshot {key:?} not found")]
    NotFound {
        /// The key or name asked for.
        key: String,
    },
    /// A snapshot already has this key or name.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key or name asked for.
        key: String,
    },
    /// The snapshot is not of the kind the operation needs.
    #[error("snapshot {key:?} is {actual}, but {operation} needs {expected}")]
    InvalidState {
        /// The key or name.
        key: String,
        /// The operation attempted.
        operation: &'static str,
        /// The kind the operation needs.
        expected: &'static str,
        /// The kind the snapshot has.
        actual: &'static str,
    },
    /// The snapshot has children.
    #[error("snapshot {key:?} is the parent of {children} snapshot(s); remove them first")]
    InUse {
        /// The key or name.
        key: String,
        /// How many children it has.
        children: usize,
    },
    /// Performing or undoing a mount failed.
    #[error("{op} {kind} on {}: {source}", target.display())]
    Mount {
        /// "mount" or "unmount".
        op: &'static str,
        /// The mount type ("overlay", "bind").
        kind: String,
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A kernel feature is missing.
    #[error("{feature} is not supported by this kernel: {source}")]
    Unsupported {
        /// The feature, e.g. "openat2".
        feature: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::CorruptArchive { .. } => ErrorKind::CorruptArchive,
            Error::UnsupportedCompression { .. } => ErrorKind::UnsupportedCompression,
            Error::UnsupportedEntry { .. } => ErrorKind::UnsupportedEntry,
            Error::InvalidPath { .. } => ErrorKind::InvalidPath,
            Error::InvalidWhiteout { .. } => ErrorKind::InvalidWhiteout,
            Error::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Error::UnmappedId { .. } => ErrorKind::UnmappedId,
            Error::InvalidKey { .. } => ErrorKind::InvalidKey,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::Mount { .. } => ErrorKind::Mount,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }

    /// Wraps an I/O error with the operation and path it concerns.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
