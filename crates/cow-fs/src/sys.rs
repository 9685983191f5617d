//! The narrow seam between this crate and the kernel: thin, safe wrappers over the `*at`
//! system calls, `openat2`, extended attributes and directory reading.
//!
//! Every function takes a directory file descriptor plus a single path component (or a
//! path resolved by the kernel inside a root), never a free-standing absolute path, so that
//! callers cannot accidentally resolve a path outside the tree they work on. Nothing here
//! follows a symlink in the final component. This module holds all the `unsafe` of the
//! crate; it is not a general-purpose syscall library.
//!
//! ```text
//! let root = sys::open_dir(Path::new("/tmp/root"))?;
//! let etc = sys::open_in_root(root.as_fd(), c"etc")?; // symlinks stay inside /tmp/root
//! ```

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Converts a path or name to a C string, refusing interior NUL bytes.
pub fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds NUL"))
}

/// Converts a path to a C string.
pub fn cpath(path: &Path) -> io::Result<CString> {
    cstring(path.as_os_str().as_bytes())
}

/// Opens a directory by an ordinary (trusted) path.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string; the result is checked.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens the directory `path` resolved by the kernel as if `root` were `/`: `..` and
/// symlinks (absolute or relative) can never leave `root`, and magic links are refused.
pub fn open_in_root(root: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // The kernel returns EAGAIN when a concurrent rename may have raced the lookup; the
    // lookup is then simply retried.
    for _ in 0..64 {
        // SAFETY: `how` is a properly laid out `struct open_how` whose size is passed; the
        // path is NUL-terminated; the result is checked.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor from openat2, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EAGAIN) {
            return Err(error);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Opens the directory `name` inside `dir` without following a symlink.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
}

/// `openat` of `name` inside `dir` with `flags` (no `O_CREAT`: no mode).
fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and NUL-terminated name; result checked.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    // SAFETY: a fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the regular file `name` inside `dir`; fails if anything exists there already.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<std::fs::File> {
    // SAFETY: valid fd and NUL-terminated name; result checked.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// `mkdirat`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name; result checked.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// `mknodat` for character and block devices, FIFOs and whiteouts.
pub fn mknod_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: valid fd and NUL-terminated name; result checked.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, dev) })?;
    Ok(())
}

/// `symlinkat`: creates `name` in `dir` pointing at `target` (stored verbatim).
pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a valid fd; result checked.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// `linkat` without following a symlink at the source.
pub fn link_at(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and valid fds; result checked.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// `unlinkat`; `directory` removes an empty directory.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, directory: bool) -> io::Result<()> {
    let flags = if directory { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and NUL-terminated name; result checked.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(())
}

/// `fstatat` without following a symlink; `Ok(None)` when nothing is there.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name, writable stat buffer; result checked.
    let result = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(error);
    }
    Ok(Some(st))
}

/// `fstat`.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and writable buffer; result checked.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `fchownat` on the entry itself (a symlink is changed, not its target).
pub fn chown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name; result checked.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `fchown`.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid fd; result checked.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// `fchmod`.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd; result checked.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// Changes the mode of a non-symlink entry without ever following a symlink: the entry
/// is opened with `O_PATH | O_NOFOLLOW`, checked, and changed through its descriptor's
/// `/proc/self/fd` link (the kernel's own way for `O_PATH` descriptors).
pub fn chmod_at_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    let fd = open_at(dir, name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)?;
    let st = stat_fd(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let proc_path = cstring(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    // SAFETY: NUL-terminated path; result checked.
    check(unsafe { libc::chmod(proc_path.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

fn timespec(seconds: i64, nanos: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: seconds as libc::time_t,
        tv_nsec: nanos as _,
    }
}

/// Sets access and modification times of the entry itself (never a symlink's target) to
/// `seconds.nanos`.
pub fn set_times_at(dir: BorrowedFd<'_>, name: &CStr, seconds: i64, nanos: i64) -> io::Result<()> {
    let times = [timespec(seconds, nanos), timespec(seconds, nanos)];
    // SAFETY: valid fd, NUL-terminated name, two timespecs; result checked.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// Sets access and modification times through a descriptor to `seconds.nanos`.
pub fn set_times_fd(fd: BorrowedFd<'_>, seconds: i64, nanos: i64) -> io::Result<()> {
    let times = [timespec(seconds, nanos), timespec(seconds, nanos)];
    // SAFETY: valid fd and two timespecs; result checked.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

/// Sets an extended attribute through a descriptor.
pub fn set_xattr_fd(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name, value pointer and length match; checked.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// Path of `name` in `dir` through the descriptor's `/proc/self/fd` link, for the `l*xattr`
/// calls that have no `*at` form. The final component is never followed by those calls.
fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<CString> {
    let mut bytes = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    bytes.extend_from_slice(name.to_bytes());
    cstring(&bytes)
}

/// Sets an extended attribute on the entry itself (never a symlink's target).
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &CStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    let path = proc_path(dir, name)?;
    // SAFETY: NUL-terminated strings; value pointer and length match; checked.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// Lists and reads every extended attribute of the entry at `path` (not following a final
/// symlink), sorted by name.
pub fn xattrs_of(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(path)?;
    collect_xattrs(
        // SAFETY: NUL-terminated path; the caller passes a buffer and its length.
        |buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf, len) },
        // SAFETY: NUL-terminated strings; the caller passes a buffer and its length.
        |key, buf, len| unsafe { libc::lgetxattr(c.as_ptr(), key.as_ptr(), buf, len) },
    )
}

/// [`xattrs_of`] for an open file or directory: no path lookup.
pub fn xattrs_of_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    collect_xattrs(
        // SAFETY: valid fd; the caller passes a buffer and its length.
        |buf, len| unsafe { libc::flistxattr(raw, buf, len) },
        // SAFETY: valid fd, NUL-terminated key; the caller passes a buffer and its length.
        |key, buf, len| unsafe { libc::fgetxattr(raw, key.as_ptr(), buf, len) },
    )
}

/// Lists the attribute names with `list` and reads each with `get` (both called with a
/// buffer and its length, returning a length or -1 with errno), sorted by name.
fn collect_xattrs(
    list: impl Fn(*mut libc::c_char, usize) -> isize,
    get: impl Fn(&CStr, *mut libc::c_void, usize) -> isize,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        let n = list(names.as_mut_ptr().cast(), names.len());
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(error),
        }
    };
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let ckey = cstring(key)?;
        let mut value = vec![0u8; 256];
        loop {
            let n = get(&ckey, value.as_mut_ptr().cast(), value.len());
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::ERANGE) => value.resize(value.len() * 4, 0),
                Some(libc::ENODATA) => {
                    value.clear();
                    break;
                }
                _ => return Err(error),
            }
        }
        out.push((key.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Opens the regular file `name` inside `dir` for reading, without following a symlink.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<std::fs::File> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
    .map(std::fs::File::from)
}

/// The target of the symlink `name` inside `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid fd, NUL-terminated name; buffer pointer and length match.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Sets an extended attribute on `path` without following a final symlink.
pub fn set_xattr_path(path: &Path, key: &[u8], value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    let k = cstring(key)?;
    // SAFETY: NUL-terminated strings; value pointer and length match; checked.
    check(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// The names in directory `dir`, without `.` and `..`, in the order the kernel gives.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    Ok(read_dir_entries(dir)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The names in directory `dir` with their `d_type` (`DT_UNKNOWN` where the filesystem
/// does not tell), without `.` and `..`, in the order the kernel gives.
pub fn read_dir_entries(dir: BorrowedFd<'_>) -> io::Result<Vec<(CString, u8)>> {
    // The stream takes ownership of a duplicate so that `dir` stays usable.
    // SAFETY: valid fd; result checked.
    let dup = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `dup` is an owned descriptor handed to the stream.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let error = io::Error::last_os_error();
        // SAFETY: `dup` was not taken by the failed fdopendir.
        unsafe { libc::close(dup) };
        return Err(error);
    }
    // SAFETY: a fresh stream positioned at its start.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    loop {
        // SAFETY: errno is thread-local; resetting it distinguishes end from error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid open directory stream.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let errno = io::Error::last_os_error();
            // SAFETY: closing the stream we opened.
            unsafe { libc::closedir(stream) };
            if errno.raw_os_error().unwrap_or(0) != 0 {
                return Err(errno);
            }
            return Ok(names);
        }
        // SAFETY: `d_name` of a returned entry is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            // SAFETY: `entry` is a valid entry returned by readdir64.
            names.push((name.to_owned(), unsafe { (*entry).d_type }));
        }
    }
}

/// Shares data blocks between two files (reflink) where the filesystem allows.
pub fn clone_file(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid fds; the ioctl takes the source fd as its argument; checked.
    check(unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) })?;
    Ok(())
}

/// Copies up to `len` bytes between files in the kernel; returns the bytes copied.
pub fn copy_file_range(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: valid fds; null offsets use and advance the file positions; checked.
    let n = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective group id of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Sets access and modification times of `path` itself (never a final symlink's target).
pub fn set_times_path(path: &Path, seconds: i64, nanos: i64) -> io::Result<()> {
    let c = cpath(path)?;
    let times = [timespec(seconds, nanos), timespec(seconds, nanos)];
    // SAFETY: NUL-terminated path and two timespecs; result checked.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `mknod` by path, for copies of device nodes and FIFOs.
pub fn mknod_path(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: NUL-terminated path; result checked.
    check(unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })?;
    Ok(())
}

/// Takes an exclusive `flock` on `file`, waiting for other holders.
pub fn lock_exclusive(file: &std::fs::File) -> io::Result<()> {
    loop {
        // SAFETY: valid fd; result checked.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The process's file mode creation mask, read from `/proc/self/status` (Linux 4.7+)
/// without changing it; `None` when the kernel does not report it.
pub fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Whether directory `fd` carries a default ACL, which replaces the umask for entries
/// created in it. An error reading it counts as yes (the caller then sets modes itself).
pub fn has_default_acl(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: valid fd and NUL-terminated name; a null buffer of size 0 only asks the size.
    let size = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"system.posix_acl_default".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if size >= 0 {
        return true;
    }
    !matches!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP)
    )
}

/// `syncfs`: writes back every dirty page and inode of the filesystem holding `fd`.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid fd; result checked.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) })?;
    Ok(())
}
