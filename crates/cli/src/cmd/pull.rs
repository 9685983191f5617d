//! `stencil pull [--platform P] [-q] REF`: docker's pull, with its output.
//!
//! Without a terminal (or with one; bars come later) progress is docker's plain form: one
//! line per layer step (`Pulling fs layer`, `Download complete`, `Pull complete`,
//! `Already exists`), then `Digest:`, `Status:` and the canonical name. `-q` prints the
//! name only.

use std::io::Write;

use anyhow::{Context, Result};
use stencil_reference::{Digest, Reference};
use stencil_registry::{Platform, ProgressEvent};

use crate::engine::{Engine, PullEvent, PullOptions, PullStatus};

/// Arguments of `stencil pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Pick this platform from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Print only the image name when done.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image to pull, e.g. `busybox`, `localhost:5000/app:1.0`.
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
}

/// Runs `stencil pull`.
pub async fn run(engine: &Engine, args: &PullArgs) -> Result<()> {
    let reference = Reference::parse(&args.image)?;
    let platform = match &args.platform {
        Some(text) => Some(
            text.parse::<Platform>()
                .with_context(|| format!("invalid --platform {text:?}"))?,
        ),
        None => None,
    };
    let quiet = args.quiet;
    if !quiet {
        let what = match (reference.tag(), reference.digest()) {
            (_, Some(digest)) => digest.to_string(),
            (Some(tag), None) => tag.to_string(),
            (None, None) => "latest".to_owned(),
        };
        println!("{what}: Pulling from {}", reference.path());
    }
    let show = move |event: PullEvent| {
        if !quiet && let Some(line) = progress_line(&event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    };
    let report = engine
        .pull(&reference, &PullOptions { platform }, &show)
        .await?;
    if quiet {
        println!("{}", reference.canonical());
        return Ok(());
    }
    println!("Digest: {}", report.digest);
    let status = match report.status {
        PullStatus::Downloaded => "Downloaded newer image for",
        PullStatus::UpToDate => "Image is up to date for",
    };
    println!("Status: {status} {}", reference.familiar());
    println!("{}", reference.canonical());
    Ok(())
}

/// docker's short layer id: the first 12 hex digits of the blob digest.
pub fn short_id(digest: &Digest) -> &str {
    &digest.hex()[..12.min(digest.hex().len())]
}

fn progress_line(event: &PullEvent) -> Option<String> {
    let (digest, text) = match event {
        PullEvent::Layer(ProgressEvent::Started { digest, offset, .. }) if *offset > 0 => {
            (digest, "Resuming download")
        }
        PullEvent::Layer(ProgressEvent::Started { digest, .. }) => (digest, "Pulling fs layer"),
        PullEvent::Layer(ProgressEvent::Resuming { digest, .. }) => (digest, "Retrying"),
        PullEvent::Layer(ProgressEvent::Done { digest }) => (digest, "Download complete"),
        PullEvent::Extracted {
            digest,
            existed: true,
        } => (digest, "Already exists"),
        PullEvent::Extracted {
            digest,
            existed: false,
        } => (digest, "Pull complete"),
        _ => return None,
    };
    Some(format!("{}: {text}", short_id(digest)))
}
