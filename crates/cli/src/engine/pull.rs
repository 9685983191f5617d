//! `pull`: resolve a reference, fetch what the store lacks, unpack every layer, tag.
//!
//! The registry client streams each missing blob into the content store (verified,
//! resumable, in parallel) and, through the `pipeline` module's tap, into an unpack thread
//! per layer at the same time; once every blob is verified the layers' snapshots are
//! committed by chain ID, bottom first. The image record and its tag are written last, in
//! one transaction each, so an interrupted pull never leaves a visible half image.

use std::sync::Arc;

use anyhow::Result;
use stencil_layerstore::ImageRecord;
use stencil_reference::{Digest, Reference};
use stencil_registry::{Platform, ProgressEvent};

use super::Engine;
use super::pipeline::UnpackTap;

/// Choices for [`Engine::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from a multi-platform index (default: this machine's).
    pub platform: Option<Platform>,
}

/// What happened during a pull, for progress displays.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The reference was resolved to this manifest or index.
    Resolved {
        /// The manifest or index digest.
        digest: Digest,
    },
    /// A transfer event from the registry client, for a layer of the image.
    Layer(ProgressEvent),
    /// A layer is being unpacked.
    Extracting {
        /// The layer blob.
        digest: Digest,
    },
    /// A layer is unpacked (or was already).
    Extracted {
        /// The layer blob.
        digest: Digest,
        /// Whether it was already unpacked before this pull.
        existed: bool,
    },
}

/// Whether a pull brought anything new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// New content was stored, or the tag moved.
    Downloaded,
    /// The tag already named this exact image and everything was present.
    UpToDate,
}

/// The outcome of [`Engine::pull`].
#[derive(Debug, Clone)]
pub struct PullReport {
    /// What was pulled.
    pub reference: Reference,
    /// The digest the reference resolved to (an index or a manifest), as docker prints it.
    pub digest: Digest,
    /// The image recorded in the store.
    pub image: ImageRecord,
    /// Whether anything changed.
    pub status: PullStatus,
}

impl Engine {
    /// Pulls `reference` into the store and unpacks it, reporting progress to `progress`.
    pub async fn pull(
        &self,
        reference: &Reference,
        options: &PullOptions,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<PullReport> {
        let client = self.registry_client()?;
        let mut pull_options = stencil_registry::PullOptions::default();
        if let Some(platform) = &options.platform {
            pull_options.platform = platform.clone();
        }
        tokio::task::block_in_place(|| self.remove_stale_extractions());
        let previous = self.store.resolve(reference).ok();
        let fetched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
        let (tap_sender, mut tap_receiver) = tokio::sync::mpsc::unbounded_channel::<PullEvent>();
        let tap = Arc::new(UnpackTap::new(self, tap_sender)?);
        pull_options.tap = Some(tap.clone());
        let pulled = {
            let sink: Arc<dyn stencil_registry::Progress> = Arc::new(sender);
            let transfer = client.pull(reference, &self.content, &pull_options, sink);
            tokio::pin!(transfer);
            // Forward events while the transfer runs, so the display stays live.
            loop {
                tokio::select! {
                    result = &mut transfer => break result,
                    Some(event) = receiver.recv() => forward(event, &fetched, progress),
                    Some(event) = tap_receiver.recv() => progress(event),
                }
            }
        };
        while let Ok(event) = receiver.try_recv() {
            forward(event, &fetched, progress);
        }
        while let Ok(event) = tap_receiver.try_recv() {
            progress(event);
        }
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(error) => {
                tokio::task::block_in_place(|| tap.abandon());
                return Err(anyhow::Error::from(error)
                    .context(format!("cannot pull {}", reference.familiar())));
            }
        };
        progress(PullEvent::Resolved {
            digest: pulled.root.digest.clone(),
        });
        let index = (pulled.root.digest != pulled.manifest.digest).then_some(&pulled.root.digest);
        let existed = self.store.image(&pulled.manifest.digest).is_ok();
        let image = match self.store.record_image(&pulled.manifest.digest, index) {
            Ok(image) => image,
            Err(error) => {
                tokio::task::block_in_place(|| tap.abandon());
                return Err(anyhow::Error::from(error)
                    .context(format!("cannot record {}", reference.familiar())));
            }
        };
        // Committing waits for the unpack threads: blocking work, so keep the runtime's
        // other tasks going.
        let unpacked = tokio::task::block_in_place(|| tap.complete(self, &image, progress));
        while let Ok(event) = tap_receiver.try_recv() {
            progress(event);
        }
        let unpacked_any = match unpacked {
            Ok(any) => any,
            Err(error) => {
                // A layer that cannot be unpacked leaves no half image behind.
                if !existed {
                    self.discard_image(&image.manifest_digest);
                }
                return Err(error.context(format!("cannot pull {}", reference.familiar())));
            }
        };
        if reference.tag().is_some() {
            self.store.tag(reference, &image.manifest_digest)?;
        }
        let unchanged = previous.is_some_and(|p| p.manifest_digest == image.manifest_digest);
        let status =
            if unchanged && !unpacked_any && !fetched.load(std::sync::atomic::Ordering::Relaxed) {
                PullStatus::UpToDate
            } else {
                PullStatus::Downloaded
            };
        Ok(PullReport {
            reference: reference.clone(),
            digest: pulled.root.digest,
            image,
            status,
        })
    }
}

fn forward(
    event: ProgressEvent,
    fetched: &std::sync::atomic::AtomicBool,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) {
    if matches!(event, ProgressEvent::Done { .. }) {
        fetched.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    progress(PullEvent::Layer(event));
}
