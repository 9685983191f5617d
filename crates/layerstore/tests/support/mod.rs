//! Shared helpers of the layerstore integration tests: building real images in a store,
//! finding peer tools, and running them with readable failures.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use stencil_layerstore::content::sha256_digest;
use stencil_layerstore::image::media_type;
use stencil_layerstore::{Digest, Reference, Store};

/// A gzip-compressed layer tar holding `files`, and its diff ID.
pub fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let tar = plain_layer(files);
    let diff_id = sha256_digest(&tar);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).expect("gzip layer");
    (gzip.finish().expect("finish gzip"), diff_id)
}

/// The plain layer tar holding `files` (what [`layer`] compresses).
pub fn plain_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, *bytes)
            .expect("append to layer tar");
    }
    builder.into_inner().expect("finish layer tar")
}

/// Stores an image made of `layers` (each a list of files), tags it `name` and returns its
/// manifest digest. `architecture` goes into the config.
pub fn make_image(
    store: &Store,
    name: &str,
    architecture: &str,
    layers: &[&[(&str, &[u8])]],
) -> Digest {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for files in layers {
        let (blob, diff_id) = layer(files);
        let digest = store.put_blob(&blob).expect("store layer");
        descriptors.push(serde_json::json!({
            "mediaType": media_type::OCI_LAYER_GZIP, "digest": digest.as_str(), "size": blob.len(),
        }));
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::json!({
        "architecture": architecture, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let config_digest = store.put_blob(&config).expect("store config");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let manifest_digest = store.put_blob(&manifest).expect("store manifest");
    store
        .record_image(&manifest_digest, None)
        .expect("record image");
    let reference = Reference::parse(name).expect("test reference");
    store.tag(&reference, &manifest_digest).expect("tag");
    manifest_digest
}

/// The peer tool `name`, or `None` with a printed reason. Under `CI=true` a missing peer
/// fails the test instead.
pub fn peer(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "peer {name} is missing; `cargo xtask test` installs it"
        );
        println!("skipping: peer {name} is not installed (apt-get install {name})");
    }
    found
}

/// Runs `command`; on failure panics with the command, its output and the listing of `dir`.
pub fn run(command: &mut Command, dir: &Path) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
    if !output.status.success() {
        let listing = Command::new("find")
            .arg(dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\nlisting of {}:\n{listing}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            dir.display()
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}
