//! A pipeline from the network to the store: a blocking worker owns the ingest writer,
//! so that hashing and writing one chunk overlap with receiving the next.
//!
//! On a pull of one large layer, hashing (sha256 as bytes pass) costs as much as the
//! network itself; run in the receiving task they add up, run beside it they overlap. The
//! queue between the two is bounded, so memory stays a few chunks whatever the blob's
//! size. This module moves bytes; it does not decide when to resume or what to verify.
//!
//! ```text
//! response.chunk() ──► bounded queue (16 chunks) ──► worker: writer.write_all (hash + disk)
//! ```

use bytes::Bytes;
use stencil_layerstore::content::ContentWriter;
use tokio::sync::mpsc;

/// Chunks in flight between the network and the worker.
const QUEUE: usize = 16;

enum Command {
    Write(Bytes),
    Truncate,
}

/// Why the worker stopped early.
#[derive(Debug)]
pub(crate) enum WorkerFailure {
    Io(std::io::Error),
    Store(stencil_layerstore::Error),
    /// The worker panicked; the writer is lost (its ingest stays for a later resume).
    Lost(String),
}

/// The sending half, with the worker that owns the writer.
pub(crate) struct IngestPipeline<W> {
    sender: mpsc::Sender<Command>,
    worker: tokio::task::JoinHandle<(W, Result<(), WorkerFailure>)>,
}

/// The worker stopped; [`IngestPipeline::finish`] says why.
#[derive(Debug)]
pub(crate) struct WorkerStopped;

impl<W: ContentWriter + Send + 'static> IngestPipeline<W> {
    pub(crate) fn start(mut writer: W) -> IngestPipeline<W> {
        let (sender, mut receiver) = mpsc::channel(QUEUE);
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(command) = receiver.blocking_recv() {
                let done = match command {
                    Command::Write(bytes) => writer.write_all(&bytes).map_err(WorkerFailure::Io),
                    Command::Truncate => writer.truncate(0).map_err(WorkerFailure::Store),
                };
                if let Err(failure) = done {
                    return (writer, Err(failure));
                }
            }
            let flushed = writer.flush().map_err(WorkerFailure::Io);
            (writer, flushed)
        });
        IngestPipeline { sender, worker }
    }

    pub(crate) async fn write(&self, bytes: Bytes) -> Result<(), WorkerStopped> {
        self.sender
            .send(Command::Write(bytes))
            .await
            .map_err(|_| WorkerStopped)
    }

    /// Discards everything written, the bytes of an earlier resume included.
    pub(crate) async fn truncate(&self) -> Result<(), WorkerStopped> {
        self.sender
            .send(Command::Truncate)
            .await
            .map_err(|_| WorkerStopped)
    }

    /// Waits for every queued chunk to be written and flushed; gives the writer back.
    pub(crate) async fn finish(self) -> Result<(W, Result<(), WorkerFailure>), WorkerFailure> {
        drop(self.sender);
        self.worker
            .await
            .map_err(|e| WorkerFailure::Lost(e.to_string()))
    }
}
