//! `pull -a` and `push -a`: every tag of one repository, one after the other.
//!
//! `pull -a NAME` asks the registry for the repository's tags and pulls each; `push -a
//! NAME` pushes each local tag of the repository. Each tag prints what a single `pull` or
//! `push` prints. As with docker, NAME must not carry a tag or digest.
//!
//! ```text
//! $ stencil pull -a localhost:5000/app
//! 1.0: Pulling from app
//! …
//! 1.1: Pulling from app
//! …
//! ```

use anyhow::{Context, Result, bail};
use stencil_reference::{Reference, Tag};

use crate::cmd::pull::PullArgs;
use crate::cmd::push::PushArgs;
use crate::engine::Engine;

/// The repository named by `text`, refused when it carries a tag or digest.
fn repository(text: &str, verb: &str) -> Result<Reference> {
    let last = text.rsplit('/').next().unwrap_or(text);
    if last.contains(':') || last.contains('@') {
        bail!("{verb} -a takes a repository without tag or digest: {text:?}");
    }
    Ok(Reference::parse(text)?)
}

/// Runs `stencil pull -a NAME`.
pub async fn pull_all(engine: &Engine, args: &PullArgs) -> Result<()> {
    let repository = repository(&args.image, "pull")?;
    let tags = engine
        .registry_client()?
        .tags(&repository, None)
        .await
        .with_context(|| format!("cannot list the tags of {}", repository.name()))?;
    if tags.is_empty() {
        bail!(
            "{} has no tags to pull (push one first, or check the name)",
            repository.name()
        );
    }
    for tag in tags {
        let tag = Tag::parse(&tag).with_context(|| {
            format!(
                "the registry lists an invalid tag {tag:?} for {}",
                repository.name()
            )
        })?;
        let one = PullArgs {
            platform: args.platform.clone(),
            quiet: args.quiet,
            all_tags: false,
            image: repository.with_tag(tag).canonical(),
        };
        Box::pin(crate::cmd::pull::run(engine, &one)).await?;
    }
    Ok(())
}

/// Runs `stencil push -a NAME`.
pub async fn push_all(engine: &Engine, args: &PushArgs) -> Result<()> {
    let repository = repository(&args.image, "push")?;
    let wanted = repository.name();
    let local: Vec<Reference> = engine
        .store()
        .tags()?
        .into_iter()
        .filter_map(|(name, _)| Reference::parse(&name).ok())
        .filter(|reference| reference.name() == wanted)
        .collect();
    if local.is_empty() {
        bail!("no local tag of {wanted} to push (see `stencil images`)");
    }
    for reference in local {
        let one = PushArgs {
            quiet: args.quiet,
            all_tags: false,
            image: reference.canonical(),
        };
        Box::pin(crate::cmd::push::run(engine, &one)).await?;
    }
    Ok(())
}
