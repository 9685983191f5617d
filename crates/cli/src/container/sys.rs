//! Thin wrappers over the raw system calls the container child makes between `clone` and
//! `execve`.
//!
//! The child of a possibly multi-threaded process may only make async-signal-safe calls:
//! another thread may have held the allocator's or stdout's lock at the moment of the clone,
//! and that lock stays held forever in the child. Every function here therefore takes
//! prepared `CStr`s and plain integers, calls `libc` directly and returns a bare errno; none
//! allocates, formats or panics. What is not here (`std::fs`, `nix` helpers that build
//! paths, `format!`) must not be used on the child side.

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_long, c_uint, c_ulong, c_void, pid_t};

/// The errno of the last failed call.
pub(crate) fn errno() -> i32 {
    // SAFETY: `__errno_location` returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Converts a `-1` return into `Err(errno)`.
fn check(ret: c_long) -> Result<c_long, i32> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// `struct clone_args` of clone3(2), version 0 (64 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Forks like `fork(2)` (copy-on-write memory, same stack) with extra clone `flags`, such
/// as new namespaces or `CLONE_PARENT`. Returns 0 in the child and its pid in the caller.
///
/// # Safety
/// The child must only make async-signal-safe calls (this module's) and end with `execve`
/// or `_exit`: it shares no locks with the other threads of the caller.
pub(crate) unsafe fn clone_process(flags: u64) -> Result<pid_t, i32> {
    // clone3 refuses an exit signal with CLONE_PARENT: the child then inherits ours.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let mut args = CloneArgs {
        flags,
        exit_signal,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; without CLONE_VM a zero stack
    // makes the child continue on a copy of this stack, as fork does.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(ret).map(|pid| pid as pid_t)
}

/// Ends the process at once, without running destructors or `atexit` handlers.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Writes all of `bytes` to `fd`, retrying on `EINTR`.
pub(crate) fn write_all(fd: c_int, bytes: &[u8]) -> Result<(), i32> {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length describe the unwritten tail of `bytes`.
        let ret = unsafe {
            libc::write(
                fd,
                bytes[done..].as_ptr() as *const c_void,
                bytes.len() - done,
            )
        };
        if ret < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        done += ret as usize;
    }
    Ok(())
}

/// Reads one byte from `fd`, retrying on `EINTR`: `true` when one came, `false` at
/// end-of-file.
pub(crate) fn read_byte(fd: c_int) -> Result<bool, i32> {
    let mut byte = 0u8;
    loop {
        // SAFETY: the pointer is to one writable byte.
        let ret = unsafe { libc::read(fd, (&raw mut byte).cast::<c_void>(), 1) };
        if ret < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(ret == 1);
    }
}

/// `close(2)`, ignoring errors (the descriptor is gone either way).
pub(crate) fn close(fd: c_int) {
    // SAFETY: closing an integer descriptor has no memory-safety requirement.
    unsafe { libc::close(fd) };
}

/// `mount(2)`; `None` passes a null pointer.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let ptr_of = |value: Option<&CStr>| value.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            ptr_of(source),
            target.as_ptr(),
            ptr_of(fstype),
            flags,
            ptr_of(data) as *const c_void,
        )
    };
    check(ret as c_long).map(drop)
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: c_int) -> Result<(), i32> {
    // SAFETY: `target` is NUL-terminated.
    check(unsafe { libc::umount2(target.as_ptr(), flags) } as c_long).map(drop)
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
    // SAFETY: both arguments are NUL-terminated strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// `chdir(2)`.
pub(crate) fn chdir(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) } as c_long).map(drop)
}

/// `mkdir(2)`; an existing entry is not an error.
pub(crate) fn mkdir_existing_ok(path: &CStr, mode: u32) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::mkdir(path.as_ptr(), mode) };
    if ret < 0 && errno() != libc::EEXIST {
        return Err(errno());
    }
    Ok(())
}

/// Creates an empty regular file if nothing exists at `path`.
pub(crate) fn touch(path: &CStr, mode: u32) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            // Read-only: an existing file is not copied up into an overlay's upper layer.
            libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY,
            mode,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    close(fd);
    Ok(())
}

/// `mknod(2)` of a character device.
pub(crate) fn mknod_char(path: &CStr, mode: u32, major: u32, minor: u32) -> Result<(), i32> {
    let dev = libc::makedev(major, minor);
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) };
    check(ret as c_long).map(drop)
}

/// `symlink(2)`.
pub(crate) fn symlink(target: &CStr, link: &CStr) -> Result<(), i32> {
    // SAFETY: both arguments are NUL-terminated.
    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } as c_long).map(drop)
}

/// `open(2)` with `O_CLOEXEC` added.
pub(crate) fn open(path: &CStr, flags: c_int) -> Result<c_int, i32> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    check(fd as c_long).map(|fd| fd as c_int)
}

/// `open_tree(2)` with `OPEN_TREE_CLONE | AT_RECURSIVE`: a detached copy of the mount tree
/// at `path`, to be attached later with [`move_mount`] wherever the process's root is then.
pub(crate) fn open_tree_clone(path: &CStr) -> Result<c_int, i32> {
    const OPEN_TREE_CLONE: c_uint = 1;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint | libc::AT_RECURSIVE as c_uint;
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    check(ret).map(|fd| fd as c_int)
}

/// Makes every mount of the detached tree `fd` read-only (`mount_setattr(2)`).
pub(crate) fn set_tree_read_only(fd: c_int) -> Result<(), i32> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr of the size passed; `empty` is NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// Attaches the detached mount tree `fd` at `target` (`move_mount(2)`), following a
/// symlink at `target`: called after `pivot_root`, where a link cannot lead out of the
/// container's root, as docker resolves mount destinations inside the container.
pub(crate) fn move_mount(fd: c_int, target: &CStr) -> Result<(), i32> {
    const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 4;
    const MOVE_MOUNT_T_SYMLINKS: c_uint = 0x10;
    let empty = c"";
    // SAFETY: both paths are NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    check(ret).map(drop)
}

/// `sethostname(2)`.
pub(crate) fn sethostname(name: &CStr) -> Result<(), i32> {
    let bytes = name.to_bytes();
    // SAFETY: pointer and length describe `name` without its NUL.
    check(
        unsafe { libc::sethostname(bytes.as_ptr() as *const libc::c_char, bytes.len()) } as c_long,
    )
    .map(drop)
}

/// `setns(2)`.
pub(crate) fn setns(fd: c_int, nstype: c_int) -> Result<(), i32> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::setns(fd, nstype) } as c_long).map(drop)
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> Result<(), i32> {
    // SAFETY: plain socket creation.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(errno());
    }
    // SAFETY: an all-zero ifreq is valid; the name fits in IFNAMSIZ.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in req.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: `req` is a valid ifreq for SIOCSIFFLAGS.
    let ret = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req as *const libc::ifreq) };
    let result = if ret < 0 { Err(errno()) } else { Ok(()) };
    close(sock);
    result
}

/// Resets every signal to its default action and unblocks them all, as a fresh process
/// expects (Rust ignores `SIGPIPE`; the caller may block or handle others).
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition is always valid; failures (for the
        // signals glibc reserves) leave that signal as it was.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    set_signal_mask(libc::SIG_SETMASK, &[]);
}

/// Changes the signal mask by the set made of `signals` (`how` as for sigprocmask).
pub(crate) fn set_signal_mask(how: c_int, signals: &[c_int]) {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(how, &set, ptr::null_mut());
    }
}

/// Sends `fd` over the Unix socket `sock` (`SCM_RIGHTS`).
pub(crate) fn send_fd(sock: c_int, fd: c_int) -> Result<(), i32> {
    // Room for one cmsghdr carrying one int, aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut c_void,
        iov_len: 1,
    };
    // SAFETY: msghdr and the control buffer are valid for the whole call; CMSG_* compute
    // positions inside `control`, which is large enough for one descriptor.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut c_void;
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut c_int, fd);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Opens a new pseudo-terminal in the `/dev/pts` instance behind `ptmx`; returns
/// (master, slave).
pub(crate) fn open_pty(ptmx: &CStr) -> Result<(c_int, c_int), i32> {
    let master = open(ptmx, libc::O_RDWR | libc::O_NOCTTY)?;
    let unlock: c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER takes open flags and returns a new fd.
    let slave = unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) < 0 {
            let e = errno();
            close(master);
            return Err(e);
        }
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        let e = errno();
        close(master);
        return Err(e);
    }
    Ok((master, slave))
}

/// `dup2(2)` that also clears close-on-exec when `fd == target`.
pub(crate) fn dup_onto(fd: c_int, target: c_int) -> Result<(), i32> {
    // SAFETY: integer descriptors only.
    unsafe {
        if fd == target {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(errno());
            }
            return Ok(());
        }
        if libc::dup2(fd, target) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Duplicates `fd` to a close-on-exec descriptor numbered at least `min`.
pub(crate) fn dup_above(fd: c_int, min: c_int) -> Result<c_int, i32> {
    // SAFETY: integer descriptors only.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    check(ret as c_long).map(|fd| fd as c_int)
}

/// Marks every descriptor from `first` up close-on-exec (`close_range(2)`).
pub(crate) fn cloexec_from(first: c_uint) -> Result<(), i32> {
    const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;
    // SAFETY: integer arguments only.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// Checks that the working directory lies under the process's root: the kernel reports a
/// directory outside it (reached through a descriptor leaked from the host, CVE-2024-21626)
/// as unreachable, which getcwd(3) turns into `ENOENT`.
pub(crate) fn cwd_is_reachable() -> Result<(), i32> {
    let mut buf = [0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let ret = unsafe { libc::getcwd(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if ret.is_null() {
        return Err(errno());
    }
    if buf[0] != b'/' {
        return Err(libc::ENOENT);
    }
    Ok(())
}

/// Sets supplementary groups, then group and user IDs (real, effective and saved).
///
/// These are raw system calls on purpose: glibc's wrappers, in a process it believes
/// multi-threaded (the clone skipped its fork handlers), broadcast the change to every
/// thread it knows of and wait for them, which in the child waits forever.
pub(crate) fn switch_user(uid: u32, gid: u32, groups: &[libc::gid_t]) -> Result<(), i32> {
    // SAFETY: the groups pointer and count describe `groups`; the rest are integers.
    unsafe {
        check(libc::syscall(
            libc::SYS_setgroups,
            groups.len(),
            groups.as_ptr(),
        ))?;
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
        check(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
    }
    Ok(())
}

/// Sets resource limit `resource` of this process (`u64::MAX`: unlimited), with the raw
/// `prlimit64` system call.
pub(crate) fn set_rlimit(resource: u32, soft: u64, hard: u64) -> Result<(), i32> {
    let limit = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid rlimit64 for the call; the old value is not asked for.
    unsafe {
        check(libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            &limit as *const libc::rlimit64,
            std::ptr::null_mut::<libc::rlimit64>(),
        ))?;
    }
    Ok(())
}

/// Removes every capability not in `keep` (a bit mask) from the bounding set.
pub(crate) fn drop_bounding(keep: u64, last_cap: u32) -> Result<(), i32> {
    for cap in 0..=last_cap {
        if cap < 64 && keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) };
        if ret < 0 && errno() != libc::EINVAL {
            return Err(errno());
        }
    }
    Ok(())
}

/// Sets the effective and permitted sets to `caps`, empties the inheritable and ambient
/// sets (`capset(2)`, version 3).
pub(crate) fn set_capabilities(caps: u64) -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let low = caps as u32;
    let high = (caps >> 32) as u32;
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: header and the two data words are the layout capset v3 expects.
    unsafe {
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) < 0 {
            return Err(errno());
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) < 0
            && errno() != libc::EINVAL
        {
            return Err(errno());
        }
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: exec can never grant privileges (setuid bits, file capabilities).
pub(crate) fn set_no_new_privs() -> Result<(), i32> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as c_long).map(drop)
}

/// `execve(2)`; returns only on failure, with its errno.
///
/// `ETXTBSY` is retried for up to half a second: it means some process holds the file open
/// for writing, and that is often a sibling cloned by another thread of our parent while
/// the file was being written, which drops the descriptor when it execs in turn.
pub(crate) fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> i32 {
    for _ in 0..50 {
        // SAFETY: argv and envp are null-terminated arrays of NUL-terminated strings that
        // the caller keeps alive.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        if errno() != libc::ETXTBSY {
            break;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        // SAFETY: nanosleep reads the timespec; a null remainder is allowed.
        unsafe { libc::nanosleep(&pause, ptr::null_mut()) };
    }
    errno()
}

/// Whether `path` names a directory (following symlinks).
pub(crate) fn is_directory(path: &CStr) -> bool {
    // SAFETY: stat writes into a zeroed buffer of the right type.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(path.as_ptr(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}
