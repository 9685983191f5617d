//! Streaming bodies: blob bytes flow between the store and the socket in bounded chunks.
//!
//! A download reads the blob file on a blocking thread and hands 64 KiB chunks to the
//! connection through a channel of a few slots; an upload does the reverse into an ingest
//! writer. Memory per transfer is therefore a few chunks, whatever the blob's size, and a
//! slow peer slows the file side instead of filling memory. Nothing here knows about
//! digests or routes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use stencil_layerstore::content::LocalWriter;
use tokio::sync::mpsc;

/// The body type of every response.
pub(crate) type ResponseBody = BoxBody<Bytes, io::Error>;

/// Bytes per chunk moved between a file and a connection.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the file side and the connection side.
const SLOTS: usize = 4;

/// A response body fed by a channel.
struct ChannelBody {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}

/// An empty body.
pub(crate) fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body streaming `length` bytes of `file` from `start`.
pub(crate) fn file_range(mut file: File, start: u64, length: u64) -> ResponseBody {
    let (sender, receiver) = mpsc::channel(SLOTS);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = file.seek(SeekFrom::Start(start)) {
            let _ = sender.blocking_send(Err(error));
            return;
        }
        let mut remaining = length;
        let mut reader = file.take(length);
        while remaining > 0 {
            let mut chunk = vec![0; CHUNK.min(remaining as usize)];
            match reader.read(&mut chunk) {
                Ok(0) => {
                    let _ = sender.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file is shorter than its recorded size",
                    )));
                    return;
                }
                Ok(read) => {
                    chunk.truncate(read);
                    remaining -= read as u64;
                    // The receiver is gone when the client hung up: stop reading.
                    if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    ChannelBody { receiver }.boxed()
}

/// Why streaming a request body into a writer stopped early.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The client's body failed (disconnect, bad chunked encoding).
    Body(hyper::Error),
    /// Writing to the ingest failed.
    Write(io::Error),
    /// The upload would pass the size limit.
    TooLarge { limit: u64 },
    /// The blocking writer thread panicked; the writer is lost.
    Lost,
    /// The client sent nothing for this long.
    Stalled { idle: Duration },
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Body(error) => write!(f, "the request body broke off: {error}"),
            StreamError::Write(error) => write!(f, "writing to the store failed: {error}"),
            StreamError::TooLarge { limit } => write!(f, "more than {limit} bytes"),
            StreamError::Lost => f.write_str("the writer was lost"),
            StreamError::Stalled { idle } => {
                write!(f, "no data arrived for {} s", idle.as_secs_f64())
            }
        }
    }
}

/// The next frame of `body`, or `Err(Stalled)` when none comes within `idle`.
async fn next_frame(
    body: &mut Incoming,
    idle: Duration,
) -> Result<Option<Result<Frame<Bytes>, hyper::Error>>, StreamError> {
    tokio::time::timeout(idle, body.frame())
        .await
        .map_err(|_| StreamError::Stalled { idle })
}

/// Streams `body` into `writer`, refusing to let the ingest grow past `limit` bytes.
/// Returns the writer (unless it was lost) and the bytes taken from this body.
pub(crate) async fn write_body(
    writer: LocalWriter,
    mut body: Incoming,
    limit: Option<u64>,
    idle: Duration,
) -> (Option<LocalWriter>, Result<u64, StreamError>) {
    use stencil_layerstore::content::ContentWriter as _;
    let start = writer.offset();
    let (sender, mut receiver) = mpsc::channel::<Bytes>(SLOTS);
    let task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let mut result = Ok(());
        while let Some(chunk) = receiver.blocking_recv() {
            if let Err(error) = writer.write_all(&chunk) {
                result = Err(error);
                break;
            }
        }
        (writer, result)
    });
    let mut taken = 0u64;
    let mut failure = None;
    loop {
        let frame = match next_frame(&mut body, idle).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => {
                failure = Some(StreamError::Body(error));
                break;
            }
            Err(stalled) => {
                failure = Some(stalled);
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        taken += data.len() as u64;
        if let Some(limit) = limit
            && start + taken > limit
        {
            failure = Some(StreamError::TooLarge { limit });
            break;
        }
        if sender.send(data).await.is_err() {
            // The writer stopped on an error, reported below.
            break;
        }
    }
    drop(sender);
    if matches!(failure, Some(StreamError::TooLarge { .. })) {
        drain(body, DRAIN_LIMIT).await;
    }
    match task.await {
        Ok((writer, Err(error))) => (Some(writer), Err(StreamError::Write(error))),
        Ok((writer, Ok(()))) => match failure {
            Some(failure) => (Some(writer), Err(failure)),
            None => (Some(writer), Ok(taken)),
        },
        Err(_) => (None, Err(StreamError::Lost)),
    }
}

/// Reads a small body (a manifest) into memory, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Vec<u8>, StreamError> {
    let mut bytes = Vec::new();
    while let Some(frame) = next_frame(&mut body, idle).await? {
        let frame = frame.map_err(StreamError::Body)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                drain(body, DRAIN_LIMIT).await;
                return Err(StreamError::TooLarge {
                    limit: limit as u64,
                });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// How much of a refused body is read and thrown away before answering.
pub(crate) const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads and discards up to `limit` bytes of a body that is refused. A server that answers
/// while the client is still sending, then closes, makes the kernel reset the connection,
/// and the client sees the reset instead of the answer; draining a bounded amount lets
/// ordinary clients read the error. Memory stays one frame.
pub(crate) async fn drain(mut body: Incoming, limit: u64) {
    let mut seen = 0u64;
    while seen <= limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                }
            }
            _ => return,
        }
    }
}
