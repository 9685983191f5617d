//! Streaming hashes that produce a [`Digest`]: sha256 always, sha512 when a digest names it.
//!
//! ```
//! use stencil_layerstore::content::{Digester, sha256_digest};
//! use stencil_reference::Algorithm;
//!
//! let mut digester = Digester::new(Algorithm::Sha256).unwrap();
//! digester.update(b"abc");
//! assert_eq!(digester.finish(), sha256_digest(b"abc"));
//! assert!(Digester::new(Algorithm::Blake3).is_none());
//! ```

use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};
use stencil_reference::{Algorithm, Digest};

/// An incremental hash for one of the algorithms stencil can verify.
#[derive(Clone)]
pub enum Digester {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(Sha512),
}

impl Digester {
    /// A fresh hash for `algorithm`, or `None` when stencil cannot compute it.
    pub fn new(algorithm: Algorithm) -> Option<Digester> {
        match algorithm {
            Algorithm::Sha256 => Some(Digester::Sha256(Sha256::new())),
            Algorithm::Sha512 => Some(Digester::Sha512(Sha512::new())),
            _ => None,
        }
    }

    /// Feeds `bytes` to the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Sha256(hash) => hash.update(bytes),
            Digester::Sha512(hash) => hash.update(bytes),
        }
    }

    /// The digest of everything fed so far, without consuming the hash.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self {
            Digester::Sha256(hash) => Digest::from_sha256_bytes(&hash.finalize().into()),
            Digester::Sha512(hash) => Digest::from_sha512_bytes(&hash.finalize().into()),
        }
    }
}

/// The sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes).into())
}

/// Size of the buffer used to stream files through a hash.
pub(crate) const STREAM_BUFFER: usize = 1 << 20;

/// Hashes everything `reader` yields with `algorithm` and returns the digest and the byte
/// count, or `None` when stencil cannot compute `algorithm`. Streams through a 1 MiB buffer.
pub fn digest_reader(
    algorithm: Algorithm,
    reader: &mut dyn Read,
) -> io::Result<Option<(Digest, u64)>> {
    let Some(mut digester) = Digester::new(algorithm) else {
        return Ok(None);
    };
    let mut buffer = vec![0u8; STREAM_BUFFER];
    let mut total = 0u64;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        digester.update(&buffer[..read]);
        total += read as u64;
    }
    Ok(Some((digester.finish(), total)))
}
