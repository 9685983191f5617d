//! Applying a layer tar stream to a directory: [`apply_layer`].
//!
//! This is the security boundary between untrusted image content and the host. The stream
//! is parsed with the `tar` crate (never its `unpack`); every entry is created with `*at`
//! system calls relative to a parent directory opened inside the target by the private
//! `resolve` module, so `..`, absolute names and symlinks planted by the layer cannot reach
//! outside the target. The final component of an entry is never followed: an
//! existing symlink, file or directory in the way is removed first (directories are kept
//! when the entry is itself a directory), files are created with `O_EXCL | O_NOFOLLOW`,
//! and owner, mode, times and extended attributes are set through the new file's
//! descriptor or with no-follow calls. Hard links must name an existing entry inside the
//! target. The root itself can get a directory's metadata but is never replaced.
//!
//! What it does not do: decide which directory a layer goes to (the snapshotter does), or
//! know digests (the caller verifies them while bytes pass, e.g. with a hashing reader).
//!
//! ```no_run
//! use stencil_cow_fs::{ApplyOptions, WhiteoutMode, apply_layer};
//! let layer = std::fs::File::open("layer.tar.gz")?;
//! let options = ApplyOptions::default().whiteouts(WhiteoutMode::Delete);
//! let stats = apply_layer(layer, "/tmp/rootfs".as_ref(), &options)?;
//! println!("{} entries, {} bytes", stats.entries, stats.bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::compression::{Compression, decompress_threaded, detect};
use crate::error::{Error, Result};
use crate::header_guard::HeaderGuard;
use crate::resolve::{Resolver, clean, remove_all_at, remove_children};
use crate::sys;
use crate::whiteout::{
    self, OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, USER_OVERLAY_XATTR_PREFIX, Whiteout,
    WhiteoutMode,
};

/// Caps that stop a hostile layer from exhausting the disk, inodes or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tar entries (including whiteouts) a layer may hold.
    pub max_entries: u64,
    /// Most bytes the decompressed tar stream may hold, headers included.
    pub max_total_bytes: u64,
    /// Longest entry or link name, in bytes.
    pub max_path_len: usize,
    /// Largest PAX or GNU long-name extension entry, which is read into memory whole.
    pub max_extension_bytes: u64,
}

impl Default for Limits {
    /// One million entries, 64 GiB, 4096-byte names and 1 MiB extension entries: far
    /// above any real image.
    fn default() -> Limits {
        Limits {
            max_entries: 1_000_000,
            max_total_bytes: 64 << 30,
            max_path_len: 4096,
            max_extension_bytes: 1 << 20,
        }
    }
}

/// One contiguous range of an id mapping, as in `/proc/PID/uid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the layer.
    pub container: u32,
    /// The host id it becomes.
    pub host: u32,
    /// How many consecutive ids the range holds.
    pub size: u32,
}

/// Maps owner ids of layer entries to host ids (for user-namespaced containers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Ranges for user ids.
    pub uids: Vec<IdRange>,
    /// Ranges for group ids.
    pub gids: Vec<IdRange>,
}

fn map_id(ranges: &[IdRange], id: u64) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = id.checked_sub(u64::from(r.container))?;
        (offset < u64::from(r.size)).then(|| r.host + offset as u32)
    })
}

/// How [`apply_layer`] writes entries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// How whiteouts are written (overlay markers or deletions).
    pub whiteouts: WhiteoutMode,
    /// Caps against archive bombs.
    pub limits: Limits,
    /// Optional mapping of owner ids.
    pub id_map: Option<IdMap>,
    /// Whether to set owners (needs root or `CAP_CHOWN`).
    pub preserve_ownership: bool,
    /// The layers this one will be stacked on, topmost first: directories the layer needs
    /// but does not list are created as they are there (see [`LayerTarget`]).
    ///
    /// [`LayerTarget`]: crate::LayerTarget
    pub parents: Vec<PathBuf>,
}

impl Default for ApplyOptions {
    /// Deleting whiteouts, default limits, no id mapping, owners kept when running as root.
    fn default() -> ApplyOptions {
        ApplyOptions {
            whiteouts: WhiteoutMode::default(),
            limits: Limits::default(),
            id_map: None,
            preserve_ownership: sys::euid() == 0,
            parents: Vec::new(),
        }
    }
}

impl ApplyOptions {
    /// Sets how whiteouts are written.
    pub fn whiteouts(mut self, mode: WhiteoutMode) -> ApplyOptions {
        self.whiteouts = mode;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> ApplyOptions {
        self.limits = limits;
        self
    }

    /// Sets an id mapping.
    pub fn id_map(mut self, map: IdMap) -> ApplyOptions {
        self.id_map = Some(map);
        self
    }

    /// Sets whether owners are applied.
    pub fn preserve_ownership(mut self, preserve: bool) -> ApplyOptions {
        self.preserve_ownership = preserve;
        self
    }

    /// Sets the layers below the target, topmost first (an overlay snapshot's lower
    /// directories, as [`LayerTarget::parents`] gives them).
    ///
    /// [`LayerTarget::parents`]: crate::LayerTarget::parents
    pub fn parents(mut self, parents: Vec<PathBuf>) -> ApplyOptions {
        self.parents = parents;
        self
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyStats {
    /// The compression detected.
    pub compression: Compression,
    /// Entries read (whiteouts included).
    pub entries: u64,
    /// Bytes of the decompressed tar stream.
    pub bytes: u64,
}

/// Streams the layer in `reader` (gzip, zstd or plain tar, detected from its first bytes)
/// into the existing directory `target`.
pub fn apply_layer<R: Read + Send>(
    reader: R,
    target: &Path,
    options: &ApplyOptions,
) -> Result<ApplyStats> {
    apply_layer_tracked(reader, target, options).map(|applied| applied.stats)
}

/// What [`apply_layer_tracked`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// Entries, bytes and compression.
    pub stats: ApplyStats,
    /// Directories (relative to the target) that the layer needed but did not list: they
    /// took their mode and owner from [`ApplyOptions::parents`] as those were during the
    /// apply. When the parents were still being filled, pass this list to
    /// [`settle_implied_dirs`] once they are complete.
    pub implied_dirs: Vec<PathBuf>,
}

/// [`apply_layer`], also reporting the directories the layer implied without listing.
pub fn apply_layer_tracked<R: Read + Send>(
    reader: R,
    target: &Path,
    options: &ApplyOptions,
) -> Result<Applied> {
    let root = sys::open_dir(target).map_err(|e| Error::io("open target", target, e))?;
    let parents = options
        .parents
        .iter()
        .map(|dir| sys::open_dir(dir).map_err(|e| Error::io("open parent layer", dir, e)))
        .collect::<Result<Vec<_>>>()?;
    let (compression, peeked) = detect(reader)?;
    let mut applier = Applier {
        resolver: Resolver::with_parents(root, parents, options.preserve_ownership),
        options,
        dir_times: Vec::new(),
        unpacked: HashSet::new(),
        buffer: vec![0u8; 256 * 1024],
        needs_invalidate: false,
        fresh: Fresh {
            umask: sys::umask(),
            uid: sys::euid(),
            gid: sys::egid(),
            plain_dirs: HashMap::new(),
            checked: None,
        },
    };
    let (entries, bytes) = decompress_threaded(compression, peeked, |stream| applier.run(stream))??;
    applier.finish()?;
    Ok(Applied {
        stats: ApplyStats {
            compression,
            entries,
            bytes,
        },
        implied_dirs: applier.resolver.implied_dirs(),
    })
}

/// Gives each directory of `implied` (relative to `target`, as [`Applied::implied_dirs`]
/// lists them) the mode and owner it has in `parents` (topmost first) now: a layer applied
/// while the layers below were still being applied may have copied them half made.
/// Owners are copied when `copy_owners` (root or `CAP_CHOWN`).
pub fn settle_implied_dirs(
    target: &Path,
    implied: &[PathBuf],
    parents: &[PathBuf],
    copy_owners: bool,
) -> Result<()> {
    if implied.is_empty() {
        return Ok(());
    }
    let root = sys::open_dir(target).map_err(|e| Error::io("open target", target, e))?;
    let parents = parents
        .iter()
        .map(|dir| sys::open_dir(dir).map_err(|e| Error::io("open parent layer", dir, e)))
        .collect::<Result<Vec<_>>>()?;
    let resolver = Resolver::with_parents(root, parents, copy_owners);
    for rel in implied {
        resolver
            .settle(rel)
            .map_err(|e| Error::io("settle implied directory", rel, e))?;
    }
    Ok(())
}

/// Writes back the filesystem holding `dir` with one `syncfs`: called once per layer
/// before its snapshot is committed, so that a power cut cannot leave a committed snapshot
/// with lost file contents, at the cost of one call per layer instead of an `fsync` per
/// file.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    let fd = sys::open_dir(dir).map_err(|e| Error::io("open", dir, e))?;
    sys::syncfs(fd.as_fd()).map_err(|e| Error::io("sync the filesystem of", dir, e))
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative) into seconds and
/// nanoseconds; `None` when it is not a number.
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    // A negative time with a fraction lies before the whole second it names.
    if whole.starts_with('-') && nanos > 0 {
        return Some((seconds - 1, 1_000_000_000 - nanos));
    }
    Some((seconds, nanos))
}

/// Counts bytes passing and refuses to go beyond a cap.
struct Counting<'a, R> {
    inner: R,
    count: u64,
    max: u64,
    exceeded: &'a Cell<bool>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.max {
            self.exceeded.set(true);
            return Err(io::Error::other("layer stream exceeds the byte limit"));
        }
        Ok(n)
    }
}

struct Applier<'o> {
    resolver: Resolver,
    options: &'o ApplyOptions,
    /// Directory modification times, set last because creating children changes them.
    dir_times: Vec<(PathBuf, (i64, i64))>,
    /// Paths this layer wrote, so that an opaque marker in delete mode keeps them.
    unpacked: HashSet<PathBuf>,
    buffer: Vec<u8>,
    needs_invalidate: bool,
    fresh: Fresh,
}

/// What a new entry gets from the kernel without being told, so that setting it again
/// can be skipped: the creator's owner, and the mode asked for less the umask, unless
/// the directory is setgid (the group, and the setgid bit for directories, are
/// inherited) or has a default ACL (which replaces the umask).
struct Fresh {
    /// `None` when the kernel does not report it: modes are then always set.
    umask: Option<u32>,
    uid: u32,
    gid: u32,
    /// Directories this apply created, and whether they are plain (neither setgid nor
    /// with a default ACL); forgotten whenever directories are removed or replaced.
    plain_dirs: HashMap<PathBuf, bool>,
    /// The last other directory looked at, and whether it is plain.
    checked: Option<(PathBuf, bool)>,
}

impl Fresh {
    /// Whether entries created in `parent` (open as `dir`) get exactly the creator's
    /// owner and their mode less the umask.
    fn plain(&mut self, parent: &Path, dir: BorrowedFd<'_>) -> bool {
        if let Some(plain) = self.plain_dirs.get(parent) {
            return *plain;
        }
        if let Some((path, plain)) = &self.checked
            && path == parent
        {
            return *plain;
        }
        let plain = sys::stat_fd(dir).is_ok_and(|st| st.st_mode & libc::S_ISGID == 0)
            && !sys::has_default_acl(dir);
        self.checked = Some((parent.to_path_buf(), plain));
        plain
    }

    /// Whether a new entry in a plain directory, created with `mode`, already has it.
    fn mode_given(&self, mode: u32) -> bool {
        self.umask.is_some_and(|umask| mode & umask == 0) && mode & 0o7000 == 0
    }

    /// Whether a new entry in a plain directory already has this owner.
    fn owner_given(&self, meta: &Meta) -> bool {
        meta.uid == self.uid && meta.gid == self.gid
    }

    fn forget(&mut self) {
        self.plain_dirs.clear();
        self.checked = None;
    }

    /// Notes that directory `rel` got new metadata: `created` when this apply made it.
    fn directory_set(&mut self, rel: &Path, created: bool, meta: &Meta) {
        if matches!(&self.checked, Some((path, _)) if path == rel) {
            self.checked = None;
        }
        let acl = meta
            .xattrs
            .iter()
            .any(|(key, _)| key.as_bytes() == b"system.posix_acl_default");
        if created {
            let plain = meta.mode & libc::S_ISGID == 0 && !acl;
            self.plain_dirs.insert(rel.to_path_buf(), plain);
        } else {
            self.plain_dirs.remove(rel);
        }
    }
}

/// What a newly created entry already has right (see [`Fresh`]).
#[derive(Clone, Copy, Default)]
struct Given {
    owner: bool,
    mode: bool,
}

/// Metadata of one entry, read before its data.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    /// Modification time as seconds and nanoseconds (PAX times carry fractions).
    mtime: (i64, i64),
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// The error for a parent directory that could not be opened; a kernel without `openat2`
/// (before 5.6) is told apart because no layer can be applied safely there.
fn parent_error(parent: &Path, error: io::Error) -> Error {
    if error.raw_os_error() == Some(libc::ENOSYS) {
        return Error::Unsupported {
            feature: "openat2",
            source: error,
        };
    }
    Error::io("open parent directory", display(parent), error)
}

fn display(rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    }
}

impl Applier<'_> {
    fn run(&mut self, stream: &mut dyn Read) -> Result<(u64, u64)> {
        let exceeded = Cell::new(false);
        let oversized = Cell::new(false);
        let limits = self.options.limits;
        let guarded = HeaderGuard::new(stream, limits.max_extension_bytes, &oversized);
        let mut counting = Counting {
            inner: guarded,
            count: 0,
            max: limits.max_total_bytes,
            exceeded: &exceeded,
        };
        let mut archive = tar::Archive::new(&mut counting);
        let mut last = String::new();
        let mut entries_seen = 0u64;
        let over = |last: &str| {
            if oversized.get() {
                Error::LimitExceeded {
                    limit: "extension header size",
                    max: limits.max_extension_bytes,
                    entry: last.to_owned(),
                }
            } else {
                Error::LimitExceeded {
                    limit: "total bytes",
                    max: limits.max_total_bytes,
                    entry: last.to_owned(),
                }
            }
        };
        let corrupt = |last: &str, e: io::Error| Error::CorruptArchive {
            entry: last.to_owned(),
            source: e,
        };
        let iter = archive.entries().map_err(|e| corrupt("", e))?;
        for entry in iter {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(_) if exceeded.get() || oversized.get() => return Err(over(&last)),
                Err(e) => return Err(corrupt(&last, e)),
            };
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            entries_seen += 1;
            if entries_seen > limits.max_entries {
                return Err(Error::LimitExceeded {
                    limit: "entry count",
                    max: limits.max_entries,
                    entry: last,
                });
            }
            match self.apply_entry(&mut entry, &last) {
                Ok(()) => {}
                Err(_) if exceeded.get() || oversized.get() => return Err(over(&last)),
                Err(e) => return Err(e),
            }
            if self.needs_invalidate {
                self.resolver.invalidate();
                self.fresh.forget();
                self.needs_invalidate = false;
            }
        }
        if exceeded.get() || oversized.get() {
            return Err(over(&last));
        }
        // Drain trailing blocks so the decompressor sees the whole stream (and a digest
        // computed by the caller's reader covers every byte).
        let mut sink = [0u8; 8192];
        loop {
            match counting.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) if exceeded.get() || oversized.get() => return Err(over(&last)),
                Err(e) => return Err(corrupt(&last, e)),
            }
        }
        Ok((entries_seen, counting.count))
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<()> {
        let limits = self.options.limits;
        let raw = entry.path_bytes().into_owned();
        if raw.len() > limits.max_path_len {
            return Err(Error::LimitExceeded {
                limit: "path length",
                max: limits.max_path_len as u64,
                entry: name.to_owned(),
            });
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let rel = clean(&raw);
        let mut parts: Vec<&[u8]> = rel.iter().map(|p| p.as_bytes()).collect();
        let last = parts.pop();
        for part in &parts {
            match whiteout::classify(part) {
                None => {}
                // AUFS keeps hard-link bookkeeping in `.wh..wh.plnk/`; it means nothing here.
                Some(Whiteout::Meta) => return Ok(()),
                Some(_) => {
                    return Err(Error::InvalidWhiteout {
                        entry: name.to_owned(),
                    });
                }
            }
        }
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let Some(last) = last else {
            return self.apply_root(entry, name, kind);
        };
        match whiteout::classify(last) {
            None => {}
            Some(Whiteout::Meta) => return Ok(()),
            Some(Whiteout::Invalid) => {
                return Err(Error::InvalidWhiteout {
                    entry: name.to_owned(),
                });
            }
            Some(Whiteout::Opaque) => return self.opaque(&parent),
            Some(Whiteout::Remove(target)) => {
                let target = target.to_vec();
                return self.whiteout(&parent, &target);
            }
        }
        let file_name = sys::cstring(last).map_err(|e| Error::io("read entry name", &rel, e))?;
        let meta = self.meta(entry, name)?;
        if self.options.whiteouts == WhiteoutMode::Delete {
            self.unpacked.insert(rel.clone());
        }
        match kind {
            EntryType::Directory => self.directory(&parent, &rel, &file_name, &meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => self.regular(
                entry,
                &parent,
                &rel,
                &file_name,
                &meta,
                kind.is_gnu_sparse(),
            ),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.symlink(&parent, &rel, &file_name, &target, &meta)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if target.len() > limits.max_path_len {
                    return Err(Error::LimitExceeded {
                        limit: "path length",
                        max: limits.max_path_len as u64,
                        entry: name.to_owned(),
                    });
                }
                self.hardlink(&parent, &rel, &file_name, &target, name)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let type_bits = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.node(&parent, &rel, &file_name, type_bits, major, minor, &meta)
            }
            other => Err(Error::UnsupportedEntry {
                entry: name.to_owned(),
                kind: other.as_byte(),
            }),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
        let header = entry.header();
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mut mtime = (header.mtime().unwrap_or(0) as i64, 0);
        let mut xattrs = Vec::new();
        let corrupt = |e| Error::CorruptArchive {
            entry: name.to_owned(),
            source: e,
        };
        if let Some(extensions) = entry.pax_extensions().map_err(corrupt)? {
            for extension in extensions {
                let extension = extension.map_err(corrupt)?;
                let key = extension.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                    // Overlay's own attributes would let a layer forge whiteouts, redirects
                    // or metacopy files below the snapshotter's feet; whiteouts must come
                    // as `.wh.` entries instead.
                    if attr.starts_with(OVERLAY_XATTR_PREFIX)
                        || attr.starts_with(USER_OVERLAY_XATTR_PREFIX)
                    {
                        continue;
                    }
                    let attr = sys::cstring(attr).map_err(corrupt)?;
                    xattrs.push((attr, extension.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(time) = parse_pax_time(extension.value_bytes()) {
                        mtime = time;
                    }
                } else if key == b"uid" {
                    if let Some(v) = std::str::from_utf8(extension.value_bytes())
                        .ok()
                        .and_then(|s| s.parse().ok())
                    {
                        uid = v;
                    }
                } else if key == b"gid"
                    && let Some(v) = std::str::from_utf8(extension.value_bytes())
                        .ok()
                        .and_then(|s| s.parse().ok())
                {
                    gid = v;
                }
            }
        }
        let (uid, gid) = match &self.options.id_map {
            Some(map) => (
                map_id(&map.uids, uid).ok_or_else(|| Error::UnmappedId {
                    which: "uid",
                    id: uid,
                    entry: name.to_owned(),
                })?,
                map_id(&map.gids, gid).ok_or_else(|| Error::UnmappedId {
                    which: "gid",
                    id: gid,
                    entry: name.to_owned(),
                })?,
            ),
            None => {
                let uid = u32::try_from(uid).map_err(|_| Error::UnmappedId {
                    which: "uid",
                    id: uid,
                    entry: name.to_owned(),
                })?;
                let gid = u32::try_from(gid).map_err(|_| Error::UnmappedId {
                    which: "gid",
                    id: gid,
                    entry: name.to_owned(),
                })?;
                (uid, gid)
            }
        };
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    /// Removes whatever is at `name` in `dir` unless `keep_dir` and it is a directory.
    /// Returns true if a directory is (still) there.
    fn clear(
        dir: BorrowedFd<'_>,
        rel: &Path,
        name: &CStr,
        keep_dir: bool,
        needs_invalidate: &mut bool,
    ) -> Result<bool> {
        let existing = sys::stat_at(dir, name).map_err(|e| Error::io("inspect", rel, e))?;
        let Some(st) = existing else {
            return Ok(false);
        };
        let kind = st.st_mode & libc::S_IFMT;
        if keep_dir && kind == libc::S_IFDIR {
            return Ok(true);
        }
        if kind == libc::S_IFDIR || kind == libc::S_IFLNK {
            *needs_invalidate = true;
        }
        remove_all_at(dir, name).map_err(|e| Error::io("remove existing", rel, e))?;
        Ok(false)
    }

    /// Runs `create`; if something is in the way, removes it (never following a symlink)
    /// and runs `create` again. Trying first saves a lookup per entry on fresh targets.
    fn create_or_replace<T>(
        dir: BorrowedFd<'_>,
        rel: &Path,
        name: &CStr,
        needs_invalidate: &mut bool,
        op: &'static str,
        create: impl Fn() -> io::Result<T>,
    ) -> Result<T> {
        match create() {
            Ok(made) => Ok(made),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                Self::clear(dir, rel, name, false, needs_invalidate)?;
                create().map_err(|e| Error::io(op, rel, e))
            }
            Err(e) => Err(Error::io(op, rel, e)),
        }
    }

    /// Sets owner, mode and extended attributes; `given` when the entry was just created
    /// in a plain directory, so that an owner and mode it already has are not set again.
    fn owners_and_xattrs_fd(
        &self,
        fd: BorrowedFd<'_>,
        rel: &Path,
        meta: &Meta,
        given: Given,
    ) -> Result<()> {
        if self.options.preserve_ownership && !given.owner {
            sys::chown_fd(fd, meta.uid, meta.gid).map_err(|e| Error::io("chown", rel, e))?;
        }
        if !given.mode {
            sys::chmod_fd(fd, meta.mode).map_err(|e| Error::io("chmod", rel, e))?;
        }
        for (key, value) in &meta.xattrs {
            sys::set_xattr_fd(fd, key, value).map_err(|e| Error::io("set xattr", rel, e))?;
        }
        Ok(())
    }

    fn directory(&mut self, parent: &Path, rel: &Path, name: &CStr, meta: &Meta) -> Result<()> {
        self.resolver.listed(rel);
        let dir = self
            .resolver
            .dir(parent, true)
            .map_err(|e| parent_error(parent, e))?;
        let plain = self.fresh.plain(parent, dir);
        // The final mode at once when the kernel gives it exactly, and it lets the owner
        // create the children (a non-root owner needs rwx while filling it).
        let direct = plain && self.fresh.mode_given(meta.mode) && meta.mode & 0o700 == 0o700;
        let mode = if direct { meta.mode } else { 0o700 };
        let created = match sys::mkdir_at(dir, name, mode) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let exists = Self::clear(dir, rel, name, true, &mut self.needs_invalidate)?;
                if !exists {
                    sys::mkdir_at(dir, name, mode)
                        .map_err(|e| Error::io("create directory", rel, e))?;
                }
                !exists
            }
            Err(e) => return Err(Error::io("create directory", rel, e)),
        };
        let given = Given {
            owner: created && plain && self.fresh.owner_given(meta),
            mode: created && direct,
        };
        let owner_done = given.owner || !self.options.preserve_ownership;
        if !(owner_done && given.mode && meta.xattrs.is_empty()) {
            let fd =
                sys::open_dir_at(dir, name).map_err(|e| Error::io("open directory", rel, e))?;
            self.owners_and_xattrs_fd(fd.as_fd(), rel, meta, given)?;
        }
        self.fresh.directory_set(rel, created, meta);
        self.dir_times.push((rel.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn apply_root<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        kind: EntryType,
    ) -> Result<()> {
        if kind != EntryType::Directory {
            return Err(Error::InvalidPath {
                entry: name.to_owned(),
                reason: "a non-directory entry names the target root",
            });
        }
        let meta = self.meta(entry, name)?;
        let root = self
            .resolver
            .root()
            .try_clone_to_owned()
            .map_err(|e| Error::io("open target", ".", e))?;
        self.owners_and_xattrs_fd(root.as_fd(), Path::new("."), &meta, Given::default())?;
        self.fresh.directory_set(Path::new(""), false, &meta);
        self.dir_times.push((PathBuf::new(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &Path,
        rel: &Path,
        name: &CStr,
        meta: &Meta,
        sparse: bool,
    ) -> Result<()> {
        let dir = self
            .resolver
            .dir(parent, true)
            .map_err(|e| parent_error(parent, e))?;
        let plain = self.fresh.plain(parent, dir);
        let given = Given {
            owner: plain && self.fresh.owner_given(meta),
            mode: plain && self.fresh.mode_given(meta.mode),
        };
        // Created with its final mode when the kernel gives it exactly: the descriptor
        // is writable whatever the mode, since the file is new.
        let mode = if given.mode { meta.mode } else { 0o600 };
        let mut file = Self::create_or_replace(
            dir,
            rel,
            name,
            &mut self.needs_invalidate,
            "create file",
            || sys::create_file_at(dir, name, mode),
        )?;
        let buffer = &mut self.buffer;
        let mut length = 0u64;
        let mut pending_hole = false;
        loop {
            let n = match entry.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::CorruptArchive {
                        entry: rel.display().to_string(),
                        source: e,
                    });
                }
            };
            let chunk = &buffer[..n];
            length += n as u64;
            // GNU sparse files come back with their holes as zeros; seeking over zero
            // chunks instead of writing them keeps the file sparse on disk.
            if sparse && chunk.iter().all(|b| *b == 0) {
                file.seek(SeekFrom::Current(n as i64))
                    .map_err(|e| Error::io("write file", rel, e))?;
                pending_hole = true;
                continue;
            }
            pending_hole = false;
            file.write_all(chunk)
                .map_err(|e| Error::io("write file", rel, e))?;
        }
        if pending_hole {
            file.set_len(length)
                .map_err(|e| Error::io("write file", rel, e))?;
        }
        self.owners_and_xattrs_fd(file.as_fd(), rel, meta, given)?;
        sys::set_times_fd(file.as_fd(), meta.mtime.0, meta.mtime.1)
            .map_err(|e| Error::io("set times", rel, e))?;
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &Path,
        rel: &Path,
        name: &CStr,
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let link_target =
            sys::cstring(target).map_err(|e| Error::io("read link target", rel, e))?;
        let preserve = self.options.preserve_ownership;
        let dir = self
            .resolver
            .dir(parent, true)
            .map_err(|e| parent_error(parent, e))?;
        let owner_given = self.fresh.plain(parent, dir) && self.fresh.owner_given(meta);
        Self::create_or_replace(
            dir,
            rel,
            name,
            &mut self.needs_invalidate,
            "create symlink",
            || sys::symlink_at(&link_target, dir, name),
        )?;
        if preserve && !owner_given {
            sys::chown_at(dir, name, meta.uid, meta.gid).map_err(|e| Error::io("chown", rel, e))?;
        }
        for (key, value) in &meta.xattrs {
            sys::set_xattr_at(dir, name, key, value).map_err(|e| Error::io("set xattr", rel, e))?;
        }
        sys::set_times_at(dir, name, meta.mtime.0, meta.mtime.1)
            .map_err(|e| Error::io("set times", rel, e))?;
        Ok(())
    }

    fn hardlink(
        &mut self,
        parent: &Path,
        rel: &Path,
        name: &CStr,
        target: &[u8],
        entry: &str,
    ) -> Result<()> {
        let target_rel = clean(target);
        let invalid = |reason| Error::InvalidPath {
            entry: entry.to_owned(),
            reason,
        };
        let Some(target_name) = target_rel.file_name() else {
            return Err(invalid("hard link to the target root"));
        };
        if target_rel == rel {
            return Err(invalid("hard link to itself"));
        }
        let target_name =
            sys::cstring(target_name.as_bytes()).map_err(|e| Error::io("link", rel, e))?;
        let target_parent = target_rel.parent().unwrap_or(Path::new(""));
        let from = self
            .resolver
            .open_uncached(target_parent)
            .map_err(|e| Error::io("open hard link target", &target_rel, e))?;
        let source = sys::stat_at(from.as_fd(), &target_name)
            .map_err(|e| Error::io("inspect hard link target", &target_rel, e))?
            .ok_or_else(|| {
                Error::io(
                    "find hard link target",
                    &target_rel,
                    io::Error::from_raw_os_error(libc::ENOENT),
                )
            })?;
        if source.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(invalid("hard link to a directory"));
        }
        let dir = self
            .resolver
            .dir(parent, true)
            .map_err(|e| parent_error(parent, e))?;
        if let Some(existing) = sys::stat_at(dir, name).map_err(|e| Error::io("inspect", rel, e))?
            && existing.st_dev == source.st_dev
            && existing.st_ino == source.st_ino
        {
            return Ok(());
        }
        Self::clear(dir, rel, name, false, &mut self.needs_invalidate)?;
        sys::link_at(from.as_fd(), &target_name, dir, name)
            .map_err(|e| Error::io("create hard link", rel, e))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        parent: &Path,
        rel: &Path,
        name: &CStr,
        type_bits: u32,
        major: u32,
        minor: u32,
        meta: &Meta,
    ) -> Result<()> {
        let preserve = self.options.preserve_ownership;
        let dir = self
            .resolver
            .dir(parent, true)
            .map_err(|e| parent_error(parent, e))?;
        Self::create_or_replace(
            dir,
            rel,
            name,
            &mut self.needs_invalidate,
            "create device node",
            || sys::mknod_at(dir, name, type_bits | 0o600, major, minor),
        )?;
        if preserve {
            sys::chown_at(dir, name, meta.uid, meta.gid).map_err(|e| Error::io("chown", rel, e))?;
        }
        sys::chmod_at_nofollow(dir, name, meta.mode).map_err(|e| Error::io("chmod", rel, e))?;
        for (key, value) in &meta.xattrs {
            sys::set_xattr_at(dir, name, key, value).map_err(|e| Error::io("set xattr", rel, e))?;
        }
        sys::set_times_at(dir, name, meta.mtime.0, meta.mtime.1)
            .map_err(|e| Error::io("set times", rel, e))?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &Path, target: &[u8]) -> Result<()> {
        let rel = parent.join(OsStr::from_bytes(target));
        let name = sys::cstring(target).map_err(|e| Error::io("whiteout", &rel, e))?;
        match self.options.whiteouts {
            WhiteoutMode::Delete => {
                let dir = match self.resolver.dir(parent, false) {
                    Ok(dir) => dir,
                    // Nothing below to delete.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT)) => return Ok(()),
                    Err(e) => return Err(parent_error(parent, e)),
                };
                Self::clear(dir, &rel, &name, false, &mut self.needs_invalidate)?;
                Ok(())
            }
            WhiteoutMode::Overlay => {
                let dir = self
                    .resolver
                    .dir(parent, true)
                    .map_err(|e| parent_error(parent, e))?;
                Self::clear(dir, &rel, &name, false, &mut self.needs_invalidate)?;
                sys::mknod_at(dir, &name, libc::S_IFCHR, 0, 0)
                    .map_err(|e| Error::io("create whiteout", &rel, e))?;
                Ok(())
            }
        }
    }

    fn opaque(&mut self, parent: &Path) -> Result<()> {
        match self.options.whiteouts {
            WhiteoutMode::Delete => {
                let dir = match self.resolver.dir(parent, false) {
                    Ok(dir) => dir,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT)) => return Ok(()),
                    Err(e) => return Err(parent_error(parent, e)),
                };
                let unpacked = &self.unpacked;
                remove_children(dir, |child| {
                    unpacked.contains(&parent.join(OsStr::from_bytes(child.to_bytes())))
                })
                .map_err(|e| Error::io("clear opaque directory", display(parent), e))?;
                self.needs_invalidate = true;
                Ok(())
            }
            WhiteoutMode::Overlay => {
                let dir = self
                    .resolver
                    .dir(parent, true)
                    .map_err(|e| parent_error(parent, e))?;
                let key = sys::cstring(OVERLAY_OPAQUE_XATTR)
                    .map_err(|e| Error::io("mark opaque", display(parent), e))?;
                sys::set_xattr_fd(dir, &key, b"y")
                    .map_err(|e| Error::io("mark opaque", display(parent), e))?;
                Ok(())
            }
        }
    }

    /// Sets directory times last, children first being irrelevant: a directory's own times
    /// change only when its entries do.
    fn finish(&mut self) -> Result<()> {
        self.resolver.invalidate();
        let times = std::mem::take(&mut self.dir_times);
        for (rel, mtime) in times {
            if rel.as_os_str().is_empty() {
                sys::set_times_fd(self.resolver.root(), mtime.0, mtime.1)
                    .map_err(|e| Error::io("set times", ".", e))?;
                continue;
            }
            let parent = rel.parent().unwrap_or(Path::new(""));
            let Some(name) = rel.file_name() else {
                continue;
            };
            let name =
                sys::cstring(name.as_bytes()).map_err(|e| Error::io("set times", &rel, e))?;
            let dir = match self.resolver.dir(parent, false) {
                Ok(dir) => dir,
                // Deleted again later in the same layer.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    continue;
                }
                Err(e) => return Err(parent_error(parent, e)),
            };
            match sys::set_times_at(dir, &name, mtime.0, mtime.1) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(Error::io("set times", &rel, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Parsing of PAX times and id mapping.
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<(i64, i64)>) {
        assert_eq!(parse_pax_time(text.as_bytes()), expected, "{text:?}");
    }

    #[test]
    fn pax_times_keep_their_fraction() {
        for (text, expected) in [
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            (
                "1700000000.123456789123",
                Some((1_700_000_000, 123_456_789)),
            ),
            ("-1.25", Some((-2, 750_000_000))),
            ("soon", None),
            ("1.x", None),
        ] {
            check(text, expected);
        }
    }

    #[test]
    fn id_ranges_map_inside_and_refuse_outside() {
        let ranges = [IdRange {
            container: 0,
            host: 1000,
            size: 10,
        }];
        for (id, expected) in [
            (0, Some(1000)),
            (9, Some(1009)),
            (10, None),
            (u64::MAX, None),
        ] {
            assert_eq!(map_id(&ranges, id), expected, "id {id}");
        }
    }
}
