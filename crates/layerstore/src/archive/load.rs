//! Reading OCI layouts, oci-archives and docker-archives into the store.
//!
//! One pass collects what the source holds: blobs named `blobs/ALG/HEX` are streamed into
//! the content store and verified against their names; small JSON files (`index.json`,
//! `manifest.json`, legacy configs) are kept in memory; other files (legacy
//! `ID/layer.tar`) are streamed in under their computed digest. Then the format is decided
//! from what was found and the images are recorded and tagged.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use stencil_reference::{Algorithm, Digest, Reference};

use crate::content::Provider;
use crate::error::{Error, Result};
use crate::image::{
    Document, MAX_DOCUMENT_SIZE, Platform, descriptor_digest, media_type, parse_document,
    select_manifest,
};
use crate::meta::ImageRecord;
use crate::store::{REF_NAME_ANNOTATION, Store};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The name for images whose archive gives none, or only a tag (OCI layouts written by
    /// some tools name images `latest`): the tag is applied to this name.
    pub name: Option<Reference>,
    /// The platform to pick from multi-platform indexes.
    pub platform: Platform,
    /// Set the archive's tags. A caller that checks the images first (unpacks them, which
    /// verifies every layer against its diff ID) turns this off and sets
    /// [`Loaded::tags`] itself once they are whole, so that a bad archive names nothing.
    pub apply_tags: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            name: None,
            platform: Platform::host(),
            apply_tags: true,
        }
    }
}

/// One image loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Its record.
    pub image: ImageRecord,
    /// The tags set on it (`name:tag`), or to set on it without
    /// [`LoadOptions::apply_tags`].
    pub tags: Vec<String>,
}

/// What one pass over the source found.
#[derive(Default)]
struct Collected {
    /// Small JSON files by path.
    json: HashMap<String, Vec<u8>>,
    /// Every other regular file by path, now a blob.
    files: HashMap<String, (Digest, u64)>,
    /// Symbolic links by path, to their target path (legacy archives share layers so).
    links: HashMap<String, String>,
    /// Blobs this load stored, deleted again if it fails.
    stored: std::cell::RefCell<Vec<Digest>>,
}

/// The largest JSON file kept in memory.
const MAX_JSON: u64 = 64 << 20;

/// The largest PAX or GNU long-name extension header read (docker and Go write a few
/// hundred bytes).
const MAX_EXTENSION: u64 = 1 << 20;

/// What the extension headers before an entry said about it.
#[derive(Default)]
struct Extended {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

impl Extended {
    /// Takes the records of a PAX `x` header in.
    fn pax(&mut self, bytes: &[u8], previous: &str) -> std::result::Result<(), String> {
        for record in tar::PaxExtensions::new(bytes) {
            let record = record.map_err(|_| format!("a malformed PAX header after {previous}"))?;
            match record.key_bytes() {
                b"path" => self.path = Some(record.value_bytes().to_vec()),
                b"linkpath" => self.link = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let size = std::str::from_utf8(record.value_bytes())
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("a PAX header after {previous} has a bad size"))?;
                    self.size = Some(size);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Normalises a tar or layout path: no `./`, no leading `/`, `..` resolved lexically.
fn clean(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// A path `manifest.json` names, refused when it leaves the archive.
fn inside(named: &str, source: &Path) -> Result<String> {
    let path = Path::new(named);
    match clean(path) {
        Some(clean) if !path.has_root() && !clean.is_empty() => Ok(clean),
        _ => Err(Error::InvalidArchive {
            path: source.to_path_buf(),
            reason: format!(
                "manifest.json names {named:?}, which is not a file inside the archive"
            ),
        }),
    }
}

/// The digest a `blobs/ALG/HEX` path names.
fn blob_path_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    Digest::new(Algorithm::from_name(algorithm)?, hex).ok()
}

fn is_metadata(path: &str) -> bool {
    path.ends_with(".json") || path == "oci-layout" || path == "repositories"
}

impl Collected {
    /// Takes one file in.
    fn add(
        &mut self,
        store: &Store,
        path: String,
        size: u64,
        reader: &mut dyn Read,
        source: &Path,
    ) -> Result<()> {
        if let Some(digest) = blob_path_digest(&path) {
            if !store.content().contains(&digest)? {
                store.ingest(reader, Some((&digest, size)))?;
                self.stored.borrow_mut().push(digest.clone());
            }
            self.files.insert(path, (digest, size));
        } else if is_metadata(&path) {
            if size > MAX_JSON {
                return Err(Error::InvalidArchive {
                    path: source.to_path_buf(),
                    reason: format!("{path} is {size} bytes, too large for metadata"),
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            reader
                .take(MAX_JSON)
                .read_to_end(&mut bytes)
                .map_err(Error::io(source))?;
            self.json.insert(path, bytes);
        } else if path.ends_with("layer.tar") || path.ends_with(".tar") || path.ends_with(".tar.gz")
        {
            let (digest, size) = store.ingest(reader, None)?;
            self.stored.borrow_mut().push(digest.clone());
            self.files.insert(path, (digest, size));
        }
        // Anything else (legacy `ID/json`, `ID/VERSION`) carries nothing the store needs.
        Ok(())
    }

    /// The blob at `path`, following symbolic links.
    fn blob(&self, path: &str, source: &Path) -> Result<(Digest, u64)> {
        let mut current = path.to_owned();
        for _ in 0..16 {
            if let Some(found) = self.files.get(&current) {
                return Ok(found.clone());
            }
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => break,
            }
        }
        Err(Error::InvalidArchive {
            path: source.to_path_buf(),
            reason: format!("{path} is named in the archive's metadata but missing"),
        })
    }
}

/// Loads the OCI layout directory, oci-archive or docker-archive at `path`, detecting
/// which by content. Returns the images loaded, in archive order.
pub fn load(store: &Store, path: &Path, options: &LoadOptions) -> Result<Vec<Loaded>> {
    let mut collected = Collected::default();
    let loaded = load_into(store, path, options, &mut collected);
    discard_on_error(store, loaded, &collected)
}

/// When `loaded` failed, deletes the blobs the load stored that nothing uses.
fn discard_on_error(
    store: &Store,
    loaded: Result<Vec<Loaded>>,
    collected: &Collected,
) -> Result<Vec<Loaded>> {
    if loaded.is_err() {
        let stored = collected.stored.borrow().clone();
        // The load's own error is the one to report; blobs left here are unreferenced,
        // and `stencil system prune` or the next collection takes them.
        let _ = store.discard_blobs(&stored);
    }
    loaded
}

fn load_into(
    store: &Store,
    path: &Path,
    options: &LoadOptions,
    collected: &mut Collected,
) -> Result<Vec<Loaded>> {
    let metadata = fs::metadata(path).map_err(Error::io(path))?;
    if metadata.is_dir() {
        collect_dir(store, path, path, collected)?;
        return finish(store, collected, options, path);
    }
    let file = File::open(path).map_err(Error::io(path))?;
    read_archive(
        store,
        &mut BufReader::with_capacity(1 << 20, file),
        options,
        path,
        collected,
    )
}

/// Loads an oci-archive or docker-archive (a tar, plain or compressed with gzip, zstd, bzip2 or xz)
/// from `reader`;
/// `source` names it in errors.
pub fn load_from_reader(
    store: &Store,
    reader: &mut dyn BufRead,
    options: &LoadOptions,
    source: &Path,
) -> Result<Vec<Loaded>> {
    let mut collected = Collected::default();
    let loaded = read_archive(store, reader, options, source, &mut collected);
    discard_on_error(store, loaded, &collected)
}

fn read_archive(
    store: &Store,
    reader: &mut dyn BufRead,
    options: &LoadOptions,
    source: &Path,
    collected: &mut Collected,
) -> Result<Vec<Loaded>> {
    let invalid = |reason: String| Error::InvalidArchive {
        path: source.to_path_buf(),
        reason,
    };
    // `docker load` takes archives compressed with gzip, bzip2, xz or zstd too.
    let head = reader.fill_buf().map_err(Error::io(source))?;
    let stream: Box<dyn Read + '_> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|error| invalid(format!("cannot start zstd decompression: {error}")))?,
        )
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(reader))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        // The dictionary an xz stream may ask for is capped (`xz -9` takes 64 MiB).
        Box::new(lzma_rust2::XzReader::new_mem_limit(
            reader,
            true,
            1024 * 1024,
        ))
    } else {
        Box::new(reader)
    };
    // A first block that is no tar header: say so, rather than what the tar reader makes
    // of random bytes.
    let mut first = [0u8; 512];
    let mut stream = stream;
    let mut filled = 0;
    while filled < first.len() {
        match stream.read(&mut first[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) => {
                return Err(invalid(format!("it is truncated or corrupt: {error}")));
            }
        }
    }
    if filled < first.len() || !is_tar_header(&first) {
        return Err(invalid(
            "it is not a tar archive (a docker-archive or oci-archive, plain or compressed with gzip, zstd, bzip2 or xz)"
                .to_owned(),
        ));
    }
    let mut archive = tar::Archive::new(Read::chain(&first[..], stream));
    // Raw entries: the `tar` crate would read PAX and GNU long-name extension entries
    // wholly into memory, whatever size they declare; they are read here, up to a cap.
    let mut extended = Extended::default();
    let mut previous = String::from("the start of the archive");
    for entry in archive
        .entries()
        .map_err(|error| invalid(error.to_string()))?
        .raw(true)
    {
        let mut entry = entry.map_err(|error| invalid(format!("after {previous}: {error}")))?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_global_extensions()
        {
            if size > MAX_EXTENSION {
                return Err(invalid(format!(
                    "the extension header after {previous} declares {size} bytes, more than the {MAX_EXTENSION} a header may hold"
                )));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .by_ref()
                .take(MAX_EXTENSION)
                .read_to_end(&mut bytes)
                .map_err(|error| invalid(format!("after {previous}: {error}")))?;
            if kind.is_gnu_longname() {
                extended.path = Some(trim_nul(bytes));
            } else if kind.is_gnu_longlink() {
                extended.link = Some(trim_nul(bytes));
            } else if kind.is_pax_local_extensions() {
                extended.pax(&bytes, &previous).map_err(invalid)?;
            }
            continue;
        }
        let extension = std::mem::take(&mut extended);
        let raw_path = extension
            .path
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let entry_path = PathBuf::from(String::from_utf8_lossy(&raw_path).into_owned());
        previous = format!("entry {:?}", entry_path.display().to_string());
        if extension.size.is_some_and(|declared| declared != size) || kind.is_gnu_sparse() {
            return Err(invalid(format!(
                "{previous}: sparse files and PAX size overrides are not supported in image archives"
            )));
        }
        let escapes = entry_path.has_root()
            || entry_path
                .components()
                .any(|c| matches!(c, Component::Prefix(_)))
            || clean(&entry_path).is_none();
        if escapes {
            return Err(invalid(format!(
                "{previous} is an absolute path or climbs out of the archive with `..`; refusing the archive"
            )));
        }
        let Some(path) = clean(&entry_path) else {
            continue;
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                collected.add(store, path, size, &mut entry, source)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = extension
                    .link
                    .or_else(|| entry.link_name_bytes().map(|name| name.into_owned()));
                if let Some(target) = target {
                    let target = PathBuf::from(String::from_utf8_lossy(&target).into_owned());
                    let base = if kind == tar::EntryType::Link {
                        PathBuf::new()
                    } else {
                        Path::new(&path)
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_default()
                    };
                    if let Some(target) = clean(&base.join(target)) {
                        collected.links.insert(path, target);
                    }
                }
            }
            _ => {}
        }
    }
    finish(store, collected, options, source)
}

fn collect_dir(store: &Store, root: &Path, dir: &Path, collected: &mut Collected) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(Error::io(&path))?;
        if file_type.is_dir() {
            collect_dir(store, root, &path, collected)?;
        } else if file_type.is_file() {
            let Some(relative) = path.strip_prefix(root).ok().and_then(clean) else {
                continue;
            };
            let size = entry.metadata().map_err(Error::io(&path))?.len();
            let mut file = File::open(&path).map_err(Error::io(&path))?;
            collected.add(store, relative, size, &mut file, root)?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn finish(
    store: &Store,
    collected: &Collected,
    options: &LoadOptions,
    source: &Path,
) -> Result<Vec<Loaded>> {
    for name in ["manifest.json", "index.json", "oci-layout"] {
        if let Some(target) = collected.links.get(name) {
            return Err(Error::InvalidArchive {
                path: source.to_path_buf(),
                reason: format!(
                    "{name} is a link (to {target:?}), not a file; an image archive must hold it as a regular file"
                ),
            });
        }
    }
    if let Some(manifest) = collected.json.get("manifest.json") {
        return finish_docker(store, collected, manifest, options, source);
    }
    if collected.json.contains_key("oci-layout") {
        return finish_oci(store, collected, options, source);
    }
    Err(Error::InvalidArchive {
        path: source.to_path_buf(),
        reason: "neither a docker-archive (no manifest.json) nor an OCI layout (no oci-layout)"
            .to_owned(),
    })
}

/// The reference an archive's name designates, completed with `options.name` when the
/// archive gives only a tag.
fn name_for(annotation: &str, options: &LoadOptions) -> Option<Reference> {
    let looks_like_tag = !annotation.contains('/') && !annotation.contains(':');
    if looks_like_tag && let Some(base) = &options.name {
        let tag = stencil_reference::Tag::parse(annotation).ok()?;
        return Some(base.with_tag(tag));
    }
    Reference::parse(annotation)
        .ok()
        .filter(|reference| reference.tag().is_some())
}

fn finish_oci(
    store: &Store,
    collected: &Collected,
    options: &LoadOptions,
    source: &Path,
) -> Result<Vec<Loaded>> {
    let invalid = |reason: String| Error::InvalidArchive {
        path: source.to_path_buf(),
        reason,
    };
    let index_bytes = collected
        .json
        .get("index.json")
        .ok_or_else(|| invalid("oci-layout without index.json".to_owned()))?;
    let parsed = parse_document(index_bytes, Some(media_type::OCI_INDEX), None)
        .or_else(|_| parse_document(index_bytes, None, None))?;
    let Document::Index(index) = parsed.document else {
        return Err(invalid("index.json is not an image index".to_owned()));
    };
    let mut loaded = Vec::new();
    for descriptor in index.manifests() {
        let digest = descriptor_digest(descriptor)?;
        let annotation = descriptor
            .annotations()
            .as_ref()
            .and_then(|annotations| annotations.get(REF_NAME_ANNOTATION).cloned());
        let image = record_any(store, &digest, &options.platform)?;
        let mut tags = Vec::new();
        if let Some(reference) = annotation
            .as_deref()
            .and_then(|name| name_for(name, options))
        {
            tags.push(reference);
        } else if let Some(reference) = options
            .name
            .as_ref()
            .filter(|_| index.manifests().len() == 1)
        {
            tags.push(reference.clone());
        }
        loaded.push(tagged(store, image, tags, options)?);
    }
    Ok(loaded)
}

/// Records the manifest `digest`, or, for an index, the manifest for `platform` in it.
fn record_any(store: &Store, digest: &Digest, platform: &Platform) -> Result<ImageRecord> {
    let bytes = store.read_blob(digest, MAX_DOCUMENT_SIZE)?;
    match parse_document(&bytes, None, Some(digest))?.document {
        Document::Manifest(_) => store.record_image(digest, None),
        Document::Index(index) => {
            let chosen =
                select_manifest(&index, platform).ok_or_else(|| Error::NoMatchingPlatform {
                    platform: platform.to_string(),
                    digest: Some(digest.clone()),
                })?;
            let child = descriptor_digest(chosen)?;
            store.record_image(&child, Some(digest))
        }
    }
}

/// The layer media type of a blob, from its first bytes.
fn sniff_layer_media_type(store: &Store, digest: &Digest) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let mut reader = store.content().open(digest)?;
    let read = reader
        .read(&mut head)
        .map_err(Error::io(store.content().blob_path(digest)))?;
    Ok(match &head[..read] {
        [0x1f, 0x8b, ..] => media_type::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media_type::OCI_LAYER_ZSTD,
        _ => media_type::OCI_LAYER,
    })
}

fn finish_docker(
    store: &Store,
    collected: &Collected,
    manifest: &[u8],
    options: &LoadOptions,
    source: &Path,
) -> Result<Vec<Loaded>> {
    let invalid = |reason: String| Error::InvalidArchive {
        path: source.to_path_buf(),
        reason,
    };
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|error| invalid(format!("manifest.json: {error}")))?;
    // Docker 25+ archives carry the original manifests in an OCI index: reuse them so that
    // digests survive a save/load round trip.
    let mut originals: HashMap<Digest, Digest> = HashMap::new();
    if collected.json.contains_key("index.json")
        && let Ok(oci) = finish_oci_manifests(store, collected)
    {
        originals = oci;
    }
    // Every name is checked before anything is recorded: a bad one leaves no image.
    let mut names = Vec::new();
    for entry in &entries {
        let mut references = Vec::new();
        for repo_tag in entry.repo_tags.iter().flatten() {
            references.push(Reference::parse(repo_tag).map_err(|source| {
                Error::InvalidReference {
                    input: repo_tag.clone(),
                    source,
                }
            })?);
        }
        if references.is_empty()
            && let Some(reference) = &options.name
        {
            references.push(reference.clone());
        }
        names.push(references);
    }
    let mut loaded = Vec::new();
    for (entry, references) in entries.into_iter().zip(names) {
        let config_path = inside(&entry.config, source)?;
        let (config_digest, config_size) = match collected.json.get(&config_path) {
            Some(bytes) if blob_path_digest(&config_path).is_none() => {
                let digest = store.put_blob(bytes)?;
                collected.stored.borrow_mut().push(digest.clone());
                (digest, bytes.len() as u64)
            }
            _ => collected.blob(&config_path, source)?,
        };
        let manifest_digest = match originals.get(&config_digest) {
            Some(original) => original.clone(),
            None => {
                let mut layers = Vec::new();
                for layer in &entry.layers {
                    let path = inside(layer, source)?;
                    let (digest, size) = collected.blob(&path, source)?;
                    layers.push(serde_json::json!({
                        "mediaType": sniff_layer_media_type(store, &digest)?,
                        "digest": digest.as_str(),
                        "size": size,
                    }));
                }
                let manifest = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": media_type::OCI_MANIFEST,
                    "config": {
                        "mediaType": media_type::OCI_CONFIG,
                        "digest": config_digest.as_str(),
                        "size": config_size,
                    },
                    "layers": layers,
                });
                let bytes =
                    serde_json::to_vec(&manifest).map_err(|error| invalid(error.to_string()))?;
                store.put_blob(&bytes)?
            }
        };
        let image = store.record_image(&manifest_digest, None)?;
        loaded.push(tagged(store, image, references, options)?);
    }
    Ok(loaded)
}

/// `image` with its names, set in the store when `options` say so.
fn tagged(
    store: &Store,
    image: ImageRecord,
    references: Vec<Reference>,
    options: &LoadOptions,
) -> Result<Loaded> {
    let mut tags = Vec::new();
    for reference in references {
        if options.apply_tags {
            store.tag(&reference, &image.manifest_digest)?;
        }
        tags.push(reference.canonical());
    }
    Ok(Loaded { image, tags })
}

/// Config digest → manifest digest for the manifests an archive's `index.json` lists.
fn finish_oci_manifests(store: &Store, collected: &Collected) -> Result<HashMap<Digest, Digest>> {
    let mut map = HashMap::new();
    let Some(index_bytes) = collected.json.get("index.json") else {
        return Ok(map);
    };
    let Document::Index(index) = parse_document(index_bytes, None, None)?.document else {
        return Ok(map);
    };
    for descriptor in index.manifests() {
        let digest = descriptor_digest(descriptor)?;
        let Ok(bytes) = store.read_blob(&digest, MAX_DOCUMENT_SIZE) else {
            continue;
        };
        if let Ok(parsed) = parse_document(&bytes, None, Some(&digest))
            && let Document::Manifest(manifest) = parsed.document
        {
            map.insert(descriptor_digest(manifest.config())?, digest);
        }
    }
    Ok(map)
}

/// Whether `block` is a tar header: its checksum field matches its bytes (the checksum
/// field counted as spaces), as every tar reader checks.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == recorded
}
