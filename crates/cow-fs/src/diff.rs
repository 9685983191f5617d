//! Producing layer tars from directories: [`diff_upper`] and [`diff_trees`].
//!
//! [`diff_upper`] reads an overlayfs upper directory (a container's changes): `0/0`
//! character devices become `.wh.NAME` entries, opaque directories
//! (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, metacopy files take their data
//! from the lower layer that holds it, a renamed lower directory (`redirect_dir`) is
//! written whole (opaque, with the merged contents of its origin in `lowers`), and
//! overlay's own attributes are never written.
//! [`diff_trees`] compares two full trees (the native driver's parent copy and its active
//! copy) and writes what changed, with whiteouts for what disappeared.
//!
//! Output is deterministic: a pre-order walk with each directory's entries sorted by their
//! names in the layer, hard links within the layer as link entries, extended attributes as
//! PAX `SCHILY.xattr.*` records, and, with [`DiffOptions::fixed_mtime`], every time set to
//! one value so that the same change always gives the same bytes (and digest). Neither
//! function compresses; wrap the writer in a gzip or zstd encoder for that.
//!
//! ```no_run
//! use stencil_cow_fs::{DiffOptions, diff_upper};
//! let out = std::fs::File::create("layer.tar")?;
//! let options = DiffOptions::default().fixed_mtime(0);
//! diff_upper("/c/upper".as_ref(), &["/s/2/fs".as_ref(), "/s/1/fs".as_ref()], out, &options)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::sys;
use crate::whiteout::{
    OPAQUE, OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, PREFIX, USER_OVERLAY_XATTR_PREFIX,
};

/// How a diff is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffOptions {
    /// When set, every entry's modification time is this value (seconds since the epoch).
    pub mtime: Option<u64>,
    /// Paths (relative to the root, like `proc` or `etc/hosts`) that a container runtime
    /// made to mount on: an upper diff leaves each out when it is new (no lower has it)
    /// and is an empty file or holds nothing but empty directories, as docker's init
    /// layer keeps them out of commits.
    pub mount_points: Vec<PathBuf>,
}

impl DiffOptions {
    /// Writes every entry with modification time `seconds`, for reproducible layers.
    pub fn fixed_mtime(mut self, seconds: u64) -> DiffOptions {
        self.mtime = Some(seconds);
        self
    }

    /// Leaves out the new, empty mount points `dirs` (see
    /// [`DiffOptions::mount_points`]).
    pub fn mount_points<P: Into<PathBuf>>(
        mut self,
        dirs: impl IntoIterator<Item = P>,
    ) -> DiffOptions {
        self.mount_points = dirs.into_iter().map(Into::into).collect();
        self
    }
}

/// Whether `dir` holds nothing but (empty) directories.
fn is_empty_tree(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|entry| {
            entry.file_type().is_ok_and(|t| t.is_dir()) && is_empty_tree(&entry.path())
        })
    })
}

/// Writes the layer tar for overlay upper directory `upper`, whose lower layers are
/// `lowers` (topmost first; read for metacopy data and renamed directories), into `out`.
pub fn diff_upper<W: Write>(
    upper: &Path,
    lowers: &[&Path],
    out: W,
    options: &DiffOptions,
) -> Result<W> {
    let mut writer = LayerWriter::new(out, options);
    let root = sys::open_dir(upper).map_err(|e| Error::io("open", upper, e))?;
    upper_dir(
        &mut writer,
        upper,
        lowers,
        Path::new(""),
        root.as_fd(),
        &options.mount_points,
    )?;
    writer.finish()
}

/// Writes the layer tar that turns tree `old` into tree `new` into `out`.
pub fn diff_trees<W: Write>(old: &Path, new: &Path, out: W, options: &DiffOptions) -> Result<W> {
    let mut writer = LayerWriter::new(out, options);
    compare_dir(&mut writer, old, new, Path::new(""))?;
    writer.finish()
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        names.push(
            entry
                .map_err(|e| Error::io("read directory", dir, e))?
                .file_name(),
        );
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn whiteout_name(name: &OsStr) -> OsString {
    let mut bytes = PREFIX.to_vec();
    bytes.extend_from_slice(name.as_bytes());
    OsString::from(OsStr::from_bytes(&bytes))
}

/// What one entry of a directory becomes in the layer.
enum Emit {
    /// The entry itself (and, for a directory, a walk below it).
    Entry(OsString),
    /// A whiteout for the named entry.
    Whiteout(OsString),
    /// The opaque marker of this directory.
    Opaque,
}

fn emitted_name(emit: &Emit) -> OsString {
    match emit {
        Emit::Entry(name) => name.clone(),
        Emit::Whiteout(name) => whiteout_name(name),
        Emit::Opaque => OsStr::from_bytes(OPAQUE).to_owned(),
    }
}

fn sort_emits(emits: &mut [Emit]) {
    emits.sort_by_cached_key(|e| emitted_name(e).as_bytes().to_vec());
}

fn xattr_value<'a>(xattrs: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    xattrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    sys::xattrs_of(path).map_err(|e| Error::io("read xattrs", path, e))
}

/// Writes directory `rel` of the upper directory (open as `dir_fd`) and everything below
/// it. Entries are looked up relative to their directory's descriptor, files and
/// directories are opened once for their attributes and contents, and the directory
/// listing's types spare a `stat` for all but character devices (whiteouts): on 10,000
/// small files this walk costs about what `tar -c` does.
fn upper_dir(
    writer: &mut LayerWriter<impl Write>,
    upper: &Path,
    lowers: &[&Path],
    rel: &Path,
    dir_fd: BorrowedFd<'_>,
    mount_points: &[PathBuf],
) -> Result<()> {
    let dir = upper.join(rel);
    let mut emits = Vec::new();
    let dir_xattrs = sys::xattrs_of_fd(dir_fd).map_err(|e| Error::io("read xattrs", &dir, e))?;
    let opaque = [OVERLAY_OPAQUE_XATTR, b"user.overlay.opaque"]
        .iter()
        .any(|key| xattr_value(&dir_xattrs, key) == Some(b"y"));
    if opaque && !rel.as_os_str().is_empty() {
        emits.push(Emit::Opaque);
    }
    let entries =
        sys::read_dir_entries(dir_fd).map_err(|e| Error::io("read directory", &dir, e))?;
    for (cname, d_type) in entries {
        let maybe_device = d_type == libc::DT_CHR || d_type == libc::DT_UNKNOWN;
        let whiteout =
            maybe_device && stat_at(dir_fd, &cname, &dir)?.is_some_and(|stat| stat.is_whiteout());
        let name = OsString::from_vec(cname.into_bytes());
        if whiteout {
            emits.push(Emit::Whiteout(name));
        } else {
            emits.push(Emit::Entry(name));
        }
    }
    sort_emits(&mut emits);
    for emit in emits {
        match emit {
            Emit::Opaque => writer.marker(&rel.join(OsStr::from_bytes(OPAQUE)))?,
            Emit::Whiteout(name) => writer.marker(&rel.join(whiteout_name(&name)))?,
            Emit::Entry(name) => {
                let child = rel.join(&name);
                let path = upper.join(&child);
                let cname =
                    sys::cstring(name.as_bytes()).map_err(|e| Error::io("inspect", &path, e))?;
                let Some(stat) = stat_at(dir_fd, &cname, &path)? else {
                    return Err(Error::io(
                        "inspect",
                        &path,
                        io::Error::from_raw_os_error(libc::ENOENT),
                    ));
                };
                let placeholder =
                    (stat.is_dir() && is_empty_tree(&path)) || (stat.is_file() && stat.size == 0);
                if placeholder
                    && mount_points.contains(&child)
                    && !lowers
                        .iter()
                        .any(|lower| lower.join(&child).symlink_metadata().is_ok())
                {
                    continue;
                }
                // Directories and files are opened once, for their attributes and then
                // for the walk below or the data; other entries are read by path.
                let opened = if stat.is_dir() {
                    sys::open_dir_at(dir_fd, &cname).map(Opened::Dir)
                } else if stat.is_file() {
                    sys::open_file_at(dir_fd, &cname).map(Opened::File)
                } else {
                    Ok(Opened::Nothing)
                }
                .map_err(|e| Error::io("open", &path, e))?;
                let xattrs = match &opened {
                    Opened::Dir(fd) => sys::xattrs_of_fd(fd.as_fd()),
                    Opened::File(file) => sys::xattrs_of_fd(file.as_fd()),
                    Opened::Nothing => sys::xattrs_of(&path),
                }
                .map_err(|e| Error::io("read xattrs", &path, e))?;
                if stat.is_dir()
                    && let Some(redirect) = xattr_value(&xattrs, b"trusted.overlay.redirect")
                {
                    // A renamed lower directory: the upper holds only its changes, so the
                    // layer gets the whole merged directory, opaque over the new path.
                    let origin = redirect_origin(redirect, &child);
                    writer.entry(&child, Source::Path(&path), &stat, &xattrs, None)?;
                    writer.marker(&child.join(OsStr::from_bytes(OPAQUE)))?;
                    let mut sources = vec![path.clone()];
                    if !is_opaque(&xattrs) {
                        sources.extend(lower_sources(lowers, &origin)?);
                    }
                    merged_dir(writer, &sources, lowers, &origin, &child)?;
                    continue;
                }
                let data = if stat.is_file()
                    && xattr_value(&xattrs, b"trusted.overlay.metacopy").is_some()
                {
                    Some(metacopy_source(&xattrs, lowers, &child)?)
                } else {
                    None
                };
                let (file, dir) = match opened {
                    Opened::Dir(fd) => (None, Some(fd)),
                    Opened::File(file) => (Some(file), None),
                    Opened::Nothing => (None, None),
                };
                let source = Source::At {
                    dir: dir_fd,
                    name: &cname,
                    path: &path,
                    file,
                };
                writer.entry(&child, source, &stat, &xattrs, data.as_deref())?;
                if let Some(fd) = dir {
                    upper_dir(writer, upper, lowers, &child, fd.as_fd(), mount_points)?;
                }
            }
        }
    }
    Ok(())
}

/// An upper entry opened for the walk.
enum Opened {
    Dir(OwnedFd),
    File(File),
    Nothing,
}

/// `fstatat` of `name` in `dir` (not following a symlink); `None` when it is gone. `path`
/// names it in errors.
fn stat_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<Option<Stat>> {
    Ok(sys::stat_at(dir, name)
        .map_err(|e| Error::io("inspect", path, e))?
        .map(|st| Stat::from(&st)))
}

/// What a layer entry takes from an inode's status.
#[derive(Debug, Clone, Copy)]
struct Stat {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
    rdev: u64,
}

impl From<&Metadata> for Stat {
    fn from(meta: &Metadata) -> Stat {
        Stat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            size: meta.size(),
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
        }
    }
}

impl From<&libc::stat> for Stat {
    fn from(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            size: u64::try_from(st.st_size).unwrap_or(0),
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
        }
    }
}

impl Stat {
    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    fn is_whiteout(&self) -> bool {
        self.kind() == libc::S_IFCHR && self.rdev == 0
    }
}

/// Where [`LayerWriter::entry`] reads a symlink's target and a file's contents.
enum Source<'a> {
    /// By path.
    Path(&'a Path),
    /// Relative to an open directory, with the file already open when it is one; `path`
    /// names it in errors.
    At {
        dir: BorrowedFd<'a>,
        name: &'a CStr,
        path: &'a Path,
        file: Option<File>,
    },
}

impl Source<'_> {
    fn path(&self) -> &Path {
        match self {
            Source::Path(path) | Source::At { path, .. } => path,
        }
    }
}

fn is_opaque(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    [OVERLAY_OPAQUE_XATTR, b"user.overlay.opaque"]
        .iter()
        .any(|key| xattr_value(xattrs, key) == Some(b"y"))
}

/// The lower path a redirect names: absolute from the layer root, or relative to the
/// directory's parent.
fn redirect_origin(redirect: &[u8], rel: &Path) -> PathBuf {
    match redirect.strip_prefix(b"/") {
        Some(absolute) => PathBuf::from(OsStr::from_bytes(absolute)),
        None => rel
            .parent()
            .unwrap_or(Path::new(""))
            .join(OsStr::from_bytes(redirect)),
    }
}

/// The lower directories merged at lower path `origin`, topmost first, down to an opaque
/// one or to a layer where something other than a directory hides the rest.
fn lower_sources(lowers: &[&Path], origin: &Path) -> Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for lower in lowers {
        let path = lower.join(origin);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let opaque = is_opaque(&read_xattrs(&path)?);
                sources.push(path);
                if opaque {
                    break;
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    Ok(sources)
}

/// Writes everything visible below `rel` in the overlay merge of `sources` (topmost
/// first), as the kernel would show it; `origin` is the lower path they stand for.
fn merged_dir(
    writer: &mut LayerWriter<impl Write>,
    sources: &[PathBuf],
    lowers: &[&Path],
    origin: &Path,
    rel: &Path,
) -> Result<()> {
    let mut names = std::collections::BTreeSet::new();
    for source in sources {
        for name in sorted_names(source)? {
            names.insert(name.as_bytes().to_vec());
        }
    }
    for name in names {
        let name = OsStr::from_bytes(&name);
        let Some((index, path, meta)) = sources.iter().enumerate().find_map(|(i, s)| {
            let path = s.join(name);
            fs::symlink_metadata(&path).ok().map(|m| (i, path, m))
        }) else {
            continue;
        };
        if is_whiteout(&meta) {
            continue;
        }
        let xattrs = read_xattrs(&path)?;
        let child = rel.join(name);
        let child_origin = match xattr_value(&xattrs, b"trusted.overlay.redirect") {
            Some(redirect) if meta.is_dir() => redirect_origin(redirect, &origin.join(name)),
            _ => origin.join(name),
        };
        let data = if meta.is_file() && xattr_value(&xattrs, b"trusted.overlay.metacopy").is_some()
        {
            Some(metacopy_source(&xattrs, lowers, &origin.join(name))?)
        } else {
            None
        };
        writer.entry(
            &child,
            Source::Path(&path),
            &Stat::from(&meta),
            &xattrs,
            data.as_deref(),
        )?;
        if !meta.is_dir() {
            continue;
        }
        let mut child_sources = vec![path.clone()];
        if !is_opaque(&xattrs) {
            if xattr_value(&xattrs, b"trusted.overlay.redirect").is_some() {
                child_sources.extend(lower_sources(lowers, &child_origin)?);
            } else {
                for source in &sources[index + 1..] {
                    let below = source.join(name);
                    match fs::symlink_metadata(&below) {
                        Ok(m) if m.is_dir() => {
                            let opaque = is_opaque(&read_xattrs(&below)?);
                            child_sources.push(below);
                            if opaque {
                                break;
                            }
                        }
                        Ok(_) => break,
                        Err(_) => {}
                    }
                }
            }
        }
        merged_dir(writer, &child_sources, lowers, &child_origin, &child)?;
    }
    Ok(())
}

/// Finds the lower file that holds the data of a metacopy upper file.
fn metacopy_source(xattrs: &[(Vec<u8>, Vec<u8>)], lowers: &[&Path], rel: &Path) -> Result<PathBuf> {
    let origin = match xattr_value(xattrs, b"trusted.overlay.redirect") {
        Some(redirect) if redirect.starts_with(b"/") => {
            PathBuf::from(OsStr::from_bytes(&redirect[1..]))
        }
        Some(redirect) => rel
            .parent()
            .unwrap_or(Path::new(""))
            .join(OsStr::from_bytes(redirect)),
        None => rel.to_path_buf(),
    };
    lowers
        .iter()
        .map(|lower| lower.join(&origin))
        .find(|candidate| fs::symlink_metadata(candidate).is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            Error::io(
                "find metacopy data in lower layers",
                rel,
                io::Error::from_raw_os_error(libc::ENOENT),
            )
        })
}

fn compare_dir(
    writer: &mut LayerWriter<impl Write>,
    old: &Path,
    new: &Path,
    rel: &Path,
) -> Result<()> {
    let old_names = sorted_names(&old.join(rel))?;
    let new_names = sorted_names(&new.join(rel))?;
    let mut emits = Vec::new();
    let mut recurse = Vec::new();
    for name in &old_names {
        if new_names
            .binary_search_by(|n| n.as_bytes().cmp(name.as_bytes()))
            .is_err()
        {
            emits.push(Emit::Whiteout(name.clone()));
        }
    }
    for name in new_names {
        let child = rel.join(&name);
        let new_meta = lstat(&new.join(&child))?;
        let old_path = old.join(&child);
        match fs::symlink_metadata(&old_path) {
            Err(_) => emits.push(Emit::Entry(name)),
            Ok(old_meta) => {
                let both_dirs = old_meta.is_dir() && new_meta.is_dir();
                if !same_entry(&old_path, &old_meta, &new.join(&child), &new_meta)? {
                    emits.push(Emit::Entry(name.clone()));
                }
                if both_dirs {
                    recurse.push(name);
                }
            }
        }
    }
    sort_emits(&mut emits);
    // Entries and recursion are interleaved in sorted order so that the walk stays
    // pre-order with sorted siblings.
    let mut order: Vec<(Vec<u8>, Option<Emit>, Option<OsString>)> = emits
        .into_iter()
        .map(|e| (emitted_name(&e).as_bytes().to_vec(), Some(e), None))
        .collect();
    for name in recurse {
        order.push((name.as_bytes().to_vec(), None, Some(name)));
    }
    order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.is_none().cmp(&b.1.is_none())));
    for (_, emit, descend) in order {
        match (emit, descend) {
            (Some(Emit::Whiteout(name)), _) => writer.marker(&rel.join(whiteout_name(&name)))?,
            (Some(Emit::Entry(name)), _) => {
                let child = rel.join(&name);
                let path = new.join(&child);
                let meta = lstat(&path)?;
                let xattrs = read_xattrs(&path)?;
                writer.entry(
                    &child,
                    Source::Path(&path),
                    &Stat::from(&meta),
                    &xattrs,
                    None,
                )?;
                let old_is_dir = fs::symlink_metadata(old.join(&child)).is_ok_and(|m| m.is_dir());
                if meta.is_dir() && !old_is_dir {
                    add_tree(writer, new, &child)?;
                }
            }
            (None, Some(name)) => compare_dir(writer, old, new, &rel.join(name))?,
            _ => {}
        }
    }
    Ok(())
}

/// Adds everything below directory `rel` of `root`.
fn add_tree(writer: &mut LayerWriter<impl Write>, root: &Path, rel: &Path) -> Result<()> {
    for name in sorted_names(&root.join(rel))? {
        let child = rel.join(&name);
        let path = root.join(&child);
        let meta = lstat(&path)?;
        let xattrs = read_xattrs(&path)?;
        writer.entry(
            &child,
            Source::Path(&path),
            &Stat::from(&meta),
            &xattrs,
            None,
        )?;
        if meta.is_dir() {
            add_tree(writer, root, &child)?;
        }
    }
    Ok(())
}

fn same_entry(old: &Path, old_meta: &Metadata, new: &Path, new_meta: &Metadata) -> Result<bool> {
    let same_meta = old_meta.mode() == new_meta.mode()
        && old_meta.uid() == new_meta.uid()
        && old_meta.gid() == new_meta.gid()
        && old_meta.rdev() == new_meta.rdev()
        && (old_meta.is_dir() || old_meta.size() == new_meta.size());
    if !same_meta || read_xattrs(old)? != read_xattrs(new)? {
        return Ok(false);
    }
    if old_meta.file_type().is_symlink() {
        let a = fs::read_link(old).map_err(|e| Error::io("read link", old, e))?;
        let b = fs::read_link(new).map_err(|e| Error::io("read link", new, e))?;
        if a != b {
            return Ok(false);
        }
    }
    if old_meta.mtime() == new_meta.mtime() && old_meta.mtime_nsec() == new_meta.mtime_nsec() {
        return Ok(true);
    }
    if !old_meta.is_file() {
        return Ok(old_meta.is_dir());
    }
    same_contents(old, new)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = File::open(a).map_err(|e| Error::io("open", a, e))?;
    let mut fb = File::open(b).map_err(|e| Error::io("open", b, e))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| Error::io("read", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| Error::io("read", b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes tar entries with stencil's conventions (see the module documentation).
struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    mtime: Option<u64>,
}

impl<W: Write> LayerWriter<W> {
    fn new(out: W, options: &DiffOptions) -> LayerWriter<W> {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        LayerWriter {
            builder,
            links: HashMap::new(),
            mtime: options.mtime,
        }
    }

    fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|e| Error::io("finish layer", "", e))
    }

    /// A whiteout or opaque marker: an empty regular file.
    fn marker(&mut self, rel: &Path) -> Result<()> {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_mtime(self.mtime.unwrap_or(0));
        self.builder
            .append_data(&mut header, rel, io::empty())
            .map_err(|e| Error::io("write whiteout", rel, e))
    }

    fn entry(
        &mut self,
        rel: &Path,
        source: Source<'_>,
        meta: &Stat,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data_from: Option<&Path>,
    ) -> Result<()> {
        let write_error = |e| Error::io("write layer entry", rel, e);
        let mut header = Header::new_ustar();
        header.set_mode(meta.mode & 0o7777);
        header.set_uid(u64::from(meta.uid));
        header.set_gid(u64::from(meta.gid));
        header.set_mtime(self.mtime.unwrap_or(meta.mtime.max(0) as u64));
        header.set_size(0);
        let kept: Vec<&(Vec<u8>, Vec<u8>)> = xattrs
            .iter()
            .filter(|(k, _)| {
                !k.starts_with(OVERLAY_XATTR_PREFIX) && !k.starts_with(USER_OVERLAY_XATTR_PREFIX)
            })
            .collect();
        if !kept.is_empty() {
            let mut records = Vec::new();
            for (key, value) in kept {
                let mut body = b"SCHILY.xattr.".to_vec();
                body.extend_from_slice(key);
                body.push(b'=');
                body.extend_from_slice(value);
                body.push(b'\n');
                records.extend_from_slice(&pax_record(&body));
            }
            let mut pax = Header::new_ustar();
            pax.set_entry_type(EntryType::XHeader);
            pax.set_size(records.len() as u64);
            pax.set_mode(0o644);
            pax.set_mtime(self.mtime.unwrap_or(0));
            self.builder
                .append_data(&mut pax, "PaxHeader", records.as_slice())
                .map_err(write_error)?;
        }
        let kind = meta.kind();
        if kind == libc::S_IFDIR {
            header.set_entry_type(EntryType::Directory);
            self.builder
                .append_data(&mut header, rel, io::empty())
                .map_err(write_error)
        } else if kind == libc::S_IFLNK {
            header.set_entry_type(EntryType::Symlink);
            let target = match &source {
                Source::Path(path) => fs::read_link(path),
                Source::At { dir, name, .. } => sys::read_link_at(*dir, name),
            }
            .map_err(|e| Error::io("read link", source.path(), e))?;
            self.builder
                .append_link(&mut header, rel, target)
                .map_err(write_error)
        } else if kind == libc::S_IFREG {
            let key = (meta.dev, meta.ino);
            if meta.nlink > 1 && data_from.is_none() {
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(EntryType::Link);
                    let first = first.clone();
                    return self
                        .builder
                        .append_link(&mut header, rel, first)
                        .map_err(write_error);
                }
                self.links.insert(key, rel.to_path_buf());
            }
            let (file, size) = match (data_from, source) {
                (
                    None,
                    Source::At {
                        file: Some(file), ..
                    },
                ) => (file, meta.size),
                (
                    None,
                    Source::At {
                        dir, name, path, ..
                    },
                ) => (
                    sys::open_file_at(dir, name).map_err(|e| Error::io("open", path, e))?,
                    meta.size,
                ),
                (Some(path), _) | (None, Source::Path(path)) => {
                    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
                    let size = file
                        .metadata()
                        .map_err(|e| Error::io("inspect", path, e))?
                        .len();
                    (file, size)
                }
            };
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            // A file that changes while being read would corrupt the stream; `take` keeps
            // the written length equal to the header's.
            self.builder
                .append_data(&mut header, rel, PaddedReader::new(file, size))
                .map_err(write_error)
        } else {
            let kind = match kind {
                libc::S_IFCHR => EntryType::Char,
                libc::S_IFBLK => EntryType::Block,
                libc::S_IFIFO => EntryType::Fifo,
                // Sockets cannot be stored in a layer; they are recreated by their owners.
                _ => return Ok(()),
            };
            header.set_entry_type(kind);
            if kind != EntryType::Fifo {
                let rdev = meta.rdev;
                header
                    .set_device_major(libc::major(rdev))
                    .map_err(write_error)?;
                header
                    .set_device_minor(libc::minor(rdev))
                    .map_err(write_error)?;
            }
            self.builder
                .append_data(&mut header, rel, io::empty())
                .map_err(write_error)
        }
    }
}

/// A reader of exactly `size` bytes: the file's, cut or padded with zeros.
struct PaddedReader {
    inner: io::Take<File>,
    remaining: u64,
}

impl PaddedReader {
    fn new(file: File, size: u64) -> PaddedReader {
        PaddedReader {
            inner: file.take(size),
            remaining: size,
        }
    }
}

impl Read for PaddedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(buf)? {
            0 => {
                let n = buf.len().min(self.remaining as usize);
                buf[..n].fill(0);
                n
            }
            n => n,
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Frames one PAX record body (`key=value\n`) with its self-inclusive decimal length.
fn pax_record(body: &[u8]) -> Vec<u8> {
    let mut length = body.len() + 2;
    loop {
        let candidate = length.to_string().len() + 1 + body.len();
        if candidate == length {
            break;
        }
        length = candidate;
    }
    let mut out = format!("{length} ").into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    //! Framing of PAX records.
    use super::*;

    #[track_caller]
    fn check(body: &str, expected: &str) {
        assert_eq!(pax_record(body.as_bytes()), expected.as_bytes());
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for (body, expected) in [
            ("a=b\n", "6 a=b\n"),
            ("path=12345\n", "14 path=12345\n"),
            (
                &format!("k={}\n", "x".repeat(94)),
                &format!("101 k={}\n", "x".repeat(94)),
            ),
        ] {
            check(body, expected);
        }
    }
}
