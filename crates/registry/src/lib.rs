//! The OCI Distribution protocol for stencil: a registry client that resolves, pulls and
//! pushes images, authenticates, lists tags and repositories, and searches.
//!
//! A [`Client`] talks to any registry (Docker Hub, GHCR, Harbor, the CNCF distribution
//! registry). Pulls stream blobs straight into the layerstore's content store through its
//! ingester, verified and resumable; pushes read from the same store. Credentials come
//! from the docker `config.json` ([`DockerConfig`]) so existing logins work; mirrors,
//! insecure registries and concurrency come from a TOML [`RegistriesConfig`]. The HTTP
//! transport, the clock and the credential source are passed in through
//! [`ClientBuilder`].
//!
//! It deliberately knows nothing about mounting, unpacking or processes, and keeps no
//! image database: the caller records what a pull returns. The registry *server* behind
//! `stencil registry serve` is the separate [`server`] module. See ARCHITECTURE.md.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stencil_registry::Error> {
//! use std::sync::Arc;
//! use stencil_layerstore::content::LocalContent;
//! use stencil_reference::Reference;
//! use stencil_registry::{Client, DockerConfig, ProgressEvent, PullOptions};
//!
//! let client = Client::builder()
//!     .credentials(DockerConfig::new("/root/.docker/config.json"))
//!     .build()?;
//! let store = Arc::new(LocalContent::open("/var/lib/stencil").unwrap());
//! let reference = Reference::parse("localhost:5000/busybox:latest").unwrap();
//! let progress = Arc::new(|event: ProgressEvent| eprintln!("{event:?}"));
//! let pulled = client.pull(&reference, &store, &PullOptions::default(), progress).await?;
//! println!("pulled {} ({} layers)", pulled.manifest.digest, pulled.image.layers.len());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod client;
mod config;
mod error;
pub mod server;

pub use client::auth::{Challenge, IDENTITY_TOKEN_USER, parse_challenge};
pub use client::credentials::{
    Anonymous, CredentialSource, Credentials, DOCKER_HUB_AUTH_KEY, DockerConfig,
};
pub use client::discovery::SearchResult;
pub use client::manifest::{
    DOCKER_FOREIGN_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, ImageIndex,
    ImageManifest, MANIFEST_SIZE_LIMIT, Manifest, OCI_INDEX, OCI_MANIFEST,
    OCI_NONDISTRIBUTABLE_LAYER, Platform, is_image_manifest, is_index,
};
pub use client::progress::{NoProgress, Progress, ProgressEvent};
pub use client::pull::{BlobOutcome, PullOptions, Pulled, Resolved};
pub use client::push::{PushOptions, PushOutcome};
pub use client::store::{ContentStore, pull_ingest_ref};
pub use client::tap::{BlobStream, BlobTap};
pub use client::{Client, ClientBuilder, Clock, RetryPolicy, SleepFuture, SystemClock};
pub use config::{DEFAULT_CONCURRENCY, RegistriesConfig, RegistrySettings, Timeouts, is_loopback};
pub use error::{Error, ErrorKind, Result};
