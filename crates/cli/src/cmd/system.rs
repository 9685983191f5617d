//! `stencil system df [-v]` and `stencil image prune [-a] [-f]`: where the space goes and
//! how to get it back, with docker's output.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cmd::images::{CREATED, IMAGE_ID, REPOSITORY, SIZE, TAG};
use crate::engine::{DiskUsage, Engine, image_rows};
use crate::render::table::render_table;
use crate::render::units::human_size;
use crate::render::{Column, Format};

/// `stencil system …`.
#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Show the space images, containers and volumes take.
    Df(DfArgs),
}

/// Arguments of `stencil system df`.
#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Show each image, with its shared and unique sizes.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Arguments of `stencil image prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs `stencil system …`.
pub fn run(engine: &Engine, command: &SystemCommand) -> Result<String> {
    match command {
        SystemCommand::Df(args) => df(engine, args),
    }
}

/// Runs `stencil system df`, returning the text to print.
pub fn df(engine: &Engine, args: &DfArgs) -> Result<String> {
    let usage = engine.disk_usage()?;
    if args.verbose {
        verbose(engine, &usage)
    } else {
        Ok(summary(&usage))
    }
}

fn reclaimable(bytes: u64, total: u64) -> String {
    if total == 0 {
        return human_size(bytes);
    }
    // Truncated like docker's integer percentage.
    format!("{} ({}%)", human_size(bytes), bytes * 100 / total)
}

fn summary(usage: &DiskUsage) -> String {
    let active = usage.images.iter().filter(|i| i.containers > 0).count();
    let rows = vec![
        vec![
            "Images".to_owned(),
            usage.images.len().to_string(),
            active.to_string(),
            human_size(usage.total_size),
            reclaimable(usage.reclaimable, usage.total_size),
        ],
        zero_row("Containers"),
        zero_row("Local Volumes"),
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

fn verbose(engine: &Engine, usage: &DiskUsage) -> Result<String> {
    let by_manifest: BTreeMap<String, _> = usage
        .images
        .iter()
        .map(|u| (u.image.manifest_digest.to_string(), u))
        .collect();
    let mut rows = Vec::new();
    for row in image_rows(engine, false)? {
        let Some(image) = by_manifest.get(&row.digest) else {
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
        &[],
    ));
    out.push_str("\nLocal Volumes space usage:\n\n");
    out.push_str(&render_table::<&str>(
        &["VOLUME NAME", "LINKS", "SIZE"],
        &[],
    ));
    out.push_str("\nBuild cache usage: 0B\n");
    Ok(out)
}

/// Runs `stencil image prune`.
pub fn prune(engine: &Engine, args: &PruneArgs) -> Result<()> {
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
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
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let pruned = engine.prune_images(args.all)?;
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    for removed in &pruned.removed {
        lines.extend(removed.untagged.iter().map(|n| format!("untagged: {n}")));
        lines.extend(removed.deleted.iter().map(|d| format!("deleted: {d}")));
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "Deleted Images:\n{}\n", lines.join("\n"));
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
    fn the_summary_has_dockers_rows_and_percentages() {
        let usage = DiskUsage {
            images: Vec::new(),
            total_size: 2_120_000,
            reclaimable: 1_060_000,
        };
        assert_eq!(
            summary(&usage),
            "TYPE            TOTAL   ACTIVE   SIZE     RECLAIMABLE\n\
             Images          0       0        2.12MB   1.06MB (50%)\n\
             Containers      0       0        0B       0B\n\
             Local Volumes   0       0        0B       0B\n\
             Build Cache     0       0        0B       0B\n"
        );
        assert_eq!(reclaimable(0, 0), "0B");
        assert_eq!(reclaimable(2, 3), "2B (66%)");
    }
}
