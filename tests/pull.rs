//! End-to-end tests of `stencil pull` and `stencil images` against a real registry.

use std::os::unix::fs::MetadataExt;

use stencil_e2e::Stencil;
use stencil_e2e::peers::{DockerRegistry, LayoutBuilder, skopeo_copy};

/// A two-layer image: the second layer changes a file, deletes one and adds a hardlink.
fn push_test_image(stencil: &Stencil, registry: &DockerRegistry, name: &str) -> Option<String> {
    let layout = LayoutBuilder::new(stencil.scratch(), "v1")?
        .layer(|rootfs| {
            std::fs::create_dir_all(rootfs.join("etc")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(rootfs.join("etc/motd"), "first\n").unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(rootfs.join("etc/gone"), "bye\n").unwrap_or_else(|e| panic!("{e}"));
        })
        .layer(|rootfs| {
            std::fs::write(rootfs.join("etc/motd"), "second\n").unwrap_or_else(|e| panic!("{e}"));
            std::fs::remove_file(rootfs.join("etc/gone")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::hard_link(rootfs.join("etc/motd"), rootfs.join("etc/motd.link"))
                .unwrap_or_else(|e| panic!("{e}"));
        })
        .cmd("/bin/sh");
    let target = format!("{}/{name}:v1", registry.host());
    skopeo_copy(&layout.skopeo_name(), &format!("docker://{target}"))?;
    Some(target)
}

#[test]
fn pull_fetches_unpacks_and_lists_an_image() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(image) = push_test_image(&stencil, &registry, "e2e/two-layers") else {
        return;
    };
    let first = stencil.run(&["pull", &image]);
    first.success();
    assert!(
        first
            .stdout
            .starts_with("v1: Pulling from e2e/two-layers\n"),
        "{first}"
    );
    assert!(first.stdout.contains("Pull complete"), "{first}");
    // Each layer's lines come in docker's order, each once, though layers unpack while
    // they download.
    let layer_lines: Vec<(&str, &str)> = first
        .lines()
        .into_iter()
        .filter_map(|line| line.split_once(": "))
        .filter(|(id, _)| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    let mut layers: Vec<&str> = layer_lines.iter().map(|(id, _)| *id).collect();
    layers.sort_unstable();
    layers.dedup();
    assert_eq!(layers.len(), 2, "{first}");
    for layer in layers {
        let steps: Vec<&str> = layer_lines
            .iter()
            .filter(|(id, _)| *id == layer)
            .map(|(_, step)| *step)
            .filter(|step| *step != "Verifying Checksum")
            .collect();
        assert_eq!(
            steps,
            [
                "Pulling fs layer",
                "Download complete",
                "Extracting",
                "Pull complete"
            ],
            "{first}"
        );
    }
    assert!(
        first
            .stdout
            .contains(&format!("Status: Downloaded newer image for {image}\n")),
        "{first}"
    );
    assert!(first.stdout.ends_with(&format!("{image}\n")), "{first}");

    let second = stencil.run(&["pull", &image]);
    second.success();
    assert!(
        second.stdout.contains("Status: Image is up to date for"),
        "{second}"
    );
    assert!(
        !second.stdout.contains("Pulling fs layer"),
        "nothing re-downloaded\n{second}"
    );

    let listed = stencil.run(&["images", "--format", "{{.Repository}} {{.Tag}}"]);
    listed
        .success()
        .stdout_is(&format!("{}/e2e/two-layers v1\n", registry.host()));
    let table = stencil.run(&["images"]);
    table.success();
    assert_eq!(
        table.lines()[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );

    // The top snapshot holds the second layer: the change, the overlay whiteout for the
    // deleted file, and the hardlink sharing an inode with its target.
    let snapshots = stencil.root().join("snapshots/snapshots");
    let mut found_whiteout = false;
    let mut found_link = false;
    for entry in std::fs::read_dir(&snapshots)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let etc = entry.path().join("fs/etc");
        if let Ok(meta) = std::fs::symlink_metadata(etc.join("gone")) {
            found_whiteout |= meta.rdev() == 0 && !meta.is_file();
        }
        if let (Ok(a), Ok(b)) = (
            std::fs::metadata(etc.join("motd")),
            std::fs::metadata(etc.join("motd.link")),
        ) {
            found_link |= a.ino() == b.ino();
            assert_eq!(
                std::fs::read_to_string(etc.join("motd")).unwrap_or_default(),
                "second\n"
            );
        }
    }
    assert!(
        found_whiteout,
        "no overlay whiteout for etc/gone\n{}",
        table
    );
    assert!(found_link, "hardlink not preserved\n{}", table);
}

#[test]
fn pull_of_a_missing_image_fails_with_125_naming_it() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let image = format!("{}/no/such-image:v9", registry.host());
    let run = stencil.run(&["pull", &image]);
    run.expect_code(125).stderr_contains("no/such-image");
    // The registry's MANIFEST_UNKNOWN is reported as such, as docker reports it.
    run.stderr_contains(&format!("manifest for {image} not found"));
    stencil.run(&["images", "-q"]).success().stdout_is("");
}

#[test]
fn pull_of_a_malformed_reference_fails_with_125() {
    Stencil::new()
        .run(&["pull", "Not/Valid"])
        .expect_code(125)
        .stderr_contains("\"Not/Valid\"");
}

#[test]
fn tag_inspect_history_and_rmi_work_on_a_pulled_image() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(image) = push_test_image(&stencil, &registry, "e2e/tagged") else {
        return;
    };
    stencil
        .run(&["pull", "-q", &image])
        .success()
        .stdout_is(&format!("{image}\n"));
    let id = stencil.run(&["images", "-q"]);
    id.success();
    let id = id.stdout.trim().to_owned();
    assert_eq!(id.len(), 12, "short image id expected: {id:?}");

    stencil.run(&["tag", &image, "mine:1"]).success();
    stencil.run(&["tag", &id, "localhost:5000/mine"]).success();
    stencil
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}", "mine"])
        .success()
        .stdout_is("mine:1\n");

    let inspected = stencil.run(&["inspect", "mine:1"]);
    inspected.success();
    let value: serde_json::Value = serde_json::from_str(&inspected.stdout)
        .unwrap_or_else(|e| panic!("inspect is not JSON: {e}\n{inspected}"));
    let object = &value[0];
    assert!(
        object["Id"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("sha256:{id}"))),
        "{inspected}"
    );
    assert_eq!(
        object["RepoTags"].as_array().map(Vec::len),
        Some(3),
        "{inspected}"
    );
    assert_eq!(
        object["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2),
        "{inspected}"
    );
    assert_eq!(object["Config"]["Cmd"][0], "/bin/sh", "{inspected}");
    stencil
        .run(&["inspect", "--format", "{{.Os}}/{{.Architecture}}", "mine:1"])
        .success();

    let history = stencil.run(&["history", "mine:1"]);
    history.success();
    let lines = history.lines();
    assert_eq!(
        lines.len(),
        4,
        "header, config step and two layers\n{history}"
    );
    assert!(lines[1].starts_with(&id), "{history}");
    assert!(lines[2].starts_with("<missing>"), "{history}");

    // By ID with several tags: refused without -f, and nothing is removed.
    stencil
        .run(&["rmi", &id])
        .expect_code(125)
        .stderr_contains("-f");
    stencil
        .run(&["rmi", "mine:1"])
        .success()
        .stdout_is("Untagged: mine:1\n");
    let removed = stencil.run(&["rmi", "-f", &id]);
    removed.success();
    assert!(removed.stdout.contains("Deleted: sha256:"), "{removed}");
    // The image is named by its ID, as docker does, not by its manifest.
    let full_id = removed
        .lines()
        .into_iter()
        .find_map(|line| line.strip_prefix("Deleted: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        full_id
            .trim_start_matches("sha256:")
            .starts_with(id.trim_start_matches("sha256:")),
        "the first Deleted line is the image ID {id}: {removed}"
    );
    stencil.run(&["images", "-q"]).success().stdout_is("");
    let blobs = std::fs::read_dir(stencil.root().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "every blob of the only image is collected");
    stencil
        .run(&["rmi", "mine:1"])
        .expect_code(125)
        .stderr_contains("mine:1");
}

#[test]
fn concurrent_pulls_of_one_image_into_one_store_all_succeed() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let pusher = Stencil::new();
    let Some(image) = push_test_image(&pusher, &registry, "e2e/together") else {
        return;
    };
    // Several rounds, each into a fresh store, so that the pulls race on every document
    // and layer (the manifest, the config, both blobs, both snapshots).
    for round in 0..4 {
        let stencil = Stencil::new();
        let children: Vec<_> = (0..3)
            .map(|_| {
                stencil
                    .command(&["pull", "-q", &image])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn: {e}"))
            })
            .collect();
        for child in children {
            let output = child
                .wait_with_output()
                .unwrap_or_else(|e| panic!("wait: {e}"));
            assert!(
                output.status.success(),
                "round {round}: a concurrent pull failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        stencil
            .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .success()
            .stdout_is(&format!("{image}\n"));
        stencil.assert_consistent();
    }
}
