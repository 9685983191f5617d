//! [`ImageConfig`]: the parts of an image config (OCI or Docker) that the store records.
//!
//! Only the fields the store needs are read (platform, creation time, diff IDs); unknown
//! fields are ignored so that Docker configs with their extra keys load.
//!
//! ```
//! use stencil_layerstore::image::ImageConfig;
//!
//! let config = ImageConfig::parse(br#"{"architecture":"arm64","os":"linux","variant":"v8",
//!   "rootfs":{"type":"layers","diff_ids":[]}}"#, None).unwrap();
//! assert_eq!(config.platform().to_string(), "linux/arm64/v8");
//! ```

use serde::Deserialize;
use stencil_reference::Digest;

use super::platform::Platform;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    rootfs: RawRootFs,
}

#[derive(Deserialize)]
struct RawRootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// What the store reads from an image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The platform the image is for.
    pub os: String,
    /// The CPU architecture.
    pub architecture: String,
    /// The CPU variant.
    pub variant: Option<String>,
    /// When the image was created (RFC 3339), when given.
    pub created: Option<String>,
    /// Diff IDs of the layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses a config blob; `digest` names it in errors.
    pub fn parse(bytes: &[u8], digest: Option<&Digest>) -> Result<ImageConfig> {
        let invalid = |reason: String| Error::InvalidDocument {
            what: "config",
            digest: digest.cloned(),
            reason,
        };
        let raw: RawConfig =
            serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        let diff_ids = raw
            .rootfs
            .diff_ids
            .iter()
            .map(|text| {
                Digest::parse(text).map_err(|error| invalid(format!("diff id {text:?}: {error}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImageConfig {
            os: raw.os,
            architecture: raw.architecture,
            variant: raw.variant.filter(|variant| !variant.is_empty()),
            created: raw.created,
            diff_ids,
        })
    }

    /// The platform, normalised.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
        .normalized()
    }
}
