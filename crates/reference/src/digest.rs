//! [`Digest`] and [`Algorithm`]: a validated content address such as `sha256:<64 hex>`.
//!
//! A digest is `algorithm:hex`. The algorithm must be one of the registered ones (see
//! [`Algorithm`]) and the hex part must be exactly as long as that algorithm's output, in
//! lowercase hexadecimal. That makes both parts safe to use as path components: neither can
//! hold `/`, `..`, uppercase letters or anything but `[a-z0-9]`. This module does not hash
//! anything; callers compute hashes and wrap them with [`Digest::from_sha256_bytes`].
//!
//! ```
//! use stencil_reference::{Algorithm, Digest};
//!
//! let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
//! let digest: Digest = format!("sha256:{hex}").parse().unwrap();
//! assert_eq!(digest.algorithm(), Algorithm::Sha256);
//! assert_eq!(digest.hex(), hex);
//! assert_eq!(format!("blobs/{}/{}", digest.algorithm(), digest.hex()), format!("blobs/sha256/{hex}"));
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A registered digest algorithm.
///
/// stencil computes and checks [`Algorithm::Sha256`] and [`Algorithm::Sha512`]. The others
/// parse, so that manifests naming them can be read and shown, but
/// [`Algorithm::is_verifiable`] is false for them: a content store must refuse content it
/// cannot verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256: 64 hexadecimal characters. The default everywhere.
    Sha256,
    /// SHA-384: 96 hexadecimal characters (accepted by Docker's digest package).
    Sha384,
    /// SHA-512: 128 hexadecimal characters.
    Sha512,
    /// BLAKE3 with its default 256-bit output: 64 hexadecimal characters (OCI image-spec
    /// v1.1).
    Blake3,
}

impl Algorithm {
    /// The algorithm's name as written in a digest: `sha256`, `sha384`, `sha512`, `blake3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// How many hexadecimal characters a digest of this algorithm has.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    /// Whether stencil can verify content against a digest of this algorithm (sha256 and
    /// sha512 only).
    pub fn is_verifiable(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha512)
    }

    /// Looks up a registered algorithm by its exact (lowercase) name, for example the
    /// directory names under a content store's `blobs/`.
    ///
    /// ```
    /// use stencil_reference::Algorithm;
    ///
    /// assert_eq!(Algorithm::from_name("sha512"), Some(Algorithm::Sha512));
    /// assert_eq!(Algorithm::from_name("SHA256"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            "blake3" => Some(Algorithm::Blake3),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated digest: a registered [`Algorithm`] and its lowercase hexadecimal value.
///
/// Ordered and compared by its string form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// `algorithm:hex`, kept whole so that [`Digest::as_str`] and `Display` cost nothing.
    value: String,
    algorithm: Algorithm,
}

impl Digest {
    /// Validates `s` as `algorithm:hex`.
    ///
    /// ```
    /// use stencil_reference::{Digest, ErrorKind};
    ///
    /// let kind = |s: &str| Digest::parse(s).unwrap_err().kind();
    /// assert_eq!(kind("sha256:abc"), ErrorKind::DigestInvalidLength);
    /// assert_eq!(kind("md5:d41d8cd98f00b204e9800998ecf8427e"), ErrorKind::DigestUnsupportedAlgorithm);
    /// assert_eq!(kind(&format!("sha256:{}", "A".repeat(64))), ErrorKind::DigestInvalidHex);
    /// assert_eq!(kind("sha256"), ErrorKind::DigestInvalidFormat);
    /// ```
    pub fn parse(s: &str) -> Result<Digest, Error> {
        let algorithm = check_digest(s)?;
        Ok(Digest {
            value: s.to_owned(),
            algorithm,
        })
    }

    /// Wraps a string that [`check_digest`] has accepted as `algorithm`.
    pub(crate) fn from_checked(s: &str, algorithm: Algorithm) -> Digest {
        Digest {
            value: s.to_owned(),
            algorithm,
        }
    }

    /// Builds a digest from an algorithm and its hexadecimal value, validating the value.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Digest, Error> {
        let value = format!("{}:{hex}", algorithm.as_str());
        check_digest(&value)?;
        Ok(Digest { value, algorithm })
    }

    /// Wraps a computed SHA-256 hash.
    ///
    /// ```
    /// use stencil_reference::Digest;
    ///
    /// let digest = Digest::from_sha256_bytes(&[0xab; 32]);
    /// assert_eq!(digest.to_string(), format!("sha256:{}", "ab".repeat(32)));
    /// ```
    pub fn from_sha256_bytes(bytes: &[u8; 32]) -> Digest {
        Digest::from_hash_bytes(Algorithm::Sha256, bytes)
    }

    /// Wraps a computed SHA-512 hash.
    pub fn from_sha512_bytes(bytes: &[u8; 64]) -> Digest {
        Digest::from_hash_bytes(Algorithm::Sha512, bytes)
    }

    fn from_hash_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = String::with_capacity(algorithm.as_str().len() + 1 + 2 * bytes.len());
        value.push_str(algorithm.as_str());
        value.push(':');
        for &byte in bytes {
            value.push(char::from(HEX[usize::from(byte >> 4)]));
            value.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Digest { value, algorithm }
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hexadecimal value, without the algorithm; only `[0-9a-f]`.
    pub fn hex(&self) -> &str {
        &self.value[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// Checks `s` against the digest rules without allocating on success, and returns its
/// algorithm.
pub(crate) fn check_digest(s: &str) -> Result<Algorithm, Error> {
    let Some(colon) = s.bytes().position(|b| b == b':') else {
        return Err(Error::DigestInvalidFormat {
            input: s.to_owned(),
            digest: s.to_owned(),
        });
    };
    let (name, hex) = (&s[..colon], &s[colon + 1..]);
    let Some(algorithm) = Algorithm::from_name(name) else {
        // A name that does not even follow the OCI algorithm grammar is a malformed digest;
        // a well-formed but unknown one (md5, sha1) is unsupported.
        return Err(if is_algorithm_shaped(name) {
            Error::DigestUnsupportedAlgorithm {
                input: s.to_owned(),
                digest: s.to_owned(),
                algorithm: name.to_owned(),
            }
        } else {
            Error::DigestInvalidFormat {
                input: s.to_owned(),
                digest: s.to_owned(),
            }
        });
    };
    // A fold without early exit lets the compiler check many bytes per instruction; valid
    // digests, the common case, are read to the end anyway.
    let is_lower_hex = hex.bytes().fold(true, |ok, b| {
        ok & (b.is_ascii_digit() | (b'a'..=b'f').contains(&b))
    });
    if !is_lower_hex {
        return Err(Error::DigestInvalidHex {
            input: s.to_owned(),
            digest: s.to_owned(),
        });
    }
    if hex.len() != algorithm.hex_len() {
        return Err(Error::DigestInvalidLength {
            input: s.to_owned(),
            digest: s.to_owned(),
            algorithm,
            expected: algorithm.hex_len(),
            actual: hex.len(),
        });
    }
    Ok(algorithm)
}

/// Whether `name` matches the OCI algorithm grammar
/// `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn is_algorithm_shaped(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut previous_was_separator = true;
    for b in name.bytes() {
        if alnum(b) {
            previous_was_separator = false;
        } else if matches!(b, b'+' | b'.' | b'_' | b'-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest, Error> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.value
    }
}
