//! Writing OCI layouts, oci-archives and docker-archives from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;
use stencil_reference::{Digest, Reference};

use crate::content::Provider;
use crate::error::{Error, Result};
use crate::meta::ImageRecord;
use crate::store::{Store, index_entry, write_atomically};

/// The format [`save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveFormat {
    /// An OCI image layout directory (only through [`export_oci_layout`]).
    OciLayout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` tar, which is also an oci-archive.
    DockerArchive,
}

/// The images to write, with the name each is written under.
fn selected(store: &Store, references: &[Reference]) -> Result<Vec<(Reference, ImageRecord)>> {
    references
        .iter()
        .map(|reference| Ok((reference.clone(), store.resolve(reference)?)))
        .collect()
}

/// Every blob of `images`, each once, in a stable order.
fn blobs_of(images: &[(Reference, ImageRecord)]) -> BTreeSet<Digest> {
    let mut blobs = BTreeSet::new();
    for (_, image) in images {
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        blobs.extend(image.layers.iter().map(|layer| layer.blob_digest.clone()));
    }
    blobs
}

fn blob_entry(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

fn oci_index(images: &[(Reference, ImageRecord)]) -> serde_json::Value {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(reference, image)| index_entry(image, &reference.canonical()))
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": crate::image::media_type::OCI_INDEX,
        "manifests": manifests,
    })
}

fn to_json(value: &serde_json::Value, name: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|error| Error::io(name)(error.into()))
}

/// Writes the images `references` name as an OCI image layout in `dir` (created when
/// missing; blobs already there are kept). Blobs are hard-linked when the store is on the
/// same file system, copied otherwise.
pub fn export_oci_layout(store: &Store, references: &[Reference], dir: &Path) -> Result<()> {
    let images = selected(store, references)?;
    for digest in blobs_of(&images) {
        let target = dir.join(blob_entry(&digest));
        if target.exists() {
            continue;
        }
        let parent = target.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let source = store.content().blob_path(&digest);
        if fs::hard_link(&source, &target).is_err() {
            let mut reader = store.content().open(&digest)?;
            let mut temporary =
                tempfile::NamedTempFile::new_in(parent).map_err(Error::io(parent))?;
            io::copy(&mut reader, &mut temporary).map_err(Error::io(&target))?;
            temporary.as_file().sync_all().map_err(Error::io(&target))?;
            temporary
                .persist(&target)
                .map_err(|error| Error::io(&target)(error.error))?;
        }
    }
    write_atomically(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write_atomically(
        &dir.join("index.json"),
        &to_json(&oci_index(&images), "index.json")?,
    )
}

/// Writes the images `references` name to `out` as a tar in `format`, streaming blobs
/// from the store.
pub fn save(
    store: &Store,
    references: &[Reference],
    format: SaveFormat,
    out: &mut dyn Write,
) -> Result<()> {
    if format == SaveFormat::OciLayout {
        return Err(Error::InvalidArchive {
            path: "-".into(),
            reason: "an OCI layout is a directory; use export_oci_layout".to_owned(),
        });
    }
    let images = selected(store, references)?;
    let mut builder = tar::Builder::new(out);
    let small =
        |builder: &mut tar::Builder<&mut dyn Write>, name: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, bytes)
                .map_err(Error::io(name))
        };
    small(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    for digest in blobs_of(&images) {
        let name = blob_entry(&digest);
        let info = store.content().info(&digest)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(info.size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        let reader = store.content().open(&digest)?;
        builder
            .append_data(&mut header, &name, reader)
            .map_err(Error::io(&name))?;
    }
    small(
        &mut builder,
        "index.json",
        &to_json(&oci_index(&images), "index.json")?,
    )?;
    match format {
        SaveFormat::OciArchive | SaveFormat::OciLayout => {}
        SaveFormat::DockerArchive => {
            let mut manifest = Vec::new();
            let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for (reference, image) in &images {
                let repo_tags: Vec<String> = match reference.tag() {
                    Some(_) if reference.digest().is_none() => vec![reference.familiar()],
                    _ => Vec::new(),
                };
                if let (Some(tag), Some(last)) = (reference.tag(), image.layers.last()) {
                    repositories
                        .entry(reference.familiar_name())
                        .or_default()
                        .insert(tag.as_str().to_owned(), last.blob_digest.hex().to_owned());
                }
                manifest.push(json!({
                    "Config": blob_entry(&image.config_digest),
                    "RepoTags": repo_tags,
                    "Layers": image.layers.iter().map(|layer| blob_entry(&layer.blob_digest)).collect::<Vec<_>>(),
                }));
            }
            small(
                &mut builder,
                "manifest.json",
                &to_json(&json!(manifest), "manifest.json")?,
            )?;
            small(
                &mut builder,
                "repositories",
                &to_json(&json!(repositories), "repositories")?,
            )?;
        }
    }
    builder
        .into_inner()
        .and_then(|out| out.flush())
        .map_err(Error::io("archive"))
}
