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
        self.snapshots.walk(&mut |info| {
            let known = recorded.iter().any(|r| r.chain_id.as_str() == info.key);
            if info.kind == Kind::Committed && !known {
                extra.push((info.key.clone(), "committed snapshot no image uses"));
            } else if info.kind != Kind::Committed && info.key.starts_with("extract-") {
                extra.push((
                    info.key.clone(),
                    "leftover extraction from an interrupted pull",
                ));
            }
            Ok(())
        })?;
        // Children sort after parents by creation; remove newest first.
        extra.reverse();
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
        })
    }
}
