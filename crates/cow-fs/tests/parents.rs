//! Directories a layer needs but does not list take their mode and owner from the layers
//! below, as the merged view shows them (umoci, for one, leaves unchanged parents out).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use stencil_cow_fs::{ApplyOptions, OverlaySnapshotter, Snapshotter, apply_layer};

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

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
