//! The `native` driver: every snapshot is a full copy of its parent, bind-mounted.
//!
//! For filesystems where overlayfs cannot stack (or as the upper of another overlay).
//! Copies keep owners, modes, times, extended attributes, device nodes and hard-link
//! groups, and share data blocks with `FICLONE` where the filesystem supports reflinks,
//! else use `copy_file_range`. Layers are applied with whiteouts as deletions, and diffs
//! compare the snapshot with its parent's copy.
//!
//! ```no_run
//! use stencil_cow_fs::{NativeSnapshotter, Snapshotter};
//! let snapshots = NativeSnapshotter::new("/var/lib/stencil".as_ref())?;
//! let target = snapshots.layer_target("extract-1")?;
//! # Ok::<(), stencil_cow_fs::Error>(())
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Driver, Info, Kind, LayerTarget, Store, Usage, snapshotter_via_store};
use crate::diff::{DiffOptions, diff_trees};
use crate::error::{Error, Result};
use crate::mount::Mount;
use crate::sys;
use crate::whiteout::WhiteoutMode;

/// Snapshots as full copies.
pub struct NativeSnapshotter {
    store: Store,
}

impl NativeSnapshotter {
    /// Opens (creating if needed) the snapshot store under `root`.
    pub fn new(root: &Path) -> Result<NativeSnapshotter> {
        Ok(NativeSnapshotter {
            store: Store::new(root)?,
        })
    }
}

impl Driver for NativeSnapshotter {
    fn create(&self, dir: &Path, chain: &[PathBuf]) -> Result<()> {
        let fs_dir = dir.join("fs");
        match chain.first() {
            Some(parent) => {
                let mut links = HashMap::new();
                copy_entry(parent, &fs_dir, &mut links)
            }
            None => fs::create_dir(&fs_dir).map_err(|e| Error::io("create snapshot", &fs_dir, e)),
        }
    }

    fn mounts(&self, dir: &Path, kind: Kind, _chain: &[PathBuf]) -> Vec<Mount> {
        vec![Mount::bind(&dir.join("fs"), kind != Kind::Active)]
    }

    fn whiteouts(&self) -> WhiteoutMode {
        WhiteoutMode::Delete
    }

    fn diff(
        &self,
        dir: &Path,
        chain: &[PathBuf],
        out: &mut dyn Write,
        options: &DiffOptions,
    ) -> Result<()> {
        let new = dir.join("fs");
        match chain.first() {
            Some(parent) => diff_trees(parent, &new, out, options)?,
            None => {
                let empty = tempfile_dir(dir)?;
                let result = diff_trees(&empty, &new, out, options);
                let _ = fs::remove_dir(&empty);
                result?
            }
        };
        Ok(())
    }
}

snapshotter_via_store!(NativeSnapshotter);

/// An empty directory beside `dir` to diff a parentless snapshot against.
fn tempfile_dir(dir: &Path) -> Result<PathBuf> {
    let empty = dir.join("empty");
    match fs::create_dir(&empty) {
        Ok(()) => Ok(empty),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(empty),
        Err(e) => Err(Error::io("create directory", &empty, e)),
    }
}

/// Copies `from` to the new path `to`, recursively, never following symlinks.
fn copy_entry(from: &Path, to: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let meta = fs::symlink_metadata(from).map_err(|e| Error::io("inspect", from, e))?;
    let file_type = meta.file_type();
    if file_type.is_dir() {
        fs::create_dir(to).map_err(|e| Error::io("create directory", to, e))?;
        let mut names: Vec<_> = fs::read_dir(from)
            .map_err(|e| Error::io("read directory", from, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read directory", from, e))?;
        names.sort();
        for name in names {
            copy_entry(&from.join(&name), &to.join(&name), links)?;
        }
    } else if file_type.is_symlink() {
        let target = fs::read_link(from).map_err(|e| Error::io("read link", from, e))?;
        std::os::unix::fs::symlink(&target, to).map_err(|e| Error::io("create symlink", to, e))?;
    } else {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                return fs::hard_link(first, to).map_err(|e| Error::io("create hard link", to, e));
            }
            links.insert(key, to.to_path_buf());
        }
        if file_type.is_file() {
            copy_file(from, to)?;
        } else if file_type.is_char_device() || file_type.is_block_device() || file_type.is_fifo() {
            sys::mknod_path(to, meta.mode(), meta.rdev())
                .map_err(|e| Error::io("create device node", to, e))?;
        } else {
            // Sockets belong to running processes; a copy of one means nothing.
            return Ok(());
        }
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io("chown", to, e))?;
    for (key, value) in sys::xattrs_of(from).map_err(|e| Error::io("read xattrs", from, e))? {
        sys::set_xattr_path(to, &key, &value).map_err(|e| Error::io("set xattr", to, e))?;
    }
    if !file_type.is_symlink() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", to, e))?;
    }
    sys::set_times_path(to, meta.mtime(), meta.mtime_nsec())
        .map_err(|e| Error::io("set times", to, e))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)
        .map_err(|e| Error::io("open", from, e))?;
    let target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| Error::io("create file", to, e))?;
    if sys::clone_file(source.as_fd(), target.as_fd()).is_ok() {
        return Ok(());
    }
    let length = source
        .metadata()
        .map_err(|e| Error::io("inspect", from, e))?
        .len();
    let mut copied = 0u64;
    while copied < length {
        match sys::copy_file_range(source.as_fd(), target.as_fd(), (length - copied) as usize) {
            Ok(0) => break,
            Ok(n) => copied += n as u64,
            Err(_) => return copy_by_reading(source, target, from, to),
        }
    }
    Ok(())
}

fn copy_by_reading(mut source: File, mut target: File, from: &Path, to: &Path) -> Result<()> {
    use std::io::Seek;
    source.rewind().map_err(|e| Error::io("read", from, e))?;
    target
        .set_len(0)
        .and_then(|()| target.rewind())
        .map_err(|e| Error::io("write", to, e))?;
    io::copy(&mut source, &mut target).map_err(|e| Error::io("copy", to, e))?;
    Ok(())
}
