//! `save` and `load`: docker-archive and oci-archive files in and out of the store.
//!
//! Loading verifies every blob as it is stored (the layerstore's ingest), records the
//! images, then unpacks their layers so a loaded image is as ready as a pulled one.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use stencil_layerstore::archive::{LoadOptions, Loaded, SaveFormat, export_oci_layout, load, save};
use stencil_reference::Reference;

use super::{Engine, PullEvent};

impl Engine {
    /// Writes the images named by `names` (names or IDs) as one docker-archive to `out`.
    pub fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        let references = self.save_references(names)?;
        save(&self.store, &references, format, out).context("cannot write the archive")
    }

    /// Writes the images `names` as a new OCI image layout directory `dir`: it is built
    /// beside it and renamed into place, so it appears only complete; an existing
    /// directory that is not empty is refused rather than rewritten.
    pub fn save_layout(&self, names: &[String], dir: &Path) -> Result<()> {
        let references = self.save_references(names)?;
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    anyhow::bail!(
                        "cannot write an OCI layout to {}: it exists and is not empty; give a new directory",
                        dir.display()
                    );
                }
                std::fs::remove_dir(dir)
                    .with_context(|| format!("cannot replace {}", dir.display()))?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot write to {}", dir.display()));
            }
        }
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".oci-layout-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot write in {}", parent.display()))?;
        export_oci_layout(&self.store, &references, staging.path())
            .with_context(|| format!("cannot write the OCI layout {}", dir.display()))?;
        let staged = staging.keep();
        std::fs::rename(&staged, dir).map_err(|error| {
            let _ = std::fs::remove_dir_all(&staged);
            anyhow::anyhow!("cannot create {}: {error}", dir.display())
        })
    }

    /// The names to save the images `names` under: a name is kept; an ID saves every
    /// tag of the image.
    fn save_references(&self, names: &[String]) -> Result<Vec<Reference>> {
        let mut references = Vec::new();
        for name in names {
            let image = self.find_image(name)?;
            // A name given by the user is kept; an ID saves every tag of the image.
            match Reference::parse(name)
                .ok()
                .filter(|r| self.store.resolve(r).is_ok())
            {
                Some(reference) => references.push(reference),
                None => {
                    let tags = self.store.tags_of(&image.manifest_digest)?;
                    anyhow::ensure!(!tags.is_empty(), "image {name} has no tag to save it under");
                    for tag in tags {
                        references.push(Reference::parse(&tag)?);
                    }
                }
            }
        }
        Ok(references)
    }

    /// Loads a docker-archive or oci-archive (detected from its content) and unpacks the
    /// images it holds; `shown` names the source in errors (`standard input` for a
    /// spooled copy).
    pub fn load(&self, path: &Path, shown: &str) -> Result<Vec<Loaded>> {
        let before: Vec<_> = self
            .store
            .images()?
            .into_iter()
            .map(|image| image.manifest_digest)
            .collect();
        // Tags are set once every image is whole: unpacking verifies each layer against
        // the diff ID its config gives, and a bad archive must name nothing.
        let options = LoadOptions {
            apply_tags: false,
            ..LoadOptions::default()
        };
        let loaded = load(&self.store, path, &options).map_err(|error| {
            anyhow::anyhow!("cannot load {shown}: {}", without_path(&error, path, shown))
        })?;
        let discard_new = || {
            for other in &loaded {
                if !before.contains(&other.image.manifest_digest) {
                    self.discard_image(&other.image.manifest_digest);
                }
            }
        };
        for item in &loaded {
            if let Err(error) = self.unpack_image(&item.image, &|_: PullEvent| {}) {
                // A layer that cannot be unpacked leaves none of the archive's new images.
                discard_new();
                return Err(error.context(format!(
                    "cannot load {shown}: the archive is refused as a whole"
                )));
            }
        }
        for item in &loaded {
            for tag in &item.tags {
                let reference = Reference::parse(tag)?;
                self.store
                    .tag(&reference, &item.image.manifest_digest)
                    .with_context(|| format!("cannot tag {}", reference.familiar()))?;
            }
        }
        Ok(loaded)
    }
}

/// The message of a load error with the spooled file's path replaced by what the user
/// gave (the store's errors name the file they read).
fn without_path(error: &stencil_layerstore::Error, path: &Path, shown: &str) -> String {
    error
        .to_string()
        .replace(&path.display().to_string(), shown)
}
