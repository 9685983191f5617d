//! `stencil pull [--platform P] [-q] REF`: docker's pull, with its output.
//!
//! On a terminal each layer has a live line with a download gauge; otherwise progress is
//! docker's plain form, one line per layer step (`Pulling fs layer`, `Waiting`,
//! `Verifying Checksum`, `Download complete`, `Extracting`, `Pull complete`,
//! `Already exists`). Then `Digest:`, `Status:` and the canonical name.
//! `-q` prints the name only.

use std::io::Write;

use anyhow::{Context, Result};
use stencil_reference::Reference;
use stencil_registry::{Platform, ProgressEvent};

use crate::engine::{Engine, PullEvent, PullOptions, PullStatus};
use crate::render::progress::{ProgressDisplay, Step};

/// Arguments of `stencil pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Pick this platform from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Print only the image name when done.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull every tag of the repository.
    #[arg(short, long)]
    pub all_tags: bool,
    /// The image to pull, e.g. `busybox`, `localhost:5000/app:1.0`.
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
}

/// Runs `stencil pull`.
pub async fn run(engine: &Engine, args: &PullArgs) -> Result<()> {
    if args.all_tags {
        return crate::cmd::all_tags::pull_all(engine, args).await;
    }
    pull_one(engine, args, false).await
}

/// Pulls `image` for `run` or `create`, saying so on standard error (standard output is
/// the container's), as docker's does.
pub async fn pull_for_run(engine: &Engine, image: &str, platform: Option<String>) -> Result<()> {
    let args = PullArgs {
        platform,
        quiet: false,
        all_tags: false,
        image: image.to_owned(),
    };
    pull_one(engine, &args, true).await
}

async fn pull_one(engine: &Engine, args: &PullArgs, to_stderr: bool) -> Result<()> {
    let say = |text: String| {
        let text = format!("{text}\n");
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
    };
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
        say(format!("{what}: Pulling from {}", reference.path()));
    }
    let display = if to_stderr {
        ProgressDisplay::for_stderr(quiet)
    } else {
        ProgressDisplay::for_stdout(quiet)
    };
    // The config blob moves like a layer; docker shows only layers.
    let shown = std::sync::Mutex::new(Shown::default());
    let show = |event: PullEvent| show_pull_event(&display, &shown, &event);
    let report = engine
        .pull(&reference, &PullOptions { platform }, &show)
        .await?;
    // Finish the live display before the summary lines.
    drop(display);
    if quiet {
        say(reference.canonical());
        return Ok(());
    }
    say(format!("Digest: {}", report.digest));
    let status = match report.status {
        PullStatus::Downloaded => "Downloaded newer image for",
        PullStatus::UpToDate => "Image is up to date for",
    };
    say(format!("Status: {status} {}", reference.familiar()));
    if !to_stderr {
        say(reference.canonical());
    }
    Ok(())
}

/// docker's short layer id: the first 12 hex digits of the blob digest.
pub use crate::render::progress::short as short_id;

/// What the display has said so far, so that each layer's lines come in docker's order.
#[derive(Default)]
struct Shown {
    /// The config blob, which is fetched but not shown as a layer.
    config: Option<stencil_reference::Digest>,
    /// Layers whose `Download complete` was shown.
    downloaded: std::collections::HashSet<stencil_reference::Digest>,
    /// Layers that began extracting (while downloading) before that.
    extract_pending: std::collections::HashSet<stencil_reference::Digest>,
    /// Layers whose `Extracting` was shown.
    extracting: std::collections::HashSet<stencil_reference::Digest>,
}

fn show_pull_event(display: &ProgressDisplay, shown: &std::sync::Mutex<Shown>, event: &PullEvent) {
    let Ok(mut shown) = shown.lock() else {
        return;
    };
    if let PullEvent::Layer(ProgressEvent::Manifest { config: digest, .. }) = event {
        shown.config = Some(digest.clone());
        return;
    }
    // Layers unpack while they download; docker's lines say `Extracting` once, after
    // `Download complete`.
    match event {
        PullEvent::Extracting { digest } => {
            if !shown.downloaded.contains(digest) {
                shown.extract_pending.insert(digest.clone());
            } else if shown.extracting.insert(digest.clone()) {
                display.step(digest, Step::Status("Extracting"));
            }
            return;
        }
        PullEvent::Layer(ProgressEvent::Done { digest })
            if shown.config.as_ref() != Some(digest) =>
        {
            display.step(digest, Step::Status("Download complete"));
            shown.downloaded.insert(digest.clone());
            if shown.extract_pending.remove(digest) && shown.extracting.insert(digest.clone()) {
                display.step(digest, Step::Status("Extracting"));
            }
            return;
        }
        _ => {}
    }
    let config = &shown.config;
    if let PullEvent::Layer(
        ProgressEvent::Started { digest, .. }
        | ProgressEvent::Waiting { digest }
        | ProgressEvent::Bytes { digest, .. }
        | ProgressEvent::Verified { digest }
        | ProgressEvent::Done { digest },
    ) = event
        && config.as_ref() == Some(digest)
    {
        return;
    }
    drop(shown);
    match event {
        PullEvent::Layer(ProgressEvent::Started { digest, offset, .. }) => {
            let text = if *offset > 0 {
                "Resuming download"
            } else {
                "Pulling fs layer"
            };
            display.step(digest, Step::Status(text));
        }
        PullEvent::Layer(ProgressEvent::Bytes { digest, done, size }) => display.step(
            digest,
            Step::Bytes {
                verb: "Downloading",
                done: *done,
                total: *size,
            },
        ),
        PullEvent::Layer(ProgressEvent::Waiting { digest }) => {
            display.step(digest, Step::Status("Waiting"));
        }
        PullEvent::Layer(ProgressEvent::Resuming { digest, .. }) => {
            display.step(digest, Step::Status("Retrying"));
        }
        PullEvent::Layer(ProgressEvent::Verified { digest }) => {
            display.step(digest, Step::Status("Verifying Checksum"));
        }
        PullEvent::Extracted {
            digest,
            existed: true,
        } => display.step(digest, Step::Finished("Already exists")),
        PullEvent::Extracted {
            digest,
            existed: false,
        } => display.step(digest, Step::Finished("Pull complete")),
        _ => {}
    }
}
