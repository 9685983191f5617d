//! The one error type of `stencil-registry`, with typed context and a stable [`ErrorKind`].
//!
//! Every variant names what failed (the URL, the reference, the digest or the file) and,
//! where a user can act, says what to do. This module does not decide policy such as
//! retrying: [`Error::is_retryable`] only reports what the transport may try again.
//!
//! ```
//! use stencil_registry::{Error, ErrorKind};
//!
//! let err = Error::NotFound {
//!     url: "https://r.example/v2/a/manifests/x".into(),
//!     what: "docker.io/library/nosuch:x".into(),
//!     code: Some("MANIFEST_UNKNOWN".into()),
//! };
//! assert_eq!(err.kind(), ErrorKind::NotFound);
//! assert!(err.to_string().starts_with("manifest for docker.io/library/nosuch:x not found"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use stencil_reference::Digest;

/// Everything that can go wrong while talking to a registry or reading its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed, was reset or timed out, or the body stopped half-way.
    #[error("cannot reach {url}: {source}; check the registry address and the network")]
    Transport {
        /// The URL being requested.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry wants credentials, or refused the ones given.
    #[error(
        "authentication required by {url}: {message}; log in with `stencil login {registry}` or check the stored credentials"
    )]
    Unauthorized {
        /// The URL that answered 401.
        url: String,
        /// The registry host the credentials are for.
        registry: String,
        /// The registry's own explanation.
        message: String,
    },
    /// The credentials were accepted but do not grant this access.
    #[error("access denied by {url}: {message}; check that your account may access it")]
    Denied {
        /// The URL that answered 403.
        url: String,
        /// The registry's own explanation.
        message: String,
    },
    /// The repository, manifest or blob does not exist (or is hidden from this account).
    #[error("{}", not_found_text(.what, .url, .code.as_deref()))]
    NotFound {
        /// The URL that answered 404.
        url: String,
        /// The reference, repository or digest that was looked for.
        what: String,
        /// The registry's error code (`MANIFEST_UNKNOWN`, `NAME_UNKNOWN`, `BLOB_UNKNOWN`),
        /// when it sent one: it tells a missing tag from a missing repository.
        code: Option<String>,
    },
    /// The registry kept answering 429 after every retry.
    #[error("too many requests to {url}; the registry rate-limits this client, try again later")]
    TooManyRequests {
        /// The rate-limited URL.
        url: String,
        /// The last `Retry-After` the registry sent, if any.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected status, with the OCI error envelope decoded when present.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The first OCI error code (`BLOB_UNKNOWN`, `MANIFEST_INVALID`, …), if sent.
        code: Option<String>,
        /// The error message (and detail) the registry sent, or the status text.
        message: String,
    },
    /// Content did not hash to the digest it was fetched or pushed by; it was discarded.
    #[error(
        "digest mismatch for {url}: expected {expected}, got {actual}; the content was discarded"
    )]
    DigestMismatch {
        /// Where the content came from.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Content was longer or shorter than its descriptor says; it was discarded.
    #[error("size mismatch for {digest} from {url}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Where the content came from.
        url: String,
        /// The blob's digest.
        digest: Digest,
        /// The size in the descriptor.
        expected: u64,
        /// The bytes actually received.
        actual: u64,
    },
    /// A manifest was larger than the 4 MiB limit and was refused unread.
    #[error("manifest at {url} is larger than {limit} bytes; refusing it")]
    ManifestTooLarge {
        /// The manifest's URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A manifest or index could not be understood.
    #[error("invalid manifest from {url}: {reason}")]
    InvalidManifest {
        /// Where the manifest came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry sent a media type stencil does not handle.
    #[error(
        "unsupported media type {media_type:?} from {url}; stencil reads OCI and Docker schema 2 images"
    )]
    UnsupportedMediaType {
        /// Where the content came from.
        url: String,
        /// The media type received.
        media_type: String,
    },
    /// An index has no manifest for the requested platform.
    #[error(
        "no image for platform {platform} in {reference}; available: {available}; pick one with --platform"
    )]
    NoMatchingPlatform {
        /// The reference being pulled.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index offers, comma separated.
        available: String,
    },
    /// A foreign layer is only available from its `urls`, which are not allowed.
    #[error(
        "layer {digest} is a foreign layer served from {urls}; allow foreign layers to fetch it"
    )]
    ForeignLayer {
        /// The layer's digest.
        digest: Digest,
        /// Its URLs, comma separated.
        urls: String,
    },
    /// A digest algorithm stencil cannot compute (only sha256 and sha512 are verified).
    #[error("cannot verify {digest}: stencil only verifies sha256 and sha512 content")]
    UnverifiableDigest {
        /// The digest.
        digest: Digest,
    },
    /// The registry's answer broke the protocol (missing header, bad JSON, bad URL).
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// The URL requested.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The token service refused or failed to issue a token.
    #[error("token service {url} failed: {reason}; check the credentials for {registry}")]
    Token {
        /// The token endpoint.
        url: String,
        /// The registry the token is for.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// A `docker-credential-NAME` helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        /// The helper's suffix (`pass`, `secretservice`, …).
        helper: String,
        /// The registry whose credentials were asked for.
        registry: String,
        /// Its error output, or why it could not run.
        reason: String,
    },
    /// A configuration file (registries TOML, docker config.json) could not be read or written.
    #[error("cannot use {path}: {reason}; fix or remove the file")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A name given by the caller is not a valid registry host or repository.
    #[error("invalid registry name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The local content store failed.
    #[error("local store failed for {digest}: {reason}")]
    Store {
        /// The blob concerned.
        digest: Digest,
        /// What the store reported.
        reason: String,
    },
}

/// The stable classification of an [`Error`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Transport`].
    Transport,
    /// See [`Error::Unauthorized`].
    Unauthorized,
    /// See [`Error::Denied`].
    Denied,
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::TooManyRequests`].
    TooManyRequests,
    /// See [`Error::Status`].
    Status,
    /// See [`Error::DigestMismatch`].
    DigestMismatch,
    /// See [`Error::SizeMismatch`].
    SizeMismatch,
    /// See [`Error::ManifestTooLarge`].
    ManifestTooLarge,
    /// See [`Error::InvalidManifest`].
    InvalidManifest,
    /// See [`Error::UnsupportedMediaType`].
    UnsupportedMediaType,
    /// See [`Error::NoMatchingPlatform`].
    NoMatchingPlatform,
    /// See [`Error::ForeignLayer`].
    ForeignLayer,
    /// See [`Error::UnverifiableDigest`].
    UnverifiableDigest,
    /// See [`Error::Protocol`].
    Protocol,
    /// See [`Error::Token`].
    Token,
    /// See [`Error::CredentialHelper`].
    CredentialHelper,
    /// See [`Error::Config`].
    Config,
    /// See [`Error::InvalidName`].
    InvalidName,
    /// See [`Error::Store`].
    Store,
}

impl Error {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Denied { .. } => ErrorKind::Denied,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::TooManyRequests { .. } => ErrorKind::TooManyRequests,
            Error::Status { .. } => ErrorKind::Status,
            Error::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Error::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Error::ManifestTooLarge { .. } => ErrorKind::ManifestTooLarge,
            Error::InvalidManifest { .. } => ErrorKind::InvalidManifest,
            Error::UnsupportedMediaType { .. } => ErrorKind::UnsupportedMediaType,
            Error::NoMatchingPlatform { .. } => ErrorKind::NoMatchingPlatform,
            Error::ForeignLayer { .. } => ErrorKind::ForeignLayer,
            Error::UnverifiableDigest { .. } => ErrorKind::UnverifiableDigest,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Token { .. } => ErrorKind::Token,
            Error::CredentialHelper { .. } => ErrorKind::CredentialHelper,
            Error::Config { .. } => ErrorKind::Config,
            Error::InvalidName { .. } => ErrorKind::InvalidName,
            Error::Store { .. } => ErrorKind::Store,
        }
    }

    /// Whether trying the same request again may succeed: connection failures and resets,
    /// interrupted bodies, 5xx answers and rate limiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { source, .. } => !source.is_builder() && !source.is_redirect(),
            Error::TooManyRequests { .. } => true,
            Error::Status { status, .. } => *status >= 500 && *status != 501,
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of [`Error::NotFound`]: what is missing as precisely as the registry said.
fn not_found_text(what: &str, url: &str, code: Option<&str>) -> String {
    let at = if url.is_empty() {
        String::new()
    } else {
        format!(" (at {url})")
    };
    match code {
        Some("MANIFEST_UNKNOWN") => {
            format!("manifest for {what} not found: manifest unknown{at}; check the tag or digest")
        }
        Some("NAME_UNKNOWN") => format!("repository for {what} not found: name unknown{at}"),
        Some("BLOB_UNKNOWN") => format!("blob {what} not found: blob unknown{at}"),
        _ => format!("repository not found or access denied: {what}{at}"),
    }
}
