//! `--runtime PATH`: hand a container to an external OCI runtime (runc, crun, youki).
//!
//! [`write_bundle`] turns a [`Spec`] into an OCI runtime bundle: a directory holding
//! `config.json` built with `oci-spec`'s runtime types, whose `root.path` is the already
//! mounted rootfs (no copy). The configuration mirrors the built-in runtime: the same
//! namespaces (no network namespace with host networking), docker's default capabilities,
//! `noNewPrivileges`, the user resolved from the rootfs' `/etc/passwd`, the standard
//! `/proc`, `/dev`, `/sys` mounts of `oci-spec`'s defaults plus the volumes as recursive
//! binds. [`start_with_runtime`] then runs `PATH run --bundle DIR --pid-file DIR/pid ID`
//! in the foreground and returns once the runtime wrote the container's pid, which `stop`,
//! `kill` and `exec` act on as for the built-in runtime; [`Delegated::wait`] returns the
//! runtime's exit status, which for runc is the container's.
//!
//! The container's limits become `linux.resources`, in the cgroup `/stencil/ID`
//! (`linux.cgroupsPath`) that the built-in runtime would use, so `stats` and `pause` work
//! alike; the runtime creates and removes it.
//!
//! This module does not manage the runtime's state (`runc delete` of a stopped container is
//! not needed after `runc run`, which deletes it).
//!
//! ```no_run
//! use std::path::Path;
//! use stencil::container::oci::run_with_runtime;
//! use stencil::container::runtime::{Spec, Stdio};
//! let spec = Spec { rootfs: "/merged".into(), args: vec!["true".into()], cwd: "/".into(), ..Spec::default() };
//! let code = run_with_runtime(Path::new("/usr/sbin/runc"), &spec, Path::new("/tmp/bundle"), "abc", Stdio::Inherit)?;
//! # Ok::<(), stencil::container::runtime::RunError>(())
//! ```

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, Mount, PosixRlimitBuilder, Process, Root, Spec as OciSpec, User,
};

use super::caps;
use super::caps::DEFAULT_CAPABILITIES;
use super::cgroup::{PARENT, Resources};
use super::logfile::LogWriter;
use super::rootpath;
use super::runtime::{DEFAULT_PATH, Network, RunError, Spec, Stdio, Tmpfs};
use super::tee::Tee;
use super::user::{self, ResolvedUser};

fn oci_error(what: &str, error: impl std::fmt::Display) -> RunError {
    RunError::Setup {
        what: what.to_owned(),
        source: std::io::Error::other(error.to_string()),
    }
}

/// docker's default capabilities as `oci-spec` values.
fn default_capabilities() -> HashSet<Capability> {
    DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("CAP_")?.parse().ok())
        .collect()
}

/// The `config.json` of `spec` run as `user`.
pub fn bundle_config(spec: &Spec, user: &ResolvedUser) -> Result<OciSpec, RunError> {
    let mut config = OciSpec::default();
    let mut root = Root::default();
    root.set_path(spec.rootfs.clone());
    root.set_readonly(Some(spec.read_only));
    config.set_root(Some(root));
    config.set_hostname((!spec.hostname.is_empty()).then(|| spec.hostname.clone()));

    let mut process = Process::default();
    process.set_terminal(Some(spec.tty));
    let mut oci_user = User::default();
    oci_user.set_uid(user.uid);
    oci_user.set_gid(user.gid);
    oci_user.set_additional_gids(
        (!user.additional_gids.is_empty()).then(|| user.additional_gids.clone()),
    );
    process.set_user(oci_user);
    process.set_args(Some(spec.args.clone()));
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(&spec.cwd));
    let all = match spec.capabilities {
        Some(mask) => caps::mask_names(mask)
            .iter()
            .filter_map(|name| name.strip_prefix("CAP_")?.parse().ok())
            .collect(),
        None => default_capabilities(),
    };
    // As docker does: a non-root user starts with no effective or permitted capabilities.
    let held = if user.uid == 0 {
        all.clone()
    } else {
        HashSet::new()
    };
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(all));
    capabilities.set_effective(Some(held.clone()));
    capabilities.set_permitted(Some(held));
    capabilities.set_inheritable(Some(HashSet::new()));
    capabilities.set_ambient(Some(HashSet::new()));
    process.set_capabilities(Some(capabilities));
    process.set_no_new_privileges(Some(true));
    if !spec.rlimits.is_empty() {
        let rlimits = spec
            .rlimits
            .iter()
            .map(|limit| {
                let name = format!("RLIMIT_{}", limit.name().to_ascii_uppercase());
                let typ: oci_spec::runtime::PosixRlimitType = serde_json::from_value(
                    serde_json::Value::String(name.clone()),
                )
                .map_err(|_| RunError::InvalidSpec(format!("no OCI resource limit {name}")))?;
                PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(limit.soft)
                    .hard(limit.hard)
                    .build()
                    .map_err(|e| RunError::InvalidSpec(format!("resource limit {name}: {e}")))
            })
            .collect::<Result<Vec<_>, RunError>>()?;
        process.set_rlimits(Some(rlimits));
    }
    config.set_process(Some(process));

    let mut mounts = config.mounts().clone().unwrap_or_default();
    for volume in &spec.volumes {
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(&volume.container));
        mount.set_typ(Some("bind".to_owned()));
        mount.set_source(Some(volume.host.clone()));
        let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if volume.read_only {
            options.push("ro".to_owned());
        }
        mount.set_options(Some(options));
        mounts.push(mount);
    }
    for tmpfs in &spec.tmpfs {
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(&tmpfs.container));
        mount.set_typ(Some("tmpfs".to_owned()));
        mount.set_source(Some(PathBuf::from("tmpfs")));
        mount.set_options(Some(tmpfs_options(tmpfs)));
        mounts.push(mount);
    }
    let shm_size = format!(
        "size={}",
        spec.shm_size.unwrap_or(super::runtime::DEFAULT_SHM_SIZE)
    );
    for mount in &mut mounts {
        if mount.destination() == Path::new("/dev/shm")
            && let Some(options) = mount.options().clone()
        {
            let options = options
                .into_iter()
                .filter(|o| !o.starts_with("size="))
                .chain(std::iter::once(shm_size.clone()))
                .collect();
            mount.set_options(Some(options));
        }
    }
    if spec.unmasked {
        for mount in &mut mounts {
            if mount.destination() == Path::new("/sys")
                && let Some(options) = mount.options().clone()
            {
                mount.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
            }
        }
    }
    config.set_mounts(Some(mounts));
    if spec.unmasked
        && let Some(linux) = config.linux_mut()
    {
        linux.set_masked_paths(Some(Vec::new()));
        linux.set_readonly_paths(Some(Vec::new()));
    }

    if let Some(linux) = config.linux_mut() {
        let namespaces: Vec<LinuxNamespace> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|ns| spec.network == Network::None || ns.typ() != LinuxNamespaceType::Network)
            .collect();
        linux.set_namespaces(Some(namespaces));
        if let Some(id) = &spec.cgroup {
            // The runtime makes the same cgroup as the built-in runtime, so `stats` and
            // `pause` find it in the same place.
            linux.set_cgroups_path(Some(Path::new("/").join(PARENT).join(id)));
            let mut resources = linux.resources().clone().unwrap_or_default();
            apply_limits(&mut resources, &spec.resources);
            linux.set_resources(Some(resources));
        }
    }
    Ok(config)
}

/// The mount options of `tmpfs` as an OCI bundle spells them.
fn tmpfs_options(tmpfs: &Tmpfs) -> Vec<String> {
    let flags = tmpfs.flags;
    let mut options: Vec<String> = [
        (libc::MS_RDONLY, "ro", "rw"),
        (libc::MS_NOEXEC, "noexec", "exec"),
        (libc::MS_NOSUID, "nosuid", "suid"),
        (libc::MS_NODEV, "nodev", "dev"),
    ]
    .iter()
    .map(|(bit, set, clear)| if flags & bit != 0 { *set } else { *clear }.to_owned())
    .collect();
    for (bit, word) in [
        (libc::MS_SYNCHRONOUS, "sync"),
        (libc::MS_DIRSYNC, "dirsync"),
        (libc::MS_NOATIME, "noatime"),
        (libc::MS_NODIRATIME, "nodiratime"),
        (libc::MS_RELATIME, "relatime"),
        (libc::MS_STRICTATIME, "strictatime"),
    ] {
        if flags & bit != 0 {
            options.push(word.to_owned());
        }
    }
    options.extend(
        tmpfs
            .data
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
    );
    options
}

/// Writes `limits` into an OCI `linux.resources`.
fn apply_limits(resources: &mut LinuxResources, limits: &Resources) {
    if let Some(memory) = limits.memory {
        let mut oci_memory = LinuxMemory::default();
        oci_memory.set_limit(Some(memory));
        oci_memory.set_swap(limits.memory_swap);
        resources.set_memory(Some(oci_memory));
    }
    if let Some((quota, period)) = limits.cfs_quota() {
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some(quota));
        cpu.set_period(u64::try_from(period).ok());
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = limits.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
}

/// Writes `DIR/config.json` for `spec`, resolving its user in the rootfs and creating its
/// working directory there (as the built-in runtime does). A command that is not in the
/// rootfs, or not executable, fails here with [`RunError::NotFound`] (127) or
/// [`RunError::CannotExecute`] (126), as docker reports them.
pub fn write_bundle(spec: &Spec, bundle: &Path) -> Result<(), RunError> {
    let root = open(
        &spec.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RunError::Setup {
        what: format!("cannot open root filesystem {}", spec.rootfs.display()),
        source: e.into(),
    })?;
    let user = user::resolve_adding(&root, &spec.user, &spec.groups)?;
    if spec.cwd.starts_with('/') {
        rootpath::create_dir_all_in_root(root.as_fd(), &spec.cwd).map_err(|e| RunError::Setup {
            what: format!("cannot create the working directory {}", spec.cwd),
            source: e,
        })?;
    }
    check_command(root.as_fd(), spec)?;
    let config = bundle_config(spec, &user)?;
    std::fs::create_dir_all(bundle).map_err(|e| RunError::Setup {
        what: format!("cannot create bundle directory {}", bundle.display()),
        source: e,
    })?;
    let path = bundle.join("config.json");
    config
        .save(&path)
        .map_err(|e| oci_error(&format!("cannot write {}", path.display()), e))
}

/// Looks `spec`'s command up in the rootfs as the runtime will, so that a missing or
/// unexecutable command fails with docker's 127 or 126 (runc reports both as 1).
fn check_command(root: BorrowedFd<'_>, spec: &Spec) -> Result<(), RunError> {
    let Some(command) = spec.args.first() else {
        return Err(RunError::InvalidSpec(
            "no command specified: give one after the image, or set Cmd or Entrypoint".into(),
        ));
    };
    let executable = |stat: &nix::sys::stat::FileStat| {
        stat.st_mode & libc::S_IFMT == libc::S_IFREG && stat.st_mode & 0o111 != 0
    };
    if command.contains('/') {
        let path = if command.starts_with('/') {
            command.clone()
        } else {
            format!("{}/{command}", spec.cwd)
        };
        return match rootpath::stat_in_root(root, &path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RunError::NotFound {
                command: command.clone(),
                reason: format!("stat {command}: no such file or directory"),
            }),
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                Err(RunError::CannotExecute {
                    command: command.clone(),
                    reason: "is a directory".into(),
                })
            }
            Ok(stat) if !executable(&stat) => Err(RunError::CannotExecute {
                command: command.clone(),
                reason: "permission denied".into(),
            }),
            // Other errors (a permission on the way) are left for the runtime to report.
            _ => Ok(()),
        };
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let found = path.split(':').filter(|dir| !dir.is_empty()).any(|dir| {
        rootpath::stat_in_root(root, &format!("{dir}/{command}"))
            .is_ok_and(|stat| executable(&stat))
    });
    if found {
        Ok(())
    } else {
        Err(RunError::NotFound {
            command: command.clone(),
            reason: "executable file not found in $PATH".into(),
        })
    }
}

/// A container that an OCI runtime runs in the foreground (`RUNTIME run`).
#[derive(Debug)]
pub struct Delegated {
    child: Child,
    pid: Option<i32>,
    tee: Option<Tee>,
}

impl Delegated {
    /// Host pid of the container's process, from the runtime's `--pid-file`; `None` when
    /// the runtime ended before creating it (it failed to start the container).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Waits for the runtime, copying the container's output to the log with
    /// [`Stdio::Logged`], and returns its exit status (the container's, for runc; 128 +
    /// the signal when it was killed).
    pub fn wait(mut self) -> Result<i32, RunError> {
        if let Some(tee) = self.tee.take() {
            let child = &mut self.child;
            tee.pump(None, || Ok(child.try_wait()?.is_some()))
                .map_err(|e| oci_error("cannot copy the container's output", e))?;
        }
        let status = self.child.wait().map_err(|e| RunError::Setup {
            what: "cannot wait for the OCI runtime".to_owned(),
            source: e,
        })?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(125))
    }
}

/// Writes the bundle of `spec` into `bundle`, starts `RUNTIME run --bundle BUNDLE
/// --pid-file BUNDLE/pid ID` and returns once the runtime has written the container's pid
/// (or has ended without).
pub fn start_with_runtime(
    runtime: &Path,
    spec: &Spec,
    bundle: &Path,
    id: &str,
    stdio: Stdio,
) -> Result<Delegated, RunError> {
    write_bundle(spec, bundle)?;
    let pid_file = bundle.join("pid");
    match std::fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(RunError::Setup {
                what: format!("cannot remove {}", pid_file.display()),
                source: e,
            });
        }
        _ => {}
    }
    let mut command = Command::new(runtime);
    command
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id);
    let mut log = None;
    match stdio {
        Stdio::Inherit | Stdio::Logged { .. } => {
            if !spec.interactive && !spec.tty {
                command.stdin(std::process::Stdio::null());
            }
            if let (Stdio::Logged { log: file }, false) = (stdio, spec.tty) {
                command
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                log = Some(file);
            }
        }
        Stdio::Files {
            stdin,
            stdout,
            stderr,
        } => {
            command.stdin(match stdin {
                Some(fd) if spec.interactive => std::process::Stdio::from(fd),
                _ => std::process::Stdio::null(),
            });
            command.stdout(stdout).stderr(stderr);
        }
    }
    let mut child = command.spawn().map_err(|e| RunError::Setup {
        what: format!("cannot run OCI runtime {}", runtime.display()),
        source: e,
    })?;
    let tee = match (log, child.stdout.take(), child.stderr.take()) {
        (Some(log), Some(out), Some(err)) => {
            Some(Tee::new(out.into(), err.into(), LogWriter::new(log)))
        }
        _ => None,
    };
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            break Some(pid);
        }
        match child.try_wait() {
            Ok(Some(_)) => break None,
            Ok(None) => std::thread::sleep(PID_FILE_POLL),
            Err(e) => {
                return Err(RunError::Setup {
                    what: format!("cannot wait for OCI runtime {}", runtime.display()),
                    source: e,
                });
            }
        }
    };
    Ok(Delegated { child, pid, tee })
}

/// How often [`start_with_runtime`] looks for the runtime's pid file.
const PID_FILE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// [`start_with_runtime`], then [`Delegated::wait`].
pub fn run_with_runtime(
    runtime: &Path,
    spec: &Spec,
    bundle: &Path,
    id: &str,
    stdio: Stdio,
) -> Result<i32, RunError> {
    start_with_runtime(runtime, spec, bundle, id, stdio)?.wait()
}
