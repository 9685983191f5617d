//! The repository index: which blobs and manifests each repository holds, and its tags.
//!
//! Blob and manifest *bytes* live once in the stencil content store, whatever the number of
//! repositories that hold them; the index only records membership, so a mount or a second
//! push of the same layer costs a link, not a copy. [`RepositoryIndex`] is the seam: the
//! server reads and writes through it, and [`FileIndex`] is the implementation on a
//! directory tree (`ROOT/registry/`) until the store's metadata database records tags of
//! indexes and artifacts too. The index does not store bytes, check digests or decide access.
//!
//! ```
//! use stencil_layerstore::content::sha256_digest;
//! use stencil_reference::Tag;
//! use stencil_registry::server::{FileIndex, ManifestRecord, RepositoryIndex, RepositoryName};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let index = FileIndex::new(dir.path());
//! let repo = RepositoryName::parse("localhost:5000", "app").unwrap();
//! let digest = sha256_digest(b"{}");
//! let record = ManifestRecord::new(digest.clone(), "application/vnd.oci.image.manifest.v1+json", 2);
//! index.put_manifest(&repo, &record, Some(&Tag::parse("v1").unwrap())).unwrap();
//! assert_eq!(index.resolve_tag(&repo, &Tag::parse("v1").unwrap()).unwrap(), Some(digest));
//! assert_eq!(index.repositories("localhost:5000").unwrap(), vec!["app".to_owned()]);
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use stencil_reference::{Digest, Tag};

use super::error::{Error, Result};
use super::name::RepositoryName;

/// What the index remembers of one manifest in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type, as pushed (sent back as `Content-Type`).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The artifact type (its `artifactType`, else its config's media type), for referrers.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifest it refers to (`subject`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// Its annotations, copied into referrers listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ManifestRecord {
    /// A record without artifact type, subject or annotations.
    pub fn new(digest: Digest, media_type: impl Into<String>, size: u64) -> ManifestRecord {
        ManifestRecord {
            digest,
            media_type: media_type.into(),
            size,
            artifact_type: None,
            subject: None,
            annotations: None,
        }
    }
}

/// Repository membership of blobs and manifests, and tags. Calls block (file or database
/// I/O); the server runs them off its async threads.
pub trait RepositoryIndex: Send + Sync + fmt::Debug {
    /// Records that `repo` holds the blob `digest` (already in the content store).
    fn link_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()>;

    /// Whether `repo` holds the blob `digest`.
    fn has_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool>;

    /// Forgets the blob `digest` in `repo`; whether it was there.
    fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool>;

    /// Records the manifest (already in the content store) and points `tag` at it.
    fn put_manifest(
        &self,
        repo: &RepositoryName,
        record: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()>;

    /// The manifest `digest` of `repo`, when it holds it.
    fn manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ManifestRecord>>;

    /// Every manifest of `repo`, in no particular order.
    fn manifests(&self, repo: &RepositoryName) -> Result<Vec<ManifestRecord>>;

    /// The manifest `tag` points at.
    fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>>;

    /// Removes the manifest `digest` and every tag pointing at it; whether it was there.
    fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool>;

    /// Removes `tag`; whether it was there.
    fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool>;

    /// The tags of `repo`, sorted; `None` when the repository does not exist.
    fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<String>>>;

    /// The repositories of `domain` (paths, sorted).
    fn repositories(&self, domain: &str) -> Result<Vec<String>>;
}

/// [`RepositoryIndex`] on a directory tree:
///
/// ```text
/// DIR/DOMAIN/PATH…/_blobs/ALGORITHM/HEX       empty file: the repository holds the blob
/// DIR/DOMAIN/PATH…/_manifests/ALGORITHM/HEX   JSON ManifestRecord
/// DIR/DOMAIN/PATH…/_tags/TAG                   the tagged manifest's digest
/// ```
///
/// Every file is written to a temporary name and renamed, so readers (in this process or
/// another) see the old or the new content, never half of it.
#[derive(Debug, Clone)]
pub struct FileIndex {
    root: PathBuf,
}

/// Makes temporary file names unique within the process (the pid covers other processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileIndex {
    /// An index under `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> FileIndex {
        FileIndex { root: root.into() }
    }

    fn repo_dir(&self, repo: &RepositoryName) -> PathBuf {
        let mut dir = self.root.join(repo.domain());
        for component in repo.components() {
            dir.push(component);
        }
        dir
    }

    fn blob_path(&self, repo: &RepositoryName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn manifest_path(&self, repo: &RepositoryName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn tag_path(&self, repo: &RepositoryName, tag: &Tag) -> PathBuf {
        self.repo_dir(repo).join("_tags").join(tag.as_str())
    }
}

/// Writes `bytes` to `path` atomically, creating parent directories.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(Error::index(dir))?;
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temp);
        Error::Index {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads `path`, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::index(path)(error)),
    }
}

/// Removes `path`; whether it existed.
fn remove_optional(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Error::index(path)(error)),
    }
}

/// The entries of `dir` as UTF-8 names (others cannot be ours), empty when it is absent.
fn list_names(dir: &Path) -> Result<Vec<(String, fs::FileType)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::index(dir)(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::index(dir))?;
        let file_type = entry.file_type().map_err(Error::index(dir))?;
        if let Ok(name) = entry.file_name().into_string()
            && !name.starts_with(".tmp-")
        {
            names.push((name, file_type));
        }
    }
    Ok(names)
}

fn parse_record(path: &Path, bytes: &[u8]) -> Result<ManifestRecord> {
    serde_json::from_slice(bytes).map_err(|error| Error::Index {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, error),
    })
}

impl RepositoryIndex for FileIndex {
    fn link_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let path = self.blob_path(repo, digest);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, b"")
    }

    fn has_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(repo, digest);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(Error::index(path)(error)),
        }
    }

    fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        remove_optional(&self.blob_path(repo, digest))
    }

    fn put_manifest(
        &self,
        repo: &RepositoryName,
        record: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let path = self.manifest_path(repo, &record.digest);
        let json = serde_json::to_vec(record).map_err(|error| Error::Index {
            path: path.clone(),
            source: io::Error::other(error),
        })?;
        write_atomic(&path, &json)?;
        if let Some(tag) = tag {
            write_atomic(&self.tag_path(repo, tag), record.digest.as_str().as_bytes())?;
        }
        Ok(())
    }

    fn manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let path = self.manifest_path(repo, digest);
        read_optional(&path)?
            .map(|bytes| parse_record(&path, &bytes))
            .transpose()
    }

    fn manifests(&self, repo: &RepositoryName) -> Result<Vec<ManifestRecord>> {
        let dir = self.repo_dir(repo).join("_manifests");
        let mut records = Vec::new();
        for (algorithm, file_type) in list_names(&dir)? {
            if !file_type.is_dir() {
                continue;
            }
            let algorithm_dir = dir.join(&algorithm);
            for (hex, _) in list_names(&algorithm_dir)? {
                let path = algorithm_dir.join(&hex);
                // Deleted between the listing and the read: not part of the answer.
                if let Some(bytes) = read_optional(&path)? {
                    records.push(parse_record(&path, &bytes)?);
                }
            }
        }
        Ok(records)
    }

    fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        let path = self.tag_path(repo, tag);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Digest::parse(text.trim())
            .map(Some)
            .map_err(|error| Error::Index {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, error),
            })
    }

    fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        if !remove_optional(&self.manifest_path(repo, digest))? {
            return Ok(false);
        }
        let tags_dir = self.repo_dir(repo).join("_tags");
        for (name, _) in list_names(&tags_dir)? {
            let path = tags_dir.join(&name);
            if let Some(bytes) = read_optional(&path)?
                && String::from_utf8_lossy(&bytes).trim() == digest.as_str()
            {
                remove_optional(&path)?;
            }
        }
        Ok(true)
    }

    fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool> {
        remove_optional(&self.tag_path(repo, tag))
    }

    fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<String>>> {
        let dir = self.repo_dir(repo);
        if !dir.join("_manifests").is_dir() && !dir.join("_blobs").is_dir() {
            return Ok(None);
        }
        let mut tags: Vec<String> = list_names(&dir.join("_tags"))?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        tags.sort();
        Ok(Some(tags))
    }

    fn repositories(&self, domain: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut pending = vec![(self.root.join(domain), String::new())];
        while let Some((dir, path)) = pending.pop() {
            for (name, file_type) in list_names(&dir)? {
                if !file_type.is_dir() {
                    continue;
                }
                if name.starts_with('_') {
                    // `_blobs` or `_manifests`: this directory is a repository. Repository
                    // components never start with '_', so the two cannot be confused.
                    if (name == "_blobs" || name == "_manifests")
                        && !path.is_empty()
                        && found.last() != Some(&path)
                    {
                        found.push(path.clone());
                    }
                    continue;
                }
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}/{name}")
                };
                pending.push((dir.join(&name), child));
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }
}
