//! `stencil inspect [--format] [--type] NAME...` and `stencil history [--no-trunc] [-q] IMAGE`.
//!
//! `inspect` prints docker's JSON array: for an image Id, RepoTags, RepoDigests, Created,
//! Author, Config, Architecture, Os, Variant, Size, RootFS, History; for a container the
//! object of [`crate::cmd::containers::container_inspect_value`]. `--format` applies a
//! template to each object instead.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use stencil_layerstore::ImageRecord;

use crate::cmd::containers::container_inspect_value;
use crate::engine::Engine;
use crate::render::units::{human_duration, human_size};
use crate::render::{Column, Format};

/// Configs larger than this are refused (they are a few kilobytes in practice).
const CONFIG_LIMIT: u64 = 8 << 20;

/// Arguments of `stencil inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A template applied to each object, e.g. `{{.Id}}` or `{{json .Config}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only look for this kind of object.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<ObjectType>,
    /// For containers, add the sizes `SizeRw` and `SizeRootFs`.
    #[arg(short, long)]
    pub size: bool,
    /// Containers, images or volumes: names or IDs.
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// What `inspect --type` restricts the lookup to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectType {
    /// Images only.
    Image,
    /// Containers only.
    Container,
    /// Volumes only.
    Volume,
}

/// The docker-compatible inspect object of an image.
pub fn inspect_value(engine: &Engine, image: &ImageRecord) -> Result<Value> {
    let config = config_json(engine, image)?;
    let (tags, digests) = engine.repo_tags_and_digests(image)?;
    let field = |name: &str| config.get(name).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": config.get("comment").cloned().unwrap_or(json!("")),
        "Created": field("created"),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": field("config"),
        "Architecture": field("architecture"),
        "Os": field("os"),
        "Variant": config.get("variant").cloned().unwrap_or(json!("")),
        "Size": image.unpacked_size(),
        "RootFS": {
            "Type": "layers",
            "Layers": image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "History": field("history"),
        "Descriptor": {
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest_size,
        },
    }))
}

fn config_json(engine: &Engine, image: &ImageRecord) -> Result<Value> {
    let bytes = engine
        .store()
        .read_blob(&image.config_digest, CONFIG_LIMIT)
        .with_context(|| format!("cannot read the config {}", image.config_digest))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("the config {} is not valid JSON", image.config_digest))
}

/// Runs `stencil inspect`. As docker's, a name is looked up among containers first, then
/// images, unless `--type` says which; the objects found are printed even when some names
/// are not, and the command then fails naming those.
pub fn inspect(engine: &Engine, args: &InspectArgs) -> Result<()> {
    inspect_each(&args.names, args.format.as_deref(), |text| {
        Ok(match args.kind {
            Some(ObjectType::Image) => inspect_value(engine, &engine.find_image(text)?)?,
            Some(ObjectType::Container) => {
                let container = engine.container(text)?;
                container_inspect_value(engine, &container, args.size)?
            }
            Some(ObjectType::Volume) => crate::cmd::volumes::inspect_value(&engine.volume(text)?),
            None => match engine.container(text) {
                Ok(container) => container_inspect_value(engine, &container, args.size)?,
                Err(_) => match engine.find_image(text) {
                    Ok(image) => inspect_value(engine, &image)?,
                    Err(error) => match engine.volume(text) {
                        Ok(volume) => crate::cmd::volumes::inspect_value(&volume),
                        Err(_) if engine.store().container(text).is_err() => anyhow::bail!(
                            "no such object: {text} (not a container, an image or a volume: see `stencil ps -a`, `stencil images` and `stencil volume ls`)"
                        ),
                        Err(_) => return Err(error),
                    },
                },
            },
        })
    })
}

/// Inspects each of `names` with `inspect`, prints the objects found (docker's JSON array,
/// or `format` applied to each), then fails with the names that were not found (each
/// error is printed; the last is returned).
pub fn inspect_each(
    names: &[String],
    format: Option<&str>,
    inspect: impl Fn(&str) -> Result<Value>,
) -> Result<()> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match inspect(name) {
            Ok(value) => values.push(value),
            Err(error) => errors.push(error),
        }
    }
    // A bad template fails before anything is printed.
    let text = render_inspect(&values, format)?;
    if !values.is_empty() || format.is_none() {
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
    match errors.pop() {
        None => Ok(()),
        Some(last) => {
            for error in &errors {
                eprintln!("Error: {}", crate::render::error::message(error));
            }
            Err(last)
        }
    }
}

/// Inspect objects as docker prints them: a pretty JSON array, or `--format` applied to
/// each.
pub fn render_inspect(values: &[Value], format: Option<&str>) -> Result<String> {
    match format {
        None => Ok(serde_json::to_string_pretty(values)? + "\n"),
        Some(format) => {
            let format = match Format::parse(format)? {
                // `--format json` prints the objects compactly, one per line.
                Format::Table => Format::Json,
                other => other,
            };
            Ok(format.render(&[], values)?)
        }
    }
}

/// Arguments of `stencil history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Do not truncate the commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only print image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// `table`, `json` or a template.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// The image: name or ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

const HISTORY_COLUMNS: [Column; 5] = [
    Column {
        field: "ID",
        header: "IMAGE",
    },
    Column {
        field: "CreatedSince",
        header: "CREATED",
    },
    Column {
        field: "CreatedBy",
        header: "CREATED BY",
    },
    Column {
        field: "Size",
        header: "SIZE",
    },
    Column {
        field: "Comment",
        header: "COMMENT",
    },
];

/// Runs `stencil history`: the config's history, newest first, with each non-empty step
/// matched to its layer.
pub fn history(engine: &Engine, args: &HistoryArgs) -> Result<String> {
    let image = engine.find_image(&args.image)?;
    let config = config_json(engine, &image)?;
    let steps = config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = Utc::now();
    let mut layers = image.layers.iter();
    let mut rows = Vec::new();
    for step in &steps {
        let empty = step
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers
                .next()
                .map_or(0, |l| l.uncompressed_size.unwrap_or(l.compressed_size))
        };
        let text = |key: &str| {
            step.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let created = text("created");
        let since = DateTime::parse_from_rfc3339(&created).map_or_else(
            |_| "N/A".to_owned(),
            |at| {
                let seconds = (now - at.with_timezone(&Utc)).num_seconds().max(0) as u64;
                format!("{} ago", human_duration(seconds))
            },
        );
        let mut created_by = text("created_by").replace('\t', " ");
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(json!({
            "ID": "<missing>",
            "CreatedSince": since,
            "CreatedAt": created,
            "CreatedBy": created_by,
            "Size": human_size(size),
            "Comment": text("comment"),
        }));
    }
    rows.reverse();
    // The newest step carries the image ID, as docker shows it; older ones are <missing>.
    let id = if args.no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.hex()[..12].to_owned()
    };
    match rows.first_mut() {
        Some(first) => first["ID"] = json!(id),
        None => rows.push(json!({
            "ID": id, "CreatedSince": "N/A", "CreatedAt": "", "CreatedBy": "",
            "Size": human_size(image.unpacked_size()), "Comment": "",
        })),
    }
    if args.quiet {
        return Ok(rows
            .iter()
            .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or("")))
            .collect());
    }
    let format = match &args.format {
        Some(text) => Format::parse(text)?,
        None => Format::Table,
    };
    Ok(format.render(&HISTORY_COLUMNS, &rows)?)
}
