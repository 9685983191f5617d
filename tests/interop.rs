//! Interoperability end to end: Docker schema 2 and OCI pulls, a multi-platform index with
//! `--platform`, and the mounted tree compared entry by entry with `umoci unpack`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use stencil_e2e::peers::{DockerRegistry, LayoutBuilder, run_peer, skopeo_copy};
use stencil_e2e::{Stencil, peer};

/// Three layers exercising what real images hold: nested directories, modes with
/// setuid/sticky bits, symlinks, a hardlink pair, a FIFO, a deleted file (whiteout) and a
/// directory replaced wholesale (opaque directory).
fn rich_layout(scratch: &Path) -> Option<LayoutBuilder> {
    let check = |r: std::io::Result<()>| r.unwrap_or_else(|e| panic!("building the fixture: {e}"));
    Some(
        LayoutBuilder::new(scratch, "rich")?
            .layer(|root| {
                check(std::fs::create_dir_all(root.join("usr/share/doc/pkg")));
                check(std::fs::write(
                    root.join("usr/share/doc/pkg/README"),
                    "read me\n",
                ));
                check(std::fs::create_dir_all(root.join("etc/app.d")));
                check(std::fs::write(root.join("etc/app.d/old.conf"), "old\n"));
                check(std::fs::write(root.join("etc/doomed"), "to be deleted\n"));
                check(std::fs::create_dir_all(root.join("bin")));
                check(std::fs::write(
                    root.join("bin/tool"),
                    "#!/bin/sh\necho tool\n",
                ));
                check(std::fs::set_permissions(
                    root.join("bin/tool"),
                    std::fs::Permissions::from_mode(0o4755),
                ));
                check(std::fs::create_dir_all(root.join("tmp")));
                check(std::fs::set_permissions(
                    root.join("tmp"),
                    std::fs::Permissions::from_mode(0o1777),
                ));
            })
            .layer(|root| {
                check(std::fs::remove_file(root.join("etc/doomed")));
                check(std::fs::remove_dir_all(root.join("etc/app.d")));
                check(std::fs::create_dir_all(root.join("etc/app.d")));
                check(std::fs::write(root.join("etc/app.d/new.conf"), "new\n"));
                check(std::os::unix::fs::symlink(
                    "../bin/tool",
                    root.join("etc/tool-link"),
                ));
                check(std::fs::hard_link(
                    root.join("bin/tool"),
                    root.join("bin/tool-hard"),
                ));
            })
            .layer(|root| {
                check(std::fs::write(
                    root.join("usr/share/doc/pkg/README"),
                    "changed\n",
                ));
                let fifo = root.join("tmp/fifo");
                let status = Command::new("mkfifo").arg(&fifo).status();
                assert!(
                    status.is_ok_and(|s| s.success()),
                    "mkfifo {}",
                    fifo.display()
                );
                check(std::os::unix::fs::chown(
                    root.join("usr/share/doc/pkg/README"),
                    Some(1000),
                    Some(1000),
                ));
            })
            .cmd("/bin/tool"),
    )
}

/// What a tree holds, entry by entry: type, mode, owner, content hash or link target,
/// and the hardlink group (the first path of each inode).
fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
        inodes: &mut BTreeMap<u64, String>,
    ) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            let kind = meta.file_type();
            let what = if kind.is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&path)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default()
                )
            } else if kind.is_dir() {
                "dir".to_owned()
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
                let group = inodes
                    .entry(meta.ino())
                    .or_insert_with(|| relative.clone())
                    .clone();
                format!("file {:x} group {group}", Sha256::digest(&bytes))
            } else {
                format!("special {:o}", meta.mode() & 0o170000)
            };
            out.insert(
                relative,
                format!(
                    "{what} mode {:o} owner {}:{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ),
            );
            if kind.is_dir() {
                walk(root, &path, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut BTreeMap::new());
    out
}

fn umoci_rootfs(layout: &LayoutBuilder, scratch: &Path) -> Option<PathBuf> {
    let umoci = peer("umoci")?;
    let bundle = scratch.join("umoci-bundle");
    let image = layout.skopeo_name();
    let image = image.strip_prefix("oci:").unwrap_or(&image).to_owned();
    run_peer(
        Command::new(umoci)
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    );
    Some(bundle.join("rootfs"))
}

fn check_mount_matches(stencil: &Stencil, image: &str, expected: &BTreeMap<String, String>) {
    let mounted = stencil.run(&["image", "mount", image]);
    mounted.success();
    let actual = describe_tree(Path::new(mounted.stdout.trim()));
    stencil.run(&["image", "unmount", image]).success();
    for (path, want) in expected {
        assert_eq!(
            actual.get(path),
            Some(want),
            "entry {path} differs from umoci unpack"
        );
    }
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(extra.is_empty(), "entries umoci does not have: {extra:?}");
    assert!(!actual.contains_key("etc/doomed"), "whiteout not applied");
    assert!(
        !actual.contains_key("etc/app.d/old.conf"),
        "opaque directory not applied"
    );
}

#[test]
fn oci_and_schema2_pulls_match_umoci_unpack() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(layout) = rich_layout(stencil.scratch()) else {
        return;
    };
    let oci = format!("{}/interop/oci:1", registry.host());
    let schema2 = format!("{}/interop/schema2:1", registry.host());
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{oci}")) else {
        return;
    };
    let Some(skopeo) = peer("skopeo") else {
        return;
    };
    run_peer(Command::new(skopeo).args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &layout.skopeo_name(),
        &format!("docker://{schema2}"),
    ]));
    let Some(expected_root) = umoci_rootfs(&layout, stencil.scratch()) else {
        return;
    };
    let expected = describe_tree(&expected_root);
    assert!(
        expected.len() > 12,
        "the fixture is as rich as intended: {expected:?}"
    );
    for image in [&oci, &schema2] {
        stencil.run(&["pull", "-q", image]).success();
        check_mount_matches(&stencil, image, &expected);
    }
    let media_types = stencil.run(&[
        "inspect",
        "--format",
        "{{.Descriptor.mediaType}}",
        &oci,
        &schema2,
    ]);
    media_types.success().stdout_is(
        "application/vnd.oci.image.manifest.v1+json\napplication/vnd.docker.distribution.manifest.v2+json\n",
    );
    // The layers are the same content: the second pull unpacked nothing new.
    let snapshots = stencil.root().join("snapshots/snapshots");
    let count = std::fs::read_dir(&snapshots)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(count, 3, "three layers, each unpacked once for both images");
    stencil.run(&["fsck"]).success();
}

/// Adds an index tagged `multi` to `layout` holding its images `amd` and `arm`, with their
/// platforms.
fn add_index(layout_dir: &Path) {
    let index_path = layout_dir.join("index.json");
    let text = std::fs::read_to_string(&index_path).unwrap_or_else(|e| panic!("{e}"));
    let mut index: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut children = Vec::new();
    for (tag, architecture) in [("amd", "amd64"), ("arm", "arm64")] {
        let descriptor = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no image {tag} in {text}"));
        let mut child = descriptor.clone();
        child.as_object_mut().map(|o| o.remove("annotations"));
        child["platform"] = serde_json::json!({"os": "linux", "architecture": architecture});
        children.push(child);
    }
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    });
    let bytes = serde_json::to_vec(&image_index).unwrap_or_default();
    let digest = format!("{:x}", Sha256::digest(&bytes));
    std::fs::write(layout_dir.join("blobs/sha256").join(&digest), &bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(m) = index["manifests"].as_array_mut() {
        m.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_multi_platform_index_pulls_the_platform_asked_for() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(umoci) = peer("umoci") else {
        return;
    };
    let layout_dir = stencil.scratch().join("layout");
    let Some(amd) = LayoutBuilder::new(stencil.scratch(), "amd") else {
        return;
    };
    let _amd = amd.layer(|root| {
        std::fs::write(root.join("arch"), "amd64\n").unwrap_or_else(|e| panic!("{e}"));
    });
    // The arm64 image: umoci's `new` on the same layout, with its own layer and platform.
    {
        let (tag, architecture, marker) = ("arm", "arm64", "arm64\n");
        let image = format!("{}:{tag}", layout_dir.display());
        run_peer(Command::new(&umoci).args(["new", "--image", &image]));
        let bundle = stencil.scratch().join(format!("bundle-{tag}"));
        run_peer(
            Command::new(&umoci)
                .args(["unpack", "--image", &image])
                .arg(&bundle),
        );
        std::fs::write(bundle.join("rootfs/arch"), marker).unwrap_or_else(|e| panic!("{e}"));
        run_peer(
            Command::new(&umoci)
                .args(["repack", "--image", &image])
                .arg(&bundle),
        );
        run_peer(Command::new(&umoci).args([
            "config",
            "--image",
            &image,
            "--architecture",
            architecture,
        ]));
    }
    add_index(&layout_dir);
    let name = format!("{}/interop/multi:1", registry.host());
    let Some(skopeo) = peer("skopeo") else {
        return;
    };
    run_peer(Command::new(skopeo).args([
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout_dir.display()),
        &format!("docker://{name}"),
    ]));

    for (platform, marker) in [("linux/arm64", "arm64\n"), ("linux/amd64", "amd64\n")] {
        let other = Stencil::new();
        other
            .run(&["pull", "-q", "--platform", platform, &name])
            .success();
        let architecture = other.run(&["inspect", "--format", "{{.Architecture}}", &name]);
        architecture.success();
        assert_eq!(
            format!("linux/{}", architecture.stdout.trim()),
            platform,
            "{architecture}"
        );
        let mounted = other.run(&["image", "mount", &name]);
        mounted.success();
        let content = std::fs::read_to_string(Path::new(mounted.stdout.trim()).join("arch"));
        other.run(&["image", "unmount", &name]).success();
        assert_eq!(content.ok().as_deref(), Some(marker), "{mounted}");
        // RepoDigests name the index, as docker does for multi-platform images.
        let digests = other.run(&["inspect", "--format", "{{json .RepoDigests}}", &name]);
        digests.success();
        assert!(digests.stdout.contains("@sha256:"), "{digests}");
        // images --digests shows the same digest, the index's.
        let listed = other.run(&["images", "--digests", "--format", "{{.Digest}}", &name]);
        listed.success();
        let index = listed.stdout.trim().to_owned();
        assert!(
            index.starts_with("sha256:") && digests.stdout.contains(&format!("@{index}")),
            "{listed}{digests}"
        );
    }
    let missing = Stencil::new();
    missing
        .run(&["pull", "--platform", "linux/s390x", &name])
        .expect_code(125)
        .stderr_contains("s390x");
}
