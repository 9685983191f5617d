//! `push`: send an image's blobs the registry lacks, then its manifest.

use std::sync::Arc;

use anyhow::{Context, Result};
use stencil_reference::{Digest, Reference};
use stencil_registry::{Descriptor, ProgressEvent, PushOptions};

use super::Engine;

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
}
