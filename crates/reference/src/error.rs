//! The one error type of this crate, and its `Copy` summary [`ErrorKind`].
//!
//! Every variant carries the string the caller passed to the failing `parse` (`input`) and,
//! where useful, the offending part of it, so that a message can name exactly what is wrong.
//! This module deliberately holds no parsing logic.
//!
//! ```
//! use stencil_reference::{ErrorKind, Reference};
//!
//! let err = Reference::parse("Ubuntu").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::UppercaseRepository);
//! assert_eq!(
//!     err.to_string(),
//!     "invalid reference \"Ubuntu\": repository name \"Ubuntu\" must be lowercase; \
//!      did you mean \"ubuntu\"?"
//! );
//! ```

use crate::digest::Algorithm;

/// Why a reference, tag or digest string was rejected.
///
/// Messages are lowercase, quote the input and say what is wrong with it. Match on
/// [`Error::kind`] rather than on the message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reference string was empty.
    #[error(
        "invalid reference \"\": the reference is empty; give an image name such as \"ubuntu\""
    )]
    EmptyReference,

    /// The string does not follow the `[domain[:port]/]path[:tag][@digest]` grammar.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidFormat {
        /// The whole string given to the parser.
        input: String,
        /// Which rule of the grammar the string breaks, in words.
        reason: String,
    },

    /// The repository path contains uppercase letters, which registries never accept.
    #[error(
        "invalid reference {input:?}: repository name {repository:?} must be lowercase{}",
        did_you_mean(.suggestion)
    )]
    UppercaseRepository {
        /// The whole string given to the parser.
        input: String,
        /// The repository path as written, uppercase letters included.
        repository: String,
        /// The input with the repository name lowercased, when that is a valid reference.
        suggestion: Option<String>,
    },

    /// The string is a 64-character hexadecimal image ID, which cannot be a repository name.
    #[error(
        "invalid reference {input:?}: a 64-character hexadecimal string is an image ID, \
         not a repository name"
    )]
    HexIdentifier {
        /// The whole string given to the parser.
        input: String,
    },

    /// The normalised name (`domain/path`) is longer than 255 characters.
    #[error(
        "invalid reference {input:?}: the repository name is {length} characters long \
         (after normalisation); the limit is 255"
    )]
    NameTooLong {
        /// The whole string given to the parser.
        input: String,
        /// Length in bytes of the normalised `domain/path`.
        length: usize,
    },

    /// The tag is empty, starts with `.` or `-`, or contains a character outside
    /// `[A-Za-z0-9_.-]`.
    #[error(
        "{}: a tag must start with a letter, digit or '_' and contain only letters, \
         digits, '_', '.' and '-'",
        subject("tag", .input, .tag)
    )]
    TagInvalid {
        /// The whole string given to the parser.
        input: String,
        /// The tag as written.
        tag: String,
    },

    /// The tag is longer than 128 characters.
    #[error("{}: a tag is at most 128 characters, this one has {length}", subject("tag", .input, .tag))]
    TagTooLong {
        /// The whole string given to the parser.
        input: String,
        /// The tag as written.
        tag: String,
        /// Its length in characters.
        length: usize,
    },

    /// The digest is not of the form `algorithm:hex`.
    #[error(
        "{}: a digest is written \"algorithm:hex\", for example \"sha256:\" followed by \
         64 lowercase hexadecimal characters",
        subject("digest", .input, .digest)
    )]
    DigestInvalidFormat {
        /// The whole string given to the parser.
        input: String,
        /// The digest as written.
        digest: String,
    },

    /// The digest names an algorithm that is not registered (sha256, sha384, sha512, blake3).
    #[error(
        "{}: unsupported digest algorithm {algorithm:?}; use sha256 or sha512",
        subject("digest", .input, .digest)
    )]
    DigestUnsupportedAlgorithm {
        /// The whole string given to the parser.
        input: String,
        /// The digest as written.
        digest: String,
        /// The algorithm part as written.
        algorithm: String,
    },

    /// The hexadecimal part has the wrong length for its algorithm.
    #[error(
        "{}: {algorithm} needs {expected} hexadecimal characters, found {actual}",
        subject("digest", .input, .digest)
    )]
    DigestInvalidLength {
        /// The whole string given to the parser.
        input: String,
        /// The digest as written.
        digest: String,
        /// The (registered) algorithm of the digest.
        algorithm: Algorithm,
        /// How many hexadecimal characters the algorithm produces.
        expected: usize,
        /// How many characters were given.
        actual: usize,
    },

    /// The hexadecimal part contains a character outside `[0-9a-f]` (uppercase included).
    #[error(
        "{}: the part after ':' must be lowercase hexadecimal (0-9, a-f)",
        subject("digest", .input, .digest)
    )]
    DigestInvalidHex {
        /// The whole string given to the parser.
        input: String,
        /// The digest as written.
        digest: String,
    },
}

/// The kind of an [`Error`], without its data: cheap to copy and compare in tests and in
/// code that maps errors to exit codes or HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::EmptyReference`].
    EmptyReference,
    /// See [`Error::InvalidFormat`].
    InvalidFormat,
    /// See [`Error::UppercaseRepository`].
    UppercaseRepository,
    /// See [`Error::HexIdentifier`].
    HexIdentifier,
    /// See [`Error::NameTooLong`].
    NameTooLong,
    /// See [`Error::TagInvalid`].
    TagInvalid,
    /// See [`Error::TagTooLong`].
    TagTooLong,
    /// See [`Error::DigestInvalidFormat`].
    DigestInvalidFormat,
    /// See [`Error::DigestUnsupportedAlgorithm`].
    DigestUnsupportedAlgorithm,
    /// See [`Error::DigestInvalidLength`].
    DigestInvalidLength,
    /// See [`Error::DigestInvalidHex`].
    DigestInvalidHex,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::EmptyReference => ErrorKind::EmptyReference,
            Error::InvalidFormat { .. } => ErrorKind::InvalidFormat,
            Error::UppercaseRepository { .. } => ErrorKind::UppercaseRepository,
            Error::HexIdentifier { .. } => ErrorKind::HexIdentifier,
            Error::NameTooLong { .. } => ErrorKind::NameTooLong,
            Error::TagInvalid { .. } => ErrorKind::TagInvalid,
            Error::TagTooLong { .. } => ErrorKind::TagTooLong,
            Error::DigestInvalidFormat { .. } => ErrorKind::DigestInvalidFormat,
            Error::DigestUnsupportedAlgorithm { .. } => ErrorKind::DigestUnsupportedAlgorithm,
            Error::DigestInvalidLength { .. } => ErrorKind::DigestInvalidLength,
            Error::DigestInvalidHex { .. } => ErrorKind::DigestInvalidHex,
        }
    }

    /// The string that was given to the failing parser (empty for
    /// [`Error::EmptyReference`]).
    pub fn input(&self) -> &str {
        match self {
            Error::EmptyReference => "",
            Error::InvalidFormat { input, .. }
            | Error::UppercaseRepository { input, .. }
            | Error::HexIdentifier { input }
            | Error::NameTooLong { input, .. }
            | Error::TagInvalid { input, .. }
            | Error::TagTooLong { input, .. }
            | Error::DigestInvalidFormat { input, .. }
            | Error::DigestUnsupportedAlgorithm { input, .. }
            | Error::DigestInvalidLength { input, .. }
            | Error::DigestInvalidHex { input, .. } => input,
        }
    }

    /// Re-labels a tag or digest error raised while parsing part of a reference, so that its
    /// message names the whole reference the user typed.
    pub(crate) fn within_reference(mut self, reference: &str) -> Error {
        match &mut self {
            Error::TagInvalid { input, .. }
            | Error::TagTooLong { input, .. }
            | Error::DigestInvalidFormat { input, .. }
            | Error::DigestUnsupportedAlgorithm { input, .. }
            | Error::DigestInvalidLength { input, .. }
            | Error::DigestInvalidHex { input, .. } => reference.clone_into(input),
            _ => {}
        }
        self
    }
}

/// The remedy part of an uppercase message, if there is a valid lowercase spelling.
fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|suggestion| format!("; did you mean {suggestion:?}?"))
        .unwrap_or_default()
}

/// Opening words of a tag or digest message. A tag or digest parsed on its own is the whole
/// input; one parsed inside a reference is a strict part of it (the reference also holds `:`
/// or `@`), and then the message names the reference too.
fn subject(what: &str, input: &str, part: &str) -> String {
    if input == part {
        format!("invalid {what} {part:?}")
    } else {
        format!("invalid reference {input:?}: {what} {part:?}")
    }
}
