//! Control groups: a container's resource limits, its usage figures and its freezer.
//!
//! Each container gets the cgroup `stencil/ID`: under every hierarchy it needs on a cgroup
//! v1 host (`memory`, `cpu`, `cpuacct`, `pids`, `freezer`, `blkio`, found in
//! `/proc/self/mountinfo`, co-mounted ones once), or once under the unified hierarchy on a
//! cgroup v2 host (`/sys/fs/cgroup` holding `cgroup.controllers`), where `+memory +cpu
//! +pids +io` are enabled in the parents' `cgroup.subtree_control` first. The version is
//! detected at run time. [`Cgroup::create`] writes the [`Resources`] docker's flags asked
//! for; the runtime moves the container's first process in before it execs (see
//! `runtime::start`), so every process of the container is counted and limited from its
//! first instruction. [`Cgroup::usage`] reads what `stencil stats` shows, [`Cgroup::freeze`]
//! and [`Cgroup::thaw`] are `pause` and `unpause`, and [`Cgroup::remove`] deletes the
//! directories once the container's processes are gone.
//!
//! This module knows nothing of container records: callers name the cgroup by the
//! container's ID. It does not use a cgroup namespace; a container sees the host's paths.
//!
//! ```no_run
//! use stencil::container::cgroup::{Cgroup, Resources};
//! let resources = Resources { memory: Some(64 << 20), pids_limit: Some(20), ..Resources::default() };
//! let cgroup = Cgroup::create("0123abcd", &resources)?;
//! cgroup.attach(std::process::id() as i32)?;
//! # Ok::<(), stencil::container::cgroup::CgroupError>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The directory under each hierarchy that holds stencil's containers.
pub const PARENT: &str = "stencil";

/// The period of the CFS bandwidth controller, in microseconds, as docker uses it.
const CFS_PERIOD_US: i64 = 100_000;

/// The v1 hierarchies a container joins: those with limits, usage figures or the freezer.
const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "freezer", "blkio"];

/// The v2 controllers enabled for containers.
const V2_CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "io"];

/// How long [`Cgroup::remove`] and [`Cgroup::freeze`] wait for the kernel.
const SETTLE: Duration = Duration::from_secs(2);

/// The limits of a container, as docker's `HostConfig` names them; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    /// `-m`: memory in bytes.
    #[serde(default)]
    pub memory: Option<i64>,
    /// `--memory-swap`: memory plus swap in bytes; `-1` is unlimited swap.
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: Option<i64>,
    /// `--pids-limit`: the most processes and threads.
    #[serde(default)]
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// Whether any limit is asked for (then a cgroup is required, not a nicety).
    pub fn any(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.nano_cpus.is_some()
            || self.pids_limit.is_some()
    }

    /// The CFS quota and period (microseconds) that give [`Resources::nano_cpus`].
    pub fn cfs_quota(&self) -> Option<(i64, i64)> {
        self.nano_cpus
            .map(|nanos| (nanos * CFS_PERIOD_US / 1_000_000_000, CFS_PERIOD_US))
    }
}

/// A cgroup operation that failed, naming the file or directory at fault.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct CgroupError {
    /// What was being done (`cannot create cgroup`, `cannot write`…).
    pub what: &'static str,
    /// The cgroup directory or file.
    pub path: PathBuf,
    /// The system error.
    #[source]
    pub source: io::Error,
}

fn failed(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError { what, path, source }
}

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller (or group of co-mounted controllers).
    V1,
    /// The unified hierarchy.
    V2,
}

/// A container's cgroup: `stencil/ID` under each hierarchy used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: Version,
    /// v1: `(controllers of the hierarchy, MOUNT/stencil/ID)`; v2: one entry, all controllers.
    dirs: Vec<(Vec<String>, PathBuf)>,
}

/// The cgroup hierarchies of this host.
#[derive(Clone)]
struct Hierarchies {
    version: Version,
    /// Mount points with the controllers of each (empty for v2's single entry).
    mounts: Vec<(Vec<String>, PathBuf)>,
}

/// The unified hierarchy's usual mount point.
const UNIFIED: &str = "/sys/fs/cgroup";

/// The host's hierarchies, read once per process (mountinfo is long on some hosts, and a
/// container's start and exit look at them several times).
fn hierarchies() -> Result<Hierarchies, CgroupError> {
    static FOUND: std::sync::OnceLock<Hierarchies> = std::sync::OnceLock::new();
    if let Some(found) = FOUND.get() {
        return Ok(found.clone());
    }
    let found = read_hierarchies()?;
    Ok(FOUND.get_or_init(|| found).clone())
}

fn read_hierarchies() -> Result<Hierarchies, CgroupError> {
    let unified = Path::new(UNIFIED);
    if unified.join("cgroup.controllers").exists() {
        return Ok(Hierarchies {
            version: Version::V2,
            mounts: vec![(Vec::new(), unified.to_path_buf())],
        });
    }
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(mountinfo).map_err(failed("cannot read", mountinfo))?;
    let mut mounts: Vec<(Vec<String>, PathBuf)> = Vec::new();
    for line in text.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER_OPTIONS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let options = right.nth(1).unwrap_or_default();
        let controllers: Vec<String> = options
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_owned)
            .collect();
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        if controllers.is_empty() || mounts.iter().any(|(c, _)| *c == controllers) {
            continue;
        }
        mounts.push((controllers, PathBuf::from(unescape_octal(mount_point))));
    }
    Ok(Hierarchies {
        version: Version::V1,
        mounts,
    })
}

/// Undoes mountinfo's `\040`-style escapes of spaces, tabs, newlines and backslashes.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(failed("cannot write", path))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn read_number(path: &Path) -> Option<u64> {
    read(path)?.parse().ok()
}

/// The value of `key` in a `KEY VALUE` per line file such as `memory.stat`.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Enables the container controllers in `dir/cgroup.subtree_control` (v2), those the
/// hierarchy offers there.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read(&dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split(' ').any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

/// Usage figures of a container, as `stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use, without the inactive file cache (docker's figure).
    pub memory: u64,
    /// The memory limit, `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    /// See [`Usage::block_read`].
    pub block_write: u64,
    /// Processes and threads.
    pub pids: u64,
}

impl Cgroup {
    /// The cgroup of container `id` as it would be on this host, without touching it.
    pub fn open(id: &str) -> Result<Cgroup, CgroupError> {
        let hierarchies = hierarchies()?;
        Ok(Cgroup {
            version: hierarchies.version,
            dirs: hierarchies
                .mounts
                .into_iter()
                .map(|(controllers, mount)| (controllers, mount.join(PARENT).join(id)))
                .collect(),
        })
    }

    /// The stencil cgroup process `pid` is in (its container's), read from
    /// `/proc/PID/cgroup`; `None` when it is in none of stencil's (a container that
    /// started without one).
    pub fn of_process(pid: i32) -> Option<Cgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let hierarchies = hierarchies().ok()?;
        let mut dirs = Vec::new();
        for line in text.lines() {
            // `ID:CONTROLLERS:PATH`; v2's line has no controllers.
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if !path.starts_with(&format!("/{PARENT}/")) {
                continue;
            }
            let relative = path.trim_start_matches('/');
            let mount = hierarchies
                .mounts
                .iter()
                .find(|(ours, _)| match hierarchies.version {
                    Version::V2 => controllers.is_empty(),
                    Version::V1 => controllers.split(',').any(|c| ours.iter().any(|o| o == c)),
                });
            if let Some((ours, mount)) = mount {
                dirs.push((ours.clone(), mount.join(relative)));
            }
        }
        (!dirs.is_empty()).then_some(Cgroup {
            version: hierarchies.version,
            dirs,
        })
    }

    /// Creates the cgroup of container `id` and writes `resources` into it. A cgroup left
    /// from an earlier run of the same container is reused.
    pub fn create(id: &str, resources: &Resources) -> Result<Cgroup, CgroupError> {
        let cgroup = Cgroup::open(id)?;
        if cgroup.dirs.is_empty() {
            return Err(CgroupError {
                what: "no cgroup hierarchy is mounted under",
                path: PathBuf::from(UNIFIED),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        for (_, dir) in &cgroup.dirs {
            if cgroup.version == Version::V2
                && let Some(parent) = dir.parent()
                && let Some(root) = parent.parent()
            {
                enable_controllers(root)?;
                std::fs::create_dir_all(parent).map_err(failed("cannot create cgroup", parent))?;
                enable_controllers(parent)?;
            }
            std::fs::create_dir_all(dir).map_err(failed("cannot create cgroup", dir))?;
        }
        // Written as an update from no limits: one path for both.
        let created = cgroup.update(&Resources::default(), resources);
        if created.is_err() {
            let _ = cgroup.remove();
        }
        created.map(|()| cgroup)
    }

    /// The directory holding `controller`'s files, if this cgroup has that controller.
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(controllers, _)| {
                self.version == Version::V2 || controllers.iter().any(|c| c == controller)
            })
            .map(|(_, dir)| dir.as_path())
    }

    /// The directory of `controller`, or an error naming the missing hierarchy.
    fn require(&self, controller: &'static str) -> Result<&Path, CgroupError> {
        self.dir(controller).ok_or_else(|| CgroupError {
            what: "no cgroup hierarchy for the controller",
            path: PathBuf::from(controller),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }

    fn set_limits_v2(&self, resources: &Resources) -> Result<(), CgroupError> {
        let dir = self.require("memory")?;
        if let Some(memory) = resources.memory {
            write(&dir.join("memory.max"), &memory.to_string())?;
            let swap = dir.join("memory.swap.max");
            if let Some(total) = resources.memory_swap
                && swap.exists()
            {
                let value = if total < 0 {
                    "max".to_owned()
                } else {
                    (total - memory).max(0).to_string()
                };
                write(&swap, &value)?;
            }
        }
        if let Some((quota, period)) = resources.cfs_quota() {
            write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(pids) = resources.pids_limit {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    /// `docker update`: changes the limits from `old` to `new` in place. A limit `new`
    /// lacks is lifted; memory and memory+swap are written in the order the kernel takes
    /// (v1 refuses a memory limit above the memory+swap one, and the reverse).
    pub fn update(&self, old: &Resources, new: &Resources) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => {
                if let Some(memory) = new.memory {
                    let dir = self.require("memory")?;
                    let limit = dir.join("memory.limit_in_bytes");
                    let swap = dir.join("memory.memsw.limit_in_bytes");
                    let total = new.memory_swap.filter(|_| swap.exists());
                    let memory_first = write(&limit, &memory.to_string());
                    if let Some(total) = total {
                        write(&swap, &total.to_string())?;
                    }
                    if memory_first.is_err() {
                        write(&limit, &memory.to_string())?;
                    }
                }
                if new.nano_cpus != old.nano_cpus {
                    let dir = self.require("cpu")?;
                    match new.cfs_quota() {
                        Some((quota, period)) => {
                            write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                        }
                        None => write(&dir.join("cpu.cfs_quota_us"), "-1")?,
                    }
                }
                if new.pids_limit != old.pids_limit {
                    let dir = self.require("pids")?;
                    let value = new.pids_limit.map_or("max".to_owned(), |n| n.to_string());
                    write(&dir.join("pids.max"), &value)?;
                }
                Ok(())
            }
            Version::V2 => {
                let dir = self.require("memory")?;
                if new.nano_cpus != old.nano_cpus && new.nano_cpus.is_none() {
                    write(&dir.join("cpu.max"), "max")?;
                }
                if new.pids_limit != old.pids_limit && new.pids_limit.is_none() {
                    write(&dir.join("pids.max"), "max")?;
                }
                self.set_limits_v2(new)
            }
        }
    }

    /// The files a single-threaded process writes `0` into to move itself into this
    /// cgroup: v1's per-hierarchy `tasks`. `None` on v2, where a domain cgroup takes
    /// processes only through `cgroup.procs` ([`Cgroup::attach`]).
    ///
    /// A thread moving itself is the one move the kernel makes without taking
    /// `cgroup_threadgroup_rwsem` for writing, whose first taker waits for an RCU grace
    /// period (0.4 ms against 6.5 ms measured here for the same move).
    pub fn self_move_files(&self) -> Option<Vec<PathBuf>> {
        match self.version {
            Version::V1 => Some(self.dirs.iter().map(|(_, dir)| dir.join("tasks")).collect()),
            Version::V2 => None,
        }
    }

    /// Moves process `pid` (and, on v1, only that thread group) into every hierarchy.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the cgroup's directories exist (the container ran with a cgroup).
    pub fn exists(&self) -> bool {
        !self.dirs.is_empty() && self.dirs.iter().all(|(_, dir)| dir.is_dir())
    }

    /// Stops every process of the cgroup (`pause`); returns once the kernel says frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Lets the processes of a frozen cgroup run again (`unpause`).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.require("freezer")?;
        let (file, value) = match self.version {
            Version::V1 => (
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Version::V2 => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        write(&file, value)?;
        let deadline = Instant::now() + SETTLE;
        while self.is_frozen() != frozen {
            if Instant::now() >= deadline {
                return Err(CgroupError {
                    what: "the freezer did not settle in",
                    path: file,
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            // v1 may stay FREEZING while a task sleeps uninterruptibly: ask again.
            write(&file, value)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Whether the cgroup is frozen, as the kernel reports it.
    pub fn is_frozen(&self) -> bool {
        let Some(dir) = self.dir("freezer") else {
            return false;
        };
        match self.version {
            Version::V1 => read(&dir.join("freezer.state")).as_deref() == Some("FROZEN"),
            Version::V2 => keyed(&dir.join("cgroup.events"), "frozen") == Some(1),
        }
    }

    /// The container's usage figures; missing files read as zero.
    pub fn usage(&self) -> Usage {
        match self.version {
            Version::V1 => self.usage_v1(),
            Version::V2 => self.usage_v2(),
        }
    }

    fn usage_v1(&self) -> Usage {
        let mut usage = Usage::default();
        if let Some(dir) = self.dir("cpuacct") {
            usage.cpu_nanos = read_number(&dir.join("cpuacct.usage")).unwrap_or(0);
        }
        if let Some(dir) = self.dir("memory") {
            let used = read_number(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
            let inactive = keyed(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
            usage.memory = used.saturating_sub(inactive);
            // An unlimited v1 cgroup reports a page-rounded i64::MAX.
            usage.memory_limit = read_number(&dir.join("memory.limit_in_bytes"))
                .filter(|limit| *limit < i64::MAX as u64 / 2);
        }
        if let Some(dir) = self.dir("pids") {
            usage.pids = read_number(&dir.join("pids.current")).unwrap_or(0);
        }
        if let Some(dir) = self.dir("blkio") {
            let text = std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes"))
                .unwrap_or_default();
            for line in text.lines() {
                // `MAJ:MIN Read 4096`; the `Total` lines are sums.
                let mut fields = line.split(' ');
                let (Some(_), Some(op), Some(bytes)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let bytes: u64 = bytes.parse().unwrap_or(0);
                match op {
                    "Read" => usage.block_read += bytes,
                    "Write" => usage.block_write += bytes,
                    _ => {}
                }
            }
        }
        usage
    }

    fn usage_v2(&self) -> Usage {
        let Some(dir) = self.dir("memory") else {
            return Usage::default();
        };
        let mut usage = Usage {
            cpu_nanos: keyed(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            pids: read_number(&dir.join("pids.current")).unwrap_or(0),
            ..Usage::default()
        };
        let used = read_number(&dir.join("memory.current")).unwrap_or(0);
        let inactive = keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
        usage.memory = used.saturating_sub(inactive);
        usage.memory_limit = read_number(&dir.join("memory.max"));
        let text = std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
        for field in text.split_whitespace() {
            if let Some(bytes) = field.strip_prefix("rbytes=") {
                usage.block_read += bytes.parse::<u64>().unwrap_or(0);
            } else if let Some(bytes) = field.strip_prefix("wbytes=") {
                usage.block_write += bytes.parse::<u64>().unwrap_or(0);
            }
        }
        usage
    }

    /// How many processes of the cgroup the kernel's OOM killer has killed (v1's
    /// `memory.oom_control`, kernel 4.13 on; v2's `memory.events`); `None` when the
    /// memory controller or the counter is missing.
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.dir("memory")?;
        match self.version {
            Version::V1 => keyed(&dir.join("memory.oom_control"), "oom_kill"),
            Version::V2 => keyed(&dir.join("memory.events"), "oom_kill"),
        }
    }

    /// Removes the cgroup's directories, retrying while the last tasks drain (a process
    /// that has exited leaves its cgroup a moment after its parent saw it die). Missing
    /// directories are fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            remove_dir(dir)?;
        }
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error)
                if error.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(failed("cannot remove cgroup", dir)(error)),
        }
    }
}

/// How old an empty cgroup must be before [`remove_stale`] takes it: a container of
/// another store may have just made its cgroup and not yet moved its process in.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Removes the cgroups under `stencil/` whose container ID `keep` rejects, that hold no
/// process and were not touched for a minute (best effort: `rm` and `container prune`
/// clean up after crashed monitors). Other stores' containers share `stencil/`, hence the
/// age and emptiness checks. Returns the IDs removed.
pub fn remove_stale(keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Ok(hierarchies) = hierarchies() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (_, mount) in hierarchies.mounts {
        let Ok(entries) = std::fs::read_dir(mount.join(PARENT)) else {
            continue;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_AFTER));
            if !path.is_dir() || !old || keep(&id) {
                continue;
            }
            let empty = read(&path.join("cgroup.procs")).is_some_and(|procs| procs.is_empty());
            if empty && std::fs::remove_dir(&path).is_ok() && !removed.contains(&id) {
                removed.push(id);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfs_quota_follows_docker() {
        let check = |nanos: i64, quota: i64| {
            let resources = Resources {
                nano_cpus: Some(nanos),
                ..Resources::default()
            };
            assert_eq!(resources.cfs_quota(), Some((quota, 100_000)), "{nanos}");
        };
        check(500_000_000, 50_000);
        check(1_500_000_000, 150_000);
        check(10_000_000, 1_000);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_octal(r"/sys/fs/cgroup/a\040b"),
            "/sys/fs/cgroup/a b"
        );
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal(r"/x\\"), r"/x\\");
    }

    #[test]
    fn resources_without_limits_ask_for_none() {
        assert!(!Resources::default().any());
        assert!(
            Resources {
                pids_limit: Some(1),
                ..Resources::default()
            }
            .any()
        );
    }
}
