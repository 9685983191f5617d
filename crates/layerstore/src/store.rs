//! [`Store`]: the content store, the metadata database and the OCI layout of one root.
//!
//! Opening a store creates the layout when missing and recovers from interrupted work:
//! ingest directories left without data or ref by a killed commit or abort are removed.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::content::{Ingester, LocalContent};
use crate::error::{Error, Result};

/// One stencil store root.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    content: LocalContent,
}

impl Store {
    /// Opens (creating when needed, mode 0700) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(Error::io(&root))?;
        let content = LocalContent::open(&root)?;
        for status in content.ingests()? {
            if status.is_leftover() {
                crate::content::remove_unheld_ingest(&status.dir)?;
            }
        }
        Ok(Store { root, content })
    }

    /// The store root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store: [`crate::content::Provider`], [`crate::content::Ingester`] and
    /// [`crate::content::Manager`].
    pub fn content(&self) -> &LocalContent {
        &self.content
    }
}
