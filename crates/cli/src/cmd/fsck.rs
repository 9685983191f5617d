//! `stencil fsck [--repair]`: check the whole store and say what is wrong.

use anyhow::Result;

use crate::engine::Engine;
use crate::render::units::human_size;

/// Arguments of `stencil fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Remove what nothing references and mark broken images.
    #[arg(long)]
    pub repair: bool,
}

/// Runs `stencil fsck`; an unclean store is an error (exit 125) after the report.
pub fn run(engine: &Engine, args: &FsckArgs) -> Result<()> {
    let checked = engine.fsck(args.repair)?;
    let store = &checked.store;
    println!(
        "checked {} blobs ({})",
        store.blobs_checked,
        human_size(store.bytes_checked)
    );
    for problem in &store.problems {
        println!("problem: {problem}");
    }
    for problem in &checked.snapshot_problems {
        println!("problem: {problem}");
    }
    for repair in store.repairs.iter().chain(&checked.snapshot_repairs) {
        println!("repaired: {repair}");
    }
    if !store.unreferenced_blobs.is_empty() {
        println!(
            "{} unreferenced blobs (reclaimable with `stencil fsck --repair`)",
            store.unreferenced_blobs.len()
        );
    }
    if !checked.unreferenced_snapshots.is_empty() {
        println!(
            "{} unreferenced snapshots (reclaimable with `stencil fsck --repair`)",
            checked.unreferenced_snapshots.len()
        );
    }
    let problems = store.problems.len() + checked.snapshot_problems.len();
    if problems == 0 {
        println!("store is consistent");
        return Ok(());
    }
    if args.repair {
        let again = engine.fsck(false)?;
        if again.is_clean() {
            println!("store is consistent after repair");
            return Ok(());
        }
    }
    anyhow::bail!("{problems} problems found in {}", engine.root().display())
}
