//! A container's resources: the limit flags of `create`/`run` (`-m`, `--memory-swap`,
//! `--cpus`, `--pids-limit`), `stats`, `pause` and `unpause`.
//!
//! Flag values are parsed once into [`Resources`] with docker's units and rules (a swap
//! limit needs a memory limit and is at least as large; `-m` alone gives twice as much
//! memory plus swap; `--cpus` from 0.01 to the number of CPUs). The cgroup work itself is
//! [`crate::container::cgroup`]'s; this module only picks containers and formats numbers
//! as docker's CLI does.
//!
//! ```
//! use stencil::cmd::resources::parse_bytes;
//! assert_eq!(parse_bytes("512m"), Ok(512 << 20));
//! assert_eq!(parse_bytes("1G"), Ok(1 << 30));
//! ```

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::container::cgroup::{Cgroup, Resources, Usage};
use crate::container::monitor;
use crate::engine::{Container, Engine, RestartPolicy};
use crate::render::units::{binary_size, human_size};
use crate::render::{Column, Format};

/// Docker's smallest memory limit (6 MiB): below it a container cannot even start.
const MIN_MEMORY: i64 = 6 << 20;

/// The resource flags of `create` and `run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResourceArgs {
    /// Memory limit: bytes, or a number with b, k, m or g (512m, 1g).
    #[arg(short = 'm', long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory plus swap limit (-1: unlimited swap; default: twice --memory).
    #[arg(long = "memory-swap", value_name = "BYTES", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Number of CPUs, a decimal such as 0.5 or 1.5.
    #[arg(long, value_name = "DECIMAL", value_parser = parse_cpus)]
    pub cpus: Option<i64>,
    /// Most processes and threads (-1 or 0: unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

/// Parses a byte count as docker's `RAMInBytes`: `1024`, `512m`, `1.5g`, `64MiB`, `10 k`
/// (binary units, case-insensitive).
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a size: give bytes or a number with b, k, m or g");
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// `--memory-swap`: a byte count, or `-1` for unlimited swap.
fn parse_swap(text: &str) -> Result<i64, String> {
    if text.trim() == "-1" {
        return Ok(-1);
    }
    parse_bytes(text)
}

/// `--cpus`: a decimal number of CPUs, as billionths of a CPU.
fn parse_cpus(text: &str) -> Result<i64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs such as 0.5 or 2"))?;
    if !cpus.is_finite() || cpus < 0.0 {
        return Err(format!("{text:?} is not a number of CPUs such as 0.5 or 2"));
    }
    Ok((cpus * 1e9).round() as i64)
}

impl ResourceArgs {
    /// The limits asked for, checked against each other and the machine as docker does.
    pub fn resources(&self) -> Result<Resources> {
        let memory = self.memory.filter(|m| *m != 0);
        if let Some(memory) = memory
            && memory < MIN_MEMORY
        {
            bail!("invalid value {memory} for --memory: the minimum memory limit allowed is 6MB");
        }
        let memory_swap = match (memory, self.memory_swap.filter(|s| *s != 0)) {
            (None, Some(swap)) => bail!(
                "invalid value {swap} for --memory-swap: set --memory as well (a swap limit needs a memory limit)"
            ),
            (Some(memory), Some(swap)) if swap > 0 && swap < memory => bail!(
                "invalid value {swap} for --memory-swap: it must be at least --memory ({memory}), being memory plus swap"
            ),
            (Some(_), Some(swap)) => Some(swap),
            // docker's default: as much swap as memory.
            (Some(memory), None) => Some(memory.saturating_mul(2)),
            (None, None) => None,
        };
        let nano_cpus = self.cpus.filter(|n| *n != 0);
        if let Some(nanos) = nano_cpus {
            let available = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
            if !(10_000_000..=available * 1_000_000_000).contains(&nanos) {
                bail!(
                    "invalid value {} for --cpus: the range of CPUs is from 0.01 to {available}.00, as there are only {available} CPUs available",
                    nanos as f64 / 1e9
                );
            }
        }
        Ok(Resources {
            memory,
            memory_swap,
            nano_cpus,
            pids_limit: self.pids_limit.filter(|n| *n > 0),
        })
    }
}

/// Arguments of `stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default: running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print one sample and exit instead of redrawing every second.
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate the IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// `table`, `json`, or a template such as `{{.Name}} {{.MemUsage}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers (default: every running one).
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

const STATS_COLUMNS: [Column; 8] = [
    Column {
        field: "ID",
        header: "CONTAINER ID",
    },
    Column {
        field: "Name",
        header: "NAME",
    },
    Column {
        field: "CPUPerc",
        header: "CPU %",
    },
    Column {
        field: "MemUsage",
        header: "MEM USAGE / LIMIT",
    },
    Column {
        field: "MemPerc",
        header: "MEM %",
    },
    Column {
        field: "NetIO",
        header: "NET I/O",
    },
    Column {
        field: "BlockIO",
        header: "BLOCK I/O",
    },
    Column {
        field: "PIDs",
        header: "PIDS",
    },
];

/// Docker's extra template field: the container as named on the command line.
const CONTAINER_COLUMN: Column = Column {
    field: "Container",
    header: "CONTAINER",
};

/// How long `--no-stream` measures CPU use over.
const SAMPLE: Duration = Duration::from_millis(500);

/// One reading of a container's cgroup.
struct Reading {
    at: Instant,
    usage: Usage,
}

/// `stencil stats`: prints one sample with `--no-stream`, else redraws every second until
/// interrupted.
pub fn stats(engine: &Engine, args: &StatsArgs) -> Result<i32> {
    let format = Format::parse(args.format.as_deref().unwrap_or("table"))?;
    let mut columns = STATS_COLUMNS.to_vec();
    if !matches!(format, Format::Table) {
        // `{{.Container}}` is a field of templates, not a column of the default table.
        columns.push(CONTAINER_COLUMN);
    }
    let memory_total = host_memory();
    let mut previous = HashMap::new();
    let mut out = std::io::stdout().lock();
    let clear = !args.no_stream && out.is_terminal();
    loop {
        let containers = chosen(engine, args)?;
        let first = previous.is_empty();
        for (container, _) in &containers {
            if let Some(reading) = read(container) {
                previous
                    .entry(container.record.id.clone())
                    .or_insert(reading);
            }
        }
        std::thread::sleep(if first {
            SAMPLE
        } else {
            Duration::from_secs(1)
        });
        let rows: Vec<Value> = containers
            .iter()
            .map(|(container, named)| {
                let now = read(container);
                let before = previous.remove(&container.record.id);
                let row = stats_row(
                    container,
                    named,
                    args.no_trunc,
                    before.as_ref(),
                    now.as_ref(),
                    memory_total,
                );
                if let Some(now) = now {
                    previous.insert(container.record.id.clone(), now);
                }
                row
            })
            .collect();
        let text = format.render(&columns, &rows)?;
        if clear {
            let _ = out.write_all(b"\x1b[2J\x1b[H");
        }
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
            || args.no_stream
        {
            return Ok(0);
        }
    }
}

/// The containers to show, each with the name it was asked by (its name by default).
fn chosen(engine: &Engine, args: &StatsArgs) -> Result<Vec<(Container, String)>> {
    if args.containers.is_empty() {
        return Ok(engine
            .containers()?
            .into_iter()
            .filter(|c| args.all || c.is_running())
            .map(|c| {
                let name = c.record.name.clone();
                (c, name)
            })
            .collect());
    }
    args.containers
        .iter()
        .map(|name| Ok((engine.container(name)?, name.clone())))
        .collect()
}

/// The usage of a running container's cgroup, `None` when it has none.
fn read(container: &Container) -> Option<Reading> {
    if !container.is_running() {
        return None;
    }
    let cgroup = Cgroup::open(&container.record.id).ok()?;
    if !cgroup.exists() {
        return None;
    }
    Some(Reading {
        at: Instant::now(),
        usage: cgroup.usage(),
    })
}

fn stats_row(
    container: &Container,
    named: &str,
    no_trunc: bool,
    before: Option<&Reading>,
    now: Option<&Reading>,
    memory_total: u64,
) -> Value {
    let id = if no_trunc {
        container.record.id.as_str()
    } else {
        container.short_id()
    };
    let cpu = match (before, now) {
        (Some(before), Some(now)) if now.at > before.at => {
            let used = now.usage.cpu_nanos.saturating_sub(before.usage.cpu_nanos) as f64;
            used / (now.at - before.at).as_nanos() as f64 * 100.0
        }
        _ => 0.0,
    };
    let usage = now.map(|r| r.usage).unwrap_or_default();
    let limit = match now {
        Some(reading) => reading.usage.memory_limit.unwrap_or(memory_total),
        None => 0,
    };
    let memory_percent = if limit > 0 {
        usage.memory as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    let net = if container.config.network_none || now.is_none() {
        "0B / 0B"
    } else {
        // The host's network: the container's traffic is the host's, not its own.
        "--"
    };
    json!({
        "Container": named,
        "ID": id,
        "Name": container.record.name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", binary_size(usage.memory), binary_size(limit)),
        "MemPerc": format!("{memory_percent:.2}%"),
        "NetIO": net,
        "BlockIO": format!("{} / {}", human_size(usage.block_read), human_size(usage.block_write)),
        "PIDs": usage.pids.to_string(),
    })
}

/// The host's memory in bytes (`MemTotal`), docker's limit for an unlimited container.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kib.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kib| kib * 1024)
}

/// Arguments of `pause` and `unpause`.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Arguments of `update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The new limits; those not given stay as they are.
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// The restart policy from the next exit on: no, always, unless-stopped,
    /// on-failure[:MAX-RETRIES].
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Containers.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// The limits `given` makes of `old`: each flag given replaces its limit (`0` or `-1`
/// lifts `--cpus` and `--pids-limit`), the others stay; a swap limit that was the default
/// (twice the memory) follows a new memory limit.
pub fn updated(old: &Resources, given: &ResourceArgs) -> Result<Resources> {
    let default_swap = old.memory.map(|m| m.saturating_mul(2));
    let swap = match (given.memory, given.memory_swap) {
        (_, Some(swap)) => Some(swap),
        (Some(_), None) if old.memory_swap == default_swap => None,
        _ => old.memory_swap,
    };
    let merged = ResourceArgs {
        memory: given.memory.or(old.memory),
        memory_swap: swap,
        cpus: given.cpus.or(old.nano_cpus),
        pids_limit: given.pids_limit.or(old.pids_limit),
    };
    merged.resources()
}

/// `stencil update`: changes the limits of containers, running or not.
pub fn update(engine: &Engine, args: &UpdateArgs) -> Result<i32> {
    let given = &args.resources;
    let limits = given.memory.is_some()
        || given.memory_swap.is_some()
        || given.cpus.is_some()
        || given.pids_limit.is_some();
    let restart = args
        .restart
        .as_deref()
        .map(RestartPolicy::parse)
        .transpose()?;
    if !limits && restart.is_none() {
        bail!(
            "you must give at least one setting to update: -m, --memory-swap, --cpus, --pids-limit or --restart"
        );
    }
    crate::cmd::containers::each(&args.containers, |name| {
        let mut container = engine.container(name)?;
        if let Some(policy) = &restart {
            engine.update_restart_policy(&container, policy)?;
            container = engine.container(&container.record.id)?;
        }
        if limits {
            let resources = updated(&container.config.resources, given)?;
            engine.update_container_resources(&container, resources)?;
        }
        Ok(())
    })
}

/// `stencil pause`: freezes every process of each container.
pub fn pause(engine: &Engine, args: &PauseArgs) -> Result<i32> {
    super::containers::each(&args.containers, |name| {
        monitor::pause(&engine.container(name)?)
    })
}

/// `stencil unpause`: lets each paused container run again.
pub fn unpause(engine: &Engine, args: &PauseArgs) -> Result<i32> {
    super::containers::each(&args.containers, |name| {
        monitor::unpause(&engine.container(name)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_replaces_what_is_given_and_keeps_the_rest() {
        let args = |memory, memory_swap, cpus, pids_limit| ResourceArgs {
            memory,
            memory_swap,
            cpus,
            pids_limit,
        };
        let mib = |n: i64| n << 20;
        let old = args(Some(mib(32)), None, Some(500_000_000), Some(20))
            .resources()
            .unwrap_or_else(|e| panic!("{e:#}"));
        // A default swap limit follows the new memory limit; the others stay.
        let new = updated(&old, &args(Some(mib(64)), None, None, None))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            (new.memory, new.memory_swap, new.nano_cpus, new.pids_limit),
            (Some(mib(64)), Some(mib(128)), Some(500_000_000), Some(20))
        );
        // 0 and -1 lift limits; an explicit swap limit stays with a new memory limit,
        // and one below it is refused, as docker refuses it.
        let lifted =
            updated(&old, &args(None, None, Some(0), Some(-1))).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((lifted.nano_cpus, lifted.pids_limit), (None, None));
        let pinned = updated(&old, &args(None, Some(mib(40)), None, None))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(updated(&pinned, &args(Some(mib(48)), None, None, None)).is_err());
    }

    #[test]
    fn sizes_parse_as_docker_parses_them() {
        let check = |text: &str, expected: Option<i64>| {
            assert_eq!(parse_bytes(text).ok(), expected, "{text}");
        };
        check("1024", Some(1024));
        check("512m", Some(512 << 20));
        check("512M", Some(512 << 20));
        check("1g", Some(1 << 30));
        check("1.5g", Some(3 << 29));
        check("64MiB", Some(64 << 20));
        check("64mb", Some(64 << 20));
        check("10 k", Some(10 << 10));
        check("100b", Some(100));
        check("12x", None);
        check("", None);
        check("m", None);
        check("-1", None);
    }

    #[test]
    fn limits_follow_docker_rules() {
        let check = |args: ResourceArgs, expected: Result<Resources, &str>| match (
            args.resources(),
            expected,
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{args:?}"),
            (Err(got), Err(want)) => assert!(got.to_string().contains(want), "{got}"),
            (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
        };
        let memory = 64 << 20;
        check(
            ResourceArgs {
                memory: Some(memory),
                ..ResourceArgs::default()
            },
            Ok(Resources {
                memory: Some(memory),
                memory_swap: Some(2 * memory),
                ..Resources::default()
            }),
        );
        check(
            ResourceArgs {
                memory: Some(memory),
                memory_swap: Some(-1),
                pids_limit: Some(-1),
                cpus: Some(500_000_000),
            },
            Ok(Resources {
                memory: Some(memory),
                memory_swap: Some(-1),
                nano_cpus: Some(500_000_000),
                pids_limit: None,
            }),
        );
        check(
            ResourceArgs {
                memory_swap: Some(memory),
                ..ResourceArgs::default()
            },
            Err("--memory-swap"),
        );
        check(
            ResourceArgs {
                memory: Some(memory),
                memory_swap: Some(memory / 2),
                ..ResourceArgs::default()
            },
            Err("--memory-swap"),
        );
        check(
            ResourceArgs {
                memory: Some(1024),
                ..ResourceArgs::default()
            },
            Err("--memory"),
        );
        check(
            ResourceArgs {
                cpus: Some(1_000_000),
                ..ResourceArgs::default()
            },
            Err("--cpus"),
        );
    }
}
