//! The build cache: which image a build step produced, by the step's cache key.
//!
//! A key is the sha256 of everything the step's result depends on: the parent image's
//! config digest (which pins its chain of layers and its whole config), the instruction
//! with its arguments after substitution, the build arguments and environment it sees,
//! and for `COPY`/`ADD` the digest of the copied files (names, modes, contents). The value
//! is the manifest digest of the image the step made.
//!
//! Entries are small files `ROOT/build-cache/HEX`, written to a temporary file and renamed
//! into place, so concurrent builds on one root never see half an entry and the last
//! writer wins with an equally valid value. An entry whose image has since been removed
//! (`rmi`, `image prune`) is a miss, and is deleted when found.
//!
//! ```
//! use stencil::build::cache::{BuildCache, CacheKey};
//!
//! let root = tempfile::tempdir().unwrap();
//! let cache = BuildCache::open(root.path()).unwrap();
//! let key = CacheKey::new().part("parent", "scratch").part("instruction", "ENV A=1").finish();
//! assert!(cache.get(&key).is_none());
//! let image: stencil_reference::Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
//! cache.put(&key, &image).unwrap();
//! assert_eq!(cache.get(&key), Some(image));
//! ```

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};
use stencil_reference::Digest;

/// The cache directory under the store root.
pub const CACHE_DIR: &str = "build-cache";
/// Below it: one empty file per build result, named by its manifest digest's hex.
const FINAL_DIR: &str = "final";

/// Builds a cache key from named parts; the names keep parts from running into each other.
#[derive(Debug, Clone, Default)]
pub struct CacheKey {
    hasher: Sha256,
}

impl CacheKey {
    /// An empty key.
    pub fn new() -> CacheKey {
        CacheKey::default()
    }

    /// Adds one named part.
    pub fn part(mut self, name: &str, value: &str) -> CacheKey {
        for item in [name, value] {
            self.hasher.update((item.len() as u64).to_le_bytes());
            self.hasher.update(item.as_bytes());
        }
        self
    }

    /// The key as hexadecimal text.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// The build cache of one store root.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
}

impl BuildCache {
    /// Opens (creating) the cache under store root `root`.
    pub fn open(root: &Path) -> Result<BuildCache> {
        let dir = root.join(CACHE_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the build cache {}", dir.display()))?;
        Ok(BuildCache { dir })
    }

    /// The manifest digest recorded for `key`, if any.
    pub fn get(&self, key: &str) -> Option<Digest> {
        let text = std::fs::read_to_string(self.dir.join(key)).ok()?;
        text.trim().parse().ok()
    }

    /// Forgets `key` (its image is gone).
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_file(self.dir.join(key));
    }

    /// Records that the step `key` made the image with manifest `image`.
    pub fn put(&self, key: &str, image: &Digest) -> Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("cannot write to the build cache {}", self.dir.display()))?;
        writeln!(file, "{image}")?;
        file.as_file().sync_all()?;
        file.persist(self.dir.join(key))
            .with_context(|| format!("cannot write to the build cache {}", self.dir.display()))?;
        Ok(())
    }

    /// Notes that the image with manifest `image` is the result of a build, not an
    /// intermediate step (so `stencil images` shows it even untagged).
    pub fn mark_final(&self, image: &Digest) -> Result<()> {
        let dir = self.dir.join(FINAL_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot write to the build cache {}", dir.display()))?;
        std::fs::write(dir.join(image.hex()), b"")
            .with_context(|| format!("cannot write to the build cache {}", dir.display()))?;
        Ok(())
    }

    /// Makes the entries and the final mark that name the image with manifest `old` name
    /// `new` instead: the same image under another manifest (`push` compresses the layers
    /// of built images), so that its steps stay cached.
    pub fn rename_image(&self, old: &Digest, new: &Digest) -> Result<()> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if text.trim() == old.as_str()
                && let Some(key) = path.file_name().and_then(|name| name.to_str())
            {
                self.put(key, new)?;
            }
        }
        let finals = self.dir.join(FINAL_DIR);
        if finals.join(old.hex()).exists() {
            self.mark_final(new)?;
            let _ = std::fs::remove_file(finals.join(old.hex()));
        }
        Ok(())
    }

    /// The manifest digests (as text) of images made by build steps that were never a
    /// build's result: docker's intermediate images.
    pub fn intermediate_images(&self) -> BTreeSet<String> {
        let finals: BTreeSet<String> = std::fs::read_dir(self.dir.join(FINAL_DIR))
            .map(|dir| {
                dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        self.entries()
            .into_iter()
            .filter(|d| !finals.contains(d.hex()))
            .map(|d| d.to_string())
            .collect()
    }

    /// The images the entries name.
    pub fn entries(&self) -> Vec<Digest> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|entry| {
            let path = entry.ok()?.path();
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part_and_its_boundaries() {
        let a = CacheKey::new().part("x", "ab").part("y", "c").finish();
        let b = CacheKey::new().part("x", "a").part("y", "bc").finish();
        let c = CacheKey::new().part("x", "ab").part("y", "c").finish();
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn entries_survive_reopening_and_can_be_forgotten() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let image: Digest = format!("sha256:{}", "b".repeat(64))
            .parse()
            .unwrap_or_else(|e| panic!("{e:?}"));
        let cache = BuildCache::open(root.path()).unwrap_or_else(|e| panic!("{e}"));
        cache.put("k", &image).unwrap_or_else(|e| panic!("{e}"));
        let again = BuildCache::open(root.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.get("k"), Some(image.clone()));
        assert_eq!(again.entries(), vec![image.clone()]);
        assert_eq!(
            again.intermediate_images(),
            BTreeSet::from([image.to_string()])
        );
        again.mark_final(&image).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.intermediate_images().is_empty());
        again.forget("k");
        assert_eq!(cache.get("k"), None);
        std::fs::write(root.path().join(CACHE_DIR).join("bad"), "not a digest")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.get("bad"), None);
    }
}
