//! The SQLite schema of `stencil.db` as numbered migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. [`migrate`] applies the
//! missing ones, each in its own transaction, and refuses a database from a newer stencil.
//! A migration, once landed, is never edited: changes go into a new one.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Every migration in order; index + 1 is the schema version it produces.
const MIGRATIONS: &[&str] = &[
    // 1: images, tags, layers, snapshots, containers, pending garbage.
    "
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        manifest_digest TEXT NOT NULL UNIQUE,
        manifest_media_type TEXT NOT NULL,
        manifest_size INTEGER NOT NULL,
        config_digest TEXT NOT NULL,
        index_digest TEXT,
        os TEXT NOT NULL,
        architecture TEXT NOT NULL,
        variant TEXT,
        created TEXT,
        size INTEGER NOT NULL,
        broken TEXT,
        added_at INTEGER NOT NULL
    );
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE layers (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        blob_digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        diff_id TEXT NOT NULL,
        chain_id TEXT NOT NULL,
        compressed_size INTEGER NOT NULL,
        uncompressed_size INTEGER,
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX layers_blob ON layers(blob_digest);
    CREATE INDEX layers_chain ON layers(chain_id);
    CREATE TABLE snapshots (
        chain_id TEXT PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        snapshot_id INTEGER,
        refcount INTEGER NOT NULL
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT UNIQUE,
        image_id INTEGER REFERENCES images(id),
        parent_chain_id TEXT,
        snapshot_key TEXT,
        snapshot_id INTEGER,
        created_at INTEGER NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE gc_pending (
        digest TEXT PRIMARY KEY
    );
    ",
    // 2: blobs held by something other than an image record (the registry server's
    // repositories: blob links and the blobs its manifests name).
    "
    CREATE TABLE blob_holds (
        holder TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (holder, digest)
    );
    CREATE INDEX blob_holds_digest ON blob_holds(digest);
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(connection: &mut Connection, path: &Path) -> Result<()> {
    let database = |source| Error::Database {
        path: path.to_path_buf(),
        source,
    };
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(database)?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(database)?;
        // Another process may have migrated while this one waited for the lock.
        let current: i64 = transaction
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(database)?;
        if current > index as i64 {
            continue;
        }
        transaction.execute_batch(migration).map_err(database)?;
        transaction
            .execute_batch(&format!("PRAGMA user_version = {}", index + 1))
            .map_err(database)?;
        transaction.commit().map_err(database)?;
    }
    Ok(())
}
