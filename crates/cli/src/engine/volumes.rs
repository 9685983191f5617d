//! Volumes: directories of the store that containers mount and that outlive them (docker's
//! `local` driver).
//!
//! A volume is `ROOT/volumes/NAME/`: `_data` (what containers see, bind-mounted at their
//! path) and `volume.json` (its creation time and labels). A volume is made in a hidden
//! staging directory and renamed into place, so a listed volume is always whole; removal
//! renames it out of the way first, so a removal cut short leaves no half volume behind.
//!
//! `-v NAME:/path` names a volume (made when missing); `-v /path` and each `VOLUME` of the
//! image that no `-v` or `--tmpfs` covers get an anonymous volume, named by 64 random hex
//! digits and labelled [`ANONYMOUS_LABEL`] as docker labels them. When a container is
//! created, each of its empty volumes receives a copy of what the image holds at its path
//! (unless `nocopy`), as docker does. `rm -v` and `--rm` remove a container's anonymous
//! volumes; named ones stay until `volume rm` or `volume prune -a`.
//!
//! Making, removing and attaching volumes to a new container happen under one lock
//! (`ROOT/volumes/.lock`), so `volume rm` never removes a volume a container being created
//! is about to use, and a volume in use by any container (running or not) is refused.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::engine::Engine;
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let (volume, _made) = engine.create_volume(Some("pgdata"), &Default::default())?;
//! println!("{}", volume.mountpoint.display());
//! engine.remove_volume("pgdata")?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg, OFlag, OpenHow, ResolveFlag, openat2};
use serde::{Deserialize, Serialize};
use stencil_cow_fs::{ApplyOptions, DiffOptions, apply_layer, diff_trees};

use super::Engine;
use super::containers::{ContainerConfig, random_id, write_json};
use super::usage::PruneFilter;

/// The volumes' directory under the store root.
const VOLUMES_DIR: &str = "volumes";
/// The directory of a volume that containers mount.
const DATA_DIR: &str = "_data";
/// A volume's metadata file.
const META_FILE: &str = "volume.json";
/// The label docker gives anonymous volumes; `volume prune` without `-a` removes only
/// these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The directory containers mount (`ROOT/volumes/NAME/_data`).
    pub mountpoint: PathBuf,
}

impl Volume {
    /// Made for a container that did not name it (`-v /path`, an image's `VOLUME`).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What [`Engine::prune_volumes`] did.
#[derive(Debug, Clone, Default)]
pub struct PrunedVolumes {
    /// Names of the removed volumes.
    pub removed: Vec<String>,
    /// Bytes their files held.
    pub reclaimed: u64,
}

/// The volumes lock, held while volumes are made, removed or given to a new container.
pub struct VolumesLock {
    _lock: Flock<File>,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn check_volume_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let valid = name.len() >= 2
        && name.len() <= 255
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        bail!(
            "{name:?} includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (at least two); if you intended to \
             pass a host directory, use an absolute path"
        );
    }
    Ok(())
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.root().join(VOLUMES_DIR)
    }

    /// Takes the volumes lock (waiting for it).
    pub fn lock_volumes(&self) -> Result<VolumesLock> {
        let dir = self.volumes_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(VolumesLock { _lock: lock })
    }

    fn load_volume(&self, name: &str) -> Result<Option<Volume>> {
        let dir = self.volumes_dir().join(name);
        let text = match std::fs::read_to_string(dir.join(META_FILE)) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read {}", dir.join(META_FILE).display()));
            }
        };
        let meta: Meta = serde_json::from_str(&text).with_context(|| {
            format!(
                "the metadata of volume {name} is unreadable ({})",
                dir.join(META_FILE).display()
            )
        })?;
        Ok(Some(Volume {
            name: name.to_owned(),
            created_at: meta.created_at,
            labels: meta.labels,
            mountpoint: dir.join(DATA_DIR),
        }))
    }

    /// The volume called `name`.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        if check_volume_name(name).is_ok()
            && let Some(volume) = self.load_volume(name)?
        {
            return Ok(volume);
        }
        bail!("no such volume: {name} (see `stencil volume ls`)")
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let dir = self.volumes_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", dir.display()));
            }
        };
        let mut volumes = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_volume_name(&name).is_err() {
                continue; // `.lock`, staging and removal directories
            }
            if let Some(volume) = self.load_volume(&name)? {
                volumes.push(volume);
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Makes volume `name` (an anonymous one when `None`), or finds it when it exists as
    /// docker's `volume create` does; `true` when it was made now.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let _lock = self.lock_volumes()?;
        self.create_volume_locked(name, labels)
    }

    /// [`Engine::create_volume`] with the lock held by the caller.
    pub(crate) fn create_volume_locked(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let mut labels = labels.clone();
        let name = match name {
            Some(name) => {
                check_volume_name(name)?;
                if let Some(volume) = self.load_volume(name)? {
                    return Ok((volume, false));
                }
                name.to_owned()
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
                random_id()?
            }
        };
        let dir = self.volumes_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&dir)
            .with_context(|| format!("cannot create a volume in {}", dir.display()))?;
        let data = staging.path().join(DATA_DIR);
        std::fs::create_dir(&data).with_context(|| format!("cannot create {}", data.display()))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", data.display()))?;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", staging.path().display()))?;
        let meta = Meta {
            created_at: super::now(),
            labels,
        };
        write_json(&staging.path().join(META_FILE), &meta)?;
        let target = dir.join(&name);
        std::fs::rename(staging.path(), &target)
            .with_context(|| format!("cannot create volume {name} at {}", target.display()))?;
        // Renamed away: nothing left for the guard to remove.
        let _ = staging.keep();
        Ok((
            Volume {
                name,
                created_at: meta.created_at,
                labels: meta.labels,
                mountpoint: target.join(DATA_DIR),
            },
            true,
        ))
    }

    /// The containers (full IDs) using each volume, by volume name.
    pub fn volume_users(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in self.store().containers()? {
            let Ok(config) = serde_json::from_str::<ContainerConfig>(&record.config) else {
                continue;
            };
            for name in config.volumes.iter().filter_map(|v| v.name.as_ref()) {
                let ids = users.entry(name.clone()).or_default();
                if !ids.contains(&record.id) {
                    ids.push(record.id.clone());
                }
            }
        }
        Ok(users)
    }

    /// Removes volume `name` and everything in it; refused while any container (running
    /// or not) uses it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let _lock = self.lock_volumes()?;
        let volume = self.volume(name)?;
        if let Some(ids) = self.volume_users()?.get(&volume.name) {
            let short: Vec<&str> = ids.iter().map(|id| &id[..12.min(id.len())]).collect();
            bail!(
                "volume {name} is in use by container {}: remove the container first (`stencil rm`)",
                short.join(", ")
            );
        }
        self.delete_volume_dir(&volume.name)
    }

    /// Renames the volume's directory out of the way (it disappears at once), then
    /// deletes it.
    fn delete_volume_dir(&self, name: &str) -> Result<()> {
        let dir = self.volumes_dir();
        let doomed = dir.join(format!(".removing-{name}-{}", &random_id()?[..12]));
        std::fs::rename(dir.join(name), &doomed)
            .with_context(|| format!("cannot remove volume {name}"))?;
        std::fs::remove_dir_all(&doomed)
            .with_context(|| format!("cannot remove volume {name} ({})", doomed.display()))
    }

    /// `volume prune`: removes the volumes no container uses, anonymous ones only unless
    /// `all`, those `filter` allows.
    pub fn prune_volumes(&self, all: bool, filter: &PruneFilter) -> Result<PrunedVolumes> {
        let _lock = self.lock_volumes()?;
        self.clear_leftovers();
        let users = self.volume_users()?;
        let mut pruned = PrunedVolumes::default();
        for volume in self.volumes()? {
            let labels = serde_json::to_value(&volume.labels)?;
            if users.contains_key(&volume.name)
                || (!all && !volume.is_anonymous())
                || !filter.allows(Some(&volume.created_at), &labels)
            {
                continue;
            }
            let size = self.volume_size(&volume);
            self.delete_volume_dir(&volume.name)?;
            pruned.removed.push(volume.name);
            pruned.reclaimed += size;
        }
        Ok(pruned)
    }

    /// Removes what removals and creations cut short left in the volumes directory.
    fn clear_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(self.volumes_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".removing-") || name.starts_with(".new-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Bytes the files of `volume` hold (hard links counted once).
    pub fn volume_size(&self, volume: &Volume) -> u64 {
        super::usage::tree_size(&volume.mountpoint, &mut HashSet::new()).unwrap_or(0)
    }

    /// Removes the anonymous volumes of a removed container that no other container
    /// uses (`rm -v`, `--rm`); what cannot be removed is logged.
    pub fn remove_anonymous_volumes(&self, config: &ContainerConfig) {
        let names: Vec<&String> = config
            .volumes
            .iter()
            .filter(|v| v.anonymous)
            .filter_map(|v| v.name.as_ref())
            .collect();
        if names.is_empty() {
            return;
        }
        let removed = self.lock_volumes().and_then(|_lock| {
            let users = self.volume_users()?;
            for name in names {
                if !users.contains_key(name.as_str()) && self.load_volume(name)?.is_some() {
                    self.delete_volume_dir(name)?;
                }
            }
            Ok(())
        });
        if let Err(error) = removed {
            tracing::warn!("{error:#}");
        }
    }

    /// Copies into each empty volume of `config` (but `nocopy` ones) what the root
    /// filesystem `rootfs` holds at its path, owner and mode of the directory included,
    /// as docker fills a volume when a container is created.
    pub(crate) fn populate_volumes(&self, config: &ContainerConfig, rootfs: &Path) -> Result<()> {
        let root =
            File::open(rootfs).with_context(|| format!("cannot open {}", rootfs.display()))?;
        for volume in config
            .volumes
            .iter()
            .filter(|v| v.name.is_some() && !v.nocopy)
        {
            let empty = std::fs::read_dir(&volume.host)
                .with_context(|| format!("cannot read {}", volume.host.display()))?
                .next()
                .is_none();
            if !empty {
                continue;
            }
            // Resolved as the container would see it: symlinks stay inside the rootfs.
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            let source = match openat2(root.as_fd(), volume.container.as_str(), how) {
                Ok(fd) => fd,
                // Nothing there in the image (or not a directory): nothing to copy.
                Err(_) => continue,
            };
            let source_path = PathBuf::from(format!("/proc/self/fd/{}", source.as_raw_fd()));
            copy_tree(&source_path, &volume.host).with_context(|| {
                format!(
                    "cannot copy the image's {} into volume {}",
                    volume.container,
                    volume.name.as_deref().unwrap_or_default()
                )
            })?;
            let meta = std::fs::metadata(&source_path)?;
            std::os::unix::fs::chown(&volume.host, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("cannot set the owner of {}", volume.host.display()))?;
            std::fs::set_permissions(
                &volume.host,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            )
            .with_context(|| format!("cannot set the mode of {}", volume.host.display()))?;
        }
        Ok(())
    }

    /// Removes the volumes named in `names` that exist and no container uses (undoing a
    /// container creation that failed).
    pub(crate) fn remove_unused_volumes(&self, names: &[String]) {
        let Ok(users) = self.volume_users() else {
            return;
        };
        for name in names {
            if !users.contains_key(name)
                && let Err(error) = self.delete_volume_dir(name)
            {
                tracing::warn!("{error:#}");
            }
        }
    }
}

/// Copies the tree `from` into the existing directory `to`: owners, modes, times, links
/// and extended attributes, as a layer's tar carries them.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || -> Result<()> {
            let empty = tempfile::tempdir().context("cannot create a temporary directory")?;
            diff_trees(empty.path(), from, writer, &DiffOptions::default())
                .map(drop)
                .with_context(|| format!("cannot read {}", from.display()))
        });
        let applied = apply_layer(reader, to, &ApplyOptions::default())
            .map(drop)
            .with_context(|| format!("cannot write {}", to.display()));
        let written = writing
            .join()
            .map_err(|_| anyhow!("the copy of {} panicked", from.display()))?;
        // The reader's error is the consequence when the writer failed: report the cause.
        written.and(applied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_docker() {
        for good in ["ab", "pg-data", "a.b_c-1", "0x"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "-ab", ".ab", "a/b", "a b", "_ab", "ab:c", "..", "é1",
        ] {
            assert!(check_volume_name(bad).is_err(), "{bad}");
        }
    }
}
