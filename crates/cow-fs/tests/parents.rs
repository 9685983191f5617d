//! Directories a layer needs but does not list take their mode and owner from the layers
//! below, as the merged view shows them (umoci, for one, leaves unchanged parents out).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use stencil_cow_fs::{
    ApplyOptions, ErrorKind, OverlaySnapshotter, Snapshotter, apply_layer, apply_layer_tracked,
    settle_implied_dirs,
};

fn layer(entries: &[(&str, tar::EntryType, u32, u64)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, mode, owner) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_uid(*owner);
        header.set_gid(*owner);
        header.set_size(0);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, name, std::io::empty())
            .unwrap_or_else(|e| panic!("building {name}: {e}"));
    }
    builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

fn apply_into_snapshot(
    snapshots: &OverlaySnapshotter,
    key: &str,
    parent: Option<&str>,
    bytes: &[u8],
) {
    snapshots
        .prepare(key, parent)
        .unwrap_or_else(|e| panic!("prepare {key}: {e}"));
    let target = snapshots
        .layer_target(key)
        .unwrap_or_else(|e| panic!("{e}"));
    let options = ApplyOptions::default()
        .whiteouts(target.whiteouts)
        .parents(target.parents.clone());
    apply_layer(bytes, &target.dir, &options).unwrap_or_else(|e| panic!("apply {key}: {e}"));
    snapshots
        .commit(&format!("{key}-done"), key)
        .unwrap_or_else(|e| panic!("commit {key}: {e}"));
}

fn mode_and_owner(path: &Path) -> (u32, u64) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.permissions().mode() & 0o7777, u64::from(meta.uid()))
}

#[test]
fn unlisted_parents_copy_the_lower_directory() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let snapshots = OverlaySnapshotter::new(root.path()).unwrap_or_else(|e| panic!("{e}"));
    // Owners are applied only as root; unprivileged runs check modes alone.
    let owner: u64 = if is_root() { 1000 } else { 0 };
    apply_into_snapshot(
        &snapshots,
        "base",
        None,
        &layer(&[
            ("tmp/", tar::EntryType::Directory, 0o1777, owner),
            ("srv/", tar::EntryType::Directory, 0o750, owner),
            ("srv/data/", tar::EntryType::Directory, 0o700, owner),
        ]),
    );
    // The second layer adds files below tmp/ and srv/data/ without listing either.
    apply_into_snapshot(
        &snapshots,
        "top",
        Some("base-done"),
        &layer(&[
            ("tmp/fifo", tar::EntryType::Fifo, 0o644, 0),
            ("srv/data/file", tar::EntryType::Regular, 0o644, 0),
            ("new/deep/file", tar::EntryType::Regular, 0o644, 0),
        ]),
    );
    // Find the top layer's directory: the one holding tmp/fifo.
    let mut upper = None;
    for entry in std::fs::read_dir(root.path().join("snapshots"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        if entry.path().join("fs/tmp/fifo").exists() {
            upper = Some(entry.path().join("fs"));
        }
    }
    let upper = upper.unwrap_or_else(|| panic!("no snapshot holds tmp/fifo"));
    let table = [
        ("tmp", (0o1777, owner)),
        ("srv", (0o750, owner)),
        ("srv/data", (0o700, owner)),
        // Nothing below to copy from: the default.
        ("new", (0o755, 0)),
        ("new/deep", (0o755, 0)),
    ];
    for (path, expected) in table {
        assert_eq!(mode_and_owner(&upper.join(path)), expected, "{path}");
    }
}

/// A pull applies layers in parallel: the upper layer may be applied before the one below
/// it. Directories it implies are settled from the complete lower layers before commit,
/// and it cannot commit before its parent.
#[test]
fn a_layer_applied_before_its_parent_settles_implied_directories() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let snapshots = OverlaySnapshotter::new(root.path()).unwrap_or_else(|e| panic!("{e}"));
    let owner: u64 = if is_root() { 1000 } else { 0 };
    snapshots
        .prepare_stacked("lower", None)
        .unwrap_or_else(|e| panic!("{e}"));
    snapshots
        .prepare_stacked("upper", Some("lower"))
        .unwrap_or_else(|e| panic!("{e}"));
    // The upper layer first, while the lower one is still empty.
    let upper = snapshots
        .layer_target("upper")
        .unwrap_or_else(|e| panic!("{e}"));
    let options = ApplyOptions::default()
        .whiteouts(upper.whiteouts)
        .parents(upper.parents.clone());
    let top = layer(&[
        ("srv/data/file", tar::EntryType::Regular, 0o644, 0),
        ("srv/data/listed/", tar::EntryType::Directory, 0o711, 0),
        ("srv/data/listed/x", tar::EntryType::Regular, 0o644, 0),
        ("new/file", tar::EntryType::Regular, 0o644, 0),
    ]);
    let applied =
        apply_layer_tracked(top.as_slice(), &upper.dir, &options).unwrap_or_else(|e| panic!("{e}"));
    let implied: Vec<String> = applied
        .implied_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(implied, ["new", "srv", "srv/data"]);
    // Its parent is still active: no commit yet.
    let early = snapshots.commit("upper-done", "upper");
    assert_eq!(
        early.expect_err("commit before the parent").kind(),
        ErrorKind::InvalidState
    );
    let lower = snapshots
        .layer_target("lower")
        .unwrap_or_else(|e| panic!("{e}"));
    apply_layer(
        layer(&[
            ("srv/", tar::EntryType::Directory, 0o750, owner),
            ("srv/data/", tar::EntryType::Directory, 0o700, owner),
        ])
        .as_slice(),
        &lower.dir,
        &ApplyOptions::default().whiteouts(lower.whiteouts),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    snapshots
        .commit("lower-done", "lower")
        .unwrap_or_else(|e| panic!("{e}"));
    // The upper snapshot now rests on the committed name.
    let upper_target = snapshots
        .layer_target("upper")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upper_target.parents, std::slice::from_ref(&lower.dir));
    settle_implied_dirs(
        &upper.dir,
        &applied.implied_dirs,
        &upper_target.parents,
        options.preserve_ownership,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    snapshots
        .commit("upper-done", "upper")
        .unwrap_or_else(|e| panic!("{e}"));
    let info = snapshots
        .stat("upper-done")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.parent.as_deref(), Some("lower-done"));
    for (path, expected) in [
        ("srv", (0o750, owner)),
        ("srv/data", (0o700, owner)),
        ("srv/data/listed", (0o711, 0)),
        ("new", (0o755, 0)),
    ] {
        assert_eq!(mode_and_owner(&upper.dir.join(path)), expected, "{path}");
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
