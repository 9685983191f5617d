//! `stencil manifest inspect [--raw] REF`: the manifest or index a registry serves for a
//! reference, as `docker manifest inspect` prints it, without pulling anything.
//!
//! The bytes are checked against their digest by the registry client (a digest
//! reference must match; a tag's manifest is hashed as served). Without `--raw` the JSON
//! is indented, keeping its key order; `--raw` prints the exact bytes, whose sha256 is
//! the manifest digest.

use anyhow::{Context, Result};
use stencil_reference::Reference;

use crate::engine::Engine;

/// `stencil manifest …`.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Show the manifest or index a registry serves for an image.
    Inspect(InspectArgs),
}

/// Arguments of `manifest inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Print the bytes as served (their sha256 is the manifest digest).
    #[arg(long)]
    pub raw: bool,
    /// The image: NAME[:TAG|@DIGEST].
    #[arg(value_name = "REF")]
    pub reference: String,
}

/// Runs `stencil manifest inspect`, returning the text to print.
pub async fn inspect(engine: &Engine, args: &InspectArgs) -> Result<Vec<u8>> {
    let reference = Reference::parse(&args.reference)?;
    let resolved = engine
        .registry_client()?
        .resolve(&reference)
        .await
        .with_context(|| format!("cannot inspect {}", reference.familiar()))?;
    if args.raw {
        return Ok(resolved.bytes.to_vec());
    }
    let value: serde_json::Value = serde_json::from_slice(&resolved.bytes)
        .with_context(|| format!("the manifest of {} is not JSON", reference.familiar()))?;
    let mut text = serde_json::to_vec_pretty(&value)?;
    text.push(b'\n');
    Ok(text)
}
