//! Rows of `stencil images`: one per tag, and one per untagged image, as docker lists them.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stencil_layerstore::ImageRecord;
use stencil_reference::Reference;

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
    /// The manifest digest (`sha256:…`), shown with `--digests`.
    pub digest: String,
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
        if names.is_empty() {
            rows.push(row(&image, None, now, no_trunc));
        }
        for name in names {
            rows.push(row(&image, Some(name), now, no_trunc));
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
        digest: image.manifest_digest.to_string(),
        id,
        created_since,
        created_at: created.map_or_else(String::new, |c| c.to_rfc3339()),
        size: human_size(image.size),
        dangling: name.is_none(),
        created_unix: created.map_or(0, |c| c.timestamp()),
        reference: name,
    }
}
