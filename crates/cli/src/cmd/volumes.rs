//! `stencil volume create|ls|inspect|rm|prune`, with docker's flags and output.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cmd::containers::each;
use crate::cmd::label_filter::LabelFilter;
use crate::cmd::system::{confirm, prune_filter};
use crate::engine::{Engine, Volume};
use crate::render::units::human_size;
use crate::render::{Column, Format};

/// `stencil volume …`.
#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a name is made up when none is given); prints its name.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as docker-compatible JSON.
    Inspect(InspectArgs),
    /// Remove volumes no container uses.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove the anonymous volumes no container uses (with -a, every unused volume).
    Prune(PruneArgs),
}

/// Arguments of `volume create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The volume's name.
    #[arg(value_name = "VOLUME")]
    pub name: Option<String>,
    /// Set a label (KEY=VALUE, or KEY for an empty value).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Volume driver: only `local`.
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Driver options (the local driver's mount options are not supported).
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
}

/// Arguments of `volume ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only print names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Keep volumes matching KEY=VALUE: dangling=true|false, name=TEXT, label=KEY[=VALUE],
    /// driver=local (repeat to combine).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// `table`, `json`, or a template such as `{{.Name}}\t{{.Mountpoint}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Arguments of `volume inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A template applied to each volume, such as `{{.Mountpoint}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Volumes.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// Arguments of `volume rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Say nothing about volumes that do not exist (a volume in use is still refused).
    #[arg(short, long)]
    pub force: bool,
    /// Volumes.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// Arguments of `volume prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every unused volume, named ones too.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Only what matches: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE].
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// Runs `stencil volume …`; the exit status.
pub fn run(engine: &Engine, command: &VolumeCommand) -> Result<i32> {
    match command {
        VolumeCommand::Create(args) => create(engine, args).map(|()| 0),
        VolumeCommand::Ls(args) => {
            print(&ls(engine, args)?);
            Ok(0)
        }
        VolumeCommand::Inspect(args) => inspect(engine, args).map(|()| 0),
        VolumeCommand::Rm(args) => rm(engine, args),
        VolumeCommand::Prune(args) => prune(engine, args).map(|()| 0),
    }
}

fn print(text: &str) {
    // A closed pipe (`| head`) ends the output quietly, as with other tools.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn create(engine: &Engine, args: &CreateArgs) -> Result<()> {
    if args.driver != "local" {
        bail!(
            "volume driver {:?} is not available: stencil has the local driver only",
            args.driver
        );
    }
    if let Some(opt) = args.opts.first() {
        bail!("volume option {opt:?} is not supported: local volumes are directories of the store");
    }
    let mut labels = BTreeMap::new();
    for entry in &args.labels {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        if key.trim().is_empty() {
            bail!("invalid label {entry:?}: give KEY=VALUE");
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    let (volume, _) = engine.create_volume(args.name.as_deref(), &labels)?;
    print(&format!("{}\n", volume.name));
    Ok(())
}

/// Docker's `volume inspect` object.
pub fn inspect_value(volume: &Volume) -> Value {
    json!({
        "CreatedAt": volume.created_at,
        "Driver": "local",
        "Labels": if volume.labels.is_empty() { Value::Null } else { json!(volume.labels) },
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": Value::Null,
        "Scope": "local",
    })
}

fn inspect(engine: &Engine, args: &InspectArgs) -> Result<()> {
    crate::cmd::inspect::inspect_each(&args.volumes, args.format.as_deref(), |name| {
        Ok(inspect_value(&engine.volume(name)?))
    })
}

const COLUMNS: [Column; 2] = [
    Column {
        field: "Driver",
        header: "DRIVER",
    },
    Column {
        field: "Name",
        header: "VOLUME NAME",
    },
];

enum Filter {
    Dangling(bool),
    Name(String),
    Label(LabelFilter),
    Driver(String),
}

fn parse_filter(text: &str) -> Result<Filter> {
    let known = "dangling, name, label, driver";
    let Some((key, value)) = text.split_once('=') else {
        bail!("invalid filter {text:?}: expected KEY=VALUE ({known})");
    };
    Ok(match key {
        "dangling" => match value {
            "true" | "1" => Filter::Dangling(true),
            "false" | "0" => Filter::Dangling(false),
            _ => bail!("invalid filter {text:?}: dangling takes true or false"),
        },
        "name" => Filter::Name(value.to_owned()),
        "label" if !value.is_empty() => Filter::Label(LabelFilter::parse(value)),
        "driver" => Filter::Driver(value.to_owned()),
        _ => bail!("invalid filter {text:?}: unknown key {key:?} ({known})"),
    })
}

/// Runs `stencil volume ls`, returning the text to print.
pub fn ls(engine: &Engine, args: &LsArgs) -> Result<String> {
    let filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    let format = match &args.format {
        Some(text) => Format::parse(text)?,
        None => Format::Table,
    };
    let users = engine.volume_users()?;
    let mut rows = Vec::new();
    for volume in engine.volumes()? {
        let links = users.get(&volume.name).map_or(0, Vec::len);
        let labels = json!(volume.labels);
        let keep = filters.iter().all(|filter| match filter {
            Filter::Dangling(dangling) => (links == 0) == *dangling,
            Filter::Name(part) => volume.name.contains(part.as_str()),
            Filter::Label(label) => label.matches(&labels),
            Filter::Driver(driver) => driver == "local",
        });
        if !keep {
            continue;
        }
        if args.quiet {
            rows.push(Value::String(volume.name));
            continue;
        }
        rows.push(json!({
            "Driver": "local",
            "Name": volume.name,
            "Mountpoint": volume.mountpoint,
            "Scope": "local",
            "CreatedAt": volume.created_at,
            "Labels": volume.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            "Links": links.to_string(),
            "Size": "N/A",
        }));
    }
    if args.quiet {
        return Ok(rows
            .iter()
            .map(|name| format!("{}\n", name.as_str().unwrap_or_default()))
            .collect());
    }
    Ok(format.render(&COLUMNS, &rows)?)
}

fn rm(engine: &Engine, args: &RmArgs) -> Result<i32> {
    let present: Vec<String> = if args.force {
        args.volumes
            .iter()
            .filter(|name| engine.volume(name).is_ok())
            .cloned()
            .collect()
    } else {
        args.volumes.clone()
    };
    each(&present, |name| engine.remove_volume(name))
}

fn prune(engine: &Engine, args: &PruneArgs) -> Result<()> {
    let warning = if args.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !args.force && !confirm(warning)? {
        return Ok(());
    }
    let filter = prune_filter(&args.filter)?;
    let pruned = engine.prune_volumes(args.all, &filter)?;
    let mut out = String::new();
    if !pruned.removed.is_empty() {
        out.push_str(&format!(
            "Deleted Volumes:\n{}\n\n",
            pruned.removed.join("\n")
        ));
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(pruned.reclaimed)
    ));
    print(&out);
    Ok(())
}
