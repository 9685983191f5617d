//! The `overlay` driver: one layer per snapshot, stacked by kernel overlayfs.
//!
//! A snapshot's `fs` directory holds only its own layer (with overlay whiteouts); its
//! `work` directory is overlay's scratch space. Active snapshots mount as an overlay with
//! `fs` as upper directory over the parent chain (with `redirect_dir=off`, so that renamed
//! directories are plain copies in the upper directory whatever the kernel's default);
//! views mount read-only as an overlay of the parents (an empty directory stands in as
//! the second lower one for a single parent). It does not check that the kernel has
//! overlayfs: the first mount says so.
//!
//! ```no_run
//! use stencil_cow_fs::{OverlaySnapshotter, Snapshotter};
//! let snapshots = OverlaySnapshotter::new("/var/lib/stencil".as_ref())?;
//! let mounts = snapshots.view("look", Some("sha256:chain"))?;
//! # Ok::<(), stencil_cow_fs::Error>(())
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Driver, Info, Kind, LayerTarget, Store, Usage, snapshotter_via_store};
use crate::diff::{DiffOptions, diff_upper};
use crate::error::{Error, Result};
use crate::mount::Mount;
use crate::whiteout::WhiteoutMode;

/// Snapshots stacked with overlayfs.
pub struct OverlaySnapshotter {
    store: Store,
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) the snapshot store under `root`.
    pub fn new(root: &Path) -> Result<OverlaySnapshotter> {
        let store = Store::new(root)?;
        let empty = store.root.join("empty");
        match fs::create_dir(&empty) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create snapshot root", &empty, e)),
        }
        Ok(OverlaySnapshotter { store })
    }

    /// Like [`Snapshotter::prepare`], but `parent` may still be active: each overlay
    /// snapshot holds only its own layer, so a layer can be applied while the layers below
    /// it are still being applied (a pull unpacks layers in parallel this way). The new
    /// snapshot can be committed only once `parent` is; until then
    /// [`LayerTarget::parents`] may name directories that are still filling, so
    /// directories created from them must be settled afterwards
    /// ([`crate::apply::settle_implied_dirs`]).
    ///
    /// [`Snapshotter::prepare`]: super::Snapshotter::prepare
    pub fn prepare_stacked(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.store.create_on(self, key, parent, Kind::Active, true)
    }
}

impl Driver for OverlaySnapshotter {
    fn create(&self, dir: &Path, _chain: &[PathBuf]) -> Result<()> {
        for sub in ["fs", "work"] {
            let path = dir.join(sub);
            fs::create_dir(&path).map_err(|e| Error::io("create snapshot", &path, e))?;
        }
        Ok(())
    }

    fn mounts(&self, dir: &Path, kind: Kind, chain: &[PathBuf]) -> Vec<Mount> {
        let fs_dir = dir.join("fs");
        let lowers: Vec<&Path> = chain.iter().map(PathBuf::as_path).collect();
        match (kind, lowers.as_slice()) {
            (Kind::Active, []) => vec![Mount::bind(&fs_dir, false)],
            (Kind::Active, _) => {
                let mut mount = Mount::overlay(&lowers, Some((&fs_dir, &dir.join("work"))));
                // The same behaviour whatever the kernel's default: with redirects off,
                // rename(2) of a lower directory answers EXDEV and tools copy instead, so
                // the upper directory holds plain entries (diff_upper handles redirects
                // made by other mounts too, by writing the whole merged directory).
                mount.options.push("redirect_dir=off".into());
                vec![mount]
            }
            (_, []) => vec![Mount::bind(&fs_dir, true)],
            (_, _) => {
                // Overlay needs two lower directories without an upper one; an empty one
                // under a single parent still makes the kernel hide that layer's whiteouts,
                // which a plain bind mount of it would show as devices.
                let empty = self.store.root.join("empty");
                let mut lowers = lowers;
                if lowers.len() == 1 {
                    lowers.push(&empty);
                }
                let mut mount = Mount::overlay(&lowers, None);
                mount.options.push("ro".into());
                vec![mount]
            }
        }
    }

    fn whiteouts(&self) -> WhiteoutMode {
        WhiteoutMode::Overlay
    }

    fn diff(
        &self,
        dir: &Path,
        chain: &[PathBuf],
        out: &mut dyn Write,
        options: &DiffOptions,
    ) -> Result<()> {
        let lowers: Vec<&Path> = chain.iter().map(PathBuf::as_path).collect();
        diff_upper(&dir.join("fs"), &lowers, out, options)?;
        Ok(())
    }
}

snapshotter_via_store!(OverlaySnapshotter);
