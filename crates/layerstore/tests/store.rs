//! Store acceptance: metadata and tags, the store as an OCI layout read by skopeo and
//! umoci, save/load round trips through OCI layouts, oci-archives and docker-archives
//! (checked by skopeo and umoci), garbage collection and fsck.

mod support;

use std::path::Path;
use std::process::Command;

use stencil_layerstore::archive::{LoadOptions, SaveFormat, export_oci_layout, load, save};
use stencil_layerstore::content::{Manager, Provider};
use stencil_layerstore::fsck::{FsckOptions, Problem};
use stencil_layerstore::{Digest, ErrorKind, Reference, Store};
use support::{make_image, peer, run};

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn blob_count(store: &Store) -> usize {
    let mut count = 0;
    store
        .content()
        .walk(&mut |_| {
            count += 1;
            Ok(())
        })
        .expect("walk");
    count
}

#[test]
fn records_images_tags_and_the_oci_index() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("open");
    let digest = make_image(
        &store,
        "busybox:1",
        "amd64",
        &[&[("bin/sh", b"#!")], &[("etc/motd", b"hi")]],
    );
    let image = store
        .resolve(&reference("busybox:1"))
        .expect("resolve by tag");
    assert_eq!(image.manifest_digest, digest);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(
        image.layers[0].chain_id, image.layers[0].diff_id,
        "bottom chain id is the diff id"
    );
    assert_eq!(image.platform.to_string(), "linux/amd64");
    let by_digest = store
        .resolve(&reference(&format!("busybox@{digest}")))
        .expect("resolve by digest");
    assert_eq!(by_digest.id, image.id);
    assert_eq!(
        store.record_image(&digest, None).expect("record again").id,
        image.id,
        "recording twice is idempotent"
    );

    store
        .tag(&reference("localhost:5000/mine:v2"), &digest)
        .expect("second tag");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("index.json")).expect("index.json"))
            .expect("index json");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|entry| entry["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1", "localhost:5000/mine:v2"]
    );
    assert!(root.path().join("oci-layout").exists());

    assert!(
        store
            .untag(&reference("localhost:5000/mine:v2"))
            .expect("untag")
    );
    let errors = [
        (
            store.resolve(&reference("localhost:5000/mine:v2")).err(),
            ErrorKind::ImageNotFound,
        ),
        (
            store.tag(&reference("x:y"), &support::layer(&[]).1).err(),
            ErrorKind::ImageNotFound,
        ),
        (
            store.tag(&reference(&format!("x@{digest}")), &digest).err(),
            ErrorKind::MissingTag,
        ),
    ];
    for (error, kind) in errors {
        assert_eq!(error.map(|error| error.kind()), Some(kind));
    }
    drop(store);
    let reopened = Store::open(root.path()).expect("reopen");
    assert_eq!(reopened.tags().expect("tags").len(), 1, "tags persist");
}

#[test]
fn snapshots_and_garbage_collection() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("open");
    let shared: &[(&str, &[u8])] = &[("bin/sh", b"shared base")];
    let first = make_image(&store, "first:1", "amd64", &[shared, &[("a", b"first")]]);
    let second = make_image(&store, "second:1", "amd64", &[shared, &[("b", b"second")]]);
    let first_image = store.image(&first).expect("first");
    let base_chain = first_image.layers[0].chain_id.clone();
    let top_chain = first_image.layers[1].chain_id.clone();
    assert_eq!(
        store
            .record_snapshot(&base_chain, "base", Some(1))
            .expect("snapshot")
            .refcount,
        2,
        "base used by two images"
    );
    assert_eq!(
        store
            .record_snapshot(&top_chain, "top", Some(2))
            .expect("snapshot")
            .refcount,
        1
    );
    let blobs_before = blob_count(&store);

    // Another tag keeps the image: only the tag goes.
    store.tag(&reference("first:alias"), &first).expect("alias");
    let removal = store
        .remove_image(&reference("first:alias"))
        .expect("rmi alias");
    assert_eq!(
        (removal.deleted.as_ref(), removal.blobs_deleted.len()),
        (None, 0)
    );

    let removal = store
        .remove_image(&reference("first:1"))
        .expect("rmi first");
    assert_eq!(removal.deleted.as_ref(), Some(&first));
    // Manifest, config and the first image's own layer; the shared layer stays.
    assert_eq!(removal.blobs_deleted.len(), 3, "{removal:?}");
    assert_eq!(blob_count(&store), blobs_before - 3);
    assert_eq!(
        removal
            .snapshots_released
            .iter()
            .map(|s| s.key.as_str())
            .collect::<Vec<_>>(),
        ["top"]
    );
    assert_eq!(
        store
            .snapshot(&base_chain)
            .expect("snapshot")
            .map(|s| s.refcount),
        Some(1)
    );
    assert!(
        store
            .content()
            .contains(&first_image.layers[0].blob_digest)
            .expect("contains"),
        "shared layer kept"
    );
    assert!(
        store
            .fsck(&FsckOptions::default())
            .expect("fsck")
            .problems
            .is_empty()
    );

    store
        .remove_image(&reference(&format!("second@{second}")))
        .expect("rmi by digest");
    assert_eq!(blob_count(&store), 0, "every blob gone with the last image");
    assert!(store.snapshots().expect("snapshots").is_empty());
    assert!(store.tags().expect("tags").is_empty());
    assert_eq!(
        store
            .remove_image(&reference("second:1"))
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::ImageNotFound)
    );

    // Loose blobs are collected only once old enough.
    let loose = store.put_blob(b"loose").expect("loose blob");
    assert!(
        store
            .collect_garbage(std::time::Duration::from_secs(3600))
            .expect("gc")
            .is_empty()
    );
    assert_eq!(
        store
            .collect_garbage(std::time::Duration::ZERO)
            .expect("gc"),
        vec![loose]
    );
}

#[test]
fn held_blobs_survive_image_removal_and_garbage_collection() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("open");
    let digest = make_image(&store, "shared:1", "amd64", &[&[("f", b"shared layer")]]);
    let image = store.image(&digest).expect("image");
    let layer = image.layers[0].blob_digest.clone();
    let loose = store.put_blob(b"an artifact blob").expect("loose blob");

    // A registry repository links the image's layer and an artifact blob no image uses.
    store
        .hold_blobs("registry:demo/artifacts", &[layer.clone(), loose.clone()])
        .expect("hold");
    assert_eq!(
        store.blob_holders(&layer).expect("holders"),
        ["registry:demo/artifacts"]
    );
    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).expect("digest");
    assert_eq!(
        store
            .hold_blobs("registry:demo/artifacts", std::slice::from_ref(&missing))
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::BlobNotFound),
        "a hold names blobs that exist"
    );

    let removal = store.remove_image(&reference("shared:1")).expect("rmi");
    assert!(
        !removal.blobs_deleted.contains(&layer),
        "the held layer survives rmi: {removal:?}"
    );
    assert!(store.content().contains(&layer).expect("contains"));
    assert!(
        store
            .collect_garbage(std::time::Duration::ZERO)
            .expect("gc")
            .iter()
            .all(|d| *d != layer && *d != loose),
        "held blobs survive garbage collection"
    );
    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(!report.unreferenced_blobs.contains(&loose));

    // Releasing one hold frees that blob only; releasing the holder frees the rest.
    assert!(
        store
            .release_blobs("registry:demo/artifacts", Some(&loose))
            .expect("release")
    );
    assert!(
        !store
            .release_blobs("registry:demo/artifacts", Some(&loose))
            .expect("release twice")
    );
    let collected = store
        .collect_garbage(std::time::Duration::ZERO)
        .expect("gc");
    assert!(collected.contains(&loose) && !collected.contains(&layer));
    assert!(
        store
            .release_blobs("registry:demo/artifacts", None)
            .expect("release all")
    );
    assert_eq!(
        store
            .collect_garbage(std::time::Duration::ZERO)
            .expect("gc"),
        vec![layer.clone()]
    );

    // fsck reports a hold on a blob that went missing behind the store's back, and repair
    // drops it.
    let again = store.put_blob(b"held then lost").expect("blob");
    store
        .hold_blobs("registry:demo/lost", std::slice::from_ref(&again))
        .expect("hold");
    let path = store.content().blob_path(&again);
    std::fs::remove_file(&path).expect("lose the blob");
    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(
        matches!(&report.problems[..], [Problem::MissingHeldBlob { holder, digest }]
            if holder == "registry:demo/lost" && *digest == again),
        "{:?}",
        report.problems
    );
    store.fsck(&FsckOptions { repair: true }).expect("repair");
    assert!(store.blob_holds().expect("holds").is_empty());
    assert!(
        store
            .fsck(&FsckOptions::default())
            .expect("fsck")
            .problems
            .is_empty()
    );
}

#[test]
fn fsck_finds_and_repairs() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("open");
    let digest = make_image(&store, "victim:1", "amd64", &[&[("f", b"content")]]);
    let image = store.image(&digest).expect("image");
    store
        .record_snapshot(&image.layers[0].chain_id, "k", Some(7))
        .expect("snapshot");
    let clean = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.blobs_checked, 3);

    // Corrupt the layer, leave an orphan snapshot directory and a stray file.
    let layer_path = store.content().blob_path(&image.layers[0].blob_digest);
    let mut permissions = std::fs::metadata(&layer_path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o644);
    std::fs::set_permissions(&layer_path, permissions).expect("chmod");
    std::fs::write(&layer_path, b"bit rot").expect("corrupt");
    std::fs::create_dir_all(root.path().join("snapshots/99/fs")).expect("orphan");
    std::fs::create_dir_all(root.path().join("snapshots/7/fs")).expect("known");
    std::fs::write(root.path().join("blobs/sha256/not-a-digest"), b"?").expect("stray");

    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    let kinds: Vec<&str> = report
        .problems
        .iter()
        .map(|problem| match problem {
            Problem::CorruptBlob { .. } => "corrupt",
            Problem::StrayFile { .. } => "stray",
            Problem::OrphanSnapshot { .. } => "orphan snapshot",
            Problem::MissingBlob { .. } => "missing",
            Problem::RefcountMismatch { .. } => "refcount",
            Problem::LeftoverIngest { .. } => "ingest",
            _ => "other",
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["corrupt", "orphan snapshot", "stray"],
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[0]
            .to_string()
            .contains(image.layers[0].blob_digest.as_str())
            || report
                .problems
                .iter()
                .any(|p| p.to_string().contains(image.layers[0].blob_digest.as_str()))
    );

    let repaired = store.fsck(&FsckOptions { repair: true }).expect("repair");
    assert!(!repaired.repairs.is_empty());
    assert!(
        store.image(&digest).expect("image").broken.is_some(),
        "image marked broken"
    );
    let after = store
        .fsck(&FsckOptions::default())
        .expect("fsck after repair");
    let remaining: Vec<String> = after.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        remaining.len(),
        1,
        "only the missing layer remains: {remaining:?}"
    );
    assert!(matches!(after.problems[0], Problem::MissingBlob { .. }));
    assert!(!root.path().join("snapshots/99").exists() && root.path().join("snapshots/7").exists());
}

fn skopeo_inspect(skopeo: &Path, target: &str, dir: &Path) -> serde_json::Value {
    let output = run(Command::new(skopeo).args(["inspect", "--raw", target]), dir);
    serde_json::from_str(&output)
        .unwrap_or_else(|error| panic!("skopeo inspect {target}: {error}: {output}"))
}

fn skopeo_digest(skopeo: &Path, target: &str, dir: &Path) -> String {
    let output = run(
        Command::new(skopeo).args(["inspect", "--format", "{{.Digest}}", target]),
        dir,
    );
    output.trim().to_owned()
}

#[test]
fn round_trips_through_archives_and_peers() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("open");
    let digest = make_image(
        &store,
        "roundtrip:1",
        "amd64",
        &[
            &[("etc/hostname", b"stencil\n")],
            &[("usr/bin/tool", b"\x7fELF")],
        ],
    );
    let name = reference("roundtrip:1");
    let skopeo = peer("skopeo");
    let umoci = peer("umoci");

    // The store itself is an OCI layout.
    if let Some(skopeo) = &skopeo {
        let target = format!(
            "oci:{}:docker.io/library/roundtrip:1",
            store.root().display()
        );
        assert_eq!(
            skopeo_digest(skopeo, &target, work.path()),
            digest.to_string(),
            "skopeo reads the store"
        );
    }

    let layout = work.path().join("layout");
    export_oci_layout(&store, std::slice::from_ref(&name), &layout).expect("export layout");
    let oci_archive = work.path().join("image.oci.tar");
    let docker_archive = work.path().join("image.docker.tar");
    for (path, format) in [
        (&oci_archive, SaveFormat::OciArchive),
        (&docker_archive, SaveFormat::DockerArchive),
    ] {
        let mut file = std::fs::File::create(path).expect("create archive");
        save(&store, std::slice::from_ref(&name), format, &mut file).expect("save");
    }

    if let Some(skopeo) = &skopeo {
        let targets = [
            format!("oci:{}:docker.io/library/roundtrip:1", layout.display()),
            format!(
                "oci-archive:{}:docker.io/library/roundtrip:1",
                oci_archive.display()
            ),
        ];
        for target in &targets {
            assert_eq!(
                skopeo_digest(skopeo, target, work.path()),
                digest.to_string(),
                "{target}"
            );
        }
        let config = skopeo_inspect(
            skopeo,
            &format!("docker-archive:{}", docker_archive.display()),
            work.path(),
        );
        assert_eq!(
            config["layers"].as_array().map(Vec::len),
            Some(2),
            "skopeo reads the docker-archive: {config}"
        );
    }
    if let Some(umoci) = &umoci {
        let bundle = work.path().join("bundle");
        run(
            Command::new(umoci)
                .args(["unpack", "--rootless", "--image"])
                .arg(format!(
                    "{}:docker.io/library/roundtrip:1",
                    layout.display()
                ))
                .arg(&bundle),
            work.path(),
        );
        let hostname = std::fs::read(bundle.join("rootfs/etc/hostname")).expect("unpacked file");
        assert_eq!(hostname, b"stencil\n");
    }

    // Reload each into a fresh store: the same digests come back, with the tag.
    for source in [&layout, &oci_archive, &docker_archive] {
        let fresh = Store::open(work.path().join(format!(
            "fresh-{}",
            source.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        )))
        .expect("fresh store");
        let loaded = load(&fresh, source, &LoadOptions::default())
            .unwrap_or_else(|error| panic!("load {}: {error}", source.display()));
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].image.manifest_digest,
            digest,
            "{}",
            source.display()
        );
        assert_eq!(
            fresh
                .resolve(&name)
                .expect("tag after load")
                .manifest_digest,
            digest
        );
        assert!(
            fresh
                .fsck(&FsckOptions::default())
                .expect("fsck")
                .problems
                .is_empty()
        );
    }

    // Archives written by skopeo: a legacy docker-archive (layers not named by digest)
    // and a Docker schema 2 OCI layout.
    if let Some(skopeo) = &skopeo {
        let source = format!(
            "oci:{}:docker.io/library/roundtrip:1",
            store.root().display()
        );
        let legacy = work.path().join("skopeo.docker.tar");
        run(
            Command::new(skopeo)
                .args(["copy", &source])
                .arg(format!("docker-archive:{}:roundtrip:1", legacy.display())),
            work.path(),
        );
        let v2s2 = work.path().join("skopeo-v2s2");
        run(
            Command::new(skopeo)
                .args(["copy", "--format", "v2s2", &source])
                .arg(format!("oci:{}:latest", v2s2.display())),
            work.path(),
        );
        let fresh = Store::open(work.path().join("fresh-skopeo")).expect("fresh store");
        let loaded =
            load(&fresh, &legacy, &LoadOptions::default()).expect("load skopeo docker-archive");
        assert_eq!(
            loaded[0].image.config_digest,
            store.image(&digest).expect("image").config_digest,
            "same config"
        );
        assert_eq!(
            fresh.resolve(&name).expect("tag").config_digest,
            loaded[0].image.config_digest
        );
        let options = LoadOptions {
            name: Some(reference("converted")),
            ..LoadOptions::default()
        };
        let loaded = load(&fresh, &v2s2, &options).expect("load v2s2 layout");
        assert_eq!(
            loaded[0].image.manifest_media_type,
            stencil_layerstore::image::media_type::DOCKER_MANIFEST
        );
        assert_eq!(loaded[0].tags, ["docker.io/library/converted:latest"]);
        let problems = fresh.fsck(&FsckOptions::default()).expect("fsck").problems;
        assert!(problems.is_empty(), "{problems:?}");
    }
}

#[test]
fn load_refuses_what_is_not_an_image_archive() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("open");
    let empty_dir = work.path().join("empty");
    std::fs::create_dir_all(&empty_dir).expect("dir");
    let not_tar = work.path().join("not.tar");
    std::fs::write(&not_tar, b"hello").expect("write");
    let cases: [(&str, &Path, ErrorKind); 2] = [
        ("empty directory", &empty_dir, ErrorKind::InvalidArchive),
        ("not a tar", &not_tar, ErrorKind::InvalidArchive),
    ];
    for (name, path, kind) in cases {
        let got = load(&store, path, &LoadOptions::default())
            .err()
            .map(|error| error.kind());
        assert_eq!(got, Some(kind), "{name}");
    }
}

#[test]
fn load_picks_the_platform_from_a_multi_platform_index() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("open");
    let amd64 = make_image(&store, "multi:amd64", "amd64", &[&[("arch", b"amd64")]]);
    let arm64 = make_image(&store, "multi:arm64", "arm64", &[&[("arch", b"arm64")]]);
    let layout = work.path().join("layout");
    export_oci_layout(
        &store,
        &[reference("multi:amd64"), reference("multi:arm64")],
        &layout,
    )
    .expect("export");
    // Replace the layout's index with one nested multi-platform index.
    let entry = |digest: &stencil_layerstore::Digest, architecture: &str| {
        let size = store.content().info(digest).expect("info").size;
        serde_json::json!({"mediaType": stencil_layerstore::image::media_type::OCI_MANIFEST, "digest": digest.as_str(), "size": size,
            "platform": {"os": "linux", "architecture": architecture}})
    };
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": stencil_layerstore::image::media_type::OCI_INDEX,
        "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64")]});
    let nested = serde_json::to_vec(&nested).expect("json");
    let nested_digest = stencil_layerstore::content::sha256_digest(&nested);
    std::fs::write(
        layout.join("blobs/sha256").join(nested_digest.hex()),
        &nested,
    )
    .expect("nested index blob");
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": stencil_layerstore::image::media_type::OCI_INDEX,
        "digest": nested_digest.as_str(), "size": nested.len(), "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("index.json");

    let cases = [
        ("linux/arm64", Some(&arm64)),
        ("linux/amd64", Some(&amd64)),
        ("linux/s390x", None),
    ];
    for (platform, expected) in cases {
        let fresh = Store::open(work.path().join(platform.replace('/', "-"))).expect("fresh");
        let options = LoadOptions {
            name: Some(reference("example.com/multi")),
            platform: stencil_layerstore::image::Platform::parse(platform).expect("platform"),
            ..LoadOptions::default()
        };
        let result = load(&fresh, &layout, &options);
        match (result, expected) {
            (Ok(loaded), Some(expected)) => {
                assert_eq!(&loaded[0].image.manifest_digest, expected, "{platform}");
                assert_eq!(
                    loaded[0].image.index_digest.as_ref(),
                    Some(&nested_digest),
                    "{platform}"
                );
                assert_eq!(loaded[0].tags, ["example.com/multi:1.0"], "{platform}");
            }
            (Err(error), None) => assert_eq!(
                error.kind(),
                ErrorKind::NoMatchingPlatform,
                "{platform}: {error}"
            ),
            (result, _) => panic!("{platform}: unexpected {result:?}"),
        }
    }
}

#[test]
fn an_image_takes_another_manifest_of_the_same_config() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("open");
    let old = make_image(&store, "app:1", "amd64", &[&[("f", b"content")]]);
    let image = store.image(&old).expect("image");
    let old_layer = image.layers[0].blob_digest.clone();
    // The same layer as a plain tar: its digest is the diff ID.
    let plain = support::plain_layer(&[("f", b"content")]);
    let plain_digest = store.put_blob(&plain).expect("store plain layer");
    assert_eq!(plain_digest, image.layers[0].diff_id);
    let manifest = |config: &Digest| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": stencil_layerstore::image::media_type::OCI_MANIFEST,
            "config": {"mediaType": stencil_layerstore::image::media_type::OCI_CONFIG,
                       "digest": config.as_str(), "size": store.content().info(config).expect("config info").size},
            "layers": [{"mediaType": stencil_layerstore::image::media_type::OCI_LAYER,
                        "digest": plain_digest.as_str(), "size": plain.len()}],
        }))
        .expect("manifest json")
    };

    // A manifest of another config is refused and changes nothing.
    let other = make_image(&store, "other:1", "arm64", &[&[("g", b"other")]]);
    let other_config = store.image(&other).expect("other").config_digest;
    let wrong = store.put_blob(&manifest(&other_config)).expect("store");
    let refused = store.replace_manifest(&image, &wrong);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("not the image's")),
        "a manifest of another config is refused"
    );
    assert_eq!(
        store
            .resolve(&reference("app:1"))
            .expect("app")
            .manifest_digest,
        old
    );

    let new = store
        .put_blob(&manifest(&image.config_digest))
        .expect("store");
    let replaced = store.replace_manifest(&image, &new).expect("replace");
    assert_eq!(replaced.id, image.id, "the same record");
    assert_eq!(replaced.manifest_digest, new);
    assert_eq!(replaced.layers[0].blob_digest, plain_digest);
    assert_eq!(replaced.layers[0].diff_id, image.layers[0].diff_id);
    assert_eq!(replaced.layers[0].chain_id, image.layers[0].chain_id);
    let tagged = store.resolve(&reference("app:1")).expect("tag follows");
    assert_eq!(tagged.manifest_digest, new);
    assert!(
        store.image(&old).is_err(),
        "the old manifest names no image"
    );
    assert!(
        !store.content().contains(&old).expect("contains"),
        "old manifest deleted"
    );
    assert!(
        !store.content().contains(&old_layer).expect("contains"),
        "old layer deleted"
    );
    // The layout index names the new manifest.
    let index = std::fs::read_to_string(root.path().join("index.json")).expect("index");
    assert!(
        index.contains(new.as_str()) && !index.contains(old.as_str()),
        "{index}"
    );
    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Replacing with the manifest it already has returns it, also from a stale record
    // (a second push of the same image that compressed the same layers).
    assert_eq!(
        store.replace_manifest(&replaced, &new).expect("again").id,
        image.id
    );
    assert_eq!(
        store
            .replace_manifest(&image, &new)
            .expect("stale")
            .manifest_digest,
        new
    );
}
