//! The error type of the registry server, [`Error`], and the OCI error responses it sends.
//!
//! [`Error`] is what the library API returns to the process that starts a server: a listen
//! address refused or unusable, an unreadable htpasswd file, a store that cannot be opened.
//! What a *client* of the server sees is different: an [`ApiError`] becomes the OCI error
//! JSON (`{"errors":[{"code":"BLOB_UNKNOWN","message":…,"detail":…}]}`) with the status
//! that the distribution spec gives to its code. This module does not decide which code a
//! failure deserves; the handlers do.
//!
//! ```
//! use stencil_registry::server::{Error, ErrorKind};
//!
//! let error = Error::InsecureListen { addr: "0.0.0.0:5000".parse().unwrap() };
//! assert_eq!(error.kind(), ErrorKind::InsecureListen);
//! assert!(error.to_string().contains("0.0.0.0:5000"));
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use hyper::StatusCode;

/// What can stop a registry server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or another address")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A non-loopback address was asked for without authentication.
    #[error(
        "refusing to serve {addr} without authentication: anyone on the network could push and delete; \
         configure htpasswd or token auth, listen on 127.0.0.1, or force it explicitly"
    )]
    InsecureListen {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The htpasswd file is unreadable or holds a line stencil cannot use.
    #[error("htpasswd file {}: {reason}", path.display())]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number when it is about one line.
        reason: String,
    },
    /// The TLS certificate or key could not be used.
    #[error("tls configuration {}: {reason}", path.display())]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The served domain does not make valid image references.
    #[error("invalid served domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The domain given.
        domain: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The store behind the server failed.
    #[error("registry store: {source}")]
    Store {
        /// The layerstore's error.
        #[source]
        source: stencil_layerstore::Error,
    },
    /// A file of the repository index could not be read or written.
    #[error("repository index {}: {source}", path.display())]
    Index {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Accepting a connection failed in a way that stops the server.
    #[error("accepting connections on {addr}: {source}")]
    Accept {
        /// The listening address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The kind of an [`Error`], to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Bind`].
    Bind,
    /// See [`Error::InsecureListen`].
    InsecureListen,
    /// See [`Error::Htpasswd`].
    Htpasswd,
    /// See [`Error::Tls`].
    Tls,
    /// See [`Error::InvalidDomain`].
    InvalidDomain,
    /// See [`Error::Store`].
    Store,
    /// See [`Error::Index`].
    Index,
    /// See [`Error::Accept`].
    Accept,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Bind { .. } => ErrorKind::Bind,
            Error::InsecureListen { .. } => ErrorKind::InsecureListen,
            Error::Htpasswd { .. } => ErrorKind::Htpasswd,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::InvalidDomain { .. } => ErrorKind::InvalidDomain,
            Error::Store { .. } => ErrorKind::Store,
            Error::Index { .. } => ErrorKind::Index,
            Error::Accept { .. } => ErrorKind::Accept,
        }
    }

    /// Wraps an I/O error on a file of the repository index.
    pub(crate) fn index(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Index { path, source }
    }
}

impl From<stencil_layerstore::Error> for Error {
    fn from(source: stencil_layerstore::Error) -> Error {
        Error::Store { source }
    }
}

/// The result type of the server's library API.
pub type Result<T> = std::result::Result<T, Error>;

/// The error codes of the OCI distribution spec (plus `TOO_MANY_REQUESTS`-style extras that
/// registries commonly send), each with the status the spec pairs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    RangeInvalid,
    PaginationNumberInvalid,
    TooManyRequests,
    Internal,
}

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Internal => "UNKNOWN",
        }
    }

    /// The status the spec gives to this code when nothing more specific applies.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::TagInvalid
            | Code::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed request, as the client will see it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: Code,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Extra response headers (`Range` on a 416, `WWW-Authenticate` on a 401, ...).
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// A server-side failure; the detail goes to the log, not to the client.
    pub(crate) fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "registry request failed");
        ApiError::new(
            Code::Internal,
            "internal server error; see the registry log",
        )
    }

    /// The OCI error JSON body.
    pub(crate) fn body(&self) -> String {
        serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        })
        .to_string()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError::internal(error)
    }
}
