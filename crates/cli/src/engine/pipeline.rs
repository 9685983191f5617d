//! Unpacking layers while they download, all layers at once: the pull pipeline.
//!
//! [`UnpackTap`] is the registry client's [`BlobTap`]: once the config is in the store it
//! plans the image (diff IDs, chain IDs) and prepares one snapshot per missing layer, each
//! stacked on the one below even while that one is still being filled (overlay snapshots
//! hold only their own layer). Each layer's bytes then flow from the HTTP body into the
//! ingest file and, at the same time, into its own unpack thread
//! ([`super::unpack::unpack_stream`]: inflate, hash, apply), so layers download and unpack
//! in parallel and the image is ready to mount when the pull returns.
//!
//! Nothing is committed early. The client commits a blob only after its digest matched;
//! [`UnpackTap::complete`] then commits the snapshots bottom first, each only when its
//! diff ID matched, its blob was verified and its parent is committed; directories a layer
//! implied without listing are first settled against the now complete layers below. On
//! any failure the prepared snapshots are removed (the ingest of an interrupted download
//! stays for a resume). A layer that could not be streamed (its blob was already in the
//! store, a download resumed from bytes kept by an earlier run, a registry that ignored a
//! range) is unpacked from the committed blob instead.
//!
//! ```text
//! HTTP body ─► ingest (sha256, disk) ─► blob commit after digest check
//!                 └─► inflate ─► hash (diff ID) ─► apply into snapshot N (stacked on N-1)
//! commit phase: settle implied dirs ─► commit N after N-1 ─► record
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use stencil_cow_fs::{ErrorKind as SnapshotErrorKind, Kind, OverlaySnapshotter, Snapshotter};
use stencil_layerstore::content::{LocalContent, Provider};
use stencil_layerstore::image::{ImageConfig, chain_ids};
use stencil_layerstore::{ImageRecord, LayerRecord};
use stencil_reference::Digest;
use stencil_registry::{BlobStream, BlobTap, Descriptor};
use tokio::sync::mpsc::UnboundedSender;

use super::unpack::{Piece, PieceReader, Unpacked, unpack_stream};
use super::{Engine, PullEvent};

/// Network pieces queued between the download and one layer's unpack; the download waits
/// beyond that, so memory stays bounded whatever the layer's size.
const FEED_QUEUE: usize = 8;
/// The largest config read to plan the unpack.
const CONFIG_LIMIT: u64 = 8 << 20;

/// One layer of the plan.
struct PlannedLayer {
    blob: Digest,
    diff_id: Digest,
    chain_id: Digest,
    /// The active snapshot being filled; `None` when the layer was unpacked already.
    key: Option<String>,
    /// The thread unpacking the downloading bytes, once the download started.
    worker: Option<JoinHandle<Result<Unpacked>>>,
    /// Set when the download delivered every byte and the blob matched its digest.
    fed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Plan {
    layers: Vec<PlannedLayer>,
    /// Why no plan could be made (the commit phase then unpacks from blobs).
    failure: Option<String>,
}

/// The registry client's tap during one pull; see the module documentation.
pub(crate) struct UnpackTap {
    snapshots: OverlaySnapshotter,
    content: Arc<LocalContent>,
    plan: Mutex<Plan>,
    events: UnboundedSender<PullEvent>,
    /// Makes this pull's snapshot keys unique even within one process.
    tag: String,
}

impl UnpackTap {
    pub(crate) fn new(engine: &Engine, events: UnboundedSender<PullEvent>) -> Result<UnpackTap> {
        let snapshots = OverlaySnapshotter::new(&engine.root.join(super::SNAPSHOTS_DIR))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Ok(UnpackTap {
            snapshots,
            content: engine.content.clone(),
            plan: Mutex::new(Plan::default()),
            events,
            tag: format!("{}-{nanos:08x}", std::process::id()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        // A panic while holding the plan leaves it as consistent as any other state.
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn has_snapshot(&self, chain_id: &Digest) -> bool {
        self.snapshots
            .stat(chain_id.as_str())
            .is_ok_and(|info| info.kind == Kind::Committed)
    }

    /// Reads the config and prepares a stacked snapshot for every layer not unpacked yet.
    fn plan(&self, config: &Digest, layers: &[Descriptor]) -> Result<Vec<PlannedLayer>> {
        let mut bytes = Vec::new();
        let blob = self.content.open(config)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(blob, CONFIG_LIMIT), &mut bytes)?;
        let config = ImageConfig::parse(&bytes, Some(config))?;
        if config.diff_ids.len() != layers.len() {
            return Err(anyhow!(
                "{} layers but the config lists {} diff ids",
                layers.len(),
                config.diff_ids.len()
            ));
        }
        let chains = chain_ids(&config.diff_ids);
        let mut planned: Vec<PlannedLayer> = Vec::with_capacity(layers.len());
        for (position, ((layer, diff_id), chain_id)) in
            layers.iter().zip(&config.diff_ids).zip(chains).enumerate()
        {
            let below = planned.last();
            let parent = below.map(|b| b.key.clone().unwrap_or(b.chain_id.to_string()));
            let key = if self.has_snapshot(&chain_id) {
                None
            } else {
                let key = format!("extract-{}-{position:05}", self.tag);
                let prepared = self.snapshots.prepare_stacked(&key, parent.as_deref());
                if let Err(error) = prepared {
                    self.remove_keys(&mut planned);
                    return Err(error.into());
                }
                Some(key)
            };
            planned.push(PlannedLayer {
                blob: layer.digest.clone(),
                diff_id: diff_id.clone(),
                chain_id,
                key,
                worker: None,
                fed: Arc::new(AtomicBool::new(false)),
            });
        }
        Ok(planned)
    }

    /// Waits for every unpack thread, then removes the prepared snapshots, top first.
    fn remove_keys(&self, layers: &mut [PlannedLayer]) {
        for layer in layers.iter_mut() {
            if let Some(worker) = layer.worker.take() {
                let _ = worker.join();
            }
        }
        for layer in layers.iter_mut().rev() {
            if let Some(key) = layer.key.take()
                && let Err(error) = self.snapshots.remove(&key)
            {
                tracing::warn!(%key, "cannot remove an unfinished layer snapshot: {error}");
            }
        }
    }

    /// Gives up: waits for the unpack threads (their streams are closed once the pull's
    /// transfers ended) and removes every snapshot this pull prepared.
    pub(crate) fn abandon(&self) {
        let mut layers = std::mem::take(&mut self.lock().layers);
        self.remove_keys(&mut layers);
    }

    /// Commits the unpacked layers of `image` bottom first (see the module
    /// documentation); returns whether any layer needed work.
    pub(crate) fn complete(
        &self,
        engine: &Engine,
        image: &ImageRecord,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<bool> {
        let (mut layers, failure) = {
            let mut plan = self.lock();
            (std::mem::take(&mut plan.layers), plan.failure.take())
        };
        let matches = layers.len() == image.layers.len()
            && layers
                .iter()
                .zip(&image.layers)
                .all(|(planned, record)| planned.chain_id == record.chain_id);
        if !matches {
            if let Some(failure) = failure {
                tracing::debug!("no unpack plan: {failure}");
            }
            self.remove_keys(&mut layers);
            return engine.unpack_image(image, progress);
        }
        let mut unpacked_any = false;
        for position in 0..layers.len() {
            let record = &image.layers[position];
            match self.commit_layer(engine, &mut layers[position], record, progress) {
                Ok(Some(extracted)) => unpacked_any |= extracted,
                Ok(None) => {
                    // Another process committed a layer meanwhile: finish one layer at a
                    // time from the blobs, reusing what exists.
                    self.remove_keys(&mut layers[position..]);
                    let parent = position
                        .checked_sub(1)
                        .map(|below| &image.layers[below].chain_id);
                    let rest = engine.unpack_layers(&image.layers[position..], parent, progress)?;
                    return Ok(rest || unpacked_any);
                }
                Err(error) => {
                    self.remove_keys(&mut layers);
                    return Err(error);
                }
            }
        }
        Ok(unpacked_any)
    }

    /// Commits one planned layer. `Ok(Some(extracted))` when done, `Ok(None)` when
    /// another process committed its chain ID (or a layer below changed) meanwhile.
    fn commit_layer(
        &self,
        engine: &Engine,
        layer: &mut PlannedLayer,
        record: &LayerRecord,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Option<bool>> {
        let Some(key) = layer.key.clone() else {
            if !self.has_snapshot(&layer.chain_id) {
                return Ok(None);
            }
            engine.record_snapshot(&layer.chain_id)?;
            progress(PullEvent::Extracted {
                digest: layer.blob.clone(),
                existed: true,
            });
            return Ok(Some(false));
        };
        progress(PullEvent::Extracting {
            digest: layer.blob.clone(),
        });
        let streamed = layer.worker.take().map(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the unpack thread panicked")))
        });
        let target = self.snapshots.layer_target(&key)?;
        let unpacked = match streamed {
            Some(Ok(unpacked)) => unpacked,
            // The bytes were complete and verified, so the content itself is at fault.
            Some(Err(error)) if layer.fed.load(Ordering::SeqCst) => return Err(error),
            // Not streamed, or the stream was cut (a resume, a restart): start again from
            // the verified blob in the store.
            _ => {
                clear_dir(&target.dir)?;
                let blob = self
                    .content
                    .open(&layer.blob)
                    .with_context(|| format!("layer {} is not in the store", layer.blob))?;
                unpack_stream(blob, &target, &layer.blob, &layer.diff_id)?
            }
        };
        // Every layer below is committed now: directories copied from them while they
        // were still filling get their final mode and owner.
        let implied = &unpacked.implied_dirs;
        stencil_cow_fs::settle_implied_dirs(
            &target.dir,
            implied,
            &target.parents,
            stencil_cow_fs::ApplyOptions::default().preserve_ownership,
        )
        .with_context(|| format!("cannot unpack layer {}", layer.blob))?;
        if !implied.is_empty() {
            // The settled modes and owners reach the disk before the commit too.
            stencil_cow_fs::sync_filesystem(&target.dir)
                .with_context(|| format!("cannot write layer {} to disk", layer.blob))?;
        }
        match self.snapshots.commit(record.chain_id.as_str(), &key) {
            Ok(()) => {}
            Err(e) if e.kind() == SnapshotErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        layer.key = None;
        engine.record_snapshot(&layer.chain_id)?;
        engine
            .store
            .set_uncompressed_size(&layer.diff_id, unpacked.size)?;
        progress(PullEvent::Extracted {
            digest: layer.blob.clone(),
            existed: false,
        });
        Ok(Some(true))
    }
}

impl Engine {
    /// Removes the unfinished scratch snapshots of processes that are gone (a pull's layer
    /// extractions `extract-PID-…`, a build step's working snapshots `build-PID-…`, whose
    /// overlay is unmounted from `ROOT/build-mounts` first), top first, so they neither
    /// linger nor trouble `fsck`. Those of running processes are left alone.
    pub(crate) fn remove_stale_extractions(&self) {
        let mut stale = Vec::new();
        let walked = self.snapshots.walk(&mut |info| {
            let owner = ["extract-", "build-"]
                .iter()
                .find_map(|prefix| info.key.strip_prefix(prefix))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = owner
                && info.kind != Kind::Committed
                && pid != std::process::id()
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                stale.push(info.key.clone());
            }
            Ok(())
        });
        for key in stale.iter().filter(|key| key.starts_with("build-")) {
            let dir = self.root().join("build-mounts").join(key);
            if dir.exists() {
                if let Err(error) = stencil_cow_fs::unmount_all(&dir) {
                    tracing::warn!(%error, dir = %dir.display(), "cannot unmount a killed build's step");
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if walked.is_err() {
            return;
        }
        // Children must go before their parents: retry until nothing more can be removed.
        while !stale.is_empty() {
            let before = stale.len();
            stale.retain(|key| self.snapshots.remove(key).is_err());
            if stale.len() == before {
                break;
            }
        }
    }
}

/// Empties a snapshot directory that a cut stream left half filled.
fn clear_dir(dir: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

impl BlobTap for UnpackTap {
    fn begin(&self, config: &Digest, layers: &[Descriptor]) {
        let planned = self.plan(config, layers);
        let mut plan = self.lock();
        match planned {
            Ok(layers) => plan.layers = layers,
            Err(error) => plan.failure = Some(format!("{error:#}")),
        }
    }

    fn open(&self, layer: &Descriptor) -> Option<Box<dyn BlobStream>> {
        let mut plan = self.lock();
        let planned = plan
            .layers
            .iter_mut()
            .find(|p| p.blob == layer.digest && p.key.is_some() && p.worker.is_none())?;
        let target = match self.snapshots.layer_target(planned.key.as_deref()?) {
            Ok(target) => target,
            Err(error) => {
                tracing::debug!(digest = %layer.digest, "cannot stream the layer: {error}");
                return None;
            }
        };
        let (sender, receiver) = sync_channel(FEED_QUEUE);
        let (blob, diff_id) = (planned.blob.clone(), planned.diff_id.clone());
        let spawned = std::thread::Builder::new()
            .name("unpack".into())
            .spawn(move || unpack_stream(PieceReader::new(receiver), &target, &blob, &diff_id));
        match spawned {
            Ok(worker) => planned.worker = Some(worker),
            Err(error) => {
                tracing::debug!(digest = %layer.digest, "cannot start an unpack thread: {error}");
                return None;
            }
        }
        Some(Box::new(LayerFeed {
            sender,
            fed: planned.fed.clone(),
            digest: planned.blob.clone(),
            events: self.events.clone(),
        }))
    }
}

/// The download side of one layer's unpack.
struct LayerFeed {
    sender: SyncSender<Piece>,
    fed: Arc<AtomicBool>,
    digest: Digest,
    events: UnboundedSender<PullEvent>,
}

impl BlobStream for LayerFeed {
    fn write(&mut self, bytes: &Bytes) -> bool {
        self.sender.send(Piece::Bytes(bytes.clone())).is_ok()
    }

    fn finish(self: Box<Self>) {
        self.fed.store(true, Ordering::SeqCst);
        let _ = self.sender.send(Piece::End);
        // A closed receiver means nobody renders any more.
        let _ = self.events.send(PullEvent::Extracting {
            digest: self.digest.clone(),
        });
    }
}
