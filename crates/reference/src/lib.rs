//! Container image references, tags and digests: parsed once, normalised, safe to use.
//!
//! This crate reads names the way `docker pull` does, following the grammar of
//! docker/distribution's reference package:
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path          (at most 255 characters once normalised)
//! domain    := host [ ":" port ]            host: dot-separated labels, or "[" IPv6 "]"
//! path      := component ( "/" component )*
//! component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest    := algorithm ":" hex            sha256: 64, sha512: 128 lowercase hex
//! ```
//!
//! The first component is a domain only when it contains `.` or `:`, is `localhost`, or
//! holds an uppercase letter (as in Docker); otherwise the name is on Docker Hub.
//!
//! It is pure: no I/O, no async, no hashing, no knowledge of registries beyond Docker Hub's
//! name. Other stencil crates take the typed values ([`Reference`], [`Tag`], [`Digest`])
//! instead of strings.
//!
//! # Normalisation
//!
//! ```
//! use stencil_reference::{Namespace, Reference};
//!
//! let r = Reference::parse("ubuntu").unwrap();
//! assert_eq!(r.domain(), "docker.io");
//! assert_eq!(r.path(), "library/ubuntu");
//! assert_eq!(r.tag().map(|t| t.as_str()), Some("latest"));
//! assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
//! assert_eq!(r.familiar(), "ubuntu:latest");
//! assert_eq!(r.namespace(), Namespace::Official);
//! assert_eq!(r.registry_endpoint(), "registry-1.docker.io");
//!
//! let r: Reference = "jpetazzo/clock".parse().unwrap();
//! assert_eq!(r.canonical(), "docker.io/jpetazzo/clock:latest");
//! assert_eq!(r.familiar_name(), "jpetazzo/clock");
//! assert_eq!(r.namespace(), Namespace::User);
//!
//! let r = Reference::parse("localhost:5000/wordpress").unwrap();
//! assert_eq!(r.canonical(), "localhost:5000/wordpress:latest");
//! assert_eq!(r.namespace().as_str(), "self-hosted");
//! assert_eq!(r.registry_endpoint(), "localhost:5000");
//!
//! // The legacy Docker Hub domain is folded into the current one.
//! let r = Reference::parse("index.docker.io/nginx:1.27").unwrap();
//! assert_eq!(r.canonical(), "docker.io/library/nginx:1.27");
//! ```
//!
//! # Digests
//!
//! A digest pins exact content. Giving one suppresses the default tag.
//!
//! ```
//! use stencil_reference::{Algorithm, Digest, Reference};
//!
//! let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
//! let r = Reference::parse(&format!("registry.example.com:5000/team/app@sha256:{hex}")).unwrap();
//! assert!(r.tag().is_none());
//! let digest = r.digest().unwrap();
//! assert_eq!(digest.algorithm(), Algorithm::Sha256);
//! assert!(digest.algorithm().is_verifiable());
//! assert_eq!(digest.hex(), hex);
//!
//! // Tags and digests can be swapped on an existing reference.
//! let pinned = Reference::parse("alpine:3.20").unwrap().with_digest(digest.clone());
//! assert_eq!(pinned.familiar(), format!("alpine:3.20@sha256:{hex}"));
//!
//! // A computed hash becomes a digest without re-validation.
//! assert_eq!(Digest::from_sha256_bytes(&[0; 32]).hex(), "0".repeat(64));
//! ```
//!
//! # Errors
//!
//! Each failure is a specific [`Error`] variant holding the input; [`Error::kind`] gives a
//! `Copy` [`ErrorKind`] to match on.
//!
//! ```
//! use stencil_reference::{ErrorKind, Reference};
//!
//! let kind = |s: &str| Reference::parse(s).unwrap_err().kind();
//! assert_eq!(kind(""), ErrorKind::EmptyReference);
//! assert_eq!(kind("Ubuntu"), ErrorKind::UppercaseRepository);
//! assert_eq!(kind("ubuntu:-x"), ErrorKind::TagInvalid);
//! assert_eq!(kind("ubuntu@sha256:abc"), ErrorKind::DigestInvalidLength);
//! assert_eq!(kind("my--app__x/a..b"), ErrorKind::InvalidFormat);
//!
//! let err = Reference::parse("ubuntu@md5:d41d8cd98f00b204e9800998ecf8427e").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid reference \"ubuntu@md5:d41d8cd98f00b204e9800998ecf8427e\": digest \
//!      \"md5:d41d8cd98f00b204e9800998ecf8427e\": unsupported digest algorithm \"md5\"; \
//!      use sha256 or sha512"
//! );
//! ```
//!
//! # Features
//!
//! - `serde` (default): [`Reference`], [`Digest`] and [`Tag`] serialize as their canonical
//!   strings and are validated again when deserialized.
#![deny(missing_docs)]

mod digest;
mod error;
mod reference;
#[cfg(feature = "serde")]
mod serde_string;
mod tag;

pub use digest::{Algorithm, Digest};
pub use error::{Error, ErrorKind};
pub use reference::{DEFAULT_DOMAIN, NAME_MAX_LEN, Namespace, Reference};
pub use tag::{DEFAULT_TAG, TAG_MAX_LEN, Tag};
