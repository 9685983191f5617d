//! `stencil build [OPTIONS] CONTEXT|-`: docker's classic `build` command.
//!
//! Progress (`Step N/M : …`, ` ---> Using cache`, `Successfully built ID`) goes to
//! standard output as docker prints it; with `-q` only the image ID (`sha256:…`).
//! `SOURCE_DATE_EPOCH` in the environment fixes times as `--timestamp` does.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use stencil_reference::Reference;

use crate::build::{BuildOptions, build};
use crate::engine::Engine;

/// Arguments of `stencil build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); may be repeated.
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from standard input).
    #[arg(short, long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Build up to this stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A label for the image, `KEY=VALUE`; may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// The target platform (only this machine's is supported).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// The network of RUN steps: `none` (default) or `host`.
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub network: String,
    /// Fixed creation time and file times for reproducible images, in seconds since the
    /// epoch (default: `$SOURCE_DATE_EPOCH` when set).
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<i64>,
    /// The build context directory, or `-` for a Dockerfile on standard input and no
    /// context.
    #[arg(value_name = "CONTEXT|-")]
    pub context: String,
}

/// Runs `stencil build`.
pub fn run(engine: &Engine, args: &BuildArgs) -> Result<()> {
    let tags = args
        .tags
        .iter()
        .map(|text| {
            let reference = Reference::parse(text)
                .with_context(|| format!("invalid tag {text:?} for -t: give NAME[:TAG]"))?;
            if reference.digest().is_some() {
                bail!("invalid tag {text:?} for -t: a digest cannot be chosen, give NAME[:TAG]");
            }
            Ok(reference)
        })
        .collect::<Result<Vec<_>>>()?;
    let network_host = match args.network.as_str() {
        "none" | "default" => false,
        "host" => true,
        other => bail!("--network {other}: stencil build supports none (the default) and host"),
    };
    let build_args = args
        .build_args
        .iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (item.clone(), std::env::var(item).ok()),
        })
        .collect();
    let labels = args
        .labels
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => bail!("invalid --label {item:?}: give KEY=VALUE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let timestamp = match args.timestamp {
        Some(seconds) => Some(seconds),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) if !text.is_empty() => Some(text.trim().parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970")
            })?),
            _ => None,
        },
    };

    let (context, dockerfile_name, dockerfile) = if args.context == "-" {
        if args.file.is_some() {
            bail!("with - as the context the Dockerfile comes from standard input: drop -f");
        }
        let stdin = std::io::stdin();
        if std::io::IsTerminal::is_terminal(&stdin) {
            bail!("refusing to read a Dockerfile from a terminal: pipe one into `stencil build -`");
        }
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the Dockerfile from standard input")?;
        (None, "Dockerfile".to_owned(), text)
    } else {
        let context = PathBuf::from(&args.context);
        if !context.is_dir() {
            bail!(
                "unable to prepare context: {} is not a directory (give the build context directory, or - for a Dockerfile on standard input)",
                context.display()
            );
        }
        let (path, name) = match &args.file {
            Some(path) if path.as_os_str() == "-" => (None, "Dockerfile".to_owned()),
            Some(path) => (Some(path.clone()), path.display().to_string()),
            None => (Some(context.join("Dockerfile")), "Dockerfile".to_owned()),
        };
        let text = match path {
            Some(path) => std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read the Dockerfile {} (give one with -f PATH)",
                    path.display()
                )
            })?,
            None => {
                let mut text = String::new();
                std::io::stdin()
                    .lock()
                    .read_to_string(&mut text)
                    .context("cannot read the Dockerfile from standard input")?;
                text
            }
        };
        (Some(context), name, text)
    };
    let options = BuildOptions {
        dockerfile_name,
        dockerfile,
        context,
        tags,
        build_args,
        no_cache: args.no_cache,
        target: args.target.clone(),
        labels,
        quiet: args.quiet,
        platform: args.platform.clone(),
        network_host,
        timestamp,
    };
    let mut out = std::io::stdout();
    let built = build(engine, &options, &mut out)?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.image.config_digest.to_string())
            .with_context(|| format!("cannot write the image ID to {}", path.display()))?;
    }
    Ok(())
}
