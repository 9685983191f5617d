//! One conformance suite for the [`Snapshotter`] trait, run against both drivers.
//!
//! Every case gets a fresh store root and a constructor for the driver under test. The
//! cases cover the life cycle (prepare, apply, commit, stack, view), every error kind the
//! API promises, walking, usage, persistence across instances, a container change whose
//! diff round-trips through `apply_layer`, and a stack of 128 layers that mounts.

mod common;

use std::fs;
use std::path::Path;

use common::{Layer, fingerprint, require_root};
use stencil_cow_fs::{
    ApplyOptions, DiffOptions, ErrorKind, Info, Kind, NativeSnapshotter, OverlaySnapshotter,
    Snapshotter, apply_layer, mount_all, unmount_all,
};

type Make = fn(&Path) -> Box<dyn Snapshotter>;

fn overlay(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(OverlaySnapshotter::new(root).expect("overlay store"))
}

fn native(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(NativeSnapshotter::new(root).expect("native store"))
}

/// Prepares `key` on `parent`, applies `layer` into it and commits it as `name`.
fn layer(s: &dyn Snapshotter, name: &str, parent: Option<&str>, layer: Layer) {
    let key = format!("extract-{name}");
    s.prepare(&key, parent).expect("prepare");
    let target = s.layer_target(&key).expect("layer target");
    let options = ApplyOptions::default().whiteouts(target.whiteouts);
    apply_layer(layer.tar().as_slice(), &target.dir, &options).expect("apply");
    s.commit(name, &key).expect("commit");
}

/// Mounts `key` on a fresh directory, runs `body` on it, and unmounts.
fn with_mounted<T>(s: &dyn Snapshotter, key: &str, body: impl FnOnce(&Path) -> T) -> T {
    let mountpoint = tempfile::tempdir().expect("mountpoint");
    mount_all(&s.mounts(key).expect("mounts"), mountpoint.path()).expect("mount");
    let result = body(mountpoint.path());
    unmount_all(mountpoint.path()).expect("unmount");
    result
}

fn life_cycle(make: Make, root: &Path) {
    let s = make(root);
    layer(
        &*s,
        "base",
        None,
        // A whiteout in a bottom layer hides nothing, and must not show up as a device.
        Layer::new()
            .dir("etc")
            .file("etc/os", b"base\n")
            .file(".wh.ghost", b""),
    );
    layer(
        &*s,
        "app",
        Some("base"),
        Layer::new().dir("app").file("app/bin", b"app\n"),
    );
    s.prepare("container", Some("app"))
        .expect("prepare container");
    with_mounted(&*s, "container", |m| {
        assert_eq!(fs::read(m.join("etc/os")).expect("base file"), b"base\n");
        assert_eq!(fs::read(m.join("app/bin")).expect("app file"), b"app\n");
        fs::write(m.join("etc/os"), b"changed\n").expect("write through");
    });
    s.view("look", Some("app")).expect("view");
    with_mounted(&*s, "look", |m| {
        assert_eq!(
            fs::read(m.join("etc/os")).expect("view file"),
            b"base\n",
            "a container's write leaked"
        );
        let error = fs::write(m.join("new"), b"x").expect_err("views are read-only");
        assert_eq!(error.raw_os_error(), Some(libc::EROFS));
    });
    s.view("single", Some("base")).expect("view of one layer");
    with_mounted(&*s, "single", |m| {
        assert_eq!(fs::read(m.join("etc/os")).expect("view file"), b"base\n");
        assert!(
            fs::symlink_metadata(m.join("ghost")).is_err(),
            "a whiteout shows"
        );
    });
    s.view("empty-view", None).expect("parentless view");
    let base = s.stat("base").expect("stat");
    assert_eq!((base.kind, base.parent.clone()), (Kind::Committed, None));
    let app = s.stat("app").expect("stat");
    assert_eq!(app.parent.as_deref(), Some("base"));
    assert_eq!(s.stat("look").expect("stat").kind, Kind::View);
    assert_eq!(s.stat("container").expect("stat").kind, Kind::Active);
}

fn errors(make: Make, root: &Path) {
    let s = make(root);
    layer(&*s, "base", None, Layer::new().file("f", b"x"));
    s.prepare("active", Some("base")).expect("prepare");
    s.view("view", Some("base")).expect("view");
    #[track_caller]
    fn check<T: std::fmt::Debug>(result: stencil_cow_fs::Result<T>, expected: ErrorKind) {
        let error = result.expect_err("must fail");
        assert_eq!(error.kind(), expected, "{error}");
    }
    check(s.prepare("active", None), ErrorKind::AlreadyExists);
    check(s.prepare("base", None), ErrorKind::AlreadyExists);
    check(s.prepare("new", Some("missing")), ErrorKind::NotFound);
    check(s.prepare("new", Some("active")), ErrorKind::InvalidState);
    check(s.view("new", Some("view")), ErrorKind::InvalidState);
    check(s.prepare("", None), ErrorKind::InvalidKey);
    check(s.prepare("nul\0key", None), ErrorKind::InvalidKey);
    check(s.commit("frozen", "view"), ErrorKind::InvalidState);
    check(s.commit("frozen", "base"), ErrorKind::InvalidState);
    check(s.commit("base", "active"), ErrorKind::AlreadyExists);
    check(s.commit("frozen", "missing"), ErrorKind::NotFound);
    check(s.remove("base"), ErrorKind::InUse);
    check(s.remove("missing"), ErrorKind::NotFound);
    check(s.mounts("base"), ErrorKind::InvalidState);
    check(s.mounts("missing"), ErrorKind::NotFound);
    check(s.layer_target("view"), ErrorKind::InvalidState);
    check(s.stat("missing"), ErrorKind::NotFound);
    check(s.usage("missing"), ErrorKind::NotFound);
    // Nothing above may have changed the catalogue.
    let mut keys = Vec::new();
    s.walk(&mut |info: &Info| {
        keys.push(info.key.clone());
        Ok(())
    })
    .expect("walk");
    assert_eq!(keys, ["active", "base", "view"]);
}

fn walk_remove_and_persist(make: Make, root: &Path) {
    {
        let s = make(root);
        layer(&*s, "b", None, Layer::new().file("f", b"x"));
        layer(&*s, "a", Some("b"), Layer::new().file("g", b"y"));
        s.prepare("c", Some("a")).expect("prepare");
    }
    let s = make(root);
    let mut seen = Vec::new();
    s.walk(&mut |info: &Info| {
        seen.push((info.key.clone(), info.kind, info.parent.clone()));
        Ok(())
    })
    .expect("walk");
    assert_eq!(
        seen,
        [
            ("a".to_owned(), Kind::Committed, Some("b".to_owned())),
            ("b".to_owned(), Kind::Committed, None),
            ("c".to_owned(), Kind::Active, Some("a".to_owned())),
        ]
    );
    let dir_count = || {
        fs::read_dir(root.join("snapshots"))
            .expect("snapshots")
            .count()
    };
    assert_eq!(dir_count(), 3);
    // A directory left by a crash before the catalogue was saved goes with the next removal.
    fs::create_dir_all(root.join("snapshots/999/fs")).expect("orphan");
    s.remove("c").expect("remove active");
    s.remove("a").expect("remove committed leaf");
    s.remove("b").expect("remove base");
    assert_eq!(dir_count(), 0);
    let mut left = 0;
    s.walk(&mut |_| {
        left += 1;
        Ok(())
    })
    .expect("walk");
    assert_eq!(left, 0);
}

fn usage(make: Make, root: &Path) {
    let s = make(root);
    layer(
        &*s,
        "base",
        None,
        Layer::new()
            .file("big", &vec![1u8; 1 << 20])
            .file("small", b"x"),
    );
    let usage = s.usage("base").expect("usage");
    assert!(usage.size >= 1 << 20, "{usage:?}");
    assert!(usage.inodes >= 3, "{usage:?}");
}

/// The acceptance round trip: change a container (add, modify, delete, replace a
/// directory by a file and a file by a directory, empty and refill a directory), diff it,
/// apply the diff on top of the parent in a flat directory, and compare with what the
/// container shows.
fn diff_round_trip(make: Make, root: &Path) {
    let s = make(root);
    let base = || {
        Layer::new()
            .dir("etc")
            .file("etc/keep", b"same")
            .file("etc/modify", b"before")
            .file("etc/delete", b"bye")
            .dir("dir-to-file")
            .file("dir-to-file/inner", b"i")
            .file("file-to-dir", b"f")
            .dir("refill")
            .file("refill/old", b"o")
            .dir("refill/sub")
            .file("hard", b"linked")
            .link("hard2", "hard")
            .dir("moveme")
            .file("moveme/inside", b"m")
    };
    layer(&*s, "base", None, base());
    s.prepare("c", Some("base")).expect("prepare");
    let expected = with_mounted(&*s, "c", |m| {
        fs::write(m.join("etc/added"), b"new").expect("add");
        fs::write(m.join("etc/modify"), b"after").expect("modify");
        fs::remove_file(m.join("etc/delete")).expect("delete");
        fs::remove_dir_all(m.join("dir-to-file")).expect("rm dir");
        fs::write(m.join("dir-to-file"), b"now a file").expect("file");
        fs::remove_file(m.join("file-to-dir")).expect("rm file");
        fs::create_dir(m.join("file-to-dir")).expect("dir");
        fs::write(m.join("file-to-dir/x"), b"x").expect("file in dir");
        fs::remove_dir_all(m.join("refill")).expect("rm refill");
        fs::create_dir(m.join("refill")).expect("refill");
        fs::write(m.join("refill/new"), b"n").expect("refill file");
        fs::hard_link(m.join("etc/added"), m.join("etc/added-link")).expect("link");
        // Renaming a lower directory: `mv` copies when overlay answers EXDEV.
        let moved = std::process::Command::new("mv")
            .arg(m.join("moveme"))
            .arg(m.join("moved"))
            .status()
            .expect("mv");
        assert!(moved.success());
        fingerprint(m, false)
    });
    let mut tar = Vec::new();
    s.diff("c", &mut tar, &DiffOptions::default().fixed_mtime(0))
        .expect("diff");
    let mut again = Vec::new();
    s.diff("c", &mut again, &DiffOptions::default().fixed_mtime(0))
        .expect("diff");
    assert_eq!(
        tar, again,
        "diffs with a fixed mtime must be byte-identical"
    );
    let flat = tempfile::tempdir().expect("flat");
    apply_layer(
        base().tar().as_slice(),
        flat.path(),
        &ApplyOptions::default(),
    )
    .expect("base");
    apply_layer(tar.as_slice(), flat.path(), &ApplyOptions::default()).expect("diff");
    assert_eq!(fingerprint(flat.path(), false), expected);
    // The same diff committed as a layer stacks to the same tree.
    layer(
        &*s,
        "committed-diff",
        Some("base"),
        RawLayer(tar).into_layer(),
    );
    s.view("check", Some("committed-diff")).expect("view");
    let stacked = with_mounted(&*s, "check", |m| fingerprint(m, false));
    assert_eq!(stacked, expected);
}

/// Wraps an existing tar so that `layer` can apply it.
struct RawLayer(Vec<u8>);

impl RawLayer {
    fn into_layer(self) -> Layer {
        Layer::from_tar(self.0)
    }
}

fn deep_stack(make: Make, root: &Path) {
    // A long store path makes the classic single `lowerdir=` string longer than the
    // kernel's 4096-byte page, so the stack only mounts through `lowerdir+`.
    let root = root.join("a-store-root-with-a-deliberately-long-name-0123456789");
    let s = make(&root);
    let mut parent: Option<String> = None;
    for index in 0..128 {
        let name = format!("sha256:{index:064x}");
        layer(
            &*s,
            &name,
            parent.as_deref(),
            Layer::new().file(&format!("layer-{index:03}"), b"l"),
        );
        parent = Some(name);
    }
    let mounts = s.prepare("container", parent.as_deref()).expect("prepare");
    let option_bytes: usize = mounts
        .iter()
        .flat_map(|m| &m.options)
        .map(String::len)
        .sum();
    if mounts[0].kind == "overlay" {
        assert!(option_bytes > 4096, "only {option_bytes} bytes of options");
    }
    with_mounted(&*s, "container", |m| {
        let count = fs::read_dir(m).expect("readdir").count();
        assert_eq!(count, 128, "mount options were {option_bytes} bytes");
    });
}

/// One conformance case: it gets the driver's constructor and a fresh store root.
type Case = fn(Make, &Path);

/// Two snapshotter instances on one root (as two `stencil` processes would have) prepare
/// and commit at the same time; the catalogue's lock must keep every change.
fn concurrent_changes(make: Make, root: &Path) {
    std::thread::scope(|scope| {
        for worker in 0..2 {
            scope.spawn(move || {
                let s = make(root);
                for index in 0..15 {
                    let key = format!("w{worker}-{index:02}");
                    s.prepare(&key, None).expect("prepare");
                    if index % 3 == 0 {
                        s.commit(&format!("{key}-committed"), &key).expect("commit");
                    }
                }
            });
        }
    });
    let s = make(root);
    let mut count = 0;
    s.walk(&mut |_| {
        count += 1;
        Ok(())
    })
    .expect("walk");
    assert_eq!(count, 30);
    let dirs = fs::read_dir(root.join("snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(dirs, 30, "every snapshot has its own directory");
}

const CASES: &[(&str, Case)] = &[
    ("concurrent changes", concurrent_changes),
    ("life cycle", life_cycle),
    ("errors", errors),
    ("walk, remove and persist", walk_remove_and_persist),
    ("usage", usage),
    ("diff round trip", diff_round_trip),
    ("128-layer stack", deep_stack),
];

#[track_caller]
fn check(driver: &str, make: Make) {
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let root = tempfile::tempdir().expect("root");
        if std::panic::catch_unwind(|| case(make, root.path())).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "{driver} driver failed: {failed:?}");
}

#[test]
fn overlay_driver_conforms() {
    if require_root("overlay_driver_conforms") {
        check("overlay", overlay);
    }
}

#[test]
fn native_driver_conforms() {
    if require_root("native_driver_conforms") {
        check("native", native);
    }
}
