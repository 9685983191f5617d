//! `stencil push [-q] NAME[:TAG]`: docker's push and its output.

use std::io::Write;

use anyhow::Result;
use stencil_reference::Reference;
use stencil_registry::ProgressEvent;

use crate::cmd::pull::short_id;
use crate::engine::Engine;

/// Arguments of `stencil push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Print only the pushed digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image to push, e.g. `localhost:5000/app:1.0`.
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
}

/// Runs `stencil push`.
pub async fn run(engine: &Engine, args: &PushArgs) -> Result<()> {
    let reference = Reference::parse(&args.image)?;
    let quiet = args.quiet;
    if !quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let show = move |event: ProgressEvent| {
        let line = match &event {
            ProgressEvent::Started { digest, .. } => format!("{}: Preparing", short_id(digest)),
            ProgressEvent::Done { digest } => format!("{}: Pushed", short_id(digest)),
            ProgressEvent::AlreadyPresent { digest } => {
                format!("{}: Layer already exists", short_id(digest))
            }
            ProgressEvent::Mounted { digest, from } => {
                format!("{}: Mounted from {from}", short_id(digest))
            }
            _ => return,
        };
        if !quiet {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    };
    let report = engine.push(&reference, &show).await?;
    if quiet {
        println!("{}", report.digest);
    } else {
        let tag = reference.tag().map_or("latest", |t| t.as_str());
        println!("{tag}: digest: {} size: {}", report.digest, report.size);
    }
    Ok(())
}
