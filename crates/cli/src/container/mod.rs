//! Containers: the built-in runtime and the delegation to an OCI runtime.
//!
//! [`runtime`] starts a process in new namespaces on a mounted root filesystem (or inside
//! a running container, for `exec`); [`oci`] writes an OCI bundle for an external runtime
//! such as runc. [`user`] resolves `--user` inside a rootfs, [`caps`] holds docker's default
//! capability set, [`namespaces`] which namespaces a container gets and [`netfiles`] the
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` it is given, [`cgroup`] its resource
//! limits, usage figures and freezer, [`health`] the probes of a health check. The child side
//! (`child`, `sys`) runs between `clone` and `execve` and is private, as are the copies of
//! a foreground container's output (`tty`, `tee`).
//!
//! This module knows nothing about images, snapshots or container records: callers mount
//! the rootfs and compute the final argv, environment and working directory.

pub mod caps;
pub mod cgroup;
mod child;
pub mod health;
pub mod logfile;
pub mod monitor;
pub mod namespaces;
pub mod netfiles;
pub mod oci;
pub mod rootpath;
pub mod runtime;
mod sys;
mod tee;
mod tty;
pub mod user;
