//! Parsing manifests and indexes safely: size limit, media type agreement, then `oci-spec`.
//!
//! ```
//! use stencil_layerstore::ErrorKind;
//! use stencil_layerstore::image::parse_document;
//!
//! // Both `manifests` and `layers`: which one is it? Refused (CVE-2021-41190).
//! let ambiguous = br#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{}}"#;
//! assert_eq!(parse_document(ambiguous, None, None).unwrap_err().kind(), ErrorKind::AmbiguousDocument);
//! ```

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use stencil_reference::Digest;

use super::media_type::{self, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST};
use crate::error::{Error, Result};

/// The largest manifest or index accepted, 4 MiB (the limit registries apply).
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A single-platform image manifest (OCI or Docker schema 2).
    Manifest(Box<ImageManifest>),
    /// An index or manifest list.
    Index(Box<ImageIndex>),
}

/// A [`Document`] with its effective media type.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    /// The media type: the document's own `mediaType`, else the declared one, else the OCI
    /// type its content implies.
    pub media_type: String,
    /// The document.
    pub document: Document,
}

/// Parses `bytes` as a manifest or index.
///
/// `declared` is the media type announced from outside (an HTTP `Content-Type`, a
/// descriptor's `mediaType`); `digest` names the document in errors. Refused: documents
/// over [`MAX_DOCUMENT_SIZE`], documents whose content (`manifests` versus
/// `config`/`layers`) disagrees with their own or the declared media type, documents
/// holding both, and Docker schema 1.
pub fn parse_document(
    bytes: &[u8],
    declared: Option<&str>,
    digest: Option<&Digest>,
) -> Result<ParsedDocument> {
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::DocumentTooLarge {
            digest: digest.cloned(),
            size: bytes.len() as u64,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let invalid = |reason: String| Error::InvalidDocument {
        what: "manifest",
        digest: digest.cloned(),
        reason,
    };
    let ambiguous = |reason: String| Error::AmbiguousDocument {
        digest: digest.cloned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".to_owned()))?;
    let has_manifests = object.contains_key("manifests");
    let has_image_fields = object.contains_key("layers") || object.contains_key("config");
    let embedded = match object.get("mediaType") {
        None => None,
        Some(serde_json::Value::String(text)) => Some(text.as_str()),
        Some(_) => return Err(invalid("mediaType is not a string".to_owned())),
    };
    for media_type in [embedded, declared].into_iter().flatten() {
        if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_owned(),
            });
        }
    }
    if has_manifests && has_image_fields {
        return Err(ambiguous(
            "it has both manifests and layers or config".to_owned(),
        ));
    }
    if let (Some(embedded), Some(declared)) = (embedded, declared)
        && embedded != declared
    {
        return Err(ambiguous(format!(
            "declared as {declared:?} but its mediaType is {embedded:?}"
        )));
    }
    let is_index = match (has_manifests, has_image_fields) {
        (true, _) => true,
        (false, true) => false,
        (false, false) => {
            return Err(invalid(
                "neither manifests nor config and layers".to_owned(),
            ));
        }
    };
    let media_type = embedded
        .or(declared)
        .unwrap_or(if is_index { OCI_INDEX } else { OCI_MANIFEST })
        .to_owned();
    let consistent = if is_index {
        media_type::is_index(&media_type)
    } else {
        media_type::is_manifest(&media_type)
    };
    if !consistent {
        return Err(ambiguous(format!(
            "media type {media_type:?} but the content is {}",
            if is_index {
                "an index"
            } else {
                "an image manifest"
            }
        )));
    }
    let document = if is_index {
        Document::Index(Box::new(
            serde_json::from_value(value).map_err(|error| invalid(error.to_string()))?,
        ))
    } else {
        Document::Manifest(
            serde_json::from_value(value).map_err(|error| invalid(error.to_string()))?,
        )
    };
    Ok(ParsedDocument {
        media_type,
        document,
    })
}

/// The digest of a descriptor, parsed into a [`Digest`].
pub fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    Digest::parse(&text).map_err(|source| Error::InvalidReference {
        input: text,
        source,
    })
}

/// `(digest, media type, size)` of each layer of `manifest`, bottom first.
pub fn manifest_layers(manifest: &ImageManifest) -> Result<Vec<(Digest, String, u64)>> {
    manifest
        .layers()
        .iter()
        .map(|layer| {
            Ok((
                descriptor_digest(layer)?,
                layer.media_type().to_string(),
                layer.size(),
            ))
        })
        .collect()
}
