//! `push`: send an image's blobs the registry lacks, then its manifest.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// What a push is doing, for a progress display.
#[derive(Debug, Clone)]
pub enum PushProgress {
    /// A plain-tar layer is being compressed before its first upload: `done` of `size`
    /// input bytes so far (0 at the start).
    Compressing {
        /// The plain layer's digest.
        layer: Digest,
        /// Input bytes compressed so far.
        done: u64,
        /// Input bytes in all.
        size: u64,
    },
    /// That layer is compressed; `blob` is what will be uploaded.
    Compressed {
        /// The plain layer's digest.
        layer: Digest,
        /// The compressed blob's digest.
        blob: Digest,
    },
    /// A step of the transfer itself.
    Transfer(ProgressEvent),
}

/// How often, in input bytes, compression progress is reported.
const COMPRESS_REPORT_EVERY: u64 = 4 << 20;

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
        progress: &(dyn Fn(PushProgress) + Send + Sync),
    ) -> Result<PushReport> {
        let image = self
            .store
            .resolve(reference)
            .with_context(|| format!("no local image {} to push", reference.familiar()))?;
        let image = self.distributable(&image, progress)?;
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
        // docker lists the layers; the config goes up unannounced.
        let config = image.config_digest.clone();
        let show = |event: ProgressEvent| {
            if event_digest(&event) != Some(&config) {
                progress(PushProgress::Transfer(event));
            }
        };
        let pushed = loop {
            tokio::select! {
                result = &mut transfer => break result,
                Some(event) = receiver.recv() => show(event),
            }
        };
        while let Ok(event) = receiver.try_recv() {
            show(event);
        }
        let digest = pushed.with_context(|| format!("cannot push {}", reference.familiar()))?;
        Ok(PushReport {
            digest,
            size: image.manifest_size,
        })
    }

    /// Whether `image` has layers kept as plain tars until its first push (made by
    /// `commit`, `build` or `import`): its manifest digest then changes at that push, so
    /// it is no digest a registry can have yet.
    pub fn is_local_only(&self, image: &ImageRecord) -> bool {
        if !image
            .layers
            .iter()
            .any(|layer| layer.media_type == OCI_LAYER)
        {
            return false;
        }
        self.manifest_json(image).is_ok_and(|manifest| {
            manifest["layers"].as_array().is_some_and(|layers| {
                layers
                    .iter()
                    .any(|layer| layer["annotations"][COMPRESS_ON_PUSH].is_string())
            })
        })
    }

    /// `image` in the form it travels in: committed and built layers are kept as plain
    /// tars (their digest is their diff ID, and a commit does not pay for compression),
    /// marked [`COMPRESS_ON_PUSH`]; before their first push they are compressed with gzip
    /// (level 6, on every core, see [`ParallelGzip`]), as docker and podman do, and the
    /// image is given the manifest naming the compressed blobs, so that its digest is the
    /// one the registry will report and later pushes compress nothing. Other images, plain-tar layers from elsewhere included, are
    /// returned as they are, so that a push keeps their source digests.
    pub fn distributable(
        &self,
        image: &ImageRecord,
        progress: &dyn Fn(PushProgress),
    ) -> Result<ImageRecord> {
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
            let plain_size = layer.get("size").and_then(Value::as_u64).unwrap_or(0);
            progress(PushProgress::Compressing {
                layer: digest.clone(),
                done: 0,
                size: plain_size,
            });
            // Block-parallel, as pigz: a layer of a few hundred MiB is compressed once per
            // image, on every core. The workers read on threads of their own; the count
            // of what they read is reported from this one, as the output comes.
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let read = Arc::new(AtomicU64::new(0));
            let counted = Counted {
                inner: blob,
                read: Arc::clone(&read),
            };
            let mut gzip = Reporting {
                inner: ParallelGzip::new(counted, 6, threads),
                read,
                reported: 0,
                report: &|done| {
                    progress(PushProgress::Compressing {
                        layer: digest.clone(),
                        done,
                        size: plain_size,
                    })
                },
            };
            let (compressed, size) = self
                .store
                .ingest(&mut gzip, None)
                .with_context(|| format!("cannot compress layer {digest}"))?;
            progress(PushProgress::Compressed {
                layer: digest.clone(),
                blob: compressed.clone(),
            });
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

/// A reader counting what is read through it, for a reader on another thread.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Passes reads through and calls `report` with the [`Counted`] total every
/// [`COMPRESS_REPORT_EVERY`] bytes.
struct Reporting<'a, R> {
    inner: R,
    read: Arc<AtomicU64>,
    reported: u64,
    report: &'a dyn Fn(u64),
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let done = self.read.load(Ordering::Relaxed);
        if done >= self.reported + COMPRESS_REPORT_EVERY {
            self.reported = done;
            (self.report)(done);
        }
        Ok(n)
    }
}

/// The blob a progress event is about, when it is about one.
fn event_digest(event: &ProgressEvent) -> Option<&Digest> {
    match event {
        ProgressEvent::Started { digest, .. }
        | ProgressEvent::Waiting { digest }
        | ProgressEvent::Bytes { digest, .. }
        | ProgressEvent::Resuming { digest, .. }
        | ProgressEvent::Verified { digest }
        | ProgressEvent::Done { digest }
        | ProgressEvent::AlreadyPresent { digest }
        | ProgressEvent::Mounted { digest, .. } => Some(digest),
        _ => None,
    }
}
