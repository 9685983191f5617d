//! The container log: one record per line of output, in the format of podman's
//! `k8s-file` log driver (the CRI log format), so that `logs` can tell the two streams
//! apart, print times (`-t`) and keep a window (`--since`, `--until`):
//!
//! ```text
//! 2026-11-29T04:38:01.123456789Z stdout F a whole line
//! 2026-11-29T04:38:01.123460211Z stderr P the start of a line not yet ended
//! ```
//!
//! `F` ends a line; `P` is a piece the process wrote without its newline, continued by the
//! next record of the same stream. [`LogWriter`] writes the records of one chunk of output
//! with a single `write` on a file opened for appending, so the writers of one container
//! (its two streams, a second start) never interleave inside a record. A line that is no
//! record (a log written before this format, or a damaged one) reads as a whole line of
//! standard output. This module opens no file and starts no process.
//!
//! ```
//! use stencil::container::logfile::{Record, Stream};
//! let record = Record::parse(b"2026-11-29T04:38:01.123456789Z stderr F oops").unwrap();
//! assert_eq!(record.stream, Stream::Stderr);
//! assert!(record.ends_line);
//! assert_eq!(record.content, b"oops");
//! ```

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use chrono::{DateTime, SecondsFormat, Utc};

use super::tty::write_all;

/// Which output stream of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and everything a terminal showed, for `-t` containers).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Writes records to a container's log.
pub struct LogWriter {
    file: OwnedFd,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("file", &self.file)
            .finish()
    }
}

impl LogWriter {
    /// A writer of `file`, which must be open for appending.
    pub fn new(file: OwnedFd) -> LogWriter {
        LogWriter { file }
    }

    /// Appends `bytes`, output of `stream` just read, as records stamped now.
    pub fn write(&self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let records = encode(&now(), stream, bytes);
        if records.is_empty() {
            return Ok(());
        }
        write_all(self.file.as_fd(), &records)
    }
}

/// Now, as a record's time: RFC 3339 in UTC with nanoseconds, always 30 characters.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The records of `bytes`: one per line, and a `P` record for a last piece without its
/// newline.
fn encode(time: &str, stream: Stream, bytes: &[u8]) -> Vec<u8> {
    let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    let mut records = Vec::with_capacity(bytes.len() + lines * (time.len() + 10));
    for piece in bytes.split_inclusive(|b| *b == b'\n') {
        records.extend_from_slice(time.as_bytes());
        records.push(b' ');
        records.extend_from_slice(stream.name().as_bytes());
        if piece.ends_with(b"\n") {
            records.extend_from_slice(b" F ");
            records.extend_from_slice(piece);
        } else {
            records.extend_from_slice(b" P ");
            records.extend_from_slice(piece);
            records.push(b'\n');
        }
    }
    records
}

/// One record of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// When it was written, RFC 3339 as written.
    pub time: &'a str,
    /// Its stream.
    pub stream: Stream,
    /// Whether it ends a line (`F`), or is a piece of one continued by the next record of
    /// its stream (`P`).
    pub ends_line: bool,
    /// The output, without the newline.
    pub content: &'a [u8],
}

impl<'a> Record<'a> {
    /// Parses one line of the log, without its newline; `None` when it is no record.
    pub fn parse(line: &'a [u8]) -> Option<Record<'a>> {
        let mut fields = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?;
        let stream = match fields.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let ends_line = match fields.next()? {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        let content = fields.next()?;
        let looks_like_time = time.len() >= 20
            && time.as_bytes()[4] == b'-'
            && time.as_bytes()[10] == b'T'
            && time.bytes().all(|b| b.is_ascii_graphic());
        looks_like_time.then_some(Record {
            time,
            stream,
            ends_line,
            content,
        })
    }

    /// Its time, `None` when it cannot be read.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.time)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }
}

/// What `logs` prints of the records, and where.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records written before this time.
    pub until: Option<DateTime<Utc>>,
    /// Each line begins with its record's time, as `docker logs -t`.
    pub timestamps: bool,
}

impl Filter {
    /// Whether `record` is in the window.
    pub fn keeps(&self, record: &Record<'_>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(time) = record.timestamp() else {
            return true;
        };
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time < until)
    }
}

/// Turns log lines back into the container's output, one stream to each writer.
#[derive(Debug, Default)]
pub struct Printer {
    filter: Filter,
    /// Per stream: a line was begun by a `P` record and not yet ended.
    open: [bool; 2],
    /// Per stream: the next records continue a line begun before where printing started
    /// (a tail), and are left out up to the end of that line.
    skipping: [bool; 2],
}

impl Printer {
    /// A printer keeping what `filter` keeps.
    pub fn new(filter: Filter) -> Printer {
        Printer {
            filter,
            open: [false; 2],
            skipping: [false; 2],
        }
    }

    /// A printer starting where a [`TailFinder`] said, leaving out the ends of lines
    /// begun before.
    pub fn resuming(filter: Filter, tail: &Tail) -> Printer {
        Printer {
            skipping: tail.open,
            ..Printer::new(filter)
        }
    }

    /// Prints one line of the log (without its newline) to `out` or `err`.
    pub fn print(
        &mut self,
        line: &[u8],
        out: &mut dyn io::Write,
        err: &mut dyn io::Write,
    ) -> io::Result<()> {
        let Some(record) = Record::parse(line) else {
            out.write_all(line)?;
            return out.write_all(b"\n");
        };
        if !self.filter.keeps(&record) {
            return Ok(());
        }
        let index = record.stream.index();
        if self.skipping[index] {
            self.skipping[index] = !record.ends_line;
            return Ok(());
        }
        let open = &mut self.open[index];
        let sink: &mut dyn io::Write = match record.stream {
            Stream::Stdout => out,
            Stream::Stderr => err,
        };
        if self.filter.timestamps && !*open {
            sink.write_all(record.time.as_bytes())?;
            sink.write_all(b" ")?;
        }
        sink.write_all(record.content)?;
        if record.ends_line {
            sink.write_all(b"\n")?;
        }
        *open = !record.ends_line;
        Ok(())
    }
}

/// Where the last lines of a log begin: see [`TailFinder::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The offset of the first record to print.
    pub offset: u64,
    /// Per stream, whether a line was open there (its end is not to be printed).
    open: [bool; 2],
}

/// Counts lines for `logs --tail`: fed the log's lines with their offsets in order, it
/// keeps where each of the last `lines` lines of output (records in the window) begins.
#[derive(Debug)]
pub struct TailFinder {
    lines: usize,
    filter: Filter,
    open: [bool; 2],
    starts: std::collections::VecDeque<Tail>,
}

impl TailFinder {
    /// Keeps the start of the last `lines` lines that `filter` keeps.
    pub fn new(lines: u64, filter: Filter) -> TailFinder {
        TailFinder {
            lines: usize::try_from(lines).unwrap_or(usize::MAX),
            filter,
            open: [false; 2],
            starts: std::collections::VecDeque::new(),
        }
    }

    /// Takes the log line at `offset`.
    pub fn feed(&mut self, offset: u64, line: &[u8]) {
        if self.lines == 0 {
            return;
        }
        let before = self.open;
        let begins = match Record::parse(line) {
            None => true,
            Some(record) if !self.filter.keeps(&record) => false,
            Some(record) => {
                let open = &mut self.open[record.stream.index()];
                let begins = !*open;
                *open = !record.ends_line;
                begins
            }
        };
        if begins {
            if self.starts.len() == self.lines {
                self.starts.pop_front();
            }
            self.starts.push_back(Tail {
                offset,
                open: before,
            });
        }
    }

    /// Where printing starts: the start of the first line kept, `end` when none is.
    pub fn start(&self, end: u64) -> Tail {
        self.starts.front().copied().unwrap_or(Tail {
            offset: end,
            open: [false; 2],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: &str = "2026-11-29T04:38:01.123456789Z";

    fn print_all(log: &[u8], filter: Filter) -> (String, String) {
        let mut printer = Printer::new(filter);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            printer.print(line, &mut out, &mut err).unwrap();
        }
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn records_round_trip_lines_pieces_and_empty_lines() {
        let mut log = encode(TIME, Stream::Stdout, b"one\n\ntwo and a ha");
        log.extend(encode(TIME, Stream::Stderr, b"oops\n"));
        log.extend(encode(TIME, Stream::Stdout, b"lf\nend"));
        assert_eq!(
            String::from_utf8(log.clone()).unwrap(),
            format!(
                "{TIME} stdout F one\n{TIME} stdout F \n{TIME} stdout P two and a ha\n\
                 {TIME} stderr F oops\n{TIME} stdout F lf\n{TIME} stdout P end\n"
            )
        );
        let (out, err) = print_all(&log, Filter::default());
        assert_eq!(out, "one\n\ntwo and a half\nend");
        assert_eq!(err, "oops\n");
        assert!(encode(TIME, Stream::Stdout, b"").is_empty());
    }

    #[test]
    fn timestamps_begin_lines_not_pieces() {
        let mut log = encode(TIME, Stream::Stdout, b"a");
        log.extend(encode(
            "2026-11-29T04:38:02.000000000Z",
            Stream::Stdout,
            b"b\nc\n",
        ));
        let filter = Filter {
            timestamps: true,
            ..Filter::default()
        };
        let (out, _) = print_all(&log, filter);
        assert_eq!(
            out,
            format!("{TIME} ab\n2026-11-29T04:38:02.000000000Z c\n")
        );
    }

    #[test]
    fn lines_that_are_no_records_print_as_they_are() {
        for line in [
            &b"plain output of an older log"[..],
            b"2026-11-29T04:38:01Z stdin F x",
            b"2026-11-29T04:38:01Z stdout X x",
            b"2026-11-29T04:38:01Z stdout F",
            b"short stdout F x",
        ] {
            assert_eq!(
                Record::parse(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
            let (out, err) = print_all(line, Filter::default());
            assert_eq!(out.as_bytes(), [line, b"\n"].concat());
            assert_eq!(err, "");
        }
    }

    #[test]
    fn the_window_keeps_records_from_since_to_before_until() {
        let at = |s: u32| format!("2026-11-29T04:38:{s:02}.000000000Z");
        let mut log = Vec::new();
        for s in 0..5 {
            log.extend(encode(&at(s), Stream::Stdout, format!("{s}\n").as_bytes()));
        }
        let time = |s: u32| Some(at(s).parse::<DateTime<Utc>>().unwrap());
        let filter = Filter {
            since: time(1),
            until: time(3),
            timestamps: false,
        };
        assert_eq!(print_all(&log, filter.clone()).0, "1\n2\n");
        // The tail counts lines in the window only.
        let mut finder = TailFinder::new(1, filter);
        let mut offset = 0;
        let mut offsets = Vec::new();
        for line in log.split_inclusive(|b| *b == b'\n') {
            finder.feed(offset, &line[..line.len() - 1]);
            offsets.push(offset);
            offset += line.len() as u64;
        }
        assert_eq!(finder.start(offset).offset, offsets[2]);
    }

    #[test]
    fn the_tail_counts_lines_not_pieces() {
        let mut log = encode(TIME, Stream::Stdout, b"first\nsec");
        log.extend(encode(TIME, Stream::Stderr, b"err\n"));
        log.extend(encode(TIME, Stream::Stdout, b"ond\nthird"));
        let starts = |lines: u64| {
            let mut finder = TailFinder::new(lines, Filter::default());
            let mut offset = 0;
            for line in log.split_inclusive(|b| *b == b'\n') {
                finder.feed(offset, &line[..line.len() - 1]);
                offset += line.len() as u64;
            }
            let tail = finder.start(offset);
            let mut printer = Printer::resuming(Filter::default(), &tail);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            for line in log[tail.offset as usize..].split(|b| *b == b'\n') {
                if !line.is_empty() {
                    printer.print(line, &mut out, &mut err).unwrap();
                }
            }
            (
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        };
        assert_eq!(starts(1), ("third".to_owned(), String::new()));
        assert_eq!(starts(2), ("third".to_owned(), "err\n".to_owned()));
        // "sec" + "ond" is one line.
        assert_eq!(starts(3), ("second\nthird".to_owned(), "err\n".to_owned()));
        assert_eq!(
            starts(10),
            ("first\nsecond\nthird".to_owned(), "err\n".to_owned())
        );
        assert_eq!(starts(0), (String::new(), String::new()));
    }
}
