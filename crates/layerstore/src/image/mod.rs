//! The image model: media types, manifests and indexes, configs, platforms, chain IDs.
//!
//! Documents are parsed with `oci-spec` after checks that `oci-spec` does not make: a size
//! limit ([`MAX_DOCUMENT_SIZE`]) and agreement between the declared media type and the
//! content ([`parse_document`] refuses a document holding both `manifests` and
//! `layers`/`config`, CVE-2021-41190). Docker schema 2 manifests and manifest lists are
//! read as their OCI equivalents; [`media_type`] maps the names both ways.
//!
//! This module reads bytes it is given; it does not fetch or store anything.
//!
//! ```
//! use stencil_layerstore::image::{Document, Platform, chain_ids, parse_document};
//! use stencil_layerstore::content::sha256_digest;
//!
//! let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
//!   "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!     "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
//!     "size":2,"platform":{"os":"linux","architecture":"arm64"}}]}"#;
//! let parsed = parse_document(index, None, None).unwrap();
//! let Document::Index(index) = &parsed.document else { panic!("not an index") };
//! let wanted = Platform::parse("linux/arm64/v8").unwrap();
//! assert!(stencil_layerstore::image::select_manifest(index, &wanted).is_some());
//!
//! let diff_ids = [sha256_digest(b"a"), sha256_digest(b"b")];
//! assert_eq!(chain_ids(&diff_ids)[0], diff_ids[0]);
//! ```

mod chain;
mod config;
mod manifest;
pub mod media_type;
mod platform;

pub use chain::{chain_id, chain_ids};
pub use config::ImageConfig;
pub use manifest::{
    Document, MAX_DOCUMENT_SIZE, ParsedDocument, descriptor_digest, manifest_layers, parse_document,
};
pub use platform::{Platform, select_manifest};
