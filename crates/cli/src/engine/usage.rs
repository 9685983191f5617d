//! Disk usage and pruning: what `system df` reports and what `image prune` removes.
//!
//! Sizes are those of the stored blobs (manifests, configs and layers as pulled), the same
//! measure as the SIZE of `stencil images`. A blob used by several images counts once in
//! the total; per image, its *shared* size is that of the blobs another image also uses,
//! its *unique* size the rest, which is what removing it alone gives back.
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

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use stencil_layerstore::ImageRecord;
use stencil_layerstore::content::Manager;

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
    /// Containers using it (always 0 until stencil has containers).
    pub containers: u64,
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
}

/// What [`Engine::prune_images`] did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Per removed image, docker's `untagged:` and `deleted:` lines.
    pub removed: Vec<Removed>,
    /// Bytes of blobs deleted.
    pub reclaimed: u64,
}

/// The blobs of an image with their sizes: manifest, config, layers.
fn blobs(image: &ImageRecord) -> Vec<(String, u64)> {
    let layers: u64 = image.layers.iter().map(|l| l.compressed_size).sum();
    let config_size = image
        .size
        .saturating_sub(image.manifest_size)
        .saturating_sub(layers);
    let mut out = vec![
        (image.manifest_digest.to_string(), image.manifest_size),
        (image.config_digest.to_string(), config_size),
    ];
    out.extend(
        image
            .layers
            .iter()
            .map(|l| (l.blob_digest.to_string(), l.compressed_size)),
    );
    out
}

impl Engine {
    /// The space images take, with shared and unique sizes per image.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let images = self.store.images()?;
        let mut users: BTreeMap<String, (u64, BTreeSet<i64>)> = BTreeMap::new();
        for image in &images {
            for (digest, size) in blobs(image) {
                users
                    .entry(digest)
                    .or_insert((size, BTreeSet::new()))
                    .1
                    .insert(image.id);
            }
        }
        let total_size = users.values().map(|(size, _)| size).sum();
        let usage = images
            .into_iter()
            .map(|image| {
                let mut shared = 0;
                let mut unique = 0;
                let mut seen = BTreeSet::new();
                for (digest, size) in blobs(&image) {
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
                    image,
                    shared_size: shared,
                    unique_size: unique,
                    containers: 0,
                }
            })
            .collect();
        // No image is used by a container yet, so all of it could be given back.
        Ok(DiskUsage {
            images: usage,
            total_size,
            reclaimable: total_size,
        })
    }

    /// Removes dangling images (no tag), or with `all` every image no container uses, as
    /// `docker image prune [-a]` does.
    pub fn prune_images(&self, all: bool) -> Result<Pruned> {
        let before = self.stored_bytes()?;
        let mut pruned = Pruned::default();
        for image in self.store.images()? {
            let dangling = self.store.tags_of(&image.manifest_digest)?.is_empty();
            if !all && !dangling {
                continue;
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
