//! The snapshotter: containerd's model of stacked, copy-on-write filesystem snapshots.
//!
//! Glossary (as containerd's): an *active* snapshot, named by a *key*, is writable and made
//! by [`Snapshotter::prepare`]; a *view* is a read-only active snapshot
//! ([`Snapshotter::view`]); [`Snapshotter::commit`] freezes an active snapshot under a
//! *name*, and only committed snapshots can be parents, except through
//! [`OverlaySnapshotter::prepare_stacked`], whose snapshots commit only after their parent
//! did (committing renames the parent of the snapshots stacked on it). Keys and names
//! share one namespace and are opaque strings to this crate (the engine uses chain IDs and
//! container IDs).
//! Nothing is mounted by the snapshotter: it answers with [`Mount`] values.
//!
//! Drivers: [`OverlaySnapshotter`] stores one layer per snapshot and stacks them with
//! overlayfs; [`NativeSnapshotter`] stores a full copy per snapshot (reflinks where the
//! filesystem allows) and bind-mounts it, for filesystems where overlay does not work.
//!
//! On disk, under the root given to `new`: `catalogue.json` (all snapshots, rewritten
//! atomically: temporary file, `fsync`, `rename`, `fsync` of the directory), `lock` (an
//! exclusive `flock` held for every operation, so several processes may share a root), and
//! `snapshots/ID/fs` (+ `work` for overlay) with small numeric ids.
//!
//! ```no_run
//! use stencil_cow_fs::{NativeSnapshotter, Snapshotter};
//! let snapshots = NativeSnapshotter::new("/tmp/snapshots".as_ref())?;
//! snapshots.prepare("base-extract", None)?;
//! snapshots.commit("base", "base-extract")?;
//! let mounts = snapshots.prepare("container", Some("base"))?;
//! assert_eq!(mounts[0].kind, "bind");
//! # Ok::<(), stencil_cow_fs::Error>(())
//! ```

mod native;
mod overlay;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diff::DiffOptions;
use crate::error::{Error, Result};
use crate::mount::Mount;
use crate::sys;
use crate::whiteout::WhiteoutMode;

pub use native::NativeSnapshotter;
pub use overlay::OverlaySnapshotter;

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Kind {
    /// Writable, made by `prepare`.
    Active,
    /// Read-only, made by `view`.
    View,
    /// Frozen by `commit`; may be a parent.
    Committed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "a view",
            Kind::Committed => "committed",
        }
    }
}

/// What the catalogue knows of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Info {
    /// The key (active, view) or name (committed).
    pub key: String,
    /// Its kind.
    pub kind: Kind,
    /// The committed parent's name, if any.
    pub parent: Option<String>,
    /// The numeric id naming its directory.
    pub id: u64,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

/// Disk use of one snapshot's own directory (for overlay: its layer only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub size: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// Where to apply a layer into an active snapshot, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerTarget {
    /// The directory to pass to [`crate::apply_layer`].
    pub dir: PathBuf,
    /// The whiteout mode that directory needs.
    pub whiteouts: WhiteoutMode,
    /// The committed layers below, topmost first, when `dir` holds only this layer's
    /// changes (overlay): pass them to [`crate::ApplyOptions::parents`] so directories
    /// the layer does not list keep their mode and owner. Empty for full copies.
    pub parents: Vec<PathBuf>,
}

/// containerd's snapshotter interface.
pub trait Snapshotter {
    /// Creates active snapshot `key` on top of committed `parent`; returns its mounts.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Creates read-only snapshot `key` of committed `parent`; returns its mounts.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Freezes active snapshot `key` as committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes snapshot `key` (of any kind) if it has no children.
    fn remove(&self, key: &str) -> Result<()>;
    /// The mounts of active or view snapshot `key`.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// What the catalogue knows of `key`.
    fn stat(&self, key: &str) -> Result<Info>;
    /// The disk use of `key`'s own directory.
    fn usage(&self, key: &str) -> Result<Usage>;
    /// Calls `visit` for every snapshot, sorted by key.
    fn walk(&self, visit: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()>;
    /// Where a layer is applied to fill active snapshot `key`.
    fn layer_target(&self, key: &str) -> Result<LayerTarget>;
    /// Writes the layer tar of `key`'s changes against its parent.
    fn diff(&self, key: &str, out: &mut dyn Write, options: &DiffOptions) -> Result<()>;
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Catalogue {
    next_id: u64,
    snapshots: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: u64,
    kind: Kind,
    parent: Option<String>,
    created: u64,
}

/// What differs between drivers; the catalogue logic is shared.
trait Driver {
    /// Fills the new snapshot directory `dir` (`fs` and friends) given the parent chain's
    /// `fs` directories, topmost first.
    fn create(&self, dir: &Path, chain: &[PathBuf]) -> Result<()>;
    /// The mounts of a snapshot.
    fn mounts(&self, dir: &Path, kind: Kind, chain: &[PathBuf]) -> Vec<Mount>;
    /// Where layers are applied.
    fn whiteouts(&self) -> WhiteoutMode;
    /// Writes the diff of `dir` against its parent chain.
    fn diff(
        &self,
        dir: &Path,
        chain: &[PathBuf],
        out: &mut dyn Write,
        options: &DiffOptions,
    ) -> Result<()>;
}

/// The catalogue and directories under one root, shared by both drivers.
struct Store {
    root: PathBuf,
}

/// A held catalogue lock with the catalogue read under it.
struct Locked {
    _lock: File,
    catalogue: Catalogue,
}

fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > 4096 {
        "longer than 4096 bytes"
    } else if key.contains('\0') {
        "holds a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    fn new(root: &Path) -> Result<Store> {
        fs::create_dir_all(root.join("snapshots"))
            .map_err(|e| Error::io("create snapshot root", root, e))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn lock(&self) -> Result<Locked> {
        let path = self.root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock", &path, e))?;
        sys::lock_exclusive(&lock).map_err(|e| Error::io("lock", &path, e))?;
        let path = self.root.join("catalogue.json");
        let catalogue = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::io("parse catalogue", &path, std::io::Error::other(e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalogue::default(),
            Err(e) => return Err(Error::io("read catalogue", &path, e)),
        };
        Ok(Locked {
            _lock: lock,
            catalogue,
        })
    }

    fn save(&self, catalogue: &Catalogue) -> Result<()> {
        let path = self.root.join("catalogue.json");
        let temporary = self.root.join("catalogue.json.tmp");
        let bytes = serde_json::to_vec_pretty(catalogue)
            .map_err(|e| Error::io("write catalogue", &path, std::io::Error::other(e)))?;
        let mut file =
            File::create(&temporary).map_err(|e| Error::io("write catalogue", &temporary, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write catalogue", &temporary, e))?;
        fs::rename(&temporary, &path).map_err(|e| Error::io("replace catalogue", &path, e))?;
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| Error::io("sync snapshot root", &self.root, e))?;
        Ok(())
    }

    fn get<'c>(catalogue: &'c Catalogue, key: &str) -> Result<&'c Entry> {
        catalogue.snapshots.get(key).ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })
    }

    /// The `fs` directories from `parent` down to the bottom layer.
    fn chain(&self, catalogue: &Catalogue, parent: Option<&str>) -> Result<Vec<PathBuf>> {
        let mut chain = Vec::new();
        let mut next = parent.map(str::to_owned);
        while let Some(key) = next {
            let entry = Store::get(catalogue, &key)?;
            chain.push(self.dir(entry.id).join("fs"));
            next = entry.parent.clone();
            if chain.len() > catalogue.snapshots.len() {
                return Err(Error::io(
                    "follow parents",
                    &self.root,
                    std::io::Error::other("the catalogue's parent links form a cycle"),
                ));
            }
        }
        Ok(chain)
    }

    fn create(
        &self,
        driver: &dyn Driver,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Vec<Mount>> {
        self.create_on(driver, key, parent, kind, false)
    }

    /// Like `create`; with `active_parent`, `parent` may also be an active snapshot (one
    /// still being filled), for drivers whose snapshots hold only their own layer.
    fn create_on(
        &self,
        driver: &dyn Driver,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        active_parent: bool,
    ) -> Result<Vec<Mount>> {
        validate_key(key)?;
        let mut locked = self.lock()?;
        let catalogue = &mut locked.catalogue;
        if catalogue.snapshots.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        if let Some(parent) = parent {
            let entry = Store::get(catalogue, parent)?;
            let allowed = entry.kind == Kind::Committed
                || (active_parent && kind == Kind::Active && entry.kind == Kind::Active);
            if !allowed {
                return Err(Error::InvalidState {
                    key: parent.to_owned(),
                    operation: "use as a parent",
                    expected: "committed",
                    actual: entry.kind.as_str(),
                });
            }
        }
        let chain = self.chain(catalogue, parent)?;
        catalogue.next_id += 1;
        let id = catalogue.next_id;
        let dir = self.dir(id);
        // A directory left by a crash before the catalogue was saved is garbage.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io("remove stale snapshot", &dir, e))?;
        }
        fs::create_dir(&dir).map_err(|e| Error::io("create snapshot", &dir, e))?;
        if let Err(e) = driver.create(&dir, &chain) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        catalogue.snapshots.insert(
            key.to_owned(),
            Entry {
                id,
                kind,
                parent: parent.map(str::to_owned),
                created: now(),
            },
        );
        self.save(catalogue)?;
        Ok(driver.mounts(&dir, kind, &chain))
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        validate_key(name)?;
        let mut locked = self.lock()?;
        let catalogue = &mut locked.catalogue;
        let entry = Store::get(catalogue, key)?.clone();
        if entry.kind != Kind::Active {
            return Err(Error::InvalidState {
                key: key.to_owned(),
                operation: "commit",
                expected: "active",
                actual: entry.kind.as_str(),
            });
        }
        if catalogue.snapshots.contains_key(name) {
            return Err(Error::AlreadyExists {
                key: name.to_owned(),
            });
        }
        // A snapshot stacked on an active parent freezes only after that parent did, so a
        // committed snapshot never rests on content that may still change.
        if let Some(parent) = &entry.parent {
            let parent_entry = Store::get(catalogue, parent)?;
            if parent_entry.kind != Kind::Committed {
                return Err(Error::InvalidState {
                    key: parent.clone(),
                    operation: "commit a snapshot on top of",
                    expected: "committed",
                    actual: parent_entry.kind.as_str(),
                });
            }
        }
        catalogue.snapshots.remove(key);
        // Snapshots stacked on the active one now rest on its committed name.
        for child in catalogue.snapshots.values_mut() {
            if child.parent.as_deref() == Some(key) {
                child.parent = Some(name.to_owned());
            }
        }
        catalogue.snapshots.insert(
            name.to_owned(),
            Entry {
                kind: Kind::Committed,
                ..entry
            },
        );
        self.save(catalogue)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let mut locked = self.lock()?;
        let catalogue = &mut locked.catalogue;
        let entry = Store::get(catalogue, key)?.clone();
        let children = catalogue
            .snapshots
            .values()
            .filter(|e| e.parent.as_deref() == Some(key))
            .count();
        if children > 0 {
            return Err(Error::InUse {
                key: key.to_owned(),
                children,
            });
        }
        catalogue.snapshots.remove(key);
        self.save(catalogue)?;
        let dir = self.dir(entry.id);
        fs::remove_dir_all(&dir).map_err(|e| Error::io("remove snapshot", &dir, e))?;
        self.remove_orphans(catalogue);
        Ok(())
    }

    /// Removes snapshot directories the catalogue no longer names, left by a crash between
    /// creating a directory and saving the catalogue, or by a removal that failed half way.
    /// Runs under the lock, so no other process is between those two steps. Failures are
    /// left for the next removal (a directory may still be mounted).
    fn remove_orphans(&self, catalogue: &Catalogue) {
        let known: std::collections::HashSet<u64> =
            catalogue.snapshots.values().map(|e| e.id).collect();
        let Ok(entries) = fs::read_dir(self.root.join("snapshots")) else {
            return;
        };
        for entry in entries.flatten() {
            let orphan = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u64>().ok())
                .is_some_and(|id| !known.contains(&id));
            if orphan {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    fn info(key: &str, entry: &Entry) -> Info {
        Info {
            key: key.to_owned(),
            kind: entry.kind,
            parent: entry.parent.clone(),
            id: entry.id,
            created: entry.created,
        }
    }

    fn stat(&self, key: &str) -> Result<Info> {
        let locked = self.lock()?;
        Ok(Store::info(key, Store::get(&locked.catalogue, key)?))
    }

    fn active(&self, key: &str, operation: &'static str) -> Result<(Locked, Entry)> {
        let locked = self.lock()?;
        let entry = Store::get(&locked.catalogue, key)?.clone();
        if entry.kind == Kind::Committed {
            return Err(Error::InvalidState {
                key: key.to_owned(),
                operation,
                expected: "active or a view",
                actual: entry.kind.as_str(),
            });
        }
        Ok((locked, entry))
    }

    fn mounts(&self, driver: &dyn Driver, key: &str) -> Result<Vec<Mount>> {
        let (locked, entry) = self.active(key, "mounts")?;
        let chain = self.chain(&locked.catalogue, entry.parent.as_deref())?;
        Ok(driver.mounts(&self.dir(entry.id), entry.kind, &chain))
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let locked = self.lock()?;
        let entry = Store::get(&locked.catalogue, key)?;
        let mut usage = Usage::default();
        let mut seen = std::collections::HashSet::new();
        disk_usage(&self.dir(entry.id).join("fs"), &mut usage, &mut seen)?;
        Ok(usage)
    }

    fn walk(&self, visit: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        let locked = self.lock()?;
        for (key, entry) in &locked.catalogue.snapshots {
            visit(&Store::info(key, entry))?;
        }
        Ok(())
    }

    fn layer_target(&self, driver: &dyn Driver, key: &str) -> Result<LayerTarget> {
        let (locked, entry) = self.active(key, "apply a layer")?;
        if entry.kind != Kind::Active {
            return Err(Error::InvalidState {
                key: key.to_owned(),
                operation: "apply a layer",
                expected: "active",
                actual: entry.kind.as_str(),
            });
        }
        let parents = match driver.whiteouts() {
            WhiteoutMode::Overlay => self.chain(&locked.catalogue, entry.parent.as_deref())?,
            _ => Vec::new(),
        };
        Ok(LayerTarget {
            dir: self.dir(entry.id).join("fs"),
            whiteouts: driver.whiteouts(),
            parents,
        })
    }

    fn diff(
        &self,
        driver: &dyn Driver,
        key: &str,
        out: &mut dyn Write,
        options: &DiffOptions,
    ) -> Result<()> {
        let locked = self.lock()?;
        let entry = Store::get(&locked.catalogue, key)?.clone();
        let chain = self.chain(&locked.catalogue, entry.parent.as_deref())?;
        driver.diff(&self.dir(entry.id), &chain, out, options)
    }
}

fn disk_usage(
    path: &Path,
    usage: &mut Usage,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    if seen.insert((meta.dev(), meta.ino())) {
        usage.inodes += 1;
        usage.size += meta.blocks() * 512;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| Error::io("read directory", path, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", path, e))?;
            disk_usage(&entry.path(), usage, seen)?;
        }
    }
    Ok(())
}

/// Implements [`Snapshotter`] for a driver type holding `store: Store` and being a [`Driver`].
macro_rules! snapshotter_via_store {
    ($driver:ty) => {
        impl $crate::snapshot::Snapshotter for $driver {
            fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
                self.store.create(self, key, parent, Kind::Active)
            }
            fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
                self.store.create(self, key, parent, Kind::View)
            }
            fn commit(&self, name: &str, key: &str) -> Result<()> {
                self.store.commit(name, key)
            }
            fn remove(&self, key: &str) -> Result<()> {
                self.store.remove(key)
            }
            fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
                self.store.mounts(self, key)
            }
            fn stat(&self, key: &str) -> Result<Info> {
                self.store.stat(key)
            }
            fn usage(&self, key: &str) -> Result<Usage> {
                self.store.usage(key)
            }
            fn walk(&self, visit: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
                self.store.walk(visit)
            }
            fn layer_target(&self, key: &str) -> Result<LayerTarget> {
                self.store.layer_target(self, key)
            }
            fn diff(
                &self,
                key: &str,
                out: &mut dyn std::io::Write,
                options: &DiffOptions,
            ) -> Result<()> {
                self.store.diff(self, key, out, options)
            }
        }
    };
}
use snapshotter_via_store;
