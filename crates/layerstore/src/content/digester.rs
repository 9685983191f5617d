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

use ring::digest::{Context, SHA256, SHA512};
use stencil_reference::{Algorithm, Digest};

/// An incremental hash for one of the algorithms stencil can verify.
///
/// It uses ring's hashes (OpenSSL's assembly, with SHA extensions or AVX2 where the CPU
/// has them): about a third faster than the `sha2` crate on CPUs without SHA extensions,
/// and hashing is what bounds pull, load and fsck throughput there.
#[derive(Clone)]
pub struct Digester {
    algorithm: Algorithm,
    context: Context,
}

impl Digester {
    /// A fresh hash for `algorithm`, or `None` when stencil cannot compute it.
    pub fn new(algorithm: Algorithm) -> Option<Digester> {
        let context = match algorithm {
            Algorithm::Sha256 => Context::new(&SHA256),
            Algorithm::Sha512 => Context::new(&SHA512),
            _ => return None,
        };
        Some(Digester { algorithm, context })
    }

    /// Feeds `bytes` to the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    /// The digest of everything fed so far, without consuming the hash.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let output = self.context.finish();
        let bytes = output.as_ref();
        match self.algorithm {
            Algorithm::Sha512 => {
                let mut array = [0u8; 64];
                array.copy_from_slice(bytes);
                Digest::from_sha512_bytes(&array)
            }
            _ => {
                let mut array = [0u8; 32];
                array.copy_from_slice(bytes);
                Digest::from_sha256_bytes(&array)
            }
        }
    }
}

/// The sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let mut digester = Digester {
        algorithm: Algorithm::Sha256,
        context: Context::new(&SHA256),
    };
    digester.update(bytes);
    digester.finish()
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
