//! The metadata database `ROOT/stencil.db`: records of images, tags, layers, snapshots and
//! containers.
//!
//! SQLite in WAL mode, so that readers never wait for a writer and several stencil
//! processes can share a root; every user-visible change is one `BEGIN IMMEDIATE`
//! transaction ([`Database::write`]). The schema lives in [`schema`] as numbered
//! migrations.
//!
//! This module holds the records and the connection; the operations that also touch the
//! content store (recording an image, removing one) are on [`crate::Store`].

pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, Transaction, TransactionBehavior};
use stencil_reference::Digest;

use crate::error::{Error, Result};
use crate::image::Platform;

/// One image: a single-platform manifest with its config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Row id, stable for the life of the record.
    pub id: i64,
    /// Digest of the image manifest: the image's identity.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// Digest of the config blob (the image ID, as Docker shows it).
    pub config_digest: Digest,
    /// The index or manifest list the manifest was chosen from, when there was one.
    pub index_digest: Option<Digest>,
    /// The platform, from the config.
    pub platform: Platform,
    /// Creation time from the config (RFC 3339).
    pub created: Option<String>,
    /// Manifest, config and compressed layers, in bytes.
    pub size: u64,
    /// Why fsck marked the image broken, when it did.
    pub broken: Option<String>,
    /// The layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

impl ImageRecord {
    /// The size docker and podman show for an image: its layers as uncompressed tars
    /// (the compressed size stands in for a layer never unpacked here).
    pub fn unpacked_size(&self) -> u64 {
        self.layers
            .iter()
            .map(|layer| layer.uncompressed_size.unwrap_or(layer.compressed_size))
            .sum()
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// The blob as stored (compressed as pulled).
    pub blob_digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Chain ID of the stack up to and including this layer.
    pub chain_id: Digest,
    /// Size of the blob.
    pub compressed_size: u64,
    /// Size of the uncompressed tar, once known.
    pub uncompressed_size: Option<u64>,
}

/// Bookkeeping of one unpacked layer stack (the snapshotter owns the directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The chain ID it holds.
    pub chain_id: Digest,
    /// The snapshotter's key for it.
    pub key: String,
    /// The snapshotter's numeric id (its directory `snapshots/N`), when known.
    pub snapshot_id: Option<u64>,
    /// Number of images whose layers include this chain, plus containers on top of it.
    pub refcount: u64,
}

/// The connection to `stencil.db`.
#[derive(Debug)]
pub(crate) struct Database {
    path: PathBuf,
    connection: Mutex<Connection>,
}

/// How long a process waits for another one's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl Database {
    /// Opens (creating and migrating) the database at `path`. Several processes may open
    /// a new store at once: SQLite answers some of the steps of opening (switching to WAL,
    /// recovering the WAL index) with "database is locked" without waiting in its busy
    /// handler, so the whole opening is tried again for up to the busy timeout.
    pub(crate) fn open(path: &Path) -> Result<Database> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Database::open_once(path) {
                Err(Error::Database {
                    source: rusqlite::Error::SqliteFailure(failure, _),
                    ..
                }) if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Database> {
        let database = |source| Error::Database {
            path: path.to_path_buf(),
            source,
        };
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(database)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(database)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(database)?;
        schema::migrate(&mut connection, path)?;
        Ok(Database {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves no half transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is still usable.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wraps a SQLite error with the database path.
    pub(crate) fn error(&self, source: rusqlite::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `read` on the connection.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        read(&self.lock())
    }

    /// Runs `write` in one immediate transaction, committed when it returns `Ok`.
    pub(crate) fn write<T>(&self, write: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut connection = self.lock();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| self.error(source))?;
        let value = write(&transaction)?;
        transaction.commit().map_err(|source| self.error(source))?;
        Ok(value)
    }
}

/// Reads a digest column; a malformed one is reported as a database error.
pub(crate) fn digest_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Digest> {
    let text: String = row.get(index)?;
    Digest::parse(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            Box::new(error),
        )
    })
}

/// Reads an optional digest column.
pub(crate) fn optional_digest_column(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<Digest>> {
    let text: Option<String> = row.get(index)?;
    text.map(|text| {
        Digest::parse(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
    })
    .transpose()
}

/// The columns of `images` in the order [`image_from_row`] reads them.
pub(crate) const IMAGE_COLUMNS: &str = "id, manifest_digest, manifest_media_type, manifest_size, config_digest, index_digest, os, architecture, variant, created, size, broken";

/// An image row without its layers.
pub(crate) fn image_from_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    image_from_row_at(row, 0)
}

/// An image row without its layers, its columns starting at `at`.
pub(crate) fn image_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        id: row.get(at)?,
        manifest_digest: digest_column(row, at + 1)?,
        manifest_media_type: row.get(at + 2)?,
        manifest_size: row.get::<_, i64>(at + 3)? as u64,
        config_digest: digest_column(row, at + 4)?,
        index_digest: optional_digest_column(row, at + 5)?,
        platform: Platform {
            os: row.get(at + 6)?,
            architecture: row.get(at + 7)?,
            variant: row.get(at + 8)?,
        },
        created: row.get(at + 9)?,
        size: row.get::<_, i64>(at + 10)? as u64,
        broken: row.get(at + 11)?,
        layers: Vec::new(),
    })
}

/// Fills `image.layers` from the `layers` table.
pub(crate) fn load_layers(
    connection: &Connection,
    image: &mut ImageRecord,
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(
        "SELECT blob_digest, media_type, diff_id, chain_id, compressed_size, uncompressed_size
         FROM layers WHERE image_id = ?1 ORDER BY position",
    )?;
    let layers = statement
        .query_map([image.id], |row| {
            Ok(LayerRecord {
                blob_digest: digest_column(row, 0)?,
                media_type: row.get(1)?,
                diff_id: digest_column(row, 2)?,
                chain_id: digest_column(row, 3)?,
                compressed_size: row.get::<_, i64>(4)? as u64,
                uncompressed_size: row.get::<_, Option<i64>>(5)?.map(|size| size as u64),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    image.layers = layers;
    Ok(())
}

/// A snapshot row.
pub(crate) fn snapshot_from_row(row: &Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        chain_id: digest_column(row, 0)?,
        key: row.get(1)?,
        snapshot_id: row.get::<_, Option<i64>>(2)?.map(|id| id as u64),
        refcount: row.get::<_, i64>(3)? as u64,
    })
}

/// The number of users of the chain `chain_id` according to the other tables: images
/// whose layers include it and containers on top of it.
pub(crate) fn computed_refcount(connection: &Connection, chain_id: &str) -> rusqlite::Result<u64> {
    let images: i64 = connection.query_row(
        "SELECT COUNT(DISTINCT image_id) FROM layers WHERE chain_id = ?1",
        [chain_id],
        |row| row.get(0),
    )?;
    let containers: i64 = connection.query_row(
        "SELECT COUNT(*) FROM containers WHERE parent_chain_id = ?1",
        [chain_id],
        |row| row.get(0),
    )?;
    Ok((images + containers) as u64)
}
