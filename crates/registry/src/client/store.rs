//! What the client needs from a content store, as one bound over the layerstore's roles.
//!
//! Pulls write through the layerstore's [`Ingester`] (resumable, verified, atomic) and
//! check presence with its [`Provider`]; pushes read through the [`Provider`]. This module
//! only names that combination and translates the layerstore's errors; it does not store
//! anything itself.
//!
//! ```
//! use stencil_layerstore::content::LocalContent;
//! use stencil_registry::ContentStore;
//!
//! fn takes_a_store(_: &impl ContentStore) {}
//! let dir = tempfile::tempdir().unwrap();
//! takes_a_store(&LocalContent::open(dir.path()).unwrap());
//! ```

use std::io::Write;

use stencil_layerstore::content::{ContentWriter, Ingester, Provider};
use stencil_reference::Digest;

use crate::error::Error;

/// A content store the client can pull into and push from: the layerstore's
/// [`Provider`] and [`Ingester`], usable from concurrent tasks.
pub trait ContentStore:
    Provider<Reader: Send> + Ingester<Writer: Send + 'static> + Send + Sync + 'static
{
}

impl<T> ContentStore for T where
    T: Provider<Reader: Send> + Ingester<Writer: Send + 'static> + Send + Sync + 'static
{
}

/// The ingest ref under which a pulled blob is written: one per digest, so that two pulls
/// of the same blob (in this process or another) never write it twice at once.
pub fn pull_ingest_ref(digest: &Digest) -> String {
    format!("registry-pull-{digest}")
}

/// Translates a layerstore error about `digest` fetched from `url`.
pub(crate) fn store_error(url: &str, digest: &Digest, error: stencil_layerstore::Error) -> Error {
    match error {
        stencil_layerstore::Error::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            url: url.to_owned(),
            expected,
            actual,
        },
        stencil_layerstore::Error::SizeMismatch {
            expected,
            expected_size,
            actual_size,
        } => Error::SizeMismatch {
            url: url.to_owned(),
            digest: expected,
            expected: expected_size,
            actual: actual_size,
        },
        other => Error::Store {
            digest: digest.clone(),
            reason: other.to_string(),
        },
    }
}

/// How long [`put_small`] waits for another writer of the same document.
const SMALL_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes a small in-memory blob (a manifest) into the store unless it is there already.
pub(crate) fn put_small<S: ContentStore>(
    store: &S,
    digest: &Digest,
    bytes: &[u8],
    url: &str,
) -> Result<(), Error> {
    let fail = |e| store_error(url, digest, e);
    // Another process pulling the same image may be writing this very document: it takes
    // microseconds, so wait for it (a short blocking pause) and take its copy.
    let deadline = std::time::Instant::now() + SMALL_WRITE_WAIT;
    let mut writer = loop {
        if store.contains(digest).map_err(fail)? {
            return Ok(());
        }
        match store.writer(&pull_ingest_ref(digest)) {
            Ok(writer) => break writer,
            Err(err)
                if err.kind() == stencil_layerstore::ErrorKind::InUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(err) => return Err(fail(err)),
        }
    };
    if store.contains(digest).map_err(fail)? {
        let _ = writer.abort();
        return Ok(());
    }
    writer.truncate(0).map_err(fail)?;
    writer.write_all(bytes).map_err(|e| Error::Store {
        digest: digest.clone(),
        reason: e.to_string(),
    })?;
    writer.commit(bytes.len() as u64, digest).map_err(fail)
}
