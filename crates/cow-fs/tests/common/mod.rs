//! Shared helpers for the cow-fs integration tests: a raw tar writer that can express
//! hostile archives (names with `..`, absolute names, odd link targets, PAX records), a
//! tree fingerprint for before/after comparisons, and the root-only test gate.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Returns true when running as root. Otherwise prints why the test is skipped, and under
/// `CI=true` fails instead, because CI runs as root and must run everything.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test} needs root and CI=true forbids skipping it"
    );
    eprintln!("skipping {test}: needs root (mknod, chown, trusted.* xattrs, mounts)");
    false
}

/// Builds tar streams entry by entry, writing header bytes directly so that names are
/// stored exactly as given (the `tar` crate's own setters refuse `..`).
#[derive(Default)]
pub struct Layer {
    bytes: Vec<u8>,
    pax: Vec<(String, Vec<u8>)>,
    mode: Option<u32>,
    owner: Option<(u64, u64)>,
    mtime: Option<u64>,
    finished: bool,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    /// Wraps a finished tar stream (its end-of-archive blocks are kept as they are).
    pub fn from_tar(bytes: Vec<u8>) -> Layer {
        Layer {
            bytes,
            finished: true,
            ..Layer::default()
        }
    }

    /// PAX records for the next entry.
    pub fn pax(mut self, key: &str, value: &[u8]) -> Layer {
        self.pax.push((key.to_owned(), value.to_vec()));
        self
    }

    /// Mode for the next entry.
    pub fn mode(mut self, mode: u32) -> Layer {
        self.mode = Some(mode);
        self
    }

    /// Owner for the next entry.
    pub fn owner(mut self, uid: u64, gid: u64) -> Layer {
        self.owner = Some((uid, gid));
        self
    }

    /// Modification time for the next entry.
    pub fn mtime(mut self, mtime: u64) -> Layer {
        self.mtime = Some(mtime);
        self
    }

    fn raw(
        &mut self,
        kind: u8,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        dev: (u32, u32),
        default_mode: u32,
    ) {
        if !self.pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in std::mem::take(&mut self.pax) {
                let mut body = key.into_bytes();
                body.push(b'=');
                body.extend_from_slice(&value);
                body.push(b'\n');
                let mut length = body.len() + 2;
                loop {
                    let candidate = length.to_string().len() + 1 + body.len();
                    if candidate == length {
                        break;
                    }
                    length = candidate;
                }
                records.extend_from_slice(format!("{length} ").as_bytes());
                records.extend_from_slice(&body);
            }
            self.block(b'x', b"PaxHeader", b"", &records, (0, 0), 0o644, (0, 0), 0);
        }
        if name.len() > 100 {
            let mut long = name.to_vec();
            long.push(0);
            self.block(b'L', b"././@LongLink", b"", &long, (0, 0), 0o644, (0, 0), 0);
        }
        if link.len() > 100 {
            let mut long = link.to_vec();
            long.push(0);
            self.block(b'K', b"././@LongLink", b"", &long, (0, 0), 0o644, (0, 0), 0);
        }
        let mode = self.mode.take().unwrap_or(default_mode);
        let owner = self.owner.take().unwrap_or((0, 0));
        let mtime = self.mtime.take().unwrap_or(1_600_000_000);
        self.block(kind, name, link, data, dev, mode, owner, mtime);
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        kind: u8,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        dev: (u32, u32),
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
    ) {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().expect("gnu header");
            let n = name.len().min(100);
            gnu.name[..n].copy_from_slice(&name[..n]);
            let l = link.len().min(100);
            gnu.linkname[..l].copy_from_slice(&link[..l]);
        }
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(mtime);
        if kind == b'3' || kind == b'4' {
            header.set_device_major(dev.0).expect("major");
            header.set_device_minor(dev.1).expect("minor");
        }
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn dir(mut self, name: &str) -> Layer {
        self.raw(b'5', name.as_bytes(), b"", b"", (0, 0), 0o755);
        self
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Layer {
        self.raw(b'0', name.as_bytes(), b"", data, (0, 0), 0o644);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Layer {
        self.raw(b'2', name.as_bytes(), target.as_bytes(), b"", (0, 0), 0o777);
        self
    }

    pub fn link(mut self, name: &str, target: &str) -> Layer {
        self.raw(b'1', name.as_bytes(), target.as_bytes(), b"", (0, 0), 0o644);
        self
    }

    pub fn char_device(mut self, name: &str, major: u32, minor: u32) -> Layer {
        self.raw(b'3', name.as_bytes(), b"", b"", (major, minor), 0o666);
        self
    }

    pub fn block_device(mut self, name: &str, major: u32, minor: u32) -> Layer {
        self.raw(b'4', name.as_bytes(), b"", b"", (major, minor), 0o660);
        self
    }

    pub fn fifo(mut self, name: &str) -> Layer {
        self.raw(b'6', name.as_bytes(), b"", b"", (0, 0), 0o644);
        self
    }

    /// An entry of any raw type byte, for unsupported-type tests.
    pub fn raw_entry(mut self, kind: u8, name: &str) -> Layer {
        self.raw(kind, name.as_bytes(), b"", b"", (0, 0), 0o644);
        self
    }

    /// The finished tar stream (with the two zero blocks that end an archive).
    pub fn tar(mut self) -> Vec<u8> {
        if !self.finished {
            self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        }
        save_fuzz_seed(&self.bytes);
        self.bytes
    }
}

/// When `STENCIL_FUZZ_SEEDS` names a directory, every layer a test builds is also written
/// there, named by its hash: `cargo xtask fuzz` seeds the `layer_apply` corpus this way.
fn save_fuzz_seed(bytes: &[u8]) {
    use std::hash::{Hash, Hasher};
    let Some(dir) = std::env::var_os("STENCIL_FUZZ_SEEDS") else {
        return;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let path = Path::new(&dir).join(format!("{:016x}.tar", hasher.finish()));
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing fuzz seed {}: {e}", path.display()));
}

/// One line per entry below `root`: path, type, mode, owner, size, contents, link target,
/// device, extended attributes (overlay's own excluded), hard-link group; with `times`,
/// also modification and change times (a change time catches a chmod that was undone).
pub fn fingerprint(root: &Path, times: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut groups: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    walk(root, Path::new(""), times, &mut lines, &mut groups);
    // A hard-link group is what the visible tree shows: paths sharing one inode. The
    // link count is not used, since overlayfs reports a lower file's count unchanged.
    for members in groups.values().filter(|m| m.len() > 1) {
        let first = lines[members[0]].split(' ').next().unwrap_or("").to_owned();
        for index in members {
            lines[*index] += &format!(" linkgroup={first}");
        }
    }
    lines
}

fn walk(
    root: &Path,
    rel: &Path,
    times: bool,
    lines: &mut Vec<String>,
    groups: &mut HashMap<(u64, u64), Vec<usize>>,
) {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).expect("lstat");
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    };
    let mut line = format!(
        "{} {kind} {:o} {}:{}",
        if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        }
        .display(),
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    if ft.is_file() {
        let data = fs::read(&path).expect("read");
        line += &format!(
            " size={} data={:?}",
            data.len(),
            String::from_utf8_lossy(&data)
        );
        groups
            .entry((meta.dev(), meta.ino()))
            .or_default()
            .push(lines.len());
    }
    if ft.is_symlink() {
        line += &format!(" -> {}", fs::read_link(&path).expect("readlink").display());
    }
    if ft.is_char_device() || ft.is_block_device() {
        line += &format!(
            " dev={}:{}",
            libc::major(meta.rdev()),
            libc::minor(meta.rdev())
        );
    }
    for (key, value) in xattrs(&path) {
        if key.starts_with("trusted.overlay.") {
            continue;
        }
        line += &format!(" xattr:{key}={:?}", String::from_utf8_lossy(&value));
    }
    if times && !ft.is_symlink() {
        line += &format!(
            " mtime={}.{} ctime={}.{}",
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
    }
    lines.push(line);
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&path)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), times, lines, groups);
        }
    }
}

/// Extended attributes of `path` (not following a final symlink), sorted.
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for key in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
    {
        let ckey = std::ffi::CString::new(key).expect("key");
        let mut value = vec![0u8; 4096];
        // SAFETY: valid C strings and buffer.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                ckey.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(m.max(0) as usize);
        out.push((String::from_utf8_lossy(key).into_owned(), value));
    }
    out.sort();
    out
}

/// Creates `dir/name` holding the given files (for fixtures).
pub fn make_dir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(&path).expect("mkdir");
    path
}
