//! Mounts as plain values: [`Mount`], performed by [`mount_all`] and undone by
//! [`unmount_all`].
//!
//! A snapshotter answers "how do I see this snapshot?" with a list of [`Mount`]s, as
//! containerd does; nothing is mounted until a caller passes that list, with a target
//! directory, to [`mount_all`]. Overlay mounts are made with the new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `move_mount`), giving each lower directory its own
//! `lowerdir+` call so that a deep stack never meets the 4096-byte limit of a single
//! option string; kernels older than 6.8 fall back to the classic `mount(2)` call. The
//! kernel calls sit behind the [`Mounter`] trait so that callers can record them in tests.
//!
//! ```
//! use stencil_cow_fs::Mount;
//! let mount = Mount::overlay(&["/s/2/fs".as_ref(), "/s/1/fs".as_ref()], None);
//! assert_eq!(mount.kind, "overlay");
//! assert_eq!(mount.options, ["lowerdir=/s/2/fs:/s/1/fs"]);
//! ```

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys;

/// One mount: a filesystem type, a source and options, as `mount -t KIND -o OPTIONS SOURCE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `overlay`, `bind`, `tmpfs`, ... (`type` when serialized, as in
    /// containerd's JSON).
    #[serde(rename = "type")]
    pub kind: String,
    /// The source: a directory for `bind`, a free label for `overlay`.
    pub source: PathBuf,
    /// Options in `mount -o` spelling (`ro`, `rbind`, `lowerdir=A:B`, `upperdir=U`, ...).
    pub options: Vec<String>,
}

impl Mount {
    /// An overlay of `lowers` (topmost first) with an optional `(upper, work)` pair; without
    /// one the mount is read-only.
    pub fn overlay(lowers: &[&Path], upper: Option<(&Path, &Path)>) -> Mount {
        let joined: Vec<String> = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut options = Vec::new();
        if let Some((upper, work)) = upper {
            options.push(format!("upperdir={}", upper.display()));
            options.push(format!("workdir={}", work.display()));
        }
        options.push(format!("lowerdir={}", joined.join(":")));
        Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options,
        }
    }

    /// A recursive bind mount of `source`, read-only when `read_only`.
    pub fn bind(source: &Path, read_only: bool) -> Mount {
        Mount {
            kind: "bind".into(),
            source: source.to_path_buf(),
            options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
        }
    }

    /// Whether the options ask for a read-only mount.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Performs and undoes single mounts; [`Kernel`] is the real one.
pub trait Mounter {
    /// Mounts `mount` on `target`.
    fn mount(&self, mount: &Mount, target: &Path) -> io::Result<()>;
    /// Unmounts the topmost mount on `target`; `Ok(false)` when nothing is mounted there.
    fn unmount(&self, target: &Path) -> io::Result<bool>;
}

/// Mounts with the running kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel;

/// Performs `mounts` on `target` in order (each on top of the previous); if one fails,
/// those already made are undone before the error is returned.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    mount_all_with(&Kernel, mounts, target)
}

/// [`mount_all`] through a chosen [`Mounter`].
pub fn mount_all_with(mounter: &dyn Mounter, mounts: &[Mount], target: &Path) -> Result<()> {
    for (done, mount) in mounts.iter().enumerate() {
        if let Err(source) = mounter.mount(mount, target) {
            for _ in 0..done {
                let _ = mounter.unmount(target);
            }
            return Err(Error::Mount {
                op: "mount",
                kind: mount.kind.clone(),
                target: target.to_path_buf(),
                source,
            });
        }
    }
    Ok(())
}

/// Unmounts everything mounted on `target`, topmost first, until nothing is left.
pub fn unmount_all(target: &Path) -> Result<()> {
    unmount_all_with(&Kernel, target)
}

/// [`unmount_all`] through a chosen [`Mounter`].
pub fn unmount_all_with(mounter: &dyn Mounter, target: &Path) -> Result<()> {
    // A bound keeps a misbehaving mounter from spinning forever.
    let mut busy_retries = 0;
    for _ in 0..1024 {
        match mounter.unmount(target) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            // A mount stays busy for a moment after its last user went: a process forked
            // by another thread holds copies of our descriptors until it execs, a process
            // that exited is still being torn down. containerd retries for the same
            // reason; a mount still busy after a second is reported.
            Err(source)
                if source.raw_os_error() == Some(libc::EBUSY)
                    && busy_retries < UNMOUNT_BUSY_RETRIES =>
            {
                busy_retries += 1;
                std::thread::sleep(UNMOUNT_BUSY_PAUSE);
            }
            Err(source) => {
                return Err(Error::Mount {
                    op: "unmount",
                    kind: String::from("any"),
                    target: target.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// How often [`unmount_all`] retries a busy mount, and how long it waits between tries.
const UNMOUNT_BUSY_RETRIES: u32 = 50;
const UNMOUNT_BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstr(text: &str) -> io::Result<CString> {
    sys::cstring(text.as_bytes())
}

fn syscall_fd(result: libc::c_long) -> io::Result<OwnedFd> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(result as libc::c_int) })
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&str>,
) -> io::Result<()> {
    let key = key.map(cstr).transpose()?;
    let value = value.map(cstr).transpose()?;
    // SAFETY: valid fd; key/value are NUL-terminated or null as the command requires.
    let result = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mount_overlay_fsconfig(mount: &Mount, target: &Path) -> io::Result<()> {
    let name = cstr("overlay")?;
    // SAFETY: NUL-terminated name; the result is checked.
    let fs = syscall_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    fsconfig(
        &fs,
        FSCONFIG_SET_STRING,
        Some("source"),
        Some(&mount.source.to_string_lossy()),
    )?;
    let mut read_only = false;
    for option in &mount.options {
        match option.split_once('=') {
            Some(("lowerdir", list)) => {
                for lower in list.split(':') {
                    fsconfig(&fs, FSCONFIG_SET_STRING, Some("lowerdir+"), Some(lower))?;
                }
            }
            Some((key, value)) => fsconfig(&fs, FSCONFIG_SET_STRING, Some(key), Some(value))?,
            None if option == "ro" => read_only = true,
            None if option == "rw" => {}
            None => fsconfig(&fs, FSCONFIG_SET_FLAG, Some(option), None)?,
        }
    }
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    let attributes = if read_only { MOUNT_ATTR_RDONLY } else { 0 };
    // SAFETY: valid fs context fd; the result is checked.
    let mnt = syscall_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attributes,
        )
    })?;
    let empty = cstr("")?;
    let to = sys::cpath(target)?;
    // SAFETY: valid mount fd, NUL-terminated paths; the result is checked.
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mount_classic(
    kind: &str,
    source: &Path,
    target: &Path,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = sys::cpath(source)?;
    let target = sys::cpath(target)?;
    let kind = cstr(kind)?;
    let data = cstr(data)?;
    // SAFETY: NUL-terminated strings; the result is checked.
    let result = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Mounter for Kernel {
    fn mount(&self, mount: &Mount, target: &Path) -> io::Result<()> {
        match mount.kind.as_str() {
            "bind" => {
                let recursive = mount.options.iter().any(|o| o == "rbind");
                let mut flags = libc::MS_BIND;
                if recursive {
                    flags |= libc::MS_REC;
                }
                mount_classic("none", &mount.source, target, flags, "")?;
                if mount.read_only() {
                    // A bind mount ignores MS_RDONLY until it is remounted.
                    let remount = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    if let Err(e) = mount_classic("none", &mount.source, target, remount, "") {
                        let _ = self.unmount(target);
                        return Err(e);
                    }
                }
                Ok(())
            }
            "overlay" => match mount_overlay_fsconfig(mount, target) {
                Ok(()) => Ok(()),
                // ENOSYS: no new mount API; EINVAL: no `lowerdir+` (kernels before 6.8).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
                    let mut flags = 0;
                    let options: Vec<&str> = mount
                        .options
                        .iter()
                        .map(String::as_str)
                        .filter(|o| {
                            if *o == "ro" {
                                flags |= libc::MS_RDONLY;
                            }
                            *o != "ro" && *o != "rw"
                        })
                        .collect();
                    mount_classic("overlay", &mount.source, target, flags, &options.join(","))
                }
                Err(e) => Err(e),
            },
            other => {
                let mut flags = 0;
                let options: Vec<&str> = mount
                    .options
                    .iter()
                    .map(String::as_str)
                    .filter(|o| {
                        if *o == "ro" {
                            flags |= libc::MS_RDONLY;
                        }
                        *o != "ro" && *o != "rw"
                    })
                    .collect();
                mount_classic(other, &mount.source, target, flags, &options.join(","))
            }
        }
    }

    fn unmount(&self, target: &Path) -> io::Result<bool> {
        let c = sys::cstring(target.as_os_str().as_bytes())?;
        // SAFETY: NUL-terminated path; the result is checked.
        let result = unsafe { libc::umount2(c.as_ptr(), libc::UMOUNT_NOFOLLOW) };
        if result == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    //! Ordering and rollback of [`mount_all_with`], recorded without the kernel.
    use std::cell::RefCell;

    use super::*;
    use crate::ErrorKind;

    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        fail_on: Option<&'static str>,
        mounted: RefCell<usize>,
    }

    impl Mounter for Recorder {
        fn mount(&self, mount: &Mount, _target: &Path) -> io::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("mount {}", mount.kind));
            if self.fail_on == Some(mount.kind.as_str()) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            *self.mounted.borrow_mut() += 1;
            Ok(())
        }
        fn unmount(&self, _target: &Path) -> io::Result<bool> {
            self.calls.borrow_mut().push("unmount".into());
            let mut mounted = self.mounted.borrow_mut();
            if *mounted == 0 {
                return Ok(false);
            }
            *mounted -= 1;
            Ok(true)
        }
    }

    #[track_caller]
    fn check(fail_on: Option<&'static str>, expected_calls: &[&str], expected: Option<ErrorKind>) {
        let recorder = Recorder {
            fail_on,
            ..Recorder::default()
        };
        let mounts = [
            Mount::bind(Path::new("/a"), true),
            Mount::overlay(&[Path::new("/l")], None),
            Mount {
                kind: "tmpfs".into(),
                source: PathBuf::from("tmpfs"),
                options: vec![],
            },
        ];
        let result = mount_all_with(&recorder, &mounts, Path::new("/t"));
        assert_eq!(result.err().map(|e| e.kind()), expected);
        if expected.is_none() {
            unmount_all_with(&recorder, Path::new("/t")).expect("unmount");
        }
        assert_eq!(*recorder.calls.borrow(), expected_calls);
    }

    #[test]
    fn mounts_serialize_as_containerd_spells_them() {
        let json = serde_json::to_value(Mount::bind(Path::new("/s/1/fs"), true)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "bind", "source": "/s/1/fs", "options": ["rbind", "ro"]})
        );
        let back: Mount = serde_json::from_value(json).expect("parse");
        assert_eq!(back, Mount::bind(Path::new("/s/1/fs"), true));
    }

    #[test]
    fn mounts_in_order_and_rolls_back_on_failure() {
        check(
            None,
            &[
                "mount bind",
                "mount overlay",
                "mount tmpfs",
                "unmount",
                "unmount",
                "unmount",
                "unmount",
            ],
            None,
        );
        check(
            Some("tmpfs"),
            &[
                "mount bind",
                "mount overlay",
                "mount tmpfs",
                "unmount",
                "unmount",
            ],
            Some(ErrorKind::Mount),
        );
        check(Some("bind"), &["mount bind"], Some(ErrorKind::Mount));
    }

    /// Answers EBUSY `busy` times, then unmounts its one mount.
    struct Busy {
        busy: RefCell<u32>,
        attempts: RefCell<u32>,
        mounted: RefCell<bool>,
    }

    impl Mounter for Busy {
        fn mount(&self, _mount: &Mount, _target: &Path) -> io::Result<()> {
            Ok(())
        }
        fn unmount(&self, _target: &Path) -> io::Result<bool> {
            *self.attempts.borrow_mut() += 1;
            let mut busy = self.busy.borrow_mut();
            if *busy > 0 {
                *busy -= 1;
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            Ok(std::mem::replace(&mut *self.mounted.borrow_mut(), false))
        }
    }

    #[test]
    fn a_briefly_busy_mount_is_retried_and_a_stuck_one_reported() {
        let briefly = Busy {
            busy: RefCell::new(3),
            attempts: RefCell::new(0),
            mounted: RefCell::new(true),
        };
        unmount_all_with(&briefly, Path::new("/t")).expect("unmounted after retries");
        assert!(!*briefly.mounted.borrow());
        assert_eq!(
            *briefly.attempts.borrow(),
            5,
            "3 busy, 1 unmount, 1 nothing left"
        );

        let stuck = Busy {
            busy: RefCell::new(u32::MAX),
            attempts: RefCell::new(0),
            mounted: RefCell::new(true),
        };
        let error = unmount_all_with(&stuck, Path::new("/t")).expect_err("stays busy");
        assert_eq!(error.kind(), ErrorKind::Mount);
        assert_eq!(*stuck.attempts.borrow(), UNMOUNT_BUSY_RETRIES + 1);
        assert!(error.to_string().contains("/t"), "{error}");
    }
}
