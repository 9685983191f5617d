//! Moving images in and out of the store without a registry: OCI image layout
//! directories, oci-archive (a tar of a layout) and docker-archive (`docker save` format).
//!
//! [`save`] writes a tar stream (or, for [`SaveFormat::OciLayout`], a directory). A
//! docker-archive holds `manifest.json` and `repositories` for `docker load`, and, like
//! Docker 25 and later, also `oci-layout` and `index.json`, with every file under
//! `blobs/sha256/`, so the same file is a valid oci-archive.
//!
//! [`load`] detects the format by content, not by name: a directory is an OCI layout; a
//! file (gzip-compressed or not) is a tar read in one streaming pass, where every blob is
//! verified into the content store as it passes; afterwards `manifest.json` makes it a
//! docker-archive, `oci-layout` an oci-archive.
//!
//! ```
//! use stencil_layerstore::archive::{LoadOptions, SaveFormat, load, save};
//! use stencil_layerstore::{Reference, Store};
//! # use stencil_layerstore::content::sha256_digest;
//! # let root = tempfile::tempdir().unwrap();
//! # let store = Store::open(root.path().join("a")).unwrap();
//! # let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! # let config_digest = store.put_blob(config).unwrap();
//! # let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#, config.len());
//! # let manifest_digest = store.put_blob(manifest.as_bytes()).unwrap();
//! # store.record_image(&manifest_digest, None).unwrap();
//! let name = Reference::parse("example/empty:1").unwrap();
//! # store.tag(&name, &manifest_digest).unwrap();
//! let archive = root.path().join("empty.tar");
//! let mut file = std::fs::File::create(&archive).unwrap();
//! save(&store, &[name.clone()], SaveFormat::DockerArchive, &mut file).unwrap();
//!
//! let other = Store::open(root.path().join("b")).unwrap();
//! let loaded = load(&other, &archive, &LoadOptions::default()).unwrap();
//! assert_eq!(loaded[0].image.manifest_digest, manifest_digest);
//! assert_eq!(other.resolve(&name).unwrap().manifest_digest, manifest_digest);
//! ```

mod load;
mod save;

pub use load::{LoadOptions, Loaded, load, load_from_reader};
pub use save::{SaveFormat, export_oci_layout, save};
