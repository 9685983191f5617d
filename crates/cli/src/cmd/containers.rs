//! The container verbs: `create`, `run`, `start`, `ps`, `logs`, `stop`, `kill`, `wait`,
//! `rm`, `exec`, `diff`, `commit`, `export`, `container inspect` and `container prune`,
//! with docker's flags, output and exit codes.
//!
//! Verbs that run a process return its exit code; errors of stencil itself exit 125 and a
//! container that cannot start exits 126 or 127 as docker's do
//! ([`crate::container::monitor::StartFailure`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use stencil_cow_fs::Snapshotter;
use stencil_reference::Reference;

use crate::cmd::label_filter::LabelFilter;
use crate::container::health;
use crate::container::logfile::Filter;
use crate::container::monitor;
use crate::container::runtime::{ProcessSpec, Rlimit, Tmpfs};
use crate::engine::{
    CommitOptions, Container, CreateOptions, Engine, Healthcheck, RestartPolicy, Status, parse_time,
};
use crate::render::units::{human_duration, human_size};
use crate::render::{Column, Format};

/// Flags shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Set environment variables (NAME=VALUE, or NAME to pass ours on).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one NAME=VALUE per line).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Overwrite the image's ENTRYPOINT (and reset its CMD).
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Mount a host path or a volume: [HOST-PATH|VOLUME:]CONTAINER-PATH[:ro|nocopy]
    /// (a container path alone: a new anonymous volume).
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "[SOURCE:]CONTAINER[:OPTIONS]"
    )]
    pub volume: Vec<String>,
    /// Mount as docker's --mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    /// [,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long = "mount", value_name = "KEY=VALUE,…")]
    pub mount: Vec<String>,
    /// Mount every volume and host path of another container at the same paths
    /// (CONTAINER[:ro|:rw]; ro makes them all read-only).
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// Container host name (default: the short container ID).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Assign a name to the container.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Start the container again when it exits: no (default), always, unless-stopped,
    /// on-failure[:MAX-RETRIES].
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Network: host (default) or none.
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Publish a port (`[IP:]HOST:CONTAINER[/PROTO]`): accepted and discarded, as docker
    /// and podman do with the host's network (stencil's), where the container's ports
    /// are the host's already.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Hand the container to this OCI runtime (runc, crun, youki) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Set a label on the container (KEY=VALUE, or KEY for an empty value).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file (one KEY=VALUE per line; # starts a comment).
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Add a line to the container's /etc/hosts (NAME:IP).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Add a Linux capability (NET_ADMIN, SYS_PTRACE, … or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (CHOWN, NET_RAW, … or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability, and /proc and /sys unmasked and writable (host devices are not
    /// added).
    #[arg(long)]
    pub privileged: bool,
    /// Mount a tmpfs (PATH[:OPTIONS], e.g. /run:size=64m,mode=755).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// The signal that `stop` sends (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before killing the container (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Pull the image first: `missing` (when it is not in the store), `always`, `never`.
    #[arg(long, value_name = "POLICY", default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// The platform to pull (os/arch[/variant]) when the image is pulled.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Memory, CPU and process limits.
    #[command(flatten)]
    pub resources: super::resources::ResourceArgs,
    /// The health check: a command run in the container by /bin/sh -c (exit 0: healthy).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between two health checks (e.g. 30s, 1m30s).
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a health check may take before it counts as failed.
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failed health checks in a row that make the container unhealthy.
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<i64>,
    /// Time after the start when failed health checks do not count.
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between two health checks during the start period.
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable the image's health check.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Add a supplementary group (a name of the container's /etc/group, or a gid).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Set a resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, …; -1:
    /// unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// The size of /dev/shm (e.g. 256m; default 64m).
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Write the container ID to this file (which must not exist).
    #[arg(long = "cidfile", value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// The image, by name or ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The container.
    #[command(flatten)]
    pub create: CreateArgs,
}

impl CreateArgs {
    fn options(&self) -> Result<CreateOptions> {
        let network_none = match self.network.as_deref() {
            None | Some("host") | Some("default") => false,
            Some("none") => true,
            Some(other) => {
                bail!("network {other} not found: stencil offers --network host (default) or none")
            }
        };
        for ports in &self.publish {
            check_port_mapping(ports)?;
        }
        // `--mount`s are `-v` or `--tmpfs` texts once parsed.
        let mut volumes = self
            .volume
            .iter()
            .map(|spec| absolute_source(spec))
            .collect::<Result<Vec<_>>>()?;
        let mut tmpfs = self.tmpfs.clone();
        for text in &self.mount {
            match parse_mount(text)? {
                Mount::Volume(spec) => volumes.push(spec),
                Mount::Tmpfs(entry) => tmpfs.push(entry),
            }
        }
        if !self.publish.is_empty() {
            eprintln!(
                "WARNING: Published ports are discarded when using host network mode (a container's ports are the host's{})",
                if network_none {
                    "; with --network none it has none"
                } else {
                    ""
                }
            );
        }
        Ok(CreateOptions {
            image: self.image.clone(),
            args: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes,
            volumes_from: self.volumes_from.clone(),
            hostname: self.hostname.clone(),
            name: self.name.clone(),
            network_none,
            read_only: self.read_only,
            tty: self.tty,
            interactive: self.interactive,
            init: self.init,
            auto_remove: self.rm,
            runtime: self.runtime.clone(),
            labels: self.labels()?,
            // Checked here, so that a bad name fails `create`, not the start.
            cap_add: {
                crate::container::caps::container_mask(
                    &self.cap_add,
                    &self.cap_drop,
                    self.privileged,
                )
                .map_err(anyhow::Error::msg)?;
                self.cap_add.clone()
            },
            extra_hosts: self
                .add_host
                .iter()
                .map(|entry| parse_extra_host(entry))
                .collect::<Result<_>>()?,
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            tmpfs: tmpfs
                .iter()
                .map(|entry| {
                    let (path, options) = entry.split_once(':').unwrap_or((entry, ""));
                    Tmpfs::parse(path, options).map_err(|error| anyhow::anyhow!(error))?;
                    Ok((path.to_owned(), options.to_owned()))
                })
                .collect::<Result<_>>()?,
            stop_signal: match &self.stop_signal {
                Some(signal) => {
                    monitor::parse_signal(signal)
                        .with_context(|| format!("invalid --stop-signal {signal:?}"))?;
                    Some(signal.clone())
                }
                None => None,
            },
            stop_timeout: self.stop_timeout,
            resources: self.resources.resources()?,
            restart: RestartPolicy::parse(&self.restart)?,
            healthcheck: self.healthcheck()?,
            group_add: {
                for group in &self.group_add {
                    if group.is_empty() || group.contains(':') {
                        bail!("invalid --group-add {group:?}: give a group name or a gid");
                    }
                }
                self.group_add.clone()
            },
            ulimits: {
                let mut limits: Vec<Rlimit> = Vec::new();
                for text in &self.ulimit {
                    let limit = Rlimit::parse(text).map_err(anyhow::Error::msg)?;
                    // As docker's: a name given twice keeps the last.
                    limits.retain(|l| l.resource != limit.resource);
                    limits.push(limit);
                }
                limits
            },
            shm_size: match &self.shm_size {
                Some(text) => {
                    let bytes = crate::cmd::resources::parse_bytes(text)
                        .map_err(|error| anyhow::anyhow!("invalid --shm-size {text:?}: {error}"))?;
                    if bytes <= 0 {
                        bail!("invalid --shm-size {text:?}: give a size above 0");
                    }
                    Some(bytes as u64)
                }
                None => None,
            },
        })
    }

    /// The `--health-*` flags as a check to merge over the image's, docker's checks first.
    fn healthcheck(&self) -> Result<Option<Healthcheck>> {
        let duration = |flag: &str, value: &Option<String>| -> Result<i64> {
            let Some(text) = value else {
                return Ok(0);
            };
            let nanos = crate::build::config::parse_duration(text)
                .map_err(|error| anyhow::anyhow!("invalid --{flag}: {error}"))?;
            if nanos != 0 && nanos < 1_000_000 {
                bail!("invalid --{flag} {text:?}: give at least 1ms");
            }
            Ok(nanos)
        };
        let check = Healthcheck {
            test: match &self.health_cmd {
                Some(command) if command.trim().is_empty() => {
                    bail!("invalid --health-cmd: give a command")
                }
                Some(command) => vec!["CMD-SHELL".to_owned(), command.clone()],
                None => Vec::new(),
            },
            interval: duration("health-interval", &self.health_interval)?,
            timeout: duration("health-timeout", &self.health_timeout)?,
            start_period: duration("health-start-period", &self.health_start_period)?,
            start_interval: duration("health-start-interval", &self.health_start_interval)?,
            retries: match self.health_retries {
                Some(retries) if retries < 0 => {
                    bail!("invalid --health-retries {retries}: it cannot be negative")
                }
                Some(retries) => retries,
                None => 0,
            },
        };
        if self.no_healthcheck {
            if check != Healthcheck::default() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(Healthcheck {
                test: vec!["NONE".to_owned()],
                ..Healthcheck::default()
            }));
        }
        Ok((check != Healthcheck::default()).then_some(check))
    }

    /// `--label-file` lines, then `--label`, later ones winning.
    fn labels(&self) -> Result<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        let mut add = |entry: &str, from: &str| -> Result<()> {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            if key.trim().is_empty() {
                bail!("invalid label {entry:?}{from}: give KEY=VALUE");
            }
            labels.insert(key.to_owned(), value.to_owned());
            Ok(())
        };
        for path in &self.label_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the label file {}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                add(line, &format!(" in {} line {}", path.display(), number + 1))?;
            }
        }
        for entry in &self.label {
            add(entry, "")?;
        }
        Ok(labels)
    }
}

/// An `--add-host` entry as `NAME:IP` (docker takes `NAME=IP` too); the address must be
/// one, IPv4 or IPv6.
fn parse_extra_host(entry: &str) -> Result<String> {
    let (name, address) = entry
        .split_once('=')
        .or_else(|| entry.split_once(':'))
        .ok_or_else(|| anyhow::anyhow!("invalid --add-host {entry:?}: give NAME:IP"))?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("invalid --add-host {entry:?}: the host name is empty or has spaces");
    }
    if address.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid --add-host {entry:?}: {address:?} is not an IP address");
    }
    Ok(format!("{name}:{address}"))
}

/// Checks a `-p` value as docker parses it: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`,
/// ports or ranges.
fn check_port_mapping(text: &str) -> Result<()> {
    let bad = |why: &str| anyhow::anyhow!("invalid publish value {text:?}: {why}");
    let (mapping, protocol) = match text.rsplit_once('/') {
        Some((mapping, protocol)) => (mapping, protocol),
        None => (text, "tcp"),
    };
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(bad("the protocol is tcp, udp or sctp"));
    }
    // An IPv6 address is bracketed: `[::1]:80:80`.
    let ports = match mapping.strip_prefix('[') {
        Some(rest) => rest
            .split_once("]:")
            .map(|(_, ports)| ports)
            .ok_or_else(|| bad("unclosed [ in the address"))?,
        None => mapping,
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let port_parts: &[&str] = match parts.len() {
        1 | 2 => &parts,
        3 => &parts[1..],
        _ => return Err(bad("expected [IP:][HOST_PORT:]CONTAINER_PORT")),
    };
    for (index, part) in port_parts.iter().enumerate() {
        let is_container_port = index + 1 == port_parts.len();
        if part.is_empty() && !is_container_port {
            continue;
        }
        let range: Vec<&str> = part.split('-').collect();
        let valid = range.len() <= 2
            && range
                .iter()
                .all(|p| p.parse::<u16>().is_ok_and(|port| port > 0));
        if !valid {
            return Err(bad(&format!("{part:?} is not a port or a range of ports")));
        }
    }
    Ok(())
}

/// Pulls the image of `args` as docker's `run` and `create` do: when it is missing from
/// the store (`--pull missing`, the default, saying `Unable to find image … locally`
/// first), always, or never. Progress goes to standard error.
fn pull_if_wanted(engine: &Engine, args: &CreateArgs) -> Result<()> {
    let missing = engine.find_image(&args.image).is_err();
    let wanted = match args.pull.as_str() {
        "always" => true,
        "never" => false,
        _ => missing,
    };
    if !wanted {
        return Ok(());
    }
    // An ID is no name to pull: let the look-up say it is missing.
    let Ok(reference) = Reference::parse(&args.image) else {
        return Ok(());
    };
    if missing {
        let shown = if reference.tag().is_none() && reference.digest().is_none() {
            format!("{}:latest", reference.familiar())
        } else {
            reference.familiar()
        };
        eprintln!("Unable to find image '{shown}' locally");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(crate::cmd::pull::pull_for_run(
            engine,
            &args.image,
            args.platform.clone(),
        ))
}

/// `stencil create`: prints the new container's ID.
pub fn create(engine: &Engine, args: &CreateArgs) -> Result<i32> {
    let options = args.options()?;
    let cidfile = CidFile::claim(args.cidfile.as_deref())?;
    pull_if_wanted(engine, args)?;
    let container = engine.create_container(&options)?;
    cidfile.write(&container.record.id)?;
    println!("{}", container.record.id);
    Ok(0)
}

/// `--cidfile FILE`: claimed (created empty, refused when it exists) before the container
/// is made, filled with its ID once it is, removed again when making it failed.
struct CidFile<'a> {
    path: Option<&'a Path>,
    written: bool,
}

impl<'a> CidFile<'a> {
    fn claim(path: Option<&'a Path>) -> Result<CidFile<'a>> {
        if let Some(path) = path {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|error| {
                    if error.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "container ID file found, make sure the other container isn't running or delete {}",
                            path.display()
                        )
                    } else {
                        anyhow::Error::from(error)
                            .context(format!("cannot create the container ID file {}", path.display()))
                    }
                })?;
        }
        Ok(CidFile {
            path,
            written: false,
        })
    }

    fn write(mut self, id: &str) -> Result<()> {
        if let Some(path) = self.path {
            std::fs::write(path, id).with_context(|| {
                format!("cannot write the container ID file {}", path.display())
            })?;
        }
        self.written = true;
        Ok(())
    }
}

impl Drop for CidFile<'_> {
    fn drop(&mut self) {
        if let (Some(path), false) = (self.path, self.written) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `stencil run`: the container's exit code, or 0 after printing the ID with `-d`.
pub fn run(engine: &Engine, args: &RunArgs) -> Result<i32> {
    let options = args.create.options()?;
    let cidfile = CidFile::claim(args.create.cidfile.as_deref())?;
    pull_if_wanted(engine, &args.create)?;
    let mut container = engine.create_container(&options)?;
    cidfile.write(&container.record.id)?;
    if args.detach {
        monitor::start_detached(engine, &container)?;
        println!("{}", container.record.id);
        return Ok(0);
    }
    monitor::run_attached(engine, &mut container)
}

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach standard output and error, and exit with the container's status.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach standard input.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers, by name or ID.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil start`.
pub fn start(engine: &Engine, args: &StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let mut container = engine.container(&args.containers[0])?;
        container.config.interactive |= args.interactive;
        return monitor::run_attached(engine, &mut container);
    }
    let mut failed = None;
    for name in &args.containers {
        let started = engine.container(name).and_then(|container| {
            if container.is_up() {
                return Ok(());
            }
            monitor::start_detached(engine, &container)
        });
        match started {
            Ok(()) => println!("{name}"),
            Err(error) => {
                eprintln!("Error: {}", crate::render::error::message(&error));
                failed = Some(error);
            }
        }
    }
    match failed {
        Some(_) if args.containers.len() > 1 => {
            bail!("failed to start containers: {}", args.containers.join(", "))
        }
        Some(error) => Err(error),
        None => Ok(0),
    }
}

/// Arguments of `ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the size of each container's writable layer (and of its image).
    #[arg(short = 's', long)]
    pub size: bool,
    /// Keep containers matching KEY=VALUE: status, name (a regular expression), id,
    /// ancestor, exited, label, volume (a volume's name or a mount point), health; repeat
    /// a key to allow several values.
    #[arg(short = 'f', long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show the N most recently created containers, whatever their state.
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
    /// Show the most recently created container (`-n 1`).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// `table`, `json`, or a template such as `{{.ID}} {{.Status}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

const SIZE_COLUMN: Column = Column {
    field: "Size",
    header: "SIZE",
};

const PS_COLUMNS: [Column; 7] = [
    Column {
        field: "ID",
        header: "CONTAINER ID",
    },
    Column {
        field: "Image",
        header: "IMAGE",
    },
    Column {
        field: "Command",
        header: "COMMAND",
    },
    Column {
        field: "RunningFor",
        header: "CREATED",
    },
    Column {
        field: "Status",
        header: "STATUS",
    },
    Column {
        field: "Ports",
        header: "PORTS",
    },
    Column {
        field: "Names",
        header: "NAMES",
    },
];

/// A `name=` filter: a regular expression, as docker's (`^web$` for one name exactly),
/// matched against the name with and without docker's leading `/`.
#[derive(Debug, Clone)]
struct NameFilter(regex::Regex);

impl PartialEq for NameFilter {
    fn eq(&self, other: &NameFilter) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for NameFilter {}

impl NameFilter {
    fn matches(&self, name: &str) -> bool {
        self.0.is_match(name) || self.0.is_match(&format!("/{name}"))
    }
}

/// One `ps --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PsFilter {
    /// docker's state word (`paused` is a state of its own, not `running`).
    Status(&'static str),
    Name(NameFilter),
    Id(String),
    /// The image (config digest) a container must run.
    Ancestor(String),
    Exited(i32),
    Label(LabelFilter),
    /// A volume name, or a mount's destination in the container.
    Volume(String),
    /// `starting`, `healthy`, `unhealthy`, or `none` (no health check).
    Health(&'static str),
}

const PS_FILTER_KEYS: &str = "status, name, id, ancestor, exited, label, volume, health";

fn parse_ps_filter(engine: &Engine, text: &str) -> Result<PsFilter> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("invalid filter {text:?}: expected KEY=VALUE ({PS_FILTER_KEYS})");
    };
    Ok(match key {
        "status" => PsFilter::Status(match value {
            "created" => "created",
            "running" => "running",
            "paused" => "paused",
            "exited" => "exited",
            "restarting" => "restarting",
            _ => bail!(
                "invalid filter {text:?}: status is created, running, paused, restarting or exited (stencil has no dead containers)"
            ),
        }),
        "name" => PsFilter::Name(NameFilter(regex::Regex::new(value).map_err(|error| {
            anyhow::anyhow!("invalid filter {text:?}: the name is a regular expression: {error}")
        })?)),
        "id" => PsFilter::Id(value.to_owned()),
        "ancestor" => {
            let image = engine
                .find_image(value)
                .with_context(|| format!("invalid filter {text:?}"))?;
            PsFilter::Ancestor(image.config_digest.to_string())
        }
        "exited" => PsFilter::Exited(
            value
                .parse()
                .with_context(|| format!("invalid filter {text:?}: exited takes an exit code"))?,
        ),
        "label" if !value.is_empty() => PsFilter::Label(LabelFilter::parse(value)),
        "label" => bail!("invalid filter {text:?}: label takes KEY or KEY=VALUE"),
        "volume" if !value.is_empty() => PsFilter::Volume(value.to_owned()),
        "volume" => bail!("invalid filter {text:?}: volume takes a volume name or a mount point"),
        "health" => PsFilter::Health(match value {
            "starting" => "starting",
            "healthy" => "healthy",
            "unhealthy" => "unhealthy",
            "none" => "none",
            _ => bail!("invalid filter {text:?}: health is starting, healthy, unhealthy or none"),
        }),
        _ => bail!("invalid filter {text:?}: unknown key {key:?} ({PS_FILTER_KEYS})"),
    })
}

fn ps_filter_matches(engine: &Engine, container: &Container, filter: &PsFilter) -> bool {
    match filter {
        PsFilter::Health(word) => {
            let health = health::read(engine, container).filter(|_| container.is_running());
            health.map_or_else(|| "none".to_owned(), |h| h.status) == *word
        }
        PsFilter::Status(word) => state_word(container) == *word,
        PsFilter::Name(name) => name.matches(&container.record.name),
        PsFilter::Id(id) => container.record.id.starts_with(id.as_str()),
        PsFilter::Ancestor(config) => container.config.image_id == *config,
        PsFilter::Exited(code) => {
            container.state.status == Status::Exited && container.state.exit_code == Some(*code)
        }
        PsFilter::Label(label) => label.matches(&json!(container.config.labels)),
        PsFilter::Volume(wanted) => container.config.volumes.iter().any(|volume| {
            volume.name.as_deref() == Some(wanted.as_str())
                || volume.container.trim_end_matches('/') == wanted.trim_end_matches('/')
        }),
    }
}

/// Filters with the same key allow any of their values; different keys must all hold,
/// and every label filter must (as docker's).
fn keep_container(engine: &Engine, container: &Container, filters: &[PsFilter]) -> bool {
    let key = |f: &PsFilter| std::mem::discriminant(f);
    if filters
        .iter()
        .any(|f| matches!(f, PsFilter::Label(_)) && !ps_filter_matches(engine, container, f))
    {
        return false;
    }
    filters.iter().all(|filter| {
        filters
            .iter()
            .filter(|other| key(other) == key(filter))
            .any(|other| ps_filter_matches(engine, container, other))
    })
}

/// `stencil ps`.
pub fn ps(engine: &Engine, args: &PsArgs) -> Result<String> {
    let filters = args
        .filter
        .iter()
        .map(|text| parse_ps_filter(engine, text))
        .collect::<Result<Vec<_>>>()?;
    let last = if args.latest { Some(1) } else { args.last };
    // As docker's: a status filter, -n and -l look beyond the running containers.
    let all = args.all
        || last.is_some()
        || filters
            .iter()
            .any(|f| matches!(f, PsFilter::Status(_) | PsFilter::Exited(_)));
    let mut containers: Vec<Container> = engine
        .containers()?
        .into_iter()
        .filter(|c| all || c.is_up())
        .filter(|c| keep_container(engine, c, &filters))
        .collect();
    if let Some(last) = last {
        // Newest first already; keep the N most recently created.
        containers.truncate(last);
    }
    if args.quiet {
        return Ok(containers
            .iter()
            .map(|c| {
                let id = if args.no_trunc {
                    c.record.id.as_str()
                } else {
                    c.short_id()
                };
                format!("{id}\n")
            })
            .collect());
    }
    let mut rows: Vec<Value> = containers
        .iter()
        .map(|c| ps_row(engine, c, args.no_trunc))
        .collect();
    let mut columns = PS_COLUMNS.to_vec();
    if args.size {
        columns.push(SIZE_COLUMN);
        for (row, container) in rows.iter_mut().zip(&containers) {
            let size = engine.container_size(container)?;
            let image = engine
                .container_image(container)?
                .map_or(0, |image| image.unpacked_size());
            row["Size"] = json!(format!(
                "{} (virtual {})",
                human_size(size),
                human_size(size + image)
            ));
        }
    }
    let format = Format::parse(args.format.as_deref().unwrap_or("table"))?;
    Ok(format.render(&columns, &rows)?)
}

pub(crate) fn ps_row(engine: &Engine, container: &Container, no_trunc: bool) -> Value {
    let now = Utc::now();
    let ago = |text: &Option<String>| {
        let seconds = text
            .as_deref()
            .and_then(parse_time)
            .map_or(0, |t| (now - t).num_seconds().max(0) as u64);
        human_duration(seconds)
    };
    let created = Some(container.config.created.clone());
    let status = match container.state.status {
        Status::Created => "Created".to_owned(),
        Status::Running if container.state.paused => {
            format!("Up {} (Paused)", ago(&container.state.started_at))
        }
        Status::Running => match health::read(engine, container) {
            Some(health) => format!(
                "Up {} ({})",
                ago(&container.state.started_at),
                health.shown()
            ),
            None => format!("Up {}", ago(&container.state.started_at)),
        },
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            container.state.exit_code.unwrap_or(-1),
            ago(&container.state.finished_at)
        ),
        Status::Exited => match container.state.exit_code {
            Some(code) => format!("Exited ({code}) {} ago", ago(&container.state.finished_at)),
            None => format!("Exited (unknown) {} ago", ago(&container.state.finished_at)),
        },
    };
    let command = container.config.args.join(" ");
    let command = if no_trunc || command.chars().count() <= 20 {
        command
    } else {
        let kept: String = command.chars().take(19).collect();
        format!("{kept}…")
    };
    json!({
        "ID": if no_trunc { container.record.id.as_str() } else { container.short_id() },
        "Image": container.config.image,
        "Command": format!("\"{command}\""),
        "CreatedAt": container.config.created,
        "RunningFor": format!("{} ago", ago(&created)),
        "Status": status,
        "State": state_word(container),
        "Ports": "",
        "Names": container.record.name,
        "Labels": container
            .config
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(","),
    })
}

/// docker's one-word state: `paused` is a running container whose cgroup is frozen.
fn state_word(container: &Container) -> &'static str {
    if container.state.paused {
        "paused"
    } else {
        container.state.status.as_str()
    }
}

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow the output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (`all`: every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all", value_parser = parse_tail)]
    pub tail: Tail,
    /// Begin each line with the time it was written (RFC 3339, nanoseconds).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only lines written since TIME: a date and time (2026-11-29T04:38:01Z,
    /// 2026-11-29), Unix seconds, or a duration before now (10m, 1h30m).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only lines written before TIME (as for --since).
    #[arg(long, value_name = "TIME", value_parser = parse_until)]
    pub until: Option<DateTime<Utc>>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// How much of the log `logs` prints before following.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Everything.
    All,
    /// The last N lines.
    Lines(u64),
}

fn parse_tail(text: &str) -> Result<Tail, String> {
    match text {
        "all" => Ok(Tail::All),
        // docker takes a negative count as "all".
        _ if text.starts_with('-') && text[1..].parse::<u64>().is_ok() => Ok(Tail::All),
        _ => text
            .parse()
            .map(Tail::Lines)
            .map_err(|_| format!("invalid --tail {text:?}: give a number of lines or \"all\"")),
    }
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_arg(text, Utc::now()).map_err(|reason| format!("invalid --since {text:?}: {reason}"))
}

fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_arg(text, Utc::now()).map_err(|reason| format!("invalid --until {text:?}: {reason}"))
}

/// A time as docker's `--since` and `--until` take it: RFC 3339 (`2026-11-29T04:38:01Z`,
/// with a fraction or an offset), a date and time without a zone (local time), a date
/// (local midnight), Unix seconds with an optional fraction, or a Go duration counted
/// back from `now` (`10m`, `1h30m`).
pub fn parse_time_arg(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
        let seconds: i64 = seconds
            .parse()
            .map_err(|_| "Unix seconds out of range".to_owned())?;
        let nanos = if fraction.is_empty() {
            0
        } else {
            let digits: String = fraction
                .chars()
                .chain(std::iter::repeat('0'))
                .take(9)
                .collect();
            digits
                .parse::<u32>()
                .map_err(|_| "write Unix seconds as 1764391081 or 1764391081.5".to_owned())?
        };
        return DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| "Unix seconds out of range".to_owned());
    }
    let local = |naive: NaiveDateTime| {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|time| time.with_timezone(&Utc))
            .ok_or_else(|| "no such local time".to_owned())
    };
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(date.and_time(chrono::NaiveTime::MIN));
    }
    match crate::build::config::parse_duration(text) {
        Ok(nanos) => Ok(now - chrono::Duration::nanoseconds(nanos)),
        Err(_) => Err(
            "give a time (2026-11-29T04:38:01Z, 2026-11-29), Unix seconds, or a duration before now (10m, 1h30m)"
                .to_owned(),
        ),
    }
}

/// `stencil logs`.
pub fn logs(engine: &Engine, args: &LogsArgs) -> Result<i32> {
    let container = engine.container(&args.container)?;
    let options = monitor::LogsOptions {
        follow: args.follow,
        tail: match args.tail {
            Tail::All => None,
            Tail::Lines(lines) => Some(lines),
        },
        filter: Filter {
            since: args.since,
            until: args.until,
            timestamps: args.timestamps,
        },
        from: None,
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    monitor::logs(engine, &container, &options, &mut out, &mut err)?;
    Ok(0)
}

/// Arguments of `stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10).
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil stop`.
pub fn stop(engine: &Engine, args: &StopArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let container = engine.container(name)?;
        monitor::stop(engine, &container, stop_timeout(&container, args.time))
    })
}

/// How long `stop` waits: `-t`, else the container's `--stop-timeout`, else docker's 10 s.
fn stop_timeout(container: &Container, asked: Option<u64>) -> Duration {
    Duration::from_secs(asked.or(container.config.stop_timeout).unwrap_or(10))
}

/// Arguments of `restart`.
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Seconds to wait for a running container to stop before killing it (default: its
    /// --stop-timeout, else 10).
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil restart`: stops each running container as `stop` does, then starts it in
/// the background.
pub fn restart(engine: &Engine, args: &RestartArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let container = engine.container(name)?;
        if container.is_up() {
            monitor::stop(engine, &container, stop_timeout(&container, args.time))?;
        }
        let container = engine
            .container(&container.record.id)
            .with_context(|| format!("container {name} removed itself when it stopped (--rm)"))?;
        monitor::start_detached(engine, &container)
    })
}

/// Arguments of `rename`.
#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Its new name.
    #[arg(value_name = "NEW_NAME")]
    pub name: String,
}

/// `stencil rename`.
pub fn rename(engine: &Engine, args: &RenameArgs) -> Result<()> {
    let container = engine.container(&args.container)?;
    engine.rename_container(&container, &args.name)
}

/// Arguments of `kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil kill`.
pub fn kill(engine: &Engine, args: &KillArgs) -> Result<i32> {
    let signal = monitor::parse_signal(&args.signal)?;
    each(&args.containers, |name| {
        let container = engine.container(name)?;
        monitor::kill(engine, &container, signal)
    })
}

/// Arguments of `wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil wait`: prints each container's exit code once it stops, also for a container
/// that removes itself (`--rm`). As docker's, it exits 1 when any container could not be
/// waited for (such as `No such container: X`).
pub fn wait(engine: &Engine, args: &WaitArgs) -> Result<i32> {
    let mut failed = false;
    for name in &args.containers {
        match monitor::wait_exit(engine, name) {
            Ok(code) => {
                println!("{code}");
                let _ = std::io::stdout().flush();
            }
            Err(error) => {
                eprintln!("Error: {}", crate::render::error::message(&error));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `-v ./dir:/path` (or `.`, `..`): the host path made absolute against the current
/// directory, as docker's CLI does since 23.0; other specifications as they are.
fn absolute_source(spec: &str) -> Result<String> {
    let (source, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let relative =
        source == "." || source == ".." || source.starts_with("./") || source.starts_with("../");
    if !relative || rest.is_empty() {
        return Ok(spec.to_owned());
    }
    let cwd = std::env::current_dir().context("cannot find the current directory")?;
    let joined = cwd.join(source);
    // Lexically, as Go's filepath.Abs: `..` steps up, symlinks stay.
    let mut absolute = PathBuf::from("/");
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                absolute.pop();
            }
            std::path::Component::Normal(name) => absolute.push(name),
            _ => {}
        }
    }
    let absolute = absolute
        .to_str()
        .with_context(|| format!("the volume source {source:?} is not UTF-8"))?;
    Ok(format!("{absolute}:{rest}"))
}

/// A `--mount`, as the `-v` or `--tmpfs` text that says the same.
#[derive(Debug, PartialEq, Eq)]
enum Mount {
    Volume(String),
    Tmpfs(String),
}

/// Parses docker's `--mount type=…,source=…,target=…,…`.
fn parse_mount(text: &str) -> Result<Mount> {
    let (mut kind, mut source, mut target) = ("volume".to_owned(), None, None);
    let (mut read_only, mut nocopy) = (false, false);
    let mut tmpfs_options = Vec::new();
    let flag = |value: Option<&str>, key: &str| -> Result<bool> {
        match value {
            None | Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => bail!("invalid --mount {text:?}: {key}={other} (true or false)"),
        }
    };
    for field in text.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (field, None),
        };
        let given = || {
            value
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("invalid --mount {text:?}: {key} needs a value"))
        };
        match key {
            "type" => kind = given()?,
            "source" | "src" => source = Some(given()?),
            "destination" | "dst" | "target" => target = Some(given()?),
            "readonly" | "ro" => read_only = flag(value, key)?,
            "volume-nocopy" => nocopy = flag(value, key)?,
            "tmpfs-size" => tmpfs_options.push(format!("size={}", given()?)),
            "tmpfs-mode" => tmpfs_options.push(format!("mode={}", given()?)),
            "bind-propagation" if matches!(value, Some("private" | "rprivate")) => {}
            "consistency" => {}
            _ => bail!(
                "invalid --mount {text:?}: unknown or unsupported field {key:?} (type, source, target, readonly, volume-nocopy, tmpfs-size, tmpfs-mode)"
            ),
        }
    }
    let Some(target) = target else {
        bail!("invalid --mount {text:?}: target is required");
    };
    let mut options = Vec::new();
    if read_only {
        options.push("ro");
    }
    match kind.as_str() {
        "bind" => {
            let Some(source) = source else {
                bail!("invalid --mount {text:?}: a bind mount needs a source");
            };
            if !source.starts_with('/') {
                bail!("invalid --mount {text:?}: the bind source must be an absolute path");
            }
            // Unlike -v, --mount does not make a missing host path.
            if !Path::new(&source).exists() {
                bail!("invalid --mount {text:?}: bind source path does not exist: {source}");
            }
            if nocopy {
                bail!("invalid --mount {text:?}: volume-nocopy is for volumes");
            }
            let spec = format!("{source}:{target}");
            Ok(Mount::Volume(if options.is_empty() {
                spec
            } else {
                format!("{spec}:{}", options.join(","))
            }))
        }
        "volume" => {
            if nocopy {
                options.push("nocopy");
            }
            let spec = match source {
                Some(name) if name.starts_with('/') => {
                    bail!(
                        "invalid --mount {text:?}: a volume's source is a volume name, not a path"
                    )
                }
                Some(name) => format!("{name}:{target}"),
                None => target,
            };
            Ok(Mount::Volume(if options.is_empty() {
                spec
            } else {
                format!("{spec}:{}", options.join(","))
            }))
        }
        "tmpfs" => {
            if source.is_some() || read_only || nocopy {
                bail!(
                    "invalid --mount {text:?}: a tmpfs takes no source, readonly or volume-nocopy"
                );
            }
            Ok(Mount::Tmpfs(format!(
                "{target}:{}",
                tmpfs_options.join(",")
            )))
        }
        other => bail!("invalid --mount {text:?}: unknown type {other:?} (bind, volume or tmpfs)"),
    }
}

/// Arguments of `rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the container's anonymous volumes too (named volumes stay).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stencil rm`.
pub fn rm(engine: &Engine, args: &RmArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut container = engine.container(name)?;
        if container.is_up() && args.force {
            match monitor::halt(engine, &container, libc::SIGKILL, Duration::ZERO)? {
                Some(stopped) => container = stopped,
                // Removed by its own monitor (`--rm`): nothing left to do.
                None => return Ok(()),
            }
        }
        engine.remove_container(&container, false)?;
        if args.volumes {
            engine.remove_anonymous_volumes(&container.config);
        }
        Ok(())
    })
}

/// Runs `action` on every name, printing the names that worked as docker does; errors are
/// printed as they come and make the exit status 1.
pub(crate) fn each(names: &[String], mut action: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failures = Vec::new();
    for name in names {
        match action(name) {
            Ok(()) => println!("{name}"),
            Err(error) => failures.push(error),
        }
    }
    match failures.len() {
        0 => Ok(0),
        1 if names.len() == 1 => Err(failures.remove(0)),
        _ => {
            for error in &failures {
                eprintln!("Error: {}", crate::render::error::message(error));
            }
            Ok(1)
        }
    }
}

/// Arguments of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments.
    #[arg(
        required = true,
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `stencil exec`: the command's exit code.
pub fn exec(engine: &Engine, args: &ExecArgs) -> Result<i32> {
    if args.detach {
        bail!("exec -d is not supported: run the command in the foreground");
    }
    let container = engine.container(&args.container)?;
    let mut env = container.config.env.clone();
    for entry in &args.env {
        let entry = if entry.contains('=') {
            entry.clone()
        } else {
            match std::env::var(entry) {
                Ok(value) => format!("{entry}={value}"),
                Err(_) => continue,
            }
        };
        let name = entry.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(name.as_str()));
        env.push(entry);
    }
    if let Some(dir) = &args.workdir
        && !dir.starts_with('/')
    {
        bail!("the working directory '{dir}' is invalid, it needs to be an absolute path");
    }
    let process = ProcessSpec {
        args: args.command.clone(),
        env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| container.config.working_dir.clone()),
        user: args
            .user
            .clone()
            .unwrap_or_else(|| container.config.user.clone()),
        tty: args.tty,
        interactive: args.interactive,
        capabilities: monitor::capabilities_of(&container),
        // As docker's: the container's --group-add and --ulimit hold for exec too.
        groups: container.config.group_add.clone(),
        rlimits: container.config.rlimits(),
    };
    monitor::exec(&container, &process)
}

/// Arguments of `attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not send our standard input to the container.
    #[arg(long)]
    pub no_stdin: bool,
    /// Forward the signals stencil receives to the container (`--sig-proxy=false`: not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// The keys that detach with a terminal (default ctrl-p,ctrl-q): letters or
    /// ctrl-<letter, @, [, \\, ], ^ or _>, separated by commas.
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `stencil attach`: the container's exit code once it stops.
pub fn attach(engine: &Engine, args: &AttachArgs) -> Result<i32> {
    let detach_keys = args
        .detach_keys
        .as_deref()
        .map(monitor::parse_detach_keys)
        .transpose()?;
    let container = engine.container(&args.container)?;
    monitor::attach(
        engine,
        &container,
        monitor::AttachOptions {
            stdin: !args.no_stdin,
            sig_proxy: args.sig_proxy,
            detach_keys,
        },
    )
}

/// Arguments of `top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `stencil top`: the processes of a running container (those in its PID namespace), with
/// `ps -ef`'s columns as docker shows them, host PIDs.
pub fn top(engine: &Engine, args: &TopArgs) -> Result<String> {
    let container = engine.container(&args.container)?;
    let pid = match (container.is_running(), container.state.pid) {
        (true, Some(pid)) => pid,
        _ => bail!(
            "container {} is not running (start it first)",
            container.record.name
        ),
    };
    let namespace = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let wanted = namespace(pid)
        .with_context(|| format!("cannot read the PID namespace of process {pid}"))?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    let mut rows = Vec::new();
    let entries = std::fs::read_dir("/proc").context("cannot read /proc")?;
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    for candidate in pids {
        // A process may end while we look: it is then simply not listed.
        if namespace(candidate).as_ref() != Some(&wanted) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{candidate}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let Some((_, after)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ppid = fields.get(1).copied().unwrap_or("0");
        let cpu_ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        let seconds = cpu_ticks / ticks;
        let time = format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        let uid = std::fs::read_to_string(format!("/proc/{candidate}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Uid:"))
                    .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
            })
            .unwrap_or_default();
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(
            uid.parse().unwrap_or(u32::MAX),
        ))
        .ok()
        .flatten()
        .map_or(uid, |user| user.name);
        let cmdline = std::fs::read(format!("/proc/{candidate}/cmdline")).unwrap_or_default();
        let command = cmdline
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        rows.push(vec![
            user,
            candidate.to_string(),
            ppid.to_owned(),
            time,
            command,
        ]);
    }
    // docker top's own tabwriter: twenty wide.
    Ok(crate::render::table::render_table_wide(
        &["UID", "PID", "PPID", "TIME", "CMD"],
        &rows,
        20,
    ))
}

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `stencil diff`.
pub fn diff(engine: &Engine, args: &DiffArgs) -> Result<String> {
    let container = engine.container(&args.container)?;
    Ok(engine
        .container_changes(&container)?
        .into_iter()
        .map(|(kind, path)| format!("{kind} {path}\n"))
        .collect())
}

/// Arguments of `commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Commit message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENV, …).
    #[arg(short = 'c', long = "change", value_name = "CHANGE")]
    pub change: Vec<String>,
    /// Freeze a running container while its changes are read (default true, as
    /// docker's), so the layer is one moment of it.
    #[arg(short = 'p', long, num_args = 0..=1, default_missing_value = "true")]
    pub pause: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The name of the new image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `stencil commit`: prints the new image ID.
pub fn commit(engine: &Engine, args: &CommitArgs) -> Result<String> {
    let container = engine.container(&args.container)?;
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .context("invalid reference for the new image")?;
    let pause = match args.pause.as_deref() {
        None | Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(other) => bail!("invalid --pause {other:?}: true or false"),
    };
    let options = CommitOptions {
        message: args.message.clone(),
        author: args.author.clone(),
        changes: args.change.clone(),
        reference,
        ..CommitOptions::default()
    };
    // Thawed when dropped, also when the commit fails; a container paused by the user
    // stays paused.
    struct Frozen(crate::container::cgroup::Cgroup);
    impl Drop for Frozen {
        fn drop(&mut self) {
            if let Err(error) = self.0.thaw() {
                tracing::warn!("cannot unpause the container after the commit: {error}");
            }
        }
    }
    let _frozen = if pause && container.is_running() && !container.state.paused {
        let cgroup = crate::container::cgroup::Cgroup::open(&container.record.id)?;
        match cgroup.exists().then(|| cgroup.freeze()) {
            Some(Ok(())) => Some(Frozen(cgroup)),
            Some(Err(error)) => {
                tracing::warn!("committing without pausing the container: {error}");
                None
            }
            None => None,
        }
    } else {
        None
    };
    let committed = engine.commit_container(&container, &options)?;
    Ok(format!("{}\n", committed.image.config_digest))
}

/// Arguments of `export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `stencil export`.
pub fn export(engine: &Engine, args: &ExportArgs) -> Result<i32> {
    let container = engine.container(&args.container)?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            engine.export_container(&container, &mut out)?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            engine.export_container(&container, &mut out)?;
            out.flush().context("cannot write to standard output")?;
        }
    }
    Ok(0)
}

/// Arguments of `container inspect`.
#[derive(Debug, clap::Args)]
pub struct ContainerInspectArgs {
    /// A template applied to each container, e.g. `{{.State.Status}}` or `{{json .Config}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Add the sizes of the writable layer (`SizeRw`) and of the whole root (`SizeRootFs`).
    #[arg(short, long)]
    pub size: bool,
    /// Containers: names, IDs or unique ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// The docker-compatible inspect object of a container.
pub fn container_inspect_value(
    engine: &Engine,
    container: &Container,
    size: bool,
) -> Result<Value> {
    let config = &container.config;
    let state = &container.state;
    let (path, args) = match config.args.split_first() {
        Some((path, args)) => (path.clone(), args.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let never = "0001-01-01T00:00:00Z";
    let upper = engine
        .snapshots()
        .layer_target(&container.record.snapshot_key)
        .map(|target| target.dir.display().to_string())
        .unwrap_or_default();
    let dir = engine.container_dir(&container.record.id);
    let mounts: Vec<Value> = config
        .volumes
        .iter()
        .map(|volume| match &volume.name {
            Some(name) => json!({
                "Type": "volume",
                "Name": name,
                "Source": volume.host,
                "Destination": volume.container,
                "Driver": "local",
                "Mode": if volume.nocopy { "nocopy" } else if volume.read_only { "ro" } else { "z" },
                "RW": !volume.read_only,
                "Propagation": "",
            }),
            None => json!({
                "Type": "bind",
                "Source": volume.host,
                "Destination": volume.container,
                "Mode": if volume.read_only { "ro" } else { "" },
                "RW": !volume.read_only,
                "Propagation": "rprivate",
            }),
        })
        .collect();
    // As docker's Config.Volumes: the destinations of the anonymous volumes (the image's
    // VOLUMEs and `-v /path`), or null.
    let anonymous: serde_json::Map<String, Value> = config
        .volumes
        .iter()
        .filter(|v| v.anonymous)
        .map(|v| (v.container.clone(), json!({})))
        .collect();
    let anonymous_volumes = if anonymous.is_empty() {
        Value::Null
    } else {
        Value::Object(anonymous)
    };
    let mut value = json!({
        "Id": container.record.id,
        "Created": config.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": state_word(container),
            "Running": container.is_up(),
            "Paused": state.paused,
            "Restarting": container.is_restarting(),
            "OOMKilled": state.oom_killed,
            "Dead": false,
            "Pid": if container.is_running() { state.pid.unwrap_or(0) } else { 0 },
            "ExitCode": state.exit_code.unwrap_or(0),
            "Error": state.error.clone().unwrap_or_default(),
            "StartedAt": state.started_at.as_deref().unwrap_or(never),
            "FinishedAt": state.finished_at.as_deref().unwrap_or(never),
        },
        "Image": config.image_id,
        "RestartCount": state.restart_count,
        "LogPath": dir.join("log"),
        "Name": format!("/{}", container.record.name),
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            // As docker's: host paths and named volumes; anonymous ones are not binds.
            "Binds": config.volumes.iter().filter(|v| !v.anonymous).map(|v| format!(
                "{}:{}{}",
                v.name.clone().unwrap_or_else(|| v.host.display().to_string()),
                v.container,
                if v.read_only { ":ro" } else { "" }
            )).collect::<Vec<_>>(),
            "NetworkMode": if config.network_none { "none" } else { "host" },
            "AutoRemove": config.auto_remove,
            "GroupAdd": (!config.group_add.is_empty()).then_some(&config.group_add),
            "Ulimits": (!config.ulimits.is_empty()).then_some(&config.ulimits),
            "ShmSize": config.shm_size.unwrap_or(crate::container::runtime::DEFAULT_SHM_SIZE),
            "RestartPolicy": {
                "Name": config.restart.shown_name(),
                "MaximumRetryCount": config.restart.maximum_retry_count,
            },
            "ReadonlyRootfs": config.read_only,
            "Init": config.init,
            "Runtime": config.runtime.as_ref().map_or("stencil".to_owned(), |r| r.display().to_string()),
            "CapAdd": (!config.cap_add.is_empty()).then_some(&config.cap_add),
            "CapDrop": (!config.cap_drop.is_empty()).then_some(&config.cap_drop),
            "Privileged": config.privileged,
            "ExtraHosts": (!config.extra_hosts.is_empty()).then_some(&config.extra_hosts),
            "Tmpfs": (!config.tmpfs.is_empty()).then_some(&config.tmpfs),
            "Memory": config.resources.memory.unwrap_or(0),
            "MemorySwap": config.resources.memory_swap.unwrap_or(0),
            "NanoCpus": config.resources.nano_cpus.unwrap_or(0),
            "PidsLimit": config.resources.pids_limit,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": upper,
                "MergedDir": engine.container_rootfs(&container.record.id),
            },
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": config.hostname,
            "User": config.user,
            "Tty": config.tty,
            "OpenStdin": config.interactive,
            "Env": config.env,
            "Cmd": config.args,
            "Image": config.image,
            "WorkingDir": config.working_dir,
            "StopSignal": config.stop_signal,
            "Labels": config.labels,
            "Volumes": anonymous_volumes,
        },
    });
    if let Some(timeout) = config.stop_timeout {
        value["Config"]["StopTimeout"] = json!(timeout);
    }
    if let Some(check) = &config.healthcheck {
        value["Config"]["Healthcheck"] = json!(check);
    }
    if let Some(health) = health::read(engine, container) {
        value["State"]["Health"] = json!(health);
    }
    if size {
        let rw = engine.container_size(container)?;
        let image = engine
            .container_image(container)?
            .map_or(0, |image| image.unpacked_size());
        value["SizeRw"] = json!(rw);
        value["SizeRootFs"] = json!(rw + image);
    }
    Ok(value)
}

/// `stencil container inspect`.
pub fn container_inspect(engine: &Engine, args: &ContainerInspectArgs) -> Result<()> {
    crate::cmd::inspect::inspect_each(&args.containers, args.format.as_deref(), |name| {
        let container = engine.container(name)?;
        container_inspect_value(engine, &container, args.size)
    })
}

/// Arguments of `container prune`.
#[derive(Debug, clap::Args)]
pub struct ContainerPruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Only containers that match: until=TIME (created before), label=KEY[=VALUE],
    /// label!=KEY[=VALUE].
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `stencil container prune`: removes every stopped container.
pub fn container_prune(engine: &Engine, args: &ContainerPruneArgs) -> Result<()> {
    if !args.force
        && !crate::cmd::system::confirm("WARNING! This will remove all stopped containers.")?
    {
        return Ok(());
    }
    let filter = crate::cmd::system::prune_filter(&args.filter)?;
    let pruned = engine.prune_containers(&filter)?;
    let mut out = std::io::stdout().lock();
    if !pruned.removed.is_empty() {
        let _ = writeln!(out, "Deleted Containers:\n{}\n", pruned.removed.join("\n"));
    }
    let _ = writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(pruned.reclaimed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_volume_sources_become_absolute() {
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        let parent = cwd.parent().unwrap_or(Path::new("/"));
        let text = |p: &Path| p.to_str().unwrap_or_default().to_owned();
        let made = |spec: &str| absolute_source(spec).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(made("./data:/d:ro"), format!("{}/data:/d:ro", text(&cwd)));
        assert_eq!(made(".:/src"), format!("{}:/src", text(&cwd)));
        assert_eq!(made("../x/./y:/y"), format!("{}/x/y:/y", text(parent)));
        for same in ["/abs:/d", "name:/d", "/only", ".hidden:/d"] {
            assert_eq!(made(same), same);
        }
    }

    #[test]
    fn mount_flags_say_what_v_and_tmpfs_say() {
        let parse = |text: &str| parse_mount(text).unwrap_or_else(|e| panic!("{text}: {e:#}"));
        assert_eq!(
            parse("type=volume,src=data,dst=/data,readonly,volume-nocopy"),
            Mount::Volume("data:/data:ro,nocopy".into())
        );
        assert_eq!(parse("target=/cache"), Mount::Volume("/cache".into()));
        assert_eq!(
            parse("type=bind,source=/tmp,target=/t,ro=true"),
            Mount::Volume("/tmp:/t:ro".into())
        );
        assert_eq!(
            parse("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1777"),
            Mount::Tmpfs("/run:size=64m,mode=1777".into())
        );
        for bad in [
            "type=bind,source=/no/such/path/here,target=/x",
            "type=bind,source=rel,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=nfs,target=/x",
            "source=data",
            "type=volume,target=/x,readonly=maybe",
            "type=tmpfs,source=x,target=/x",
            "type=volume,target=/x,bind-propagation=shared",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }
}
