//! A pipeline from the network to the store: a blocking worker owns the ingest writer,
//! so that hashing and writing one chunk overlap with receiving the next.
//!
//! On a pull of one large layer, hashing (sha256 as bytes pass) costs as much as the
//! network itself; run in the receiving task they add up, run beside it they overlap. The
//! queue between the two is bounded, so memory stays a few chunks whatever the blob's
//! size. This module moves bytes; it does not decide when to resume or what to verify.
//!
//! The network hands over chunks of a few KiB to a few hundred KiB; they are passed on in
//! batches of at least [`BATCH`] bytes (the chunks themselves, not copies), so that the
//! two threads meet once per batch rather than once per chunk: on a busy machine every
//! meeting can cost a scheduler wake-up, during which the hasher would starve.
//!
//! ```text
//! response.chunk() ──► batch (≥ 512 KiB) ──► bounded queue (8 batches) ──► worker: writer.write_all (hash + disk)
//!                                                            └─► tap (unpack while pulling)
//! ```

use bytes::Bytes;
use stencil_layerstore::content::ContentWriter;
use tokio::sync::mpsc;

use super::tap::BlobStream;

/// Batches in flight between the network and the worker: with [`BATCH`], a few MiB per
/// blob at most.
const QUEUE: usize = 4;

/// Bytes gathered before a batch goes to the worker.
const BATCH: usize = 512 << 10;

enum Command {
    Write(Vec<Bytes>),
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
    /// Chunks received but not yet sent to the worker, and their length.
    pending: Vec<Bytes>,
    pending_len: usize,
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
                    Command::Write(batch) => batch.iter().try_for_each(|bytes| {
                        writer.write_all(bytes).map_err(WorkerFailure::Io)?;
                        if tap.as_mut().is_some_and(|t| !t.write(bytes)) {
                            tap = None;
                        }
                        Ok(())
                    }),
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
        IngestPipeline {
            sender,
            pending: Vec::new(),
            pending_len: 0,
            worker,
        }
    }

    /// Queues `bytes` after everything written before; they reach the worker with the
    /// batch they complete, or at [`IngestPipeline::finish`].
    pub(crate) async fn write(&mut self, bytes: Bytes) -> Result<(), WorkerStopped> {
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len >= BATCH {
            self.send_pending().await?;
        }
        Ok(())
    }

    async fn send_pending(&mut self) -> Result<(), WorkerStopped> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.sender
            .send(Command::Write(batch))
            .await
            .map_err(|_| WorkerStopped)
    }

    /// Discards everything written, the bytes of an earlier resume included.
    pub(crate) async fn truncate(&mut self) -> Result<(), WorkerStopped> {
        self.pending.clear();
        self.pending_len = 0;
        self.sender
            .send(Command::Truncate)
            .await
            .map_err(|_| WorkerStopped)
    }

    /// Waits for every queued chunk to be written and flushed; gives the writer back.
    pub(crate) async fn finish(mut self) -> Result<WorkerResult<W>, WorkerFailure> {
        // A worker that stopped early says why below; the batch it missed does not matter.
        let _ = self.send_pending().await;
        drop(self.sender);
        self.worker
            .await
            .map_err(|e| WorkerFailure::Lost(e.to_string()))
    }
}
