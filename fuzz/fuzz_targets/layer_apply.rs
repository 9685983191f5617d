//! Fuzz target: applying a layer (any bytes: gzip, zstd or plain tar) to a fresh
//! directory, in both whiteout modes. After each input, the victim directory beside the
//! target must be untouched down to its change times (no write, chmod or link through a
//! symlink or `..`), and nothing may appear beside the target or above it.
//!
//! Layout, made once per process under the system temporary directory:
//! `fuzz-apply-PID/base/{root,victim}`; the target holds symlinks to the victim (relative
//! and absolute) before each input, so entries written "through" them would land there.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stencil_cow_fs::{ApplyOptions, Limits, WhiteoutMode, apply_layer};

struct Places {
    /// Holds only `base`: anything else appearing here escaped two levels up.
    top: PathBuf,
    base: PathBuf,
    victim: PathBuf,
    victim_before: Vec<String>,
}

fn places() -> &'static Places {
    static PLACES: OnceLock<Places> = OnceLock::new();
    PLACES.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("fuzz-apply-{}", std::process::id()));
        let _ = fs::remove_dir_all(&top);
        let base = top.join("base");
        let victim = base.join("victim");
        fs::create_dir_all(victim.join("sub")).expect("victim");
        fs::write(victim.join("f"), b"victim data").expect("victim file");
        fs::write(victim.join("sub/g"), b"more").expect("victim file");
        std::os::unix::fs::symlink("f", victim.join("link")).expect("victim link");
        let victim_before = fingerprint(&victim);
        Places {
            top,
            base,
            victim,
            victim_before,
        }
    })
}

/// One line per entry: path, type, mode, owner, size, contents, link target and times.
fn fingerprint(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let mut line = format!(
            "{} mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{} xattrs={:?}",
            path.display(),
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            listxattr(&path),
        );
        if meta.file_type().is_symlink() {
            line += &format!(" -> {:?}", fs::read_link(&path).expect("readlink"));
        } else if meta.is_file() {
            line += &format!(" {:?}", fs::read(&path).expect("read"));
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("readdir") {
                stack.push(entry.expect("entry").path());
            }
        }
        lines.push(line);
    }
    lines.sort();
    lines
}

fn listxattr(path: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(name) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: a null buffer with size 0 asks only for the length of the name list.
    let length = unsafe { libc_llistxattr(name.as_ptr(), std::ptr::null_mut(), 0) };
    length.max(0) as usize
}

unsafe extern "C" {
    #[link_name = "llistxattr"]
    fn libc_llistxattr(
        path: *const std::ffi::c_char,
        list: *mut std::ffi::c_char,
        size: usize,
    ) -> isize;
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readdir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let places = places();
    let root = places.base.join("root");
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir(&root).expect("root");
        std::os::unix::fs::symlink("../victim", root.join("rel")).expect("symlink");
        std::os::unix::fs::symlink(&places.victim, root.join("abs")).expect("symlink");
        let options = ApplyOptions::default()
            .whiteouts(mode)
            .preserve_ownership(false)
            .limits(Limits {
                max_entries: 10_000,
                max_total_bytes: 16 << 20,
                max_path_len: 4096,
                max_extension_bytes: 64 << 10,
            });
        let _ = apply_layer(data, &root, &options);
        assert_eq!(
            fingerprint(&places.victim),
            places.victim_before,
            "the victim directory changed ({mode:?})"
        );
        assert_eq!(
            names(&places.base),
            ["root", "victim"],
            "an entry escaped the target ({mode:?})"
        );
        assert_eq!(
            names(&places.top),
            ["base"],
            "an entry escaped two levels up ({mode:?})"
        );
    }
});
