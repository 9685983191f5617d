//! `push`: send an image's blobs the registry lacks, then its manifest.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use stencil_cow_fs::gzip::ParallelGzip;
use stencil_layerstore::ImageRecord;
use stencil_layerstore::content::Provider;
use stencil_layerstore::image::media_type::{
    DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_LAYER, OCI_LAYER_GZIP,
};
use stencil_reference::{Digest, Reference};
use stencil_registry::{Descriptor, ProgressEvent, PushOptions};

use super::Engine;
use super::commit::COMPRESS_ON_PUSH;

/// The outcome of [`Engine::push`].
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The digest of the manifest as the registry stored it.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

impl Engine {
    /// Pushes the local image `reference` names to that same name on its registry.
    pub async fn push(
        &self,
        reference: &Reference,
        progress: &(dyn Fn(ProgressEvent) + Send + Sync),
    ) -> Result<PushReport> {
        let image = self
            .store
            .resolve(reference)
            .with_context(|| format!("no local image {} to push", reference.familiar()))?;
        let image = self.distributable(&image)?;
        // The platform manifest is pushed, not a multi-platform index whose other
        // platforms this store does not hold.
        let root = Descriptor::new(
            image.manifest_media_type.clone(),
            image.manifest_digest.clone(),
            image.manifest_size,
        );
        let client = self.registry_client()?;
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
        let sink: Arc<dyn stencil_registry::Progress> = Arc::new(sender);
        let options = PushOptions::default();
        let transfer = client.push(reference, &self.content, &root, &options, sink);
        tokio::pin!(transfer);
        let pushed = loop {
            tokio::select! {
                result = &mut transfer => break result,
                Some(event) = receiver.recv() => progress(event),
            }
        };
        while let Ok(event) = receiver.try_recv() {
            progress(event);
        }
        let digest = pushed.with_context(|| format!("cannot push {}", reference.familiar()))?;
        Ok(PushReport {
            digest,
            size: image.manifest_size,
        })
    }

    /// `image` in the form it travels in: committed and built layers are kept as plain
    /// tars (their digest is their diff ID, and a commit does not pay for compression),
    /// marked [`COMPRESS_ON_PUSH`]; before their first push they are compressed with gzip
    /// (level 6, on every core, see [`ParallelGzip`]), as docker and podman do, and the
    /// image is given the manifest naming the compressed blobs, so that its digest is the
    /// one the registry will report and later pushes compress nothing. Other images, plain-tar layers from elsewhere included, are
    /// returned as they are, so that a push keeps their source digests.
    pub fn distributable(&self, image: &ImageRecord) -> Result<ImageRecord> {
        if !image
            .layers
            .iter()
            .any(|layer| layer.media_type == OCI_LAYER)
        {
            return Ok(image.clone());
        }
        let mut manifest = self.manifest_json(image)?;
        let docker = manifest.get("mediaType").and_then(Value::as_str) == Some(DOCKER_MANIFEST);
        let Some(layers) = manifest.get_mut("layers").and_then(Value::as_array_mut) else {
            bail!("manifest {} lists no layers", image.manifest_digest);
        };
        let mut changed = false;
        for layer in layers.iter_mut() {
            if !layer["annotations"][COMPRESS_ON_PUSH].is_string() {
                continue;
            }
            changed = true;
            let digest: Digest = layer
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .parse()
                .with_context(|| {
                    format!(
                        "manifest {} names a bad layer digest",
                        image.manifest_digest
                    )
                })?;
            let blob = self
                .content
                .open(&digest)
                .with_context(|| format!("cannot read layer {digest}"))?;
            // Block-parallel, as pigz: a layer of a few hundred MiB is compressed once per
            // image, on every core.
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let mut gzip = ParallelGzip::new(blob, 6, threads);
            let (compressed, size) = self
                .store
                .ingest(&mut gzip, None)
                .with_context(|| format!("cannot compress layer {digest}"))?;
            layer["mediaType"] = json!(if docker {
                DOCKER_LAYER_GZIP
            } else {
                OCI_LAYER_GZIP
            });
            layer["digest"] = json!(compressed.to_string());
            layer["size"] = json!(size);
            if let Some(annotations) = layer.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(COMPRESS_ON_PUSH);
                if annotations.is_empty() {
                    layer.as_object_mut().map(|l| l.remove("annotations"));
                }
            }
        }
        if !changed {
            return Ok(image.clone());
        }
        let manifest_digest = self.store.put_blob(&serde_json::to_vec(&manifest)?)?;
        let replaced = self
            .store
            .replace_manifest(image, &manifest_digest)
            .with_context(|| {
                format!(
                    "cannot record the compressed form of image {}",
                    image.config_digest
                )
            })?;
        crate::build::cache::BuildCache::open(self.root())?
            .rename_image(&image.manifest_digest, &replaced.manifest_digest)?;
        Ok(replaced)
    }
}
