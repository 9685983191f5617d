//! Progress of blob transfers, reported per blob for the CLI to render.
//!
//! The client reports; it never draws. A [`Progress`] receives [`ProgressEvent`]s from
//! every concurrent transfer, so implementations must be cheap and thread-safe: a closure,
//! or an unbounded tokio channel whose receiver the renderer drains.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use stencil_registry::{Progress, ProgressEvent};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = {
//!     let seen = seen.clone();
//!     move |event: ProgressEvent| seen.lock().unwrap().push(event)
//! };
//! let digest = stencil_reference::Digest::from_sha256_bytes(&[0; 32]);
//! sink.event(ProgressEvent::AlreadyPresent { digest });
//! assert_eq!(seen.lock().unwrap().len(), 1);
//! ```

use stencil_reference::Digest;

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The transfer began; `offset` is non-zero when an earlier partial download resumes.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// Bytes already in the ingest from an earlier attempt.
        offset: u64,
    },
    /// The blob waits for a free transfer slot (the registry's concurrency limit).
    Waiting {
        /// The blob.
        digest: Digest,
    },
    /// More bytes moved; `done` counts every byte so far, out of `size`.
    Bytes {
        /// The blob.
        digest: Digest,
        /// Bytes transferred (or present) so far.
        done: u64,
        /// The blob's size.
        size: u64,
    },
    /// The transfer was interrupted and resumes from `offset` after a wait.
    Resuming {
        /// The blob.
        digest: Digest,
        /// Where the next request starts.
        offset: u64,
    },
    /// All bytes arrived and hash to the expected digest.
    Verified {
        /// The blob.
        digest: Digest,
    },
    /// The blob is committed to the store (pull) or to the registry (push).
    Done {
        /// The blob.
        digest: Digest,
    },
    /// Nothing to do: the store (pull) or the registry (push) already has it.
    AlreadyPresent {
        /// The blob.
        digest: Digest,
    },
    /// Pushed by mounting it from another repository of the same registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it was mounted from.
        from: String,
    },
    /// A pull chose its image manifest; sent before any of its blobs moves, so a display
    /// can tell the config from the layers and list the layers in order.
    Manifest {
        /// The image manifest's digest.
        digest: Digest,
        /// The config blob.
        config: Digest,
        /// The layer blobs, base first.
        layers: Vec<Digest>,
    },
}

/// Receives progress events from concurrent transfers.
pub trait Progress: Send + Sync {
    /// Called once per event, from any task.
    fn event(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> Progress for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}

impl Progress for tokio::sync::mpsc::UnboundedSender<ProgressEvent> {
    fn event(&self, event: ProgressEvent) {
        // A closed receiver means nobody renders any more; the transfer goes on.
        let _ = self.send(event);
    }
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
