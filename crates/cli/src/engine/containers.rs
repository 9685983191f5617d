//! Containers as records and directories: create, look up, state, mount, diff, export,
//! commit and remove. Starting processes is [`crate::container`]'s job.
//!
//! A container is a record in the store (ID, name, image, the chain its snapshot sits on,
//! its configuration and state as JSON), a writable snapshot `container-ID` prepared on the
//! image's top layer (its upper and work directories live under `ROOT/snapshots`, owned by
//! the snapshotter), and `ROOT/containers/ID/` holding `merged` (the mountpoint of the
//! overlay), `config.json`, `state.json` (a copy of the state the store records, for people
//! and tools) and `log` (the output of a detached container).
//!
//! The configuration follows docker's override rules ([`CreateOptions`]): `--entrypoint`
//! replaces the image's entrypoint and resets its `Cmd`; arguments after the image replace
//! `Cmd`; the environment is the image's, then `--env-file` lines, then `-e` (a bare `-e
//! NAME` takes the value from stencil's own environment), on top of a default `PATH`,
//! `HOSTNAME` and, with `-t`, `TERM=xterm`; `-w` and `-u` replace the image's working
//! directory and user; the hostname is the first 12 hex digits of the ID unless
//! `--hostname`.
//!
//! The state survives the death of any process: a `running` state whose process is gone
//! (checked by pid and process start time) while its monitor is gone too reads as exited
//! with an unknown status, and is recorded so.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::engine::{CreateOptions, Engine};
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let options = CreateOptions { image: "busybox".into(), args: vec!["true".into()], ..CreateOptions::default() };
//! let container = engine.create_container(&options)?;
//! println!("{} {}", container.record.id, container.record.name);
//! engine.remove_container(&container, false)?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use stencil_cow_fs::{DiffOptions, Snapshotter, diff_trees, mount_all, unmount_all};
use stencil_layerstore::{ContainerRecord, ImageRecord, NewContainer};

use super::Engine;
use super::commit::{CommitOptions, Committed};
use crate::container::cgroup::{self, Cgroup, Resources};
use crate::container::runtime::Rlimit;

/// The containers' directory under the store root.
const CONTAINERS_DIR: &str = "containers";
/// Docker's `PATH` when neither the image nor the user sets one (the runtime's).
pub use crate::container::runtime::DEFAULT_PATH;

/// What `create` and `run` are asked for (docker's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The image, by name or ID.
    pub image: String,
    /// Arguments after the image: they replace its `Cmd`.
    pub args: Vec<String>,
    /// `--entrypoint` (an empty string clears the image's).
    pub entrypoint: Option<String>,
    /// `-e NAME=VALUE` or `-e NAME`.
    pub env: Vec<String>,
    /// `--env-file` files, read in order before `-e`.
    pub env_files: Vec<PathBuf>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-v [SOURCE:]CONTAINER[:OPTIONS]`.
    pub volumes: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--network none` gives a network namespace of its own.
    pub network_none: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--init`.
    pub init: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--runtime PATH`: an OCI runtime to hand the container to.
    pub runtime: Option<PathBuf>,
    /// `--label KEY=VALUE`: the container's own labels.
    pub labels: BTreeMap<String, String>,
    /// `--add-host NAME:IP`, as `NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// `--cap-add`, as given.
    pub cap_add: Vec<String>,
    /// `--cap-drop`, as given.
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--tmpfs PATH[:OPTIONS]`: path and options.
    pub tmpfs: BTreeMap<String, String>,
    /// `--stop-signal`, over the image's.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before killing, when it is not given `-t`.
    pub stop_timeout: Option<u64>,
    /// `-m`, `--memory-swap`, `--cpus`, `--pids-limit`.
    pub resources: Resources,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--health-*` flags (fields not given are the image's), or `--no-healthcheck`.
    pub healthcheck: Option<Healthcheck>,
    /// `--group-add`: group names or gids.
    pub group_add: Vec<String>,
    /// `--ulimit`.
    pub ulimits: Vec<Rlimit>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<u64>,
}

/// A resource limit as docker's `HostConfig.Ulimits` lists it (`-1`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, `nproc`, …
    pub name: String,
    /// The hard limit.
    pub hard: i64,
    /// The soft limit.
    pub soft: i64,
}

impl Ulimit {
    fn of(limit: &Rlimit) -> Ulimit {
        let number = |value: u64| i64::try_from(value).unwrap_or(-1);
        Ulimit {
            name: limit.name().to_owned(),
            hard: number(limit.hard),
            soft: number(limit.soft),
        }
    }

    /// The runtime's limit; `None` for a name it does not know (a hand-edited config).
    pub fn rlimit(&self) -> Option<Rlimit> {
        Rlimit::parse(&format!("{}={}:{}", self.name, self.soft, self.hard)).ok()
    }
}

/// A health check (docker's `Config.Healthcheck`, from the image's `HEALTHCHECK` and the
/// `--health-*` flags): durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", ARG…]`, `["CMD-SHELL", COMMAND]`, `["NONE"]`, or empty: the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Between two probes (default 30 s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// A probe that takes longer fails (default 30 s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Failures in this first stretch do not count (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Between two probes during the start period (default: the interval).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Failures in a row that make the container unhealthy (default 3).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Healthcheck {
    /// The check that runs: `self` (a container's flags) over `image`'s, field by field,
    /// as docker merges them; `None` when there is none or it is `NONE`.
    pub fn merged(own: Option<&Healthcheck>, image: Option<&Healthcheck>) -> Option<Healthcheck> {
        let pick = |a: i64, b: i64| if a != 0 { a } else { b };
        let merged = match (own, image) {
            (Some(own), Some(image)) => Healthcheck {
                test: if own.test.is_empty() {
                    image.test.clone()
                } else {
                    own.test.clone()
                },
                interval: pick(own.interval, image.interval),
                timeout: pick(own.timeout, image.timeout),
                start_period: pick(own.start_period, image.start_period),
                start_interval: pick(own.start_interval, image.start_interval),
                retries: pick(own.retries, image.retries),
            },
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => return None,
        };
        match merged.test.first().map(String::as_str) {
            Some("CMD") if merged.test.len() > 1 => Some(merged),
            Some("CMD-SHELL") if merged.test.len() == 2 => Some(merged),
            _ => None,
        }
    }

    /// The probe's argv: `CMD`'s arguments, or `CMD-SHELL`'s command under `/bin/sh -c`.
    pub fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1].clone()],
            _ => self.test.iter().skip(1).cloned().collect(),
        }
    }

    fn duration(nanos: i64, default: std::time::Duration) -> std::time::Duration {
        if nanos > 0 {
            std::time::Duration::from_nanos(nanos as u64)
        } else {
            default
        }
    }

    /// Between two probes.
    pub fn interval(&self) -> std::time::Duration {
        Self::duration(self.interval, std::time::Duration::from_secs(30))
    }

    /// Between two probes during the start period.
    pub fn start_interval(&self) -> std::time::Duration {
        Self::duration(self.start_interval, self.interval())
    }

    /// How long a probe may take.
    pub fn timeout(&self) -> std::time::Duration {
        Self::duration(self.timeout, std::time::Duration::from_secs(30))
    }

    /// How long failures do not count after a start.
    pub fn start_period(&self) -> std::time::Duration {
        Self::duration(self.start_period, std::time::Duration::ZERO)
    }

    /// Failures in a row that make the container unhealthy.
    pub fn retries(&self) -> u32 {
        if self.retries > 0 {
            self.retries as u32
        } else {
            3
        }
    }
}

/// When a container is started again after it exits (docker's `--restart`): `no`,
/// `always`, `unless-stopped`, `on-failure[:MAX-RETRIES]`. A container stopped by `stop`,
/// or killed with SIGKILL or its stop signal, is not restarted until it is started again.
/// Without a daemon, `unless-stopped` is `always` (they differ only when docker's daemon
/// starts), as in podman.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no` (also written as the empty string by older docker), `always`,
    /// `unless-stopped` or `on-failure`.
    pub name: String,
    /// `on-failure`'s limit on restarts; 0 for no limit.
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// Parses `--restart`'s value.
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let maximum_retry_count = match count {
            None => 0,
            Some(count) => match count.parse::<i64>() {
                Ok(n) if n < 0 => {
                    bail!("invalid restart policy {text:?}: maximum retry count cannot be negative")
                }
                Ok(n) => u32::try_from(n).map_err(|_| {
                    anyhow!("invalid restart policy {text:?}: maximum retry count is too large")
                })?,
                Err(_) => {
                    bail!("invalid restart policy {text:?}: maximum retry count must be an integer")
                }
            },
        };
        match name {
            "no" | "" | "always" | "unless-stopped" if count.is_some() => bail!(
                "invalid restart policy {text:?}: maximum retry count cannot be used with restart policy {name:?}"
            ),
            "no" | "" => Ok(RestartPolicy::default()),
            "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
                name: name.to_owned(),
                maximum_retry_count,
            }),
            _ => bail!(
                "invalid restart policy {text:?}: give no, always, unless-stopped or on-failure[:MAX-RETRIES]"
            ),
        }
    }

    /// Whether there is a policy at all (not `no`).
    pub fn any(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }

    /// Whether a container that exited with `code` (`None`: unknown) after `restarts`
    /// restarts since it was last started by hand is started again.
    pub fn restarts(&self, code: Option<i32>, restarts: u32) -> bool {
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != Some(0)
                    && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// docker's `HostConfig.RestartPolicy.Name`: `no` when there is none.
    pub fn shown_name(&self) -> &str {
        if self.any() { &self.name } else { "no" }
    }
}

/// A mount of `-v`: a host path, or a volume of the store (its `_data` directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeConfig {
    /// Absolute host path (a volume's `_data` directory for a volume).
    pub host: PathBuf,
    /// Absolute path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The volume's name, when it is a volume of the store rather than a host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A volume made for this container (`-v /path`, the image's `VOLUME`): `rm -v` and
    /// `--rm` remove it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// `nocopy`: the volume does not receive what the image holds at its path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
}

/// Where a `-v` mount comes from, before volumes are looked up or made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MountSource {
    /// An absolute host path.
    Host(PathBuf),
    /// A named volume.
    Named(String),
    /// A new anonymous volume.
    Anonymous,
}

/// A parsed `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountSpec {
    source: MountSource,
    container: String,
    read_only: bool,
    nocopy: bool,
}

/// A container's configuration, fixed at creation (`config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The image as the user named it (shown by `ps`).
    pub image: String,
    /// The image ID (config digest).
    pub image_id: String,
    /// The image's manifest digest.
    pub image_manifest: String,
    /// The final argv.
    pub args: Vec<String>,
    /// The final environment.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// The user (`name`, `uid`, `uid:gid`…), empty for root.
    pub user: String,
    /// The hostname.
    pub hostname: String,
    /// Bind mounts.
    pub volumes: Vec<VolumeConfig>,
    /// Whether the container has a network namespace of its own (`--network none`).
    pub network_none: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--init`.
    pub init: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// The image's stop signal, when it has one.
    pub stop_signal: Option<String>,
    /// `--runtime PATH`.
    pub runtime: Option<PathBuf>,
    /// Resource limits, applied through the container's cgroup.
    #[serde(default)]
    pub resources: Resources,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Its labels: the image's, with `--label`'s over them (docker's `Config.Labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `--add-host`: `NAME:IP` lines added to its `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// `--cap-add`, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// `--cap-drop`, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability, no masked paths.
    #[serde(default)]
    pub privileged: bool,
    /// `--tmpfs`: path and mount options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
    /// `--stop-timeout`: seconds `stop` waits by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// The entrypoint part of `args` (`commit` records it as the image's `Entrypoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The command part of `args` (`commit` records it as the image's `Cmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `--restart`.
    #[serde(default, skip_serializing_if = "is_no_policy")]
    pub restart: RestartPolicy,
    /// The health check that runs (the image's merged with `--health-*`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `--group-add`: supplementary groups, names or gids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `--ulimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size` in bytes (`None`: 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
}

impl ContainerConfig {
    /// Its `--ulimit`s as the runtime takes them (for its start, `exec` and probes alike).
    pub fn rlimits(&self) -> Vec<Rlimit> {
        self.ulimits.iter().filter_map(Ulimit::rlimit).collect()
    }
}

fn is_no_policy(policy: &RestartPolicy) -> bool {
    !policy.any()
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or its start failed).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
    /// Its process ended and its restart policy starts it again after a delay; its
    /// monitor waits meanwhile (docker counts it as running, with `Restarting` set).
    Restarting,
}

impl Status {
    /// docker's word for it (`ps --format '{{.State}}'`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Restarting => "restarting",
        }
    }
}

/// A container's state (`state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// Created, running or exited.
    pub status: Status,
    /// Host pid of the container's first process while it runs.
    pub pid: Option<i32>,
    /// That process's start time (clock ticks after boot, from `/proc/PID/stat`), so a
    /// reused pid is not mistaken for it.
    pub pid_start: Option<u64>,
    /// Host pid of the process waiting for it (the monitor, or a foreground `run`).
    pub monitor_pid: Option<i32>,
    /// The exit code; `None` after an exit nobody saw.
    pub exit_code: Option<i32>,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
    /// Why it could not start, when it could not.
    pub error: Option<String>,
    /// Frozen by `pause` (it still counts as running, as in docker); read from the
    /// freezer whenever the container is loaded.
    #[serde(default)]
    pub paused: bool,
    /// The kernel's OOM killer killed a process of the container during its last run
    /// (docker's `State.OOMKilled`), read from its cgroup at exit.
    #[serde(default, rename = "OOMKilled")]
    pub oom_killed: bool,
    /// How many times its restart policy started it again since it was last started by
    /// hand (docker's `RestartCount`).
    #[serde(default)]
    pub restart_count: u32,
}

/// A container: its record, configuration and current state.
#[derive(Debug, Clone)]
pub struct Container {
    /// The store's record.
    pub record: ContainerRecord,
    /// Its configuration.
    pub config: ContainerConfig,
    /// Its state, checked against the processes that should be alive.
    pub state: ContainerState,
}

impl Container {
    /// The first 12 hex digits of the ID, as docker shows it.
    pub fn short_id(&self) -> &str {
        &self.record.id[..12.min(self.record.id.len())]
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        self.state.status == Status::Running
    }

    /// Whether it waits to be started again by its restart policy.
    pub fn is_restarting(&self) -> bool {
        self.state.status == Status::Restarting
    }

    /// Running or restarting: what docker's `State.Running` says, and what `ps` lists
    /// without `-a`.
    pub fn is_up(&self) -> bool {
        self.is_running() || self.is_restarting()
    }
}

impl Engine {
    /// `ROOT/containers/ID`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(CONTAINERS_DIR).join(id)
    }

    /// Where the container's root filesystem is mounted.
    pub fn container_rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("merged")
    }

    /// Creates a container from `options`: its record, its writable snapshot on the image
    /// and its directory. Nothing is mounted or started.
    pub fn create_container(&self, options: &CreateOptions) -> Result<Container> {
        if options.auto_remove && options.restart.any() {
            bail!("Conflicting options: --restart and --rm");
        }
        let image = self.find_image(&options.image).with_context(|| {
            format!(
                "Unable to find image '{}' locally (pull it first)",
                options.image
            )
        })?;
        let image_config = self.image_config(&image)?;
        let settings = image_config
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let id = random_id()?;
        let hostname = match &options.hostname {
            Some(name) if !name.is_empty() => name.clone(),
            _ => id[..12].to_owned(),
        };
        let (entrypoint, cmd, args) = command_line(&settings, options)?;
        let env = environment(&settings, options, &hostname)?;
        let working_dir = match &options.workdir {
            Some(dir) if !dir.starts_with('/') => {
                bail!("the working directory '{dir}' is invalid, it needs to be an absolute path")
            }
            Some(dir) => dir.clone(),
            None => string_field(&settings, "WorkingDir")
                .filter(|dir| !dir.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
        };
        let user = options
            .user
            .clone()
            .or_else(|| string_field(&settings, "User"))
            .unwrap_or_default();
        let mut mounts = options
            .volumes
            .iter()
            .map(|text| parse_volume(text))
            .collect::<Result<Vec<_>>>()?;
        let mut targets = std::collections::HashSet::new();
        for mount in &mounts {
            if !targets.insert(mount_target(&mount.container)) {
                bail!(
                    "duplicate mount point: {} is given twice (-v)",
                    mount_target(&mount.container)
                );
            }
        }
        // Another container's mounts, where no -v goes.
        for entry in &options.volumes_from {
            let (source, mode) = match entry.rsplit_once(':') {
                Some((source, mode)) if mode == "ro" || mode == "rw" => (source, Some(mode)),
                _ => (entry.as_str(), None),
            };
            let other = self
                .container(source)
                .with_context(|| format!("invalid --volumes-from {entry:?}"))?;
            for volume in &other.config.volumes {
                let target = mount_target(&volume.container);
                if !targets.insert(target.clone()) {
                    continue;
                }
                mounts.push(MountSpec {
                    source: match &volume.name {
                        Some(name) => MountSource::Named(name.clone()),
                        None => MountSource::Host(volume.host.clone()),
                    },
                    container: target,
                    read_only: mode.map_or(volume.read_only, |mode| mode == "ro"),
                    nocopy: true,
                });
            }
        }
        // The image's VOLUMEs that nothing else covers get anonymous volumes, as docker's.
        let tmpfs_targets: Vec<String> = options.tmpfs.keys().map(|p| mount_target(p)).collect();
        if let Some(declared) = settings.get("Volumes").and_then(Value::as_object) {
            for path in declared.keys() {
                let target = mount_target(path);
                if !path.starts_with('/')
                    || target == "/"
                    || targets.contains(&target)
                    || tmpfs_targets.contains(&target)
                {
                    continue;
                }
                targets.insert(target.clone());
                mounts.push(MountSpec {
                    source: MountSource::Anonymous,
                    container: target,
                    read_only: false,
                    nocopy: false,
                });
            }
        }
        if let Some(runtime) = &options.runtime
            && !runtime.is_file()
        {
            bail!(
                "OCI runtime {} not found: give the path of an executable such as /usr/bin/runc",
                runtime.display()
            );
        }
        let config = ContainerConfig {
            image: options.image.clone(),
            image_id: image.config_digest.to_string(),
            image_manifest: image.manifest_digest.to_string(),
            args,
            env,
            working_dir,
            user,
            hostname,
            volumes: Vec::new(),
            network_none: options.network_none,
            read_only: options.read_only,
            tty: options.tty,
            interactive: options.interactive,
            init: options.init,
            auto_remove: options.auto_remove,
            stop_signal: options
                .stop_signal
                .clone()
                .or_else(|| string_field(&settings, "StopSignal")),
            runtime: options.runtime.clone(),
            resources: options.resources,
            created: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            labels: {
                // As docker's: the image's labels, with the container's own over them.
                let mut labels: BTreeMap<String, String> = settings
                    .get("Labels")
                    .and_then(Value::as_object)
                    .map(|labels| {
                        labels
                            .iter()
                            .filter_map(|(key, value)| {
                                Some((key.clone(), value.as_str()?.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                labels.extend(options.labels.clone());
                labels
            },
            extra_hosts: options.extra_hosts.clone(),
            cap_add: options.cap_add.clone(),
            cap_drop: options.cap_drop.clone(),
            privileged: options.privileged,
            tmpfs: options.tmpfs.clone(),
            stop_timeout: options.stop_timeout,
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            restart: options.restart.clone(),
            healthcheck: Healthcheck::merged(
                options.healthcheck.as_ref(),
                settings
                    .get("Healthcheck")
                    .and_then(|value| serde_json::from_value(value.clone()).ok())
                    .as_ref(),
            ),
            group_add: options.group_add.clone(),
            ulimits: options.ulimits.iter().map(Ulimit::of).collect(),
            shm_size: options.shm_size,
        };
        let name = match &options.name {
            Some(name) => validate_name(name)?,
            None => self.unused_name()?,
        };
        self.record_with_volumes(&id, &name, &image, config, &mounts)
    }

    /// Finds or makes the volumes of `mounts`, then records the container with them, under
    /// the volumes lock so that no `volume rm` takes them in between. A failure removes
    /// the volumes made for it; new volumes then receive what the image holds at their
    /// paths.
    fn record_with_volumes(
        &self,
        id: &str,
        name: &str,
        image: &ImageRecord,
        mut config: ContainerConfig,
        mounts: &[MountSpec],
    ) -> Result<Container> {
        let lock = if mounts
            .iter()
            .any(|m| !matches!(m.source, MountSource::Host(_)))
        {
            Some(self.lock_volumes()?)
        } else {
            None
        };
        let mut made = Vec::new();
        let mut resolve = || -> Result<()> {
            for mount in mounts {
                let volume = match &mount.source {
                    MountSource::Host(path) => {
                        config.volumes.push(VolumeConfig {
                            host: path.clone(),
                            container: mount.container.clone(),
                            read_only: mount.read_only,
                            ..VolumeConfig::default()
                        });
                        continue;
                    }
                    MountSource::Named(volume) => {
                        self.create_volume_locked(Some(volume), &BTreeMap::new())?
                    }
                    MountSource::Anonymous => self.create_volume_locked(None, &BTreeMap::new())?,
                };
                let (volume, new) = volume;
                if new {
                    made.push(volume.name.clone());
                }
                config.volumes.push(VolumeConfig {
                    host: volume.mountpoint.clone(),
                    container: mount.container.clone(),
                    read_only: mount.read_only,
                    anonymous: volume.is_anonymous(),
                    nocopy: mount.nocopy,
                    name: Some(volume.name),
                });
            }
            Ok(())
        };
        let recorded = resolve().and_then(|()| self.record_container(id, name, image, config));
        let container = match recorded {
            Ok(container) => container,
            Err(error) => {
                self.remove_unused_volumes(&made);
                return Err(error);
            }
        };
        // Filled under the lock too: two containers made at once on one new volume do not
        // both copy into it.
        let populated = if container
            .config
            .volumes
            .iter()
            .any(|v| v.name.is_some() && !v.nocopy)
        {
            self.mount_container(&container).and_then(|rootfs| {
                let done = self.populate_volumes(&container.config, &rootfs);
                let _ = self.unmount_container(&container);
                done
            })
        } else {
            Ok(())
        };
        drop(lock);
        if let Err(error) = populated {
            let _ = self.remove_container(&container, false);
            self.remove_anonymous_volumes(&container.config);
            return Err(error);
        }
        Ok(container)
    }

    fn record_container(
        &self,
        id: &str,
        name: &str,
        image: &ImageRecord,
        config: ContainerConfig,
    ) -> Result<Container> {
        let parent = image.layers.last().map(|layer| layer.chain_id.clone());
        if let Some(chain) = &parent
            && !self.has_snapshot(chain)
        {
            self.unpack_image(image, &|_| {})?;
        }
        let key = snapshot_key(id);
        self.snapshots
            .prepare(&key, parent.as_ref().map(|c| c.as_str()))
            .with_context(|| format!("cannot prepare the writable layer of container {name}"))?;
        let snapshot_id = self.snapshots.stat(&key).ok().map(|info| info.id);
        let dir = self.container_dir(id);
        let created = std::fs::create_dir_all(dir.join("merged"))
            .with_context(|| format!("cannot create {}", dir.display()))
            .and_then(|()| write_json(&dir.join("config.json"), &config))
            .and_then(|()| write_json(&dir.join("state.json"), &ContainerState::default()));
        let recorded = created.and_then(|()| {
            self.store
                .create_container(&NewContainer {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    image_id: Some(image.id),
                    parent_chain_id: parent.clone(),
                    snapshot_key: key.clone(),
                    snapshot_id,
                    config: serde_json::to_string(&config)?,
                    state: serde_json::to_string(&ContainerState::default())?,
                })
                .map_err(anyhow::Error::from)
        });
        match recorded {
            Ok(record) => Ok(Container {
                record,
                config,
                state: ContainerState::default(),
            }),
            Err(error) => {
                let _ = self.snapshots.remove(&key);
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// The container named by full ID, name or unique ID prefix, with its state checked.
    pub fn container(&self, text: &str) -> Result<Container> {
        let record = self.store.container(text)?;
        self.load_container(record)
    }

    /// Every container, newest first, with states checked.
    pub fn containers(&self) -> Result<Vec<Container>> {
        self.store
            .containers()?
            .into_iter()
            .map(|record| self.load_container(record))
            .collect()
    }

    fn load_container(&self, record: ContainerRecord) -> Result<Container> {
        let config: ContainerConfig = serde_json::from_str(&record.config).with_context(|| {
            format!("the configuration of container {} is unreadable", record.id)
        })?;
        let state: ContainerState = serde_json::from_str(&record.state).unwrap_or_default();
        let mut container = Container {
            record,
            config,
            state,
        };
        self.check_state(&mut container);
        // The freezer is the truth about pausing: `kill` thaws, a reboot forgets.
        container.state.paused = container.is_running()
            && Cgroup::open(&container.record.id).is_ok_and(|c| c.is_frozen());
        Ok(container)
    }

    /// A running state whose process and watcher are both gone becomes an exit nobody
    /// saw; the overlay is unmounted.
    fn check_state(&self, container: &mut Container) {
        if !container.is_up() {
            return;
        }
        let alive = container.state.pid.is_some_and(|pid| {
            process_start_time(pid).is_some()
                && process_start_time(pid) == container.state.pid_start
        });
        let watched = container
            .state
            .monitor_pid
            .is_some_and(|pid| process_start_time(pid).is_some());
        if alive || watched {
            return;
        }
        // A restarting container whose monitor died keeps the code of its last exit.
        if container.is_running() {
            container.state.exit_code = None;
        }
        container.state.status = Status::Exited;
        container.state.pid = None;
        container.state.finished_at = Some(now());
        let _ = self.set_container_state(container);
        let _ = self.unmount_container(container);
    }

    /// Gives `container` the name `name` (`docker rename`).
    pub fn rename_container(&self, container: &Container, name: &str) -> Result<()> {
        let name = validate_name(name)?;
        self.store
            .rename_container(&container.record.id, &name)
            .with_context(|| format!("cannot rename container {}", container.record.name))
    }

    /// `docker update`: gives `container` the limits `resources`, in its cgroup at once
    /// when it runs, and in its configuration for its next starts. The cgroup is written
    /// first: limits the kernel refuses change nothing.
    pub fn update_container_resources(
        &self,
        container: &Container,
        resources: Resources,
    ) -> Result<()> {
        let old = container.config.resources;
        if container.is_running() {
            let cgroup = Cgroup::open(&container.record.id)?;
            if cgroup.exists() {
                cgroup.update(&old, &resources).with_context(|| {
                    format!(
                        "cannot change the limits of container {}",
                        container.record.name
                    )
                })?;
            } else if resources.any() {
                bail!(
                    "container {} runs without a cgroup (see its start warning): its limits cannot change until it restarts",
                    container.record.name
                );
            }
        }
        let mut config = container.config.clone();
        config.resources = resources;
        self.set_container_config(&container.record.id, &config)
    }

    /// `docker update --restart`: the policy applies from the container's next exit.
    pub fn update_restart_policy(
        &self,
        container: &Container,
        policy: &RestartPolicy,
    ) -> Result<()> {
        if container.config.auto_remove && policy.any() {
            bail!(
                "Restart policy cannot be updated because AutoRemove is enabled for container {}",
                container.record.name
            );
        }
        let mut config = container.config.clone();
        config.restart = policy.clone();
        self.set_container_config(&container.record.id, &config)
    }

    /// Records a changed configuration of container `id` in the store and in
    /// `config.json`.
    fn set_container_config(&self, id: &str, config: &ContainerConfig) -> Result<()> {
        self.store
            .set_container_config(id, &serde_json::to_string(config)?)?;
        write_json(&self.container_dir(id).join("config.json"), config)
    }

    /// Records `container.state` in the store and in `state.json`.
    pub fn set_container_state(&self, container: &Container) -> Result<()> {
        let text = serde_json::to_string(&container.state)?;
        self.store
            .set_container_state(&container.record.id, &text)?;
        let dir = self.container_dir(&container.record.id);
        write_json(&dir.join("state.json"), &container.state)
    }

    /// Mounts the container's root filesystem (when it is not yet) and returns its path.
    pub fn mount_container(&self, container: &Container) -> Result<PathBuf> {
        let target = self.container_rootfs(&container.record.id);
        if is_mountpoint(&target) {
            return Ok(target);
        }
        std::fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let mounts = self
            .snapshots
            .mounts(&container.record.snapshot_key)
            .with_context(|| {
                format!(
                    "the writable layer of container {} is missing",
                    container.record.name
                )
            })?;
        mount_all(&mounts, &target).with_context(|| {
            format!(
                "cannot mount the root filesystem of container {}",
                container.record.name
            )
        })?;
        Ok(target)
    }

    /// Unmounts the container's root filesystem when it is mounted.
    pub fn unmount_container(&self, container: &Container) -> Result<()> {
        let target = self.container_rootfs(&container.record.id);
        if is_mountpoint(&target) {
            unmount_all(&target).with_context(|| format!("cannot unmount {}", target.display()))?;
        }
        Ok(())
    }

    /// Removes a container that does not run: unmounts it, removes its snapshot, its
    /// directory and its record. A running container is refused unless the caller
    /// stopped it (`rm -f` kills it first).
    pub fn remove_container(&self, container: &Container, running_ok: bool) -> Result<()> {
        if container.is_up() && !running_ok {
            bail!(
                "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove",
                container.record.name,
                container.state.status.as_str()
            );
        }
        self.unmount_container(container)?;
        let id = &container.record.id;
        match self.snapshots.remove(&container.record.snapshot_key) {
            Ok(()) => {}
            Err(error) if error.kind() == stencil_cow_fs::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!(
                    "cannot remove the writable layer of container {id}"
                )));
            }
        }
        let released = match self.store.remove_container(id) {
            Ok(released) => released,
            // Removed meanwhile by its monitor (`--rm`).
            Err(error) if error.kind() == stencil_layerstore::ErrorKind::ContainerNotFound => None,
            Err(error) => return Err(error.into()),
        };
        if let Some(snapshot) = released {
            let _ = self.snapshots.remove(&snapshot.key);
        }
        let dir = self.container_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        // Cgroups outlive a monitor that crashed: this one's, and others left so.
        if let Err(error) = Cgroup::open(id).and_then(|cgroup| cgroup.remove()) {
            tracing::warn!(container = %id, "{error}");
        }
        cgroup::remove_stale(&|other| self.store.container(other).is_ok());
        Ok(())
    }

    /// Removes from the writable layer of snapshot `key` the mount points a runtime made
    /// there (new empty files and empty directories among `mount_points`, such as
    /// `/etc/hosts` or `/proc`) and the directories copied up only to hold them, so that
    /// a snapshot kept as an image's layer holds what the layer's tar holds. Only for an
    /// overlay upper directory; a full copy is left alone.
    pub(crate) fn clear_placeholders(&self, key: &str, mount_points: &[String]) -> Result<()> {
        let target = self
            .snapshots
            .layer_target(key)
            .with_context(|| format!("cannot find the writable layer of {key}"))?;
        if target.whiteouts != stencil_cow_fs::WhiteoutMode::Overlay {
            return Ok(());
        }
        let mut paths: Vec<&Path> = mount_points
            .iter()
            .map(|p| Path::new(p.trim_start_matches('/')))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        // Deepest first, so a directory is looked at after what it holds.
        paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut parents = Vec::new();
        for rel in paths {
            let path = target.dir.join(rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if exists_below(&target.parents, rel) {
                continue;
            }
            let removed = if meta.is_file() && meta.len() == 0 {
                std::fs::remove_file(&path)
            } else if meta.is_dir() && is_empty_tree(&path) && !is_opaque(&path) {
                std::fs::remove_dir_all(&path)
            } else {
                continue;
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                parents.push(parent.to_path_buf());
            }
        }
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        parents.dedup();
        for rel in parents {
            let path = target.dir.join(&rel);
            let empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
            if empty && !is_opaque(&path) && same_as_below(&path, &target.parents, &rel) {
                // Copied up only to hold the placeholders: the layer below shows through
                // again, as it is. (A directory made new stays: the layer's tar has it.)
                std::fs::remove_dir(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// `docker diff`: `A`, `C` and `D` lines for what the container added, changed and
    /// deleted, sorted by path.
    pub fn container_changes(&self, container: &Container) -> Result<Vec<(char, String)>> {
        let target = self
            .snapshots
            .layer_target(&container.record.snapshot_key)
            .with_context(|| {
                format!(
                    "the writable layer of container {} is missing",
                    container.record.name
                )
            })?;
        let mut changes = Vec::new();
        let mount_points = mount_points(&container.config);
        upper_changes(
            &target.dir,
            &target.parents,
            Path::new(""),
            &mount_points,
            &mut changes,
        )?;
        changes.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(changes)
    }

    /// `docker export`: the container's whole filesystem as one tar, written to `out`.
    pub fn export_container(&self, container: &Container, out: &mut dyn Write) -> Result<()> {
        let was_mounted = is_mountpoint(&self.container_rootfs(&container.record.id));
        let rootfs = self.mount_container(container)?;
        let empty = tempfile::tempdir().context("cannot create a temporary directory")?;
        let written = diff_trees(empty.path(), &rootfs, out, &DiffOptions::default())
            .map(|_| ())
            .with_context(|| format!("cannot export container {}", container.record.name));
        if !was_mounted && !container.is_running() {
            let _ = self.unmount_container(container);
        }
        written
    }

    /// `docker commit`: the container's changes become a new image on its image; the
    /// container keeps its layer.
    pub fn commit_container(
        &self,
        container: &Container,
        options: &CommitOptions,
    ) -> Result<Committed> {
        let image = self
            .container_image(container)?
            .ok_or_else(|| anyhow!("the image of container {} is gone", container.record.name))?;
        let mut options = options.clone();
        if options.config.is_none() {
            options.config = Some(committed_settings(
                &self.image_config(&image)?,
                &container.config,
            ));
        }
        options.keep_snapshot = true;
        options.mount_points = mount_points(&container.config);
        if options.created_by.is_none() {
            options.created_by = Some(container.config.args.join(" "));
        }
        self.commit_snapshot(&container.record.snapshot_key, Some(&image), &options)
    }

    /// The image a container was created from.
    pub fn container_image(&self, container: &Container) -> Result<Option<ImageRecord>> {
        let Some(image_id) = container.record.image_id else {
            return Ok(None);
        };
        Ok(self
            .store
            .images()?
            .into_iter()
            .find(|image| image.id == image_id))
    }

    fn unused_name(&self) -> Result<String> {
        let mut seed = random_bytes::<8>()?;
        for attempt in 0..64u32 {
            let name = super::names::generate(u64::from_le_bytes(seed), attempt);
            match self.store.container(&name) {
                Err(error) if error.kind() == stencil_layerstore::ErrorKind::ContainerNotFound => {
                    return Ok(name);
                }
                _ => seed = random_bytes::<8>()?,
            }
        }
        bail!("cannot find an unused container name: give one with --name")
    }
}

/// The snapshotter key of a container's writable layer.
fn snapshot_key(id: &str) -> String {
    format!("container-{id}")
}

fn string_field(settings: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    settings.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn string_list(settings: &serde_json::Map<String, Value>, key: &str) -> Vec<String> {
    settings
        .get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Entrypoint + Cmd with docker's rules.
/// The image settings (`config` of the image config) `commit` records for a container,
/// as docker's: the image's, with what the container was created with over them: its
/// environment (less the `HOSTNAME` and the `TERM` of `-t` that the runtime adds), command,
/// entrypoint, working directory, user, labels and stop signal.
fn committed_settings(
    image_config: &Map<String, Value>,
    container: &ContainerConfig,
) -> Map<String, Value> {
    let mut settings = image_config
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let image_env = string_list(&settings, "Env");
    let env: Vec<&String> = container
        .env
        .iter()
        .filter(|entry| !entry.starts_with("HOSTNAME="))
        .filter(|entry| {
            !(container.tty && entry.as_str() == "TERM=xterm" && !image_env.contains(entry))
        })
        .collect();
    settings.insert("Env".into(), json!(env));
    if let Some(cmd) = &container.cmd {
        settings.insert(
            "Cmd".into(),
            if cmd.is_empty() {
                Value::Null
            } else {
                json!(cmd)
            },
        );
    }
    if let Some(entrypoint) = &container.entrypoint {
        settings.insert(
            "Entrypoint".into(),
            if entrypoint.is_empty() {
                Value::Null
            } else {
                json!(entrypoint)
            },
        );
    }
    settings.insert("WorkingDir".into(), json!(container.working_dir));
    settings.insert("User".into(), json!(container.user));
    if container.labels.is_empty() {
        settings.remove("Labels");
    } else {
        settings.insert("Labels".into(), json!(container.labels));
    }
    if let Some(signal) = &container.stop_signal {
        settings.insert("StopSignal".into(), json!(signal));
    }
    settings
}

/// The entrypoint, the command and their concatenation (the argv) of a new container.
fn command_line(
    settings: &serde_json::Map<String, Value>,
    options: &CreateOptions,
) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let (entrypoint, cmd) = match &options.entrypoint {
        // `--entrypoint` resets the image's Cmd.
        Some(entrypoint) if entrypoint.is_empty() => (Vec::new(), options.args.clone()),
        Some(entrypoint) => (vec![entrypoint.clone()], options.args.clone()),
        None => {
            let cmd = if options.args.is_empty() {
                string_list(settings, "Cmd")
            } else {
                options.args.clone()
            };
            (string_list(settings, "Entrypoint"), cmd)
        }
    };
    let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if args.is_empty() {
        bail!(
            "No command specified: the image {} has no CMD or ENTRYPOINT; give a command after the image",
            options.image
        );
    }
    Ok((entrypoint, cmd, args))
}

/// The final environment with docker's rules.
fn environment(
    settings: &serde_json::Map<String, Value>,
    options: &CreateOptions,
    hostname: &str,
) -> Result<Vec<String>> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if options.tty {
        env.push("TERM=xterm".to_owned());
    }
    let mut wanted = string_list(settings, "Env");
    for file in &options.env_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read env file {}", file.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            wanted.extend(from_host(line));
        }
    }
    for entry in &options.env {
        if entry.is_empty() || entry.starts_with('=') {
            bail!("invalid environment variable {entry:?}: give NAME=VALUE or NAME");
        }
        wanted.extend(from_host(entry));
    }
    for entry in wanted {
        let name = entry.split('=').next().unwrap_or_default().to_owned();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(name.as_str()))
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
    Ok(env)
}

/// `NAME=VALUE` as it is; a bare `NAME` takes stencil's own value, or nothing.
fn from_host(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_owned());
    }
    std::env::var(entry)
        .ok()
        .map(|value| format!("{entry}={value}"))
}

/// Docker's `-v [SOURCE:]CONTAINER[:OPTIONS]`: SOURCE an absolute host path or a volume
/// name (none: an anonymous volume); OPTIONS a comma list of `ro`, `rw`, `nocopy` (volumes
/// only), and `z`, `Z`, `private`, `rprivate` (accepted, nothing to do here).
fn parse_volume(text: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = text.split(':').collect();
    let usage = "give [HOST-PATH|VOLUME:]CONTAINER-PATH[:ro]";
    let (source, container, mode) = match parts.as_slice() {
        [container] => (None, *container, ""),
        [source, container] if !container.starts_with('/') && source.starts_with('/') => {
            // `/path:ro`: an anonymous volume with options.
            (None, *source, *container)
        }
        [source, container] => (Some(*source), *container, ""),
        [source, container, mode] => (Some(*source), *container, *mode),
        _ => bail!("invalid volume specification {text:?}: {usage}"),
    };
    if container.is_empty() || !container.starts_with('/') {
        bail!("invalid volume specification {text:?}: the container path must be absolute");
    }
    if container.split('/').any(|part| part == "..") || container == "/" {
        bail!(
            "invalid volume specification {text:?}: the container path must name a directory below /, without \"..\""
        );
    }
    let source = match source {
        None => MountSource::Anonymous,
        Some(host) if host.starts_with('/') => MountSource::Host(PathBuf::from(host)),
        Some(name) => {
            super::volumes::check_volume_name(name)
                .with_context(|| format!("invalid volume specification {text:?}"))?;
            MountSource::Named(name.to_owned())
        }
    };
    let (mut read_only, mut nocopy) = (false, false);
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" if !matches!(source, MountSource::Host(_)) => nocopy = true,
            "nocopy" => bail!(
                "invalid volume specification {text:?}: nocopy is for volumes, not host paths"
            ),
            "z" | "Z" | "private" | "rprivate" => {}
            other => bail!(
                "invalid volume specification {text:?}: unknown option {other:?} (ro, rw, nocopy)"
            ),
        }
    }
    Ok(MountSpec {
        source,
        container: container.to_owned(),
        read_only,
        nocopy,
    })
}

/// Normalised container path of a mount, to compare destinations (`/data/` is `/data`).
fn mount_target(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// `name` without docker's optional leading `/`, when it is a valid container name.
fn validate_name(name: &str) -> Result<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        bail!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(name.to_owned())
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes)
}

/// 64 random hex digits; never all digits, so a short ID is never read as a number.
pub(super) fn random_id() -> Result<String> {
    loop {
        let id = hex_string(&random_bytes::<32>()?);
        if id[..12].bytes().any(|b| b.is_ascii_alphabetic()) {
            return Ok(id);
        }
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, as RFC 3339.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses an RFC 3339 time written by [`now`].
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Serialised whole first: serde writes token by token, a syscall each on a file.
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    file.write_all(&text)?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), `None` when it is gone
/// or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether `path` is a mountpoint (its device differs from its parent's, or it appears in
/// the mount table).
pub(crate) fn is_mountpoint(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| unescape_mount_path(point) == wanted)
}

/// Mount table paths escape space, tab, newline and backslash as `\NNN` (octal).
fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'\\')
            .then(|| text.get(i + 1..i + 4))
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(code) => {
                out.push(code);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `rel` exists in the merged view of the lower layers `lowers` (topmost first).
fn exists_below(lowers: &[PathBuf], rel: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    for lower in lowers {
        // An opaque ancestor in this layer hides everything below it.
        let mut hidden = false;
        let mut ancestor = rel.parent();
        while let Some(dir) = ancestor {
            if dir.as_os_str().is_empty() {
                break;
            }
            let path = lower.join(dir);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_char_device() && meta.rdev() == 0 => hidden = true,
                Ok(meta) if !meta.is_dir() => hidden = true,
                Ok(_) if is_opaque(&path) => {
                    // Opaque hides lower layers, not this one: look here, then stop.
                    return std::fs::symlink_metadata(lower.join(rel))
                        .is_ok_and(|m| !(m.file_type().is_char_device() && m.rdev() == 0));
                }
                _ => {}
            }
            ancestor = dir.parent();
        }
        if hidden {
            return false;
        }
        match std::fs::symlink_metadata(lower.join(rel)) {
            Ok(meta) => return !(meta.file_type().is_char_device() && meta.rdev() == 0),
            Err(_) => continue,
        }
    }
    false
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| read_xattr(path, name).as_deref() == Some(b"y".as_slice()))
}

fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buffer = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and the buffer's length is passed with it.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buffer[..n].to_vec())
}

/// Directories the runtime creates in a root filesystem that lacks them, to mount on.
pub(crate) const RUNTIME_MOUNTPOINTS: &[&str] = &["/proc", "/sys", "/dev"];

/// What the runtime may make in a container's layer to mount on: `/proc`, `/sys`, `/dev`,
/// the network files, and each `-v` target with its parents.
fn mount_points(config: &ContainerConfig) -> Vec<String> {
    let mut dirs: Vec<String> = RUNTIME_MOUNTPOINTS
        .iter()
        .chain(&crate::container::netfiles::NETWORK_FILES)
        .map(|d| (*d).to_owned())
        .collect();
    for volume in &config.volumes {
        let mut path = Path::new(&volume.container);
        while path != Path::new("/") && !path.as_os_str().is_empty() {
            let shown = path.display().to_string();
            if !dirs.contains(&shown) {
                dirs.push(shown);
            }
            path = path.parent().unwrap_or(Path::new("/"));
        }
    }
    dirs
}

/// Whether the upper directory `path` has the mode and owner of the topmost lower
/// directory at `rel` (a copy-up that changed nothing of its own).
fn same_as_below(path: &Path, lowers: &[PathBuf], rel: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(upper) = std::fs::symlink_metadata(path) else {
        return false;
    };
    lowers
        .iter()
        .find_map(|lower| std::fs::symlink_metadata(lower.join(rel)).ok())
        .is_some_and(|below| {
            below.is_dir()
                && below.mode() == upper.mode()
                && below.uid() == upper.uid()
                && below.gid() == upper.gid()
        })
}

/// Whether the upper entry at `path` (shown as `shown`) is a mount point the runtime made:
/// listed in `mount_points`, and an empty file or a tree of empty directories.
fn is_placeholder(
    path: &Path,
    meta: &std::fs::Metadata,
    shown: &str,
    mount_points: &[String],
) -> bool {
    mount_points.iter().any(|m| m == shown)
        && ((meta.is_dir() && is_empty_tree(path)) || (meta.is_file() && meta.len() == 0))
}

/// Whether the upper directory `rel` holds something, and only new runtime placeholders.
fn holds_only_placeholders(
    upper: &Path,
    lowers: &[PathBuf],
    rel: &Path,
    mount_points: &[String],
) -> bool {
    let Ok(entries) = std::fs::read_dir(upper.join(rel)) else {
        return false;
    };
    let entries: Vec<_> = entries.flatten().collect();
    !entries.is_empty()
        && entries.iter().all(|entry| {
            let child = rel.join(entry.file_name());
            let shown = format!("/{}", child.display());
            !exists_below(lowers, &child)
                && std::fs::symlink_metadata(entry.path())
                    .is_ok_and(|meta| is_placeholder(&entry.path(), &meta, &shown, mount_points))
        })
}

/// Whether `dir` holds nothing but (empty) directories.
fn is_empty_tree(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|entry| {
            entry.file_type().is_ok_and(|t| t.is_dir()) && is_empty_tree(&entry.path())
        })
    })
}

/// Walks the upper directory: whiteouts are deletions, entries that exist below are
/// changes, others additions; an opaque directory deletes what was below it.
fn upper_changes(
    upper: &Path,
    lowers: &[PathBuf],
    rel: &Path,
    mount_points: &[String],
    changes: &mut Vec<(char, String)>,
) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let dir = upper.join(rel);
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for entry in entries {
        names.push(
            entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .file_name(),
        );
    }
    if !rel.as_os_str().is_empty() && is_opaque(&dir) {
        // Everything below that the upper does not show again was deleted.
        for lower in lowers {
            let Ok(below) = std::fs::read_dir(lower.join(rel)) else {
                continue;
            };
            for entry in below.flatten() {
                let name = entry.file_name();
                let child = rel.join(&name);
                if !names.contains(&name) && exists_below(lowers, &child) {
                    let line = ('D', format!("/{}", child.display()));
                    if !changes.contains(&line) {
                        changes.push(line);
                    }
                }
            }
        }
    }
    for name in names {
        let child = rel.join(&name);
        let meta = std::fs::symlink_metadata(upper.join(&child))
            .with_context(|| format!("cannot inspect {}", upper.join(&child).display()))?;
        let shown = format!("/{}", child.display());
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            changes.push(('D', shown));
            continue;
        }
        let kind = if exists_below(lowers, &child) {
            'C'
        } else {
            'A'
        };
        let runtime_made = is_placeholder(&upper.join(&child), &meta, &shown, mount_points)
            || (meta.is_dir() && holds_only_placeholders(upper, lowers, &child, mount_points));
        if kind == 'A' && runtime_made {
            // Made by the runtime to mount /proc, /sys, /dev, the network files and
            // volumes on (with `/etc` to hold the files), as docker's init layer does; not
            // the container's own change.
            continue;
        }
        let line = changes.len();
        changes.push((kind, shown));
        if meta.is_dir() {
            upper_changes(upper, lowers, &child, mount_points, changes)?;
            // A directory copied up only to hold such placeholders (`/etc` for
            // `/etc/hosts`) did not change either.
            if kind == 'C' && changes.len() == line + 1 && runtime_made {
                changes.pop();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn restart_policies_parse_and_decide_as_dockers() {
        let policy = |text: &str| RestartPolicy::parse(text).unwrap();
        assert!(!policy("no").any());
        assert_eq!(policy("no").shown_name(), "no");
        assert_eq!(policy("always").shown_name(), "always");
        assert_eq!(policy("on-failure:3").maximum_retry_count, 3);
        for bad in [
            "sometimes",
            "always:1",
            "no:0",
            "unless-stopped:2",
            "on-failure:-1",
            "on-failure:x",
            "on-failure:99999999999",
        ] {
            let error = RestartPolicy::parse(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
        // always and unless-stopped: whatever the code, however often.
        for name in ["always", "unless-stopped"] {
            assert!(policy(name).restarts(Some(0), 1000));
            assert!(policy(name).restarts(None, 0));
        }
        // on-failure: not after a clean exit; up to the limit (0: none).
        assert!(!policy("on-failure").restarts(Some(0), 0));
        assert!(policy("on-failure").restarts(Some(1), 1000));
        assert!(policy("on-failure").restarts(None, 0));
        assert!(policy("on-failure:2").restarts(Some(1), 1));
        assert!(!policy("on-failure:2").restarts(Some(1), 2));
        assert!(!policy("no").restarts(Some(1), 0));
        // Stored only when there is one; older configs read as `no`.
        let config: ContainerConfig = serde_json::from_value(json!({
            "Image": "i", "ImageId": "", "ImageManifest": "", "Args": [], "Env": [],
            "WorkingDir": "/", "User": "", "Hostname": "h", "Volumes": [], "NetworkNone": false,
            "ReadOnly": false, "Tty": false, "Interactive": false, "Init": false,
            "AutoRemove": false, "StopSignal": null, "Runtime": null, "Created": "",
        }))
        .unwrap();
        assert!(!config.restart.any());
        assert!(!serde_json::to_string(&config).unwrap().contains("Restart"));
    }

    fn settings(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[track_caller]
    fn check_command(
        image: Value,
        args: &[&str],
        entrypoint: Option<&str>,
        expected: Result<&[&str], &str>,
    ) {
        let options = CreateOptions {
            image: "img".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            entrypoint: entrypoint.map(str::to_owned),
            ..CreateOptions::default()
        };
        match (command_line(&settings(image), &options), expected) {
            (Ok((entrypoint, cmd, args)), Ok(want)) => {
                assert_eq!(args, want);
                assert_eq!([entrypoint, cmd].concat(), args, "entrypoint then cmd");
            }
            (Err(error), Err(needle)) => {
                assert!(format!("{error:#}").contains(needle), "{error:#}")
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let image = json!({"Entrypoint": ["/entry"], "Cmd": ["default"]});
        check_command(image.clone(), &[], None, Ok(&["/entry", "default"]));
        check_command(image.clone(), &["mine"], None, Ok(&["/entry", "mine"]));
        // --entrypoint resets the image's Cmd.
        check_command(image.clone(), &[], Some("/other"), Ok(&["/other"]));
        check_command(image.clone(), &["a"], Some("/other"), Ok(&["/other", "a"]));
        check_command(image, &["sh"], Some(""), Ok(&["sh"]));
        check_command(json!({}), &[], None, Err("No command specified"));
        check_command(json!({"Cmd": null}), &["ls", "-l"], None, Ok(&["ls", "-l"]));
    }

    #[test]
    fn environment_layers_image_file_and_flags() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("env");
        std::fs::write(&file, "# comment\n\nFILE=1\nBOTH=file\n").unwrap_or_else(|e| panic!("{e}"));
        let options = CreateOptions {
            env: vec!["BOTH=flag".into(), "STENCIL_SURELY_UNSET_VARIABLE".into()],
            env_files: vec![file],
            tty: true,
            ..CreateOptions::default()
        };
        let image = settings(json!({"Env": ["PATH=/image/bin", "IMG=1"]}));
        let env = environment(&image, &options, "abc").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            env,
            [
                "PATH=/image/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "IMG=1",
                "FILE=1",
                "BOTH=flag"
            ]
        );
        let env = environment(&settings(json!({})), &CreateOptions::default(), "h")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            env,
            [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h".to_owned()]
        );
    }

    #[test]
    fn volumes_and_names_are_checked() {
        let spec = |text: &str| parse_volume(text).unwrap_or_else(|e| panic!("{text}: {e:#}"));
        let mount = |source, container: &str, read_only, nocopy| MountSpec {
            source,
            container: container.to_owned(),
            read_only,
            nocopy,
        };
        use MountSource::{Anonymous, Host, Named};
        assert_eq!(
            spec("/host:/ctr:ro"),
            mount(Host("/host".into()), "/ctr", true, false)
        );
        assert_eq!(
            spec("pgdata:/var/lib/pg"),
            mount(Named("pgdata".into()), "/var/lib/pg", false, false)
        );
        assert_eq!(
            spec("cache:/c:ro,nocopy"),
            mount(Named("cache".into()), "/c", true, true)
        );
        assert_eq!(spec("/data"), mount(Anonymous, "/data", false, false));
        assert_eq!(spec("/data:ro"), mount(Anonymous, "/data", true, false));
        assert_eq!(
            spec("/h:/c:rw,Z"),
            mount(Host("/h".into()), "/c", false, false)
        );
        for bad in [
            "/host:rel",
            "/a:/b:xx",
            "rel",
            "x:/ctr",
            "a/b:/ctr",
            "./dir:/ctr",
            "/h:/c:nocopy",
            "/h:/",
            "/h:/a/../b",
            "a:b:c:d",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert_eq!(mount_target("/data/"), "/data");
        assert!(validate_name("web-1.a_b").is_ok());
        for bad in ["-x", "a", "a b", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
    }
}
