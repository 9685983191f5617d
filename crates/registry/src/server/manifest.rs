//! Checks of a manifest or index pushed to the server, before anything is stored.
//!
//! The server stores manifests byte for byte and serves them back with the media type they
//! were pushed with; it reads only what the protocol needs: the media type (declared in the
//! document, in `Content-Type`, or both, which must agree), the descriptors the repository
//! must already hold, the `subject` for the referrers API and the artifact type. A document
//! holding both `manifests` and `layers`/`config`, or whose content contradicts its media
//! type, is refused (CVE-2021-41190). It does not validate image configs or layer contents.
//!
//! ```text
//! PUT /v2/app/manifests/v1   Content-Type: application/vnd.oci.image.index.v1+json
//! {"schemaVersion":2,"layers":[…]}   ->  400 MANIFEST_INVALID (index type, manifest content)
//! ```

use serde_json::{Map, Value};
use stencil_reference::Digest;

use super::error::{ApiError, Code};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether the document is one image or a list of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentKind {
    Manifest,
    Index,
}

fn kind_of(media_type: &str) -> Option<DocumentKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(DocumentKind::Manifest),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(DocumentKind::Index),
        _ => None,
    }
}

/// What the server needs to know about an accepted document.
#[derive(Debug, Clone)]
pub(crate) struct CheckedManifest {
    pub(crate) media_type: String,
    /// Blobs (config, layers) the repository must hold.
    pub(crate) blobs: Vec<Digest>,
    /// Manifests (of an index) the repository must hold.
    pub(crate) children: Vec<Digest>,
    pub(crate) subject: Option<Digest>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: Option<Map<String, Value>>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::ManifestInvalid, message)
}

/// The media type part of a `Content-Type` value, without parameters.
pub(crate) fn bare_media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or(value).trim()
}

/// A descriptor's digest, refusing a malformed descriptor.
fn descriptor_digest(value: &Value, what: &str) -> Result<Digest, ApiError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} is not a descriptor object")))?;
    if !object.get("mediaType").is_some_and(Value::is_string) {
        return Err(invalid(format!("{what} has no mediaType")));
    }
    if !object.get("size").is_some_and(Value::is_u64) {
        return Err(invalid(format!("{what} has no valid size")));
    }
    let text = object
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no digest")))?;
    Digest::parse(text).map_err(|error| invalid(format!("{what} has an invalid digest: {error}")))
}

/// Checks `bytes` pushed with the `Content-Type` `content_type`.
pub(crate) fn check_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<CheckedManifest, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| invalid(format!("manifest is not valid JSON: {error}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    match object.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        Some(1) => {
            return Err(invalid(
                "docker schema 1 manifests are not supported; push schema 2 or OCI",
            ));
        }
        _ => return Err(invalid("manifest has no schemaVersion 2")),
    }
    let declared = match object.get("mediaType") {
        None => None,
        Some(Value::String(media_type)) => Some(media_type.as_str()),
        Some(_) => return Err(invalid("manifest mediaType is not a string")),
    };
    let header = content_type
        .map(bare_media_type)
        .filter(|media_type| kind_of(media_type).is_some() || declared.is_none());
    let has_manifests = object.contains_key("manifests");
    let has_image_fields = object.contains_key("layers") || object.contains_key("config");
    if has_manifests && has_image_fields {
        return Err(invalid(
            "document holds both manifests and layers/config; it is neither a manifest nor an index",
        ));
    }
    if let (Some(declared), Some(header)) = (declared, header)
        && declared != header
    {
        return Err(invalid(format!(
            "manifest mediaType {declared:?} does not match Content-Type {header:?}"
        )));
    }
    let media_type = match (declared, header) {
        (Some(media_type), _) | (None, Some(media_type)) => media_type.to_owned(),
        (None, None) if has_manifests => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    let kind = kind_of(&media_type).ok_or_else(|| {
        invalid(format!(
            "unsupported manifest media type {media_type:?}; push an OCI or docker schema 2 manifest or index"
        ))
    })?;

    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut artifact_type = match object.get("artifactType") {
        None => None,
        Some(Value::String(artifact_type)) => Some(artifact_type.clone()),
        Some(_) => return Err(invalid("artifactType is not a string")),
    };
    match kind {
        DocumentKind::Manifest => {
            if has_manifests {
                return Err(invalid(format!(
                    "media type {media_type} is an image manifest but the document lists manifests"
                )));
            }
            let config = object
                .get("config")
                .ok_or_else(|| invalid("image manifest has no config"))?;
            blobs.push(descriptor_digest(config, "config")?);
            if artifact_type.is_none() {
                artifact_type = config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let layers = object
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("image manifest has no layers array"))?;
            for (position, layer) in layers.iter().enumerate() {
                let digest = descriptor_digest(layer, &format!("layer {position}"))?;
                // Foreign layers live elsewhere (their `urls`); the registry need not hold them.
                let foreign = layer
                    .get("urls")
                    .and_then(Value::as_array)
                    .is_some_and(|urls| !urls.is_empty());
                if !foreign {
                    blobs.push(digest);
                }
            }
        }
        DocumentKind::Index => {
            if has_image_fields {
                return Err(invalid(format!(
                    "media type {media_type} is an index but the document has layers or a config"
                )));
            }
            let manifests = object
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("index has no manifests array"))?;
            for (position, manifest) in manifests.iter().enumerate() {
                children.push(descriptor_digest(
                    manifest,
                    &format!("manifest {position}"),
                )?);
            }
        }
    }
    let subject = object
        .get("subject")
        .map(|subject| descriptor_digest(subject, "subject"))
        .transpose()?;
    let annotations = match object.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err(invalid("annotations is not an object")),
    };
    Ok(CheckedManifest {
        media_type,
        blobs,
        children,
        subject,
        artifact_type,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest(media_type: Option<&str>) -> String {
        let declared = media_type.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
        format!(
            r#"{{"schemaVersion":2,{declared}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{DIGEST}","size":0}},"layers":[]}}"#
        )
    }

    fn index(media_type: Option<&str>) -> String {
        let declared = media_type.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
        format!(
            r#"{{"schemaVersion":2,{declared}"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{DIGEST}","size":0}}]}}"#
        )
    }

    /// One case: document, Content-Type, and the media type accepted (or `None`: refused).
    fn check(document: &str, content_type: Option<&str>, expected: Option<&str>) {
        let result = check_manifest(document.as_bytes(), content_type);
        match (result, expected) {
            (Ok(checked), Some(expected)) => assert_eq!(checked.media_type, expected, "{document}"),
            (Err(error), None) => assert_eq!(error.code, Code::ManifestInvalid, "{document}"),
            (result, expected) => {
                panic!("{document} with {content_type:?}: got {result:?}, expected {expected:?}")
            }
        }
    }

    #[test]
    fn media_types_are_negotiated_and_mismatches_refused() {
        let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
            (
                manifest(Some(OCI_MANIFEST)),
                Some(OCI_MANIFEST),
                Some(OCI_MANIFEST),
            ),
            (manifest(None), Some(OCI_MANIFEST), Some(OCI_MANIFEST)),
            (manifest(None), None, Some(OCI_MANIFEST)),
            (
                manifest(Some(DOCKER_MANIFEST)),
                Some(DOCKER_MANIFEST),
                Some(DOCKER_MANIFEST),
            ),
            (manifest(Some(DOCKER_MANIFEST)), Some(OCI_MANIFEST), None),
            (manifest(None), Some(OCI_INDEX), None),
            (manifest(Some(OCI_INDEX)), None, None),
            (index(Some(OCI_INDEX)), Some(OCI_INDEX), Some(OCI_INDEX)),
            (index(None), None, Some(OCI_INDEX)),
            (
                index(Some(DOCKER_MANIFEST_LIST)),
                Some(DOCKER_MANIFEST_LIST),
                Some(DOCKER_MANIFEST_LIST),
            ),
            (index(None), Some(OCI_MANIFEST), None),
            (index(Some(OCI_MANIFEST)), None, None),
            (
                manifest(None).replace("\"layers\"", "\"manifests\":[],\"layers\""),
                None,
                None,
            ),
            (
                manifest(None).replace("schemaVersion\":2", "schemaVersion\":1"),
                None,
                None,
            ),
            (manifest(None), Some("application/vnd.example+json"), None),
            ("not json".to_owned(), Some(OCI_MANIFEST), None),
            (manifest(None).replace(DIGEST, "sha256:abc"), None, None),
        ];
        for (document, content_type, expected) in cases {
            check(&document, content_type, expected);
        }
    }

    #[test]
    fn subject_and_artifact_type_are_read() {
        let document = manifest(Some(OCI_MANIFEST)).replace(
            r#""layers":[]"#,
            &format!(r#""layers":[],"artifactType":"application/x.sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{DIGEST}","size":2}}"#),
        );
        let checked = check_manifest(document.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(checked.subject.unwrap().as_str(), DIGEST);
        assert_eq!(checked.artifact_type.as_deref(), Some("application/x.sbom"));
        assert_eq!(checked.blobs.len(), 1);
    }
}
