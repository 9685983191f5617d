//! Taps on pulled blobs: a second consumer of a blob's bytes while they arrive.
//!
//! A pull writes every blob into the store's ingest; a [`BlobTap`] given in
//! [`crate::PullOptions::tap`] also receives each layer's bytes, in order, as they are
//! written, so that a caller can unpack a layer while it downloads instead of after. The
//! client stays in charge of the blob itself: it verifies the digest and commits the blob,
//! and tells the stream whether that succeeded ([`BlobStream::finish`]). A stream that is
//! dropped without `finish` saw an incomplete or unverified blob and must throw away what
//! it made of it. This module does not unpack anything.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use bytes::Bytes;
//! use stencil_reference::Digest;
//! use stencil_registry::{BlobStream, BlobTap, Descriptor};
//!
//! /// Counts the bytes of every layer.
//! struct Counter(Arc<Mutex<u64>>);
//! impl BlobStream for Counter {
//!     fn write(&mut self, bytes: &Bytes) -> bool {
//!         *self.0.lock().unwrap() += bytes.len() as u64;
//!         true
//!     }
//!     fn finish(self: Box<Self>) {}
//! }
//! struct Tap(Arc<Mutex<u64>>);
//! impl BlobTap for Tap {
//!     fn begin(&self, _config: &Digest, _layers: &[Descriptor]) {}
//!     fn open(&self, _layer: &Descriptor) -> Option<Box<dyn BlobStream>> {
//!         Some(Box::new(Counter(self.0.clone())))
//!     }
//! }
//! let _tap: Arc<dyn BlobTap> = Arc::new(Tap(Arc::new(Mutex::new(0))));
//! ```

use bytes::Bytes;
use stencil_reference::Digest;

use super::manifest::Descriptor;

/// Receives the layers of a pull while they download; see the module documentation.
pub trait BlobTap: Send + Sync {
    /// The image's config blob (`config`) is in the store and these layers are about to be
    /// fetched; called once per pull, before any layer moves.
    fn begin(&self, config: &Digest, layers: &[Descriptor]);

    /// A transfer of `layer` starts at its first byte (not for blobs already present, nor
    /// for a resume of bytes kept from an earlier run): return a stream to receive its
    /// bytes, or `None`.
    fn open(&self, layer: &Descriptor) -> Option<Box<dyn BlobStream>>;
}

/// The bytes of one blob, in order, as they reach the store.
pub trait BlobStream: Send {
    /// The next bytes. Called from a blocking thread, so it may block (the download waits:
    /// memory stays bounded). Returning `false` means "no more, thanks": the transfer goes
    /// on without this stream, which is then dropped.
    fn write(&mut self, bytes: &Bytes) -> bool;

    /// Every byte was written, and the blob matched its digest.
    fn finish(self: Box<Self>);
}
