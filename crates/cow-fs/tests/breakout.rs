//! The breakout suite: hostile layers that try to write, chmod, chown, link or delete
//! outside the target directory, modelled on containerd's `TestBreakouts` and the tar-rs
//! advisories (RUSTSEC-2018-0002, RUSTSEC-2021-0080, CVE-2026-33055/33056).
//!
//! Each case applies its layers to `T/root` beside a victim directory `T/victim`. Whatever
//! the outcome (success or the expected error kind), the victim must be byte-for-byte
//! untouched, down to its change times, and nothing new may appear in `T`.
//!
//! Symlinks are re-rooted, not refused: `abs -> /tmp/x/victim` means `ROOT/tmp/x/victim`.
//! When that in-root target does not exist, the symlink is no usable parent and the entry
//! fails with `ErrorKind::Io` (rather than creating directories along the link).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Layer, fingerprint, require_root};
use stencil_cow_fs::{ApplyOptions, ErrorKind, WhiteoutMode, apply_layer};

struct Case {
    name: &'static str,
    /// Builds the layers from the victim's absolute path.
    layers: fn(&str) -> Vec<Layer>,
    mode: WhiteoutMode,
    /// `None` when the last layer must apply cleanly.
    expected: Option<ErrorKind>,
    /// Extra check inside the root after the last layer.
    then: Option<fn(&Path)>,
}

fn victim(dir: &Path) {
    let victim = dir.join("victim");
    fs::create_dir_all(victim.join("sub")).expect("victim");
    fs::write(victim.join("f"), b"victim data").expect("victim file");
    fs::write(victim.join("sub/g"), b"more victim data").expect("victim file");
    fs::set_permissions(victim.join("f"), fs::Permissions::from_mode(0o640)).expect("chmod");
    std::os::unix::fs::symlink("f", victim.join("link")).expect("victim link");
}

#[track_caller]
fn check(case: &Case) {
    let temporary = tempfile::tempdir().expect("tempdir");
    let base = temporary.path();
    victim(base);
    let root = base.join("root");
    fs::create_dir(&root).expect("root");
    let before = fingerprint(&base.join("victim"), true);
    let victim_path = base.join("victim").display().to_string();
    let layers = (case.layers)(&victim_path);
    let count = layers.len();
    let options = ApplyOptions::default().whiteouts(case.mode);
    for (index, layer) in layers.into_iter().enumerate() {
        let result = apply_layer(layer.tar().as_slice(), &root, &options);
        if index + 1 < count {
            result.unwrap_or_else(|e| panic!("{}: setup layer {index} failed: {e}", case.name));
            continue;
        }
        match (result, case.expected) {
            (Ok(_), None) => {}
            (Err(e), Some(kind)) => assert_eq!(e.kind(), kind, "{}: wrong error: {e}", case.name),
            (Ok(_), Some(kind)) => panic!("{}: applied, but expected {kind:?}", case.name),
            (Err(e), None) => panic!("{}: expected success, got {e}", case.name),
        }
    }
    let after = fingerprint(&base.join("victim"), true);
    assert_eq!(before, after, "{}: the victim directory changed", case.name);
    let mut names: Vec<_> = fs::read_dir(base)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "victim"],
        "{}: something appeared beside the root",
        case.name
    );
    if let Some(then) = case.then {
        then(&root);
    }
}

fn regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn cases() -> Vec<Case> {
    let flat = WhiteoutMode::Delete;
    let overlay = WhiteoutMode::Overlay;
    vec![
        Case {
            name: "dotdot file clamps to the root",
            layers: |_| vec![Layer::new().file("../victim/f", b"owned")],
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("victim/f")))),
        },
        Case {
            name: "deep dotdot file",
            layers: |_| vec![Layer::new().file("../../../../../../victim/f", b"owned")],
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("victim/f")))),
        },
        Case {
            name: "dotdot in the middle of a name",
            layers: |_| vec![Layer::new().file("a/../../victim/f", b"owned")],
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "absolute file name",
            layers: |v| vec![Layer::new().file(&format!("{v}/f"), b"owned")],
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "symlink up and out, then write through it",
            layers: |_| {
                vec![
                    Layer::new().dir("victim"),
                    Layer::new()
                        .symlink("up", "../victim")
                        .file("up/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("victim/f")))),
        },
        Case {
            name: "absolute symlink, then write through it",
            layers: |v| {
                vec![
                    Layer::new().dir(v),
                    Layer::new().symlink("abs", v).file("abs/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "symlink to / then dotdot through it",
            layers: |_| {
                vec![
                    Layer::new()
                        .symlink("r", "/")
                        .file("r/../../victim/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "symlink chain rising out",
            layers: |_| {
                vec![
                    Layer::new()
                        .symlink("a", "b")
                        .symlink("b", "../../..")
                        .file("a/victim/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "symlink loop as a parent",
            layers: |_| vec![Layer::new().symlink("l", "l").file("l/f", b"owned")],
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "hard link to a dotdot path",
            layers: |_| vec![Layer::new().link("h", "../victim/f")],
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "hard link to an absolute path",
            layers: |v| vec![Layer::new().link("h", &format!("{v}/f"))],
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "hard link through a symlinked directory",
            layers: |v| vec![Layer::new().symlink("s", v).link("h", "s/f")],
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "hard link to a symlink pointing out, then write the link (RUSTSEC-2018-0002)",
            layers: |v| {
                vec![
                    Layer::new()
                        .symlink("x", &format!("{v}/f"))
                        .link("y", "x")
                        .file("y", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("y")))),
        },
        Case {
            name: "file replaces a symlink pointing out instead of writing through it",
            layers: |v| {
                vec![
                    Layer::new()
                        .symlink("f", &format!("{v}/f"))
                        .file("f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("f")))),
        },
        Case {
            name: "chmod through a symlink: directory entry over a symlink (CVE-2026-33056)",
            layers: |v| vec![Layer::new().symlink("s", v).mode(0o777).dir("s")],
            mode: flat,
            expected: None,
            then: Some(|root| assert!(root.join("s").symlink_metadata().is_ok_and(|m| m.is_dir()))),
        },
        Case {
            name: "chmod through a symlink: file entry over a symlink to a file",
            layers: |v| {
                vec![
                    Layer::new()
                        .symlink("s", &format!("{v}/f"))
                        .mode(0o4777)
                        .file("s", b""),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "chown and utimes of a symlink pointing out change the link only",
            layers: |v| {
                vec![
                    Layer::new()
                        .owner(4242, 4242)
                        .mtime(1)
                        .symlink("s", &format!("{v}/f")),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "directory replaced by a symlink, then written through",
            layers: |v| {
                vec![
                    Layer::new().dir(v).dir("d").file("d/a", b"inside"),
                    Layer::new().symlink("d", v).file("d/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "directory replaced by a symlink within one layer (stale parent cache)",
            layers: |v| {
                vec![
                    Layer::new()
                        .dir(v)
                        .dir("d")
                        .file("d/a", b"inside")
                        .symlink("d", v)
                        .file("d/f", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "directories created through a symlink stay inside (RUSTSEC-2021-0080)",
            layers: |v| {
                vec![
                    Layer::new()
                        .dir(v)
                        .symlink("x", v)
                        .dir("x/newdir")
                        .dir("x/sub/deeper"),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "device node over a symlink pointing out",
            layers: |v| {
                vec![
                    Layer::new()
                        .symlink("n", &format!("{v}/f"))
                        .char_device("n", 1, 3),
                ]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "fifo through a symlinked parent",
            layers: |v| vec![Layer::new().symlink("p", v).fifo("p/fifo")],
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "whiteout with dotdot deletes nothing outside",
            layers: |_| vec![Layer::new().file("../.wh.victim", b"")],
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "whiteout through a symlinked parent",
            layers: |v| {
                let parent = Path::new(v)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                vec![Layer::new().symlink("s", &parent).file("s/.wh.victim", b"")]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "opaque marker through a symlinked parent (delete mode)",
            layers: |v| vec![Layer::new().symlink("s", v).file("s/.wh..wh..opq", b"")],
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "opaque marker through a symlinked parent (overlay mode)",
            layers: |v| vec![Layer::new().symlink("s", v).file("s/.wh..wh..opq", b"")],
            mode: overlay,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "overlay whiteout through a symlinked parent",
            layers: |v| vec![Layer::new().symlink("s", v).file("s/.wh.f", b"")],
            mode: overlay,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "whiteout of dot",
            layers: |_| vec![Layer::new().file("a/.wh..", b"")],
            mode: flat,
            expected: Some(ErrorKind::InvalidWhiteout),
            then: None,
        },
        Case {
            name: "whiteout of dotdot",
            layers: |_| vec![Layer::new().file("a/.wh...", b"")],
            mode: flat,
            expected: Some(ErrorKind::InvalidWhiteout),
            then: None,
        },
        Case {
            name: "empty whiteout name",
            layers: |_| vec![Layer::new().file(".wh.", b"")],
            mode: overlay,
            expected: Some(ErrorKind::InvalidWhiteout),
            then: None,
        },
        Case {
            name: "the root replaced by a symlink",
            layers: |v| vec![Layer::new().symlink(".", v)],
            mode: flat,
            expected: Some(ErrorKind::InvalidPath),
            then: None,
        },
        Case {
            name: "the root replaced by a file",
            layers: |_| vec![Layer::new().file("/", b"owned")],
            mode: flat,
            expected: Some(ErrorKind::InvalidPath),
            then: None,
        },
        Case {
            name: "hard link to the root",
            layers: |_| vec![Layer::new().link("h", "..")],
            mode: flat,
            expected: Some(ErrorKind::InvalidPath),
            then: None,
        },
        Case {
            name: "root directory entry changes only the root",
            layers: |_| vec![Layer::new().mode(0o700).dir("./")],
            mode: flat,
            expected: None,
            then: Some(|root| {
                assert_eq!(
                    fs::metadata(root).expect("root").permissions().mode() & 0o7777,
                    0o700
                )
            }),
        },
        Case {
            name: "PAX path overriding the header name with dotdot",
            layers: |_| {
                vec![
                    Layer::new()
                        .pax("path", b"../victim/f")
                        .file("harmless", b"owned"),
                ]
            },
            mode: flat,
            expected: None,
            then: Some(|root| assert!(regular(&root.join("victim/f")))),
        },
        Case {
            name: "PAX linkpath escaping for a symlink, then write through",
            layers: |v| {
                vec![
                    Layer::new()
                        .pax("linkpath", v.as_bytes())
                        .symlink("s", "ok")
                        .file("s/f", b"owned"),
                ]
            },
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "PAX size smuggling a second header (CVE-2026-33055)",
            layers: |_| {
                let smuggled = Layer::new().file("../victim/f", b"owned").tar();
                vec![
                    Layer::new()
                        .pax("size", b"0")
                        .file("carrier", &smuggled[..1024]),
                ]
            },
            mode: flat,
            expected: None,
            then: Some(|root| {
                // The PAX size wins, as in GNU tar: the carrier is empty and the next
                // header is read where its data would have been, clamped into the root.
                assert_eq!(fs::read(root.join("carrier")).expect("carrier"), b"");
                assert!(regular(&root.join("victim/f")));
            }),
        },
        Case {
            name: "GNU long name with dotdot",
            layers: |_| {
                let long = format!(
                    "{}/../../../../victim/f",
                    "a/".repeat(60).trim_end_matches('/')
                );
                vec![Layer::new().file(&long, b"owned")]
            },
            mode: flat,
            expected: None,
            then: None,
        },
        Case {
            name: "hard link to itself",
            layers: |_| vec![Layer::new().file("f", b"x").link("f", "f")],
            mode: flat,
            expected: Some(ErrorKind::InvalidPath),
            then: None,
        },
        Case {
            name: "symlink pointing out used as a hard link target later written",
            layers: |v| {
                vec![
                    Layer::new()
                        .symlink("s", &format!("{v}/sub"))
                        .link("t", "s/g"),
                ]
            },
            mode: flat,
            expected: Some(ErrorKind::Io),
            then: None,
        },
        Case {
            name: "overlay xattrs from the layer are dropped",
            layers: |_| {
                vec![
                    Layer::new()
                        .pax("SCHILY.xattr.trusted.overlay.redirect", b"/x")
                        .dir("d"),
                ]
            },
            mode: overlay,
            expected: None,
            then: Some(|root| {
                assert!(
                    common::xattrs(&root.join("d"))
                        .iter()
                        .all(|(k, _)| !k.starts_with("trusted.overlay."))
                )
            }),
        },
    ]
}

#[test]
fn hostile_layers_never_touch_the_victim() {
    if !require_root("hostile_layers_never_touch_the_victim") {
        return;
    }
    let cases = cases();
    assert!(cases.len() >= 25, "the suite must hold at least 25 cases");
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| std::panic::catch_unwind(|| check(case)).is_err())
        .map(|case| case.name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:#?}");
}
