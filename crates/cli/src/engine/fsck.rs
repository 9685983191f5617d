//! `fsck`: the layerstore's checks plus the agreement between the database and the
//! snapshotter (every recorded snapshot exists, no snapshot or extraction is left over),
//! and, for layers no snapshot vouches for, that each blob unpacks to the tar its image's
//! config names (its diff ID): an unpack checks that, and a layer never unpacked here (an
//! image pushed to `registry serve`, a commit's lazily unpacked layer) is checked now.

use std::io::Read;

use anyhow::Result;
use stencil_cow_fs::{Kind, Snapshotter};
use stencil_layerstore::content::Provider;
use stencil_layerstore::fsck::{FsckOptions, FsckReport};
use stencil_reference::Digest;

use super::Engine;

/// What [`Engine::fsck`] found.
#[derive(Debug)]
pub struct Checked {
    /// The store's own report.
    pub store: FsckReport,
    /// Problems between the database and the snapshotter, one sentence each.
    pub snapshot_problems: Vec<String>,
    /// What repair did about them.
    pub snapshot_repairs: Vec<String>,
    /// Committed snapshots no image uses: garbage an interrupted removal or pull left
    /// (the database changed, the process died before the snapshot went, or the other
    /// way round), reclaimable, not a problem.
    pub unreferenced_snapshots: Vec<String>,
}

impl Checked {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.store.problems.is_empty() && self.snapshot_problems.is_empty()
    }
}

impl Engine {
    /// Checks (and with `repair`, fixes) the whole store.
    pub fn fsck(&self, repair: bool) -> Result<Checked> {
        // Scratch snapshots of pulls whose process died (killed, crashed) are recovery
        // work, like ingests nobody holds: they go first, and are no problem of the store.
        // Those of pulls still running are theirs.
        self.remove_stale_extractions();
        let store = self.store.fsck(&FsckOptions { repair })?;
        let recorded = self.store.snapshots()?;
        let mut problems = Vec::new();
        let mut repairs = Vec::new();
        for record in &recorded {
            if !self.has_snapshot(&record.chain_id) {
                problems.push(format!(
                    "snapshot of layer chain {} is recorded but missing (pull the image again)",
                    record.chain_id
                ));
            }
        }
        problems.extend(self.unverified_layer_problems()?);
        let mut extra = Vec::new();
        let mut unreferenced = Vec::new();
        self.snapshots.walk(&mut |info| {
            let known = recorded.iter().any(|r| r.chain_id.as_str() == info.key);
            if info.kind == Kind::Committed && !known {
                unreferenced.push(info.key.clone());
            } else if info.kind != Kind::Committed
                && info.key.starts_with("extract-")
                && !extraction_is_running(&info.key)
            {
                extra.push((
                    info.key.clone(),
                    "leftover extraction from an interrupted pull",
                ));
            }
            Ok(())
        })?;
        // Children sort after parents by creation; remove newest first.
        extra.reverse();
        if repair {
            unreferenced.reverse();
            // A snapshot can be the parent of another unreferenced one: retry until no
            // more goes.
            let mut left = unreferenced.clone();
            while !left.is_empty() {
                let before = left.len();
                left.retain(|key| self.snapshots.remove(key).is_err());
                if left.len() == before {
                    break;
                }
            }
            for key in &unreferenced {
                if left.contains(key) {
                    repairs.push(format!("could not remove unreferenced snapshot {key}"));
                } else {
                    repairs.push(format!("removed unreferenced snapshot {key}"));
                }
            }
        }
        for (key, what) in extra {
            problems.push(format!("{what}: {key}"));
            if repair {
                match self.snapshots.remove(&key) {
                    Ok(()) => repairs.push(format!("removed snapshot {key}")),
                    Err(error) => repairs.push(format!("could not remove snapshot {key}: {error}")),
                }
            }
        }
        Ok(Checked {
            store,
            snapshot_problems: problems,
            snapshot_repairs: repairs,
            unreferenced_snapshots: if repair { Vec::new() } else { unreferenced },
        })
    }
}

impl Engine {
    /// Layers whose blob is not the tar their config names, among those no snapshot
    /// vouches for (an unpack verifies the diff ID) and whose blob is not the tar itself
    /// (re-hashing the blob verified it). Each blob is read once.
    fn unverified_layer_problems(&self) -> Result<Vec<String>> {
        let mut checked: std::collections::HashMap<(Digest, Digest), bool> =
            std::collections::HashMap::new();
        let mut problems = Vec::new();
        for image in self.store.images()? {
            for layer in &image.layers {
                if layer.blob_digest == layer.diff_id || self.has_snapshot(&layer.chain_id) {
                    continue;
                }
                let key = (layer.blob_digest.clone(), layer.diff_id.clone());
                let matches = match checked.get(&key) {
                    Some(matches) => *matches,
                    None => {
                        let Ok(blob) = self.content.open(&layer.blob_digest) else {
                            // A missing blob is the layerstore's problem, reported already.
                            continue;
                        };
                        let matches =
                            plain_digest(blob).is_ok_and(|digest| digest == layer.diff_id);
                        checked.insert(key, matches);
                        matches
                    }
                };
                if !matches {
                    problems.push(format!(
                        "image {}: layer {} is not the tar its config names (diff id {}); remove the image and pull it again",
                        &image.config_digest.hex()[..12],
                        layer.blob_digest,
                        layer.diff_id
                    ));
                }
            }
        }
        Ok(problems)
    }
}

/// The sha256 of what `blob` decompresses to (gzip, zstd or plain).
fn plain_digest(blob: impl std::io::Read) -> Result<Digest> {
    use sha2::Digest as _;
    let (kind, peeked) = stencil_cow_fs::compression::detect(blob)?;
    let mut plain = stencil_cow_fs::compression::decompress(kind, peeked)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = plain.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())).parse()?)
}

/// Whether the pull that owns extraction `key` (`extract-PID-…`) is still running.
fn extraction_is_running(key: &str) -> bool {
    key.strip_prefix("extract-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Records (without unpacking) an image of one gzip layer holding `content`, whose
    /// config names `diff_id` (the tar's own when `None`).
    fn record(engine: &Engine, content: &[u8], diff_id: Option<&str>) {
        use sha2::Digest as _;
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "file", content)
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let true_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&plain)));
        let store = engine.store();
        let layer = store.put_blob(&gz).unwrap_or_else(|e| panic!("{e}"));
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id.unwrap_or(&true_id)]},
        }))
        .unwrap_or_default();
        let config_digest = store.put_blob(&config).unwrap_or_else(|e| panic!("{e}"));
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.as_str(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer.as_str(), "size": gz.len()}],
        }))
        .unwrap_or_default();
        let manifest = store.put_blob(&manifest).unwrap_or_else(|e| panic!("{e}"));
        store
            .record_image(&manifest, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_layer_that_is_not_the_tar_its_config_names_is_reported() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::open(&dir.path().join("root")).unwrap_or_else(|e| panic!("{e:#}"));
        record(&engine, b"honest\n", None);
        let checked = engine.fsck(false).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(checked.is_clean(), "{checked:?}");
        let lie = format!("sha256:{}", "0".repeat(64));
        record(&engine, b"liar\n", Some(&lie));
        let checked = engine.fsck(false).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(checked.snapshot_problems.len(), 1, "{checked:?}");
        assert!(
            checked.snapshot_problems[0].contains("is not the tar its config names")
                && checked.snapshot_problems[0].contains(&lie),
            "{checked:?}"
        );
    }
}
