//! `stencil image mount IMAGE` and `stencil image unmount IMAGE`.

use anyhow::Result;

use crate::engine::Engine;

/// Arguments of `stencil image mount` and `unmount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The image: name or ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// Runs `stencil image mount`: prints the read-only root filesystem's path.
pub fn mount(engine: &Engine, args: &MountArgs) -> Result<()> {
    let path = engine.mount_image(&args.image)?;
    println!("{}", path.display());
    Ok(())
}

/// Runs `stencil image unmount`.
pub fn unmount(engine: &Engine, args: &MountArgs) -> Result<()> {
    let path = engine.unmount_image(&args.image)?;
    println!("{}", path.display());
    Ok(())
}
