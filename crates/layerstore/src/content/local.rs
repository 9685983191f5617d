//! [`LocalContent`]: the content store on a local directory.
//!
//! Layout under the store root:
//!
//! ```text
//! blobs/ALGORITHM/HEX   committed blobs, mode 0444, never modified in place
//! ingest/ID/            one directory per ingest ref: `ref`, `data`, `lock`
//! ```
//!
//! A blob appears only complete: it is written and fsynced in its ingest directory, then
//! renamed into `blobs/` (same file system, so the rename is atomic) and the directory is
//! fsynced. A crash at any point leaves either no blob or the whole blob.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use stencil_reference::{Algorithm, Digest};

use super::ingest::{self, IngestStatus, LocalWriter};
use super::{Info, Ingester, Manager, Provider};
use crate::error::{Error, Result};

/// The content store rooted at a directory (normally the stencil store root).
#[derive(Debug, Clone)]
pub struct LocalContent {
    root: PathBuf,
}

impl LocalContent {
    /// Opens the content store under `root`, creating `blobs/sha256` and `ingest/` when
    /// missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalContent> {
        let root = root.into();
        for dir in [root.join("blobs").join("sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        Ok(LocalContent { root })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The directory holding the ingests.
    pub fn ingest_root(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Visits each blob path with its parsed digest, and each file under `blobs/` that is
    /// not a digest with `None` (for fsck).
    pub(crate) fn walk_paths(
        &self,
        visit: &mut dyn FnMut(PathBuf, Option<Digest>) -> Result<()>,
    ) -> Result<()> {
        let blobs = self.root.join("blobs");
        let algorithms = match fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(Error::io(&blobs)(error)),
        };
        for algorithm_entry in algorithms {
            let algorithm_entry = algorithm_entry.map_err(Error::io(&blobs))?;
            let algorithm_dir = algorithm_entry.path();
            let algorithm = algorithm_entry
                .file_name()
                .to_str()
                .and_then(Algorithm::from_name);
            if !algorithm_dir.is_dir() {
                visit(algorithm_dir, None)?;
                continue;
            }
            for entry in fs::read_dir(&algorithm_dir).map_err(Error::io(&algorithm_dir))? {
                let entry = entry.map_err(Error::io(&algorithm_dir))?;
                let digest = match (algorithm, entry.file_name().to_str()) {
                    (Some(algorithm), Some(hex)) => Digest::new(algorithm, hex).ok(),
                    _ => None,
                };
                visit(entry.path(), digest)?;
            }
        }
        Ok(())
    }
}

impl Provider for LocalContent {
    type Reader = File;

    fn open(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| not_found_or_io(digest, path, source))
    }

    fn info(&self, digest: &Digest) -> Result<Info> {
        let path = self.blob_path(digest);
        let metadata =
            fs::metadata(&path).map_err(|source| not_found_or_io(digest, path.clone(), source))?;
        Ok(Info {
            digest: digest.clone(),
            size: metadata.len(),
            committed_at: metadata.modified().map_err(Error::io(&path))?,
        })
    }
}

impl Ingester for LocalContent {
    type Writer = LocalWriter;

    fn writer(&self, ingest_ref: &str) -> Result<LocalWriter> {
        LocalWriter::open(self.clone(), ingest_ref)
    }

    fn abort(&self, ingest_ref: &str) -> Result<()> {
        ingest::abort_ref(self, ingest_ref)
    }

    fn ingests(&self) -> Result<Vec<IngestStatus>> {
        ingest::list(self)
    }
}

impl Manager for LocalContent {
    fn walk(&self, visit: &mut dyn FnMut(Info) -> Result<()>) -> Result<()> {
        self.walk_paths(&mut |path, digest| {
            let Some(digest) = digest else {
                return Ok(());
            };
            let metadata = match fs::metadata(&path) {
                Ok(metadata) => metadata,
                // Deleted between listing and stat: not part of the walk.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(error) => return Err(Error::io(&path)(error)),
            };
            visit(Info {
                digest,
                size: metadata.len(),
                committed_at: metadata.modified().map_err(Error::io(&path))?,
            })
        })
    }

    fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(|source| not_found_or_io(digest, path.clone(), source))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

fn not_found_or_io(digest: &Digest, path: PathBuf, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::BlobNotFound {
            digest: digest.clone(),
        }
    } else {
        Error::Io { path, source }
    }
}

/// Fsyncs a directory so that a rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(Error::io(dir))
}
