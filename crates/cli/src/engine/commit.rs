//! `commit`: an active snapshot's changes become a new image on top of a parent image.
//!
//! This is what `stencil commit` does with a container and what the builder does after
//! each `RUN`, `COPY` or `ADD` step; [`Engine::commit_config`] is its metadata-only sibling
//! for steps such as `ENV` or `CMD` that change the config and no file.
//!
//! [`Engine::commit_snapshot`] streams the snapshotter's diff of the active snapshot
//! (overlay whiteouts become `.wh.` entries, opaque directories `.wh..wh..opq`) straight
//! into the content store's ingester as a plain tar (`application/vnd.oci.image.layer.v1.tar`),
//! so memory does not grow with the change and the blob's digest is the diff ID: one hash
//! and no compression, as docker and containers/storage keep committed layers. `push`
//! compresses such layers on their way to a registry ([`Engine::distributable`]). The new config is the parent's (or an empty one for `scratch`) with the
//! options' changes applied, the new diff ID appended to `rootfs.diff_ids` and a history
//! entry appended; the manifest lists the parent's layers plus the new one. The image is
//! recorded and tagged when asked. Without [`CommitOptions::keep_snapshot`] the active
//! snapshot itself becomes the new layer's snapshot under its chain ID (the builder's
//! steps), so the image runs at once. With it (a container that goes on living) the new
//! layer's snapshot is made lazily: the first `run`, `create`, `image mount` or build
//! `FROM` of the image unpacks it from the blob, verified against its diff ID, as
//! containerd unpacks an image on first use; an image never run costs no second copy.
//!
//! The active snapshot must not be mounted read-write by a running process while it is
//! committed without `keep_snapshot` (the builder unmounts first); `stencil commit` keeps
//! the container's snapshot, so a running container may be committed (docker's `--pause`
//! is not needed for a consistent enough copy of files that are not being written).
//!
//! Reproducible output: with [`CommitOptions::created`] set, the config's `created`, the
//! history entry's `created` and every file time in the layer are that instant, so the same
//! change on the same parent gives the same blob, config and manifest digests.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::engine::{CommitOptions, Engine};
//! use stencil_cow_fs::Snapshotter;
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let parent = engine.find_image("busybox")?;
//! let top = parent.layers.last().map(|layer| layer.chain_id.as_str());
//! // A build step: a writable snapshot on the parent, changed by a process, then frozen.
//! engine.snapshots().prepare("build-step-1", top)?;
//! // ... mount it, run something in it, unmount it ...
//! let options = CommitOptions {
//!     created_by: Some("/bin/sh -c make install".into()),
//!     changes: vec!["ENV READY=1".into()],
//!     omit_empty_layer: true,
//!     ..CommitOptions::default()
//! };
//! let committed = engine.commit_snapshot("build-step-1", Some(&parent), &options)?;
//! println!("{} (new layer: {})", committed.image.config_digest, !committed.empty_layer);
//! # Ok(()) }
//! ```

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use stencil_cow_fs::{DiffOptions, ErrorKind as SnapshotErrorKind, Snapshotter};
use stencil_layerstore::ImageRecord;
use stencil_layerstore::content::LocalWriter;
use stencil_layerstore::content::{ContentWriter, Ingester};
use stencil_layerstore::image::Platform;
use stencil_layerstore::image::media_type::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, to_oci};
use stencil_layerstore::image::{MAX_DOCUMENT_SIZE, chain_id};
use stencil_reference::{Digest, Reference};

use super::Engine;
use super::changes::apply_change;

/// The annotation on a layer descriptor that marks a layer committed here and kept as a
/// plain tar: `push` compresses it (with the algorithm named, `gzip`) on its first push.
/// Layers that came from elsewhere as plain tars are pushed as they are, so that their
/// digests stay those of the source.
pub const COMPRESS_ON_PUSH: &str = "io.stencil.compress-on-push";

/// The largest parent config read into memory.
const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// Choices for [`Engine::commit_snapshot`] and [`Engine::commit_config`].
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The history entry's comment (`docker commit -m`).
    pub message: Option<String>,
    /// The image's and history entry's author (`docker commit -a`, `MAINTAINER`).
    pub author: Option<String>,
    /// The history entry's `created_by`: the command that made the change.
    pub created_by: Option<String>,
    /// The container config (`Cmd`, `Env`, …) to start from instead of the parent's;
    /// `changes` apply on top of it. The builder passes the config it tracks here.
    pub config: Option<Map<String, Value>>,
    /// Dockerfile-style changes (`CMD …`, `ENV …`), applied in order (`docker commit -c`).
    pub changes: Vec<String>,
    /// The creation time of the image, its history entry and (for
    /// [`Engine::commit_snapshot`]) every file in the new layer; now when `None`. Fixing it
    /// makes the result reproducible.
    pub created: Option<DateTime<Utc>>,
    /// Keep the active snapshot (a container that goes on); the new layer's snapshot is
    /// then made on the image's first use. Without it the active snapshot becomes the new
    /// layer's snapshot and its key is gone.
    pub keep_snapshot: bool,
    /// When the snapshot has no change, add no layer: the history entry gets
    /// `empty_layer: true` (what the builder wants for a `RUN` that changed nothing).
    /// Docker's `commit` always adds a layer, so the default is `false`.
    pub omit_empty_layer: bool,
    /// The name to tag the new image with.
    pub reference: Option<Reference>,
    /// Directories the runtime made in the snapshot to mount on (absolute, like `/proc`):
    /// left out of the layer when no lower layer has them and they hold only empty
    /// directories, as docker's init layer keeps them out of `commit`.
    pub mount_points: Vec<String>,
}

/// What a commit produced.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new image, recorded (and tagged when asked).
    pub image: ImageRecord,
    /// Whether no layer was added (config-only, or an unchanged snapshot with
    /// [`CommitOptions::omit_empty_layer`]).
    pub empty_layer: bool,
}

/// A layer blob just written to the content store.
pub(crate) struct NewLayer {
    /// The blob's digest (the diff ID for a plain tar).
    pub blob_digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// sha256 of the plain tar.
    pub diff_id: Digest,
    /// The blob's media type.
    pub media_type: &'static str,
}

/// What [`Engine::write_image`] puts in the history entry it appends.
pub(crate) struct HistoryEntry<'a> {
    pub created: String,
    pub created_by: Option<&'a str>,
    pub author: Option<&'a str>,
    pub comment: Option<&'a str>,
}

impl Engine {
    /// Turns the changes of active snapshot `key` into a new image on top of `parent`
    /// (`None` for `scratch`). The snapshot's parent must be `parent`'s top layer (no
    /// parent for `scratch`). See the module documentation for what happens to `key`.
    pub fn commit_snapshot(
        &self,
        key: &str,
        parent: Option<&ImageRecord>,
        options: &CommitOptions,
    ) -> Result<Committed> {
        let parent_chain = parent.and_then(|image| image.layers.last().map(|l| &l.chain_id));
        let info = self
            .snapshots
            .stat(key)
            .with_context(|| format!("cannot commit snapshot {key}"))?;
        if info.parent.as_deref() != parent_chain.map(Digest::as_str) {
            bail!(
                "cannot commit snapshot {key}: it sits on {}, not on the top layer of the parent image ({})",
                info.parent.as_deref().unwrap_or("nothing"),
                parent_chain.map_or("nothing", Digest::as_str)
            );
        }
        let created = options.created.unwrap_or_else(Utc::now);
        let mut diff_options = DiffOptions::default().mount_points(
            options
                .mount_points
                .iter()
                .map(|dir| dir.trim_start_matches('/')),
        );
        if options.created.is_some() {
            diff_options =
                diff_options.fixed_mtime(u64::try_from(created.timestamp()).unwrap_or(0));
        }
        let written = self.write_layer(key, &diff_options)?;
        let history = HistoryEntry {
            created: created.to_rfc3339_opts(SecondsFormat::Nanos, true),
            created_by: options.created_by.as_deref(),
            author: options.author.as_deref(),
            comment: options.message.as_deref(),
        };
        let layer = match written {
            WrittenLayer::Empty(writer) if options.omit_empty_layer => {
                let _ = writer.writer.abort();
                None
            }
            WrittenLayer::Empty(writer) | WrittenLayer::Changed(writer) => {
                Some(finish_layer(writer)?)
            }
        };
        let Some(layer) = layer else {
            let image = self.write_image(parent, None, options, &history)?;
            if !options.keep_snapshot {
                self.snapshots
                    .remove(key)
                    .with_context(|| format!("cannot remove snapshot {key} after the commit"))?;
            }
            return Ok(Committed {
                image,
                empty_layer: true,
            });
        };
        let image = self.write_image(parent, Some(&layer), options, &history)?;
        let new_chain = chain_id(parent_chain, &layer.diff_id);
        self.record_committed_snapshot(key, &new_chain, options)?;
        Ok(Committed {
            image,
            empty_layer: false,
        })
    }

    /// Records a new image whose layers are `parent`'s and whose config is `parent`'s with
    /// the options' config and changes applied, and a history entry with
    /// `empty_layer: true`: the builder's `ENV`, `CMD`, `LABEL`… steps.
    /// [`CommitOptions::keep_snapshot`] and [`CommitOptions::omit_empty_layer`] do not
    /// apply.
    pub fn commit_config(
        &self,
        parent: Option<&ImageRecord>,
        options: &CommitOptions,
    ) -> Result<Committed> {
        let created = options.created.unwrap_or_else(Utc::now);
        let history = HistoryEntry {
            created: created.to_rfc3339_opts(SecondsFormat::Nanos, true),
            created_by: options.created_by.as_deref(),
            author: options.author.as_deref(),
            comment: options.message.as_deref(),
        };
        let image = self.write_image(parent, None, options, &history)?;
        Ok(Committed {
            image,
            empty_layer: true,
        })
    }

    /// Streams the diff of `key` as a plain tar into the content store's ingester; the
    /// caller commits or aborts the writer.
    fn write_layer(&self, key: &str, diff_options: &DiffOptions) -> Result<WrittenLayer> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let ingest_ref = format!(
            "commit-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let content = self.store.content();
        let writer = content
            .writer(&ingest_ref)
            .with_context(|| format!("cannot start writing the layer of snapshot {key}"))?;
        // The layer is stored as a plain tar, as docker and containers/storage keep a
        // committed layer: its digest is its diff ID (one hash, no compression), and a
        // commit costs little more than writing the tar. `push` compresses it on the way
        // to a registry (see `Engine::distributable`).
        // The tree walk (syscall-bound) and the hashing and storing of its tar run on
        // two threads.
        let mut changed = false;
        let (writer, diffed, stored) = pipelined(writer, |out| {
            let mut tracked = EntryTracker {
                inner: out,
                has_entries: false,
            };
            let diffed = self.snapshots.diff(key, &mut tracked, diff_options);
            changed = tracked.has_entries;
            diffed
        });
        // A store that failed first makes the walk fail too (a broken pipe): its error
        // is the cause.
        if let Err(error) = stored {
            let _ = writer.abort();
            return Err(anyhow::Error::from(error)
                .context(format!("cannot store the layer of snapshot {key}")));
        }
        if let Err(error) = diffed {
            let _ = writer.abort();
            return Err(anyhow::Error::from(error).context(format!(
                "cannot write the changes of snapshot {key} as a layer"
            )));
        }
        let diff_id = writer.digest();
        let pending = PendingLayer { writer, diff_id };
        Ok(if changed {
            WrittenLayer::Changed(pending)
        } else {
            WrittenLayer::Empty(pending)
        })
    }

    /// Makes the new layer's snapshot exist under `new_chain` and records it, unless the
    /// snapshot is kept (then it is made on first use).
    fn record_committed_snapshot(
        &self,
        key: &str,
        new_chain: &Digest,
        options: &CommitOptions,
    ) -> Result<()> {
        let name = new_chain.as_str();
        if self.has_snapshot(new_chain) {
            // The same change was committed before (a rebuild): its snapshot serves.
            if !options.keep_snapshot {
                self.snapshots
                    .remove(key)
                    .with_context(|| format!("cannot remove snapshot {key} after the commit"))?;
            }
            self.record_snapshot(new_chain)?;
            return Ok(());
        }
        if options.keep_snapshot {
            // The snapshot is made lazily, as containerd does: whatever needs the image's
            // files (`run`, `create`, `image mount`, a build's `FROM`) unpacks the layers
            // it lacks from their blobs. Unpacking here wrote every changed file a second
            // time (10,000 small files: most of a commit's cost), for an image that is
            // often only pushed. The container's own upper dir is never shared: it goes on
            // changing after the commit.
            return Ok(());
        }
        // The runtime's mount points stay out of the layer's tar; out of its snapshot too.
        if !options.mount_points.is_empty() {
            self.clear_placeholders(key, &options.mount_points)?;
        }
        match self.snapshots.commit(name, key) {
            Ok(()) => {}
            // Another process committed the same chain meanwhile: theirs is as good.
            Err(error) if error.kind() == SnapshotErrorKind::AlreadyExists => {
                let _ = self.snapshots.remove(key);
            }
            Err(error) => {
                return Err(anyhow::Error::from(error)
                    .context(format!("cannot keep snapshot {key} as layer {new_chain}")));
            }
        }
        self.record_snapshot(new_chain)?;
        Ok(())
    }

    /// Writes the config and manifest of a new image on `parent` (or on nothing), with
    /// `layer` on top when given, records it and tags it when `options` say so.
    pub(crate) fn write_image(
        &self,
        parent: Option<&ImageRecord>,
        layer: Option<&NewLayer>,
        options: &CommitOptions,
        history: &HistoryEntry<'_>,
    ) -> Result<ImageRecord> {
        if let Some(reference) = &options.reference
            && reference.digest().is_some()
        {
            bail!(
                "cannot tag the new image as {}: a digest cannot be chosen, give NAME[:TAG]",
                reference.familiar()
            );
        }
        let manifest_digest = self.image_manifest(parent, layer, options, history)?;
        let image = self
            .store
            .record_image(&manifest_digest, None)
            .context("cannot record the new image")?;
        if let Some(reference) = &options.reference {
            self.store
                .tag(reference, &image.manifest_digest)
                .with_context(|| format!("cannot tag the new image as {reference}"))?;
        }
        Ok(image)
    }

    /// Stores the config and manifest of a new image on `parent` (or on nothing), with
    /// `layer` on top when given; returns the manifest digest. Nothing is recorded.
    pub(crate) fn image_manifest(
        &self,
        parent: Option<&ImageRecord>,
        layer: Option<&NewLayer>,
        options: &CommitOptions,
        history: &HistoryEntry<'_>,
    ) -> Result<Digest> {
        let mut config = match parent {
            Some(image) => self.image_config(image)?,
            None => empty_config(),
        };
        // The parent's container settings, replaced when the caller tracks its own.
        let mut container_config = match &options.config {
            Some(given) => given.clone(),
            None => config
                .get("config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        for change in &options.changes {
            apply_change(&mut container_config, change)?;
        }
        // What described the parent's build container no longer describes this image.
        config.remove("container");
        config.remove("container_config");
        config.insert("created".into(), json!(history.created));
        match history.author {
            Some(author) => config.insert("author".into(), json!(author)),
            None => config.remove("author"),
        };
        // docker's image comment (`inspect .Comment`): the message of `commit -m` and
        // `import -m`; the parent's does not describe this image.
        match history.comment.filter(|comment| !comment.is_empty()) {
            Some(comment) => config.insert("comment".into(), json!(comment)),
            None => config.remove("comment"),
        };
        config.insert("config".into(), Value::Object(container_config));
        let mut diff_ids: Vec<Value> = config
            .get("rootfs")
            .and_then(|rootfs| rootfs.get("diff_ids"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(layer) = layer {
            diff_ids.push(json!(layer.diff_id.to_string()));
        }
        config.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let mut entry = Map::new();
        entry.insert("created".into(), json!(history.created));
        if let Some(created_by) = history.created_by {
            entry.insert("created_by".into(), json!(created_by));
        }
        if let Some(author) = history.author {
            entry.insert("author".into(), json!(author));
        }
        if let Some(comment) = history.comment {
            entry.insert("comment".into(), json!(comment));
        }
        if layer.is_none() {
            entry.insert("empty_layer".into(), json!(true));
        }
        let mut entries = config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        entries.push(Value::Object(entry));
        config.insert("history".into(), Value::Array(entries));

        let config_bytes = serde_json::to_vec(&config)?;
        let config_digest = self.store.put_blob(&config_bytes)?;
        let mut layers: Vec<Value> = match parent {
            Some(image) => self.layer_descriptors(image)?,
            None => Vec::new(),
        };
        if let Some(layer) = layer {
            let mut descriptor = json!({
                "mediaType": layer.media_type,
                "digest": layer.blob_digest.to_string(),
                "size": layer.size,
            });
            if layer.media_type == OCI_LAYER {
                descriptor["annotations"] = json!({COMPRESS_ON_PUSH: "gzip"});
            }
            layers.push(descriptor);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        Ok(self.store.put_blob(&serde_json::to_vec(&manifest)?)?)
    }

    /// The layer descriptors of `image` for a manifest of an image on top of it: media
    /// types in their OCI spelling, and the [`COMPRESS_ON_PUSH`] mark of layers committed
    /// here and not pushed yet.
    fn layer_descriptors(&self, image: &ImageRecord) -> Result<Vec<Value>> {
        let marked: Vec<bool> = if image.layers.iter().any(|l| l.media_type == OCI_LAYER) {
            self.manifest_json(image)?["layers"]
                .as_array()
                .map(|layers| {
                    layers
                        .iter()
                        .map(|l| l["annotations"][COMPRESS_ON_PUSH].is_string())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(image
            .layers
            .iter()
            .enumerate()
            .map(|(position, l)| {
                let mut descriptor = json!({
                    "mediaType": to_oci(&l.media_type),
                    "digest": l.blob_digest.to_string(),
                    "size": l.compressed_size,
                });
                if marked.get(position).copied().unwrap_or(false) {
                    descriptor["annotations"] = json!({COMPRESS_ON_PUSH: "gzip"});
                }
                descriptor
            })
            .collect())
    }

    /// The manifest document of `image`, as JSON.
    pub(crate) fn manifest_json(&self, image: &ImageRecord) -> Result<Value> {
        let bytes = self
            .store
            .read_blob(&image.manifest_digest, MAX_DOCUMENT_SIZE)
            .with_context(|| format!("cannot read manifest {}", image.manifest_digest))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("manifest {} is not JSON", image.manifest_digest))
    }

    /// The whole config document of `image`, as JSON.
    pub fn image_config(&self, image: &ImageRecord) -> Result<Map<String, Value>> {
        let bytes = self
            .store
            .read_blob(&image.config_digest, MAX_CONFIG_SIZE)
            .with_context(|| format!("cannot read the config of image {}", image.config_digest))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the config of image {} is not a JSON object",
                image.config_digest
            )
        })
    }
}

/// The config of an image with no layer, for the host's platform.
fn empty_config() -> Map<String, Value> {
    let platform = Platform::host();
    let mut config = Map::new();
    config.insert("architecture".into(), json!(platform.architecture));
    config.insert("os".into(), json!(platform.os));
    if let Some(variant) = &platform.variant {
        config.insert("variant".into(), json!(variant));
    }
    config.insert("config".into(), json!({}));
    config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
    config
}

/// A layer blob written to an ingest, not committed yet.
struct PendingLayer {
    writer: LocalWriter,
    diff_id: Digest,
}

enum WrittenLayer {
    /// The tar has no entry: the snapshot did not change.
    Empty(PendingLayer),
    /// The tar has entries.
    Changed(PendingLayer),
}

/// Commits a written layer blob to the content store.
fn finish_layer(pending: PendingLayer) -> Result<NewLayer> {
    let PendingLayer { writer, diff_id } = pending;
    let size = writer.offset();
    let blob_digest = writer.digest();
    // Committing a blob that is already stored (an identical commit) succeeds.
    writer
        .commit(size, &blob_digest)
        .context("cannot store the new layer")?;
    Ok(NewLayer {
        blob_digest,
        size,
        diff_id,
        media_type: OCI_LAYER,
    })
}

/// Size of the pieces a tree walk hands to the thread that hashes and stores them.
const PIPE_CHUNK: usize = 1 << 20;

/// Runs `produce` on this thread, its output going in [`PIPE_CHUNK`] pieces to another
/// thread that writes them into `sink`; returns the sink, what `produce` returned and how
/// the writing went. When the writing fails, `produce`'s writes fail with a broken pipe.
fn pipelined<W: Write + Send, T>(
    mut sink: W,
    produce: impl FnOnce(&mut dyn Write) -> T,
) -> (W, T, std::io::Result<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            let mut stored = Ok(());
            for chunk in rx {
                stored = sink.write_all(&chunk);
                if stored.is_err() {
                    break; // dropping `rx` fails the producer's next send
                }
            }
            let stored = stored.and_then(|()| sink.flush());
            (sink, stored)
        });
        let mut sender = ChunkSender {
            tx,
            buf: Vec::with_capacity(PIPE_CHUNK),
        };
        let produced = produce(&mut sender);
        let last = sender.send_rest();
        drop(sender);
        let (sink, stored) = match consumer.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (sink, produced, stored.and(last))
    })
}

/// The producer's end of [`pipelined`].
struct ChunkSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx.send(full).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the layer's writer stopped")
        })
    }

    fn send_rest(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Notes whether the tar on its way to the store holds any entry (a tar with none is only
/// zero blocks).
struct EntryTracker<W> {
    inner: W,
    has_entries: bool,
}

impl<W: Write> Write for EntryTracker<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.has_entries = self.has_entries || buf[..n].iter().any(|b| *b != 0);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::engine::ImportOptions;
    use stencil_layerstore::image::media_type::OCI_LAYER_GZIP;

    /// Commits need a snapshot store with whiteouts (character devices), so root.
    fn root_or_skip(test: &str) -> bool {
        let root = is_root();
        if !root {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs root under CI=true"
            );
            eprintln!("skipping {test}: needs root");
        }
        root
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn base_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, body) in [("etc/motd", "hello\n"), ("etc/gone", "bye\n")] {
            let mut header = tar::Header::new_ustar();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, body.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn layer_names(engine: &Engine, digest: &Digest) -> Vec<String> {
        let blob = engine.store.content().blob_path(digest);
        let mut plain = Vec::new();
        std::fs::File::open(&blob)
            .and_then(|mut file| file.read_to_end(&mut plain))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut archive = tar::Archive::new(plain.as_slice());
        archive
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|entry| {
                let entry = entry.unwrap_or_else(|e| panic!("{e}"));
                entry
                    .path()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .display()
                    .to_string()
            })
            .collect()
    }

    fn change_snapshot(engine: &Engine, key: &str, parent: &ImageRecord) {
        let top = parent.layers.last().map(|l| l.chain_id.as_str());
        engine
            .snapshots
            .prepare(key, top)
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = engine
            .snapshots
            .layer_target(key)
            .unwrap_or_else(|e| panic!("{e}"))
            .dir;
        std::fs::create_dir(dir.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("etc/new"), "new\n").unwrap_or_else(|e| panic!("{e}"));
        // An overlay whiteout: a 0/0 character device hides etc/gone.
        let path =
            std::ffi::CString::new(dir.join("etc/gone").into_os_string().into_encoded_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let made = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn commit_adds_a_layer_with_whiteouts_history_and_a_runnable_snapshot() {
        if !root_or_skip("commit_adds_a_layer") {
            return;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::open(&dir.path().join("root")).unwrap_or_else(|e| panic!("{e}"));
        let base = engine
            .import(
                &mut base_tar().as_slice(),
                &ImportOptions {
                    changes: vec!["CMD [\"/bin/sh\"]".into()],
                    source: "base.tar".into(),
                    ..ImportOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        let created = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let options = CommitOptions {
            message: Some("a change".into()),
            author: Some("Ann <ann@example.com>".into()),
            created_by: Some("sh -c edit".into()),
            changes: vec!["ENV A=1".into()],
            created: Some(created),
            reference: Some(Reference::parse("committed:1").unwrap_or_else(|e| panic!("{e}"))),
            ..CommitOptions::default()
        };

        change_snapshot(&engine, "c1", &base);
        let committed = engine
            .commit_snapshot("c1", Some(&base), &options)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let image = &committed.image;
        assert!(!committed.empty_layer);
        assert_eq!(image.layers.len(), 2);
        assert_eq!(image.layers[0], base.layers[0]);
        let top = &image.layers[1];
        // Stored as a plain tar: the blob is the diff.
        assert_eq!(top.media_type, OCI_LAYER);
        assert_eq!(top.blob_digest, top.diff_id);
        let marks = |image: &ImageRecord| -> Vec<bool> {
            let manifest = engine
                .manifest_json(image)
                .unwrap_or_else(|e| panic!("{e:#}"));
            manifest["layers"]
                .as_array()
                .map(|layers| {
                    layers
                        .iter()
                        .map(|l| l["annotations"][COMPRESS_ON_PUSH] == json!("gzip"))
                        .collect()
                })
                .unwrap_or_default()
        };
        // The imported base layer is a marked plain tar too; the mark is carried over.
        assert_eq!(marks(&base), [true]);
        assert_eq!(marks(image), [true, true], "both plain layers are marked");
        assert_eq!(
            layer_names(&engine, &top.blob_digest),
            ["etc", "etc/.wh.gone", "etc/new"]
        );
        assert!(
            engine.has_snapshot(&top.chain_id),
            "the new layer is unpacked"
        );
        assert!(
            engine.snapshots.stat("c1").is_err(),
            "the key became the layer"
        );
        let record = engine
            .store
            .snapshot(&top.chain_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record.map(|r| r.refcount), Some(1));
        let config = engine
            .image_config(image)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config["author"], json!("Ann <ann@example.com>"));
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]));
        assert_eq!(config["config"]["Env"], json!(["A=1"]));
        assert_eq!(config["created"], json!("2023-11-14T22:13:20.000000000Z"));
        let history = config["history"].as_array().cloned().unwrap_or_default();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1]["comment"], json!("a change"));
        assert_eq!(config["comment"], json!("a change"), "docker's .Comment");
        assert_eq!(history[1]["created_by"], json!("sh -c edit"));
        assert_eq!(history[1].get("empty_layer"), None);
        let tagged = engine
            .find_image("committed:1")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(tagged.manifest_digest, image.manifest_digest);

        // The same change with the same fixed time gives the same image, and a kept
        // snapshot stays.
        change_snapshot(&engine, "c2", &base);
        let again = engine
            .commit_snapshot(
                "c2",
                Some(&base),
                &CommitOptions {
                    keep_snapshot: true,
                    ..options.clone()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(again.image.manifest_digest, image.manifest_digest);
        assert!(engine.snapshots.stat("c2").is_ok(), "kept");

        // A new change committed from a kept snapshot: no second copy of its files until
        // the image is used, then an unpack from the blob.
        let kept = engine
            .snapshots
            .layer_target("c2")
            .unwrap_or_else(|e| panic!("{e}"))
            .dir;
        std::fs::write(kept.join("etc/later"), "later\n").unwrap_or_else(|e| panic!("{e}"));
        let later = engine
            .commit_snapshot(
                "c2",
                Some(&base),
                &CommitOptions {
                    keep_snapshot: true,
                    ..options.clone()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        let later_top = &later.image.layers[1];
        assert_ne!(later_top.chain_id, top.chain_id);
        assert!(!engine.has_snapshot(&later_top.chain_id), "made lazily");
        let records = engine.store.snapshots().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !records.iter().any(|r| r.chain_id == later_top.chain_id),
            "no record of a snapshot not made"
        );
        let checked = engine.fsck(false).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(checked.is_clean(), "{checked:?}");
        engine
            .unpack_image(&later.image, &|_| {})
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(engine.has_snapshot(&later_top.chain_id), "unpacked on use");
        // The unpack verified the blob against the diff ID the commit recorded.
        let record = engine
            .store
            .snapshot(&later_top.chain_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record.map(|r| r.refcount), Some(1));

        // No change: no layer when asked, an empty_layer history entry.
        let top_chain = top.chain_id.as_str();
        engine
            .snapshots
            .prepare("c3", Some(top_chain))
            .unwrap_or_else(|e| panic!("{e}"));
        let unchanged = engine
            .commit_snapshot(
                "c3",
                Some(image),
                &CommitOptions {
                    omit_empty_layer: true,
                    ..CommitOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(unchanged.empty_layer);
        assert_eq!(unchanged.image.layers, image.layers);
        assert!(engine.snapshots.stat("c3").is_err());
        let config = engine
            .image_config(&unchanged.image)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config["history"][2]["empty_layer"], json!(true));
        assert_eq!(
            marks(&unchanged.image),
            [true, true],
            "the parent's marks stay"
        );
        // Its first push compresses the marked layer: same config and layers by diff ID.
        let shipped = engine
            .distributable(&unchanged.image, &|_| {})
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(shipped.id, unchanged.image.id);
        assert_eq!(shipped.config_digest, unchanged.image.config_digest);
        assert_ne!(shipped.manifest_digest, unchanged.image.manifest_digest);
        for (shipped, plain) in shipped.layers.iter().zip(&unchanged.image.layers) {
            assert_eq!(shipped.media_type, OCI_LAYER_GZIP);
            assert_eq!(shipped.diff_id, plain.diff_id);
            assert_eq!(shipped.chain_id, plain.chain_id);
        }
        assert_eq!(marks(&shipped), [false, false]);
        let again = engine
            .distributable(&shipped, &|_| {})
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            again.manifest_digest, shipped.manifest_digest,
            "nothing left to do"
        );
        let checked = engine.fsck(false).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(checked.is_clean(), "{checked:?}");

        // A config-only step on scratch, then a wrong parent is refused.
        let scratch = engine
            .commit_config(
                None,
                &CommitOptions {
                    changes: vec!["WORKDIR /srv".into()],
                    ..CommitOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(scratch.image.layers.is_empty());
        let config = engine
            .image_config(&scratch.image)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config["config"]["WorkingDir"], json!("/srv"));
        engine
            .snapshots
            .prepare("c4", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let wrong = engine.commit_snapshot("c4", Some(&base), &CommitOptions::default());
        let message = format!(
            "{:#}",
            wrong.err().map(|e| e.to_string()).unwrap_or_default()
        );
        assert!(message.contains("not on the top layer"), "{message}");
    }
}
