//! `stencil import [-c CHANGE]… [-m MSG] FILE|- [REF]`: docker's import of a rootfs tarball.
//!
//! Prints the new image's ID (`sha256:…`) as docker does, whether or not it is tagged.

use std::path::Path;

use anyhow::{Context, Result};
use stencil_reference::Reference;

use crate::engine::{Engine, ImportOptions};

/// Arguments of `stencil import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); may be repeated.
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// The history comment of the imported layer.
    #[arg(short, long, value_name = "MESSAGE")]
    pub message: Option<String>,
    /// The tarball (plain, gzip, zstd, bzip2 or xz), or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// The name to tag the image with.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// Runs `stencil import`.
pub fn run(engine: &Engine, args: &ImportArgs) -> Result<()> {
    let reference = match &args.reference {
        Some(text) => Some(Reference::parse(text)?),
        None => None,
    };
    let mut options = ImportOptions {
        changes: args.changes.clone(),
        message: args.message.clone(),
        reference,
        source: String::new(),
    };
    let image = if args.file == "-" {
        options.source = "standard input".to_owned();
        let stdin = std::io::stdin();
        anyhow::ensure!(
            !std::io::IsTerminal::is_terminal(&stdin),
            "refusing to read a tarball from a terminal: give FILE or pipe one into `stencil import -`"
        );
        engine.import(&mut stdin.lock(), &options)?
    } else {
        let path = Path::new(&args.file);
        options.source = path.display().to_string();
        if path.is_dir() {
            anyhow::bail!(
                "{} is a directory: import takes a tarball of a root filesystem (for a directory: tar -C {} -cf - . | stencil import - NAME)",
                path.display(),
                path.display()
            );
        }
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open {} (give a tarball or -)", path.display()))?;
        engine.import(&mut file, &options)?
    };
    println!("{}", image.config_digest);
    Ok(())
}
