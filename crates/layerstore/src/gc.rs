//! Removing images and collecting garbage without ever leaving a dangling record.
//!
//! Deleting is two-phase. First, one transaction removes the image's rows, releases its
//! snapshots (rows whose reference count reaches zero are deleted and returned to the
//! caller, who removes the directories through the snapshotter) and marks each blob that
//! no image uses any more as *pending* in `gc_pending`. Then each pending blob is deleted
//! in its own transaction that first checks it is still pending and unused. Recording an
//! image claims its blobs (removes them from `gc_pending`) in the same transaction that
//! checks they exist, so a concurrent pull either keeps a blob alive or sees it gone and
//! fetches it again.
//!
//! An interruption at any point leaves a consistent store: no record names a deleted blob;
//! at worst unused blobs stay pending until the next [`Store::collect_garbage`] or fsck
//! repair, and released snapshot directories stay until fsck repair removes them.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use stencil_reference::{Digest, Reference};

use crate::content::{Manager, Provider};
use crate::error::{Error, Result};
use crate::meta::{self, SnapshotRecord};
use crate::store::{Store, tag_key};

/// What [`Store::remove_image`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Tags removed (`name:tag`).
    pub untagged: Vec<String>,
    /// The manifest digest of the image deleted, when the image itself went.
    pub deleted: Option<Digest>,
    /// Blobs deleted from the content store.
    pub blobs_deleted: Vec<Digest>,
    /// Snapshots no longer used by anything: their records are gone and the caller should
    /// remove them from the snapshotter.
    pub snapshots_released: Vec<SnapshotRecord>,
}

/// Whether any image or hold still references `digest`.
fn is_referenced(connection: &Connection, digest: &str) -> rusqlite::Result<bool> {
    connection.query_row(
        "SELECT EXISTS(SELECT 1 FROM images WHERE manifest_digest = ?1 OR config_digest = ?1 OR index_digest = ?1)
             OR EXISTS(SELECT 1 FROM layers WHERE blob_digest = ?1)
             OR EXISTS(SELECT 1 FROM blob_holds WHERE digest = ?1)",
        [digest],
        |row| row.get(0),
    )
}

impl Store {
    /// Removes `reference` like `docker rmi`: a tag is removed; the image itself is deleted
    /// when it was named by digest or its last tag went, unless a container uses it
    /// ([`crate::ErrorKind::ImageInUse`]). Blobs no other image uses are deleted.
    pub fn remove_image(&self, reference: &Reference) -> Result<Removal> {
        let image = self.resolve(reference)?;
        let database = self.database();
        let by_tag = match reference.digest() {
            None => Some(tag_key(reference)?),
            Some(_) => None,
        };
        let mut removal = database.write(|transaction| {
            let error = |source| database.error(source);
            let mut removal = Removal::default();
            if let Some(key) = &by_tag {
                transaction.execute("DELETE FROM tags WHERE name = ?1", [key]).map_err(error)?;
                removal.untagged.push(key.clone());
                let remaining: i64 = transaction
                    .query_row("SELECT COUNT(*) FROM tags WHERE image_id = ?1", [image.id], |row| row.get(0))
                    .map_err(error)?;
                if remaining > 0 {
                    return Ok(removal);
                }
            }
            let container: Option<String> = transaction
                .query_row("SELECT substr(id, 1, 12) FROM containers WHERE image_id = ?1 LIMIT 1", [image.id], |row| row.get(0))
                .optional()
                .map_err(error)?;
            if let Some(container) = container {
                return Err(Error::ImageInUse {
                    reference: reference.canonical(),
                    container,
                });
            }
            let mut statement = transaction.prepare("DELETE FROM tags WHERE image_id = ?1 RETURNING name").map_err(error)?;
            let names = statement
                .query_map([image.id], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(error)?;
            removal.untagged.extend(names);
            transaction.execute("DELETE FROM images WHERE id = ?1", [image.id]).map_err(error)?;
            removal.deleted = Some(image.manifest_digest.clone());
            let chains: BTreeSet<&str> = image.layers.iter().map(|layer| layer.chain_id.as_str()).collect();
            for chain_id in chains {
                transaction
                    .execute("UPDATE snapshots SET refcount = refcount - 1 WHERE chain_id = ?1 AND refcount > 0", [chain_id])
                    .map_err(error)?;
                let released = transaction
                    .query_row(
                        "DELETE FROM snapshots WHERE chain_id = ?1 AND refcount = 0 RETURNING chain_id, key, snapshot_id, refcount",
                        [chain_id],
                        meta::snapshot_from_row,
                    )
                    .optional()
                    .map_err(error)?;
                removal.snapshots_released.extend(released);
            }
            let mut blobs: BTreeSet<&str> = image.layers.iter().map(|layer| layer.blob_digest.as_str()).collect();
            blobs.insert(image.manifest_digest.as_str());
            blobs.insert(image.config_digest.as_str());
            if let Some(index) = &image.index_digest {
                blobs.insert(index.as_str());
            }
            for blob in blobs {
                if !is_referenced(transaction, blob).map_err(error)? {
                    transaction
                        .execute("INSERT OR IGNORE INTO gc_pending (digest) VALUES (?1)", [blob])
                        .map_err(error)?;
                }
            }
            Ok(removal)
        })?;
        self.rewrite_index()?;
        removal.blobs_deleted = self.delete_pending()?;
        Ok(removal)
    }

    /// Deletes every blob that no image references and that was committed at least
    /// `min_age` ago (younger blobs may belong to a pull that has not recorded its image
    /// yet). Returns the digests deleted.
    pub fn collect_garbage(&self, min_age: Duration) -> Result<Vec<Digest>> {
        let now = SystemTime::now();
        let mut candidates = Vec::new();
        self.content().walk(&mut |info| {
            let age = now.duration_since(info.committed_at).unwrap_or_default();
            if age >= min_age {
                candidates.push(info.digest);
            }
            Ok(())
        })?;
        self.mark_unreferenced_pending(&candidates)?;
        self.delete_pending()
    }

    /// Deletes those of `digests` that no image references and nothing holds: the blobs a
    /// failed load stored before it found the archive bad. Returns the digests deleted.
    pub fn discard_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.mark_unreferenced_pending(digests)?;
        self.delete_pending()
    }

    /// Queues those of `digests` that no image references and nothing holds for deletion
    /// (`gc_pending`), in one transaction.
    fn mark_unreferenced_pending(&self, digests: &[Digest]) -> Result<()> {
        let database = self.database();
        database.write(|transaction| {
            for digest in digests {
                if !is_referenced(transaction, digest.as_str())
                    .map_err(|source| database.error(source))?
                {
                    transaction
                        .execute(
                            "INSERT OR IGNORE INTO gc_pending (digest) VALUES (?1)",
                            [digest.as_str()],
                        )
                        .map_err(|source| database.error(source))?;
                }
            }
            Ok(())
        })
    }

    /// Deletes the pending blobs, each in a transaction that re-checks it.
    pub(crate) fn delete_pending(&self) -> Result<Vec<Digest>> {
        let database = self.database();
        let pending: Vec<Digest> = database.read(|connection| {
            let mut statement = connection
                .prepare("SELECT digest FROM gc_pending ORDER BY digest")
                .map_err(|source| database.error(source))?;
            statement
                .query_map([], |row| meta::digest_column(row, 0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| database.error(source))
        })?;
        let mut deleted = Vec::new();
        for digest in pending {
            let removed = database.write(|transaction| {
                let error = |source| database.error(source);
                let still_pending = transaction
                    .execute(
                        "DELETE FROM gc_pending WHERE digest = ?1",
                        params![digest.as_str()],
                    )
                    .map_err(error)?
                    > 0;
                if !still_pending || is_referenced(transaction, digest.as_str()).map_err(error)? {
                    return Ok(false);
                }
                match self.content().delete(&digest) {
                    Ok(()) => Ok(true),
                    Err(Error::BlobNotFound { .. }) => Ok(false),
                    Err(other) => Err(other),
                }
            })?;
            if removed {
                deleted.push(digest);
            }
        }
        Ok(deleted)
    }

    /// Keeps `digests` from garbage collection on behalf of `holder` (for example the
    /// registry server's `registry:REPO`), whether or not an image uses them. Each blob
    /// must be in the content store; claiming and checking happen in one transaction, so a
    /// concurrent collection either keeps the blob or the hold fails with
    /// [`crate::ErrorKind::BlobNotFound`].
    pub fn hold_blobs(&self, holder: &str, digests: &[Digest]) -> Result<()> {
        let database = self.database();
        database.write(|transaction| {
            let error = |source| database.error(source);
            for digest in digests {
                transaction
                    .execute(
                        "DELETE FROM gc_pending WHERE digest = ?1",
                        [digest.as_str()],
                    )
                    .map_err(error)?;
                if !self.content().contains(digest)? {
                    return Err(Error::BlobNotFound {
                        digest: digest.clone(),
                    });
                }
                transaction
                    .execute(
                        "INSERT OR IGNORE INTO blob_holds (holder, digest) VALUES (?1, ?2)",
                        params![holder, digest.as_str()],
                    )
                    .map_err(error)?;
            }
            Ok(())
        })
    }

    /// Drops `holder`'s hold on `digest` (every hold of `holder` when `digest` is `None`).
    /// Blobs nothing references any more become pending and are deleted by the next
    /// garbage collection, not at once: the registry's deletes are lazy like
    /// docker-registry's. Returns whether a hold went.
    pub fn release_blobs(&self, holder: &str, digest: Option<&Digest>) -> Result<bool> {
        let database = self.database();
        database.write(|transaction| {
            let error = |source| database.error(source);
            let released: Vec<String> = match digest {
                Some(digest) => transaction
                    .prepare(
                        "DELETE FROM blob_holds WHERE holder = ?1 AND digest = ?2 RETURNING digest",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![holder, digest.as_str()], |row| row.get(0))?
                            .collect()
                    }),
                None => transaction
                    .prepare("DELETE FROM blob_holds WHERE holder = ?1 RETURNING digest")
                    .and_then(|mut statement| {
                        statement
                            .query_map(params![holder], |row| row.get(0))?
                            .collect()
                    }),
            }
            .map_err(error)?;
            for blob in &released {
                if !is_referenced(transaction, blob).map_err(error)? {
                    transaction
                        .execute(
                            "INSERT OR IGNORE INTO gc_pending (digest) VALUES (?1)",
                            [blob],
                        )
                        .map_err(error)?;
                }
            }
            Ok(!released.is_empty())
        })
    }

    /// The holders keeping `digest` from garbage collection.
    pub fn blob_holders(&self, digest: &Digest) -> Result<Vec<String>> {
        let database = self.database();
        database.read(|connection| {
            connection
                .prepare("SELECT holder FROM blob_holds WHERE digest = ?1 ORDER BY holder")
                .and_then(|mut statement| {
                    statement
                        .query_map([digest.as_str()], |row| row.get(0))?
                        .collect()
                })
                .map_err(|source| database.error(source))
        })
    }

    /// Every hold: `(holder, digest)`, sorted.
    pub fn blob_holds(&self) -> Result<Vec<(String, Digest)>> {
        let database = self.database();
        database.read(|connection| {
            connection
                .prepare("SELECT holder, digest FROM blob_holds ORDER BY holder, digest")
                .and_then(|mut statement| {
                    statement
                        .query_map([], |row| Ok((row.get(0)?, meta::digest_column(row, 1)?)))?
                        .collect()
                })
                .map_err(|source| database.error(source))
        })
    }
}
