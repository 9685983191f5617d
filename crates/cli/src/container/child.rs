//! The child side of a container: everything between `clone` and `execve`.
//!
//! The parent prepares a plan ([`ContainerPlan`], [`ExecPlan`]) with every string already a
//! `CString` and every list already sized, then clones. The child walks the plan with the
//! async-signal-safe calls of [`super::sys`] only (no allocation, no formatting, no locks),
//! because the parent may be multi-threaded. A failure is sent back as a fixed-size
//! [`Failure`] record on a close-on-exec pipe: the parent sees end-of-file when `execve`
//! succeeded, or the record, which it turns into a message with the descriptions it kept.
//!
//! This module does not decide anything (which mounts, which user, which capabilities):
//! `runtime` does, when it builds the plan.

use std::convert::Infallible;
use std::ffi::CString;

use libc::{c_char, c_int, c_ulong};

use super::sys;

/// Where the child stopped, with the index of the step, volume or candidate involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    Hostname = 1,
    MountPrivate,
    Loopback,
    OpenVolume,
    BindRoot,
    PivotRoot,
    Step,
    Cwd,
    CwdEscaped,
    ReadOnly,
    Init,
    Setns,
    Clone,
    Pty,
    Stdio,
    Capabilities,
    User,
    NoNewPrivs,
    CloseFds,
    Exec,
    NotFound,
    Cgroup,
    Rlimit,
}

impl Stage {
    const ALL: [Stage; 23] = [
        Stage::Hostname,
        Stage::MountPrivate,
        Stage::Loopback,
        Stage::OpenVolume,
        Stage::BindRoot,
        Stage::PivotRoot,
        Stage::Step,
        Stage::Cwd,
        Stage::CwdEscaped,
        Stage::ReadOnly,
        Stage::Init,
        Stage::Setns,
        Stage::Clone,
        Stage::Pty,
        Stage::Stdio,
        Stage::Capabilities,
        Stage::User,
        Stage::NoNewPrivs,
        Stage::CloseFds,
        Stage::Exec,
        Stage::NotFound,
        Stage::Cgroup,
        Stage::Rlimit,
    ];
}

/// A failure of the child: stage, index within it, errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub stage: Stage,
    pub index: u32,
    pub errno: i32,
}

/// Size of an encoded [`Failure`].
pub(crate) const FAILURE_LEN: usize = 12;

impl Failure {
    fn new(stage: Stage, index: usize, errno: i32) -> Failure {
        Failure {
            stage,
            index: index as u32,
            errno,
        }
    }

    fn encode(self) -> [u8; FAILURE_LEN] {
        let mut out = [0u8; FAILURE_LEN];
        out[..4].copy_from_slice(&(self.stage as u32).to_ne_bytes());
        out[4..8].copy_from_slice(&self.index.to_ne_bytes());
        out[8..].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    /// Decodes a record read from the report pipe.
    pub(crate) fn decode(bytes: &[u8; FAILURE_LEN]) -> Option<Failure> {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let stage = u32::from_ne_bytes(word(0));
        let stage = *Stage::ALL.iter().find(|s| **s as u32 == stage)?;
        Some(Failure {
            stage,
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        })
    }
}

fn at(stage: Stage, index: usize) -> impl Fn(i32) -> Failure {
    move |errno| Failure::new(stage, index, errno)
}

/// A list of C strings with the null-terminated pointer array `execve` wants.
pub(crate) struct CStrings {
    _owned: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStrings {
    pub(crate) fn new(owned: Vec<CString>) -> CStrings {
        let mut pointers: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        CStrings {
            _owned: owned,
            pointers,
        }
    }
}

/// One preparation step run inside the new root, after `pivot_root`.
pub(crate) enum Step {
    /// Create a directory (an existing one is fine).
    Mkdir { path: CString, mode: u32 },
    /// Mount a filesystem; `optional` steps are skipped when the target is missing.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
        optional: bool,
    },
    /// Create a character device node.
    Mknod {
        path: CString,
        mode: u32,
        major: u32,
        minor: u32,
    },
    /// Create a symlink.
    Symlink { target: CString, link: CString },
    /// Attach volume N (opened before `pivot_root`) at its target.
    Volume(usize),
}

/// A bind mount from the host, opened as a detached mount tree before `pivot_root`.
pub(crate) struct VolumePlan {
    pub source: CString,
    pub read_only: bool,
    pub is_dir: bool,
    /// Every proper prefix of the target, shortest first (`/a`, `/a/b` for `/a/b/c`).
    pub parents: Vec<CString>,
    pub target: CString,
}

/// What stdin becomes in the process.
pub(crate) enum StdinPlan {
    /// The caller's standard input, as is.
    Keep,
    /// `/dev/null` of the container.
    Null,
    /// This descriptor.
    Fd(c_int),
}

/// The final process: identity, working directory, standard streams, command.
pub(crate) struct ProcessPlan {
    pub argv: CStrings,
    pub envp: CStrings,
    /// The paths to try: one for a command with a `/`, else one per `PATH` entry.
    pub candidates: Vec<CString>,
    pub search: bool,
    pub cwd: CString,
    /// Every prefix of the working directory, shortest first, itself included.
    pub cwd_prefixes: Vec<CString>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// `(resource, soft, hard)`, set before the user changes (raising a hard limit needs
    /// root's CAP_SYS_RESOURCE).
    pub rlimits: Vec<(u32, u64, u64)>,
    pub capabilities: u64,
    pub last_capability: u32,
    /// For `-t`: the socket the pty master goes back on, and the size to give it.
    pub tty: Option<(c_int, Option<libc::winsize>)>,
    pub stdin: StdinPlan,
    pub stdout: Option<c_int>,
    pub stderr: Option<c_int>,
    /// Write end of the report pipe.
    pub report: c_int,
}

/// A new container: namespaces are already new when this runs (clone flags).
pub(crate) struct ContainerPlan {
    pub hostname: Option<CString>,
    pub rootfs: CString,
    pub loopback: bool,
    pub volumes: Vec<VolumePlan>,
    /// Filled in by the child: the detached tree of each volume.
    pub volume_fds: Vec<c_int>,
    pub steps: Vec<Step>,
    pub read_only: bool,
    pub init: bool,
    /// Read end of the pipe on which the parent says the child is in its cgroup (one
    /// byte); `-1` for none. End-of-file without the byte means the parent gave up.
    pub release: c_int,
    /// The cgroup the child moves itself into first (v1: `tasks` files; then `release`
    /// is `-1`).
    pub cgroup: CgroupPlan,
    pub process: ProcessPlan,
}

/// The cgroup files a new process writes `0` into to move itself (see
/// [`super::cgroup::Cgroup::self_move_files`]).
#[derive(Default)]
pub(crate) struct CgroupPlan {
    pub tasks: Vec<CString>,
    /// Whether failing to move is fatal (the container has limits).
    pub required: bool,
}

/// An `exec` into a running container.
pub(crate) struct ExecPlan {
    /// Namespace descriptors and their types, joined in order.
    pub namespaces: Vec<(c_int, c_int)>,
    /// Write end of the pipe that carries the host pid of the final process.
    pub pid_report: c_int,
    /// As [`ContainerPlan::release`]: the process joins the container's cgroup first.
    pub release: c_int,
    /// As [`ContainerPlan::cgroup`].
    pub cgroup: CgroupPlan,
    pub process: ProcessPlan,
}

/// Signals a foreground container receives from stencil; also what `--init` forwards.
pub(crate) const FORWARDED_SIGNALS: [c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

fn report_and_exit(report: c_int, failure: Failure) -> ! {
    let _ = sys::write_all(report, &failure.encode());
    let code = match failure.stage {
        Stage::NotFound => 127,
        Stage::Exec if failure.errno == libc::ENOENT => 127,
        Stage::Exec => 126,
        _ => 125,
    };
    sys::exit(code)
}

/// Runs a new container's child side; never returns.
pub(crate) fn run_container(plan: &mut ContainerPlan) -> ! {
    let report = plan.process.report;
    match setup_container(plan) {
        Err(failure) => report_and_exit(report, failure),
        Ok(never) => match never {},
    }
}

fn setup_container(plan: &mut ContainerPlan) -> Result<Infallible, Failure> {
    join_cgroup(&plan.cgroup)?;
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0) };
    if let Some(name) = &plan.hostname {
        sys::sethostname(name).map_err(at(Stage::Hostname, 0))?;
    }
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(at(Stage::MountPrivate, 0))?;
    if plan.loopback {
        sys::loopback_up().map_err(at(Stage::Loopback, 0))?;
    }
    for (index, volume) in plan.volumes.iter().enumerate() {
        let fd = sys::open_tree_clone(&volume.source).map_err(at(Stage::OpenVolume, index))?;
        if volume.read_only {
            sys::set_tree_read_only(fd).map_err(at(Stage::OpenVolume, index))?;
        }
        if let Some(slot) = plan.volume_fds.get_mut(index) {
            *slot = fd;
        }
    }
    sys::mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(at(Stage::BindRoot, 0))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // the container's root alone, without needing a directory for the old root inside it.
    sys::chdir(&plan.rootfs).map_err(at(Stage::PivotRoot, 0))?;
    sys::pivot_root(c".", c".").map_err(at(Stage::PivotRoot, 1))?;
    sys::umount2(c".", libc::MNT_DETACH).map_err(at(Stage::PivotRoot, 2))?;
    sys::chdir(c"/").map_err(at(Stage::PivotRoot, 3))?;
    for (index, step) in plan.steps.iter().enumerate() {
        run_step(step, &plan.volumes, &plan.volume_fds).map_err(at(Stage::Step, index))?;
    }
    create_cwd(&plan.process)?;
    if plan.read_only {
        sys::mount(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .map_err(at(Stage::ReadOnly, 0))?;
    }
    // The mounts above are the runtime's work, done while the parent moves this process
    // into its cgroup; nothing of the container runs before that is done.
    wait_for_release(plan.release);
    if plan.init {
        become_init(&plan.process)?;
    }
    finish_process(&plan.process)
}

fn run_step(step: &Step, volumes: &[VolumePlan], volume_fds: &[c_int]) -> Result<(), i32> {
    match step {
        Step::Mkdir { path, mode } => sys::mkdir_existing_ok(path, *mode),
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => match sys::mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ) {
            Err(libc::ENOENT) if *optional => Ok(()),
            other => other,
        },
        Step::Mknod {
            path,
            mode,
            major,
            minor,
        } => sys::mknod_char(path, *mode, *major, *minor),
        Step::Symlink { target, link } => sys::symlink(target, link),
        Step::Volume(index) => {
            let (Some(volume), Some(&fd)) = (volumes.get(*index), volume_fds.get(*index)) else {
                return Err(libc::EINVAL);
            };
            for parent in &volume.parents {
                sys::mkdir_existing_ok(parent, 0o755)?;
            }
            if volume.is_dir {
                sys::mkdir_existing_ok(&volume.target, 0o755)?;
            } else {
                sys::touch(&volume.target, 0o644)?;
            }
            let attached = sys::move_mount(fd, &volume.target);
            sys::close(fd);
            attached
        }
    }
}

fn create_cwd(process: &ProcessPlan) -> Result<(), Failure> {
    for prefix in &process.cwd_prefixes {
        sys::mkdir_existing_ok(prefix, 0o755).map_err(at(Stage::Cwd, 0))?;
    }
    Ok(())
}

/// `--init`: this process stays PID 1, forwarding signals to its one child and reaping
/// every orphan until that child exits; the child returns and becomes the container's
/// process.
fn become_init(process: &ProcessPlan) -> Result<(), Failure> {
    sys::set_signal_mask(libc::SIG_BLOCK, &FORWARDED_SIGNALS);
    sys::set_signal_mask(libc::SIG_BLOCK, &[libc::SIGCHLD]);
    // SAFETY: the child continues with async-signal-safe calls only (it is this module).
    let child = unsafe { sys::clone_process(0) }.map_err(at(Stage::Init, 0))?;
    if child == 0 {
        return Ok(());
    }
    sys::close(process.report);
    if let Some((socket, _)) = process.tty {
        sys::close(socket);
    }
    // SAFETY: the set is initialised by sigemptyset; sigwaitinfo writes into `info`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED_SIGNALS.iter().chain([libc::SIGCHLD].iter()) {
            libc::sigaddset(&mut set, *sig);
        }
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&set, &mut info);
            if sig < 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                libc::kill(child, sig);
                continue;
            }
            loop {
                let mut status: c_int = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    if libc::WIFEXITED(status) {
                        sys::exit(libc::WEXITSTATUS(status));
                    }
                    if libc::WIFSIGNALED(status) {
                        sys::exit(128 + libc::WTERMSIG(status));
                    }
                }
            }
        }
    }
}

/// Runs `exec`'s child side: joins the container's namespaces, then forks the final
/// process as a sibling (`CLONE_PARENT`) so that stencil waits for it directly.
/// Moves this (single-threaded) process into the cgroup of `plan` by writing `0` into
/// each `tasks` file; a failure is the process's only when the cgroup is required.
fn join_cgroup(plan: &CgroupPlan) -> Result<(), Failure> {
    for (index, tasks) in plan.tasks.iter().enumerate() {
        let moved = sys::open(tasks, libc::O_WRONLY | libc::O_CLOEXEC).and_then(|fd| {
            let written = sys::write_all(fd, b"0");
            sys::close(fd);
            written
        });
        match moved {
            Ok(()) => {}
            Err(errno) if plan.required => return Err(Failure::new(Stage::Cgroup, index, errno)),
            // Without limits the cgroup is for stats and pause: run without it.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Waits until the parent has moved this process into its cgroup (a byte on `release`);
/// exits when the parent gave up instead (end-of-file). `-1` means there is nothing to
/// wait for.
fn wait_for_release(release: c_int) {
    if release < 0 {
        return;
    }
    let released = sys::read_byte(release);
    sys::close(release);
    if released != Ok(true) {
        sys::exit(125);
    }
}

pub(crate) fn run_exec(plan: &ExecPlan) -> ! {
    let report = plan.process.report;
    if let Err(failure) = join_cgroup(&plan.cgroup) {
        report_and_exit(report, failure);
    }
    wait_for_release(plan.release);
    for (index, (fd, kind)) in plan.namespaces.iter().enumerate() {
        if let Err(errno) = sys::setns(*fd, *kind) {
            report_and_exit(report, Failure::new(Stage::Setns, index, errno));
        }
    }
    // SAFETY: the child continues with async-signal-safe calls only (it is this module).
    match unsafe { sys::clone_process(libc::CLONE_PARENT as u64) } {
        Err(errno) => report_and_exit(report, Failure::new(Stage::Clone, 0, errno)),
        Ok(0) => {
            let result = create_cwd(&plan.process).and_then(|()| finish_process(&plan.process));
            match result {
                Err(failure) => report_and_exit(report, failure),
                Ok(never) => match never {},
            }
        }
        Ok(pid) => {
            let _ = sys::write_all(plan.pid_report, &pid.to_ne_bytes());
            sys::exit(0)
        }
    }
}

/// The common end of both paths: terminal, standard streams, working directory, user,
/// capabilities, then `execve`.
fn finish_process(process: &ProcessPlan) -> Result<Infallible, Failure> {
    let mut slave = None;
    if let Some((socket, size)) = process.tty {
        let (master, pty) = sys::open_pty(c"/dev/ptmx").map_err(at(Stage::Pty, 0))?;
        // SAFETY: fchown and TIOCSWINSZ on descriptors this process just opened.
        unsafe {
            libc::fchown(pty, process.uid, u32::MAX);
            if let Some(size) = size {
                libc::ioctl(pty, libc::TIOCSWINSZ, &size as *const libc::winsize);
            }
        }
        sys::send_fd(socket, master).map_err(at(Stage::Pty, 1))?;
        sys::close(master);
        sys::close(socket);
        slave = Some(pty);
    }
    match slave {
        Some(pty) => {
            // SAFETY: setsid and TIOCSCTTY on a terminal this process holds.
            unsafe {
                if libc::setsid() < 0 {
                    return Err(Failure::new(Stage::Pty, 2, sys::errno()));
                }
                if libc::ioctl(pty, libc::TIOCSCTTY, 0) < 0 {
                    return Err(Failure::new(Stage::Pty, 3, sys::errno()));
                }
            }
            for target in 0..3 {
                sys::dup_onto(pty, target).map_err(at(Stage::Stdio, 1))?;
            }
            if pty > 2 {
                sys::close(pty);
            }
        }
        None => {
            // Move every source above 2 first, so that none is overwritten by another's dup2.
            let stdin = match process.stdin {
                StdinPlan::Keep => None,
                StdinPlan::Null => {
                    Some(sys::open(c"/dev/null", libc::O_RDWR).map_err(at(Stage::Stdio, 2))?)
                }
                StdinPlan::Fd(fd) => Some(fd),
            };
            let mut sources = [None; 3];
            for (slot, fd) in sources
                .iter_mut()
                .zip([stdin, process.stdout, process.stderr])
            {
                if let Some(fd) = fd {
                    *slot = Some(sys::dup_above(fd, 3).map_err(at(Stage::Stdio, 3))?);
                }
            }
            for (target, source) in sources.iter().enumerate() {
                if let Some(fd) = source {
                    sys::dup_onto(*fd, target as c_int).map_err(at(Stage::Stdio, 4))?;
                }
            }
        }
    }
    sys::chdir(&process.cwd).map_err(at(Stage::Cwd, 1))?;
    sys::cwd_is_reachable().map_err(at(Stage::CwdEscaped, 0))?;
    for &(resource, soft, hard) in &process.rlimits {
        sys::set_rlimit(resource, soft, hard).map_err(at(Stage::Rlimit, resource as usize))?;
    }
    sys::drop_bounding(process.capabilities, process.last_capability)
        .map_err(at(Stage::Capabilities, 0))?;
    sys::switch_user(process.uid, process.gid, &process.groups).map_err(at(Stage::User, 0))?;
    let kept = if process.uid == 0 {
        process.capabilities
    } else {
        0
    };
    sys::set_capabilities(kept).map_err(at(Stage::Capabilities, 1))?;
    sys::set_no_new_privs().map_err(at(Stage::NoNewPrivs, 0))?;
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o022) };
    sys::reset_signals();
    sys::cloexec_from(3).map_err(at(Stage::CloseFds, 0))?;
    let argv = &process.argv.pointers;
    let envp = &process.envp.pointers;
    if !process.search {
        let Some(path) = process.candidates.first() else {
            return Err(Failure::new(Stage::NotFound, 0, libc::ENOENT));
        };
        let mut errno = sys::execve(path, argv, envp);
        if errno == libc::EACCES && sys::is_directory(path) {
            errno = libc::EISDIR;
        }
        return Err(Failure::new(Stage::Exec, 0, errno));
    }
    for (index, path) in process.candidates.iter().enumerate() {
        let errno = sys::execve(path, argv, envp);
        match errno {
            // Not here, or not an executable file (a directory, no x bit): look further,
            // as Go's exec.LookPath (and so docker) does.
            libc::ENOENT | libc::ENOTDIR | libc::EACCES => continue,
            _ => return Err(Failure::new(Stage::Exec, index, errno)),
        }
    }
    Err(Failure::new(Stage::NotFound, 0, libc::ENOENT))
}
