//! OCI whiteouts: how a layer says "this path is gone" and how each target encodes it.
//!
//! In a layer tar, `DIR/.wh.NAME` deletes `DIR/NAME` of the layers below, and
//! `DIR/.wh..wh..opq` hides everything below `DIR` that this layer does not itself hold.
//! Other `.wh..wh.` names are AUFS bookkeeping and carry no meaning for OCI; they are
//! skipped. On an overlayfs lower directory a whiteout is a `0/0` character device and an
//! opaque directory carries `trusted.overlay.opaque=y`; on a flat tree both are deletions.
//! This module classifies names; it performs nothing.
//!
//! ```
//! use stencil_cow_fs::whiteout::{Whiteout, classify};
//! assert_eq!(classify(b".wh.passwd"), Some(Whiteout::Remove(b"passwd")));
//! assert_eq!(classify(b".wh..wh..opq"), Some(Whiteout::Opaque));
//! assert_eq!(classify(b".wh.."), Some(Whiteout::Invalid));
//! assert_eq!(classify(b"passwd"), None);
//! ```

/// Prefix of a whiteout file name.
pub const PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata names (and of the opaque marker).
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// Extended attribute overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
/// Prefix of every extended attribute overlayfs keeps for itself.
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// The same for overlay mounts with `userxattr`.
pub const USER_OVERLAY_XATTR_PREFIX: &[u8] = b"user.overlay.";

/// What a whiteout name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh..wh..opq`: the directory is opaque.
    Opaque,
    /// `.wh.NAME`: remove `NAME`.
    Remove(&'a [u8]),
    /// Another `.wh..wh.` name: AUFS metadata, skipped.
    Meta,
    /// `.wh.` followed by nothing, `.` or `..`: refused.
    Invalid,
}

/// Classifies one path component; `None` when it is no whiteout at all.
pub fn classify(name: &[u8]) -> Option<Whiteout<'_>> {
    if name == OPAQUE {
        return Some(Whiteout::Opaque);
    }
    if name.starts_with(META_PREFIX) {
        return Some(Whiteout::Meta);
    }
    let rest = name.strip_prefix(PREFIX)?;
    if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
        return Some(Whiteout::Invalid);
    }
    Some(Whiteout::Remove(rest))
}

/// How whiteouts are written into the target directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhiteoutMode {
    /// The target is one overlayfs lower layer: write `0/0` character devices and
    /// `trusted.overlay.opaque=y`, as the kernel reads them.
    Overlay,
    /// The target is a flat tree holding every layer below: delete what is whited out.
    #[default]
    Delete,
}
