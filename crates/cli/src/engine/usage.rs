//! Disk usage and pruning: what `system df` reports and what `image prune`,
//! `container prune` and `system prune` remove.
//!
//! Image sizes are those of their layers as uncompressed tars (as unpacked here; the blob's
//! size for a layer never unpacked), the same measure as the SIZE of `stencil images` and
//! of docker's and podman's. A layer used by several images counts once in the total; per
//! image, its *shared* size is that of the layers another image also uses, its *unique*
//! size the rest, which is what removing it alone gives back. A
//! container's size is that of its writable layer (the files it added or changed), as
//! docker's `ps --size` shows it.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::engine::Engine;
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let usage = engine.disk_usage()?;
//! println!("{} images, {} bytes", usage.images.len(), usage.total_size);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use stencil_cow_fs::Snapshotter;
use stencil_layerstore::ImageRecord;
use stencil_layerstore::content::Manager;

use super::containers::Container;
use super::{Engine, Removed};

/// The space one image takes.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The image.
    pub image: ImageRecord,
    /// Bytes of its blobs that other images use too.
    pub shared_size: u64,
    /// Bytes of its blobs no other image uses.
    pub unique_size: u64,
    /// Containers using it.
    pub containers: u64,
}

/// The space one container takes.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// The container.
    pub container: Container,
    /// Bytes of its writable layer.
    pub size: u64,
}

/// What [`Engine::disk_usage`] found.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Every image, oldest first.
    pub images: Vec<ImageUsage>,
    /// Bytes of every blob the images use, each counted once.
    pub total_size: u64,
    /// Bytes that removing every image no container uses would give back.
    pub reclaimable: u64,
    /// Every container, newest first.
    pub containers: Vec<ContainerUsage>,
}

impl DiskUsage {
    /// Bytes of every container's writable layer.
    pub fn containers_size(&self) -> u64 {
        self.containers.iter().map(|c| c.size).sum()
    }

    /// Bytes that removing every container that does not run would give back.
    pub fn containers_reclaimable(&self) -> u64 {
        self.containers
            .iter()
            .filter(|c| !c.container.is_up())
            .map(|c| c.size)
            .sum()
    }
}

/// The `--filter`s of `prune`, as docker's: `until=TIME` keeps what was created at or
/// after TIME; `label=KEY[=VALUE]` removes only what has the label, `label!=KEY[=VALUE]`
/// only what has not.
#[derive(Debug, Clone, Default)]
pub struct PruneFilter {
    /// Only what was created before this.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Label conditions: the key, the value it must have when given, and whether the
    /// condition must hold (`label=`) or not (`label!=`).
    pub labels: Vec<(String, Option<String>, bool)>,
}

impl PruneFilter {
    /// Whether something created at `created` (RFC 3339) with `labels` may be removed.
    pub fn allows(&self, created: Option<&str>, labels: &Value) -> bool {
        if let Some(until) = self.until {
            let created = created.and_then(super::parse_time);
            if created.is_none_or(|created| created >= until) {
                return false;
            }
        }
        self.labels.iter().all(|(key, value, wanted)| {
            let found = labels.get(key).and_then(Value::as_str);
            let holds = found.is_some_and(|found| value.as_deref().is_none_or(|v| v == found));
            holds == *wanted
        })
    }
}

/// What [`Engine::prune_containers`] did.
#[derive(Debug, Clone, Default)]
pub struct PrunedContainers {
    /// Full IDs of the removed containers.
    pub removed: Vec<String>,
    /// Bytes of their writable layers.
    pub reclaimed: u64,
}

/// What [`Engine::prune_images`] did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Per removed image, docker's `untagged:` and `deleted:` lines.
    pub removed: Vec<Removed>,
    /// Bytes of blobs deleted.
    pub reclaimed: u64,
}

/// The layers of an image, by diff ID, with their uncompressed sizes.
fn layer_sizes(image: &ImageRecord) -> Vec<(String, u64)> {
    image
        .layers
        .iter()
        .map(|l| {
            (
                l.diff_id.to_string(),
                l.uncompressed_size.unwrap_or(l.compressed_size),
            )
        })
        .collect()
}

impl Engine {
    /// The space images and containers take, with shared and unique sizes per image.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let images = self.store.images()?;
        let containers = self
            .containers()?
            .into_iter()
            .map(|container| {
                let size = self.container_size(&container)?;
                Ok(ContainerUsage { container, size })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut users: BTreeMap<String, (u64, BTreeSet<i64>)> = BTreeMap::new();
        for image in &images {
            for (digest, size) in layer_sizes(image) {
                users
                    .entry(digest)
                    .or_insert((size, BTreeSet::new()))
                    .1
                    .insert(image.id);
            }
        }
        let mut used_by: BTreeMap<i64, u64> = BTreeMap::new();
        for usage in &containers {
            if let Some(image) = usage.container.record.image_id {
                *used_by.entry(image).or_default() += 1;
            }
        }
        let total_size = users.values().map(|(size, _)| size).sum();
        // What stays if every image no container uses goes: the blobs of the used ones.
        let kept: u64 = users
            .values()
            .filter(|(_, images)| images.iter().any(|id| used_by.contains_key(id)))
            .map(|(size, _)| size)
            .sum();
        let usage = images
            .into_iter()
            .map(|image| {
                let mut shared = 0;
                let mut unique = 0;
                let mut seen = BTreeSet::new();
                for (digest, size) in layer_sizes(&image) {
                    if !seen.insert(digest.clone()) {
                        continue;
                    }
                    let shared_with_others = users.get(&digest).is_some_and(|(_, u)| u.len() > 1);
                    if shared_with_others {
                        shared += size;
                    } else {
                        unique += size;
                    }
                }
                ImageUsage {
                    containers: used_by.get(&image.id).copied().unwrap_or(0),
                    image,
                    shared_size: shared,
                    unique_size: unique,
                }
            })
            .collect();
        Ok(DiskUsage {
            images: usage,
            total_size,
            reclaimable: total_size - kept,
            containers,
        })
    }

    /// Bytes of a container's writable layer: the sizes of the files, links and devices it
    /// added or changed (hard links counted once), as docker's `ps --size`.
    pub fn container_size(&self, container: &Container) -> Result<u64> {
        let target = match self.snapshots.layer_target(&container.record.snapshot_key) {
            Ok(target) => target,
            // A container whose snapshot is gone (fsck reports it) takes no space.
            Err(error) if error.kind() == stencil_cow_fs::ErrorKind::NotFound => return Ok(0),
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!(
                    "cannot find the writable layer of container {}",
                    container.record.name
                )));
            }
        };
        let mut seen = HashSet::new();
        tree_size(&target.dir, &mut seen)
    }

    /// Removes every container that does not run, as `docker container prune` does.
    pub fn prune_containers(&self, filter: &PruneFilter) -> Result<PrunedContainers> {
        let mut pruned = PrunedContainers::default();
        for container in self.containers()? {
            if container.is_up()
                || !filter.allows(
                    Some(&container.config.created),
                    &serde_json::json!(container.config.labels),
                )
            {
                continue;
            }
            let size = self.container_size(&container)?;
            match self.remove_container(&container, false) {
                Ok(()) => {
                    pruned.removed.push(container.record.id.clone());
                    pruned.reclaimed += size;
                }
                // Started or removed meanwhile by another stencil process: leave it.
                Err(error) => {
                    tracing::debug!(container = %container.record.id, "kept: {error:#}");
                }
            }
        }
        crate::container::cgroup::remove_stale(&|id| self.store.container(id).is_ok());
        Ok(pruned)
    }

    /// Removes dangling images (no tag), or with `all` every image no container uses, as
    /// `docker image prune [-a]` does.
    pub fn prune_images(&self, all: bool, filter: &PruneFilter) -> Result<Pruned> {
        let before = self.stored_bytes()?;
        let mut pruned = Pruned::default();
        // An image a container uses keeps its tags too: docker's prune leaves it alone.
        let used: BTreeSet<i64> = self
            .store
            .containers()?
            .iter()
            .filter_map(|container| container.image_id)
            .collect();
        for image in self.store.images()? {
            if used.contains(&image.id) {
                continue;
            }
            let dangling = self.store.tags_of(&image.manifest_digest)?.is_empty();
            if !all && !dangling {
                continue;
            }
            if filter.until.is_some() || !filter.labels.is_empty() {
                let config = self.image_config(&image)?;
                let labels = config
                    .get("config")
                    .and_then(|settings| settings.get("Labels"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let created = config.get("created").and_then(Value::as_str);
                if !filter.allows(created, &labels) {
                    continue;
                }
            }
            // By full manifest digest: unique, and removes every tag with the image.
            match self.remove_image(image.manifest_digest.hex(), true) {
                Ok(removed) => pruned.removed.push(removed),
                Err(error) if in_use(&error) => {
                    tracing::debug!(image = %image.manifest_digest, "kept: {error:#}");
                }
                // Removed meanwhile by another stencil process: nothing left to do.
                Err(error) if not_found(&error) => {}
                Err(error) => return Err(error),
            }
        }
        // Blobs no image uses: what an interrupted pull or load left (kept until now so
        // that a retry resumes). A younger blob may be a pull's that has not recorded its
        // image yet, so it stays.
        self.store.collect_garbage(UNREFERENCED_BLOB_AGE)?;
        pruned.reclaimed = before.saturating_sub(self.stored_bytes()?);
        Ok(pruned)
    }

    fn stored_bytes(&self) -> Result<u64> {
        let mut total = 0;
        self.content.walk(&mut |info| {
            total += info.size;
            Ok(())
        })?;
        Ok(total)
    }
}

/// How old a blob no image uses must be for `prune` to delete it.
pub const UNREFERENCED_BLOB_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sum of the sizes of everything under `dir` but directories, each inode once.
pub(super) fn tree_size(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", dir.display()));
        }
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.is_dir() {
            total += tree_size(&path, seen)?;
        } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    Ok(total)
}

fn layerstore_kind(error: &anyhow::Error) -> Option<stencil_layerstore::ErrorKind> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<stencil_layerstore::Error>())
        .map(stencil_layerstore::Error::kind)
}

fn in_use(error: &anyhow::Error) -> bool {
    layerstore_kind(error) == Some(stencil_layerstore::ErrorKind::ImageInUse)
}

fn not_found(error: &anyhow::Error) -> bool {
    layerstore_kind(error) == Some(stencil_layerstore::ErrorKind::ImageNotFound)
}
