//! A reader that watches tar headers go past and refuses oversized extension headers.
//!
//! The `tar` crate reads PAX (`x`, `g`) and GNU long-name (`L`, `K`) extension entries
//! wholly into memory before it hands out the entry they describe, so a layer declaring a
//! 50 GiB PAX header (a few MB once compressed) would exhaust memory long before any entry
//! reached [`crate::apply_layer`]. This guard sits between the decompressor and the `tar`
//! crate, follows the stream's 512-byte block structure itself (header, data rounded up to
//! a block, GNU sparse extension blocks, PAX `size` overrides), and fails the read as soon
//! as an extension header declares more than the cap. It does not validate checksums or
//! interpret entries beyond what positioning needs: the `tar` crate still does the parsing.
//!
//! ```text
//! HeaderGuard::new(stream, 1 << 20)  // extension entries above 1 MiB fail the read
//! ```

use std::cell::Cell;
use std::io::{self, Read};

const BLOCK: usize = 512;

/// Follows tar block structure through a byte stream; see the module documentation.
pub struct HeaderGuard<'a, R> {
    inner: R,
    max_extension: u64,
    /// Set when the cap was exceeded, so the caller can tell this error from others.
    tripped: &'a Cell<bool>,
    /// Bytes of data and padding left before the next header block.
    skip: u64,
    header: [u8; BLOCK],
    filled: usize,
    /// Data size to skip once the GNU sparse extension blocks being read are done.
    after_sparse: Option<u64>,
    /// PAX records of the current `x` entry, kept to find a `size` override.
    pax: Option<Vec<u8>>,
    /// Size declared by the last PAX header, for the entry it describes.
    pax_size: Option<u64>,
    /// The end-of-archive block was seen; the rest is not looked at.
    done: bool,
}

impl<'a, R: Read> HeaderGuard<'a, R> {
    /// Wraps `inner`; extension entries larger than `max_extension` bytes fail the read.
    pub fn new(inner: R, max_extension: u64, tripped: &'a Cell<bool>) -> HeaderGuard<'a, R> {
        HeaderGuard {
            inner,
            max_extension,
            tripped,
            skip: 0,
            header: [0; BLOCK],
            filled: 0,
            after_sparse: None,
            pax: None,
            pax_size: None,
            done: false,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.done {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    let room = (self.max_extension as usize).saturating_sub(pax.len());
                    pax.extend_from_slice(&bytes[..n.min(room)]);
                }
                bytes = &bytes[n..];
                self.skip -= n as u64;
                if self.skip == 0
                    && let Some(pax) = self.pax.take()
                {
                    self.pax_size = pax_size(&pax);
                }
                continue;
            }
            let n = (BLOCK - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        if let Some(data) = self.after_sparse {
            // A GNU sparse extension block: its last byte says whether another follows.
            if h[504] == 0 {
                self.after_sparse = None;
                self.skip = padded(data);
            }
            return Ok(());
        }
        if h.iter().all(|b| *b == 0) {
            self.done = true;
            return Ok(());
        }
        let kind = h[156];
        let declared = octal_or_binary(&h[124..136]);
        let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        if extension && declared > self.max_extension {
            self.tripped.set(true);
            return Err(io::Error::other(
                "tar extension header exceeds its size limit",
            ));
        }
        let size = if extension {
            declared
        } else {
            self.pax_size.take().unwrap_or(declared)
        };
        if kind == b'x' {
            self.pax = Some(Vec::new());
        }
        if kind == b'S' && h[482] != 0 {
            self.after_sparse = Some(size);
        } else {
            self.skip = padded(size);
            if self.skip == 0
                && let Some(pax) = self.pax.take()
            {
                self.pax_size = pax_size(&pax);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for HeaderGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// Reads a numeric header field: octal text, or base-256 when the high bit is set.
fn octal_or_binary(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |acc, b| {
                acc.saturating_mul(256).saturating_add(u64::from(*b))
            });
    }
    field
        .iter()
        .skip_while(|b| **b == b' ' || **b == 0)
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0u64, |acc, b| {
            acc.saturating_mul(8).saturating_add(u64::from(b - b'0'))
        })
}

/// The `size` record of PAX extension data, if any.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let length: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if length <= space || length > rest.len() {
            return found;
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[length..];
    }
    found
}

#[cfg(test)]
mod tests {
    //! Block tracking against archives written by the `tar` crate.
    use super::*;

    fn archive(entries: &[(&str, usize)], long_names: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, size) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(*size as u64);
            header.set_mode(0o644);
            let name = if long_names {
                format!("{}/{name}", "d".repeat(150))
            } else {
                name.to_string()
            };
            builder
                .append_data(&mut header, name, vec![7u8; *size].as_slice())
                .expect("append");
        }
        builder.into_inner().expect("finish")
    }

    #[track_caller]
    fn check(stream: &[u8], max: u64, expect_trip: bool) {
        let tripped = Cell::new(false);
        let mut guard = HeaderGuard::new(stream, max, &tripped);
        // Small reads exercise headers split across calls.
        let mut buf = [0u8; 100];
        let mut result = Ok(());
        loop {
            match guard.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        assert_eq!(result.is_err(), expect_trip, "{result:?}");
        assert_eq!(tripped.get(), expect_trip);
    }

    #[test]
    fn tracks_blocks_and_trips_only_on_big_extensions() {
        let plain = archive(
            &[("a", 0), ("b", 1), ("c", 512), ("d", 513), ("e", 5000)],
            false,
        );
        let long = archive(&[("a", 10), ("b", 700)], true);
        for (stream, max, trip) in [
            (plain.clone(), 64, false),
            (long.clone(), 4096, false),
            (long, 100, true),
        ] {
            check(&stream, max, trip);
        }
    }

    #[test]
    fn reads_sizes_and_pax_records() {
        assert_eq!(octal_or_binary(b"00000001750\0"), 1000);
        assert_eq!(octal_or_binary(b"     1750 \0\0"), 1000);
        assert_eq!(
            octal_or_binary(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            256
        );
        assert_eq!(pax_size(b"12 size=100\n20 path=some/where\n"), Some(100));
        assert_eq!(pax_size(b"20 path=some/where\n"), None);
    }
}
