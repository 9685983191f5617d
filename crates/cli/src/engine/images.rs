//! Local images: finding one by name or ID, removing one, and the rows of `stencil images`
//! (one per tag, and one per untagged image, as docker lists them).

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stencil_layerstore::ImageRecord;
use stencil_reference::Reference;

use stencil_cow_fs::Snapshotter;

use super::Engine;
use crate::render::units::{human_duration, human_size};

/// One line of `stencil images`, with docker's template field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRow {
    /// Familiar repository name, or `<none>`.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// The digest `--digests` shows: the manifest's (its index's, when pulled through
    /// one), or `<none>` for an image made here
    /// that was never pushed (its layers are compressed, and its digest set, at the
    /// first push), as docker shows it for a local build.
    pub digest: String,
    /// The manifest digest (`sha256:…`).
    #[serde(skip)]
    pub manifest_digest: String,
    /// The image ID: the config digest (shortened to 12 hex digits unless `--no-trunc`).
    #[serde(rename = "ID")]
    pub id: String,
    /// How long ago the image was created, e.g. `2 weeks ago`.
    pub created_since: String,
    /// The creation time as the config states it.
    pub created_at: String,
    /// The image size in human units.
    pub size: String,
    /// Whether no tag names the image.
    #[serde(skip)]
    pub dangling: bool,
    /// The parsed tag, for filters.
    #[serde(skip)]
    pub reference: Option<Reference>,
    /// Seconds since the epoch of `created_at`, for `before`/`since` ordering.
    #[serde(skip)]
    pub created_unix: i64,
}

/// Lists the store's images, newest first, one row per tag.
pub fn image_rows(engine: &Engine, no_trunc: bool) -> Result<Vec<ImageRow>> {
    let now = Utc::now();
    let tags = engine.store().tags()?;
    let mut rows = Vec::new();
    for image in engine.store().images()? {
        let names: Vec<Reference> = tags
            .iter()
            .filter(|(_, digest)| *digest == image.manifest_digest)
            .filter_map(|(name, _)| Reference::parse(name).ok())
            .collect();
        let pushable = !engine.is_local_only(&image);
        if names.is_empty() {
            rows.push(row(&image, None, now, no_trunc, pushable));
        }
        for name in names {
            rows.push(row(&image, Some(name), now, no_trunc, pushable));
        }
    }
    rows.sort_by(|a, b| {
        b.created_unix
            .cmp(&a.created_unix)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

fn row(
    image: &ImageRecord,
    name: Option<Reference>,
    now: DateTime<Utc>,
    no_trunc: bool,
    pushable: bool,
) -> ImageRow {
    let created = image
        .created
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    let created_since = match created {
        Some(at) => {
            let seconds = (now - at).num_seconds().max(0) as u64;
            format!("{} ago", human_duration(seconds))
        }
        None => "N/A".to_owned(),
    };
    let id = if no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.hex()[..12].to_owned()
    };
    ImageRow {
        repository: name
            .as_ref()
            .map_or_else(|| "<none>".to_owned(), Reference::familiar_name),
        tag: name
            .as_ref()
            .and_then(|n| n.tag().map(|t| t.as_str().to_owned()))
            .unwrap_or_else(|| "<none>".to_owned()),
        // The digest a registry knows the image by: its index's, for a multi-platform
        // pull (as RepoDigests shows it).
        digest: if pushable {
            image
                .index_digest
                .as_ref()
                .unwrap_or(&image.manifest_digest)
                .to_string()
        } else {
            "<none>".to_owned()
        },
        manifest_digest: image.manifest_digest.to_string(),
        id,
        created_since,
        created_at: created.map_or_else(String::new, |c| c.to_rfc3339()),
        size: human_size(image.unpacked_size()),
        dangling: name.is_none(),
        created_unix: created.map_or(0, |c| c.timestamp()),
        reference: name,
    }
}

impl Engine {
    /// Finds a local image the way docker does: by reference (`busybox`, `name@digest`),
    /// else by a unique prefix of its ID (the config digest, with or without `sha256:`).
    pub fn find_image(&self, text: &str) -> Result<ImageRecord> {
        let parse_error = match Reference::parse(text) {
            Ok(reference) => match self.store.resolve(&reference) {
                Ok(image) => return Ok(image),
                Err(error) if error.kind() == stencil_layerstore::ErrorKind::ImageNotFound => None,
                Err(error) => return Err(error.into()),
            },
            Err(error) => Some(error),
        };
        let prefix = text.strip_prefix("sha256:").unwrap_or(text);
        let is_id_prefix = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id_prefix {
            let matches: Vec<ImageRecord> = self
                .store
                .images()?
                .into_iter()
                .filter(|image| {
                    image.config_digest.hex().starts_with(prefix)
                        || image.manifest_digest.hex().starts_with(prefix)
                })
                .collect();
            match matches.as_slice() {
                [] => {}
                [only] => return Ok(only.clone()),
                _ => anyhow::bail!("image ID prefix {text:?} is ambiguous: give more digits"),
            }
        }
        match parse_error {
            Some(error) if !is_id_prefix => Err(error.into()),
            _ => anyhow::bail!("no such image: {text} (see `stencil images`)"),
        }
    }

    /// The familiar tags and digest references of an image, as docker's RepoTags and
    /// RepoDigests.
    pub fn repo_tags_and_digests(&self, image: &ImageRecord) -> Result<(Vec<String>, Vec<String>)> {
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        // A digest no registry can have yet is not shown (see `is_local_only`).
        let pinnable = !self.is_local_only(image);
        let top = image
            .index_digest
            .as_ref()
            .unwrap_or(&image.manifest_digest);
        for name in self.store.tags_of(&image.manifest_digest)? {
            if let Ok(reference) = Reference::parse(&name) {
                tags.push(reference.familiar());
                let pinned = format!("{}@{top}", reference.familiar_name());
                if pinnable && !digests.contains(&pinned) {
                    digests.push(pinned);
                }
            }
        }
        Ok((tags, digests))
    }
}

/// What `rmi` did to one argument, in docker's words.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// `Untagged: NAME` lines.
    pub untagged: Vec<String>,
    /// `Deleted: DIGEST` lines (the image and the layers whose snapshots went).
    pub deleted: Vec<String>,
}

impl Engine {
    /// Removes an image by name or ID: untags it, and deletes it with its no longer shared
    /// blobs and snapshots when no tag is left. By ID, every tag goes (docker refuses that
    /// for an image with several tags unless `force`).
    pub fn remove_image(&self, text: &str, force: bool) -> Result<Removed> {
        let image = self.find_image(text)?;
        let by_name = Reference::parse(text)
            .ok()
            .filter(|r| self.store.resolve(r).is_ok_and(|i| i.id == image.id));
        let tags = self.store.tags_of(&image.manifest_digest)?;
        let reference = match by_name {
            Some(reference) => reference,
            None => {
                if tags.len() > 1 && !force {
                    anyhow::bail!(
                        "image {text} is referenced by {} tags ({}): remove them by name, or use -f",
                        tags.len(),
                        tags.join(", ")
                    );
                }
                // By digest, the store removes every tag and the image in one transaction.
                let name = tags.first().map_or("untagged", String::as_str);
                Reference::parse(name)?.with_digest(image.manifest_digest.clone())
            }
        };
        let removal = match self.store.remove_image(&reference) {
            // docker's `rmi -f` of an image a container uses only takes its names away:
            // the image stays (dangling) for as long as the container needs it.
            Err(error) if force && error.kind() == stencil_layerstore::ErrorKind::ImageInUse => {
                let mut untagged = Vec::new();
                for name in self.store.tags_of(&image.manifest_digest)? {
                    let tag = Reference::parse(&name)?;
                    if self.store.untag(&tag)? {
                        untagged.push(tag.familiar());
                    }
                }
                return Ok(Removed {
                    untagged,
                    deleted: Vec::new(),
                });
            }
            other => other?,
        };
        let mut removed = Removed {
            untagged: removal
                .untagged
                .iter()
                .map(|name| Reference::parse(name).map_or_else(|_| name.clone(), |r| r.familiar()))
                .collect(),
            deleted: Vec::new(),
        };
        if removal.deleted.is_some() {
            // docker names the image by its ID, not by its manifest.
            removed.deleted.push(image.config_digest.to_string());
        }
        // Children before parents: the snapshotter refuses to remove a parent first.
        let released: Vec<&str> = removal
            .snapshots_released
            .iter()
            .map(|s| s.chain_id.as_str())
            .collect();
        for layer in image.layers.iter().rev() {
            if released.contains(&layer.chain_id.as_str()) {
                match self.snapshots.remove(layer.chain_id.as_str()) {
                    Ok(()) => removed.deleted.push(layer.chain_id.to_string()),
                    Err(error) => tracing::warn!(chain = %layer.chain_id, "snapshot kept: {error}"),
                }
            }
        }
        Ok(removed)
    }
}
