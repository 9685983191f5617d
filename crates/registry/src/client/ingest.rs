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
//!                                                            └─► tap (unpack while pulling)
//! ```

use bytes::Bytes;
use stencil_layerstore::content::ContentWriter;
use tokio::sync::mpsc;

use super::tap::BlobStream;

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

/// What the worker gives back: the writer, the tap's stream (unless it left), and how the
/// writing went.
pub(crate) type WorkerResult<W> = (W, Option<Box<dyn BlobStream>>, Result<(), WorkerFailure>);

/// The sending half, with the worker that owns the writer.
pub(crate) struct IngestPipeline<W> {
    sender: mpsc::Sender<Command>,
    worker: tokio::task::JoinHandle<WorkerResult<W>>,
}

/// The worker stopped; [`IngestPipeline::finish`] says why.
#[derive(Debug)]
pub(crate) struct WorkerStopped;

impl<W: ContentWriter + Send + 'static> IngestPipeline<W> {
    /// Starts the worker; `tap` (when given) receives each chunk after it is written.
    pub(crate) fn start(mut writer: W, mut tap: Option<Box<dyn BlobStream>>) -> IngestPipeline<W> {
        let (sender, mut receiver) = mpsc::channel(QUEUE);
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(command) = receiver.blocking_recv() {
                let done = match command {
                    Command::Write(bytes) => {
                        let written = writer.write_all(&bytes).map_err(WorkerFailure::Io);
                        if written.is_ok() && tap.as_mut().is_some_and(|t| !t.write(&bytes)) {
                            tap = None;
                        }
                        written
                    }
                    Command::Truncate => {
                        // The tap saw bytes that no longer count: it cannot follow a restart.
                        tap = None;
                        writer.truncate(0).map_err(WorkerFailure::Store)
                    }
                };
                if let Err(failure) = done {
                    return (writer, None, Err(failure));
                }
            }
            let flushed = writer.flush().map_err(WorkerFailure::Io);
            (writer, tap, flushed)
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
    pub(crate) async fn finish(self) -> Result<WorkerResult<W>, WorkerFailure> {
        drop(self.sender);
        self.worker
            .await
            .map_err(|e| WorkerFailure::Lost(e.to_string()))
    }
}
