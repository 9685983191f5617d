//! Media type names of OCI image-spec v1.1 and Docker image manifest v2 schema 2, and the
//! mapping between them.
//!
//! ```
//! use stencil_layerstore::image::media_type::{self, to_docker, to_oci};
//!
//! assert_eq!(to_oci(media_type::DOCKER_MANIFEST_LIST), media_type::OCI_INDEX);
//! assert_eq!(to_docker(media_type::OCI_LAYER_GZIP), Some(media_type::DOCKER_LAYER_GZIP));
//! assert_eq!(to_docker(media_type::OCI_LAYER_ZSTD), None);
//! ```

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable gzip layer (deprecated in v1.1).
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (written by some tools).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 signed manifest (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema 1 manifest (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Pairs of (Docker, OCI) names for the same thing.
const PAIRS: [(&str, &str); 6] = [
    (DOCKER_MANIFEST, OCI_MANIFEST),
    (DOCKER_MANIFEST_LIST, OCI_INDEX),
    (DOCKER_CONFIG, OCI_CONFIG),
    (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP),
    (DOCKER_LAYER, OCI_LAYER),
    (DOCKER_FOREIGN_LAYER_GZIP, OCI_LAYER_NONDISTRIBUTABLE_GZIP),
];

/// The OCI name for `media_type`; unknown and OCI names are returned unchanged.
pub fn to_oci(media_type: &str) -> &str {
    PAIRS
        .iter()
        .find(|(docker, _)| *docker == media_type)
        .map_or(media_type, |(_, oci)| oci)
}

/// The Docker schema 2 name for `media_type`, `None` when Docker has none (zstd layers,
/// for example). Docker names are returned unchanged.
pub fn to_docker(media_type: &str) -> Option<&'static str> {
    PAIRS
        .iter()
        .find(|(docker, oci)| *oci == media_type || *docker == media_type)
        .map(|(docker, _)| *docker)
}

/// Whether `media_type` names a single-platform image manifest (OCI or Docker).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` names an index or manifest list (OCI or Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a layer of a known kind.
pub fn is_layer(media_type: &str) -> bool {
    let oci = to_oci(media_type);
    oci.starts_with("application/vnd.oci.image.layer.")
}
