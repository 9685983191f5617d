//! The built-in runtime: start a process in a new container, or in a running one (`exec`).
//!
//! [`start`] clones a child into new mount, PID, UTS and IPC namespaces (and a new network
//! namespace for [`Network::None`]). The child makes its mounts private, binds the rootfs
//! onto itself, `pivot_root`s into it, mounts `/proc`, a `/dev` tmpfs with the standard
//! nodes, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, a read-only `/sys` and the volumes, masks
//! the `/proc` files docker masks, optionally remounts `/` read-only, and finally (in the
//! process that execs) drops to docker's default capabilities, sets `no_new_privs`, switches
//! user and groups, marks every descriptor above 2 close-on-exec, changes to the working
//! directory (checked to lie inside the root) and execs. The child is in the container's
//! cgroup ([`Spec::cgroup`], see [`super::cgroup`]) before anything of the container
//! runs: on cgroup v1 it moves itself first, writing `0` into each hierarchy's `tasks`
//! (the one move the kernel makes without waiting for an RCU grace period); on v2 it
//! waits on a pipe, its mounts made, until the parent has moved it. `exec`'d processes
//! join that cgroup the same way before they do anything. [`start`] returns
//! once `execve` succeeded, or with a [`RunError`] carrying docker's exit code (125, 126 or
//! 127).
//!
//! # Threads
//!
//! The CLI may run a multi-threaded tokio runtime, and tests run on many threads. The child
//! is therefore made with `clone3` and does only async-signal-safe system calls until
//! `execve` (see `child` and `sys`): every string, path and list it needs is prepared by the
//! parent beforehand. Callers need no special arrangement; they may call [`start`] from any
//! thread.
//!
//! This module does not mount the rootfs, manage container records or write logs: the
//! caller hands it a mounted directory and the streams to use.
//!
//! ```no_run
//! use stencil::container::runtime::{Spec, Stdio, start};
//! let spec = Spec {
//!     rootfs: "/var/lib/stencil/containers/ID/merged".into(),
//!     args: vec!["echo".into(), "hello".into()],
//!     env: vec!["PATH=/usr/bin:/bin".into()],
//!     cwd: "/".into(),
//!     hostname: "abc123".into(),
//!     ..Spec::default()
//! };
//! let code = start(&spec, Stdio::Inherit)?.wait_forwarding_signals()?;
//! # Ok::<(), stencil::container::runtime::RunError>(())
//! ```

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use super::caps;
use super::cgroup::{Cgroup, CgroupError, Resources};
use super::child::{
    self, CStrings, CgroupPlan, ContainerPlan, ExecPlan, FAILURE_LEN, FORWARDED_SIGNALS, Failure,
    ProcessPlan, Stage, StdinPlan, Step, VolumePlan,
};
use super::logfile::LogWriter;
use super::namespaces;
use super::rootpath;
use super::sys;
use super::tee::Tee;
use super::tty::{Relay, window_size};
use super::user::{self, ResolvedUser, UserError};

/// The size of a container's `/dev/shm` unless `--shm-size` says otherwise (docker's).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Docker's `PATH` when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bind mount from the host (`-v HOST:CTR[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Host file or directory; a missing one is created as a directory, as docker does.
    pub host: PathBuf,
    /// Absolute path inside the container; created if missing.
    pub container: String,
    /// Mount it read-only (recursively).
    pub read_only: bool,
}

/// The network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (docker's `--network host`; stencil's default).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
}

/// The process part of a container: what `exec` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// argv; `args[0]` without `/` is looked up in the `PATH` of `env` inside the container.
    pub args: Vec<String>,
    /// Final `KEY=VALUE` list; `HOME` is added from the user's entry when missing.
    pub env: Vec<String>,
    /// Absolute working directory inside the container; created if missing.
    pub cwd: String,
    /// `""`, `name`, `uid`, `uid:gid`, `name:group` (docker's `--user`).
    pub user: String,
    /// Give the process a terminal (`-t`).
    pub tty: bool,
    /// Keep standard input attached (`-i`); otherwise it is `/dev/null`.
    pub interactive: bool,
    /// The capabilities of a root process (bit N = capability N; a non-root user gets
    /// none, as under docker); `None` is docker's default set.
    pub capabilities: Option<u64>,
    /// Supplementary groups added to the user's (`--group-add`): names of the container's
    /// `/etc/group`, or gids.
    pub groups: Vec<String>,
    /// Resource limits set before the command runs (`--ulimit`); others are ours.
    pub rlimits: Vec<Rlimit>,
}

/// A resource limit (`--ulimit NAME=SOFT[:HARD]`, docker's names; `-1` is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The `RLIMIT_*` resource.
    pub resource: u32,
    /// The soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// docker's `--ulimit` names and their resources.
const RLIMIT_NAMES: &[(&str, u32)] = &[
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

impl Rlimit {
    /// Parses `NAME=SOFT[:HARD]` (a single value is both; `-1` is unlimited).
    pub fn parse(text: &str) -> Result<Rlimit, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit {text:?}: write NAME=SOFT[:HARD]"))?;
        let resource = Self::resource(name).ok_or_else(|| {
            let names: Vec<&str> = RLIMIT_NAMES.iter().map(|(n, _)| *n).collect();
            format!(
                "invalid ulimit {text:?}: unknown name {name:?} (one of {})",
                names.join(", ")
            )
        })?;
        let value = |part: &str| -> Result<u64, String> {
            match part.parse::<i64>() {
                Ok(-1) => Ok(u64::MAX),
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(format!(
                    "invalid ulimit {text:?}: {part:?} is not a limit (a number, or -1 for none)"
                )),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((soft, hard)) => (value(soft)?, value(hard)?),
            None => {
                let both = value(values)?;
                (both, both)
            }
        };
        if soft > hard {
            return Err(format!(
                "invalid ulimit {text:?}: the soft limit must be less than or equal to the hard limit"
            ));
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }

    fn resource(name: &str) -> Option<u32> {
        RLIMIT_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, resource)| *resource)
    }

    /// docker's name of the resource (`nofile`, …).
    pub fn name(&self) -> &'static str {
        rlimit_name(self.resource)
    }
}

/// docker's name of `RLIMIT_*` resource `resource`.
fn rlimit_name(resource: u32) -> &'static str {
    RLIMIT_NAMES
        .iter()
        .find(|(_, r)| *r == resource)
        .map_or("?", |(name, _)| name)
}

/// A tmpfs mounted in the container (`--tmpfs PATH[:OPTIONS]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Absolute path inside the container; created if missing.
    pub container: String,
    /// `mount(2)` flags (`MS_NOSUID`, `MS_RDONLY`, …).
    pub flags: libc::c_ulong,
    /// The filesystem options (`size=64m,mode=1777`), empty for none.
    pub data: String,
}

impl Tmpfs {
    /// The tmpfs of `--tmpfs PATH[:OPTIONS]`: docker's `noexec,nosuid,nodev` unless the
    /// options say otherwise (`exec`, `suid`, `dev`), with mount flags (`ro`, `noatime`, …)
    /// and tmpfs options (`size=`, `mode=`, `uid=`, `gid=`, `nr_inodes=`). An option no
    /// tmpfs takes is an error that names it.
    pub fn parse(container: &str, options: &str) -> Result<Tmpfs, String> {
        if !container.starts_with('/') || components(container).is_empty() {
            return Err(format!(
                "invalid --tmpfs target {container:?}: give an absolute path other than /"
            ));
        }
        let mut flags = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;
        let mut data = Vec::new();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (set, clear) = match option {
                "ro" => (libc::MS_RDONLY, 0),
                "rw" => (0, libc::MS_RDONLY),
                "noexec" => (libc::MS_NOEXEC, 0),
                "exec" => (0, libc::MS_NOEXEC),
                "nosuid" => (libc::MS_NOSUID, 0),
                "suid" => (0, libc::MS_NOSUID),
                "nodev" => (libc::MS_NODEV, 0),
                "dev" => (0, libc::MS_NODEV),
                "sync" => (libc::MS_SYNCHRONOUS, 0),
                "async" => (0, libc::MS_SYNCHRONOUS),
                "dirsync" => (libc::MS_DIRSYNC, 0),
                "noatime" => (libc::MS_NOATIME, 0),
                "atime" => (0, libc::MS_NOATIME),
                "nodiratime" => (libc::MS_NODIRATIME, 0),
                "diratime" => (0, libc::MS_NODIRATIME),
                "relatime" => (libc::MS_RELATIME, 0),
                "norelatime" => (0, libc::MS_RELATIME),
                "strictatime" => (libc::MS_STRICTATIME, 0),
                "nostrictatime" => (0, libc::MS_STRICTATIME),
                // docker's bind propagation words mean nothing for a tmpfs.
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => (0, 0),
                _ => {
                    let key = option.split_once('=').map(|(key, _)| key);
                    if matches!(
                        key,
                        Some("size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks" | "huge")
                    ) {
                        data.push(option);
                        continue;
                    }
                    return Err(format!(
                        "invalid --tmpfs option {option:?} for {container}: use size=, mode=, uid=, gid=, nr_inodes=, ro, rw, exec, noexec, suid, nosuid, dev, nodev"
                    ));
                }
            };
            flags = (flags | set) & !clear;
        }
        Ok(Tmpfs {
            container: container.to_owned(),
            flags,
            data: data.join(","),
        })
    }
}

/// Everything [`start`] needs to run a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// An already-mounted root filesystem on the host; not mounted or unmounted here.
    pub rootfs: PathBuf,
    /// See [`ProcessSpec::args`].
    pub args: Vec<String>,
    /// See [`ProcessSpec::env`].
    pub env: Vec<String>,
    /// See [`ProcessSpec::cwd`].
    pub cwd: String,
    /// See [`ProcessSpec::user`].
    pub user: String,
    /// The container's hostname (left as the host's when empty).
    pub hostname: String,
    /// Bind mounts, mounted shallowest target first.
    pub volumes: Vec<Volume>,
    /// Host network or none.
    pub network: Network,
    /// Mount the root filesystem read-only (`--read-only`).
    pub read_only: bool,
    /// See [`ProcessSpec::tty`].
    pub tty: bool,
    /// See [`ProcessSpec::interactive`].
    pub interactive: bool,
    /// Run a minimal init as PID 1 that forwards signals to the process and reaps zombies
    /// (`--init`); otherwise the process itself is PID 1, as in docker.
    pub init: bool,
    /// See [`ProcessSpec::capabilities`].
    pub capabilities: Option<u64>,
    /// tmpfs mounts, with the volumes in order of depth.
    pub tmpfs: Vec<Tmpfs>,
    /// `--privileged`: no masked or read-only paths in `/proc` and `/sys`, `/sys` writable.
    pub unmasked: bool,
    /// The container ID naming its cgroup `stencil/ID` ([`super::cgroup`]); `None` runs the
    /// process in ours (a build step).
    pub cgroup: Option<String>,
    /// Limits written into that cgroup. When any is set, a cgroup that cannot be made is
    /// an error; otherwise the container runs without one, with a warning.
    pub resources: Resources,
    /// See [`ProcessSpec::groups`].
    pub groups: Vec<String>,
    /// See [`ProcessSpec::rlimits`].
    pub rlimits: Vec<Rlimit>,
    /// The size of `/dev/shm` in bytes (`--shm-size`; `None`: docker's 64 MiB).
    pub shm_size: Option<u64>,
}

impl Spec {
    /// The process part of this spec.
    pub fn process(&self) -> ProcessSpec {
        ProcessSpec {
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            tty: self.tty,
            interactive: self.interactive,
            capabilities: self.capabilities,
            groups: self.groups.clone(),
            rlimits: self.rlimits.clone(),
        }
    }
}

/// The standard streams of a container process.
#[derive(Debug, Default)]
pub enum Stdio {
    /// Ours: stdin (only with `interactive`), stdout and stderr; with `tty`, our terminal
    /// relayed to the container's.
    #[default]
    Inherit,
    /// As [`Stdio::Inherit`], with the output also appended to `log` (docker keeps the
    /// logs of foreground containers too). Without `tty` the process writes into pipes
    /// that [`Started::wait`] copies to our standard output and error and to the log, so
    /// its output is not our terminal, as under docker; with `tty`, what the terminal
    /// shows is copied to both.
    Logged {
        /// The log, opened for appending.
        log: OwnedFd,
    },
    /// Given descriptors (the pipes into a detached container's log); `stdin: None`
    /// means `/dev/null`.
    /// With `tty`, the terminal's output is copied to `stdout` by [`Started::wait`].
    Files {
        /// Standard input, or `/dev/null`.
        stdin: Option<OwnedFd>,
        /// Standard output.
        stdout: OwnedFd,
        /// Standard error.
        stderr: OwnedFd,
    },
}

/// Why a container process could not be started; [`RunError::exit_code`] is docker's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The command is not in `PATH`, or an explicit path does not exist (127).
    #[error("exec: \"{command}\": {reason}")]
    NotFound {
        /// `args[0]`.
        command: String,
        /// `executable file not found in $PATH` or `stat PATH: no such file or directory`.
        reason: String,
    },
    /// The command exists but cannot be executed: permission, directory, format (126).
    #[error("exec: \"{command}\": {reason}")]
    CannotExecute {
        /// `args[0]`.
        command: String,
        /// Such as `permission denied` or `is a directory`.
        reason: String,
    },
    /// The `--user` value does not resolve in the container (125).
    #[error(transparent)]
    User(#[from] UserError),
    /// The spec itself is unusable: no command, relative working directory, NUL byte (125).
    #[error("{0}")]
    InvalidSpec(String),
    /// The cgroup for the container's limits could not be made or joined (125).
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Setting up the container failed (125).
    #[error("{what}: {source}")]
    Setup {
        /// What was being done, naming the path or object involved.
        what: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// docker's exit code for this error: 127 not found, 126 not executable, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::NotFound { .. } => 127,
            RunError::CannotExecute { .. } => 126,
            _ => 125,
        }
    }

    fn setup(what: impl Into<String>, source: impl Into<io::Error>) -> RunError {
        RunError::Setup {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// A started container process.
#[derive(Debug)]
pub struct Started {
    pid: i32,
    relay: Option<Relay>,
    tee: Option<Tee>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tee")
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("master", &self.master)
            .finish()
    }
}

impl Started {
    /// Host pid of the container's PID 1 (for `exec`, of the exec'd process).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Takes the terminal master of a `tty` process, for a caller that relays it itself;
    /// [`Started::wait`] then only waits.
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.relay.take().map(|relay| relay.master)
    }

    /// Waits for the process (relaying its terminal, if any) and returns docker's exit
    /// code: its own status, or 128 + the signal that killed it.
    pub fn wait(self) -> Result<i32, RunError> {
        let pid = self.pid;
        let status = match (self.relay, self.tee) {
            (Some(relay), _) => relay.run(pid).map_err(|e| {
                RunError::setup(format!("cannot relay the terminal of process {pid}"), e)
            })?,
            (None, Some(tee)) => {
                let mut ended = None;
                tee.pump(pidfd(pid), || {
                    match waitpid(
                        Pid::from_raw(pid),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    ) {
                        Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                            ended = Some(status);
                            Ok(true)
                        }
                        Ok(_) | Err(Errno::EINTR) => Ok(false),
                        Err(e) => Err(e.into()),
                    }
                })
                .map_err(|e| {
                    RunError::setup(format!("cannot copy the output of process {pid}"), e)
                })?;
                match ended {
                    Some(status) => status,
                    None => wait_blocking(pid)?,
                }
            }
            (None, None) => wait_blocking(pid)?,
        };
        Ok(exit_code(status))
    }

    /// As [`Started::wait`], forwarding SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
    /// received by stencil to the process, and window-size changes (SIGWINCH) to its
    /// terminal. Our previous handlers are restored before returning. The handlers are
    /// process-wide: one foreground container per process at a time.
    pub fn wait_forwarding_signals(self) -> Result<i32, RunError> {
        let master = self
            .relay
            .as_ref()
            .map_or(-1, |relay| relay.master.as_raw_fd());
        let _forwarding = Forwarding::install(self.pid, master);
        self.wait()
    }
}

/// A pidfd of `pid`, readable once it has exited; `None` on kernels without `pidfd_open`.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a fresh descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn wait_blocking(pid: i32) -> Result<WaitStatus, RunError> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(RunError::setup(format!("cannot wait for process {pid}"), e));
            }
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(status),
            Ok(_) => continue,
        }
    }
}

fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 125,
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
static TERMINAL_MASTER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn forward_signal(signal: libc::c_int) {
    // Only async-signal-safe calls: kill and ioctl.
    if signal == libc::SIGWINCH {
        let master = TERMINAL_MASTER.load(Ordering::Relaxed);
        if master >= 0 {
            // SAFETY: TIOCGWINSZ/TIOCSWINSZ on integer descriptors with a local winsize.
            unsafe {
                let mut size: libc::winsize = std::mem::zeroed();
                if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) == 0
                    || libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0
                {
                    libc::ioctl(master, libc::TIOCSWINSZ, &size);
                }
            }
        }
        return;
    }
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received by stencil to
/// process `pid` until the value returned is dropped (`attach`'s signal proxy). The
/// handlers are process-wide: one forwarding per process at a time.
pub fn forward_signals(pid: i32) -> impl Drop {
    Forwarding::install(pid, -1)
}

/// Signal handlers that forward to a container process, restored on drop.
struct Forwarding {
    saved: Vec<(Signal, SigAction)>,
}

impl Forwarding {
    fn install(pid: i32, master: RawFd) -> Forwarding {
        FORWARD_TO.store(pid, Ordering::Relaxed);
        TERMINAL_MASTER.store(master, Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(forward_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let saved = FORWARDED_SIGNALS
            .iter()
            .filter_map(|raw| Signal::try_from(*raw).ok())
            // SAFETY: the handler only makes async-signal-safe calls.
            .filter_map(|signal| {
                unsafe { sigaction(signal, &action) }
                    .ok()
                    .map(|old| (signal, old))
            })
            .collect();
        Forwarding { saved }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (signal, old) in &self.saved {
            // SAFETY: restoring the handler that was installed before.
            let _ = unsafe { sigaction(*signal, old) };
        }
        FORWARD_TO.store(0, Ordering::Relaxed);
        TERMINAL_MASTER.store(-1, Ordering::Relaxed);
    }
}

fn cstring(value: impl AsRef<[u8]>, what: &str) -> Result<CString, RunError> {
    CString::new(value.as_ref().to_vec())
        .map_err(|_| RunError::InvalidSpec(format!("{what} contains a NUL byte")))
}

/// Lexically cleans an absolute container path into its components (`..` stops at `/`).
fn components(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts
}

/// Every prefix of `parts` as an absolute path: `/a`, `/a/b`, ….
fn prefixes(parts: &[String]) -> Vec<String> {
    (1..=parts.len())
        .map(|n| format!("/{}", parts[..n].join("/")))
        .collect()
}

/// A descriptor numbered 3 or more, so that the child's dup2 onto 0–2 never hits it.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, RunError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = sys::dup_above(fd.as_raw_fd(), 3).map_err(|e| {
        RunError::setup(
            "cannot duplicate a descriptor",
            io::Error::from_raw_os_error(e),
        )
    })?;
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Parent-side resources that must live until the child has exec'd.
struct Channels {
    report_read: OwnedFd,
    report_write: OwnedFd,
    tty_parent: Option<OwnedFd>,
    tty_child: Option<OwnedFd>,
}

impl Channels {
    fn new(tty: bool) -> Result<Channels, RunError> {
        let (read, write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| RunError::setup("cannot create a pipe", e))?;
        let (tty_parent, tty_child) = if tty {
            let (a, b) = socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| RunError::setup("cannot create a socket pair", e))?;
            (Some(a), Some(above_stdio(b)?))
        } else {
            (None, None)
        };
        Ok(Channels {
            report_read: read,
            report_write: above_stdio(write)?,
            tty_parent,
            tty_child,
        })
    }
}

/// Streams as the parent keeps them, and as the child plan refers to them.
struct Streams {
    stdin: StdinPlan,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin_owned: Option<OwnedFd>,
    relay_input: Option<OwnedFd>,
    relay_output: Option<OwnedFd>,
    relay_log: Option<LogWriter>,
    tee: Option<Tee>,
    window: Option<libc::winsize>,
}

fn dup_std(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: 0, 1 and 2 stay open for the life of the process.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map_err(|e| RunError::setup(format!("cannot duplicate descriptor {fd}"), e))
}

impl Streams {
    fn new(stdio: Stdio, process: &ProcessSpec) -> Result<Streams, RunError> {
        let mut streams = Streams {
            stdin: StdinPlan::Null,
            stdout: None,
            stderr: None,
            stdin_owned: None,
            relay_input: None,
            relay_output: None,
            relay_log: None,
            tee: None,
            window: None,
        };
        // The log of a foreground container; otherwise streams as for `Inherit`.
        let (stdio, log) = match stdio {
            Stdio::Logged { log } => (Stdio::Inherit, Some(log)),
            other => (other, None),
        };
        match (stdio, process.tty) {
            (Stdio::Inherit | Stdio::Logged { .. }, false) => {
                if process.interactive {
                    streams.stdin = StdinPlan::Keep;
                }
                if let Some(log) = log {
                    let pipe = || {
                        pipe2(OFlag::O_CLOEXEC)
                            .map_err(|e| RunError::setup("cannot create a pipe", e))
                    };
                    let (out_read, out_write) = pipe()?;
                    let (err_read, err_write) = pipe()?;
                    streams.stdout = Some(above_stdio(out_write)?);
                    streams.stderr = Some(above_stdio(err_write)?);
                    streams.tee = Some(Tee::new(out_read, err_read, LogWriter::new(log)));
                }
            }
            (Stdio::Inherit | Stdio::Logged { .. }, true) => {
                streams.relay_log = log.map(LogWriter::new);
                if process.interactive {
                    streams.relay_input = Some(dup_std(0)?);
                }
                streams.relay_output = Some(dup_std(1)?);
                // SAFETY: 0 and 1 stay open for the life of the process.
                let (input, output) =
                    unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
                streams.window = window_size(input).or_else(|| window_size(output));
            }
            (
                Stdio::Files {
                    stdin,
                    stdout,
                    stderr,
                },
                false,
            ) => {
                if let (Some(fd), true) = (stdin, process.interactive) {
                    let fd = above_stdio(fd)?;
                    streams.stdin = StdinPlan::Fd(fd.as_raw_fd());
                    streams.stdin_owned = Some(fd);
                }
                streams.stdout = Some(above_stdio(stdout)?);
                streams.stderr = Some(above_stdio(stderr)?);
            }
            (Stdio::Files { stdin, stdout, .. }, true) => {
                streams.relay_input = stdin.filter(|_| process.interactive);
                streams.relay_output = Some(stdout);
            }
        }
        Ok(streams)
    }
}

/// Resolves the user and builds the final-process part of a plan.
fn process_plan(
    process: &ProcessSpec,
    user: &ResolvedUser,
    channels: &Channels,
    streams: &Streams,
) -> Result<ProcessPlan, RunError> {
    let Some(command) = process.args.first() else {
        return Err(RunError::InvalidSpec(
            "no command specified: give one after the image, or set Cmd or Entrypoint".into(),
        ));
    };
    if !process.cwd.starts_with('/') {
        return Err(RunError::InvalidSpec(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            process.cwd
        )));
    }
    let argv = process
        .args
        .iter()
        .map(|arg| cstring(arg, "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let envp = env
        .iter()
        .map(|e| cstring(e, "an environment variable"))
        .collect::<Result<Vec<_>, _>>()?;
    let search = !command.contains('/');
    let candidates = if search {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| cstring(format!("{}/{command}", dir.trim_end_matches('/')), "PATH"))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![cstring(command, "the command")?]
    };
    let cwd_parts = components(&process.cwd);
    let cwd_prefixes = prefixes(&cwd_parts)
        .iter()
        .map(|p| cstring(p, "the working directory"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProcessPlan {
        argv: CStrings::new(argv),
        envp: CStrings::new(envp),
        candidates,
        search,
        cwd: cstring(format!("/{}", cwd_parts.join("/")), "the working directory")?,
        cwd_prefixes,
        uid: user.uid,
        gid: user.gid,
        groups: user.additional_gids.clone(),
        rlimits: process
            .rlimits
            .iter()
            .map(|limit| (limit.resource, limit.soft, limit.hard))
            .collect(),
        capabilities: process.capabilities.unwrap_or_else(caps::default_mask),
        last_capability: caps::last_capability(),
        tty: channels
            .tty_child
            .as_ref()
            .map(|socket| (socket.as_raw_fd(), streams.window)),
        stdin: match streams.stdin {
            StdinPlan::Keep => StdinPlan::Keep,
            StdinPlan::Null => StdinPlan::Null,
            StdinPlan::Fd(fd) => StdinPlan::Fd(fd),
        },
        stdout: streams.stdout.as_ref().map(AsRawFd::as_raw_fd),
        stderr: streams.stderr.as_ref().map(AsRawFd::as_raw_fd),
        report: channels.report_write.as_raw_fd(),
    })
}

/// The mounts and nodes of a container's `/proc`, `/dev` and `/sys`, with a description of
/// each for error messages; volumes go after `/sys`, masks after the volumes.
fn setup_steps(spec: &Spec) -> Result<(Vec<Step>, Vec<String>), RunError> {
    let volumes = &spec.volumes;
    let mut steps = Vec::new();
    let mut what = Vec::new();
    let c = |s: &str| CString::new(s).map_err(|_| RunError::InvalidSpec(format!("{s} has a NUL")));
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mkdir =
        |steps: &mut Vec<Step>, what: &mut Vec<String>, path: &str, mode| -> Result<(), RunError> {
            steps.push(Step::Mkdir {
                path: c(path)?,
                mode,
            });
            what.push(format!("cannot create {path}"));
            Ok(())
        };
    let mount = |steps: &mut Vec<Step>,
                 what: &mut Vec<String>,
                 fstype: &str,
                 target: &str,
                 flags,
                 data: Option<&str>|
     -> Result<(), RunError> {
        steps.push(Step::Mount {
            source: Some(c(fstype)?),
            target: c(target)?,
            fstype: Some(c(fstype)?),
            flags,
            data: data.map(c).transpose()?,
            optional: false,
        });
        what.push(format!("cannot mount {fstype} on {target}"));
        Ok(())
    };
    mkdir(&mut steps, &mut what, "/proc", 0o555)?;
    mount(
        &mut steps,
        &mut what,
        "proc",
        "/proc",
        nosuid_nodev_noexec,
        None,
    )?;
    mkdir(&mut steps, &mut what, "/dev", 0o755)?;
    mount(
        &mut steps,
        &mut what,
        "tmpfs",
        "/dev",
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = format!("/dev/{name}");
        steps.push(Step::Mknod {
            path: c(&path)?,
            mode: 0o666,
            major,
            minor,
        });
        what.push(format!("cannot create device {path}"));
    }
    for (target, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/core"),
    ] {
        steps.push(Step::Symlink {
            target: c(target)?,
            link: c(link)?,
        });
        what.push(format!("cannot create symlink {link}"));
    }
    mkdir(&mut steps, &mut what, "/dev/pts", 0o755)?;
    mount(
        &mut steps,
        &mut what,
        "devpts",
        "/dev/pts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mkdir(&mut steps, &mut what, "/dev/shm", 0o1777)?;
    mount(
        &mut steps,
        &mut what,
        "tmpfs",
        "/dev/shm",
        nosuid_nodev_noexec,
        Some(
            format!(
                "mode=1777,size={}",
                spec.shm_size.unwrap_or(DEFAULT_SHM_SIZE)
            )
            .as_str(),
        ),
    )?;
    mkdir(&mut steps, &mut what, "/dev/mqueue", 0o755)?;
    mount(
        &mut steps,
        &mut what,
        "mqueue",
        "/dev/mqueue",
        nosuid_nodev_noexec,
        None,
    )?;
    mkdir(&mut steps, &mut what, "/sys", 0o555)?;
    mount(
        &mut steps,
        &mut what,
        "sysfs",
        "/sys",
        nosuid_nodev_noexec | if spec.unmasked { 0 } else { libc::MS_RDONLY },
        None,
    )?;
    // Shallowest targets first, so that a volume inside another lands on top of it; a
    // tmpfs and a volume at one depth go in the order given, volumes first.
    let mut order: Vec<(usize, bool, usize)> = (0..volumes.len())
        .map(|i| (components(&volumes[i].container).len(), false, i))
        .chain(
            spec.tmpfs
                .iter()
                .enumerate()
                .map(|(i, tmpfs)| (components(&tmpfs.container).len(), true, i)),
        )
        .collect();
    order.sort();
    for (_, is_tmpfs, index) in order {
        if !is_tmpfs {
            steps.push(Step::Volume(index));
            what.push(format!(
                "cannot mount volume {} on {}",
                volumes[index].host.display(),
                volumes[index].container
            ));
            continue;
        }
        let tmpfs = &spec.tmpfs[index];
        if !tmpfs.container.starts_with('/') {
            return Err(RunError::InvalidSpec(format!(
                "invalid tmpfs target {:?}: it must be an absolute path",
                tmpfs.container
            )));
        }
        let parts = components(&tmpfs.container);
        if parts.is_empty() {
            return Err(RunError::InvalidSpec(
                "invalid tmpfs target \"/\": the root filesystem cannot be a tmpfs".to_owned(),
            ));
        }
        for prefix in prefixes(&parts) {
            mkdir(&mut steps, &mut what, &prefix, 0o755)?;
        }
        let target = format!("/{}", parts.join("/"));
        mount(
            &mut steps,
            &mut what,
            "tmpfs",
            &target,
            tmpfs.flags,
            (!tmpfs.data.is_empty()).then_some(tmpfs.data.as_str()),
        )?;
    }
    if spec.unmasked {
        return Ok((steps, what));
    }
    // docker's masked paths: unreadable files, empty read-only directories.
    for path in [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ] {
        let directory = matches!(
            path,
            "/proc/asound"
                | "/proc/acpi"
                | "/proc/scsi"
                | "/sys/firmware"
                | "/sys/devices/virtual/powercap"
        );
        steps.push(Step::Mount {
            source: Some(c(if directory { "tmpfs" } else { "/dev/null" })?),
            target: c(path)?,
            fstype: directory.then(|| c("tmpfs")).transpose()?,
            flags: if directory {
                libc::MS_RDONLY
            } else {
                libc::MS_BIND
            },
            data: None,
            optional: true,
        });
        what.push(format!("cannot mask {path}"));
    }
    // docker's read-only paths: bind each onto itself, then make that bind read-only.
    for path in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        for flags in [
            libc::MS_BIND | libc::MS_REC,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev_noexec,
        ] {
            steps.push(Step::Mount {
                source: Some(c(path)?),
                target: c(path)?,
                fstype: None,
                flags,
                data: None,
                optional: true,
            });
            what.push(format!("cannot make {path} read-only"));
        }
    }
    Ok((steps, what))
}

fn volume_plans(volumes: &[Volume]) -> Result<Vec<VolumePlan>, RunError> {
    volumes
        .iter()
        .map(|volume| {
            if !volume.container.starts_with('/') {
                return Err(RunError::InvalidSpec(format!(
                    "invalid volume target {:?}: it must be an absolute path",
                    volume.container
                )));
            }
            let parts = components(&volume.container);
            if parts.is_empty() {
                return Err(RunError::InvalidSpec(format!(
                    "invalid volume target {:?}: cannot mount over /",
                    volume.container
                )));
            }
            let metadata = match std::fs::metadata(&volume.host) {
                Ok(metadata) => metadata,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&volume.host).map_err(|e| {
                        RunError::setup(
                            format!("cannot create volume directory {}", volume.host.display()),
                            e,
                        )
                    })?;
                    std::fs::metadata(&volume.host).map_err(|e| {
                        RunError::setup(format!("cannot read {}", volume.host.display()), e)
                    })?
                }
                Err(e) => {
                    return Err(RunError::setup(
                        format!("cannot read volume source {}", volume.host.display()),
                        e,
                    ));
                }
            };
            let all = prefixes(&parts);
            let (target, parents) = all.split_last().unwrap_or((&all[0], &[]));
            Ok(VolumePlan {
                source: cstring(volume.host.as_os_str().as_bytes(), "a volume path")?,
                read_only: volume.read_only,
                is_dir: metadata.is_dir(),
                parents: parents
                    .iter()
                    .map(|p| cstring(p, "a volume target"))
                    .collect::<Result<_, _>>()?,
                target: cstring(target, "a volume target")?,
            })
        })
        .collect()
}

/// Reads the child's report: `None` once it has exec'd, or its failure.
fn read_report(read: &OwnedFd) -> Result<Option<Failure>, RunError> {
    let mut record = [0u8; FAILURE_LEN];
    let mut filled = 0;
    while filled < FAILURE_LEN {
        match nix::unistd::read(read.as_fd(), &mut record[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RunError::setup("cannot read the child's report", e)),
        }
    }
    if filled < FAILURE_LEN {
        return Ok(None);
    }
    Ok(Failure::decode(&record))
}

fn receive_master(socket: &OwnedFd) -> Result<OwnedFd, RunError> {
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| RunError::setup("cannot receive the container's terminal", e))?;
    for message in msg
        .cmsgs()
        .map_err(|e| RunError::setup("cannot receive the container's terminal", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = message
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS gave us this descriptor; nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(RunError::setup(
        "cannot receive the container's terminal",
        io::Error::from_raw_os_error(libc::EPROTO),
    ))
}

/// What a failure means, for the messages of [`describe`].
struct Context<'a> {
    command: &'a str,
    candidates: &'a [CString],
    steps: &'a [String],
    spec_cwd: &'a str,
    rootfs: &'a Path,
    hostname: &'a str,
    volumes: &'a [Volume],
    user: &'a ResolvedUser,
    target_pid: i32,
}

fn errno_text(errno: i32) -> String {
    let text = Errno::from_raw(errno).desc().to_owned();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn describe(failure: Failure, context: &Context<'_>) -> RunError {
    let command = context.command.to_owned();
    let source = io::Error::from_raw_os_error(failure.errno);
    let index = failure.index as usize;
    let what = match failure.stage {
        Stage::NotFound => {
            return RunError::NotFound {
                command,
                reason: "executable file not found in $PATH".into(),
            };
        }
        Stage::Exec if failure.errno == libc::ENOENT => {
            let path = context
                .candidates
                .get(index)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_else(|| command.clone());
            return RunError::NotFound {
                command,
                reason: format!("stat {path}: no such file or directory"),
            };
        }
        Stage::Exec => {
            return RunError::CannotExecute {
                command,
                reason: errno_text(failure.errno),
            };
        }
        Stage::Hostname => format!("cannot set the hostname to {:?}", context.hostname),
        Stage::MountPrivate => "cannot make the container's mounts private".to_owned(),
        Stage::Loopback => "cannot bring up the loopback interface".to_owned(),
        Stage::OpenVolume => match context.volumes.get(index) {
            Some(volume) => format!("cannot open volume source {}", volume.host.display()),
            None => "cannot open a volume source".to_owned(),
        },
        Stage::BindRoot => format!(
            "cannot bind-mount the root filesystem {}",
            context.rootfs.display()
        ),
        Stage::PivotRoot => format!("cannot pivot_root into {}", context.rootfs.display()),
        Stage::Step => context
            .steps
            .get(index)
            .cloned()
            .unwrap_or_else(|| "cannot prepare the container".to_owned()),
        Stage::Cwd if index == 0 => {
            format!("cannot create the working directory {}", context.spec_cwd)
        }
        Stage::Cwd => format!(
            "cannot change to the working directory {}",
            context.spec_cwd
        ),
        Stage::CwdEscaped => format!(
            "the working directory {} resolves outside the container's root filesystem",
            context.spec_cwd
        ),
        Stage::ReadOnly => "cannot remount the root filesystem read-only".to_owned(),
        Stage::Init => "cannot start the container's init process".to_owned(),
        Stage::Setns => {
            let name = namespaces::joined_by_exec()
                .get(index)
                .map_or("?", |(name, _)| *name);
            format!(
                "cannot join the {name} namespace of process {}",
                context.target_pid
            )
        }
        Stage::Clone => format!(
            "cannot start a process in the namespaces of process {}",
            context.target_pid
        ),
        Stage::Pty => "cannot allocate a terminal in the container".to_owned(),
        Stage::Stdio => "cannot set up the process's standard streams".to_owned(),
        Stage::Capabilities => "cannot set the process's capabilities".to_owned(),
        Stage::User => format!(
            "cannot switch to user {}:{}",
            context.user.uid, context.user.gid
        ),
        Stage::NoNewPrivs => "cannot set no_new_privs".to_owned(),
        Stage::CloseFds => "cannot close inherited descriptors".to_owned(),
        Stage::Cgroup => "cannot join the container's cgroup (its resource limits)".to_owned(),
        Stage::Rlimit => format!(
            "cannot set the resource limit {} (--ulimit)",
            rlimit_name(index as u32)
        ),
    };
    RunError::Setup { what, source }
}

/// Waits for a failed child so that it leaves no zombie.
fn reap(pid: i32) {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

fn finish_start(
    pid: Option<i32>,
    channels: Channels,
    streams: Streams,
    context: &Context<'_>,
) -> Result<Started, RunError> {
    let Channels {
        report_read,
        report_write,
        tty_parent,
        tty_child,
    } = channels;
    // Our copies of the child's ends must go, or the read below never sees end-of-file.
    drop(tty_child);
    drop(report_write);
    let failure = read_report(&report_read)?;
    if let Some(failure) = failure {
        if let Some(pid) = pid {
            reap(pid);
        }
        return Err(describe(failure, context));
    }
    let Some(pid) = pid else {
        return Err(RunError::setup(
            format!(
                "cannot start a process in container process {}",
                context.target_pid
            ),
            io::Error::from_raw_os_error(libc::ECHILD),
        ));
    };
    let relay = match &tty_parent {
        Some(socket) => {
            let master = receive_master(socket)?;
            let output = match streams.relay_output {
                Some(output) => output,
                None => dup_std(1)?,
            };
            Some(Relay {
                master,
                input: streams.relay_input,
                output,
                log: streams.relay_log,
            })
        }
        None => None,
    };
    let mut tee = streams.tee;
    if let Some(tee) = &mut tee {
        tee.hold(streams.stdout.into_iter().chain(streams.stderr));
    }
    Ok(Started { pid, relay, tee })
}

/// Creates the cgroup of container `id`. Without limits a cgroup is only for `stats` and
/// `pause`, so failing to make one is a warning, not a reason to refuse the container.
fn make_cgroup(id: &str, resources: &Resources) -> Result<Option<Cgroup>, RunError> {
    match Cgroup::create(id, resources) {
        Ok(cgroup) => Ok(Some(cgroup)),
        Err(error) if resources.any() => Err(error.into()),
        Err(error) => {
            tracing::warn!("the container runs without a cgroup (no stats, no pause): {error}");
            Ok(None)
        }
    }
}

/// Starts `spec` in a new container; returns once the process has exec'd.
pub fn start(spec: &Spec, stdio: Stdio) -> Result<Started, RunError> {
    let process = spec.process();
    let root = open(
        &spec.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        RunError::setup(
            format!("cannot open root filesystem {}", spec.rootfs.display()),
            e,
        )
    })?;
    let user = user::resolve_adding(&root, &spec.user, &spec.groups)?;
    if spec.cwd.starts_with('/') {
        // Created here, where symlinks can be resolved inside the rootfs with openat2, as
        // docker does; the child only changes into it (and checks where it landed).
        rootpath::create_dir_all_in_root(root.as_fd(), &spec.cwd).map_err(|e| {
            RunError::setup(
                format!("cannot create the working directory {}", spec.cwd),
                e,
            )
        })?;
    }
    // Directory mount points too: a symlink on the way leads to a directory made inside
    // the rootfs (the child, in its root, follows the link to it). Errors are the child's
    // to report, at the mount.
    for volume in &spec.volumes {
        if volume.host.is_dir() || !volume.host.exists() {
            let _ = rootpath::create_dir_all_in_root(root.as_fd(), &volume.container);
        }
    }
    drop(root);
    let channels = Channels::new(spec.tty)?;
    let streams = Streams::new(stdio, &process)?;
    let (steps, step_descriptions) = setup_steps(spec)?;
    let volumes = volume_plans(&spec.volumes)?;
    let mut plan = ContainerPlan {
        hostname: (!spec.hostname.is_empty())
            .then(|| cstring(&spec.hostname, "the hostname"))
            .transpose()?,
        rootfs: cstring(spec.rootfs.as_os_str().as_bytes(), "the rootfs path")?,
        loopback: spec.network == Network::None,
        volume_fds: vec![-1; volumes.len()],
        volumes,
        steps,
        read_only: spec.read_only,
        init: spec.init,
        release: -1,
        cgroup: CgroupPlan::default(),
        process: process_plan(&process, &user, &channels, &streams)?,
    };
    let cgroup = match &spec.cgroup {
        Some(id) => make_cgroup(id, &spec.resources)?,
        None => None,
    };
    // Nothing of the container escapes its limits, and `pause` or `stats` see every
    // process: on v1 the child moves itself into the cgroup before anything else (the
    // kernel's fast move, see `Cgroup::self_move_files`); on v2 it waits on a pipe, its
    // mounts made, until this process has moved it.
    let mut release = None;
    if let Some(cgroup) = &cgroup {
        match cgroup.self_move_files() {
            Some(files) => {
                plan.cgroup = CgroupPlan {
                    tasks: files
                        .iter()
                        .map(|file| cstring(file.as_os_str().as_bytes(), "a cgroup file"))
                        .collect::<Result<_, _>>()?,
                    required: spec.resources.any(),
                };
            }
            None => {
                let (read, write) = pipe2(OFlag::O_CLOEXEC)
                    .map_err(|e| RunError::setup("cannot create a pipe", e))?;
                let read = above_stdio(read)?;
                plan.release = read.as_raw_fd();
                release = Some((read, write));
            }
        }
    }
    let flags = namespaces::clone_flags(spec.network == Network::None);
    // SAFETY: the child runs `child::run_container`, which only makes async-signal-safe
    // calls on the prepared plan and ends in execve or _exit.
    let pid = match unsafe { sys::clone_process(flags) } {
        Ok(0) => child::run_container(&mut plan),
        Ok(pid) => pid,
        Err(errno) => {
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.remove();
            }
            return Err(RunError::setup(
                "cannot create the container's namespaces",
                io::Error::from_raw_os_error(errno),
            ));
        }
    };
    if let (Some(cgroup), Some((read, write))) = (&cgroup, release) {
        drop(read);
        if let Err(error) = cgroup.attach(pid)
            // A child that failed its setup has exited already: its report says why.
            && error.source.raw_os_error() != Some(libc::ESRCH)
        {
            if spec.resources.any() {
                // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                let _ = cgroup.remove();
                return Err(error.into());
            }
            tracing::warn!("the container runs without a cgroup (no stats, no pause): {error}");
        }
        // Failing to release the child leaves it waiting for end-of-file, where it
        // exits: `finish_start` then reports no failure, and the wait sees the exit.
        let _ = sys::write_all(write.as_raw_fd(), &[1]);
    }
    let context = Context {
        command: &process.args[0],
        candidates: &plan.process.candidates,
        steps: &step_descriptions,
        spec_cwd: &process.cwd,
        rootfs: &spec.rootfs,
        hostname: &spec.hostname,
        volumes: &spec.volumes,
        user: &user,
        target_pid: 0,
    };
    finish_start(Some(pid), channels, streams, &context)
}

/// Starts `process` inside the running container whose PID 1 has host pid `target_pid`:
/// joins its IPC, UTS, network, PID and mount namespaces, then applies user, environment,
/// working directory and capabilities as [`start`] does. Returns once it has exec'd.
pub fn start_exec(
    target_pid: i32,
    process: &ProcessSpec,
    stdio: Stdio,
) -> Result<Started, RunError> {
    let root_path = format!("/proc/{target_pid}/root");
    let root = open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        RunError::setup(
            format!("cannot open {root_path} (is the container running?)"),
            e,
        )
    })?;
    let user = user::resolve_adding(&root, &process.user, &process.groups)?;
    drop(root);
    let namespace_fds = namespaces::open_namespaces(target_pid).map_err(|e| {
        RunError::setup(
            format!("cannot open the namespaces of process {target_pid}"),
            e,
        )
    })?;
    let channels = Channels::new(process.tty)?;
    let streams = Streams::new(stdio, process)?;
    let (pid_read, pid_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| RunError::setup("cannot create a pipe", e))?;
    let pid_write = above_stdio(pid_write)?;
    // As for `start`: the process is in the container's cgroup before it does anything,
    // so that the container's limits hold for it and `pause` freezes it (v1: it moves
    // itself; v2: it waits until this process moved it).
    let cgroup = Cgroup::of_process(target_pid);
    let self_move = cgroup.as_ref().and_then(Cgroup::self_move_files);
    let release = match (&cgroup, &self_move) {
        (Some(_), None) => {
            let (read, write) =
                pipe2(OFlag::O_CLOEXEC).map_err(|e| RunError::setup("cannot create a pipe", e))?;
            Some((above_stdio(read)?, write))
        }
        _ => None,
    };
    let plan = ExecPlan {
        namespaces: namespace_fds
            .iter()
            .map(|(fd, kind)| (fd.as_raw_fd(), *kind))
            .collect(),
        pid_report: pid_write.as_raw_fd(),
        release: release.as_ref().map_or(-1, |(read, _)| read.as_raw_fd()),
        cgroup: CgroupPlan {
            tasks: self_move
                .iter()
                .flatten()
                .map(|file| cstring(file.as_os_str().as_bytes(), "a cgroup file"))
                .collect::<Result<_, _>>()?,
            required: false,
        },
        process: process_plan(process, &user, &channels, &streams)?,
    };
    // SAFETY: the child runs `child::run_exec`, which only makes async-signal-safe calls
    // on the prepared plan and ends in execve or _exit.
    let intermediate = match unsafe { sys::clone_process(0) } {
        Ok(0) => child::run_exec(&plan),
        Ok(pid) => pid,
        Err(errno) => {
            return Err(RunError::setup(
                "cannot fork",
                io::Error::from_raw_os_error(errno),
            ));
        }
    };
    drop(pid_write);
    if let (Some(cgroup), Some((read, write))) = (&cgroup, release) {
        drop(read);
        if let Err(error) = cgroup.attach(intermediate) {
            tracing::warn!("the process runs outside its container's cgroup: {error}");
        }
        let _ = sys::write_all(write.as_raw_fd(), &[1]);
    }
    let mut pid_bytes = Vec::new();
    let read_pid = std::fs::File::from(pid_read).read_to_end(&mut pid_bytes);
    reap(intermediate);
    read_pid.map_err(|e| RunError::setup("cannot read the exec'd process id", e))?;
    let context = Context {
        command: process.args.first().map_or("", String::as_str),
        candidates: &plan.process.candidates,
        steps: &[],
        spec_cwd: &process.cwd,
        rootfs: Path::new(&root_path),
        hostname: "",
        volumes: &[],
        user: &user,
        target_pid,
    };
    // No pid: the intermediate failed before forking; its report says why.
    let pid = <[u8; 4]>::try_from(pid_bytes.as_slice())
        .ok()
        .map(i32::from_ne_bytes);
    finish_start(pid, channels, streams, &context)
}

/// `stencil exec`: runs `process` in the container whose PID 1 is `target_pid`, forwarding
/// signals, and returns docker's exit code.
pub fn exec(target_pid: i32, process: &ProcessSpec, stdio: Stdio) -> Result<i32, RunError> {
    start_exec(target_pid, process, stdio)?.wait_forwarding_signals()
}

/// Whether `fd` is a terminal (for callers choosing `tty`).
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_fd()).unwrap_or(false)
}
