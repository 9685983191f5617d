//! [`Store`]: the content store, the metadata database and the OCI layout of one root.
//!
//! Opening a store creates the layout when missing and recovers from interrupted work:
//! ingest directories left without data or ref by a killed commit or abort are removed.
//! Every change to images and tags is one database transaction, followed by an atomic
//! rewrite of `ROOT/index.json` under the `ROOT/lock` flock so that the store stays a
//! valid OCI image layout that other tools (skopeo, umoci) read directly.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{OptionalExtension, params};
use stencil_reference::{Digest, Reference};

use crate::content::{Ingester, LocalContent, Provider};
use crate::error::{Error, Result};
use crate::image::{
    Document, ImageConfig, MAX_DOCUMENT_SIZE, chain_ids, descriptor_digest, manifest_layers,
    parse_document,
};
use crate::meta::{self, Database, IMAGE_COLUMNS, ImageRecord, SnapshotRecord};

/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The largest config blob read into memory.
const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// One stencil store root.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    content: LocalContent,
    database: Database,
}

impl Store {
    /// Opens (creating when needed, mode 0700) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(Error::io(&root))?;
        let content = LocalContent::open(&root)?;
        for status in content.ingests()? {
            if status.is_leftover() {
                crate::content::remove_unheld_ingest(&status.dir)?;
            }
        }
        let database = Database::open(&root.join("stencil.db"))?;
        let store = Store {
            root,
            content,
            database,
        };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.root.join("index.json").exists() {
            store.rewrite_index()?;
        }
        Ok(store)
    }

    /// The store root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store: [`crate::content::Provider`], [`crate::content::Ingester`] and
    /// [`crate::content::Manager`].
    pub fn content(&self) -> &LocalContent {
        &self.content
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Streams `reader` into the content store and commits it, verified against
    /// `expected` (digest and size) when given, else under the sha256 of what was read.
    /// Returns the digest and size.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        use crate::content::ContentWriter;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let ingest_ref = format!(
            "ingest-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            expected.map_or("unknown", |(digest, _)| digest.as_str())
        );
        let mut writer = self.content.writer(&ingest_ref)?;
        let copied =
            std::io::copy(reader, &mut writer).map_err(Error::io(self.content.ingest_root()));
        if let Err(error) = copied {
            writer.abort()?;
            return Err(error);
        }
        let (digest, size) = match expected {
            Some((digest, size)) => (digest.clone(), size),
            None => (writer.digest(), writer.offset()),
        };
        let result = writer.commit(size, &digest);
        if let Err(error) = result {
            // A short write keeps its ingest for resuming; this caller will not resume.
            let _ = self.content.abort(&ingest_ref);
            return Err(error);
        }
        Ok((digest, size))
    }

    /// Stores `bytes` as a blob and returns its sha256 digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = crate::content::sha256_digest(bytes);
        if !self.content.contains(&digest)? {
            self.ingest(&mut &bytes[..], Some((&digest, bytes.len() as u64)))?;
        }
        Ok(digest)
    }

    /// Reads a whole blob of at most `limit` bytes (manifests, configs).
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let info = self.content.info(digest)?;
        if info.size > limit {
            return Err(Error::DocumentTooLarge {
                digest: Some(digest.clone()),
                size: info.size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(info.size as usize);
        let path = self.content.blob_path(digest);
        self.content
            .open(digest)?
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(Error::io(path))?;
        Ok(bytes)
    }

    /// Records the image whose manifest `manifest_digest` is in the content store, with its
    /// config and layers (which must be there too), chosen from the index `index_digest`
    /// when there was one. Recording an image twice returns the existing record.
    pub fn record_image(
        &self,
        manifest_digest: &Digest,
        index_digest: Option<&Digest>,
    ) -> Result<ImageRecord> {
        let manifest_bytes = self.read_blob(manifest_digest, MAX_DOCUMENT_SIZE)?;
        let parsed = parse_document(&manifest_bytes, None, Some(manifest_digest))?;
        let Document::Manifest(manifest) = parsed.document else {
            return Err(Error::InvalidDocument {
                what: "manifest",
                digest: Some(manifest_digest.clone()),
                reason: "this is an index, not an image manifest; choose a platform first"
                    .to_owned(),
            });
        };
        let config_digest = descriptor_digest(manifest.config())?;
        let config = ImageConfig::parse(
            &self.read_blob(&config_digest, MAX_CONFIG_SIZE)?,
            Some(&config_digest),
        )?;
        let layers = manifest_layers(&manifest)?;
        if layers.len() != config.diff_ids.len() {
            return Err(Error::InvalidDocument {
                what: "manifest",
                digest: Some(manifest_digest.clone()),
                reason: format!(
                    "{} layers but config {config_digest} lists {} diff ids",
                    layers.len(),
                    config.diff_ids.len()
                ),
            });
        }
        let chains = chain_ids(&config.diff_ids);
        let size = image_size(manifest_bytes.len(), &manifest, &layers);
        let platform = config.platform();
        let mut referenced = vec![manifest_digest.clone(), config_digest.clone()];
        referenced.extend(index_digest.cloned());
        referenced.extend(layers.iter().map(|(digest, _, _)| digest.clone()));
        let id = self.database.write(|transaction| {
            let database = |source| self.database.error(source);
            let existing: Option<i64> = transaction
                .query_row(
                    "SELECT id FROM images WHERE manifest_digest = ?1",
                    [manifest_digest.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database)?;
            if let Some(id) = existing {
                if let Some(index_digest) = index_digest {
                    transaction
                        .execute(
                            "UPDATE images SET index_digest = ?1 WHERE id = ?2 AND index_digest IS NULL",
                            params![index_digest.as_str(), id],
                        )
                        .map_err(database)?;
                }
                return Ok(id);
            }
            self.claim_blobs(transaction, &referenced)?;
            transaction
                .execute(
                    "INSERT INTO images (manifest_digest, manifest_media_type, manifest_size, config_digest,
                        index_digest, os, architecture, variant, created, size, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        manifest_digest.as_str(),
                        parsed.media_type,
                        manifest_bytes.len() as i64,
                        config_digest.as_str(),
                        index_digest.map(Digest::as_str),
                        platform.os,
                        platform.architecture,
                        platform.variant,
                        config.created,
                        size as i64,
                        unix_now(),
                    ],
                )
                .map_err(database)?;
            let id = transaction.last_insert_rowid();
            for (position, ((blob, media_type, size), (diff_id, chain_id))) in
                layers.iter().zip(config.diff_ids.iter().zip(&chains)).enumerate()
            {
                // The tar's size is known when the blob is the tar, or from another
                // image's copy of the same layer; otherwise the first unpack records it.
                let plain = (blob == diff_id).then_some(*size as i64);
                transaction
                    .execute(
                        "INSERT INTO layers (image_id, position, blob_digest, media_type, diff_id, chain_id, compressed_size, uncompressed_size)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8,
                            (SELECT uncompressed_size FROM layers WHERE diff_id = ?5 AND uncompressed_size IS NOT NULL LIMIT 1)))",
                        params![id, position as i64, blob.as_str(), media_type, diff_id.as_str(), chain_id.as_str(), *size as i64, plain],
                    )
                    .map_err(database)?;
            }
            let distinct: BTreeSet<&str> = chains.iter().map(Digest::as_str).collect();
            for chain_id in distinct {
                transaction
                    .execute("UPDATE snapshots SET refcount = refcount + 1 WHERE chain_id = ?1", [chain_id])
                    .map_err(database)?;
            }
            Ok(id)
        })?;
        self.image_by_id(id)
    }

    /// Records that the layer `diff_id` is a tar of `size` bytes, for every image that has
    /// it (learnt when it is unpacked; docker's and podman's image size is the sum of
    /// these).
    pub fn set_uncompressed_size(&self, diff_id: &Digest, size: u64) -> Result<()> {
        let database = self.database();
        database.write(|transaction| {
            transaction
                .execute(
                    "UPDATE layers SET uncompressed_size = ?1 WHERE diff_id = ?2 AND uncompressed_size IS NOT ?1",
                    params![size as i64, diff_id.as_str()],
                )
                .map_err(|source| database.error(source))
        })?;
        Ok(())
    }

    /// Gives `image` the manifest `manifest_digest` (in the content store, as its blobs):
    /// the same config, so the same layers by diff ID, in other blobs; `push` uses it when
    /// it compresses the plain-tar layers of a committed image for a registry. The image
    /// keeps its tags, containers and snapshots; the blobs only the old manifest used are
    /// deleted. When another record already has that manifest, it is returned and
    /// `image` is left alone.
    pub fn replace_manifest(
        &self,
        image: &ImageRecord,
        manifest_digest: &Digest,
    ) -> Result<ImageRecord> {
        if let Ok(existing) = self.image(manifest_digest)
            && existing.manifest_digest == *manifest_digest
        {
            return Ok(existing);
        }
        let manifest_bytes = self.read_blob(manifest_digest, MAX_DOCUMENT_SIZE)?;
        let parsed = parse_document(&manifest_bytes, None, Some(manifest_digest))?;
        let invalid = |reason: String| Error::InvalidDocument {
            what: "manifest",
            digest: Some(manifest_digest.clone()),
            reason,
        };
        let Document::Manifest(manifest) = parsed.document else {
            return Err(invalid(
                "this is an index, not an image manifest".to_owned(),
            ));
        };
        let config_digest = descriptor_digest(manifest.config())?;
        if config_digest != image.config_digest {
            return Err(invalid(format!(
                "its config is {config_digest}, not the image's {}",
                image.config_digest
            )));
        }
        let layers = manifest_layers(&manifest)?;
        if layers.len() != image.layers.len() {
            return Err(invalid(format!(
                "{} layers where the image has {}",
                layers.len(),
                image.layers.len()
            )));
        }
        let size = image_size(manifest_bytes.len(), &manifest, &layers);
        let mut referenced = vec![manifest_digest.clone()];
        referenced.extend(layers.iter().map(|(digest, _, _)| digest.clone()));
        self.database.write(|transaction| {
            let database = |source| self.database.error(source);
            self.claim_blobs(transaction, &referenced)?;
            let changed = transaction
                .execute(
                    "UPDATE images SET manifest_digest = ?1, manifest_media_type = ?2, manifest_size = ?3, size = ?4
                     WHERE id = ?5 AND manifest_digest = ?6",
                    params![
                        manifest_digest.as_str(),
                        parsed.media_type,
                        manifest_bytes.len() as i64,
                        size as i64,
                        image.id,
                        image.manifest_digest.as_str(),
                    ],
                )
                .map_err(database)?;
            if changed != 1 {
                // Another process (a concurrent push of the same image) may have made the
                // same replacement first: compression is deterministic, so it is this one.
                let current: Option<String> = transaction
                    .query_row(
                        "SELECT manifest_digest FROM images WHERE id = ?1",
                        [image.id],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(database)?;
                if current.as_deref() == Some(manifest_digest.as_str()) {
                    return Ok(());
                }
                return Err(Error::ImageNotFound {
                    reference: image.manifest_digest.to_string(),
                });
            }
            for (position, (blob, media_type, size)) in layers.iter().enumerate() {
                transaction
                    .execute(
                        "UPDATE layers SET blob_digest = ?1, media_type = ?2, compressed_size = ?3
                         WHERE image_id = ?4 AND position = ?5",
                        params![blob.as_str(), media_type, *size as i64, image.id, position as i64],
                    )
                    .map_err(database)?;
            }
            Ok(())
        })?;
        self.rewrite_index()?;
        let mut old: Vec<Digest> = vec![image.manifest_digest.clone()];
        old.extend(image.layers.iter().map(|layer| layer.blob_digest.clone()));
        old.retain(|digest| !referenced.contains(digest));
        self.discard_blobs(&old)?;
        self.image_by_id(image.id)
    }

    /// Takes `digests` off the garbage collector's pending list and checks each is stored,
    /// inside the transaction that records what uses them: a garbage collection deletes a
    /// blob only in a transaction that still finds it pending.
    fn claim_blobs(
        &self,
        transaction: &rusqlite::Transaction<'_>,
        digests: &[Digest],
    ) -> Result<()> {
        for digest in digests {
            transaction
                .execute(
                    "DELETE FROM gc_pending WHERE digest = ?1",
                    [digest.as_str()],
                )
                .map_err(|source| self.database.error(source))?;
            if !self.content.contains(digest)? {
                return Err(Error::BlobNotFound {
                    digest: digest.clone(),
                });
            }
        }
        Ok(())
    }

    fn image_by_id(&self, id: i64) -> Result<ImageRecord> {
        self.database.read(|connection| {
            let mut image = connection
                .query_row(
                    &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
                    [id],
                    meta::image_from_row,
                )
                .map_err(|source| self.database.error(source))?;
            meta::load_layers(connection, &mut image)
                .map_err(|source| self.database.error(source))?;
            Ok(image)
        })
    }

    /// The image whose manifest (or index) is `digest`.
    pub fn image(&self, digest: &Digest) -> Result<ImageRecord> {
        let id: Option<i64> = self.database.read(|connection| {
            connection
                .query_row(
                    "SELECT id FROM images WHERE manifest_digest = ?1 OR index_digest = ?1 OR config_digest = ?1
                     ORDER BY manifest_digest = ?1 DESC LIMIT 1",
                    [digest.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|source| self.database.error(source))
        })?;
        match id {
            Some(id) => self.image_by_id(id),
            None => Err(Error::ImageNotFound {
                reference: digest.to_string(),
            }),
        }
    }

    /// The image `reference` names: by digest when it has one, else by its tag.
    pub fn resolve(&self, reference: &Reference) -> Result<ImageRecord> {
        if let Some(digest) = reference.digest() {
            return self.image(digest).map_err(|error| match error {
                Error::ImageNotFound { .. } => Error::ImageNotFound {
                    reference: reference.canonical(),
                },
                other => other,
            });
        }
        let key = tag_key(reference)?;
        let id: Option<i64> = self.database.read(|connection| {
            connection
                .query_row("SELECT image_id FROM tags WHERE name = ?1", [&key], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(|source| self.database.error(source))
        })?;
        match id {
            Some(id) => self.image_by_id(id),
            None => Err(Error::ImageNotFound { reference: key }),
        }
    }

    /// Every image, oldest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let ids: Vec<i64> = self.database.read(|connection| {
            let mut statement = connection
                .prepare("SELECT id FROM images ORDER BY id")
                .map_err(|source| self.database.error(source))?;
            statement
                .query_map([], |row| row.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
                .map_err(|source| self.database.error(source))
        })?;
        ids.into_iter().map(|id| self.image_by_id(id)).collect()
    }

    /// Every tag as `(canonical name:tag, manifest digest)`, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        self.database.read(|connection| {
            let mut statement = connection
                .prepare("SELECT t.name, i.manifest_digest FROM tags t JOIN images i ON i.id = t.image_id ORDER BY t.name")
                .map_err(|source| self.database.error(source))?;
            statement
                .query_map([], |row| Ok((row.get::<_, String>(0)?, meta::digest_column(row, 1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| self.database.error(source))
        })
    }

    /// The tags of the image `manifest_digest`.
    pub fn tags_of(&self, manifest_digest: &Digest) -> Result<Vec<String>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, digest)| digest == manifest_digest)
            .map(|(name, _)| name)
            .collect())
    }

    /// Points the tag of `reference` at the recorded image `manifest_digest`, moving it from
    /// any other image, and rewrites `index.json`.
    pub fn tag(&self, reference: &Reference, manifest_digest: &Digest) -> Result<()> {
        let key = tag_key(reference)?;
        self.database.write(|transaction| {
            let id: Option<i64> = transaction
                .query_row("SELECT id FROM images WHERE manifest_digest = ?1", [manifest_digest.as_str()], |row| row.get(0))
                .optional()
                .map_err(|source| self.database.error(source))?;
            let Some(id) = id else {
                return Err(Error::ImageNotFound {
                    reference: manifest_digest.to_string(),
                });
            };
            transaction
                .execute(
                    "INSERT INTO tags (name, image_id) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET image_id = ?2",
                    params![key, id],
                )
                .map_err(|source| self.database.error(source))?;
            Ok(())
        })?;
        self.rewrite_index()
    }

    /// Removes the tag of `reference`; whether it existed. The image stays (see
    /// [`Store::remove_image`]).
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        let key = tag_key(reference)?;
        let removed = self.database.write(|transaction| {
            transaction
                .execute("DELETE FROM tags WHERE name = ?1", [&key])
                .map_err(|source| self.database.error(source))
        })?;
        self.rewrite_index()?;
        Ok(removed > 0)
    }

    /// Records that the snapshot `key` (directory id `snapshot_id`) holds the unpacked chain
    /// `chain_id`; its reference count is computed from the images and containers using
    /// the chain. Recording it again updates key and id.
    pub fn record_snapshot(
        &self,
        chain_id: &Digest,
        key: &str,
        snapshot_id: Option<u64>,
    ) -> Result<SnapshotRecord> {
        self.database.write(|transaction| {
            let database = |source| self.database.error(source);
            let refcount = meta::computed_refcount(transaction, chain_id.as_str()).map_err(database)?;
            transaction
                .execute(
                    "INSERT INTO snapshots (chain_id, key, snapshot_id, refcount) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(chain_id) DO UPDATE SET key = ?2, snapshot_id = ?3, refcount = ?4",
                    params![chain_id.as_str(), key, snapshot_id.map(|id| id as i64), refcount as i64],
                )
                .map_err(database)?;
            Ok(SnapshotRecord {
                chain_id: chain_id.clone(),
                key: key.to_owned(),
                snapshot_id,
                refcount,
            })
        })
    }

    /// The snapshot of the chain `chain_id`, when one is recorded.
    pub fn snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotRecord>> {
        self.database.read(|connection| {
            connection
                .query_row(
                    "SELECT chain_id, key, snapshot_id, refcount FROM snapshots WHERE chain_id = ?1",
                    [chain_id.as_str()],
                    meta::snapshot_from_row,
                )
                .optional()
                .map_err(|source| self.database.error(source))
        })
    }

    /// Every recorded snapshot.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        self.database.read(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT chain_id, key, snapshot_id, refcount FROM snapshots ORDER BY chain_id",
                )
                .map_err(|source| self.database.error(source))?;
            statement
                .query_map([], meta::snapshot_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| self.database.error(source))
        })
    }

    /// Takes the store-wide `ROOT/lock` exclusively (blocking) until the guard drops.
    pub(crate) fn lock_root(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(&path)(std::io::Error::from(errno)))
    }

    /// Rewrites `ROOT/index.json` from the tags in the database, atomically. Done under the
    /// root lock and from the database's current state, so the last writer always writes
    /// the newest tags.
    pub fn rewrite_index(&self) -> Result<()> {
        let _lock = self.lock_root()?;
        let rows: Vec<(String, ImageRecord)> = self.database.read(|connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT t.name, {} FROM tags t JOIN images i ON i.id = t.image_id ORDER BY t.name",
                    IMAGE_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ")
                ))
                .map_err(|source| self.database.error(source))?;
            statement
                .query_map([], |row| {
                    let name: String = row.get(0)?;
                    let image = meta::image_from_row_at(row, 1)?;
                    Ok((name, image))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| self.database.error(source))
        })?;
        let manifests: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, image)| index_entry(image, name))
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::image::media_type::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index)
            .map_err(|error| Error::io(self.root.join("index.json"))(error.into()))?;
        write_atomically(&self.root.join("index.json"), &bytes)
    }
}

/// The `index.json` entry of `image` under the name `name`.
pub(crate) fn index_entry(image: &ImageRecord, name: &str) -> serde_json::Value {
    let mut platform = serde_json::json!({
        "architecture": image.platform.architecture,
        "os": image.platform.os,
    });
    if let Some(variant) = &image.platform.variant {
        platform["variant"] = serde_json::Value::String(variant.clone());
    }
    serde_json::json!({
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest.as_str(),
        "size": image.manifest_size,
        "annotations": { REF_NAME_ANNOTATION: name },
        "platform": platform,
    })
}

/// `name:tag` of a reference, the key of the tags table.
pub(crate) fn tag_key(reference: &Reference) -> Result<String> {
    match reference.tag() {
        Some(tag) => Ok(format!("{}:{}", reference.name(), tag.as_str())),
        None => Err(Error::MissingTag {
            reference: reference.canonical(),
        }),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Replaces `path` with `bytes` so that readers see the old or the new file, never a mix:
/// write a temporary file beside it, fsync, rename, fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(Error::io(dir))?;
    temporary
        .write_all(bytes)
        .map_err(Error::io(temporary.path()))?;
    temporary
        .as_file()
        .sync_all()
        .map_err(Error::io(temporary.path()))?;
    std::fs::set_permissions(
        temporary.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(Error::io(temporary.path()))?;
    temporary
        .persist(path)
        .map_err(|error| Error::io(path)(error.error))?;
    crate::content::sync_directory(dir)
}

/// What an image takes in the store: its manifest, config and layer blobs.
fn image_size(
    manifest_len: usize,
    manifest: &oci_spec::image::ImageManifest,
    layers: &[(Digest, String, u64)],
) -> u64 {
    manifest_len as u64
        + manifest.config().size()
        + layers.iter().map(|(_, _, size)| size).sum::<u64>()
}
