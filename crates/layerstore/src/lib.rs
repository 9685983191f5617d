//! The local content-addressed store of stencil: blobs, image metadata and image formats.
//!
//! A [`Store`] lives in one directory, `ROOT`:
//!
//! ```text
//! ROOT/
//!   oci-layout, index.json   the store is also a valid OCI image layout
//!   blobs/sha256/HEX         immutable blobs (layers as pulled, configs, manifests)
//!   ingest/ID/               partial writes: ref, data, lock; resumable
//!   snapshots/N/             unpacked layers, owned by the snapshotter (cow-fs)
//!   stencil.db               SQLite metadata (WAL)
//!   lock                     flock for cross-process critical sections
//! ```
//!
//! The parts:
//!
//! - [`content`]: the content store, containerd's split into a [`content::Provider`] (read
//!   by digest), an [`content::Ingester`] (resumable, exclusive, verified writes) and a
//!   [`content::Manager`] (walk, delete), with a shared conformance suite;
//! - [`Store`] and [`meta`]: the SQLite metadata (images, tags keyed by canonical
//!   `name:tag`, layers with diff and chain IDs, snapshot reference counts, containers),
//!   kept in step with `index.json`;
//! - [`image`]: manifests, indexes and configs (OCI and Docker schema 2), platforms, chain
//!   IDs;
//! - [`archive`]: save and load of OCI layouts, oci-archives and docker-archives;
//! - [`fsck`] and [`Store::remove_image`] / [`Store::collect_garbage`]: checking, repair and
//!   crash-safe garbage collection.
//!
//! This crate deliberately knows nothing about HTTP, mounting or processes: a registry
//! client streams into an ingester, and the engine asks the snapshotter to unpack layers
//! and records the result here.
//!
//! # Example: store a blob and read it back
//!
//! ```
//! use std::io::{Read, Write};
//! use stencil_layerstore::Store;
//! use stencil_layerstore::content::{ContentWriter, Ingester, Provider, sha256_digest};
//!
//! let root = tempfile::tempdir().unwrap();
//! let store = Store::open(root.path()).unwrap();
//! let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let digest = sha256_digest(config);
//!
//! let mut writer = store.content().writer(&format!("example-{digest}")).unwrap();
//! writer.write_all(config).unwrap();
//! writer.commit(config.len() as u64, &digest).unwrap();
//!
//! let mut text = String::new();
//! store.content().open(&digest).unwrap().read_to_string(&mut text).unwrap();
//! assert!(text.contains("amd64"));
//! assert!(root.path().join("blobs/sha256").join(digest.hex()).exists());
//! ```
#![deny(missing_docs)]

pub mod archive;
mod containers;
pub mod content;
mod error;
pub mod fsck;
mod gc;
pub mod image;
pub mod meta;
mod store;

pub use containers::{ContainerRecord, NewContainer};
pub use error::{Error, ErrorKind, Result};
pub use gc::Removal;
pub use meta::{ImageRecord, LayerRecord, SnapshotRecord};
pub use stencil_reference::{Algorithm, Digest, Reference};
pub use store::{REF_NAME_ANNOTATION, Store};
