//! Creating a directory path inside a container's root filesystem without leaving it.
//!
//! Used for the working directory before the container starts: each component is looked
//! at with `fstatat(AT_SYMLINK_NOFOLLOW)` from a directory opened with
//! `openat2(RESOLVE_IN_ROOT)`; a symlink's target is spliced into the remaining path and
//! resolved as if the rootfs were `/` (absolute targets restart at the rootfs, `..` stops
//! there), and missing directories are created (mode 0755). So `/escape -> /host/dir`
//! creates `ROOTFS/host/dir`, never `/host/dir` on the host. This module does not chdir:
//! the container process resolves the same path itself after `pivot_root`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::os::fd::AsFd;
//! let root = std::fs::File::open("/var/lib/stencil/containers/ID/merged")?;
//! stencil::container::rootpath::create_dir_all_in_root(root.as_fd(), "/srv/app")?;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};

/// Symlinks followed before giving up with `ELOOP`, as the kernel does.
const MAX_LINKS: usize = 40;

fn split(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|b| *b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .map(<[u8]>::to_vec)
}

fn open_dir(root: BorrowedFd<'_>, resolved: &[Vec<u8>]) -> io::Result<OwnedFd> {
    let joined = if resolved.is_empty() {
        b".".to_vec()
    } else {
        resolved.join(&b'/')
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(openat2(root, joined.as_slice(), how)?)
}

/// Creates directory `path` (absolute, as seen inside the container) and its missing
/// parents under `root`, following symlinks as the container would see them.
pub fn create_dir_all_in_root(root: BorrowedFd<'_>, path: &str) -> io::Result<()> {
    let mut pending: VecDeque<Vec<u8>> = split(path.as_bytes()).collect();
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == b".." {
            resolved.pop();
            continue;
        }
        let dir = open_dir(root, &resolved)?;
        match fstatat(&dir, part.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {
                match mkdirat(&dir, part.as_slice(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                resolved.push(part);
            }
            Err(e) => return Err(e.into()),
            Ok(stat) => match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFDIR => resolved.push(part),
                SFlag::S_IFLNK => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::ELOOP.into());
                    }
                    let target = readlinkat(&dir, part.as_slice())?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        resolved.clear();
                    }
                    for component in split(target).collect::<Vec<_>>().into_iter().rev() {
                        pending.push_front(component);
                    }
                }
                _ => return Err(Errno::ENOTDIR.into()),
            },
        }
    }
    Ok(())
}

/// The metadata of `path` (as seen inside the container, relative to `/`) under `root`,
/// following symlinks inside the root only.
pub fn stat_in_root(root: BorrowedFd<'_>, path: &str) -> io::Result<nix::sys::stat::FileStat> {
    let relative: Vec<Vec<u8>> = split(path.as_bytes()).collect();
    let joined = if relative.is_empty() {
        b".".to_vec()
    } else {
        relative.join(&b'/')
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root, joined.as_slice(), how)?;
    Ok(nix::sys::stat::fstat(&fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).expect("root");
        symlink(&outside, root.join("absolute")).expect("symlink");
        symlink("../../../../outside-too", root.join("relative")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");
        std::fs::write(root.join("file"), "").expect("file");
        let fd = std::fs::File::open(&root).expect("open root");
        let check = |path: &str, expected: Result<&str, Errno>| {
            let got = create_dir_all_in_root(fd.as_fd(), path);
            match expected {
                Ok(inside) => {
                    assert!(got.is_ok(), "{path}: {got:?}");
                    assert!(root.join(inside).is_dir(), "{path} -> {inside}");
                }
                Err(errno) => {
                    assert_eq!(
                        got.err().and_then(|e| e.raw_os_error()),
                        Some(errno as i32),
                        "{path}"
                    );
                }
            }
        };
        check("/a/b/c", Ok("a/b/c"));
        check(
            "/absolute/x",
            Ok(outside
                .strip_prefix("/")
                .expect("abs")
                .join("x")
                .to_str()
                .expect("utf8")),
        );
        check("/relative/y", Ok("outside-too/y"));
        check("/../../z", Ok("z"));
        check("/loop/w", Err(Errno::ELOOP));
        check("/file/v", Err(Errno::ENOTDIR));
        assert!(!outside.exists(), "nothing created outside the root");
    }
}
