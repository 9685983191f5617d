//! The one error type of this crate, [`Error`], and its [`ErrorKind`].
//!
//! Every variant names the object it is about (a digest, a path, an ingest ref, a
//! reference) so that a message can be shown to a user as is. Match on [`Error::kind`]
//! rather than on the variant's fields.
//!
//! ```
//! use stencil_layerstore::{Error, ErrorKind};
//!
//! let error = Error::InUse { ingest_ref: "pull-1".into() };
//! assert_eq!(error.kind(), ErrorKind::InUse);
//! assert!(error.to_string().contains("pull-1"));
//! ```

use std::io;
use std::path::PathBuf;

use stencil_reference::Digest;

/// What went wrong in the layerstore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation on `path` failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No blob with this digest is in the content store.
    #[error("blob {digest} not found in the content store")]
    BlobNotFound {
        /// The missing blob.
        digest: Digest,
    },
    /// Another writer (thread or process) holds this ingest ref.
    #[error(
        "ingest ref {ingest_ref:?} is in use by another writer; wait for it to finish or abort it"
    )]
    InUse {
        /// The ingest ref.
        ingest_ref: String,
    },
    /// An ingest ref that cannot be used (empty, too long or holding a NUL byte).
    #[error("invalid ingest ref {ingest_ref:?}: refs are 1 to 1024 bytes without NUL")]
    InvalidIngestRef {
        /// The ingest ref.
        ingest_ref: String,
    },
    /// The bytes written do not have the expected size; nothing was committed.
    #[error(
        "size mismatch for {expected}: expected {expected_size} bytes, got {actual_size} bytes"
    )]
    SizeMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The size the caller expected.
        expected_size: u64,
        /// The number of bytes actually written.
        actual_size: u64,
    },
    /// The bytes written do not hash to the expected digest; nothing was committed.
    #[error(
        "digest mismatch: expected {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the bytes written.
        actual: Digest,
        /// The size the caller expected.
        expected_size: u64,
        /// The number of bytes actually written.
        actual_size: u64,
    },
    /// Content addressed by an algorithm that stencil cannot compute.
    #[error("cannot verify {digest}: only sha256 and sha512 digests are supported")]
    UnsupportedAlgorithm {
        /// The digest with the unsupported algorithm.
        digest: Digest,
    },
    /// A SQLite operation on the metadata database failed.
    #[error("metadata database {}: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer stencil.
    #[error("metadata database {} has schema version {found}, newer than this stencil understands ({supported}); upgrade stencil", path.display())]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A manifest, index or config that cannot be accepted.
    #[error("invalid {what} {}: {reason}", digest.as_ref().map_or_else(|| "document".to_owned(), |d| d.to_string()))]
    InvalidDocument {
        /// What the document was meant to be (manifest, index, config, ...).
        what: &'static str,
        /// The document's digest, when known.
        digest: Option<Digest>,
        /// Why it was refused.
        reason: String,
    },
    /// A document whose media type and content disagree (CVE-2021-41190).
    #[error("ambiguous document {}: {reason}", digest.as_ref().map_or_else(|| "(no digest)".to_owned(), |d| d.to_string()))]
    AmbiguousDocument {
        /// The document's digest, when known.
        digest: Option<Digest>,
        /// The disagreement.
        reason: String,
    },
    /// A manifest or index larger than the 4 MiB limit.
    #[error("document {} is {size} bytes, over the {limit}-byte limit for manifests", digest.as_ref().map_or_else(|| "(no digest)".to_owned(), |d| d.to_string()))]
    DocumentTooLarge {
        /// The document's digest, when known.
        digest: Option<Digest>,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A media type this crate does not handle in that position.
    #[error("unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
    },
    /// An index without a manifest for the wanted platform.
    #[error("no manifest for platform {platform} in index {}", digest.as_ref().map_or_else(|| "(no digest)".to_owned(), |d| d.to_string()))]
    NoMatchingPlatform {
        /// The wanted platform, as `os/arch[/variant]`.
        platform: String,
        /// The index's digest, when known.
        digest: Option<Digest>,
    },
    /// A platform string that is not `os/arch[/variant]`.
    #[error(
        "invalid platform {platform:?}: expected os/arch[/variant], for example linux/arm64/v8"
    )]
    InvalidPlatform {
        /// The text given.
        platform: String,
    },
    /// No image is recorded under this reference or digest.
    #[error("image {reference} not found in the store; pull or load it first")]
    ImageNotFound {
        /// The reference or digest looked up.
        reference: String,
    },
    /// A reference or digest from outside that does not parse.
    #[error("invalid reference {input:?}: {source}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// Why it does not parse.
        #[source]
        source: stencil_reference::Error,
    },
    /// An archive or layout directory that is not a usable OCI layout or docker-archive.
    #[error("invalid archive {}: {reason}", path.display())]
    InvalidArchive {
        /// The archive file or layout directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A reference that names no tag where a tag is needed (tagging, untagging).
    #[error("reference {reference} has no tag; add one, for example :latest")]
    MissingTag {
        /// The reference.
        reference: String,
    },
    /// The image is still used (by a container) and cannot be removed.
    #[error(
        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image; remove the container first, or use -f to untag only"
    )]
    ImageInUse {
        /// The image.
        reference: String,
        /// The container using it.
        container: String,
    },
    /// No container has this ID, name or ID prefix.
    #[error("No such container: {container}")]
    ContainerNotFound {
        /// What was asked for.
        container: String,
    },
    /// Several containers' IDs start with this prefix.
    #[error("container ID prefix {prefix} is ambiguous: give more digits or the name")]
    AmbiguousContainer {
        /// The prefix.
        prefix: String,
    },
    /// The name (or ID) is taken.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{container}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    ContainerNameInUse {
        /// The name asked for.
        name: String,
        /// The ID of the container holding it.
        container: String,
    },
}

/// The kind of an [`Error`], to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Io`].
    Io,
    /// See [`Error::BlobNotFound`].
    BlobNotFound,
    /// See [`Error::InUse`].
    InUse,
    /// See [`Error::InvalidIngestRef`].
    InvalidIngestRef,
    /// See [`Error::SizeMismatch`].
    SizeMismatch,
    /// See [`Error::DigestMismatch`].
    DigestMismatch,
    /// See [`Error::UnsupportedAlgorithm`].
    UnsupportedAlgorithm,
    /// See [`Error::Database`].
    Database,
    /// See [`Error::SchemaTooNew`].
    SchemaTooNew,
    /// See [`Error::InvalidDocument`].
    InvalidDocument,
    /// See [`Error::AmbiguousDocument`].
    AmbiguousDocument,
    /// See [`Error::DocumentTooLarge`].
    DocumentTooLarge,
    /// See [`Error::UnsupportedMediaType`].
    UnsupportedMediaType,
    /// See [`Error::NoMatchingPlatform`].
    NoMatchingPlatform,
    /// See [`Error::InvalidPlatform`].
    InvalidPlatform,
    /// See [`Error::ImageNotFound`].
    ImageNotFound,
    /// See [`Error::InvalidReference`].
    InvalidReference,
    /// See [`Error::InvalidArchive`].
    InvalidArchive,
    /// See [`Error::ImageInUse`].
    ImageInUse,
    /// See [`Error::MissingTag`].
    MissingTag,
    /// See [`Error::ContainerNotFound`].
    ContainerNotFound,
    /// See [`Error::AmbiguousContainer`].
    AmbiguousContainer,
    /// See [`Error::ContainerNameInUse`].
    ContainerNameInUse,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::BlobNotFound { .. } => ErrorKind::BlobNotFound,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::InvalidIngestRef { .. } => ErrorKind::InvalidIngestRef,
            Error::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Error::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Error::UnsupportedAlgorithm { .. } => ErrorKind::UnsupportedAlgorithm,
            Error::Database { .. } => ErrorKind::Database,
            Error::SchemaTooNew { .. } => ErrorKind::SchemaTooNew,
            Error::InvalidDocument { .. } => ErrorKind::InvalidDocument,
            Error::AmbiguousDocument { .. } => ErrorKind::AmbiguousDocument,
            Error::DocumentTooLarge { .. } => ErrorKind::DocumentTooLarge,
            Error::UnsupportedMediaType { .. } => ErrorKind::UnsupportedMediaType,
            Error::NoMatchingPlatform { .. } => ErrorKind::NoMatchingPlatform,
            Error::InvalidPlatform { .. } => ErrorKind::InvalidPlatform,
            Error::ImageNotFound { .. } => ErrorKind::ImageNotFound,
            Error::InvalidReference { .. } => ErrorKind::InvalidReference,
            Error::InvalidArchive { .. } => ErrorKind::InvalidArchive,
            Error::ImageInUse { .. } => ErrorKind::ImageInUse,
            Error::MissingTag { .. } => ErrorKind::MissingTag,
            Error::ContainerNotFound { .. } => ErrorKind::ContainerNotFound,
            Error::AmbiguousContainer { .. } => ErrorKind::AmbiguousContainer,
            Error::ContainerNameInUse { .. } => ErrorKind::ContainerNameInUse,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// An I/O error whose underlying cause is "not found".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::BlobNotFound { .. }
            | Error::ImageNotFound { .. }
            | Error::ContainerNotFound { .. } => true,
            Error::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
