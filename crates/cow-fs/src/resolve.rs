//! Resolving entry names to directories strictly inside a target root.
//!
//! A tar entry name is first cleaned lexically ([`clean`]): a leading `/` and `.` components
//! are dropped and `..` is clamped at the root, as if the root were `/`. The parent
//! directory is then opened component by component from the root's file descriptor with
//! `O_NOFOLLOW`; when a component is a symlink (Debian's `lib -> usr/lib`), the prefix up to
//! it is resolved by the kernel with `openat2(RESOLVE_IN_ROOT)`, which treats the root as
//! `/` for `..` and for absolute and relative symlink targets alike. No path string ever
//! leaves this module to be resolved against the host's `/`, and the final component of an
//! entry is never resolved here at all: callers act on it with `*at` calls that do not
//! follow symlinks.
//!
//! [`Resolver`] caches the last parent directory opened, because tar streams list siblings
//! together. The cache holds one descriptor and is dropped whenever a directory or symlink
//! is removed or replaced, since either can change what a cached path means.
//!
//! ```text
//! clean(b"/../etc/./passwd") == "etc/passwd"
//! ```

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::sys;

/// Cleans an entry name into a relative path of plain components; `..` never rises above
/// the root. An empty result names the root itself.
pub fn clean(name: &[u8]) -> PathBuf {
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(name)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Opens directories inside one root, never leaving it.
pub struct Resolver {
    root: OwnedFd,
    cached: Option<(PathBuf, OwnedFd)>,
    /// Lower layers (topmost first) whose directories give a missing parent its mode and
    /// owner, as the merged view would show it.
    parents: Vec<OwnedFd>,
    /// Whether owners are copied from `parents` (needs root or `CAP_CHOWN`).
    copy_owners: bool,
    /// Directories created because an entry needed them, not because the layer listed
    /// them: their mode and owner came from `parents` as they were at that moment.
    implied: RefCell<HashSet<PathBuf>>,
}

fn component(part: &OsStr) -> io::Result<std::ffi::CString> {
    sys::cstring(part.as_bytes())
}

impl Resolver {
    /// Wraps an open root directory that will be stacked over `parents` (topmost first):
    /// a directory the layer does not list but needs is created with the mode (and, when
    /// `copy_owners`, the owner) of the same directory in the first parent that has one.
    /// Layers written by some tools (umoci among them) leave unchanged parents out.
    pub fn with_parents(root: OwnedFd, parents: Vec<OwnedFd>, copy_owners: bool) -> Resolver {
        Resolver {
            root,
            cached: None,
            parents,
            copy_owners,
            implied: RefCell::new(HashSet::new()),
        }
    }

    /// The directories created only because entries below them needed them.
    pub fn implied_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.implied.borrow().iter().cloned().collect();
        dirs.sort();
        dirs
    }

    /// Notes that the layer lists directory `rel` itself (its metadata is the layer's).
    pub fn listed(&self, rel: &Path) {
        self.implied.borrow_mut().remove(rel);
    }

    /// Gives the implied directory `rel` the mode and owner it has in the parent layers
    /// now (0755 and the caller's owner when no parent has it).
    pub fn settle(&self, rel: &Path) -> io::Result<()> {
        // Strictly component by component, never through a symlink: a directory that the
        // layer removed or replaced later (by a file or a symlink) is no longer implied.
        let mut fd = self.root.try_clone()?;
        for part in rel.iter() {
            fd = match sys::open_dir_at(fd.as_fd(), &component(part)?) {
                Ok(next) => next,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
        }
        match self.template(rel) {
            Some(st) => {
                sys::chmod_fd(fd.as_fd(), st.st_mode & 0o7777)?;
                if self.copy_owners {
                    sys::chown_fd(fd.as_fd(), st.st_uid, st.st_gid)?;
                }
            }
            None => {
                sys::chmod_fd(fd.as_fd(), 0o755)?;
                if self.copy_owners {
                    sys::chown_fd(fd.as_fd(), sys::euid(), sys::egid())?;
                }
            }
        }
        Ok(())
    }

    /// The metadata of directory `rel` in the first parent layer that has it (not through
    /// a symlink at its last component).
    fn template(&self, rel: &Path) -> Option<libc::stat> {
        let name = component(rel.file_name()?).ok()?;
        let up = rel.parent().unwrap_or(Path::new(""));
        for parent in &self.parents {
            let dir = if up.as_os_str().is_empty() {
                parent.try_clone().ok()
            } else {
                sys::cpath(up)
                    .ok()
                    .and_then(|path| sys::open_in_root(parent.as_fd(), &path).ok())
            };
            let Some(dir) = dir else { continue };
            match sys::stat_at(dir.as_fd(), &name) {
                Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => return Some(st),
                // Whatever else is there (a file, a symlink, a whiteout) hides lower layers.
                Ok(Some(_)) => return None,
                _ => {}
            }
        }
        None
    }

    /// The root directory itself.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Forgets the cached directory; call after removing or replacing a directory or symlink.
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    /// Opens directory `rel` (relative, already [`clean`]ed), creating missing directories
    /// when `create` is set (mode 0755, or as the parent layers have them), and keeps it as
    /// the cached directory.
    pub fn dir(&mut self, rel: &Path, create: bool) -> io::Result<BorrowedFd<'_>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = matches!(&self.cached, Some((path, _)) if path == rel);
        if !hit {
            let fd = match self.cached.take() {
                Some((path, fd)) if rel.starts_with(&path) => {
                    let rest = rel.strip_prefix(&path).unwrap_or(rel).to_owned();
                    self.walk(fd.as_fd(), &path, &rest, create)?
                }
                _ => self.walk(self.root.as_fd(), Path::new(""), rel, create)?,
            };
            self.cached = Some((rel.to_owned(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    /// Opens directory `rel` without touching the cache.
    pub fn open_uncached(&self, rel: &Path) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return self.root.try_clone();
        }
        self.walk(self.root.as_fd(), Path::new(""), rel, false)
    }

    /// Walks `rest` below `start` (which is the directory `start_rel`).
    fn walk(
        &self,
        start: BorrowedFd<'_>,
        start_rel: &Path,
        rest: &Path,
        create: bool,
    ) -> io::Result<OwnedFd> {
        let mut current: Option<OwnedFd> = None;
        let mut prefix = start_rel.to_path_buf();
        for part in rest.iter() {
            prefix.push(part);
            let name = component(part)?;
            let dir = current.as_ref().map_or(start, |fd| fd.as_fd());
            let next = match sys::open_dir_at(dir, &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    let template = self.template(&prefix);
                    let mode = template.map_or(0o755, |st| st.st_mode & 0o7777);
                    let created = match sys::mkdir_at(dir, &name, mode) {
                        Ok(()) => true,
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
                        Err(e) => return Err(e),
                    };
                    let fd = self.open_one(dir, &name, &prefix)?;
                    if created {
                        self.implied.borrow_mut().insert(prefix.clone());
                    }
                    if let (true, Some(st)) = (created, template) {
                        // mkdir applies the umask and drops setuid/setgid/sticky bits.
                        sys::chmod_fd(fd.as_fd(), st.st_mode & 0o7777)?;
                        if self.copy_owners {
                            sys::chown_fd(fd.as_fd(), st.st_uid, st.st_gid)?;
                        }
                    }
                    fd
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    self.open_one(dir, &name, &prefix)?
                }
                Err(e) => return Err(e),
            };
            current = Some(next);
        }
        match current {
            Some(fd) => Ok(fd),
            None => start.try_clone_to_owned(),
        }
    }

    /// Opens `name` in `dir`; when it is a symlink, resolves `prefix` in the root instead.
    fn open_one(&self, dir: BorrowedFd<'_>, name: &CStr, prefix: &Path) -> io::Result<OwnedFd> {
        match sys::open_dir_at(dir, name) {
            Ok(fd) => Ok(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let is_link = sys::stat_at(dir, name)?
                    .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                if !is_link {
                    return Err(e);
                }
                let path = sys::cpath(prefix)?;
                sys::open_in_root(self.root.as_fd(), &path)
            }
            Err(e) => Err(e),
        }
    }
}

/// Removes `name` in `dir` and, if it is a directory, everything below it; never follows a
/// symlink. Returns the file type removed (`S_IFMT` bits), or `None` if nothing was there.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<u32>> {
    remove_all_at_depth(dir, name, 0)
}

/// Deepest directory nesting removed. Entry names are capped in length, but symlinked
/// parents let a layer build deeper trees; the cap keeps a removal from exhausting the
/// stack.
const MAX_REMOVE_DEPTH: usize = 4096;

fn remove_all_at_depth(dir: BorrowedFd<'_>, name: &CStr, depth: usize) -> io::Result<Option<u32>> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::other(
            "directory nesting deeper than 4096 levels",
        ));
    }
    let Some(st) = sys::stat_at(dir, name)? else {
        return Ok(None);
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        let child = sys::open_dir_at(dir, name)?;
        for entry in sys::read_dir_names(child.as_fd())? {
            remove_all_at_depth(child.as_fd(), &entry, depth + 1)?;
        }
        sys::unlink_at(dir, name, true)?;
    } else {
        sys::unlink_at(dir, name, false)?;
    }
    Ok(Some(kind))
}

/// Removes every child of `dir` for which `keep` says false.
pub fn remove_children(dir: BorrowedFd<'_>, keep: impl Fn(&CStr) -> bool) -> io::Result<()> {
    for name in sys::read_dir_names(dir)? {
        if !keep(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Lexical cleaning of entry names.
    use super::*;

    #[track_caller]
    fn check(name: &str, expected: &str) {
        assert_eq!(
            clean(name.as_bytes()),
            PathBuf::from(expected),
            "clean({name:?})"
        );
    }

    #[test]
    fn cleaning_clamps_at_the_root() {
        for (name, expected) in [
            ("etc/passwd", "etc/passwd"),
            ("/etc/passwd", "etc/passwd"),
            ("./etc/./passwd", "etc/passwd"),
            ("../../etc/passwd", "etc/passwd"),
            ("a/../../b", "b"),
            ("a/b/../c/", "a/c"),
            ("//a//b", "a/b"),
            (".", ""),
            ("/", ""),
            ("..", ""),
        ] {
            check(name, expected);
        }
    }
}
