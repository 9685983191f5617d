//! The host side of a container's terminal (`-t`): raw mode, relaying, window size.
//!
//! The pseudo-terminal is allocated inside the container's own `/dev/pts` by the child
//! and its master comes back over a socket; this module copies master output to our
//! standard output (or the log, or both) and our standard input to the master, with our terminal in
//! raw mode so that keys such as Ctrl-C reach the container's line discipline. It does not
//! allocate terminals or start processes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::logfile::{LogWriter, Stream};

/// Puts a terminal in raw mode until dropped.
pub(crate) struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on `fd` when it is a terminal; `None` otherwise.
    pub(crate) fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd.as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

/// The size of the terminal on `fd`, if it is one.
pub(crate) fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ writes a winsize into the zeroed value.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) == 0).then_some(size)
    }
}

/// Copies between a container's terminal master and our streams.
pub(crate) struct Relay {
    /// The pty master (container side is the slave).
    pub master: OwnedFd,
    /// Where keystrokes come from (`-i`), if anywhere.
    pub input: Option<OwnedFd>,
    /// Where the container's output goes.
    pub output: OwnedFd,
    /// Where a copy of it goes: the log of a foreground container.
    pub log: Option<LogWriter>,
}

fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Writes everything, waiting for room when `fd` is non-blocking (the master is).
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Relay {
    /// Relays until process `pid` has exited and its output is drained; returns its wait
    /// status. Our input and output terminals, if any, are in raw mode meanwhile.
    pub(crate) fn run(mut self, pid: i32) -> io::Result<WaitStatus> {
        // Output too, as docker does: otherwise our terminal turns the container terminal's
        // "\r\n" into "\r\r\n". Dropped in reverse order, so the first saved state wins.
        let _raw_input = self
            .input
            .as_ref()
            .and_then(|fd| RawMode::enter(fd.as_fd()));
        let _raw_output = RawMode::enter(self.output.as_fd());
        nix::fcntl::fcntl(
            self.master.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut master_open = true;
        loop {
            let mut fds = vec![PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if let Some(input) = &self.input {
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
            }
            let ready = match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            let master_ready = fds[0].any().unwrap_or(false);
            let input_ready = fds.get(1).and_then(PollFd::any).unwrap_or(false);
            drop(fds);
            if ready > 0 && master_ready && master_open {
                master_open = self.drain_master(&mut buf)?;
            }
            if ready > 0 && input_ready {
                self.forward_input(&mut buf)?;
            }
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                Ok(status) => {
                    if master_open {
                        self.drain_master(&mut buf)?;
                    }
                    return Ok(status);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Copies what the master has; `false` once it reports the terminal closed.
    fn drain_master(&self, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            match read_some(self.master.as_fd(), buf) {
                Ok(0) | Err(Errno::EIO) => return Ok(false),
                Ok(n) => {
                    write_all(self.output.as_fd(), &buf[..n])?;
                    if let Some(log) = &self.log {
                        // A full disk must not stop the container or its live output.
                        let _ = log.write(Stream::Stdout, &buf[..n]);
                    }
                }
                Err(Errno::EAGAIN) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn forward_input(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let Some(input) = &self.input else {
            return Ok(());
        };
        match read_some(input.as_fd(), buf) {
            Ok(0) | Err(_) => {
                // End of our input: the container reads end-of-file on its terminal (^D at
                // the start of a line), as docker's attach does.
                let _ = write_all(self.master.as_fd(), &[4]);
                self.input = None;
            }
            Ok(n) => write_all(self.master.as_fd(), &buf[..n])?,
        }
        Ok(())
    }
}
