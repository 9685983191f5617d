//! The OCI Distribution protocol for stencil (not yet built).
//!
//! This crate will hold the registry client (resolve, fetch and push manifests and blobs,
//! authentication, tags, catalog, search, retries and resume, streaming into the
//! layerstore) and the `server` module behind `stencil registry serve`.
//!
//! It deliberately knows nothing about mounting or processes. See ARCHITECTURE.md.
#![deny(missing_docs)]
