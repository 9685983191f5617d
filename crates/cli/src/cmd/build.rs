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

    // A tar of the context on standard input is unpacked for as long as the build runs.
    let mut stdin_context: Option<tempfile::TempDir> = None;
    let (context, dockerfile_name, dockerfile) = if args.context == "-" {
        let stdin = std::io::stdin();
        if std::io::IsTerminal::is_terminal(&stdin) {
            bail!(
                "refusing to read a build context from a terminal: pipe a Dockerfile or a tar of the context into `stencil build -`"
            );
        }
        let mut bytes = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read the build context from standard input")?;
        match stdin_tar_context(engine, &bytes)? {
            Some(dir) => {
                let context = dir.path().to_path_buf();
                stdin_context = Some(dir);
                let wanted = args.file.clone().unwrap_or_else(|| "Dockerfile".into());
                if args.file.as_ref().is_none_or(|f| f.is_relative())
                    && !context.join(&wanted).is_file()
                {
                    bail!(
                        "the build context on standard input has no {} (give its path in the tar with -f)",
                        wanted.display()
                    );
                }
                context_dockerfile(context, args)?
            }
            None => {
                if args.file.is_some() {
                    bail!(
                        "with a Dockerfile on standard input there is no context for -f to name: drop -f, or pipe a tar of the context"
                    );
                }
                let text = String::from_utf8(bytes).map_err(|_| {
                    anyhow::anyhow!(
                        "standard input is neither a Dockerfile (UTF-8 text) nor a tar archive of a build context (plain, gzip, zstd, bzip2 or xz)"
                    )
                })?;
                (None, "Dockerfile".to_owned(), text)
            }
        }
    } else {
        let context = PathBuf::from(&args.context);
        if !context.is_dir() {
            bail!(
                "unable to prepare context: {} is not a directory (give the build context directory, or - for a Dockerfile or a context tar on standard input)",
                context.display()
            );
        }
        context_dockerfile(context, args)?
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
    let built = build(engine, &options, &mut out);
    drop(stdin_context);
    let built = built?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.image.config_digest.to_string())
            .with_context(|| format!("cannot write the image ID to {}", path.display()))?;
    }
    Ok(())
}

/// The Dockerfile of the build context `context`: `-f PATH` (`-f -`: standard input),
/// else `context/Dockerfile`. Returns the context, the name for messages and the text.
fn context_dockerfile(
    context: PathBuf,
    args: &BuildArgs,
) -> Result<(Option<PathBuf>, String, String)> {
    let (path, name) = match &args.file {
        Some(path) if path.as_os_str() == "-" => (None, "Dockerfile".to_owned()),
        // A relative -f names a file of the context, as with docker.
        Some(path) if path.is_relative() && !path.exists() => {
            (Some(context.join(path)), path.display().to_string())
        }
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
    Ok((Some(context), name, text))
}

/// Unpacks `bytes` into a new temporary directory under the store root when they are a
/// tar (plain, gzip, zstd, bzip2 or xz), as docker takes a context on standard input; `None` when
/// they are not.
fn stdin_tar_context(engine: &Engine, bytes: &[u8]) -> Result<Option<tempfile::TempDir>> {
    let (kind, peeked) = stencil_cow_fs::compression::detect_input(bytes)
        .context("cannot read the build context from standard input")?;
    let mut plain = stencil_cow_fs::compression::decompress(kind, peeked)
        .context("cannot read the build context from standard input")?;
    let mut first = vec![0u8; 512];
    let mut filled = 0;
    while filled < first.len() {
        match plain.read(&mut first[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) => {
                return Err(error).context("the build context on standard input is corrupt");
            }
        }
    }
    if filled < first.len() || !crate::engine::is_tar_header(&first) {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix(".build-context-")
        .tempdir_in(engine.root())
        .with_context(|| format!("cannot create a directory in {}", engine.root().display()))?;
    let mut archive = tar::Archive::new(Read::chain(&first[..], plain));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive
        .unpack(dir.path())
        .context("cannot unpack the build context tar from standard input")?;
    Ok(Some(dir))
}
