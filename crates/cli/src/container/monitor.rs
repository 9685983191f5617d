//! Container lifecycles: foreground runs, the detached monitor, stop, kill, wait, exec.
//!
//! A foreground container (`run` without `-d`, `start -a`) is started by the CLI itself
//! with our standard streams, and the CLI records its exit; its output is copied to the
//! log too, as docker keeps the logs of every container. A detached container is
//! started by a *monitor*: the stencil binary re-executed as `stencil --root ROOT
//! __monitor ID` (a hidden verb) in a session of its own (`setsid`), with no
//! terminal. The monitor mounts the root filesystem, starts the container with its output
//! appended to `ROOT/containers/ID/log`, tells the CLI on a pipe whether the start worked
//! (`ok`, or `error CODE MESSAGE` with docker's 125/126/127), then waits for it, records
//! the exit status, unmounts, and removes the container when `--rm` asked. The CLI returns
//! as soon as the pipe says `ok`, so detached containers outlive it.
//!
//! The monitor also applies the restart policy (`--restart`): after an exit that the
//! policy restarts, the container is `restarting` for docker's delay, then started again
//! by the same monitor (`restart_loop`). A foreground container that is to restart is
//! handed to a new monitor. A stop by hand (`stop`, `rm -f`, `kill` with SIGKILL or the
//! stop signal) writes a mark file before signalling, which the monitor reads after each
//! exit and during the delay: the container then stays stopped until it is started by
//! hand.
//!
//! Other verbs act through the recorded state: `stop` and `kill` signal the recorded pid
//! (checked against its start time) and poll the state until the waiting process has
//! recorded the exit; when that process died too, the state reads as an unseen exit
//! (see [`crate::engine::Container`]). `wait` also gets the code of a container that
//! removed itself (`--rm`): see [`wait_exit`]. A container handed to an OCI runtime
//! (`--runtime`) is run by `RUNTIME run` in the foreground of its monitor, and the pid the
//! runtime writes is recorded as the built-in runtime's is.
//!
//! The runtime starts processes with `clone3` and async-signal-safe code only, so these
//! functions may be called from any thread; the CLI calls them outside any async runtime.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::caps;
use super::cgroup::Cgroup;
use super::health;
use super::logfile::{self, Filter, LogWriter, Printer, Stream, TailFinder};
use super::runtime::{self, Network, ProcessSpec, RunError, Spec, Stdio, Tmpfs, Volume};
use super::tee::Tee;
use super::{netfiles, oci};
use crate::engine::{Container, Engine, Status, now, process_start_time};

/// The hidden verb that runs a monitor.
pub const MONITOR_VERB: &str = "__monitor";

/// How often `stop`, `wait` and `logs -f` look at the state.
const POLL: Duration = Duration::from_millis(50);

/// A container that could not start, with docker's exit code for it (125, 126, 127).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartFailure {
    /// 125 for stencil's own failures, 126 not executable, 127 not found.
    pub code: i32,
    /// What went wrong.
    pub message: String,
}

impl StartFailure {
    fn from_run_error(error: &RunError) -> StartFailure {
        StartFailure {
            code: error.exit_code(),
            message: error.to_string(),
        }
    }
}

/// The runtime's description of `container`, rooted at `rootfs`, with the network files
/// of [`netfiles`] written into `dir` (the container's directory).
pub fn spec_of(container: &Container, rootfs: &Path, dir: &Path) -> Spec {
    let config = &container.config;
    let mut spec = Spec {
        rootfs: rootfs.to_path_buf(),
        args: config.args.clone(),
        env: config.env.clone(),
        cwd: config.working_dir.clone(),
        user: config.user.clone(),
        hostname: config.hostname.clone(),
        volumes: config
            .volumes
            .iter()
            .map(|v| Volume {
                host: v.host.clone(),
                container: v.container.clone(),
                read_only: v.read_only,
            })
            .collect(),
        network: if config.network_none {
            Network::None
        } else {
            Network::Host
        },
        read_only: config.read_only,
        tty: config.tty,
        interactive: config.interactive,
        init: config.init,
        capabilities: capabilities_of(container),
        tmpfs: config
            .tmpfs
            .iter()
            .filter_map(|(path, options)| match Tmpfs::parse(path, options) {
                Ok(tmpfs) => Some(tmpfs),
                // Checked at create: only a hand-edited config gets here.
                Err(error) => {
                    tracing::warn!(container = %container.record.name, "{error}");
                    None
                }
            })
            .collect(),
        unmasked: config.privileged,
        cgroup: Some(container.record.id.clone()),
        resources: config.resources,
        groups: config.group_add.clone(),
        rlimits: config.rlimits(),
        shm_size: config.shm_size,
    };
    match netfiles::network_files(
        &dir.join("etc"),
        rootfs,
        &spec.hostname,
        spec.network,
        &spec.volumes,
        &config.extra_hosts,
    ) {
        Ok(files) => spec.volumes.extend(files),
        // Names then resolve as the image has it; the container still starts.
        Err(error) => tracing::warn!(
            container = %container.record.name,
            "cannot write /etc/hosts, /etc/hostname and /etc/resolv.conf: {error}"
        ),
    }
    spec
}

/// The capabilities of `container`'s root processes: docker's default set unless
/// `--cap-add`, `--cap-drop` or `--privileged` changed it.
pub fn capabilities_of(container: &Container) -> Option<u64> {
    let config = &container.config;
    if config.cap_add.is_empty() && config.cap_drop.is_empty() && !config.privileged {
        return None;
    }
    match caps::container_mask(&config.cap_add, &config.cap_drop, config.privileged) {
        Ok(mask) => Some(mask),
        // Checked at create: only a hand-edited config gets here.
        Err(error) => {
            tracing::warn!(container = %container.record.name, "{error}; docker's default capabilities instead");
            None
        }
    }
}

/// Records that `container` could not start: it stays `created` (`exited` when its
/// restart policy was starting it again), with the error and docker's exit code,
/// unmounted (and removed with `--rm`).
fn record_failed_start(engine: &Engine, container: &mut Container, failure: &StartFailure) {
    if container.is_restarting() {
        // Its restart policy's start: it ran before, and stays exited.
        container.state.status = Status::Exited;
        container.state.finished_at = Some(now());
    } else {
        container.state.status = Status::Created;
    }
    container.state.pid = None;
    container.state.pid_start = None;
    container.state.monitor_pid = None;
    container.state.error = Some(failure.message.clone());
    container.state.exit_code = Some(failure.code);
    let _ = engine.set_container_state(container);
    let _ = engine.unmount_container(container);
    let _ = Cgroup::open(&container.record.id).and_then(|cgroup| cgroup.remove());
    if container.config.auto_remove && engine.remove_container(container, true).is_ok() {
        engine.remove_anonymous_volumes(&container.config);
    }
}

/// Records that `container` runs as host process `pid` (`None` when an external OCI
/// runtime runs it and only the waiting process is known), watched by this process.
fn record_running(engine: &Engine, container: &mut Container, pid: Option<i32>) -> Result<()> {
    container.state.status = Status::Running;
    container.state.pid = pid;
    container.state.pid_start = pid.and_then(process_start_time);
    container.state.monitor_pid = Some(std::process::id() as i32);
    container.state.exit_code = None;
    container.state.error = None;
    container.state.oom_killed = false;
    container.state.started_at = Some(now());
    container.state.finished_at = None;
    engine.set_container_state(container)
}

/// The file in `ROOT/containers/ID` holding the container's last exit code (`-1` when
/// unknown). `wait` holds a shared `flock` on it while it waits; the process that removes
/// a `--rm` container writes the code first, then takes the lock exclusively, so a waiter
/// reads the code from the record or, once the container is gone, from its open file.
const EXIT_FILE: &str = "exit";

/// How long the removal of a `--rm` container waits for `wait`ers to read its exit code.
const WAITERS_GRACE: Duration = Duration::from_secs(10);

/// Writes `code` into the exit file of container directory `dir`; the open file is kept
/// for the exclusive lock taken before removal.
fn write_exit_file(dir: &Path, code: Option<i32>) -> Option<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join(EXIT_FILE))
        .ok()?;
    file.write_all(format!("{}\n", code.unwrap_or(-1)).as_bytes())
        .ok()?;
    Some(file)
}

/// Waits (at most [`WAITERS_GRACE`]) until no `wait` holds the exit file, so that the
/// removal does not take the exit code from under it.
fn let_waiters_read(file: std::fs::File) -> Option<Flock<std::fs::File>> {
    let deadline = Instant::now() + WAITERS_GRACE;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Some(lock),
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

/// Records the exit of the process this process waited for, unmounts, removes with
/// `--rm`. A container removed meanwhile (`rm -f`) is left alone. Returns whether its
/// restart policy starts it again: it is then `restarting`, still watched by this
/// process, which must start it after a delay ([`restart_loop`]).
fn record_exit(engine: &Engine, id: &str, code: Option<i32>) -> bool {
    // The cgroup goes first: also when the container was removed meanwhile (`rm -f`).
    // Its OOM count is read before: it goes with it.
    let mut oom_killed = false;
    let removed = Cgroup::open(id).and_then(|cgroup| {
        oom_killed = cgroup.oom_kills().unwrap_or(0) > 0;
        cgroup.remove()
    });
    if let Err(error) = removed {
        tracing::warn!(container = id, "{error}");
    }
    let Ok(mut container) = engine.container(id) else {
        return false;
    };
    // Unmounted before the exit is recorded: a `start` that follows `wait` must not find
    // the old mount and lose it to this unmount.
    if let Err(error) = engine.unmount_container(&container) {
        tracing::warn!(container = id, "{error:#}");
    }
    // The mark of a hand-made stop is read after the exit: `stop` writes it before its
    // signal, so a container it stops never restarts.
    let restart = !container.config.auto_remove
        && container
            .config
            .restart
            .restarts(code, container.state.restart_count)
        && !stopped_by_hand(engine, id);
    if restart {
        // As docker's: counted when the restart is decided, shown during the delay.
        container.state.status = Status::Restarting;
        container.state.restart_count += 1;
    } else {
        container.state.status = Status::Exited;
        container.state.monitor_pid = None;
    }
    container.state.pid = None;
    container.state.pid_start = None;
    container.state.exit_code = code;
    container.state.paused = false;
    container.state.oom_killed = oom_killed;
    container.state.finished_at = Some(now());
    if let Err(error) = engine.set_container_state(&container) {
        tracing::warn!(container = id, "cannot record the exit: {error:#}");
    }
    let exit_file = write_exit_file(&engine.container_dir(id), code);
    if restart {
        return true;
    }
    if container.config.auto_remove {
        let _lock = exit_file.and_then(let_waiters_read);
        match engine.remove_container(&container, true) {
            Ok(()) => engine.remove_anonymous_volumes(&container.config),
            Err(error) => tracing::warn!(container = id, "cannot remove the container: {error:#}"),
        }
    }
    false
}

/// The file in `ROOT/containers/ID` whose presence says the container was stopped by
/// hand (`stop`, `kill` with SIGKILL or its stop signal, `rm -f`): its restart policy
/// leaves it stopped until it is started by hand, which removes the file. A file rather
/// than a field of the state, so that `stop` never races the monitor's state writes.
const STOPPED_FILE: &str = "stopped";

fn mark_stopped(engine: &Engine, id: &str) -> Result<()> {
    let path = engine.container_dir(id).join(STOPPED_FILE);
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
}

fn stopped_by_hand(engine: &Engine, id: &str) -> bool {
    engine.container_dir(id).join(STOPPED_FILE).exists()
}

/// A start by hand (`run`, `start`, `restart`): the restart policy applies afresh, with
/// its count at zero (as docker's `RestartCount`).
fn begin_by_hand(engine: &Engine, container: &mut Container) {
    let path = engine
        .container_dir(&container.record.id)
        .join(STOPPED_FILE);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(container = %container.record.id, "cannot remove {}: {error}", path.display());
    }
    container.state.restart_count = 0;
}

/// The first delay before a restart, and its ceiling: docker's (doubling from 100 ms up
/// to a minute, back to 100 ms after a run of 10 s or more).
const RESTART_DELAY_FIRST: Duration = Duration::from_millis(100);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(60);
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart, after `previous` (`None`: this is the first) and
/// a run that lasted `ran`.
fn next_restart_delay(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(delay) if ran < RESTART_RESET_AFTER => (delay * 2).min(RESTART_DELAY_MAX),
        _ => RESTART_DELAY_FIRST,
    }
}

/// `docker wait`: waits until container `name` stops and returns its exit code (`-1`
/// when nobody saw it), also when it removes itself on exit (`--rm`).
pub fn wait_exit(engine: &Engine, name: &str) -> Result<i32> {
    let container = engine.container(name)?;
    let id = container.record.id.clone();
    let path = engine.container_dir(&id).join(EXIT_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        // Removed since the look-up: gone with its exit code.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(engine.container(&id).err().unwrap_or_else(|| {
                anyhow::anyhow!("container {name} was removed while waiting for it")
            }));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot open {}", path.display()));
        }
    };
    let mut lock = Flock::lock(file, FlockArg::LockShared)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    loop {
        match engine.container(&id) {
            Ok(container) if !container.is_running() => {
                return Ok(container.state.exit_code.unwrap_or(-1));
            }
            Ok(_) => std::thread::sleep(POLL),
            Err(error) if is_not_found(&error) => {
                // Removed (`--rm`, `rm -f`) after its remover wrote the code here.
                let mut text = String::new();
                lock.seek(std::io::SeekFrom::Start(0))
                    .and_then(|_| lock.read_to_string(&mut text))
                    .with_context(|| format!("cannot read {}", path.display()))?;
                return text.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "container {name} was removed before its exit code was recorded"
                    )
                });
            }
            Err(error) => return Err(error),
        }
    }
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<stencil_layerstore::Error>()
        .is_some_and(|e| e.kind() == stencil_layerstore::ErrorKind::ContainerNotFound)
}

/// Runs `container` attached to our standard streams and returns its exit code (`run`
/// without `-d`, `start -a`). Signals we receive are forwarded to it. Its output is also
/// appended to its log, as docker keeps the logs of every container.
pub fn run_attached(engine: &Engine, container: &mut Container) -> Result<i32> {
    refuse_running(container)?;
    begin_by_hand(engine, container);
    let rootfs = engine.mount_container(container)?;
    let spec = spec_of(
        container,
        &rootfs,
        &engine.container_dir(&container.record.id),
    );
    let id = container.record.id.clone();
    let log = open_log(engine, &id).map_err(own_failure)?;
    let stdio = Stdio::Logged { log };
    if let Some(path) = container.config.runtime.clone() {
        let bundle = engine.container_dir(&id).join("bundle");
        let delegated = match oci::start_with_runtime(&path, &spec, &bundle, &id, stdio) {
            Ok(delegated) => delegated,
            Err(error) => {
                let failure = StartFailure::from_run_error(&error);
                record_failed_start(engine, container, &failure);
                return Err(failure.into());
            }
        };
        record_running(engine, container, delegated.pid())?;
        let health = health::Checker::start(engine, container, delegated.pid());
        let code = delegated.wait();
        drop(health);
        return finish(engine, &id, code);
    }
    let started = match runtime::start(&spec, stdio) {
        Ok(started) => started,
        Err(error) => {
            let failure = StartFailure::from_run_error(&error);
            record_failed_start(engine, container, &failure);
            return Err(failure.into());
        }
    };
    record_running(engine, container, Some(started.pid()))?;
    let health = health::Checker::start(engine, container, Some(started.pid()));
    let container: &Container = container;
    let code = std::thread::scope(|scope| {
        // The container has its own copy of the root filesystem's mount now: ours goes
        // while it runs, so that the kernel's wait in the unmount (an RCU grace period,
        // several ms on a busy machine) overlaps with the container instead of following
        // its exit.
        let unmounting = scope.spawn(|| engine.unmount_container(container));
        let code = started.wait_forwarding_signals();
        if let Ok(Err(error)) = unmounting.join() {
            tracing::warn!(container = %id, "{error:#}");
        }
        code
    });
    drop(health);
    finish(engine, &id, code)
}

/// Records how a foreground container ended and returns its code. When its restart
/// policy starts it again, a monitor takes it over in the background, as docker's
/// daemon does (`run` still returns the code of this run).
fn finish(engine: &Engine, id: &str, code: std::result::Result<i32, RunError>) -> Result<i32> {
    let restarting = record_exit(engine, id, code.as_ref().ok().copied());
    if restarting && let Err(error) = spawn_monitor(engine, id, Some(RESTART_DELAY_FIRST)) {
        // Nobody will restart it: say so, and record it stopped.
        tracing::warn!(
            container = id,
            "cannot hand the container over to a monitor to restart it: {error:#}"
        );
        if let Ok(mut container) = engine.container(id) {
            container.state.status = Status::Exited;
            container.state.monitor_pid = None;
            container.state.error = Some(format!("not restarted: {error:#}"));
            let _ = engine.set_container_state(&container);
        }
    }
    match code {
        Ok(code) => Ok(code),
        Err(error) => Err(StartFailure::from_run_error(&error).into()),
    }
}

fn refuse_running(container: &Container) -> Result<()> {
    if container.is_up() {
        bail!(
            "container {} is already {}",
            container.record.name,
            container.state.status.as_str()
        );
    }
    Ok(())
}

/// Starts `container` detached: spawns the monitor and returns once it says the process
/// runs (or why it does not).
pub fn start_detached(engine: &Engine, container: &Container) -> Result<()> {
    refuse_running(container)?;
    spawn_monitor(engine, &container.record.id, None).map_err(|error| {
        if error.is::<StartFailure>() {
            error
        } else {
            error.context(format!(
                "the monitor of container {} ended without starting it (see `stencil logs {}`)",
                container.record.name,
                container.short_id()
            ))
        }
    })
}

/// The monitor's flag (without `--`) for a container it takes over to restart after a
/// delay in milliseconds.
pub const RESTART_AFTER_FLAG: &str = "restart-after-ms";

/// Spawns the monitor of container `id` in a session of its own and waits until it
/// reports: `ok`, or the failure to start. With `restart_after`, the monitor takes over a
/// `restarting` container and starts it after that delay.
fn spawn_monitor(engine: &Engine, id: &str, restart_after: Option<Duration>) -> Result<()> {
    let exe =
        std::env::current_exe().context("cannot find the stencil binary to run the monitor")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--root")
        .arg(engine.root())
        .arg(MONITOR_VERB)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(delay) = restart_after {
        command
            .arg(format!("--{RESTART_AFTER_FLAG}"))
            .arg(delay.as_millis().to_string());
    }
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context("cannot start the container monitor")?;
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut report);
    }
    let report = report.trim();
    if report == "ok" {
        // The monitor lives on; its exit is of no interest to this process.
        return Ok(());
    }
    let _ = child.wait();
    match report
        .strip_prefix("error ")
        .and_then(|rest| rest.split_once(' '))
    {
        Some((code, message)) => Err(StartFailure {
            code: code.parse().unwrap_or(125),
            message: message.to_owned(),
        }
        .into()),
        None => bail!("the monitor reported nothing"),
    }
}

/// A container process the monitor waits for: started by the built-in runtime or by an
/// OCI runtime (`--runtime`), with its output going to the log.
struct Monitored {
    process: Process,
    /// The write end of a `-i` container's standard input, open until it exits.
    _input: Option<OwnedFd>,
    pump: LogPump,
}

enum Process {
    Builtin(runtime::Started),
    Delegated(oci::Delegated),
}

impl Monitored {
    /// Host pid of the container's first process (`None`: only the runtime's is known).
    fn pid(&self) -> Option<i32> {
        match &self.process {
            Process::Builtin(started) => Some(started.pid()),
            Process::Delegated(delegated) => delegated.pid(),
        }
    }

    /// Waits for the exit; everything the container wrote is in the log before this
    /// returns, so `wait; logs` sees it all. `None`: the exit status is unknown.
    fn wait(self, engine: &Engine, id: &str) -> Option<i32> {
        let Monitored {
            process,
            _input,
            pump,
        } = self;
        match process {
            Process::Builtin(started) => {
                let code = started.wait().ok();
                pump.finish();
                code
            }
            Process::Delegated(delegated) => {
                let code = delegated.wait();
                pump.finish();
                if let Err(error) = &code
                    && let Ok(log) = open_log(engine, id)
                {
                    let _ = LogWriter::new(log)
                        .write(Stream::Stderr, format!("Error: {error}\n").as_bytes());
                }
                code.ok()
            }
        }
    }
}

/// Mounts and starts `container` with its output in its log.
fn start_monitored(
    engine: &Engine,
    container: &Container,
) -> std::result::Result<Monitored, StartFailure> {
    let (stdio, input, pump) = log_streams(engine, container)?;
    let rootfs = engine.mount_container(container).map_err(own_failure)?;
    let id = &container.record.id;
    let spec = spec_of(container, &rootfs, &engine.container_dir(id));
    let Some(path) = container.config.runtime.clone() else {
        let started =
            runtime::start(&spec, stdio).map_err(|error| StartFailure::from_run_error(&error))?;
        return Ok(Monitored {
            process: Process::Builtin(started),
            _input: input,
            pump,
        });
    };
    // Handed to an OCI runtime: it runs in the foreground of the monitor, and the pid it
    // writes is recorded as the built-in runtime's is, so that `stop`, `kill`, `exec` and
    // `ps` work alike.
    let bundle = engine.container_dir(id).join("bundle");
    let delegated = oci::start_with_runtime(&path, &spec, &bundle, id, stdio)
        .map_err(|error| StartFailure::from_run_error(&error))?;
    if delegated.pid().is_none() {
        let code = delegated.wait().map_or(125, |code| code);
        return Err(StartFailure {
            code: 125,
            message: format!(
                "OCI runtime {} failed to start the container (exit status {code}); its messages are in `stencil logs {}`",
                path.display(),
                &id[..12]
            ),
        });
    }
    Ok(Monitored {
        process: Process::Delegated(delegated),
        _input: input,
        pump,
    })
}

/// The monitor process: starts container `id` with its output in its log, reports on
/// standard output, waits, records the exit, and restarts it as long as its restart
/// policy says so. With `restart_after`, it takes over a container that a foreground
/// `run` left `restarting`, and starts it after that delay. Returns the monitor's exit
/// status.
pub fn monitor(engine: &Engine, id: &str, restart_after: Option<Duration>) -> i32 {
    let report = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let mut container = match engine.container(id) {
        Ok(container) => container,
        Err(error) => {
            report(&format!("error 125 {error:#}"));
            return 125;
        }
    };
    if let Some(delay) = restart_after {
        if !container.is_restarting() {
            report(&format!(
                "error 125 container {} is {}, not restarting",
                container.record.name,
                container.state.status.as_str()
            ));
            return 125;
        }
        container.state.monitor_pid = Some(std::process::id() as i32);
        if let Err(error) = engine.set_container_state(&container) {
            report(&format!("error 125 {error:#}"));
            return 125;
        }
        report("ok");
        detach_stdout();
        restart_loop(engine, id, None, Some(delay));
        return 0;
    }
    begin_by_hand(engine, &mut container);
    let monitored = match start_monitored(engine, &container) {
        Ok(monitored) => monitored,
        Err(failure) => {
            record_failed_start(engine, &mut container, &failure);
            report(&format!("error {} {}", failure.code, failure.message));
            return failure.code;
        }
    };
    if let Err(error) = record_running(engine, &mut container, monitored.pid()) {
        report(&format!("error 125 {error:#}"));
    } else {
        report("ok");
    }
    detach_stdout();
    restart_loop(engine, id, Some(monitored), None);
    0
}

/// Waits for the container, records each exit and starts it again while its restart
/// policy says so: after `delay` when it is `restarting` already, else once `running`
/// ends. Returns when it stays stopped, or was removed.
fn restart_loop(
    engine: &Engine,
    id: &str,
    mut running: Option<Monitored>,
    mut delay: Option<Duration>,
) {
    loop {
        let monitored = match running.take() {
            Some(monitored) => monitored,
            None => {
                let wait = delay.unwrap_or(RESTART_DELAY_FIRST);
                let Some(mut container) = wait_to_restart(engine, id, wait) else {
                    return;
                };
                match start_monitored(engine, &container) {
                    Ok(monitored) => {
                        if let Err(error) = record_running(engine, &mut container, monitored.pid())
                        {
                            tracing::warn!(container = id, "{error:#}");
                        }
                        monitored
                    }
                    Err(failure) => {
                        record_failed_start(engine, &mut container, &failure);
                        return;
                    }
                }
            }
        };
        let began = Instant::now();
        let health = engine
            .container(id)
            .ok()
            .and_then(|container| health::Checker::start(engine, &container, monitored.pid()));
        let code = monitored.wait(engine, id);
        drop(health);
        if !record_exit(engine, id, code) {
            return;
        }
        delay = Some(next_restart_delay(delay, began.elapsed()));
    }
}

/// Sleeps `delay` before a restart, looking every [`POLL`] whether the container was
/// stopped by hand (then recorded `exited`) or removed meanwhile. Returns the container
/// to start, or `None` when it is not to start.
fn wait_to_restart(engine: &Engine, id: &str, delay: Duration) -> Option<Container> {
    let deadline = Instant::now() + delay;
    loop {
        let mut container = engine.container(id).ok()?;
        if !container.is_restarting() {
            return None;
        }
        if stopped_by_hand(engine, id) {
            container.state.status = Status::Exited;
            container.state.monitor_pid = None;
            container.state.finished_at = Some(now());
            if let Err(error) = engine.set_container_state(&container) {
                tracing::warn!(container = id, "cannot record the stop: {error:#}");
            }
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(container);
        }
        std::thread::sleep(left.min(POLL));
    }
}

fn own_failure(error: anyhow::Error) -> StartFailure {
    StartFailure {
        code: 125,
        message: format!("{error:#}"),
    }
}

/// The container's log, `ROOT/containers/ID/log`, opened for appending.
fn open_log(engine: &Engine, id: &str) -> Result<OwnedFd> {
    let log_path = engine.container_dir(id).join("log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map(OwnedFd::from)
        .with_context(|| format!("cannot open {}", log_path.display()))
}

/// The thread of a detached container's monitor that turns the container's output,
/// arriving on two pipes, into records of its log (see [`logfile`]).
struct LogPump {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogPump {
    /// Starts copying to the log of container `id`; returns the pump and the write ends
    /// of the pipes, for the container's standard output and error.
    fn start(engine: &Engine, id: &str) -> Result<(LogPump, OwnedFd, OwnedFd)> {
        let log = LogWriter::new(open_log(engine, id)?);
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .context("cannot create a pipe for the container's output")
        };
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let tee = Tee::log_only(out_read, err_read, log);
        let done = Arc::new(AtomicBool::new(false));
        let ended = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || {
                // Nothing to report to: the monitor has no terminal, and a failing log
                // must not stop the container.
                let _ = tee.pump(None, || Ok(ended.load(Ordering::Acquire)));
            })
            .context("cannot start copying the container's output to its log")?;
        let pump = LogPump {
            done,
            thread: Some(thread),
        };
        Ok((pump, out_write, err_write))
    }

    /// Waits, once the container has exited, until its output is in the log: the pipes
    /// end when every process holding them has; one that a descendant outside the
    /// container's PID namespace keeps open is copied up to what it holds now.
    fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The FIFO in a detached `-i` container's directory that `attach` writes its input to.
const STDIN_FIFO: &str = "stdin";

/// Pipes into the container's log as its standard output and error; with `-i`, its
/// standard input is a pipe whose write end (returned) the monitor keeps open until the
/// container exits, so that it never reads end-of-file, as under docker's `run -di`.
/// What `attach` writes into the container's `stdin` FIFO is copied into that pipe.
fn log_streams(
    engine: &Engine,
    container: &Container,
) -> std::result::Result<(Stdio, Option<OwnedFd>, LogPump), StartFailure> {
    let id = &container.record.id;
    let (pump, stdout, stderr) = LogPump::start(engine, id).map_err(own_failure)?;
    let (stdin, input) = if container.config.interactive {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .context("cannot create a pipe for the container's input")
            .map_err(own_failure)?;
        let feed = write
            .try_clone()
            .context("cannot duplicate the container's input pipe")
            .map_err(own_failure)?;
        let fifo = engine.container_dir(id).join(STDIN_FIFO);
        feed_from_fifo(&fifo, feed).map_err(own_failure)?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    Ok((
        Stdio::Files {
            stdin,
            stdout,
            stderr,
        },
        input,
        pump,
    ))
}

/// Where the monitor's input thread copies what arrives on the FIFO: the input pipe of
/// the container's current run (a restart gives it a new one). One per monitor process,
/// which watches one container.
static STDIN_TARGET: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// Sends what arrives on the FIFO `path` to `input` from now on. The first call creates
/// the FIFO and the thread that copies from it, for the life of the monitor; later ones
/// (restarts) only point that thread at the new run's input. The FIFO is held open for
/// writing too, so that an `attach` that goes away is no end of input for the container.
fn feed_from_fifo(path: &Path, input: OwnedFd) -> Result<()> {
    static FEEDING: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    *STDIN_TARGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::fs::File::from(input));
    if FEEDING.get().is_some() {
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot replace {}", path.display()));
        }
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create the input FIFO {}", path.display()))?;
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the input FIFO {}", path.display()))?;
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut fifo = fifo;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = match fifo.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let mut target = STDIN_TARGET
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // A run that closed its input (or ended) drops what comes until the next.
                if let Some(input) = target.as_mut()
                    && input.write_all(&buffer[..read]).is_err()
                {
                    *target = None;
                }
            }
        })
        .context("cannot start copying attached input to the container")?;
    let _ = FEEDING.set(());
    Ok(())
}

/// What `attach` does besides following the output.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Send our standard input to the container (when it was started with `-i`).
    pub stdin: bool,
    /// Forward the signals we receive to the container (not with a terminal, where keys
    /// such as Ctrl-C reach it as input).
    pub sig_proxy: bool,
    /// The key sequence that detaches (with a terminal); docker's Ctrl-P Ctrl-Q when
    /// `None`.
    pub detach_keys: Option<Vec<u8>>,
}

/// docker's default detach keys, Ctrl-P Ctrl-Q.
const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Parses docker's `--detach-keys`: keys separated by commas, each a letter or
/// `ctrl-X` with X a letter or one of `@ [ \ ] ^ _` (`ctrl-p,ctrl-q` is the default).
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>> {
    let bad = || {
        anyhow::anyhow!(
            "invalid detach keys {text:?}: give keys separated by commas, each a letter or ctrl-<letter, @, [, \\, ], ^ or _> (e.g. ctrl-p,ctrl-q)"
        )
    };
    text.split(',')
        .map(|key| {
            let (ctrl, name) = match key.strip_prefix("ctrl-") {
                Some(name) => (true, name),
                None => (false, key),
            };
            let mut chars = name.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(bad());
            };
            match (ctrl, c) {
                (false, c) if c.is_ascii_alphabetic() => Ok(c as u8),
                (true, c) if c.is_ascii_alphabetic() => Ok(c.to_ascii_lowercase() as u8 - b'a' + 1),
                (true, '@') => Ok(0),
                (true, '[') => Ok(27),
                (true, '\\') => Ok(28),
                (true, ']') => Ok(29),
                (true, '^') => Ok(30),
                (true, '_') => Ok(31),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// Watches typed input for the detach sequence (never empty: [`parse_detach_keys`] or
/// the default): the bytes of a partial match are held back, and given on when the
/// sequence breaks off.
struct DetachWatch<'a> {
    keys: &'a [u8],
    matched: usize,
}

impl DetachWatch<'_> {
    /// Takes one typed byte, appending what is to reach the container to `out`; true when
    /// the sequence is complete.
    fn feed(&mut self, byte: u8, out: &mut Vec<u8>) -> bool {
        if byte == self.keys[self.matched] {
            self.matched += 1;
            return self.matched == self.keys.len();
        }
        out.extend_from_slice(&self.keys[..self.matched]);
        self.matched = 0;
        if byte == self.keys[0] {
            self.matched = 1;
            return self.keys.len() == 1;
        }
        out.push(byte);
        false
    }
}

/// `docker attach`: prints what the running `container` writes from now on (standard
/// error to ours), sends our input to it when it keeps its input open (`-i`), forwards
/// our signals, and returns its exit code once it stops. With a terminal (`-t`), ours is
/// in raw mode meanwhile and the detach keys (Ctrl-P Ctrl-Q) detach, leaving it running.
pub fn attach(engine: &Engine, container: &Container, options: AttachOptions) -> Result<i32> {
    if !container.is_running() {
        bail!(
            "cannot attach to container {}: it is not running; start it first",
            container.record.name
        );
    }
    let id = container.record.id.clone();
    let tty = container.config.tty;
    // Where the output to print begins: before any of our input can have had an effect.
    let from = std::fs::metadata(engine.container_dir(&id).join("log")).map_or(0, |m| m.len());
    let mut raw = None;
    if options.stdin && container.config.interactive {
        let fifo = engine.container_dir(&id).join(STDIN_FIFO);
        // Without blocking: a FIFO nobody reads (its monitor gone) is an error, not a hang.
        let input = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .with_context(|| {
                format!(
                    "cannot open the input of container {} ({})",
                    container.record.name,
                    fifo.display()
                )
            })?;
        nix::fcntl::fcntl(
            &input,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .with_context(|| format!("cannot set up {}", fifo.display()))?;
        let mut saved = None;
        if tty {
            // SAFETY: descriptor 0 stays open for the life of the process.
            let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
            saved = nix::sys::termios::tcgetattr(stdin).ok();
            raw = super::tty::RawMode::enter(stdin);
        }
        let keys = options
            .detach_keys
            .clone()
            .unwrap_or_else(|| DEFAULT_DETACH_KEYS.to_vec());
        std::thread::Builder::new()
            .name("attach".into())
            .spawn(move || copy_input(input, saved, &keys))
            .context("cannot start copying our input to the container")?;
    }
    let _forwarding = (options.sig_proxy && !tty)
        .then_some(container.state.pid)
        .flatten()
        .map(runtime::forward_signals);
    let follow = LogsOptions {
        follow: true,
        tail: None,
        filter: Filter::default(),
        from: Some(from),
    };
    // The exit code is waited for from the start, as `wait` does: a container that
    // removes itself (`--rm`) keeps its code for those already waiting.
    let code = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| wait_exit(engine, &id));
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let followed = logs(engine, container, &follow, &mut out, &mut err);
        let code = waiter
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("waiting for the container failed")));
        followed.and(code)
    });
    drop(raw);
    code
}

/// Copies our standard input to `input` until it ends; with a terminal (`saved` holds its
/// mode before raw mode), the detach `keys` end the attachment (the process exits 0, the
/// container goes on), as docker's do.
fn copy_input(mut input: std::fs::File, saved: Option<nix::sys::termios::Termios>, keys: &[u8]) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 4096];
    let mut watch = DetachWatch { keys, matched: 0 };
    loop {
        let n = match stdin.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n + keys.len());
        for &byte in &buffer[..n] {
            let Some(saved) = &saved else {
                out.push(byte);
                continue;
            };
            if watch.feed(byte, &mut out) {
                let _ = input.write_all(&out);
                // SAFETY: descriptor 0 stays open for the life of the process.
                let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
                let _ = nix::sys::termios::tcsetattr(
                    stdin,
                    nix::sys::termios::SetArg::TCSAFLUSH,
                    saved,
                );
                // Straight to descriptor 2: the main thread holds the lock of our stderr
                // while it follows the container's output, and would keep it forever.
                // SAFETY: descriptor 2 stays open for the life of the process.
                let stderr = unsafe { std::os::fd::BorrowedFd::borrow_raw(2) };
                let _ = nix::unistd::write(stderr, b"\nread escape sequence\n");
                std::process::exit(0);
            }
        }
        if input.write_all(&out).is_err() {
            return;
        }
    }
}

/// Points standard output at `/dev/null`, so the CLI reading the report sees its end.
fn detach_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: both descriptors are open; dup2 replaces descriptor 1 atomically.
        unsafe {
            libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
        }
    }
}

/// Parses a signal as docker's `kill -s` and `STOPSIGNAL` take it: `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(text: &str) -> Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
        bail!("invalid signal: {text}");
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => bail!("invalid signal: {text}"),
    };
    Ok(number)
}

/// Sends `signal` to the container's first process.
pub fn signal(container: &Container, signal: i32) -> Result<()> {
    let pid = match (container.is_running(), container.state.pid) {
        (true, Some(pid)) if process_start_time(pid) == container.state.pid_start => pid,
        _ => bail!(
            "cannot kill container: {}: container {} is not running",
            container.record.name,
            container.short_id()
        ),
    };
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let error = std::io::Error::last_os_error();
        bail!("cannot signal container {}: {error}", container.record.name);
    }
    if container.state.paused {
        // As docker: the signal first, then the thaw, so that it is the first thing the
        // processes see (a frozen process cannot act on one, not even SIGKILL).
        Cgroup::open(&container.record.id)
            .and_then(|cgroup| cgroup.thaw())
            .with_context(|| format!("cannot unpause container {}", container.record.name))?;
    }
    Ok(())
}

/// `docker pause`: freezes every process of the running `container` in its cgroup.
pub fn pause(container: &Container) -> Result<()> {
    let cgroup = paused_cgroup(container, false)?;
    cgroup
        .freeze()
        .with_context(|| format!("cannot pause container {}", container.record.name))
}

/// `docker unpause`: thaws a paused `container`.
pub fn unpause(container: &Container) -> Result<()> {
    let cgroup = paused_cgroup(container, true)?;
    cgroup
        .thaw()
        .with_context(|| format!("cannot unpause container {}", container.record.name))
}

/// The cgroup of `container` when it runs and its pause state is `paused`, with docker's
/// messages otherwise.
fn paused_cgroup(container: &Container, paused: bool) -> Result<Cgroup> {
    let id = &container.record.id;
    if !container.is_running() {
        bail!("Container {id} is not running");
    }
    match (container.state.paused, paused) {
        (true, false) => bail!("Container {id} is already paused"),
        (false, true) => bail!("Container {id} is not paused"),
        _ => {}
    }
    let cgroup = Cgroup::open(id)?;
    if !cgroup.exists() {
        bail!(
            "container {} has no cgroup (it started without one, see its warning): it cannot be paused",
            container.record.name
        );
    }
    Ok(cgroup)
}

/// Waits until container `id` no longer runs, at most `timeout`; returns its state then,
/// or `None` when it was removed meanwhile (`--rm`).
pub fn wait_until_stopped(
    engine: &Engine,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Option<Container>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let container = match engine.container(id) {
            Ok(container) => container,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        if !container.is_running() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(container));
        }
        std::thread::sleep(POLL);
    }
}

/// `docker stop`: the stop signal (the image's, else SIGTERM), then SIGKILL after
/// `timeout`. A restarting container is not started again.
pub fn stop(engine: &Engine, container: &Container, timeout: Duration) -> Result<()> {
    let stop_signal = stop_signal_of(container)?;
    halt(engine, container, stop_signal, timeout).map(|_| ())
}

/// The signal `stop` sends to `container`: its `--stop-signal` or its image's, else
/// SIGTERM.
fn stop_signal_of(container: &Container) -> Result<i32> {
    match &container.config.stop_signal {
        Some(name) => parse_signal(name),
        None => Ok(libc::SIGTERM),
    }
}

/// Stops `container` for good: marks it stopped by hand (so that its restart policy
/// leaves it), sends `first`, then SIGKILL after `timeout`, and returns once it neither
/// runs nor waits to restart: its state then, or `None` when it removed itself (`--rm`).
pub fn halt(
    engine: &Engine,
    container: &Container,
    first: i32,
    timeout: Duration,
) -> Result<Option<Container>> {
    if !container.is_up() {
        return Ok(Some(container.clone()));
    }
    let id = &container.record.id;
    mark_stopped(engine, id)?;
    // A restarting container's monitor sees the mark within a poll; one that was already
    // starting it again when the mark came is signalled again in the next round.
    let deadline = Instant::now() + timeout + Duration::from_secs(30);
    let mut current = container.clone();
    loop {
        if current.is_running() {
            // The process may end between the state check and the signal: a stop too.
            let _ = signal(&current, first);
            let after = wait_until_stopped(engine, id, Some(timeout))?;
            if let Some(after) = after.filter(Container::is_running) {
                let _ = signal(&after, libc::SIGKILL);
                let after = wait_until_stopped(engine, id, Some(Duration::from_secs(30)))?;
                if after.is_some_and(|c| c.is_running()) {
                    bail!(
                        "container {} did not stop after SIGKILL",
                        container.record.name
                    );
                }
            }
        } else if Instant::now() >= deadline {
            bail!(
                "container {} did not stop: its monitor (pid {}) did not take the stop",
                container.record.name,
                current.state.monitor_pid.unwrap_or(0)
            );
        } else {
            std::thread::sleep(POLL);
        }
        current = match engine.container(id) {
            Ok(current) => current,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        if !current.is_up() {
            return Ok(Some(current));
        }
    }
}

/// `docker kill`: sends `signal` to the container's first process. SIGKILL and the
/// container's stop signal also turn its restart policy off until it is started by hand
/// (other signals leave it, as docker's); a restarting container takes only those.
pub fn kill(engine: &Engine, container: &Container, signal_number: i32) -> Result<()> {
    let fatal = signal_number == libc::SIGKILL || stop_signal_of(container)? == signal_number;
    if container.is_restarting() {
        if fatal {
            return mark_stopped(engine, &container.record.id);
        }
        bail!(
            "Container {} is restarting, wait until the container is running",
            container.record.id
        );
    }
    if fatal && container.is_running() {
        mark_stopped(engine, &container.record.id)?;
    }
    signal(container, signal_number)
}

/// `docker exec`: runs `process` in the running container and returns its exit code.
pub fn exec(container: &Container, process: &ProcessSpec) -> Result<i32> {
    let pid = match (container.is_running(), container.state.pid) {
        (true, Some(pid)) => pid,
        _ => bail!("container {} is not running", container.short_id()),
    };
    if container.state.paused {
        bail!(
            "Container {} is paused, unpause the container before exec",
            container.record.id
        );
    }
    runtime::exec(pid, process, Stdio::Inherit)
        .map_err(|error| StartFailure::from_run_error(&error).into())
}

/// What `logs` prints: [`Filter`] and a tail, and whether to follow.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Keep printing what the container writes until it stops.
    pub follow: bool,
    /// Only the last N lines (in the window) before following.
    pub tail: Option<u64>,
    /// The window and the time stamps.
    pub filter: Filter,
    /// Start at this byte of the log (the end it had earlier, for `attach`) rather than
    /// at its start or tail.
    pub from: Option<u64>,
}

/// `docker logs`: prints the container's standard output to `out` and its standard error
/// to `err`, as it wrote them; with `follow`, until the container stops.
pub fn logs(
    engine: &Engine,
    container: &Container,
    options: &LogsOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let path = engine.container_dir(&container.record.id).join("log");
    let cannot_read = || format!("cannot read {}", path.display());
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => Some(file),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(cannot_read),
    };
    let mut printer = Printer::new(options.filter.clone());
    if let (Some(from), Some(file)) = (options.from, file.as_mut()) {
        file.seek(SeekFrom::Start(from)).with_context(cannot_read)?;
    } else if let (Some(lines), Some(file)) = (options.tail, file.as_mut()) {
        let mut finder = TailFinder::new(lines, options.filter.clone());
        let mut reader = LineReader::default();
        let mut offset = 0;
        reader
            .read_from(file, |line| {
                finder.feed(offset, line);
                offset += line.len() as u64 + 1;
                Ok(())
            })
            .with_context(cannot_read)?;
        let tail = finder.start(offset);
        printer = Printer::resuming(options.filter.clone(), &tail);
        file.seek(SeekFrom::Start(tail.offset))
            .with_context(cannot_read)?;
    }
    let mut reader = LineReader::default();
    let closed = std::cell::Cell::new(false);
    let mut print = |line: &[u8]| -> std::io::Result<()> {
        // A reader that went away (`| head`) ends the copy, not as an error.
        if !closed.get() && printer.print(line, out, err).is_err() {
            closed.set(true);
        }
        Ok(())
    };
    loop {
        if file.is_none() {
            file = std::fs::File::open(&path).ok();
        }
        let read_any = match file.as_mut() {
            Some(file) => reader
                .read_from(file, &mut print)
                .with_context(cannot_read)?,
            None => false,
        };
        if closed.get() {
            return Ok(());
        }
        if !follow_on(options, read_any, engine, container) {
            break;
        }
        if !read_any {
            std::thread::sleep(POLL);
        }
    }
    // One last read catches what was written just before the exit.
    if options.follow
        && let Some(file) = file.as_mut()
    {
        reader
            .read_from(file, &mut print)
            .with_context(cannot_read)?;
    }
    // A last record without its newline is one being written, but a log that is no
    // record log (an older one) may end so.
    reader.finish(&mut print).with_context(cannot_read)?;
    let _ = out.flush();
    let _ = err.flush();
    Ok(())
}

/// Whether `logs` goes on reading: when following and the container still runs (or
/// something was just read).
fn follow_on(
    options: &LogsOptions,
    read_any: bool,
    engine: &Engine,
    container: &Container,
) -> bool {
    options.follow
        && (read_any
            || engine
                .container(&container.record.id)
                .map(|c| c.is_running())
                .unwrap_or(false))
}

/// Splits what a log file holds into lines, keeping a last line without its newline (a
/// record being written) for the next read.
#[derive(Debug, Default)]
struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    /// Reads `file` to its end, calling `line` with each whole line (without its
    /// newline); whether anything was read.
    fn read_from(
        &mut self,
        file: &mut std::fs::File,
        mut line: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<bool> {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut read_any = false;
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => return Ok(read_any),
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            read_any = true;
            let mut chunk = &buffer[..n];
            while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
                if self.pending.is_empty() {
                    line(&chunk[..end])?;
                } else {
                    self.pending.extend_from_slice(&chunk[..end]);
                    let whole = std::mem::take(&mut self.pending);
                    line(&whole)?;
                }
                chunk = &chunk[end + 1..];
            }
            self.pending.extend_from_slice(chunk);
        }
    }

    /// Hands over a last line without its newline, if any.
    fn finish(
        &mut self,
        mut line: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.pending.is_empty() || logfile::Record::parse(&self.pending).is_some() {
            return Ok(());
        }
        let last = std::mem::take(&mut self.pending);
        line(&last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_hold_back_partial_matches() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            DEFAULT_DETACH_KEYS
        );
        assert_eq!(
            parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,a,Z,ctrl-A").unwrap(),
            vec![0, 27, 28, 29, 30, 31, b'a', b'Z', 1]
        );
        for bad in ["", "ctrl-", "ctrl-1", "ab", "1", "ctrl-p,", "meta-a"] {
            let error = parse_detach_keys(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
        let typed = |keys: &[u8], input: &[u8]| {
            let mut watch = DetachWatch { keys, matched: 0 };
            let mut out = Vec::new();
            for (at, &byte) in input.iter().enumerate() {
                if watch.feed(byte, &mut out) {
                    return (out, Some(at));
                }
            }
            (out, None)
        };
        // The sequence detaches; what came before it goes through.
        assert_eq!(typed(b"xyz", b"abxyzc"), (b"ab".to_vec(), Some(4)));
        // A broken-off prefix is given on, and a new match can start inside it.
        assert_eq!(typed(b"xyz", b"axyaxxyz"), (b"axyax".to_vec(), Some(7)));
        assert_eq!(typed(b"xy", b"xxxa"), (b"xxxa".to_vec(), None));
        assert_eq!(
            typed(&[0x10, 0x11], &[0x10, b'a', 0x10, 0x11]),
            (vec![0x10, b'a'], Some(3))
        );
        assert_eq!(typed(b"q", b"abq"), (b"ab".to_vec(), Some(2)));
    }

    #[test]
    fn restart_delays_double_to_a_minute_and_reset_after_a_long_run() {
        let short = Duration::from_millis(5);
        let mut delay = next_restart_delay(None, short);
        assert_eq!(delay, Duration::from_millis(100));
        let mut seen = vec![delay];
        for _ in 0..12 {
            delay = next_restart_delay(Some(delay), short);
            seen.push(delay);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[2], Duration::from_millis(400));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(60));
        assert_eq!(
            next_restart_delay(Some(Duration::from_secs(60)), Duration::from_secs(10)),
            Duration::from_millis(100)
        );
    }
}
