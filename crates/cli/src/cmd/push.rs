//! `stencil push [-q] NAME[:TAG]`: docker's push and its output.

use anyhow::Result;
use stencil_reference::Reference;
use stencil_registry::ProgressEvent;

use crate::engine::{Engine, PushProgress};
use crate::render::progress::{ProgressDisplay, Step, short};

/// Arguments of `stencil push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Print only the pushed digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// Push every local tag of the repository.
    #[arg(short, long)]
    pub all_tags: bool,
    /// The image to push, e.g. `localhost:5000/app:1.0`.
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
}

/// Runs `stencil push`.
pub async fn run(engine: &Engine, args: &PushArgs) -> Result<()> {
    if args.all_tags {
        return crate::cmd::all_tags::push_all(engine, args).await;
    }
    let reference = Reference::parse(&args.image)?;
    let quiet = args.quiet;
    if !quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let display = ProgressDisplay::for_stdout(quiet);
    let show = |event: PushProgress| match &event {
        PushProgress::Compressing { layer, done, size } if *done == 0 => {
            display.step(layer, Step::Status("Compressing"))
        }
        PushProgress::Compressing { layer, done, size } => display.step(
            layer,
            Step::Bytes {
                verb: "Compressing",
                done: *done,
                total: *size,
            },
        ),
        PushProgress::Compressed { layer, blob } => display.step(
            layer,
            Step::Finished(&format!("Compressed as {}", short(blob))),
        ),
        PushProgress::Transfer(event) => show_transfer(&display, event),
    };
    let report = engine.push(&reference, &show).await?;
    // Finish the live display before the summary line.
    drop(display);
    if quiet {
        println!("{}", report.digest);
    } else {
        match (reference.tag(), reference.digest()) {
            // Pushed by digest: no tag was set.
            (None, Some(_)) => println!("digest: {} size: {}", report.digest, report.size),
            (tag, _) => {
                let tag = tag.map_or("latest", |t| t.as_str());
                println!("{tag}: digest: {} size: {}", report.digest, report.size);
            }
        }
    }
    Ok(())
}

/// One transfer step as docker shows it.
fn show_transfer(display: &ProgressDisplay, event: &ProgressEvent) {
    match event {
        ProgressEvent::Started { digest, .. } => display.step(digest, Step::Status("Preparing")),
        ProgressEvent::Bytes { digest, done, size } => display.step(
            digest,
            Step::Bytes {
                verb: "Pushing",
                done: *done,
                total: *size,
            },
        ),
        ProgressEvent::Done { digest } => display.step(digest, Step::Finished("Pushed")),
        ProgressEvent::AlreadyPresent { digest } => {
            display.step(digest, Step::Finished("Layer already exists"))
        }
        ProgressEvent::Mounted { digest, from } => {
            display.step(digest, Step::Finished(&format!("Mounted from {from}")))
        }
        _ => {}
    }
}
