//! `apply_layer` on well-formed layers: every entry type and its metadata, the three
//! compressions, whiteouts in both modes, id mapping, limits, malformed archives, and the
//! acceptance check that an overlay stack of per-layer directories shows exactly the tree
//! that applying the same layers to one flat directory gives.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Layer, fingerprint, require_root};
use stencil_cow_fs::{
    ApplyOptions, Compression, ErrorKind, IdMap, IdRange, Limits, Mount, WhiteoutMode, apply_layer,
    mount_all, unmount_all,
};

/// A layer holding every entry type with interesting metadata.
fn every_type() -> Layer {
    let long_dir = "d".repeat(120);
    Layer::new()
        .dir("./")
        .mode(0o2750)
        .owner(1000, 1001)
        .dir("etc")
        .mode(0o1777)
        .dir("tmp")
        .mode(0o4755)
        .pax(
            "SCHILY.xattr.security.capability",
            &[
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        )
        .pax("SCHILY.xattr.user.note", b"hello")
        .file("etc/ping", b"#!/bin/true\n")
        .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .link("etc/passwd-hardlink", "etc/passwd")
        .symlink("etc/rel", "passwd")
        .symlink("etc/abs", "/etc/passwd")
        .char_device("null", 1, 3)
        .block_device("loop0", 7, 0)
        .fifo("pipe")
        .dir(&long_dir)
        .file(&format!("{long_dir}/{}", "f".repeat(150)), b"gnu long name")
        .pax(
            "path",
            format!("{long_dir}/pax-named-{}", "p".repeat(120)).as_bytes(),
        )
        .file("short", b"pax long name")
        .mtime(1_234_567_890)
        .file("old", b"dated")
        .pax("mtime", b"1500000000.25")
        .dir("dated-dir")
        .file(
            "dated-dir/child",
            b"written after the directory's time was read",
        )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

fn contains(lines: &[String], prefix: &str, needle: &str) {
    let line = lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no entry {prefix:?} in {lines:#?}"));
    assert!(
        line.contains(needle),
        "{prefix}: {needle:?} not in {line:?}"
    );
}

#[test]
fn every_entry_type_and_its_metadata_apply() {
    if !require_root("every_entry_type_and_its_metadata_apply") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = apply_layer(
        every_type().tar().as_slice(),
        dir.path(),
        &ApplyOptions::default(),
    )
    .expect("apply");
    assert_eq!(stats.compression, Compression::None);
    let lines = fingerprint(dir.path(), false);
    let long_dir = "d".repeat(120);
    for (prefix, needle) in [
        ("etc dir", "2750 1000:1001"),
        ("tmp dir", "1777 0:0"),
        ("etc/ping file", "4755"),
        ("etc/ping file", "xattr:security.capability="),
        ("etc/ping file", "xattr:user.note=\"hello\""),
        ("etc/passwd file", "linkgroup=etc/passwd"),
        ("etc/passwd-hardlink file", "linkgroup=etc/passwd"),
        ("etc/rel symlink", "-> passwd"),
        ("etc/abs symlink", "-> /etc/passwd"),
        ("null char", "dev=1:3"),
        ("loop0 block", "dev=7:0"),
        ("pipe fifo", "644"),
        (&format!("{long_dir}/{}", "f".repeat(150)), "gnu long name"),
        (
            &format!("{long_dir}/pax-named-{}", "p".repeat(120)),
            "pax long name",
        ),
    ] {
        contains(&lines, prefix, needle);
    }
    assert!(
        !dir.path().join("short").exists(),
        "the PAX path must replace the header name"
    );
    assert_eq!(
        fs::metadata(dir.path().join("old")).expect("old").mtime(),
        1_234_567_890
    );
    // Directory times are set last, so a child written later does not disturb them.
    let dated = fs::metadata(dir.path().join("dated-dir")).expect("dated-dir");
    assert_eq!(
        (dated.mtime(), dated.mtime_nsec()),
        (1_500_000_000, 250_000_000)
    );
}

#[test]
fn sparse_files_stay_sparse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    {
        let file = fs::File::create(&source).expect("create");
        file.set_len(64 << 20).expect("grow");
        use std::os::unix::fs::FileExt;
        file.write_at(b"head", 0).expect("write");
        file.write_at(b"tail", (64 << 20) - 4).expect("write");
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.sparse(true);
    builder
        .append_path_with_name(&source, "sparse")
        .expect("append");
    let tar = builder.into_inner().expect("tar");
    assert!(
        tar.len() < 1 << 20,
        "the builder did not write a sparse entry"
    );
    let target = dir.path().join("target");
    fs::create_dir(&target).expect("target");
    apply_layer(tar.as_slice(), &target, &ApplyOptions::default()).expect("apply");
    let applied = target.join("sparse");
    assert_eq!(
        fs::read(&applied).expect("read"),
        fs::read(&source).expect("read")
    );
    assert!(
        fs::metadata(&applied).expect("stat").blocks() * 512 < 1 << 20,
        "holes were filled"
    );
}

#[test]
fn compression_is_detected_from_magic_bytes() {
    if !require_root("compression_is_detected_from_magic_bytes") {
        return;
    }
    let tar = every_type().tar();
    let expected = {
        let dir = tempfile::tempdir().expect("tempdir");
        apply_layer(tar.as_slice(), dir.path(), &ApplyOptions::default()).expect("apply");
        fingerprint(dir.path(), false)
    };
    #[track_caller]
    fn check(stream: Vec<u8>, expected: Result<Compression, ErrorKind>, tree: &[String]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = apply_layer(stream.as_slice(), dir.path(), &ApplyOptions::default());
        match (result, expected) {
            (Ok(stats), Ok(kind)) => {
                assert_eq!(stats.compression, kind);
                assert_eq!(fingerprint(dir.path(), false), tree);
            }
            (Err(e), Err(kind)) => assert_eq!(e.kind(), kind, "{e}"),
            (result, expected) => panic!("got {result:?}, expected {expected:?}"),
        }
    }
    let mut two_members = gzip(&tar[..4096]);
    two_members.extend(gzip(&tar[4096..]));
    for (stream, expected_kind) in [
        (tar.clone(), Ok(Compression::None)),
        (gzip(&tar), Ok(Compression::Gzip)),
        (two_members, Ok(Compression::Gzip)),
        (zstd(&tar), Ok(Compression::Zstd)),
        (
            b"BZh91AY&SY".to_vec(),
            Err(ErrorKind::UnsupportedCompression),
        ),
        (
            vec![0xfd, b'7', b'z', b'X', b'Z', 0],
            Err(ErrorKind::UnsupportedCompression),
        ),
        (gzip(&tar)[..200].to_vec(), Err(ErrorKind::CorruptArchive)),
    ] {
        check(stream, expected_kind, &expected);
    }
}

#[test]
fn whiteouts_delete_or_mark() {
    if !require_root("whiteouts_delete_or_mark") {
        return;
    }
    let lower = Layer::new()
        .dir("a")
        .file("a/keep", b"1")
        .file("a/gone", b"2")
        .dir("b")
        .file("b/old", b"3")
        .dir("b/sub")
        .file("top", b"4");
    let upper = || {
        Layer::new()
            .file("a/.wh.gone", b"")
            .dir("b")
            .file("b/new", b"5")
            .file("b/.wh..wh..opq", b"")
            .file(".wh.top", b"")
            .file(".wh.never-existed", b"")
            .dir(".wh..wh.plnk")
            .file(".wh..wh.plnk/123", b"aufs")
    };
    // Delete mode over the lower tree.
    let flat = tempfile::tempdir().expect("tempdir");
    let options = ApplyOptions::default();
    apply_layer(lower.tar().as_slice(), flat.path(), &options).expect("lower");
    apply_layer(upper().tar().as_slice(), flat.path(), &options).expect("upper");
    let names: Vec<String> = fingerprint(flat.path(), false)
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, [".", "a", "a/keep", "b", "b/new"]);
    // Overlay mode into an empty layer directory.
    let layer = tempfile::tempdir().expect("tempdir");
    apply_layer(
        upper().tar().as_slice(),
        layer.path(),
        &ApplyOptions::default().whiteouts(WhiteoutMode::Overlay),
    )
    .expect("upper");
    let lines = fingerprint(layer.path(), false);
    contains(&lines, "a/gone char", "dev=0:0");
    contains(&lines, "top char", "dev=0:0");
    contains(&lines, "b/new file", "data=\"5\"");
    let opaque = common::xattrs(&layer.path().join("b"));
    assert!(
        opaque.contains(&("trusted.overlay.opaque".to_owned(), b"y".to_vec())),
        "{opaque:?}"
    );
    assert!(!layer.path().join(".wh..wh.plnk").exists());
}

#[test]
fn limits_stop_bombs() {
    let big = Layer::new()
        .file("a", &vec![7u8; 100_000])
        .file("b", b"x")
        .file("c", b"y");
    let long = Layer::new().file(&"n/".repeat(200), b"deep");
    let long_link = Layer::new()
        .file("t", b"")
        .link("l", &format!("{}/../t", "x".repeat(300)));
    #[track_caller]
    fn check(layer: Layer, limits: Limits, expected: Option<ErrorKind>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ApplyOptions::default()
            .limits(limits)
            .preserve_ownership(false);
        let result = apply_layer(layer.tar().as_slice(), dir.path(), &options);
        assert_eq!(
            result.as_ref().err().map(|e| e.kind()),
            expected,
            "{result:?}"
        );
        if let Err(e) = result {
            assert!(e.to_string().contains("limit"), "{e}");
        }
    }
    let defaults = Limits::default();
    let huge_pax = Layer::new()
        .pax("comment", &vec![b'a'; 2 << 20])
        .file("f", b"");
    let huge_name = Layer::new().file(&"n".repeat(3 << 20), b"");
    for (layer, limits, expected) in [
        (
            big.clone_layer(),
            Limits {
                max_entries: 2,
                ..defaults
            },
            Some(ErrorKind::LimitExceeded),
        ),
        (
            big.clone_layer(),
            Limits {
                max_total_bytes: 50_000,
                ..defaults
            },
            Some(ErrorKind::LimitExceeded),
        ),
        (big.clone_layer(), defaults, None),
        (
            long,
            Limits {
                max_path_len: 255,
                ..defaults
            },
            Some(ErrorKind::LimitExceeded),
        ),
        (
            long_link,
            Limits {
                max_path_len: 255,
                ..defaults
            },
            Some(ErrorKind::LimitExceeded),
        ),
        (huge_pax, defaults, Some(ErrorKind::LimitExceeded)),
        (huge_name, defaults, Some(ErrorKind::LimitExceeded)),
    ] {
        check(layer, limits, expected);
    }
}

trait CloneLayer {
    fn clone_layer(&self) -> Layer;
}

impl CloneLayer for Layer {
    fn clone_layer(&self) -> Layer {
        Layer::new()
            .file("a", &vec![7u8; 100_000])
            .file("b", b"x")
            .file("c", b"y")
    }
}

#[test]
fn id_mapping_shifts_owners() {
    if !require_root("id_mapping_shifts_owners") {
        return;
    }
    let map = IdMap {
        uids: vec![IdRange {
            container: 0,
            host: 100_000,
            size: 65_536,
        }],
        gids: vec![IdRange {
            container: 0,
            host: 200_000,
            size: 65_536,
        }],
    };
    #[track_caller]
    fn check(layer: Layer, map: &IdMap, expected: Result<(u32, u32), ErrorKind>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = apply_layer(
            layer.tar().as_slice(),
            dir.path(),
            &ApplyOptions::default().id_map(map.clone()),
        );
        match (result, expected) {
            (Ok(_), Ok((uid, gid))) => {
                let meta = fs::symlink_metadata(dir.path().join("f")).expect("stat");
                assert_eq!((meta.uid(), meta.gid()), (uid, gid));
            }
            (Err(e), Err(kind)) => assert_eq!(e.kind(), kind, "{e}"),
            (result, expected) => panic!("got {result:?}, expected {expected:?}"),
        }
    }
    for (layer, expected) in [
        (
            Layer::new().owner(0, 0).file("f", b""),
            Ok((100_000, 200_000)),
        ),
        (
            Layer::new().owner(33, 44).file("f", b""),
            Ok((100_033, 200_044)),
        ),
        (
            Layer::new().owner(33, 44).symlink("f", "x"),
            Ok((100_033, 200_044)),
        ),
        (
            Layer::new().owner(70_000, 0).file("f", b""),
            Err(ErrorKind::UnmappedId),
        ),
    ] {
        check(layer, &map, expected);
    }
}

#[test]
fn malformed_archives_are_refused() {
    #[track_caller]
    fn check(stream: Vec<u8>, expected: ErrorKind) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ApplyOptions::default().preserve_ownership(false);
        let error = apply_layer(stream.as_slice(), dir.path(), &options).expect_err("must fail");
        assert_eq!(error.kind(), expected, "{error}");
    }
    let mut bad_checksum = Layer::new().file("a", b"x").tar();
    bad_checksum[148] ^= 0x11;
    let mut truncated = Layer::new().file("a", &[1u8; 5000]).tar();
    truncated.truncate(2048);
    for (stream, expected) in [
        (bad_checksum, ErrorKind::CorruptArchive),
        (truncated, ErrorKind::CorruptArchive),
        (
            Layer::new().raw_entry(b'V', "volume").tar(),
            ErrorKind::UnsupportedEntry,
        ),
        (
            Layer::new().file("a/.wh.b/c", b"").tar(),
            ErrorKind::InvalidWhiteout,
        ),
        (
            Layer::new().file("f", b"").file("f/child", b"").tar(),
            ErrorKind::Io,
        ),
    ] {
        check(stream, expected);
    }
}

/// Layers for the overlay-versus-flat comparison: every entry type, then changes of every
/// kind (modify, delete, opaque directory, directory replaced by a file and back).
fn stack() -> Vec<Vec<u8>> {
    vec![
        every_type().tar(),
        // Parents are listed, as image builders do: a parent an overlay layer had to make up
        // would hide the lower directory's owner and mode.
        Layer::new()
            .mode(0o2750)
            .owner(1000, 1001)
            .dir("etc")
            .file("etc/passwd", b"changed\n")
            .file("etc/.wh.rel", b"")
            .dir("tmp")
            .file("tmp/.wh..wh..opq", b"")
            .file("tmp/fresh", b"new")
            .file(".wh.pipe", b"")
            .file(&"d".repeat(120), b"a file where a directory was")
            .tar(),
        Layer::new()
            .dir("pipe")
            .file("pipe/inside", b"directory where a fifo was")
            .mode(0o2750)
            .owner(1000, 1001)
            .dir("etc")
            .mode(0o600)
            .owner(7, 8)
            .file("etc/ping", b"replaced again")
            .link("etc/ping-link", "etc/ping")
            .tar(),
    ]
}

#[test]
fn overlay_stack_matches_flat_application() {
    if !require_root("overlay_stack_matches_flat_application") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let flat = common::make_dir(work.path(), "flat");
    for layer in stack() {
        apply_layer(layer.as_slice(), &flat, &ApplyOptions::default()).expect("flat apply");
    }
    let mut lowers = Vec::new();
    for (index, layer) in stack().into_iter().enumerate() {
        let dir = common::make_dir(work.path(), &format!("layer{index}"));
        apply_layer(
            layer.as_slice(),
            &dir,
            &ApplyOptions::default().whiteouts(WhiteoutMode::Overlay),
        )
        .expect("layer apply");
        lowers.insert(0, dir);
    }
    let merged = common::make_dir(work.path(), "merged");
    let lower_refs: Vec<&Path> = lowers.iter().map(|p| p.as_path()).collect();
    mount_all(&[Mount::overlay(&lower_refs, None)], &merged).expect("mount");
    let seen = fingerprint(&merged, false);
    unmount_all(&merged).expect("unmount");
    let expected = fingerprint(&flat, false);
    assert_eq!(seen, expected);
}
