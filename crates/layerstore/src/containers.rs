//! Container records: what `stencil create` writes and `ps`, `start`, `rm` read.
//!
//! A record names the container (64 hex digit ID, unique name), the image it was created
//! from (by row id, so `rmi` can refuse to remove an image a container uses), the chain ID
//! of that image's top layer (the container holds a reference on that snapshot, so garbage
//! collection never removes layers under a container), the snapshotter key and directory
//! id of its writable layer, and two JSON documents owned by the caller: the configuration
//! fixed at creation and the current state. The store does not interpret either.
//!
//! Every change is one transaction; the snapshot reference count moves with the record.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use stencil_layerstore::{NewContainer, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let id = "ab".repeat(32);
//! store.create_container(&NewContainer {
//!     id: id.clone(),
//!     name: "tender_turing".into(),
//!     image_id: None,
//!     parent_chain_id: None,
//!     snapshot_key: format!("container-{id}"),
//!     snapshot_id: None,
//!     config: "{}".into(),
//!     state: r#"{"Status":"created"}"#.into(),
//! })?;
//! assert_eq!(store.container("tender_turing")?.id, id);
//! assert_eq!(store.container("abab")?.name, "tender_turing");
//! store.set_container_state(&id, r#"{"Status":"exited"}"#)?;
//! assert!(store.container(&id)?.state.contains("exited"));
//! store.remove_container(&id)?;
//! assert!(store.containers()?.is_empty());
//! # Ok(()) }
//! ```

use rusqlite::{OptionalExtension, Row, params};
use stencil_reference::Digest;

use crate::error::{Error, Result};
use crate::meta::{self, SnapshotRecord};
use crate::store::{Store, unix_now};

/// What [`Store::create_container`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContainer {
    /// 64 lowercase hex digits.
    pub id: String,
    /// A unique name.
    pub name: String,
    /// The row id of the image ([`crate::ImageRecord::id`]), `None` for `scratch`.
    pub image_id: Option<i64>,
    /// The chain ID of the image's top layer: the parent of the container's snapshot.
    pub parent_chain_id: Option<Digest>,
    /// The snapshotter key of the container's writable snapshot.
    pub snapshot_key: String,
    /// The snapshotter's directory id of that snapshot.
    pub snapshot_id: Option<u64>,
    /// The caller's configuration document (JSON).
    pub config: String,
    /// The caller's state document (JSON).
    pub state: String,
}

/// One container as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// The row id of its image, `None` for `scratch`.
    pub image_id: Option<i64>,
    /// The chain ID its snapshot sits on.
    pub parent_chain_id: Option<Digest>,
    /// The snapshotter key of its writable snapshot.
    pub snapshot_key: String,
    /// The snapshotter's directory id of that snapshot.
    pub snapshot_id: Option<u64>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// The caller's configuration document.
    pub config: String,
    /// The caller's state document.
    pub state: String,
}

const COLUMNS: &str =
    "id, name, image_id, parent_chain_id, snapshot_key, snapshot_id, created_at, config, state";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
    Ok(ContainerRecord {
        id: row.get(0)?,
        name: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
        image_id: row.get(2)?,
        parent_chain_id: meta::optional_digest_column(row, 3)?,
        snapshot_key: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
        snapshot_id: row.get::<_, Option<i64>>(5)?.map(|id| id as u64),
        created_at: row.get(6)?,
        config: row.get(7)?,
        state: row.get(8)?,
    })
}

impl Store {
    /// Records a new container and takes a reference on its parent snapshot. Refuses a
    /// name or ID already in use ([`crate::ErrorKind::ContainerNameInUse`]).
    pub fn create_container(&self, new: &NewContainer) -> Result<ContainerRecord> {
        let database = self.database();
        database.write(|transaction| {
            let error = |source| database.error(source);
            let holder: Option<String> = transaction
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1 OR id = ?2",
                    params![new.name, new.id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(error)?;
            if let Some(holder) = holder {
                return Err(Error::ContainerNameInUse {
                    name: new.name.clone(),
                    container: holder,
                });
            }
            transaction
                .execute(
                    "INSERT INTO containers (id, name, image_id, parent_chain_id, snapshot_key, snapshot_id, created_at, config, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        new.id,
                        new.name,
                        new.image_id,
                        new.parent_chain_id.as_ref().map(Digest::as_str),
                        new.snapshot_key,
                        new.snapshot_id.map(|id| id as i64),
                        unix_now(),
                        new.config,
                        new.state,
                    ],
                )
                .map_err(error)?;
            if let Some(chain) = &new.parent_chain_id {
                transaction
                    .execute(
                        "UPDATE snapshots SET refcount = refcount + 1 WHERE chain_id = ?1",
                        [chain.as_str()],
                    )
                    .map_err(error)?;
            }
            transaction
                .query_row(
                    &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
                    [&new.id],
                    from_row,
                )
                .map_err(error)
        })
    }

    /// The container named `text`: its full ID, its name, or a unique prefix of its ID,
    /// as docker looks containers up.
    pub fn container(&self, text: &str) -> Result<ContainerRecord> {
        let database = self.database();
        let found = database.read(|connection| {
            let error = |source| database.error(source);
            let exact = connection
                .query_row(
                    &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1"),
                    [text],
                    from_row,
                )
                .optional()
                .map_err(error)?;
            if exact.is_some() || text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(exact.into_iter().collect::<Vec<_>>());
            }
            let mut statement = connection
                .prepare(&format!("SELECT {COLUMNS} FROM containers WHERE substr(id, 1, ?2) = ?1 LIMIT 2"))
                .map_err(error)?;
            statement
                .query_map(params![text.to_ascii_lowercase(), text.len() as i64], from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(error)
        })?;
        let mut found = found;
        match found.len() {
            0 => Err(Error::ContainerNotFound {
                container: text.to_owned(),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousContainer {
                prefix: text.to_owned(),
            }),
        }
    }

    /// Every container, newest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let database = self.database();
        database.read(|connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM containers ORDER BY created_at DESC, rowid DESC"
                ))
                .map_err(|source| database.error(source))?;
            statement
                .query_map([], from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| database.error(source))
        })
    }

    /// Gives container `id` (its full ID) the name `name`. Refuses a name another
    /// container has ([`crate::ErrorKind::ContainerNameInUse`]); its own name is fine.
    pub fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let database = self.database();
        database.write(|transaction| {
            let error = |source| database.error(source);
            let holder: Option<String> = transaction
                .query_row(
                    "SELECT id FROM containers WHERE (name = ?1 OR id = ?1) AND id != ?2",
                    params![name, id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(error)?;
            if let Some(holder) = holder {
                return Err(Error::ContainerNameInUse {
                    name: name.to_owned(),
                    container: holder,
                });
            }
            let changed = transaction
                .execute(
                    "UPDATE containers SET name = ?1 WHERE id = ?2",
                    params![name, id],
                )
                .map_err(error)?;
            if changed == 0 {
                return Err(Error::ContainerNotFound {
                    container: id.to_owned(),
                });
            }
            Ok(())
        })
    }

    /// Replaces the state document of container `id` (its full ID).
    pub fn set_container_state(&self, id: &str, state: &str) -> Result<()> {
        self.set_container_document(id, "UPDATE containers SET state = ?1 WHERE id = ?2", state)
    }

    /// Replaces the configuration document of container `id` (its full ID): `update`.
    pub fn set_container_config(&self, id: &str, config: &str) -> Result<()> {
        self.set_container_document(
            id,
            "UPDATE containers SET config = ?1 WHERE id = ?2",
            config,
        )
    }

    /// Runs `statement` (an UPDATE of one document column) for container `id`.
    fn set_container_document(&self, id: &str, statement: &str, document: &str) -> Result<()> {
        let database = self.database();
        let changed = database.write(|transaction| {
            transaction
                .execute(statement, params![document, id])
                .map_err(|source| database.error(source))
        })?;
        if changed == 0 {
            return Err(Error::ContainerNotFound {
                container: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Removes the record of container `id` (its full ID) and releases its reference on
    /// the parent snapshot; returns that snapshot's record when nothing uses it any more
    /// (the caller removes it from the snapshotter).
    pub fn remove_container(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        let database = self.database();
        database.write(|transaction| {
            let error = |source| database.error(source);
            let parent: Option<Option<String>> = transaction
                .query_row(
                    "DELETE FROM containers WHERE id = ?1 RETURNING parent_chain_id",
                    [id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(error)?;
            let Some(parent) = parent else {
                return Err(Error::ContainerNotFound {
                    container: id.to_owned(),
                });
            };
            let Some(chain) = parent else {
                return Ok(None);
            };
            transaction
                .execute(
                    "UPDATE snapshots SET refcount = refcount - 1 WHERE chain_id = ?1 AND refcount > 0",
                    [&chain],
                )
                .map_err(error)?;
            transaction
                .query_row(
                    "DELETE FROM snapshots WHERE chain_id = ?1 AND refcount = 0 RETURNING chain_id, key, snapshot_id, refcount",
                    [&chain],
                    meta::snapshot_from_row,
                )
                .optional()
                .map_err(error)
        })
    }
}
