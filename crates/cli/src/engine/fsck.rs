//! `fsck`: the layerstore's checks plus the agreement between the database and the
//! snapshotter (every recorded snapshot exists, no snapshot or extraction is left over).

use anyhow::Result;
use stencil_cow_fs::{Kind, Snapshotter};
use stencil_layerstore::fsck::{FsckOptions, FsckReport};

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

/// Whether the pull that owns extraction `key` (`extract-PID-…`) is still running.
fn extraction_is_running(key: &str) -> bool {
    key.strip_prefix("extract-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}
