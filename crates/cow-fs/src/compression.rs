//! Compression detection and streaming decompression of layer blobs.
//!
//! A layer's media type may lie or be missing (docker-archive, `import` of a file), so the
//! algorithm is read from the first bytes: gzip (`1f 8b`), zstd (`28 b5 2f fd`), otherwise
//! plain tar. A layer ([`detect`]) recognises bzip2 and xz only to refuse them with a clear
//! error, as the OCI media types have neither; a tarball given to `import`
//! ([`detect_input`]) may be either, as `docker import` takes them. This module does not
//! know tar; it turns a compressed `Read` into a decompressed one.
//!
//! Decompression can run on its own thread ([`decompress_threaded`]) so that inflating the
//! next chunk overlaps writing files from the previous one, as `tar -xzf` overlaps with its
//! `gzip` child. Memory stays bounded: at most a few chunks are in flight.
//!
//! ```
//! use stencil_cow_fs::compression::{Compression, detect};
//! let (kind, _reader) = detect(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..]).unwrap();
//! assert_eq!(kind, Compression::Zstd);
//! ```

use std::io::{self, BufReader, Chain, Cursor, Read};
use std::sync::mpsc;

use crate::error::{Error, Result};

/// A layer compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed tar.
    None,
    /// gzip (possibly several members, as `pigz` writes).
    Gzip,
    /// Zstandard.
    Zstd,
    /// bzip2 (several streams, as `pbzip2` writes, too): input tarballs only.
    Bzip2,
    /// xz (several streams too): input tarballs only.
    Xz,
}

/// A reader with its first bytes put back after being peeked at.
pub type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

/// Reads the first bytes of a layer to find its compression, returning the algorithm and
/// a reader that still yields every byte. bzip2 and xz are refused
/// ([`Error::UnsupportedCompression`]).
pub fn detect<R: Read>(reader: R) -> Result<(Compression, Peeked<R>)> {
    let (kind, peeked) = detect_input(reader)?;
    match kind {
        Compression::Bzip2 => Err(Error::UnsupportedCompression { algorithm: "bzip2" }),
        Compression::Xz => Err(Error::UnsupportedCompression { algorithm: "xz" }),
        _ => Ok((kind, peeked)),
    }
}

/// As [`detect`], for a tarball that is no layer (`import`): bzip2 and xz are taken too.
pub fn detect_input<R: Read>(mut reader: R) -> Result<(Compression, Peeked<R>)> {
    let mut magic = Vec::with_capacity(6);
    let mut buf = [0u8; 6];
    while magic.len() < buf.len() {
        match reader.read(&mut buf[magic.len()..]) {
            Ok(0) => break,
            Ok(n) => magic.extend_from_slice(&buf[magic.len()..magic.len() + n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::CorruptArchive {
                    entry: String::new(),
                    source: e,
                });
            }
        }
    }
    let kind = match magic.as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Compression::Xz,
        _ => Compression::None,
    };
    Ok((kind, Cursor::new(magic).chain(reader)))
}

/// The most memory an xz stream may ask for (its dictionary): `xz -9` takes 64 MiB; a
/// stream asking for more than this is refused rather than allowed to exhaust memory.
const XZ_MEMORY_LIMIT_KIB: u32 = 1024 * 1024;

/// Size of the buffered reads from the compressed source.
const SOURCE_BUFFER: usize = 256 * 1024;

/// Wraps `reader` in the decoder for `kind`, decompressing on the calling thread.
pub fn decompress<'r, R: Read + 'r>(kind: Compression, reader: R) -> Result<Box<dyn Read + 'r>> {
    Ok(match kind {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            SOURCE_BUFFER,
            reader,
        ))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                SOURCE_BUFFER,
                reader,
            ))
            .map_err(|e| Error::CorruptArchive {
                entry: String::new(),
                source: e,
            })?,
        ),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::with_capacity(
            SOURCE_BUFFER,
            reader,
        ))),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            BufReader::with_capacity(SOURCE_BUFFER, reader),
            true,
            XZ_MEMORY_LIMIT_KIB,
        )),
    })
}

/// Bytes handed over per chunk between the decompressing thread and the consumer.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight; bounds memory to about `CHUNK * (IN_FLIGHT + 2)`.
const IN_FLIGHT: usize = 4;

/// Runs `body` with a reader of the decompressed stream, decompressing `reader` on a
/// second thread when it is compressed (plain streams are read directly).
pub fn decompress_threaded<R, T>(
    kind: Compression,
    reader: R,
    body: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T>
where
    R: Read + Send,
{
    if kind == Compression::None {
        let mut plain = BufReader::with_capacity(SOURCE_BUFFER, reader);
        return Ok(body(&mut plain));
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            // The decoder is built on this thread: boxed decoders are not `Send`.
            let mut decoder = match decompress(kind, reader) {
                Ok(decoder) => decoder,
                Err(error) => {
                    let _ = sender.send(Err(io::Error::other(error.to_string())));
                    return;
                }
            };
            loop {
                let mut chunk = recycle_rx.try_recv().unwrap_or_default();
                chunk.resize(CHUNK, 0);
                let mut filled = 0;
                let result = loop {
                    match decoder.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let done = filled == 0;
                let message = match result {
                    Ok(()) => Ok(chunk),
                    Err(e) => Err(e),
                };
                let failed = message.is_err();
                // A closed channel means the consumer stopped early; just end.
                if sender.send(message).is_err() || done || failed {
                    return;
                }
            }
        });
        let mut channel = ChunkReader::new(receiver, Some(recycle_tx));
        let result = body(&mut channel);
        // Dropping the receiver unblocks the producer if the body stopped early.
        drop(channel);
        Ok(result)
    })
}

/// A reader of the chunks a producer thread sends: an empty chunk ends the stream, an
/// error is returned where it occurred, and a channel closed without the empty chunk (the
/// producer died) is an error, never a silent end. Spent chunks go back to the producer
/// on `recycle` when it reuses them.
pub(crate) struct ChunkReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    recycle: Option<mpsc::Sender<Vec<u8>>>,
    current: Vec<u8>,
    position: usize,
    finished: bool,
}

impl ChunkReader {
    pub(crate) fn new(
        receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
        recycle: Option<mpsc::Sender<Vec<u8>>>,
    ) -> ChunkReader {
        ChunkReader {
            receiver,
            recycle,
            current: Vec::new(),
            position: 0,
            finished: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            if self.finished {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    if chunk.is_empty() {
                        self.finished = true;
                    }
                    let old = std::mem::replace(&mut self.current, chunk);
                    if let Some(recycle) = &self.recycle {
                        let _ = recycle.send(old);
                    }
                    self.position = 0;
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Err(_) => {
                    self.finished = true;
                    return Err(io::Error::other("the thread producing the stream stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}
