//! Copy-on-write filesystems for stencil: layer archives in and out, snapshots, mounts.
//!
//! This crate turns untrusted layer tar streams into directories ([`apply_layer`]), turns
//! directories back into layer tars ([`diff_upper`], [`diff_trees`]), and stacks unpacked
//! layers into container root filesystems with a containerd-style [`Snapshotter`] whose
//! drivers are [`OverlaySnapshotter`] (kernel overlayfs) and [`NativeSnapshotter`]
//! (full copies). A [`Mount`] is a plain value; [`mount_all`] performs a list of them and
//! [`unmount_all`] undoes them.
//!
//! It deliberately knows nothing about image digests, registries or the metadata database:
//! snapshot keys and names are opaque strings chosen by the caller (the engine uses chain
//! IDs), and verifying a layer's digest is the caller's job while the bytes stream past.
//!
//! # Safety model of [`apply_layer`]
//!
//! Every entry is resolved from a directory file descriptor of the target: names are
//! cleaned lexically (`..` clamps at the root, a leading `/` is dropped), intermediate
//! symlinks are followed only by the kernel's `openat2(RESOLVE_IN_ROOT)`, and the final
//! component is never followed: whatever is in the way is removed before the entry is
//! created with `O_EXCL`/`O_NOFOLLOW`, and metadata is set through the new descriptor or
//! with no-follow calls. Hard links resolve their target inside the root the same way.
//! Caps on entry count, stream bytes and name length stop archive bombs.
//!
//! Deliberate choices and known limits:
//!
//! - A symlink used as a parent is followed inside the root; when its in-root target does
//!   not exist the entry fails (`ErrorKind::Io`) instead of creating directories along it.
//! - Parent directories a layer does not list (umoci leaves out unchanged ones) are created
//!   with the mode and owner of the same directory in the layers below
//!   ([`ApplyOptions::parents`], filled from [`LayerTarget::parents`]), as containerd does,
//!   so the overlay view keeps them; with no such directory below, `0755 root:root`.
//! - Extended attributes in overlay's own namespaces (`trusted.overlay.*`, `user.overlay.*`)
//!   are dropped from layers: whiteouts must come as `.wh.` entries.
//! - Old GNU sparse entries are applied sparse; PAX sparse formats (`GNU.sparse.*`) are not
//!   understood by the `tar` crate and come out with their sparse map as data.
//! - PAX and GNU long-name headers are read whole by the `tar` crate; a guard following
//!   the block structure refuses any above [`Limits::max_extension_bytes`] before the
//!   `tar` crate buffers it.
//!
//! # Snapshot store layout
//!
//! A snapshotter owns one directory: `catalogue.json` (every snapshot's key, kind, parent
//! and numeric id; rewritten atomically through a temporary file, `fsync` and `rename`),
//! `lock` (an `flock` taken around every change, so several processes can share a root),
//! `snapshots/ID/{fs,work}` with short numeric ids, and (overlay) an always-empty `empty`
//! directory that stands in as a second lower layer for read-only views of one layer.
//! Overlay mounts are made with the `fsconfig` `lowerdir+` interface, one call per lower
//! directory, so a 128-layer stack never meets the 4096-byte limit of a single option
//! string (the tests mount one whose classic option string would exceed it); kernels
//! before 6.8 fall back to `mount(2)`, where the short ids keep typical stacks under it.
//! Directories left by a crash are removed with the next `remove`.
//!
//! # Examples
//!
//! A layer in, the same layer out (runs unprivileged: owners are not applied):
//!
//! ```
//! use stencil_cow_fs::{ApplyOptions, DiffOptions, apply_layer, diff_trees};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut layer = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_size(6);
//! header.set_mode(0o644);
//! layer.append_data(&mut header, "etc/motd", &b"hello\n"[..])?;
//! let layer = layer.into_inner()?;
//!
//! let rootfs = tempfile::tempdir()?;
//! let options = ApplyOptions::default().preserve_ownership(false);
//! let stats = apply_layer(layer.as_slice(), rootfs.path(), &options)?;
//! assert_eq!(stats.entries, 1);
//! assert_eq!(std::fs::read(rootfs.path().join("etc/motd"))?, b"hello\n");
//!
//! let empty = tempfile::tempdir()?;
//! let diff = diff_trees(empty.path(), rootfs.path(), Vec::new(), &DiffOptions::default())?;
//! let names: Vec<String> = tar::Archive::new(diff.as_slice())
//!     .entries()?
//!     .map(|e| Ok(e?.path()?.display().to_string()))
//!     .collect::<std::io::Result<_>>()?;
//! assert_eq!(names, ["etc", "etc/motd"]);
//! # Ok(())
//! # }
//! ```
//!
//! Unpacking into snapshots and mounting a container's root filesystem (needs root):
//!
//! ```no_run
//! use stencil_cow_fs::{
//!     ApplyOptions, OverlaySnapshotter, Snapshotter, apply_layer, mount_all, unmount_all,
//! };
//! let snapshots = OverlaySnapshotter::new("/var/lib/stencil/snapshots".as_ref())?;
//! // Unpack one layer into a new snapshot and commit it under its chain id.
//! snapshots.prepare("extract-1", None)?;
//! let target = snapshots.layer_target("extract-1")?;
//! let layer = std::fs::File::open("layer.tar.gz")?;
//! apply_layer(layer, &target.dir, &ApplyOptions::default().whiteouts(target.whiteouts))?;
//! snapshots.commit("sha256:chain-1", "extract-1")?;
//! // A container: a writable snapshot on top, mounted.
//! let mounts = snapshots.prepare("container-1", Some("sha256:chain-1"))?;
//! mount_all(&mounts, "/tmp/rootfs".as_ref())?;
//! unmount_all("/tmp/rootfs".as_ref())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod apply;
pub mod compression;
pub mod diff;
mod error;
pub mod gzip;
mod header_guard;
pub mod mount;
mod resolve;
pub mod snapshot;
mod sys;
pub mod whiteout;

pub use apply::{
    Applied, ApplyOptions, ApplyStats, IdMap, IdRange, Limits, apply_layer, apply_layer_tracked,
    settle_implied_dirs, sync_filesystem,
};
pub use compression::Compression;
pub use diff::{DiffOptions, diff_trees, diff_upper};
pub use error::{Error, ErrorKind, Result};
pub use mount::{Mount, mount_all, unmount_all};
pub use snapshot::{
    Info, Kind, LayerTarget, NativeSnapshotter, OverlaySnapshotter, Snapshotter, Usage,
};
pub use whiteout::WhiteoutMode;
