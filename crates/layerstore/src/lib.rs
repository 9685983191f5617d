//! The local content-addressed store of stencil (not yet built).
//!
//! This crate will own the blob store (`ROOT/blobs/sha256/HEX`, resumable ingest with
//! atomic verified commit), the SQLite metadata database (images, tags, layers, snapshot
//! reference counts, containers), the image model helpers (OCI and Docker schema 2
//! manifests, indexes and configs, platform matching, diff IDs and chain IDs), import and
//! export of OCI layouts and docker-archives, fsck and garbage collection.
//!
//! It deliberately knows nothing about HTTP, mounting or processes. See ARCHITECTURE.md.
#![deny(missing_docs)]
