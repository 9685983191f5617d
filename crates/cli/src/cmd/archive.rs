//! `stencil save [--format F] [-o FILE|DIR] IMAGE...` and `stencil load [-i FILE|DIR] [-q]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use stencil_layerstore::archive::SaveFormat;

use crate::engine::Engine;

/// Arguments of `stencil save`.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output (a new directory for oci-dir).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (`docker save`'s, which is an oci-archive too), oci-archive (a tar
    /// of an OCI image layout) or oci-dir (an OCI image layout directory), as podman's.
    #[arg(long, value_name = "FORMAT", default_value = "docker-archive", value_parser = parse_format)]
    pub format: SaveFormat,
    /// Images to save: names or IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

fn parse_format(text: &str) -> Result<SaveFormat, String> {
    match text {
        "docker-archive" => Ok(SaveFormat::DockerArchive),
        "oci-archive" => Ok(SaveFormat::OciArchive),
        "oci-dir" => Ok(SaveFormat::OciLayout),
        _ => Err(format!(
            "unknown format {text:?}: use docker-archive, oci-archive or oci-dir"
        )),
    }
}

/// Runs `stencil save`: the file appears only complete (written beside it, then renamed).
pub fn save(engine: &Engine, args: &SaveArgs) -> Result<()> {
    if args.format == SaveFormat::OciLayout {
        let Some(path) = &args.output else {
            anyhow::bail!("--format oci-dir writes a directory: give it with -o DIR");
        };
        return engine.save_layout(&args.images, path);
    }
    match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut file = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file.as_file_mut());
                engine.save(&args.images, args.format, &mut out)?;
                out.flush()
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            file.persist(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(())
        }
        None => {
            let stdout = std::io::stdout();
            anyhow::ensure!(
                !std::io::IsTerminal::is_terminal(&stdout),
                "refusing to write an archive to a terminal: use -o FILE or a redirection"
            );
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            engine.save(&args.images, args.format, &mut out)?;
            out.flush().context("cannot write to standard output")
        }
    }
}

/// Arguments of `stencil load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Show no progress (the `Loaded image:` lines are printed all the same, as docker
    /// prints them, for scripts that read them).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `stencil load`.
pub fn load(engine: &Engine, args: &LoadArgs) -> Result<()> {
    // Archives are read twice (index, then blobs), so standard input is spooled to a file.
    let spooled;
    let (path, shown) = match &args.input {
        Some(path) => (path.clone(), path.display().to_string()),
        None => {
            let mut file = tempfile::NamedTempFile::new_in(engine.root())
                .context("cannot spool standard input")?;
            std::io::copy(&mut std::io::stdin().lock(), file.as_file_mut())
                .context("cannot read standard input")?;
            spooled = file.into_temp_path();
            (spooled.to_path_buf(), "standard input".to_owned())
        }
    };
    let loaded = engine.load(&path, &shown)?;
    // `load` draws no progress, so -q changes nothing: docker prints these lines with -q
    // too, and scripts read them (`load -q -i x.tar | sed 's/^Loaded image: //'`).
    let _ = args.quiet;
    for item in loaded {
        if item.tags.is_empty() {
            println!("Loaded image ID: {}", item.image.config_digest);
        }
        for tag in item.tags {
            let shown = stencil_reference::Reference::parse(&tag).map_or(tag, |r| r.familiar());
            println!("Loaded image: {shown}");
        }
    }
    Ok(())
}
