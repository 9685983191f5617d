//! The minimal image model the client needs: media types, descriptors, manifests, indexes
//! and platform selection.
//!
//! This is deliberately small and kept in one module: the image model belongs to
//! `stencil-layerstore`, and this module leans on it for media type names, document
//! checks ([`stencil_layerstore::image::parse_document`]) and platform rules, keeping only
//! the typed descriptors (digests parsed once) that the client's API hands out. Raw manifest bytes are always kept beside the parsed value, because
//! a digest is of the bytes, never of a re-serialisation.
//!
//! ```
//! use stencil_registry::{Manifest, Platform};
//!
//! let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
//!   "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,
//!   "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001",
//!   "platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
//! let Manifest::Index(index) = Manifest::parse(index, None, "test").unwrap() else { panic!() };
//! let linux_arm64: Platform = "linux/arm64".parse().unwrap();
//! assert!(index.select(&linux_arm64).is_some());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stencil_reference::Digest;

use crate::error::{Error, Result};

use stencil_layerstore::image::media_type as layerstore_media_type;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = layerstore_media_type::OCI_MANIFEST;
/// OCI image index.
pub const OCI_INDEX: &str = layerstore_media_type::OCI_INDEX;
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = layerstore_media_type::DOCKER_MANIFEST;
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = layerstore_media_type::DOCKER_MANIFEST_LIST;
/// Docker foreign (non-distributable) layer.
pub const DOCKER_FOREIGN_LAYER: &str = layerstore_media_type::DOCKER_FOREIGN_LAYER_GZIP;
/// OCI non-distributable layer (deprecated by OCI, still seen).
pub const OCI_NONDISTRIBUTABLE_LAYER: &str = layerstore_media_type::OCI_LAYER_NONDISTRIBUTABLE_GZIP;

/// Manifests larger than this (4 MiB, the layerstore's document limit) are refused unread.
pub const MANIFEST_SIZE_LIMIT: u64 = stencil_layerstore::image::MAX_DOCUMENT_SIZE;

/// The `Accept` header for manifest requests: every manifest and index type stencil reads.
pub(crate) fn manifest_accept() -> String {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

/// Whether `media_type` is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a single-image manifest (OCI or Docker schema 2).
pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor: what a manifest or index says about one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The content's media type.
    pub media_type: String,
    /// The content's digest.
    #[serde(
        serialize_with = "serialize_digest",
        deserialize_with = "deserialize_digest"
    )]
    pub digest: Digest,
    /// The content's size in bytes.
    pub size: u64,
    /// Other places the content may be fetched from (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// For index entries: the platform the manifest runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor without URLs or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            platform: None,
        }
    }

    /// Whether this is a foreign (non-distributable) layer.
    pub fn is_foreign(&self) -> bool {
        self.media_type == DOCKER_FOREIGN_LAYER || self.media_type == OCI_NONDISTRIBUTABLE_LAYER
    }
}

fn serialize_digest<S: Serializer>(digest: &Digest, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(digest.as_str())
}

fn deserialize_digest<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
    let text = String::deserialize(deserializer)?;
    Digest::parse(&text).map_err(serde::de::Error::custom)
}

/// An operating system and CPU architecture, as in image indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, …
    pub architecture: String,
    /// `linux`, `windows`, …
    pub os: String,
    /// `v5`, `v6`, `v7`, `v8`, … (mostly for `arm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The OS version (Windows images).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go/OCI spelling (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Platform {
        Platform::from_layerstore(stencil_layerstore::image::Platform::host())
    }

    /// Whether an index entry for `candidate` can run where `self` is wanted, by the
    /// layerstore's rules: both are normalised (`aarch64` is `arm64/v8`), OS and
    /// architecture must be equal, an ARM CPU runs older ARM revisions, and a missing
    /// variant on either side is the architecture's baseline.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.to_layerstore().matches(&candidate.to_layerstore())
    }

    /// Whether `candidate` is exactly this platform once both are normalised.
    fn is_exactly(&self, candidate: &Platform) -> bool {
        self.to_layerstore().normalized() == candidate.to_layerstore().normalized()
    }

    fn to_layerstore(&self) -> stencil_layerstore::image::Platform {
        stencil_layerstore::image::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    fn from_layerstore(platform: stencil_layerstore::image::Platform) -> Platform {
        Platform {
            architecture: platform.architecture,
            os: platform.os,
            variant: platform.variant,
            os_version: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]`, as `--platform` takes it, and normalises it.
    fn from_str(text: &str) -> Result<Platform> {
        stencil_layerstore::image::Platform::parse(text)
            .map(Platform::from_layerstore)
            .map_err(|_| Error::InvalidName {
                name: text.to_owned(),
                reason: "a platform is os/arch or os/arch/variant, for example linux/arm64".into(),
            })
    }
}

/// A single-image manifest (OCI image manifest or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The manifest's media type (from the body, or the `Content-Type` when absent).
    #[serde(default)]
    pub media_type: String,
    /// The image configuration blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// The config then the layers: every blob the manifest refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// An index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// The index's media type.
    #[serde(default)]
    pub media_type: String,
    /// One descriptor per platform-specific manifest (or nested index).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// The image manifest for `wanted`: an exact platform match if there is one, else the
    /// first compatible one (see [`Platform::matches`]).
    pub fn select(&self, wanted: &Platform) -> Option<&Descriptor> {
        let images = || {
            self.manifests
                .iter()
                .filter(|d| is_image_manifest(&d.media_type))
                .filter_map(|d| d.platform.as_ref().map(|p| (d, p)))
        };
        images()
            .find(|(_, p)| wanted.is_exactly(p))
            .or_else(|| images().find(|(_, p)| wanted.matches(p)))
            .map(|(d, _)| d)
    }

    /// The platforms offered, for error messages.
    pub fn platforms(&self) -> String {
        let names: Vec<String> = self
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A single image.
    Image(ImageManifest),
    /// An index of images.
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
}

impl Manifest {
    /// Parses manifest bytes. The media type is the body's `mediaType`, else
    /// `content_type` (the HTTP header), else inferred from the fields present. `origin`
    /// names where the bytes came from, for errors.
    pub fn parse(bytes: &[u8], content_type: Option<&str>, origin: &str) -> Result<Manifest> {
        let invalid = |reason: String| Error::InvalidManifest {
            url: origin.to_owned(),
            reason,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if probe.schema_version != Some(2) {
            return Err(Error::UnsupportedMediaType {
                url: origin.to_owned(),
                media_type: format!(
                    "schemaVersion {}",
                    probe
                        .schema_version
                        .map_or("missing".into(), |v| v.to_string())
                ),
            });
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| is_index(c) || is_image_manifest(c));
        if let Some(media_type) = probe
            .media_type
            .filter(|m| !is_index(m) && !is_image_manifest(m))
        {
            return Err(Error::UnsupportedMediaType {
                url: origin.to_owned(),
                media_type,
            });
        }
        // The layerstore's model makes the checks that matter for safety: content and
        // media type agree, no document is both an index and a manifest
        // (CVE-2021-41190), the size limit. Its answer decides the media type.
        let parsed =
            stencil_layerstore::image::parse_document(bytes, header, None).map_err(|err| {
                use stencil_layerstore::ErrorKind as Kind;
                match err.kind() {
                    Kind::UnsupportedMediaType => Error::UnsupportedMediaType {
                        url: origin.to_owned(),
                        media_type: err.to_string(),
                    },
                    Kind::DocumentTooLarge => Error::ManifestTooLarge {
                        url: origin.to_owned(),
                        limit: MANIFEST_SIZE_LIMIT,
                    },
                    _ => invalid(err.to_string()),
                }
            })?;
        let media_type = parsed.media_type;
        if is_index(&media_type) {
            let mut index: ImageIndex =
                serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
            index.media_type = media_type;
            Ok(Manifest::Index(index))
        } else if is_image_manifest(&media_type) {
            let mut manifest: ImageManifest =
                serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
            manifest.media_type = media_type;
            Ok(Manifest::Image(manifest))
        } else {
            Err(Error::UnsupportedMediaType {
                url: origin.to_owned(),
                media_type,
            })
        }
    }

    /// The manifest's media type.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => &m.media_type,
            Manifest::Index(i) => &i.media_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        let check = |wanted: &str, offered: &str, want: bool| {
            assert_eq!(
                p(wanted).matches(&p(offered)),
                want,
                "{wanted} vs {offered}"
            );
        };
        for (wanted, offered, want) in [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/arm64", false),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/arm", "linux/arm/v7", true),
            ("linux/amd64", "windows/amd64", false),
        ] {
            check(wanted, offered, want);
        }
    }

    #[test]
    fn bad_platforms_and_manifests() {
        for text in ["linux", "linux/", "/amd64", "a/b/c/d"] {
            let err = text.parse::<Platform>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidName, "{text}");
        }
        let check = |bytes: &[u8], kind: crate::ErrorKind| {
            let err = Manifest::parse(bytes, None, "test").unwrap_err();
            assert_eq!(err.kind(), kind, "{}", String::from_utf8_lossy(bytes));
        };
        check(b"not json", crate::ErrorKind::InvalidManifest);
        // Both an index and a manifest (CVE-2021-41190): refused by the layerstore's checks.
        check(
            br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#,
            crate::ErrorKind::InvalidManifest,
        );
        check(
            br#"{"schemaVersion":1}"#,
            crate::ErrorKind::UnsupportedMediaType,
        );
        check(
            br#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
            crate::ErrorKind::UnsupportedMediaType,
        );
        check(
            br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:x","size":1}}"#,
            crate::ErrorKind::InvalidManifest,
        );
    }
}
