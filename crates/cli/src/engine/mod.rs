//! The `Engine`: one store root, composed from the layerstore, the snapshotter and the
//! registry client.
//!
//! Commands go through an `Engine` and never open the crates' pieces themselves, so the
//! rules that tie them together live in one place: a layer is unpacked once per chain ID,
//! an image is recorded only when every blob and snapshot it needs is complete, tags move
//! in one transaction.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use stencil::engine::{Engine, PullOptions};
//! use stencil_reference::Reference;
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let reference = Reference::parse("localhost:5000/busybox")?;
//! let report = engine.pull(&reference, &PullOptions::default(), &|event| eprintln!("{event:?}")).await?;
//! println!("{}", report.image.manifest_digest);
//! # Ok(()) }
//! ```

mod archive;
pub mod changes;
mod commit;
mod containers;
mod fsck;
mod images;
mod import;
mod login;
mod mount;
pub mod names;
mod pipeline;
mod pull;
mod push;
mod unpack;
mod usage;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use stencil_cow_fs::OverlaySnapshotter;
use stencil_layerstore::Store;
use stencil_layerstore::content::LocalContent;
use stencil_registry::{Client, DockerConfig, RegistriesConfig};

pub use commit::{CommitOptions, Committed};
pub use containers::{
    Container, ContainerConfig, ContainerState, CreateOptions, DEFAULT_PATH, Healthcheck,
    RestartPolicy, Status, VolumeConfig, now, parse_time, process_start_time,
};
pub(crate) use containers::{RUNTIME_MOUNTPOINTS, is_mountpoint, write_json};
pub use fsck::Checked;
pub use images::{ImageRow, Removed, image_rows};
pub use import::ImportOptions;
pub(crate) use import::is_tar_header;
pub use login::{login_server, server_key};
pub use pull::{PullEvent, PullOptions, PullReport, PullStatus};
pub use push::{PushProgress, PushReport};
pub use usage::{ContainerUsage, DiskUsage, ImageUsage, PruneFilter, Pruned, PrunedContainers};
pub use volumes::{ANONYMOUS_LABEL, PrunedVolumes, Volume, VolumesLock, check_volume_name};

/// The snapshotter's directory under the store root.
const SNAPSHOTS_DIR: &str = "snapshots";
/// Registry settings (mirrors, insecure hosts, concurrency) under the store root.
const REGISTRIES_FILE: &str = "registries.toml";

/// A stencil store root and everything that works on it.
pub struct Engine {
    root: PathBuf,
    store: Store,
    content: Arc<LocalContent>,
    snapshots: OverlaySnapshotter,
}

impl Engine {
    /// Opens (creating when needed, mode 0700) the store at `root`.
    pub fn open(root: &Path) -> Result<Engine> {
        create_private_dir(root)?;
        // Mount points are compared with /proc/self/mountinfo, which holds absolute paths
        // without symlinks: a relative or symlinked --root would make mounts look absent
        // and leave them behind.
        let canonical = root
            .canonicalize()
            .with_context(|| format!("cannot resolve the stencil root {}", root.display()))?;
        let root = canonical.as_path();
        let store = Store::open(root)
            .with_context(|| format!("cannot open the stencil store at {}", root.display()))?;
        let content = Arc::new(
            LocalContent::open(root)
                .with_context(|| format!("cannot open the content store at {}", root.display()))?,
        );
        let snapshots = OverlaySnapshotter::new(&root.join(SNAPSHOTS_DIR))
            .with_context(|| format!("cannot open the snapshots under {}", root.display()))?;
        Ok(Engine {
            root: root.to_path_buf(),
            store,
            content,
            snapshots,
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata and content store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The snapshotter holding unpacked layers.
    pub fn snapshots(&self) -> &OverlaySnapshotter {
        &self.snapshots
    }

    /// A registry client with the user's docker credentials and the store's registry
    /// settings (`ROOT/registries.toml`, when present).
    pub fn registry_client(&self) -> Result<Client> {
        Ok(Client::builder()
            .config(self.registries_config()?)
            .credentials(DockerConfig::new(docker_config_path()))
            .user_agent(concat!("stencil/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }
}

impl Engine {
    /// The store's registry settings (`ROOT/registries.toml`), or the defaults without one.
    pub(crate) fn registries_config(&self) -> Result<RegistriesConfig> {
        let settings = self.root.join(REGISTRIES_FILE);
        if !settings.exists() {
            return Ok(RegistriesConfig::default());
        }
        RegistriesConfig::load(&settings)
            .with_context(|| format!("cannot read {}", settings.display()))
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as docker reads it.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".docker").join("config.json")
}

fn create_private_dir(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if root.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create the store root {}", root.display()))
}
