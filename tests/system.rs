//! End-to-end tests of `stencil system df [-v]` and `stencil image prune [-a] [-f]`, and of
//! a store given as a relative `--root`.

use std::path::PathBuf;
use std::process::Command;

use stencil_e2e::{Run, Stencil, peer, stencil_binary};

/// A tarball holding one file with `content`, written under `name` in the scratch dir.
fn tarball(stencil: &Stencil, name: &str, content: &[u8]) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder
        .append_data(&mut header, "data", content)
        .unwrap_or_else(|e| panic!("{e}"));
    let path: PathBuf = stencil.scratch().join(name);
    std::fs::write(
        &path,
        builder.into_inner().unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn import(stencil: &Stencil, file: &str, name: Option<&str>) -> String {
    let mut args = vec!["import", file];
    args.extend(name);
    let run = stencil.run(&args);
    run.success();
    run.stdout.trim().to_owned()
}

/// The cells of the first line of `run`'s stdout that starts with `first`, split on runs
/// of two or more spaces (cells themselves may hold one space, like `Local Volumes`).
fn row(run: &Run, first: &str) -> Vec<String> {
    let line = run
        .lines()
        .into_iter()
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("no row {first:?}\n{run}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn df_counts_shared_layers_once_and_splits_shared_from_unique() {
    let stencil = Stencil::new();
    let empty = stencil.run(&["system", "df"]);
    empty.success();
    assert_eq!(
        row(&empty, "TYPE"),
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    );
    assert_eq!(row(&empty, "Images"), ["Images", "0", "0", "0B", "0B"]);
    assert_eq!(
        row(&empty, "Containers"),
        ["Containers", "0", "0", "0B", "0B"]
    );
    assert_eq!(
        row(&empty, "Local Volumes"),
        ["Local Volumes", "0", "0", "0B", "0B"]
    );

    // 200 kB of incompressible-enough data, imported twice: one layer blob for both.
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let shared = tarball(&stencil, "shared.tar", &big);
    import(&stencil, &shared, Some("first:1"));
    import(&stencil, &shared, Some("second:1"));
    import(
        &stencil,
        &tarball(&stencil, "small.tar", b"alone\n"),
        Some("alone:1"),
    );

    let summary = stencil.run(&["system", "df"]);
    summary.success();
    let images = row(&summary, "Images");
    assert_eq!(images[..3], ["Images", "3", "0"], "{summary}");
    assert!(images[4].ends_with("(100%)"), "{summary}");

    let verbose = stencil.run(&["system", "df", "-v"]);
    verbose.success();
    assert!(
        verbose
            .stdout
            .starts_with("Images space usage:\n\nREPOSITORY"),
        "{verbose}"
    );
    assert!(
        verbose.stdout.contains("\nContainers space usage:\n")
            && verbose.stdout.contains("\nLocal Volumes space usage:\n"),
        "{verbose}"
    );
    let header = row(&verbose, "REPOSITORY");
    assert_eq!(
        header,
        [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS"
        ]
    );
    let first = row(&verbose, "first ");
    let second = row(&verbose, "second ");
    let alone = row(&verbose, "alone ");
    // SHARED SIZE is the common layer: the same for both, nothing for the third.
    assert_eq!(first[5], second[5], "{verbose}");
    assert!(first[5].ends_with("kB"), "{verbose}");
    assert_eq!(alone[5], "0B", "{verbose}");
    assert_eq!(alone[6], alone[4], "unique is everything\n{verbose}");
    assert_eq!(first[7], "0", "{verbose}");
}

#[test]
fn prune_removes_dangling_images_then_with_a_every_unused_one() {
    let stencil = Stencil::new();
    let shared = tarball(&stencil, "shared.tar", b"shared layer\n");
    import(&stencil, &shared, Some("kept:1"));
    let dangling = import(&stencil, &shared, None);
    import(
        &stencil,
        &tarball(&stencil, "other.tar", b"other\n"),
        Some("other:1"),
    );

    // Without -f and without a terminal to ask on: refused, nothing removed.
    stencil
        .run(&["image", "prune"])
        .expect_code(125)
        .stderr_contains("use -f");
    assert_eq!(stencil.run(&["images", "-q"]).lines().len(), 3);

    let pruned = stencil.run(&["image", "prune", "-f"]);
    pruned.success();
    assert!(
        pruned
            .stdout
            .starts_with("Deleted Images:\ndeleted: sha256:"),
        "{pruned}"
    );
    assert!(!pruned.stdout.contains("untagged:"), "{pruned}");
    assert!(
        pruned.stdout.ends_with("B\n") && pruned.stdout.contains("\n\nTotal reclaimed space: "),
        "{pruned}"
    );
    let left = stencil.run(&["images", "--no-trunc", "-q"]);
    left.success();
    assert!(!left.stdout.contains(&dangling), "{left}");
    assert_eq!(left.lines().len(), 2, "{left}");

    // The layer the pruned image shared is still there for the tagged one.
    let mounted = stencil.run(&["image", "mount", "kept:1"]);
    mounted.success();
    let data = std::fs::read_to_string(PathBuf::from(mounted.stdout.trim()).join("data"));
    stencil.run(&["image", "unmount", "kept:1"]).success();
    assert_eq!(data.ok().as_deref(), Some("shared layer\n"), "{mounted}");

    stencil
        .run(&["image", "prune", "-f"])
        .success()
        .stdout_is("Total reclaimed space: 0B\n");

    let all = stencil.run(&["image", "prune", "-a", "-f"]);
    all.success();
    for name in ["untagged: kept:1", "untagged: other:1", "deleted: sha256:"] {
        assert!(all.stdout.contains(name), "{name}\n{all}");
    }
    assert!(!all.stdout.contains("reclaimed space: 0B"), "{all}");
    stencil.run(&["images", "-aq"]).success().stdout_is("");
    let blobs = std::fs::read_dir(stencil.root().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "every blob reclaimed\n{all}");
    stencil.assert_consistent();
}

#[test]
fn prune_deletes_blobs_no_image_uses_once_they_are_an_hour_old() {
    use sha2::Digest as _;
    let stencil = Stencil::new();
    import(
        &stencil,
        &tarball(&stencil, "kept.tar", b"kept\n"),
        Some("kept:1"),
    );
    // What an interrupted pull leaves: blobs in the content store that no image names,
    // one from two hours ago and one from just now (a pull may still be recording it).
    let dir = stencil.root().join("blobs/sha256");
    let two_hours = std::time::Duration::from_secs(7200);
    let age = |path: &std::path::Path, by: std::time::Duration| {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        file.set_modified(std::time::SystemTime::now() - by)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let image_blobs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    assert_eq!(image_blobs.len(), 3, "manifest, config, layer");
    for blob in &image_blobs {
        age(blob, two_hours);
    }
    let plant = |content: &[u8], by: std::time::Duration| {
        let hex: String = sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = dir.join(hex);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
        age(&path, by);
        path
    };
    let old = plant(&[7u8; 300_000], two_hours);
    let fresh = plant(b"a blob being pulled", std::time::Duration::ZERO);
    let pruned = stencil.run(&["image", "prune", "-f"]);
    pruned.success().stdout_is("Total reclaimed space: 300kB\n");
    assert!(!old.exists(), "the old unreferenced blob is gone\n{pruned}");
    assert!(fresh.exists(), "the young one stays\n{pruned}");
    // The image's own blobs stay, old as they are.
    assert!(image_blobs.iter().all(|blob| blob.exists()), "{pruned}");
    std::fs::remove_file(&fresh).unwrap_or_else(|e| panic!("{e}"));
    stencil.assert_consistent();
}

#[test]
fn prune_filters_keep_what_is_too_young_or_not_labelled_so() {
    let stencil = Stencil::new();
    let labelled = |file: &str, label: &str, name: &str| {
        let run = stencil.run(&[
            "import",
            "-c",
            &format!("LABEL {label}"),
            &tarball(&stencil, file, file.as_bytes()),
            name,
        ]);
        run.success();
        run.stdout.trim().to_owned()
    };
    let web = labelled("web.tar", "tier=web", "web:1");
    let db = labelled("db.tar", "tier=db", "db:1");
    let plain = import(
        &stencil,
        &tarball(&stencil, "plain.tar", b"plain\n"),
        Some("plain:1"),
    );
    let ids = || stencil.run(&["images", "-q", "--no-trunc"]).stdout;
    // Everything is younger than an hour: until=1h keeps it all.
    stencil
        .run(&["image", "prune", "-a", "-f", "--filter", "until=1h"])
        .success()
        .stdout_is("Total reclaimed space: 0B\n");
    assert_eq!(ids().lines().count(), 3);
    // label= removes only the images with the label (and value).
    let pruned = stencil.run(&["image", "prune", "-a", "-f", "--filter", "label=tier=web"]);
    pruned.success();
    assert!(pruned.stdout.contains("untagged: web:1"), "{pruned}");
    assert!(!ids().contains(&web) && ids().contains(&db) && ids().contains(&plain));
    // label!= removes those without it; until=0s counts everything made before now.
    let pruned = stencil.run(&[
        "image",
        "prune",
        "-a",
        "-f",
        "--filter",
        "label!=tier",
        "--filter",
        "until=0s",
    ]);
    pruned.success();
    assert!(pruned.stdout.contains("untagged: plain:1"), "{pruned}");
    assert!(ids().contains(&db) && !ids().contains(&plain), "{pruned}");
    for bad in ["until=soon", "colour=red", "label=", "label"] {
        stencil
            .run(&["image", "prune", "-f", "--filter", bad])
            .expect_code(125)
            .stderr_contains(&format!("invalid filter {bad:?}"));
    }
    stencil
        .run(&["system", "prune", "-a", "-f", "--filter", "label=tier=db"])
        .success();
    assert_eq!(ids(), "");
    stencil.assert_consistent();
}

#[test]
fn prune_on_a_terminal_asks_and_only_yes_removes() {
    // `script` gives stencil a pseudo-terminal and passes our answer to it.
    let Some(script) = peer("script") else {
        return;
    };
    let stencil = Stencil::new();
    let dangling = import(&stencil, &tarball(&stencil, "t.tar", b"x\n"), None);
    let ask = |answer: &str| -> String {
        let input = stencil.scratch().join("answer");
        std::fs::write(&input, answer).unwrap_or_else(|e| panic!("{e}"));
        let command = format!(
            "{} --root {} image prune",
            stencil_binary().display(),
            stencil.root().display()
        );
        let output = Command::new(&script)
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::fs::File::open(&input).unwrap_or_else(|e| panic!("{e}")))
            .output()
            .unwrap_or_else(|e| panic!("cannot run script: {e}"));
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let declined = ask("n\n");
    assert!(
        declined.contains("WARNING! This will remove all dangling images.")
            && declined.contains("Are you sure you want to continue? [y/N]")
            && !declined.contains("Deleted Images:"),
        "{declined}"
    );
    let ids = stencil.run(&["images", "-q", "--no-trunc"]);
    ids.success().stdout_is(&format!("{dangling}\n"));
    let accepted = ask("y\n");
    assert!(
        accepted.contains("Deleted Images:\r\ndeleted: sha256:")
            || accepted.contains("Deleted Images:\ndeleted: sha256:"),
        "{accepted}"
    );
    stencil.run(&["images", "-aq"]).success().stdout_is("");
    stencil.assert_consistent();
}

/// The mount points under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_relative_root_leaves_no_mount_behind() {
    if !stencil_e2e::root_or_skip("a_relative_root_leaves_no_mount_behind") {
        return;
    }
    let stencil = Stencil::new();
    let base = stencil
        .root()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| panic!("the root has a parent"));
    let file = tarball(&stencil, "rel.tar", b"relative\n");
    let relative = |args: &[&str]| {
        let output = Command::new(stencil_binary())
            .current_dir(&base)
            .args(["--root", "root"])
            .args(args)
            .env_remove("STENCIL_ROOT")
            .output()
            .unwrap_or_else(|e| panic!("cannot start stencil: {e}"));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = relative(&["import", &file, "rel:1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, mounted, stderr) = relative(&["image", "mount", "rel:1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let data = base.join(mounted.trim()).join("data");
    assert_eq!(
        std::fs::read_to_string(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display())),
        "relative\n"
    );
    let (code, _, stderr) = relative(&["image", "unmount", "rel:1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let root = base.join("root");
    assert_eq!(
        mounts_under(&root),
        Vec::<String>::new(),
        "unmount left a mount"
    );
    // A container that cannot start still unmounts and, with --rm, goes.
    let (code, _, stderr) = relative(&["run", "--rm", "rel:1", "/no/such/program"]);
    assert_eq!(code, Some(127), "{stderr}");
    assert_eq!(
        mounts_under(&root),
        Vec::<String>::new(),
        "run left a mount"
    );
    let (code, listed, stderr) = relative(&["ps", "-a", "-q"]);
    assert_eq!((code, listed.trim()), (Some(0), ""), "{stderr}");
    stencil.assert_consistent();
}
