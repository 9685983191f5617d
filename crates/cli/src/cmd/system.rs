//! `stencil system df [-v]`, `stencil system prune [-a] [-f]`, `stencil image prune [-a] [-f]`
//! and `stencil info`: where the space goes, how to get it back, and what this stencil is,
//! with docker's output.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::containers::ps_row;
use crate::cmd::images::{CREATED, IMAGE_ID, REPOSITORY, SIZE, TAG};
use crate::engine::{DiskUsage, Engine, PruneFilter, Pruned, image_rows};
use crate::render::table::render_table;
use crate::render::template::plain;
use crate::render::units::human_size;
use crate::render::{Column, Format};

/// `stencil system …`.
#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Show the space images, containers and volumes take.
    Df(DfArgs),
    /// Remove stopped containers and dangling images (with -a, every unused image; with
    /// --volumes, unused anonymous volumes).
    Prune(SystemPruneArgs),
    /// Show how stencil is set up (same as `stencil info`).
    Info(InfoArgs),
}

/// Arguments of `stencil system df`.
#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Show each image, with its shared and unique sizes.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Arguments of `stencil image prune` and `stencil system prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Only what matches: until=TIME (created before; a time or a duration such as 24h),
    /// label=KEY[=VALUE], label!=KEY[=VALUE].
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// Arguments of `stencil system prune`.
#[derive(Debug, clap::Args)]
pub struct SystemPruneArgs {
    /// What `image prune` takes.
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Remove the anonymous volumes no container uses too.
    #[arg(long)]
    pub volumes: bool,
}

/// The `--filter`s of `prune`: `until=`, `label=` and `label!=`, as docker's.
pub fn prune_filter(texts: &[String]) -> Result<PruneFilter> {
    let mut filter = PruneFilter::default();
    for text in texts {
        let known = "until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE]";
        let (key, value, negated) = if let Some((key, value)) = text.split_once("!=") {
            (key, value, true)
        } else if let Some((key, value)) = text.split_once('=') {
            (key, value, false)
        } else {
            anyhow::bail!("invalid filter {text:?}: expected {known}");
        };
        match (key, negated) {
            ("until", false) => {
                let time = crate::cmd::containers::parse_time_arg(value, chrono::Utc::now())
                    .map_err(|reason| anyhow::anyhow!("invalid filter {text:?}: {reason}"))?;
                filter.until = Some(time);
            }
            ("label", _) if !value.is_empty() => {
                let (key, wanted) = match value.split_once('=') {
                    Some((key, wanted)) => (key.to_owned(), Some(wanted.to_owned())),
                    None => (value.to_owned(), None),
                };
                filter.labels.push((key, wanted, !negated));
            }
            _ => anyhow::bail!("invalid filter {text:?}: use {known}"),
        }
    }
    Ok(filter)
}

/// Arguments of `stencil info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// `json`, or a template such as `{{.Containers}} {{.Driver}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Runs `stencil system …`.
pub fn run(engine: &Engine, command: &SystemCommand) -> Result<()> {
    match command {
        SystemCommand::Df(args) => print(&df(engine, args)?),
        SystemCommand::Prune(args) => system_prune(engine, args),
        SystemCommand::Info(args) => print(&info(engine, args)?),
    }
}

fn print(text: &str) -> Result<()> {
    // A closed pipe (`| head`) ends the output quietly, as with other tools.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// Runs `stencil system df`, returning the text to print.
pub fn df(engine: &Engine, args: &DfArgs) -> Result<String> {
    let usage = engine.disk_usage()?;
    let volumes = volume_usage(engine)?;
    if args.verbose {
        verbose(engine, &usage, &volumes)
    } else {
        Ok(summary(&usage, &volumes))
    }
}

/// Each volume's name, the containers using it and its size.
fn volume_usage(engine: &Engine) -> Result<Vec<(String, usize, u64)>> {
    let users = engine.volume_users()?;
    Ok(engine
        .volumes()?
        .into_iter()
        .map(|volume| {
            let links = users.get(&volume.name).map_or(0, Vec::len);
            let size = engine.volume_size(&volume);
            (volume.name, links, size)
        })
        .collect())
}

fn reclaimable(bytes: u64, total: u64) -> String {
    if total == 0 {
        return human_size(bytes);
    }
    // Truncated like docker's integer percentage.
    format!("{} ({}%)", human_size(bytes), bytes * 100 / total)
}

fn summary(usage: &DiskUsage, volumes: &[(String, usize, u64)]) -> String {
    let volumes_size: u64 = volumes.iter().map(|v| v.2).sum();
    let unused: u64 = volumes.iter().filter(|v| v.1 == 0).map(|v| v.2).sum();
    let active = usage.images.iter().filter(|i| i.containers > 0).count();
    let running = usage
        .containers
        .iter()
        .filter(|c| c.container.is_up())
        .count();
    let rows = vec![
        vec![
            "Images".to_owned(),
            usage.images.len().to_string(),
            active.to_string(),
            human_size(usage.total_size),
            reclaimable(usage.reclaimable, usage.total_size),
        ],
        vec![
            "Containers".to_owned(),
            usage.containers.len().to_string(),
            running.to_string(),
            human_size(usage.containers_size()),
            reclaimable(usage.containers_reclaimable(), usage.containers_size()),
        ],
        vec![
            "Local Volumes".to_owned(),
            volumes.len().to_string(),
            volumes.iter().filter(|v| v.1 > 0).count().to_string(),
            human_size(volumes_size),
            reclaimable(unused, volumes_size),
        ],
        // The build cache is made of images (counted above).
        zero_row("Build Cache"),
    ];
    render_table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
}

fn zero_row(kind: &str) -> Vec<String> {
    vec![
        kind.to_owned(),
        "0".into(),
        "0".into(),
        "0B".into(),
        "0B".into(),
    ]
}

const IMAGE_COLUMNS: [Column; 8] = [
    REPOSITORY,
    TAG,
    IMAGE_ID,
    CREATED,
    SIZE,
    Column {
        field: "SharedSize",
        header: "SHARED SIZE",
    },
    Column {
        field: "UniqueSize",
        header: "UNIQUE SIZE",
    },
    Column {
        field: "Containers",
        header: "CONTAINERS",
    },
];

fn verbose(engine: &Engine, usage: &DiskUsage, volumes: &[(String, usize, u64)]) -> Result<String> {
    let by_manifest: BTreeMap<String, _> = usage
        .images
        .iter()
        .map(|u| (u.image.manifest_digest.to_string(), u))
        .collect();
    let mut rows = Vec::new();
    for row in image_rows(engine, false)? {
        let Some(image) = by_manifest.get(&row.manifest_digest) else {
            continue;
        };
        let mut value = serde_json::to_value(&row)?;
        value["SharedSize"] = json!(human_size(image.shared_size));
        value["UniqueSize"] = json!(human_size(image.unique_size));
        value["Containers"] = json!(image.containers.to_string());
        rows.push(value);
    }
    let mut out = String::from("Images space usage:\n\n");
    out.push_str(&Format::Table.render(&IMAGE_COLUMNS, &rows)?);
    out.push_str("\nContainers space usage:\n\n");
    let containers: Vec<Vec<String>> = usage
        .containers
        .iter()
        .map(|c| {
            let row = ps_row(engine, &c.container, false);
            vec![
                plain(&row["ID"]),
                plain(&row["Image"]),
                plain(&row["Command"]),
                c.container
                    .config
                    .volumes
                    .iter()
                    .filter(|v| v.name.is_some())
                    .count()
                    .to_string(),
                human_size(c.size),
                plain(&row["RunningFor"]),
                plain(&row["Status"]),
                plain(&row["Names"]),
            ]
        })
        .collect();
    out.push_str(&render_table::<&str>(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ],
        &containers,
    ));
    out.push_str("\nLocal Volumes space usage:\n\n");
    let volume_rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|(name, links, size)| vec![name.clone(), links.to_string(), human_size(*size)])
        .collect();
    out.push_str(&render_table::<&str>(
        &["VOLUME NAME", "LINKS", "SIZE"],
        &volume_rows,
    ));
    out.push_str("\nBuild cache usage: 0B\n");
    Ok(out)
}

/// Asks "Are you sure" on the terminal after `warning`; refuses when standard input is
/// not a terminal, so scripts say `-f`.
pub fn confirm(warning: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to prune without confirmation: standard input is not a terminal (use -f to prune anyway)"
        );
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer from the terminal")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Runs `stencil image prune`.
pub fn prune(engine: &Engine, args: &PruneArgs) -> Result<()> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(warning)? {
        return Ok(());
    }
    let filter = prune_filter(&args.filter)?;
    let pruned = engine.prune_images(args.all, &filter)?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(pruned_images_text(&pruned).as_bytes());
    let _ = writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(pruned.reclaimed)
    );
    Ok(())
}

fn pruned_images_text(pruned: &Pruned) -> String {
    let mut lines = Vec::new();
    for removed in &pruned.removed {
        lines.extend(removed.untagged.iter().map(|n| format!("untagged: {n}")));
        lines.extend(removed.deleted.iter().map(|d| format!("deleted: {d}")));
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!("Deleted Images:\n{}\n\n", lines.join("\n"))
    }
}

/// Runs `stencil system prune`: stopped containers first, then the images they held.
pub fn system_prune(engine: &Engine, system_args: &SystemPruneArgs) -> Result<()> {
    let args = &system_args.prune;
    let filter = prune_filter(&args.filter)?;
    let images = if args.all {
        "  - all images without at least one container associated to them"
    } else {
        "  - all dangling images"
    };
    let volumes = if system_args.volumes {
        "\n  - all anonymous volumes not used by at least one container"
    } else {
        ""
    };
    let warning = format!(
        "WARNING! This will remove:\n  - all stopped containers{volumes}\n{images}\n  - all build cache"
    );
    if !args.force && !confirm(&warning)? {
        return Ok(());
    }
    let containers = engine.prune_containers(&filter)?;
    let volumes = if system_args.volumes {
        engine.prune_volumes(false, &filter)?
    } else {
        Default::default()
    };
    let images = engine.prune_images(args.all, &filter)?;
    let mut out = std::io::stdout().lock();
    if !containers.removed.is_empty() {
        let _ = writeln!(
            out,
            "Deleted Containers:\n{}\n",
            containers.removed.join("\n")
        );
    }
    if !volumes.removed.is_empty() {
        let _ = writeln!(out, "Deleted Volumes:\n{}\n", volumes.removed.join("\n"));
    }
    let _ = out.write_all(pruned_images_text(&images).as_bytes());
    let _ = writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(containers.reclaimed + volumes.reclaimed + images.reclaimed)
    );
    Ok(())
}

/// What `stencil info` reports, with docker's field names where docker has the field.
pub fn info_value(engine: &Engine) -> Result<Value> {
    let containers = engine.containers()?;
    let running = containers.iter().filter(|c| c.is_up()).count();
    let images = engine.store().images()?.len();
    let uname = nix::sys::utsname::uname().context("cannot read the kernel's name (uname)")?;
    let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let operating_system = os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".to_owned());
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024);
    let registries = engine.registries_config()?;
    let insecure: Vec<&str> = registries
        .registries
        .iter()
        .filter(|r| r.insecure)
        .map(|r| r.host.as_str())
        .collect();
    let mirrors: Vec<Value> = registries
        .registries
        .iter()
        .filter(|r| !r.mirrors.is_empty())
        .map(|r| json!({"Name": r.host, "Mirrors": r.mirrors}))
        .collect();
    Ok(json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - running,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(engine.root())]],
        "DockerRootDir": engine.root(),
        "CgroupVersion": cgroup,
        "KernelVersion": text(uname.release()),
        "OperatingSystem": operating_system,
        "OSType": "linux",
        "Architecture": text(uname.machine()),
        "NCPU": cpus,
        "MemTotal": memory,
        "Name": text(uname.nodename()),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "DefaultRuntime": "stencil",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "InsecureRegistries": insecure,
            "Mirrors": mirrors,
        },
        "IndexServerAddress": "https://index.docker.io/v1/",
    }))
}

/// Runs `stencil info`, returning the text to print.
pub fn info(engine: &Engine, args: &InfoArgs) -> Result<String> {
    let value = info_value(engine)?;
    if let Some(format) = &args.format {
        let format = match Format::parse(format)? {
            Format::Table => Format::Json,
            other => other,
        };
        return Ok(format.render(&[], &[value])?);
    }
    let field = |name: &str| plain(&value[name]);
    let insecure = value["RegistryConfig"]["InsecureRegistries"]
        .as_array()
        .map(|list| list.iter().map(plain).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "Client:\n Version:    {}\n Context:    local (daemonless)\n\nServer:\n",
        field("ServerVersion")
    ));
    out.push_str(&format!(" Containers: {}\n", field("Containers")));
    out.push_str(&format!("  Running: {}\n", field("ContainersRunning")));
    out.push_str(&format!("  Paused: {}\n", field("ContainersPaused")));
    out.push_str(&format!("  Stopped: {}\n", field("ContainersStopped")));
    out.push_str(&format!(" Images: {}\n", field("Images")));
    out.push_str(&format!(" Storage Driver: {}\n", field("Driver")));
    out.push_str(&format!(
        "  Backing Filesystem: {}\n",
        plain(&value["DriverStatus"][0][1])
    ));
    out.push_str(&format!(" Cgroup Version: {}\n", field("CgroupVersion")));
    out.push_str(&format!(" Default Runtime: {}\n", field("DefaultRuntime")));
    out.push_str(&format!(" Kernel Version: {}\n", field("KernelVersion")));
    out.push_str(&format!(
        " Operating System: {}\n",
        field("OperatingSystem")
    ));
    out.push_str(&format!(" OSType: {}\n", field("OSType")));
    out.push_str(&format!(" Architecture: {}\n", field("Architecture")));
    out.push_str(&format!(" CPUs: {}\n", field("NCPU")));
    out.push_str(&format!(
        " Total Memory: {}\n",
        human_binary_size(value["MemTotal"].as_u64().unwrap_or(0))
    ));
    out.push_str(&format!(" Name: {}\n", field("Name")));
    out.push_str(&format!(" Stencil Root Dir: {}\n", field("DockerRootDir")));
    out.push_str(" Insecure Registries:\n  127.0.0.0/8\n  ::1/128\n");
    for registry in insecure {
        out.push_str(&format!("  {registry}\n"));
    }
    if let Some(mirrors) = value["RegistryConfig"]["Mirrors"].as_array()
        && !mirrors.is_empty()
    {
        out.push_str(" Registry Mirrors:\n");
        for entry in mirrors {
            for mirror in entry["Mirrors"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {} (for {})\n",
                    plain(mirror),
                    plain(&entry["Name"])
                ));
            }
        }
    }
    Ok(out)
}

/// `15.61GiB`, as `docker info` writes memory.
fn human_binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// The type of the filesystem holding `path` (`extfs`, `xfs`, `tmpfs`, …), as docker
/// names it.
fn backing_filesystem(path: &Path) -> String {
    match nix::sys::statfs::statfs(path) {
        Ok(stat) => {
            let magic = stat.filesystem_type().0 as u64;
            match magic {
                0xef53 => "extfs".to_owned(),
                0x5846_5342 => "xfs".to_owned(),
                0x9123_683e => "btrfs".to_owned(),
                0x0102_1994 => "tmpfs".to_owned(),
                0x794c_7630 => "overlayfs".to_owned(),
                0x2fc1_2fc1 => "zfs".to_owned(),
                other => format!("{other:#x}"),
            }
        }
        Err(_) => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_dockers_rows_and_percentages() {
        let usage = DiskUsage {
            images: Vec::new(),
            total_size: 2_120_000,
            reclaimable: 1_060_000,
            containers: Vec::new(),
        };
        assert_eq!(
            summary(
                &usage,
                &[
                    ("a".to_owned(), 1, 3_000_000),
                    ("b".to_owned(), 0, 1_000_000)
                ]
            ),
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          0         0         2.12MB    1.06MB (50%)\n\
             Containers      0         0         0B        0B\n\
             Local Volumes   2         1         4MB       1MB (25%)\n\
             Build Cache     0         0         0B        0B\n"
        );
        assert_eq!(reclaimable(0, 0), "0B");
        assert_eq!(reclaimable(2, 3), "2B (66%)");
    }
}
