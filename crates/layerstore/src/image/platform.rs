//! [`Platform`]: `os/architecture[/variant]`, normalised and matched like containerd does.
//!
//! Normalisation folds aliases (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` →
//! `arm/v7`) and fills the usual default variants (`arm64` → `v8`, `arm` → `v7`). Matching
//! accepts an older ARM variant on a newer CPU (`arm/v6` runs on `arm/v7`) but prefers the
//! exact one.
//!
//! ```
//! use stencil_layerstore::image::Platform;
//!
//! let wanted = Platform::parse("linux/aarch64").unwrap();
//! assert_eq!(wanted.to_string(), "linux/arm64/v8");
//! assert!(wanted.matches(&Platform::parse("linux/arm64").unwrap()));
//! assert!(!wanted.matches(&Platform::parse("linux/amd64").unwrap()));
//! assert!(Platform::parse("linux/arm/v7").unwrap().matches(&Platform::parse("linux/arm/v6").unwrap()));
//! ```

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::error::{Error, Result};

/// An operating system, CPU architecture and optional CPU variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// Go's GOARCH names: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, …
    pub architecture: String,
    /// `v8` for arm64, `v7`/`v6`/`v5` for arm, `v2`/`v3` for amd64, …
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` and normalises it.
    pub fn parse(text: &str) -> Result<Platform> {
        let invalid = || Error::InvalidPlatform {
            platform: text.to_owned(),
        };
        let mut parts = text.split('/');
        let os = parts
            .next()
            .filter(|part| !part.is_empty())
            .ok_or_else(invalid)?;
        let architecture = parts
            .next()
            .filter(|part| !part.is_empty())
            .ok_or_else(invalid)?;
        let variant = match parts.next() {
            Some("") => return Err(invalid()),
            other => other.map(str::to_owned),
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        }
        .normalized())
    }

    /// The platform of this machine (for example `linux/amd64`).
    pub fn host() -> Platform {
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: std::env::consts::ARCH.to_owned(),
            variant: None,
        }
        .normalized()
    }

    /// Folds aliases and fills default variants.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) =
            match (self.architecture.to_ascii_lowercase().as_str(), variant) {
                ("x86_64" | "x86-64" | "amd64", variant) => {
                    ("amd64".to_owned(), variant.filter(|v| v != "v1"))
                }
                ("i386" | "i486" | "i586" | "i686" | "386", _) => ("386".to_owned(), None),
                ("aarch64" | "arm64", None) => ("arm64".to_owned(), Some("v8".to_owned())),
                ("aarch64" | "arm64", Some(variant)) => (
                    "arm64".to_owned(),
                    Some(if variant == "8" {
                        "v8".to_owned()
                    } else {
                        variant
                    }),
                ),
                ("armhf", _) => ("arm".to_owned(), Some("v7".to_owned())),
                ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
                ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
                ("arm", Some(variant)) => (
                    "arm".to_owned(),
                    Some(match variant.as_str() {
                        "5" | "6" | "7" | "8" => format!("v{variant}"),
                        _ => variant,
                    }),
                ),
                (other, variant) => (other.to_owned(), variant),
            };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Whether an image for `candidate` runs on this platform. Both are normalised first.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// How well `candidate` fits: `Some(0)` exact, higher is worse, `None` unusable.
    fn rank(&self, candidate: &Platform) -> Option<u32> {
        let wanted = self.normalized();
        let candidate = candidate.normalized();
        if wanted.os != candidate.os || wanted.architecture != candidate.architecture {
            return None;
        }
        if wanted.variant == candidate.variant {
            return Some(0);
        }
        match (wanted.variant.as_deref(), candidate.variant.as_deref()) {
            // An ARM CPU runs binaries built for older ARM revisions.
            (Some(want), Some(have)) if wanted.architecture == "arm" => {
                let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
                match (level(want), level(have)) {
                    (Some(want), Some(have)) if have < want => Some(want - have),
                    _ => None,
                }
            }
            // No variant asked for: any variant of the architecture will do, less well.
            (None, Some(_)) => Some(10),
            // A manifest without a variant is the architecture's baseline.
            (Some(_), None) => Some(20),
            _ => None,
        }
    }

    /// The platform of an index entry, when it has one.
    pub fn of_descriptor(descriptor: &Descriptor) -> Option<Platform> {
        descriptor.platform().as_ref().map(|platform| {
            Platform {
                os: platform.os().to_string(),
                architecture: platform.architecture().to_string(),
                variant: platform.variant().clone(),
            }
            .normalized()
        })
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

/// The entry of `index` that best fits `wanted`: an exact match first, then the closest
/// compatible one; entries without a platform, and attestation manifests, never match.
pub fn select_manifest<'a>(index: &'a ImageIndex, wanted: &Platform) -> Option<&'a Descriptor> {
    index
        .manifests()
        .iter()
        .filter_map(|descriptor| {
            let platform = Platform::of_descriptor(descriptor)?;
            wanted.rank(&platform).map(|rank| (rank, descriptor))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, descriptor)| descriptor)
}
