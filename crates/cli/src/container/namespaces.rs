//! Which namespaces a container gets, and how `exec` joins them.
//!
//! A container has its own mount, PID, UTS and IPC namespaces, plus a network namespace
//! with `--network none`; with host networking it shares the host's. There is no user
//! namespace: container root is host root, with docker's reduced capabilities. `exec`
//! opens `/proc/PID/ns/*` of the container's PID 1 and `setns`es into each, the mount
//! namespace last (its `/proc` is the container's).
//!
//! ```
//! use stencil::container::namespaces::{clone_flags, joined_by_exec};
//! assert_ne!(clone_flags(false) & libc::CLONE_NEWPID as u64, 0);
//! assert_eq!(clone_flags(false) & libc::CLONE_NEWNET as u64, 0);
//! assert_eq!(joined_by_exec().last().map(|(name, _)| *name), Some("mnt"));
//! ```

use std::os::fd::OwnedFd;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// Clone flags for a new container: mount, PID, UTS and IPC namespaces, and a network
/// namespace when `new_network`.
pub fn clone_flags(new_network: bool) -> u64 {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if new_network {
        flags |= libc::CLONE_NEWNET;
    }
    flags as u64
}

/// The namespaces `exec` joins, in order: (name under `/proc/PID/ns`, setns type).
pub fn joined_by_exec() -> &'static [(&'static str, libc::c_int)] {
    &[
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ]
}

/// Opens the namespaces of process `pid` listed by [`joined_by_exec`], in that order.
pub fn open_namespaces(pid: i32) -> std::io::Result<Vec<(OwnedFd, libc::c_int)>> {
    joined_by_exec()
        .iter()
        .map(|(name, kind)| {
            let path = format!("/proc/{pid}/ns/{name}");
            open(
                path.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(|fd| (fd, *kind))
            .map_err(|e| {
                std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("cannot open {path}: {e}"),
                )
            })
        })
        .collect()
}
