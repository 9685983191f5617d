//! End-to-end tests of `push`, `save`, `load`, `image mount` and `fsck`, checked by skopeo.

use std::process::Command;

use stencil_e2e::Stencil;
use stencil_e2e::peers::{DockerRegistry, LayoutBuilder, run_peer, skopeo_copy};

fn build_layout(stencil: &Stencil) -> Option<LayoutBuilder> {
    Some(
        LayoutBuilder::new(stencil.scratch(), "v1")?
            .layer(|rootfs| {
                std::fs::create_dir_all(rootfs.join("srv")).unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(rootfs.join("srv/data"), "payload\n")
                    .unwrap_or_else(|e| panic!("{e}"));
            })
            .cmd("/bin/true"),
    )
}

fn manifest_digest_in_registry(host: &str, name: &str) -> String {
    let Some(skopeo) = stencil_e2e::peer("skopeo") else {
        return String::new();
    };
    run_peer(Command::new(skopeo).args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{host}/{name}"),
    ]))
    .trim()
    .to_owned()
}

#[test]
fn push_keeps_the_digest_and_skopeo_reads_it_back() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(layout) = build_layout(&stencil) else {
        return;
    };
    let source = format!("{}/e2e/source:v1", registry.host());
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{source}")) else {
        return;
    };
    stencil.run(&["pull", "-q", &source]).success();
    let target = format!("{}/e2e/pushed:v2", registry.host());
    stencil.run(&["tag", &source, &target]).success();
    let pushed = stencil.run(&["push", &target]);
    pushed.success();
    assert!(
        pushed.stdout.contains(": Pushed") || pushed.stdout.contains("already exists"),
        "{pushed}"
    );
    let source_digest = manifest_digest_in_registry(&registry.host(), "e2e/source:v1");
    let pushed_digest = manifest_digest_in_registry(&registry.host(), "e2e/pushed:v2");
    assert!(source_digest.starts_with("sha256:"), "{source_digest}");
    assert_eq!(
        source_digest, pushed_digest,
        "push must not rewrite the manifest"
    );
    assert!(
        pushed
            .stdout
            .contains(&format!("v2: digest: {pushed_digest} size: ")),
        "{pushed}"
    );
    // Pushing again sends no layer.
    let again = stencil.run(&["push", &target]);
    again.success();
    assert!(!again.stdout.contains(": Pushed"), "{again}");
}

#[test]
fn save_load_and_mount_round_trip_through_skopeo() {
    let stencil = Stencil::new();
    let Some(layout) = build_layout(&stencil) else {
        return;
    };
    // skopeo writes an oci-archive; stencil loads it under a name.
    let oci_archive = stencil.scratch().join("in.oci.tar");
    let Some(()) = skopeo_copy(
        &layout.skopeo_name(),
        &format!(
            "oci-archive:{}:localhost:5000/e2e/app:v1",
            oci_archive.display()
        ),
    ) else {
        return;
    };
    let loaded = stencil.run(&["load", "-i", &oci_archive.display().to_string()]);
    loaded.success();
    assert!(loaded.stdout.contains("Loaded image"), "{loaded}");
    let listed = stencil.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    listed.success();
    let name = listed.stdout.trim().to_owned();
    assert!(!name.is_empty(), "{listed}");

    // stencil saves a docker-archive; skopeo reads it.
    let saved = stencil.scratch().join("out.docker.tar");
    stencil
        .run(&["save", "-o", &saved.display().to_string(), &name])
        .success();
    let copied = stencil.scratch().join("copied");
    let Some(()) = skopeo_copy(
        &format!("docker-archive:{}", saved.display()),
        &format!("oci:{}:x", copied.display()),
    ) else {
        return;
    };

    // A second store loads stencil's archive and mounts the image.
    let other = Stencil::new();
    // -q shows no progress but still says what was loaded, as docker's does.
    other
        .run(&["load", "-q", "-i", &saved.display().to_string()])
        .success()
        .stdout_is(&format!("Loaded image: {name}\n"));
    let mounted = other.run(&["image", "mount", &name]);
    mounted.success();
    let path = std::path::PathBuf::from(mounted.stdout.trim());
    let data = std::fs::read_to_string(path.join("srv/data"));
    other.run(&["image", "unmount", &name]).success();
    assert_eq!(data.ok().as_deref(), Some("payload\n"), "{mounted}");
    assert!(!path.join("srv/data").exists(), "unmounted");
    let checked = other.run(&["fsck"]);
    checked.success();
    assert!(checked.stdout.starts_with("checked 3 blobs ("), "{checked}");
    assert!(
        checked.stdout.ends_with("store is consistent\n"),
        "{checked}"
    );

    // --format oci-archive and oci-dir, as podman's: skopeo reads both, stencil loads both.
    let oci_tar = stencil.scratch().join("out.oci.tar");
    stencil
        .run(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            &oci_tar.display().to_string(),
            &name,
        ])
        .success();
    let entries = Command::new("tar")
        .args(["-tf", &oci_tar.display().to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        entries.contains("index.json") && entries.contains("oci-layout"),
        "{entries}"
    );
    assert!(
        !entries.contains("manifest.json"),
        "no docker-archive parts\n{entries}"
    );
    let layout = stencil.scratch().join("saved-layout");
    stencil
        .run(&[
            "save",
            "--format",
            "oci-dir",
            "-o",
            &layout.display().to_string(),
            &name,
        ])
        .success();
    for source in [
        format!("oci-archive:{}:{name}", oci_tar.display()),
        format!("oci:{}:{name}", layout.display()),
    ] {
        let copied = stencil.scratch().join(format!("via-{}", source.len()));
        let Some(()) = skopeo_copy(&source, &format!("oci:{}:x", copied.display())) else {
            return;
        };
    }
    for input in [&oci_tar, &layout] {
        let third = Stencil::new();
        third
            .run(&["load", "-q", "-i", &input.display().to_string()])
            .success()
            .stdout_is(&format!("Loaded image: {name}\n"));
        third.run(&["fsck"]).success();
    }
    // A directory that holds something is not written over; no format is guessed.
    stencil
        .run(&[
            "save",
            "--format",
            "oci-dir",
            "-o",
            &layout.display().to_string(),
            &name,
        ])
        .expect_code(125)
        .stderr_contains("it exists and is not empty");
    stencil
        .run(&["save", "--format", "oci-dir", &name])
        .expect_code(125)
        .stderr_contains("-o DIR");
    stencil
        .run(&["save", "--format", "tarball", "-o", "x.tar", &name])
        .expect_code(125)
        .stderr_contains("unknown format \"tarball\"");
}

#[test]
fn load_of_a_corrupted_archive_fails_cleanly() {
    let stencil = Stencil::new();
    let bad = stencil.scratch().join("bad.tar");
    std::fs::write(&bad, b"this is not a tar archive at all").unwrap_or_else(|e| panic!("{e}"));
    stencil
        .run(&["load", "-i", &bad.display().to_string()])
        .expect_code(125)
        .stderr_contains("bad.tar");
    stencil.run(&["images", "-q"]).success().stdout_is("");
    stencil.run(&["fsck"]).success();
}

/// An oci-archive holding one image of one valid layer; with `lie`, the config promises
/// another diff ID than the layer's content has (every blob digest is still right, so only
/// the unpacker can notice).
fn archive_with_layer(path: &std::path::Path, lie: bool) {
    use sha2::{Digest as _, Sha256};
    let hex = |bytes: &[u8]| format!("{:x}", Sha256::digest(bytes));
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(6);
    header.set_mode(0o644);
    layer
        .append_data(&mut header, "hello", &b"hello\n"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let plain = layer.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let diff_id = if lie {
        hex(b"something else")
    } else {
        hex(&plain)
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap_or_else(|e| panic!("{e}"));
    let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{}", hex(&gz)), "size": gz.len()}],
    }))
    .unwrap_or_default();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{}", hex(&manifest)), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "localhost:5000/bad/trailing:1"}}],
    }))
    .unwrap_or_default();
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut archive = tar::Builder::new(file);
    let mut add = |name: String, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        archive
            .append_data(&mut header, name, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&config, &manifest, &gz] {
        add(format!("blobs/sha256/{}", hex(blob)), blob);
    }
    archive.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// A docker-archive (`manifest.json`, `NAME.json` configs, `NAME.tar` layers) holding one
/// image per `(tags, lie, content)`: with `lie` the config gives the layer a diff ID it
/// does not have.
fn docker_archive(path: &std::path::Path, images: &[(&[&str], bool, &str)]) {
    use sha2::{Digest as _, Sha256};
    let hex = |bytes: &[u8]| format!("{:x}", Sha256::digest(bytes));
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut archive = tar::Builder::new(file);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        archive
            .append_data(&mut header, name, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let mut entries = Vec::new();
    for (index, (tags, lie, content)) in images.iter().enumerate() {
        let mut layer = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        layer
            .append_data(&mut header, "file", content.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = layer.into_inner().unwrap_or_else(|e| panic!("{e}"));
        let diff_id = if *lie { "0".repeat(64) } else { hex(&plain) };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        }))
        .unwrap_or_default();
        add(&format!("layer{index}.tar"), &plain);
        add(&format!("config{index}.json"), &config);
        entries.push(serde_json::json!({
            "Config": format!("config{index}.json"),
            "RepoTags": tags,
            "Layers": [format!("layer{index}.tar")],
        }));
    }
    add(
        "manifest.json",
        &serde_json::to_vec(&entries).unwrap_or_default(),
    );
    archive.finish().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_bad_archive_leaves_no_image_and_no_tag() {
    let stencil = Stencil::new();
    let load = |name: &str, images: &[(&[&str], bool, &str)]| {
        let path = stencil.scratch().join(name);
        docker_archive(&path, images);
        stencil.run(&["load", "-i", &path.display().to_string()])
    };
    let nothing = || {
        stencil.run(&["images", "-aq"]).success().stdout_is("");
    };
    // A name that is no reference: refused before anything is recorded.
    load("badname.tar", &[(&["EV:1"], false, "a\n")])
        .expect_code(125)
        .stderr_contains("\"EV:1\"");
    nothing();
    // A layer that is not what its config says: refused, and untagged, also when the
    // same image was left by an earlier failure.
    for _ in 0..2 {
        load("lie.tar", &[(&["ev3:1"], true, "a\n")])
            .expect_code(125)
            .stderr_contains("expects diff id");
        nothing();
    }
    // One bad image refuses the whole archive, as docker does.
    load(
        "mixed.tar",
        &[(&["good:1"], false, "good\n"), (&["bad:1"], true, "bad\n")],
    )
    .expect_code(125)
    .stderr_contains("refused as a whole");
    nothing();
    // A good archive then loads with its names; the store stays consistent throughout.
    load(
        "fine.tar",
        &[
            (&["good:1"], false, "good\n"),
            (&["other:2"], false, "other\n"),
        ],
    )
    .success()
    .stdout_is("Loaded image: good:1\nLoaded image: other:2\n");
    stencil.run(&["fsck"]).success();
    // Standard input is named as such in errors, not by the spooled copy, and bytes
    // that are no tar are said to be so (no binary noise).
    stencil
        .run_with(
            &["load"],
            &[],
            Some(&[0x9c_u8, 0x01, 0xff, 0x7f].repeat(300)[..]),
        )
        .expect_code(125)
        .stderr_contains("cannot load standard input")
        .stderr_contains("it is not a tar archive");
    // Compressed archives load, as docker load takes them.
    let plain = stencil.scratch().join("fine.tar");
    let bytes = std::fs::read(&plain).unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
    let zst = zstd::encode_all(&bytes[..], 3).unwrap_or_else(|e| panic!("{e}"));
    // xz and bzip2 by the real tools (Debian's xz-utils and bzip2).
    let by_tool = |tool: &str| {
        let output = std::process::Command::new(tool)
            .args(["-c", &plain.display().to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(output.status.success(), "{tool} failed");
        output.stdout
    };
    let xz = by_tool("xz");
    let bz2 = by_tool("bzip2");
    for compressed in [gz, zst, xz.clone(), bz2] {
        let other = Stencil::new();
        other
            .run_with(&["load"], &[], Some(&compressed))
            .success()
            .stdout_is("Loaded image: good:1\nLoaded image: other:2\n");
    }
    // A cut compressed archive loads nothing and says so.
    let other = Stencil::new();
    let cut = other.scratch().join("cut.tar.xz");
    std::fs::write(&cut, &xz[..xz.len() * 2 / 3]).unwrap_or_else(|e| panic!("{e}"));
    other
        .run(&["load", "-i", &cut.display().to_string()])
        .expect_code(125)
        .stderr_contains("cut.tar.xz");
    other.run(&["images", "-aq"]).success().stdout_is("");
    other.run(&["fsck"]).success();
}

#[test]
fn a_layer_that_breaks_its_diff_id_is_refused_and_nothing_stays() {
    let stencil = Stencil::new();
    let fine = stencil.scratch().join("fine.tar");
    archive_with_layer(&fine, false);
    stencil
        .run(&["load", "-q", "-i", &fine.display().to_string()])
        .success();
    stencil
        .run(&["rmi", "localhost:5000/bad/trailing:1"])
        .success();
    let bad = stencil.scratch().join("bad.tar");
    archive_with_layer(&bad, true);
    stencil
        .run(&["load", "-i", &bad.display().to_string()])
        .expect_code(125)
        .stderr_contains("expects diff id");
    stencil.run(&["images", "-q"]).success().stdout_is("");
    let snapshots = std::fs::read_dir(stencil.root().join("snapshots/snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(snapshots, 0, "no snapshot of the refused layer stays");
    stencil.run(&["fsck"]).success();
}
