//! `diff_upper` and `diff_trees` on hand-made trees: which entries a layer holds, in what
//! order, how overlay markers become OCI whiteouts, and that fixed times make the bytes
//! reproducible.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{fingerprint, require_root};
use stencil_cow_fs::{ApplyOptions, DiffOptions, apply_layer, diff_trees, diff_upper};

/// `(name, type, mtime)` of every entry of a tar, in order.
fn listing(tar: &[u8]) -> Vec<(String, char, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let kind = e.header().entry_type().as_byte() as char;
            (name, kind, e.header().mtime().expect("mtime"))
        })
        .collect()
}

fn mknod_whiteout(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: valid C string; a 0/0 character device is overlay's whiteout.
    let result = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    assert_eq!(result, 0, "mknod {}", path.display());
}

fn set_xattr(path: &Path, key: &str, value: &[u8]) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let k = std::ffi::CString::new(key).expect("key");
    // SAFETY: valid C strings and value buffer.
    let result = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(result, 0, "setxattr {key} on {}", path.display());
}

#[test]
fn upper_markers_become_oci_whiteouts_in_sorted_order() {
    if !require_root("upper_markers_become_oci_whiteouts_in_sorted_order") {
        return;
    }
    let upper = tempfile::tempdir().expect("upper");
    let u = upper.path();
    fs::create_dir(u.join("b")).expect("dir");
    fs::write(u.join("b/z"), b"z").expect("file");
    fs::write(u.join("b/a"), b"a").expect("file");
    set_xattr(&u.join("b"), "trusted.overlay.opaque", b"y");
    set_xattr(&u.join("b/a"), "user.kept", b"1");
    set_xattr(&u.join("b/a"), "trusted.overlay.origin", b"dropped");
    mknod_whiteout(&u.join("gone"));
    fs::write(u.join("a"), b"first").expect("file");
    std::os::unix::fs::symlink("a", u.join("c")).expect("symlink");
    let tar =
        diff_upper(u, &[], Vec::new(), &DiffOptions::default().fixed_mtime(42)).expect("diff");
    let names: Vec<(String, char)> = listing(&tar).into_iter().map(|(n, k, _)| (n, k)).collect();
    let expected: Vec<(String, char)> = [
        (".wh.gone", '0'),
        ("a", '0'),
        ("b", '5'),
        ("b/.wh..wh..opq", '0'),
        ("b/a", '0'),
        ("b/z", '0'),
        ("c", '2'),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(names, expected);
    assert!(listing(&tar).iter().all(|(_, _, mtime)| *mtime == 42));
    // Applying it back to a flat copy shows the kept xattr but none of overlay's.
    let flat = tempfile::tempdir().expect("flat");
    apply_layer(tar.as_slice(), flat.path(), &ApplyOptions::default()).expect("apply");
    let lines = fingerprint(flat.path(), false);
    let line = lines.iter().find(|l| l.starts_with("b/a ")).expect("b/a");
    assert!(line.contains("xattr:user.kept=\"1\""), "{line}");
    assert!(!lines.iter().any(|l| l.contains("origin")), "{lines:#?}");
}

#[test]
fn metacopy_files_take_their_data_from_the_lower_layer() {
    if !require_root("metacopy_files_take_their_data_from_the_lower_layer") {
        return;
    }
    let lower = tempfile::tempdir().expect("lower");
    fs::write(lower.path().join("data"), b"the real bytes").expect("lower");
    let upper = tempfile::tempdir().expect("upper");
    fs::write(upper.path().join("data"), b"").expect("upper");
    set_xattr(&upper.path().join("data"), "trusted.overlay.metacopy", b"");
    let tar = diff_upper(
        upper.path(),
        &[lower.path()],
        Vec::new(),
        &DiffOptions::default(),
    )
    .expect("diff");
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive
        .entries()
        .expect("entries")
        .next()
        .expect("one")
        .expect("entry");
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
    assert_eq!(data, b"the real bytes");
}

#[test]
fn tree_diffs_hold_only_changes_and_round_trip() {
    #[track_caller]
    fn check(change: fn(&Path), expected_names: &[&str]) {
        let work = tempfile::tempdir().expect("work");
        let old = common::make_dir(work.path(), "old");
        fs::create_dir(old.join("d")).expect("dir");
        fs::write(old.join("d/same"), b"same").expect("file");
        fs::write(old.join("d/edit"), b"before").expect("file");
        fs::write(old.join("top"), b"top").expect("file");
        let new = work.path().join("new");
        let copy = std::process::Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .expect("cp");
        assert!(copy.success());
        change(&new);
        let tar = diff_trees(&old, &new, Vec::new(), &DiffOptions::default()).expect("diff");
        let names: Vec<String> = listing(&tar).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, expected_names);
        let options = ApplyOptions::default().preserve_ownership(false);
        apply_layer(tar.as_slice(), &old, &options).expect("apply");
        assert_eq!(fingerprint(&old, false), fingerprint(&new, false));
    }
    type Change = fn(&Path);
    let cases: &[(Change, &[&str])] = &[
        (|_| {}, &[]),
        (
            |n| fs::write(n.join("d/edit"), b"after!").expect("edit"),
            &["d/edit"],
        ),
        (
            |n| fs::remove_file(n.join("top")).expect("rm"),
            &[".wh.top"],
        ),
        (
            |n| {
                fs::remove_dir_all(n.join("d")).expect("rm");
                fs::write(n.join("d"), b"file now").expect("file");
            },
            &["d"],
        ),
        (
            |n| {
                fs::remove_file(n.join("top")).expect("rm");
                fs::create_dir(n.join("top")).expect("dir");
                fs::write(n.join("top/x"), b"x").expect("file");
            },
            &["top", "top/x"],
        ),
    ];
    for (change, expected) in cases {
        check(*change, expected);
    }
}

#[test]
fn renamed_lower_directories_diff_as_whole_directories() {
    if !require_root("renamed_lower_directories_diff_as_whole_directories") {
        return;
    }
    let work = tempfile::tempdir().expect("work");
    let lower = common::make_dir(work.path(), "lower");
    let upper = common::make_dir(work.path(), "upper");
    let scratch = common::make_dir(work.path(), "work");
    let merged = common::make_dir(work.path(), "merged");
    fs::create_dir_all(lower.join("a/sub")).expect("lower dirs");
    fs::write(lower.join("a/x"), b"x").expect("lower file");
    fs::write(lower.join("a/sub/y"), b"y").expect("lower file");
    fs::write(lower.join("a/sub/z"), b"z").expect("lower file");
    fs::write(lower.join("b"), b"b").expect("lower file");
    let mut mount = stencil_cow_fs::Mount::overlay(&[lower.as_path()], Some((&upper, &scratch)));
    mount.options.push("redirect_dir=on".into());
    stencil_cow_fs::mount_all(&[mount], &merged).expect("mount");
    fs::rename(merged.join("a"), merged.join("c")).expect("rename a lower directory");
    fs::write(merged.join("c/new"), b"new").expect("write");
    fs::remove_file(merged.join("c/sub/y")).expect("delete");
    let expected = fingerprint(&merged, false);
    stencil_cow_fs::unmount_all(&merged).expect("unmount");
    let redirect = common::xattrs(&upper.join("c"));
    assert!(
        redirect
            .iter()
            .any(|(k, _)| k == "trusted.overlay.redirect"),
        "the kernel made no redirect: {redirect:?}"
    );
    let tar = diff_upper(
        &upper,
        &[lower.as_path()],
        Vec::new(),
        &DiffOptions::default(),
    )
    .expect("diff");
    let flat = work.path().join("flat");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&lower)
        .arg(&flat)
        .status()
        .expect("cp");
    assert!(copy.success());
    apply_layer(tar.as_slice(), &flat, &ApplyOptions::default()).expect("apply");
    assert_eq!(fingerprint(&flat, false), expected);
}
