//! Block-parallel gzip compression, as `pigz` does it: one standard gzip member whose
//! deflate stream is made of independently compressed blocks.
//!
//! The input is cut into blocks of [`BLOCK`] bytes. Each block is compressed on a worker
//! thread as raw deflate, primed with the last 32 KiB of the block before it (so the
//! ratio stays close to a single-threaded gzip) and ended with a sync flush, which
//! leaves the stream byte-aligned; the blocks are then written in order, followed by an
//! empty final block, and the member's CRC-32 (combined from the blocks' own) and length.
//! Any gzip reader decodes the result; the output depends only on the input and the level,
//! not on the number of threads or on how the input is read, so the same layer always
//! gives the same blob digest.
//!
//! ```
//! use std::io::Read;
//! use stencil_cow_fs::gzip::ParallelGzip;
//!
//! let data = b"hello, layers ".repeat(10_000);
//! let mut compressed = Vec::new();
//! ParallelGzip::new(std::io::Cursor::new(data.clone()), 6, 2).read_to_end(&mut compressed)?;
//! let mut plain = Vec::new();
//! flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut plain)?;
//! assert_eq!(plain, data);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use flate2::{Compress, Compression, Crc, FlushCompress};

use crate::compression::ChunkReader;

/// Bytes of input per independently compressed block.
pub const BLOCK: usize = 1 << 20;

/// The deflate window: how much of the previous block primes the next.
const DICTIONARY: usize = 32 << 10;

/// The gzip header: deflate, no name or time, unknown OS (as flate2 writes it).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final deflate block (fixed Huffman codes, end of block at once).
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];

/// A compressed block and the CRC-32 of its input.
type Compressed = io::Result<(Vec<u8>, Crc)>;

/// One block for a worker: its data, the dictionary, and where the result goes.
struct Job {
    data: Vec<u8>,
    dictionary: Vec<u8>,
    result: SyncSender<Compressed>,
}

/// A reader of the gzip compression of another reader, compressed on several threads.
///
/// Memory is bounded: at most about two blocks per thread are in flight. A read error of
/// the input is returned by `read` once the blocks before it are out.
pub struct ParallelGzip {
    output: ChunkReader,
}

impl ParallelGzip {
    /// Compresses `input` at `level` (0–9) on `threads` worker threads (at least one).
    pub fn new<R: Read + Send + 'static>(input: R, level: u32, threads: usize) -> ParallelGzip {
        let threads = threads.max(1);
        let (sender, output) = sync_channel(threads * 2);
        thread::spawn(move || coordinate(input, level.min(9), threads, &sender));
        ParallelGzip {
            output: ChunkReader::new(output, None),
        }
    }
}

impl Read for ParallelGzip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.output.read(buf)
    }
}

/// Reads blocks, hands them to the workers and sends their results on in order; ends
/// with the trailer and an empty chunk. Stops when the reader side is dropped.
fn coordinate(
    mut input: impl Read,
    level: u32,
    threads: usize,
    output: &SyncSender<io::Result<Vec<u8>>>,
) {
    let (jobs, queue) = sync_channel::<Job>(threads);
    let queue = Arc::new(Mutex::new(queue));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let queue = Arc::clone(&queue);
            thread::spawn(move || work(&queue, level))
        })
        .collect();
    // Err means the reader went away or an error was sent: either way, stop.
    let _ = (|| -> Result<(), ()> {
        output.send(Ok(HEADER.to_vec())).map_err(|_| ())?;
        let mut pending: VecDeque<Receiver<Compressed>> = VecDeque::new();
        let mut crc = Crc::new();
        let mut dictionary = Vec::new();
        let forward = |receiver: Receiver<Compressed>, crc: &mut Crc| match receiver.recv() {
            Ok(Ok((compressed, block_crc))) => {
                crc.combine(&block_crc);
                output.send(Ok(compressed)).map_err(|_| ())
            }
            Ok(Err(error)) => {
                let _ = output.send(Err(error));
                Err(())
            }
            Err(_) => {
                let _ = output.send(Err(io::Error::other("a gzip worker thread stopped")));
                Err(())
            }
        };
        loop {
            let data = match read_block(&mut input) {
                Ok(data) => data,
                Err(error) => {
                    while let Some(receiver) = pending.pop_front() {
                        forward(receiver, &mut crc)?;
                    }
                    let _ = output.send(Err(error));
                    return Err(());
                }
            };
            if data.is_empty() {
                break;
            }
            let next_dictionary = data[data.len().saturating_sub(DICTIONARY)..].to_vec();
            let (result, receiver) = sync_channel(1);
            let job = Job {
                data,
                dictionary: std::mem::replace(&mut dictionary, next_dictionary),
                result,
            };
            jobs.send(job).map_err(|_| ())?;
            pending.push_back(receiver);
            if pending.len() > threads
                && let Some(receiver) = pending.pop_front()
            {
                forward(receiver, &mut crc)?;
            }
        }
        while let Some(receiver) = pending.pop_front() {
            forward(receiver, &mut crc)?;
        }
        let mut trailer = LAST_BLOCK.to_vec();
        trailer.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        trailer.extend_from_slice(&(crc.amount()).to_le_bytes());
        output.send(Ok(trailer)).map_err(|_| ())?;
        output.send(Ok(Vec::new())).map_err(|_| ())
    })();
    drop(jobs);
    for worker in workers {
        let _ = worker.join();
    }
}

/// Reads up to [`BLOCK`] bytes, fewer only at the end of the input.
fn read_block(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; BLOCK];
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut data[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    data.truncate(filled);
    Ok(data)
}

/// A worker: compresses the blocks it takes from `queue` until it is closed.
fn work(queue: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let mut crc = Crc::new();
        crc.update(&job.data);
        let compressed = compress_block(&job.data, &job.dictionary, level).map(|c| (c, crc));
        // A closed receiver means the coordinator stopped.
        let _ = job.result.send(compressed);
    }
}

/// `data` as raw deflate primed with `dictionary`, ended with a sync flush.
fn compress_block(data: &[u8], dictionary: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut deflate = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = deflate.total_in();
        deflate
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        consumed += usize::try_from(deflate.total_in() - before).unwrap_or(0);
        // The flush is complete when deflate stopped before filling the output.
        if consumed == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible text with some noise, so blocks both shrink and differ.
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 7 == 0 {
                    (state & 0xff) as u8
                } else {
                    b"layer data "[i % 11]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        ParallelGzip::new(io::Cursor::new(data.to_vec()), 6, threads)
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn one_gzip_member_that_any_reader_decodes_the_same_for_any_thread_count() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + BLOCK / 2] {
            let data = sample(len);
            let compressed = gzip(&data, 3);
            // A single-member decoder reads it all: one member, not several.
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut plain)
                .unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(plain, data, "len {len}");
            assert_eq!(gzip(&data, 1), compressed, "len {len}: depends on threads");
            if len > BLOCK {
                assert!(compressed.len() < data.len() / 2, "len {len}: poor ratio");
            }
        }
    }

    #[test]
    fn a_read_error_of_the_input_is_returned() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let error = ParallelGzip::new(Failing(3 * BLOCK / 2), 6, 2)
            .read_to_end(&mut out)
            .err()
            .map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("disk gone"));
    }
}
