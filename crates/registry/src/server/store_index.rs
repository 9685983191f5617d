//! [`StoreIndex`]: the repository index that shares the stencil store's image records.
//!
//! Repository `P` of the served domain `D` is the store's image name `D/P`. Pushing an
//! image manifest records it in the store's metadata database and, when pushed by tag,
//! tags it `D/P:TAG`, so that `stencil images` lists what was pushed and the store's
//! garbage collection keeps its blobs. The other way round, an image that stencil pulled,
//! built or tagged under `D/P` is served without copying: its tag, manifest and blobs are
//! found through the store's records when the [`FileIndex`] does not know them.
//!
//! Artifacts (manifests whose config is not an image config) and indexes are kept in the
//! [`FileIndex`] only, as the store records single-platform images; an index's child images
//! are recorded, untagged, so that their blobs are kept. This module does not parse HTTP.

use std::sync::Arc;

use stencil_layerstore::{ErrorKind as StoreErrorKind, ImageRecord, Store};
use stencil_reference::{Digest, Reference, Tag};

use super::error::Result;
use super::index::{FileIndex, ManifestRecord, RepositoryIndex};
use super::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use super::name::RepositoryName;

/// [`RepositoryIndex`] over a [`FileIndex`] and the store's image records.
#[derive(Debug)]
pub struct StoreIndex {
    files: FileIndex,
    store: Arc<Store>,
}

impl StoreIndex {
    /// The index of `store`, its own records under `ROOT/registry/`.
    pub fn new(store: Arc<Store>) -> StoreIndex {
        StoreIndex {
            files: FileIndex::new(store.root().join("registry")),
            store,
        }
    }

    /// Who holds the blobs linked into `repo` in the store's garbage collection.
    fn holder(repo: &RepositoryName) -> String {
        format!("registry:{}", repo.image_name())
    }

    /// Who holds the blobs that manifest `digest` of `repo` names.
    fn manifest_holder(repo: &RepositoryName, digest: &Digest) -> String {
        format!("registry:{}@{digest}", repo.image_name())
    }

    /// Holds manifest `digest` and every blob it names (config, layers, an index's
    /// manifests) against the store's garbage collection for as long as `repo` has it, so
    /// that removing a local image never breaks what the registry serves. Blobs the store
    /// lacks (foreign layers) are skipped.
    fn hold_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let holder = StoreIndex::manifest_holder(repo, digest);
        self.store
            .hold_blobs(&holder, std::slice::from_ref(digest))?;
        let bytes = self
            .store
            .read_blob(digest, super::MAX_MANIFEST_SIZE as u64)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let descriptors = std::iter::once(&value["config"])
            .chain(value["layers"].as_array().into_iter().flatten())
            .chain(value["manifests"].as_array().into_iter().flatten())
            .chain(value["blobs"].as_array().into_iter().flatten());
        for descriptor in descriptors {
            let Some(named) = descriptor["digest"]
                .as_str()
                .and_then(|text| Digest::parse(text).ok())
            else {
                continue;
            };
            match self.store.hold_blobs(&holder, &[named]) {
                Ok(()) => {}
                Err(error) if error.kind() == StoreErrorKind::BlobNotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn reference(repo: &RepositoryName, tag: &Tag) -> Option<Reference> {
        Reference::parse(&format!("{}:{}", repo.image_name(), tag.as_str())).ok()
    }

    /// The store's tags of `repo`: `(tag, manifest digest)`.
    fn store_tags(&self, repo: &RepositoryName) -> Result<Vec<(String, Digest)>> {
        let prefix = format!("{}:", repo.image_name());
        Ok(self
            .store
            .tags()?
            .into_iter()
            .filter_map(|(name, digest)| {
                name.strip_prefix(&prefix)
                    .filter(|tag| !tag.contains('/'))
                    .map(|tag| (tag.to_owned(), digest))
            })
            .collect())
    }

    /// The recorded images tagged in `repo`.
    fn store_images(&self, repo: &RepositoryName) -> Result<Vec<ImageRecord>> {
        let mut images = Vec::new();
        for (_, digest) in self.store_tags(repo)? {
            match self.store.image(&digest) {
                Ok(image) => images.push(image),
                Err(error) if error.kind() == StoreErrorKind::ImageNotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(images)
    }

    /// Records a pushed image manifest (and tags it) or an index's children in the store.
    /// A manifest the store cannot record as an image (an artifact) stays in the file
    /// index only; that is not an error of the push.
    fn record(
        &self,
        repo: &RepositoryName,
        record: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let outcome = match record.media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                self.store.record_image(&record.digest, None).and_then(|_| {
                    match tag.and_then(|tag| StoreIndex::reference(repo, tag)) {
                        Some(reference) => self.store.tag(&reference, &record.digest),
                        None => Ok(()),
                    }
                })
            }
            OCI_INDEX | DOCKER_MANIFEST_LIST => self.record_children(repo, &record.digest),
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(error)
                if matches!(
                    error.kind(),
                    StoreErrorKind::InvalidDocument
                        | StoreErrorKind::UnsupportedMediaType
                        | StoreErrorKind::AmbiguousDocument
                ) =>
            {
                tracing::debug!(repository = %repo, digest = %record.digest, %error, "kept as an artifact, not recorded as an image");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn record_children(
        &self,
        repo: &RepositoryName,
        index: &Digest,
    ) -> stencil_layerstore::Result<()> {
        for child in self.files.manifests(repo).unwrap_or_default() {
            // Only the children listed by this index, which the push already checked.
            if !self.index_lists(index, &child.digest)? {
                continue;
            }
            if matches!(child.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
                match self.store.record_image(&child.digest, Some(index)) {
                    Ok(_) => {}
                    Err(error) if error.kind() == StoreErrorKind::InvalidDocument => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    fn index_lists(&self, index: &Digest, child: &Digest) -> stencil_layerstore::Result<bool> {
        let bytes = self
            .store
            .read_blob(index, super::MAX_MANIFEST_SIZE as u64)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(value["manifests"].as_array().is_some_and(|manifests| {
            manifests
                .iter()
                .any(|m| m["digest"].as_str() == Some(child.as_str()))
        }))
    }
}

impl RepositoryIndex for StoreIndex {
    fn link_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        self.store
            .hold_blobs(&StoreIndex::holder(repo), std::slice::from_ref(digest))?;
        self.files.link_blob(repo, digest)
    }

    fn has_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        if self.files.has_blob(repo, digest)? {
            return Ok(true);
        }
        Ok(self.store_images(repo)?.iter().any(|image| {
            image.config_digest == *digest
                || image.manifest_digest == *digest
                || image
                    .layers
                    .iter()
                    .any(|layer| layer.blob_digest == *digest)
        }))
    }

    fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let unlinked = self.files.unlink_blob(repo, digest)?;
        self.store
            .release_blobs(&StoreIndex::holder(repo), Some(digest))?;
        Ok(unlinked)
    }

    fn put_manifest(
        &self,
        repo: &RepositoryName,
        record: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()> {
        self.hold_manifest(repo, &record.digest)?;
        self.files.put_manifest(repo, record, tag)?;
        self.record(repo, record, tag)
    }

    fn manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        if let Some(record) = self.files.manifest(repo, digest)? {
            return Ok(Some(record));
        }
        for image in self.store_images(repo)? {
            if image.manifest_digest == *digest {
                return Ok(Some(ManifestRecord::new(
                    digest.clone(),
                    image.manifest_media_type.clone(),
                    image.manifest_size,
                )));
            }
        }
        Ok(None)
    }

    fn manifests(&self, repo: &RepositoryName) -> Result<Vec<ManifestRecord>> {
        self.files.manifests(repo)
    }

    fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        if let Some(digest) = self.files.resolve_tag(repo, tag)? {
            return Ok(Some(digest));
        }
        Ok(self
            .store_tags(repo)?
            .into_iter()
            .find(|(name, _)| name == tag.as_str())
            .map(|(_, digest)| digest))
    }

    fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let mut deleted = self.files.delete_manifest(repo, digest)?;
        self.store
            .release_blobs(&StoreIndex::manifest_holder(repo, digest), None)?;
        for (tag, tagged) in self.store_tags(repo)? {
            if tagged == *digest
                && let Some(reference) = Tag::parse(&tag)
                    .ok()
                    .and_then(|tag| StoreIndex::reference(repo, &tag))
            {
                deleted |= self.store.untag(&reference)?;
            }
        }
        Ok(deleted)
    }

    fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool> {
        let in_files = self.files.delete_tag(repo, tag)?;
        let in_store = match StoreIndex::reference(repo, tag) {
            Some(reference) => self.store.untag(&reference)?,
            None => false,
        };
        Ok(in_files || in_store)
    }

    fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<String>>> {
        let files = self.files.tags(repo)?;
        let stored: Vec<String> = self
            .store_tags(repo)?
            .into_iter()
            .map(|(tag, _)| tag)
            .collect();
        if files.is_none() && stored.is_empty() {
            return Ok(None);
        }
        let mut tags = files.unwrap_or_default();
        tags.extend(stored);
        tags.sort();
        tags.dedup();
        Ok(Some(tags))
    }

    fn repositories(&self, domain: &str) -> Result<Vec<String>> {
        let mut repositories = self.files.repositories(domain)?;
        let prefix = format!("{domain}/");
        for (name, _) in self.store.tags()? {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let path = rest.rsplit_once(':').map_or(rest, |(path, _)| path);
            repositories.push(path.to_owned());
        }
        repositories.sort();
        repositories.dedup();
        Ok(repositories)
    }
}
