//! The output of a foreground container without a terminal: copied live to our standard
//! output and error, and appended to the container's log.
//!
//! docker keeps the logs of every container, foreground ones included: the process writes
//! into two pipes (as under docker, its output is not our terminal without `-t`) and
//! [`Tee::pump`] copies what arrives on each to our descriptor 1 or 2 and to the log. A
//! write that fails on our side (a closed pipe such as `| head`) stops the copies there,
//! not the copies to the log nor the container. This module starts no process and opens
//! no file.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::logfile::{self, LogWriter};
use super::tty::write_all;

/// How long [`Tee::pump`] waits for output before asking whether the process ended.
const CHECK_EVERY_MS: u16 = 100;

/// One copied stream: the pipe's read end and where it goes.
struct Stream {
    pipe: Option<OwnedFd>,
    /// 1 or 2: our descriptor it is copied to; `None` once writing there failed.
    ours: Option<i32>,
}

/// The read ends of a container's output pipes, and its log.
pub(crate) struct Tee {
    streams: [Stream; 2],
    log: LogWriter,
    /// Our copies of the pipes' write ends, held while we wait on the process's pidfd.
    writers: Vec<OwnedFd>,
}

impl Tee {
    /// Copies `stdout` to our 1 and `stderr` to our 2, both to `log`.
    pub(crate) fn new(stdout: OwnedFd, stderr: OwnedFd, log: LogWriter) -> Tee {
        Tee {
            streams: [
                Stream {
                    pipe: Some(stdout),
                    ours: Some(1),
                },
                Stream {
                    pipe: Some(stderr),
                    ours: Some(2),
                },
            ],
            log,
            writers: Vec::new(),
        }
    }

    /// Writes `stdout` and `stderr` to `log` only: a detached container's monitor.
    pub(crate) fn log_only(stdout: OwnedFd, stderr: OwnedFd, log: LogWriter) -> Tee {
        let mut tee = Tee::new(stdout, stderr, log);
        for stream in &mut tee.streams {
            stream.ours = None;
        }
        tee
    }

    /// Keeps these write ends of the pipes open until [`Tee::pump`] ends: with a pidfd, the
    /// pipes then never report end-of-file, and the process's exit is the only wake-up
    /// when it writes nothing (one sleep fewer for `run --rm IMG true`).
    pub(crate) fn hold(&mut self, writers: impl IntoIterator<Item = OwnedFd>) {
        self.writers.extend(writers);
    }

    /// Copies until both pipes are closed (every writer gone, which for a container is
    /// when its PID 1 has exited), or until `ended` says the writer ended while some
    /// descendant outside its PID namespace still holds a pipe: then what is buffered is
    /// copied and the rest ignored. `ended` is asked after each quiet spell and, with
    /// `exit` (a pidfd of the process), as soon as it becomes readable; without `exit` the
    /// held write ends are let go first.
    pub(crate) fn pump(
        mut self,
        exit: Option<OwnedFd>,
        mut ended: impl FnMut() -> io::Result<bool>,
    ) -> io::Result<()> {
        if exit.is_none() {
            self.writers.clear();
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
            let mut which = Vec::with_capacity(2);
            for (index, stream) in self.streams.iter().enumerate() {
                if let Some(pipe) = &stream.pipe {
                    fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                    which.push(index);
                }
            }
            if fds.is_empty() {
                return Ok(());
            }
            if let Some(exit) = &exit {
                fds.push(PollFd::new(exit.as_fd(), PollFlags::POLLIN));
            }
            let ready = match poll(&mut fds, PollTimeout::from(CHECK_EVERY_MS)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let exited = exit.is_some() && fds.last().and_then(PollFd::any).unwrap_or(false);
            let readable: Vec<usize> = fds
                .iter()
                .zip(&which)
                .filter(|(fd, _)| fd.any().unwrap_or(false))
                .map(|(_, index)| *index)
                .collect();
            drop(fds);
            if ready == 0 || exited {
                if ended()? {
                    return self.drain(&mut buf);
                }
                if ready == 0 {
                    continue;
                }
            }
            for index in readable {
                self.copy_once(index, &mut buf)?;
            }
        }
    }

    /// One read from stream `index` and its copies; `false` when there was nothing to
    /// read (end of file, or nothing yet on a non-blocking pipe).
    fn copy_once(&mut self, index: usize, buf: &mut [u8]) -> io::Result<bool> {
        let stream = &mut self.streams[index];
        let Some(pipe) = &stream.pipe else {
            return Ok(false);
        };
        let n = loop {
            match nix::unistd::read(pipe.as_fd(), buf) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
                Ok(n) => break n,
            }
        };
        if n == 0 {
            stream.pipe = None;
            return Ok(false);
        }
        if let Some(ours) = stream.ours {
            // SAFETY: 1 and 2 stay open for the life of the process.
            let fd = unsafe { BorrowedFd::borrow_raw(ours) };
            if write_all(fd, &buf[..n]).is_err() {
                stream.ours = None;
            }
        }
        // A full disk must not stop the container or its live output.
        let stream = if index == 0 {
            logfile::Stream::Stdout
        } else {
            logfile::Stream::Stderr
        };
        let _ = self.log.write(stream, &buf[..n]);
        Ok(true)
    }

    /// Copies what the pipes hold now without waiting for more.
    fn drain(mut self, buf: &mut [u8]) -> io::Result<()> {
        for index in 0..self.streams.len() {
            if let Some(pipe) = &self.streams[index].pipe {
                fcntl(pipe.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            }
            while self.copy_once(index, buf)? {}
        }
        Ok(())
    }
}
