//! Checking the store: every blob re-hashed, every record's blobs present, reference
//! counts recomputed, leftovers found; optionally repaired.
//!
//! Problems are things that are wrong ([`Problem`]); findings that are normal in a live
//! store are reported beside them and are not problems: blobs no image references yet
//! (a pull records its image after its blobs) and partial ingests that can resume.
//! [`FsckOptions::repair`] removes what nothing references (corrupt and unreferenced
//! blobs, stray files, leftover ingests, orphan snapshot directories), fixes reference
//! counts, and marks images whose blobs are missing or corrupt as broken.
//!
//! ```
//! use stencil_layerstore::Store;
//! use stencil_layerstore::fsck::FsckOptions;
//!
//! let root = tempfile::tempdir().unwrap();
//! let store = Store::open(root.path()).unwrap();
//! store.put_blob(b"loose").unwrap();
//! let report = store.fsck(&FsckOptions::default()).unwrap();
//! assert!(report.problems.is_empty());
//! assert_eq!(report.unreferenced_blobs.len(), 1);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::params;
use stencil_reference::Digest;

use crate::content::{IngestStatus, Ingester, digest_reader, remove_unheld_ingest};
use crate::error::{Error, Result};
use crate::meta;
use crate::store::Store;

/// How to run fsck.
#[derive(Debug, Clone, Default)]
pub struct FsckOptions {
    /// Fix what can be fixed (see the module documentation).
    pub repair: bool,
}

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A blob whose bytes do not hash to its name.
    CorruptBlob {
        /// The name (expected digest).
        digest: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A file under `blobs/` that is not named by a digest.
    StrayFile {
        /// The file.
        path: PathBuf,
    },
    /// A blob an image needs is missing.
    MissingBlob {
        /// The image's manifest digest.
        image: Digest,
        /// The missing blob.
        digest: Digest,
        /// What the blob is for the image: manifest, config, layer, index.
        role: &'static str,
    },
    /// A blob held for something other than an image (a registry repository) is missing.
    MissingHeldBlob {
        /// Who holds it (`registry:REPO`, …).
        holder: String,
        /// The missing blob.
        digest: Digest,
    },
    /// A snapshot's recorded reference count differs from its users.
    RefcountMismatch {
        /// The snapshot's chain ID.
        chain_id: Digest,
        /// The count in the database.
        recorded: u64,
        /// The count of images and containers using it.
        computed: u64,
    },
    /// A snapshot directory that no record names.
    OrphanSnapshot {
        /// The directory.
        path: PathBuf,
    },
    /// An ingest directory left by an interrupted commit or abort (no ref or no data).
    LeftoverIngest {
        /// The directory.
        path: PathBuf,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(f, "blob {digest} is corrupt: its bytes hash to {actual}")
            }
            Problem::StrayFile { path } => {
                write!(f, "stray file {} in the blob store", path.display())
            }
            Problem::MissingBlob {
                image,
                digest,
                role,
            } => write!(f, "image {image} misses its {role} blob {digest}"),
            Problem::MissingHeldBlob { holder, digest } => {
                write!(f, "{holder} holds blob {digest}, which is missing")
            }
            Problem::RefcountMismatch {
                chain_id,
                recorded,
                computed,
            } => write!(
                f,
                "snapshot {chain_id} has reference count {recorded} but {computed} users"
            ),
            Problem::OrphanSnapshot { path } => write!(
                f,
                "snapshot directory {} belongs to no record",
                path.display()
            ),
            Problem::LeftoverIngest { path } => write!(
                f,
                "ingest directory {} is a leftover of an interrupted write",
                path.display()
            ),
        }
    }
}

/// What fsck found (and, with repair, did).
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs_checked: u64,
    /// Their total size.
    pub bytes_checked: u64,
    /// Everything wrong.
    pub problems: Vec<Problem>,
    /// Blobs no image references (not a problem: reclaimable).
    pub unreferenced_blobs: Vec<Digest>,
    /// Ingests that can be resumed (not a problem).
    pub partial_ingests: Vec<IngestStatus>,
    /// What repair did, one line each.
    pub repairs: Vec<String>,
}

impl Store {
    /// Checks the whole store; see the module documentation.
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut present: BTreeSet<Digest> = BTreeSet::new();
        let mut corrupt: BTreeSet<Digest> = BTreeSet::new();
        let mut stray: Vec<PathBuf> = Vec::new();
        self.content().walk_paths(&mut |path, digest| {
            let Some(digest) = digest else {
                stray.push(path);
                return Ok(());
            };
            let mut file = File::open(&path).map_err(Error::io(&path))?;
            if let Some((actual, size)) =
                digest_reader(digest.algorithm(), &mut file).map_err(Error::io(&path))?
            {
                report.blobs_checked += 1;
                report.bytes_checked += size;
                if actual != digest {
                    corrupt.insert(digest.clone());
                    report.problems.push(Problem::CorruptBlob {
                        digest: digest.clone(),
                        actual,
                    });
                }
            }
            present.insert(digest);
            Ok(())
        })?;
        for path in stray {
            report.problems.push(Problem::StrayFile { path });
        }

        let images = self.images()?;
        let mut referenced: BTreeSet<Digest> = BTreeSet::new();
        let mut broken: BTreeMap<i64, String> = BTreeMap::new();
        for image in &images {
            let mut needs: Vec<(&Digest, &'static str)> = vec![
                (&image.manifest_digest, "manifest"),
                (&image.config_digest, "config"),
            ];
            if let Some(index) = &image.index_digest {
                needs.push((index, "index"));
            }
            needs.extend(
                image
                    .layers
                    .iter()
                    .map(|layer| (&layer.blob_digest, "layer")),
            );
            for (digest, role) in needs {
                referenced.insert(digest.clone());
                if !present.contains(digest) || corrupt.contains(digest) {
                    broken
                        .entry(image.id)
                        .or_insert_with(|| format!("{role} blob {digest} missing or corrupt"));
                    if !present.contains(digest) {
                        report.problems.push(Problem::MissingBlob {
                            image: image.manifest_digest.clone(),
                            digest: digest.clone(),
                            role,
                        });
                    }
                }
            }
        }
        for (holder, digest) in self.blob_holds()? {
            if !present.contains(&digest) {
                report.problems.push(Problem::MissingHeldBlob {
                    holder,
                    digest: digest.clone(),
                });
            }
            referenced.insert(digest);
        }
        report.unreferenced_blobs = present
            .difference(&referenced)
            .filter(|digest| !corrupt.contains(*digest))
            .cloned()
            .collect();

        let database = self.database();
        let mismatches: Vec<(Digest, u64, u64)> = database.read(|connection| {
            let mut statement = connection
                .prepare("SELECT chain_id, key, snapshot_id, refcount FROM snapshots")
                .map_err(|source| database.error(source))?;
            let snapshots = statement
                .query_map([], meta::snapshot_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| database.error(source))?;
            let mut mismatches = Vec::new();
            for snapshot in snapshots {
                let computed = meta::computed_refcount(connection, snapshot.chain_id.as_str())
                    .map_err(|source| database.error(source))?;
                if computed != snapshot.refcount {
                    mismatches.push((snapshot.chain_id, snapshot.refcount, computed));
                }
            }
            Ok(mismatches)
        })?;
        for (chain_id, recorded, computed) in &mismatches {
            report.problems.push(Problem::RefcountMismatch {
                chain_id: chain_id.clone(),
                recorded: *recorded,
                computed: *computed,
            });
        }

        let known_ids: BTreeSet<u64> = database.read(|connection| {
            let mut statement = connection
                .prepare("SELECT snapshot_id FROM snapshots WHERE snapshot_id IS NOT NULL UNION SELECT snapshot_id FROM containers WHERE snapshot_id IS NOT NULL")
                .map_err(|source| database.error(source))?;
            statement
                .query_map([], |row| row.get::<_, i64>(0).map(|id| id as u64))
                .and_then(|rows| rows.collect::<rusqlite::Result<BTreeSet<_>>>())
                .map_err(|source| database.error(source))
        })?;
        let snapshots_dir = self.root().join("snapshots");
        if let Ok(entries) = fs::read_dir(&snapshots_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|name| name.parse::<u64>().ok()) else {
                    continue;
                };
                if entry.path().is_dir() && !known_ids.contains(&id) {
                    report
                        .problems
                        .push(Problem::OrphanSnapshot { path: entry.path() });
                }
            }
        }

        for status in self.content().ingests()? {
            if status.is_leftover() {
                report.problems.push(Problem::LeftoverIngest {
                    path: status.dir.clone(),
                });
            } else {
                report.partial_ingests.push(status);
            }
        }

        if options.repair {
            self.repair(&mut report, &broken, &mismatches)?;
        }
        Ok(report)
    }

    fn repair(
        &self,
        report: &mut FsckReport,
        broken: &BTreeMap<i64, String>,
        mismatches: &[(Digest, u64, u64)],
    ) -> Result<()> {
        let database = self.database();
        database.write(|transaction| {
            for (id, reason) in broken {
                transaction
                    .execute(
                        "UPDATE images SET broken = ?1 WHERE id = ?2",
                        params![reason, id],
                    )
                    .map_err(|source| database.error(source))?;
            }
            for (chain_id, _, computed) in mismatches {
                transaction
                    .execute(
                        "UPDATE snapshots SET refcount = ?1 WHERE chain_id = ?2",
                        params![*computed as i64, chain_id.as_str()],
                    )
                    .map_err(|source| database.error(source))?;
            }
            Ok(())
        })?;
        report.repairs.extend(
            broken
                .values()
                .map(|reason| format!("marked an image broken: {reason}")),
        );
        report
            .repairs
            .extend(mismatches.iter().map(|(chain_id, _, computed)| {
                format!("set the reference count of {chain_id} to {computed}")
            }));
        for problem in &report.problems {
            match problem {
                Problem::CorruptBlob { digest, .. } => {
                    let path = self.content().blob_path(digest);
                    fs::remove_file(&path).map_err(Error::io(&path))?;
                    report
                        .repairs
                        .push(format!("removed corrupt blob {digest}"));
                }
                Problem::StrayFile { path } => {
                    fs::remove_file(path).map_err(Error::io(path))?;
                    report
                        .repairs
                        .push(format!("removed stray file {}", path.display()));
                }
                Problem::OrphanSnapshot { path } => {
                    fs::remove_dir_all(path).map_err(Error::io(path))?;
                    report
                        .repairs
                        .push(format!("removed orphan snapshot {}", path.display()));
                }
                Problem::LeftoverIngest { path } => {
                    if remove_unheld_ingest(path)? {
                        report
                            .repairs
                            .push(format!("removed leftover ingest {}", path.display()));
                    }
                }
                Problem::MissingHeldBlob { holder, digest } => {
                    self.release_blobs(holder, Some(digest))?;
                    report
                        .repairs
                        .push(format!("dropped {holder}'s hold on missing blob {digest}"));
                }
                Problem::MissingBlob { .. } | Problem::RefcountMismatch { .. } => {}
            }
        }
        for digest in self.collect_garbage(Duration::ZERO)? {
            report
                .repairs
                .push(format!("removed unreferenced blob {digest}"));
        }
        Ok(())
    }
}
