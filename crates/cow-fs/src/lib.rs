//! Copy-on-write filesystems for stencil (not yet built).
//!
//! This crate will own the layer archive codec (applying untrusted tar streams to a
//! directory safely, with whiteouts; producing tar diffs from an overlay upper directory or
//! from two trees), compression detection, the snapshotter with its `overlay` and `native`
//! drivers, and `Mount` values with the functions that perform and undo them.
//!
//! It deliberately knows nothing about image digests, registries or the metadata database.
#![deny(missing_docs)]
