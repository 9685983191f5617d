//! `stencil tag SOURCE TARGET` and `stencil rmi [-f] IMAGE...`.

use anyhow::{Context, Result};
use stencil_reference::Reference;

use crate::engine::Engine;

/// Arguments of `stencil tag`.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// An existing image: name, name@digest or ID.
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// The new name.
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// Runs `stencil tag`.
pub fn tag(engine: &Engine, args: &TagArgs) -> Result<()> {
    let image = engine.find_image(&args.source)?;
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        anyhow::bail!(
            "cannot tag with a digest reference {:?}: give a tag",
            args.target
        );
    }
    engine
        .store()
        .tag(&target, &image.manifest_digest)
        .with_context(|| format!("cannot tag {} as {}", args.source, target.familiar()))
}

/// Arguments of `stencil rmi`.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Remove the image even when it has several tags (by ID).
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove: names or IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Runs `stencil rmi`: every argument is tried; the first error is returned after the
/// others were handled, as docker does.
pub fn rmi(engine: &Engine, args: &RmiArgs) -> Result<()> {
    let mut failures = Vec::new();
    for image in &args.images {
        match engine.remove_image(image, args.force) {
            Ok(removed) => {
                for name in removed.untagged {
                    println!("Untagged: {name}");
                }
                for digest in removed.deleted {
                    println!("Deleted: {digest}");
                }
            }
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    match failures.len() {
        0 => Ok(()),
        _ => anyhow::bail!(failures.join("\n")),
    }
}
