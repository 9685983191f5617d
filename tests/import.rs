//! End-to-end tests of `stencil import`: plain, gzip, zstd, xz and bzip2 tarballs and standard input
//! become one-layer images with the requested config; bad input leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stencil_e2e::peers::DockerRegistry;
use stencil_e2e::{Run, Stencil};

/// A small root filesystem as a plain tar: a file, an executable, a directory, a symlink.
fn rootfs_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        if let Some(target) = link {
            header
                .set_link_name(target)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        header.set_cksum();
        builder
            .append_data(&mut header, path, data)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    add("etc/", 0o755, tar::EntryType::Directory, b"", None);
    add(
        "etc/motd",
        0o644,
        tar::EntryType::Regular,
        b"imported\n",
        None,
    );
    add("bin/", 0o755, tar::EntryType::Directory, b"", None);
    add(
        "bin/hello",
        0o755,
        tar::EntryType::Regular,
        b"#!/bin/sh\necho hi\n",
        None,
    );
    add(
        "etc/issue",
        0o777,
        tar::EntryType::Symlink,
        b"",
        Some("motd"),
    );
    builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    encoder.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap_or_else(|e| panic!("{e}"))
}

/// `bytes` compressed by a real tool (`xz`, `bzip2`) in two streams, as the parallel
/// compressors (`pxz`, `pbzip2`) write them.
fn by_tool(tool: &str, bytes: &[u8]) -> Vec<u8> {
    let half = bytes.len() / 2;
    let mut out = Vec::new();
    for part in [&bytes[..half], &bytes[half..]] {
        let mut child = std::process::Command::new(tool)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {tool} (Debian packages xz-utils, bzip2): {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let part = part.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&part));
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        writer.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{tool} failed");
        out.extend(output.stdout);
    }
    out
}

fn write(stencil: &Stencil, name: &str, bytes: &[u8]) -> PathBuf {
    let path = stencil.scratch().join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

fn image_id(run: &Run) -> String {
    run.success();
    let id = run.stdout.trim();
    assert!(
        id.len() == 71 && id.starts_with("sha256:") && run.stdout.lines().count() == 1,
        "import prints only the image ID\n{run}"
    );
    id.to_owned()
}

fn inspect(stencil: &Stencil, image: &str) -> Value {
    let run = stencil.run(&["inspect", image]);
    run.success();
    let value: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("inspect is not JSON: {e}\n{run}"));
    value[0].clone()
}

fn assert_consistent(stencil: &Stencil) {
    let checked = stencil.run(&["fsck"]);
    checked.success();
    assert!(
        checked.stdout.ends_with("store is consistent\n")
            && !checked.stdout.contains("unreferenced"),
        "{checked}"
    );
}

#[test]
fn import_of_plain_gzip_zstd_and_stdin_gives_the_same_layer_and_the_asked_config() {
    let stencil = Stencil::new();
    let plain = rootfs_tar();
    let files = [
        ("plain", write(&stencil, "rootfs.tar", &plain)),
        ("gzip", write(&stencil, "rootfs.tar.gz", &gzip(&plain))),
        ("zstd", write(&stencil, "rootfs.tar.zst", &zstd(&plain))),
        ("xz", write(&stencil, "rootfs.txz", &by_tool("xz", &plain))),
        (
            "bzip2",
            write(&stencil, "rootfs.tar.bz2", &by_tool("bzip2", &plain)),
        ),
    ];
    let mut diff_ids = Vec::new();
    for (name, file) in &files {
        let reference = format!("localhost:5000/e2e/imported:{name}");
        let id = image_id(&stencil.run(&[
            "import",
            "-c",
            r#"CMD ["/bin/hello", "--loud"]"#,
            "-c",
            "ENTRYPOINT /bin/sh",
            "--change",
            "ENV GREETING=\"hello world\" LANG=C",
            "-c",
            "WORKDIR /srv",
            "-c",
            "USER nobody",
            "-c",
            "LABEL org.example.kind=test",
            "-c",
            "EXPOSE 8080 53/udp",
            "-m",
            &format!("from {name}"),
            &path_arg(file),
            &reference,
        ]));
        let object = inspect(&stencil, &reference);
        assert_eq!(object["Id"], id.as_str());
        let config = &object["Config"];
        assert_eq!(config["Cmd"], serde_json::json!(["/bin/hello", "--loud"]));
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "/bin/sh"])
        );
        assert_eq!(
            config["Env"],
            serde_json::json!(["GREETING=hello world", "LANG=C"])
        );
        assert_eq!(config["WorkingDir"], "/srv");
        assert_eq!(config["User"], "nobody");
        assert_eq!(config["Labels"]["org.example.kind"], "test");
        assert_eq!(
            config["ExposedPorts"],
            serde_json::json!({"8080/tcp": {}, "53/udp": {}})
        );
        assert_eq!(object["History"][0]["created_by"], "stencil import");
        assert_eq!(object["History"][0]["comment"], format!("from {name}"));
        assert_eq!(
            object["Comment"],
            format!("from {name}"),
            "docker's .Comment"
        );
        let layers = object["RootFS"]["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(layers.len(), 1, "{object}");
        diff_ids.push(layers[0].clone());
        let history = stencil.run(&["history", &reference]);
        history.success();
        assert!(history.stdout.contains("stencil import"), "{history}");
        assert!(
            history.stdout.contains(&format!("from {name}")),
            "{history}"
        );
    }
    assert!(
        diff_ids.windows(2).all(|w| w[0] == w[1]),
        "the diff ID is the plain tar's whatever the compression: {diff_ids:?}"
    );

    // Standard input, without a name (through `image import`, docker's other spelling):
    // only the ID is printed and the image is dangling.
    let id = image_id(&stencil.run_with(&["image", "import", "-"], &[], Some(&gzip(&plain))));
    let dangling = stencil.run(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]);
    dangling.success().stdout_is(&format!("{id}\n"));
    // The same tar gives the same layer blob, whatever came around it: six manifests,
    // six configs, one layer.
    let blobs = std::fs::read_dir(stencil.root().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 13, "one shared layer blob\n{dangling}");

    // The unpacked layer holds the files with their modes, and the symlink.
    let mounted = stencil.run(&["image", "mount", "localhost:5000/e2e/imported:zstd"]);
    mounted.success();
    let root = PathBuf::from(mounted.stdout.trim());
    let motd = std::fs::read_to_string(root.join("etc/motd"));
    let issue = std::fs::read_link(root.join("etc/issue"));
    let hello_mode = std::fs::metadata(root.join("bin/hello"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
    stencil
        .run(&["image", "unmount", "localhost:5000/e2e/imported:zstd"])
        .success();
    assert_eq!(motd.ok().as_deref(), Some("imported\n"), "{mounted}");
    assert_eq!(issue.ok(), Some(PathBuf::from("motd")), "{mounted}");
    assert_eq!(hello_mode.ok(), Some(0o755), "{mounted}");
    assert_consistent(&stencil);
}

#[test]
fn bad_input_fails_with_125_naming_it_and_stores_nothing() {
    let stencil = Stencil::new();
    let plain = rootfs_tar();
    let not_tar = write(&stencil, "notes.txt", b"these are not the files you want\n");
    let gz = gzip(&plain);
    let truncated_gzip = write(&stencil, "cut.tar.gz", &gz[..gz.len() / 2]);
    let xz = by_tool("xz", &plain);
    let truncated_xz = write(&stencil, "cut.tar.xz", &xz[..xz.len() - 40]);
    let bz = by_tool("bzip2", &plain);
    let mut damaged = bz.clone();
    let middle = damaged.len() / 3;
    damaged[middle] ^= 0x55;
    let damaged_bzip2 = write(&stencil, "bad.tar.bz2", &damaged);
    // A valid first header whose file data stops half-way: only unpacking finds out.
    let truncated_tar = write(&stencil, "cut.tar", &plain[..700]);
    let empty = write(&stencil, "empty.tar", b"");
    let good = write(&stencil, "good.tar", &plain);
    let table: Vec<(Vec<String>, &str)> = vec![
        (
            vec![path_arg(&not_tar)],
            "notes.txt: it is not a tar archive",
        ),
        (
            vec![path_arg(&truncated_gzip)],
            "cut.tar.gz: it is truncated or corrupt",
        ),
        (
            vec![path_arg(&truncated_xz)],
            "cut.tar.xz: it is truncated or corrupt",
        ),
        (vec![path_arg(&damaged_bzip2)], "bad.tar.bz2"),
        (
            vec![path_arg(&truncated_tar), "x:1".into()],
            "cannot import",
        ),
        (vec![path_arg(&empty)], "empty.tar: it is not a tar archive"),
        (
            vec![path_arg(&stencil.scratch().join("absent.tar"))],
            "cannot open",
        ),
        (
            vec![path_arg(stencil.scratch())],
            "is a directory: import takes a tarball",
        ),
        (
            vec!["-c".into(), "RUN make".into(), path_arg(&good)],
            "RUN make",
        ),
        (
            vec!["-c".into(), "EXPOSE http".into(), path_arg(&good)],
            "EXPOSE http",
        ),
        (vec![path_arg(&good), "Bad/Name".into()], "Bad/Name"),
        (
            vec![path_arg(&good), "x@sha256:0123".into()],
            "x@sha256:0123",
        ),
    ];
    for (args, needle) in &table {
        let mut command = vec!["import"];
        command.extend(args.iter().map(String::as_str));
        stencil
            .run(&command)
            .expect_code(125)
            .stderr_contains(needle);
        stencil.run(&["images", "-aq"]).success().stdout_is("");
    }
    let cut = stencil.run(&["import", &path_arg(&truncated_tar)]);
    cut.expect_code(125).stderr_contains("cut.tar");
    let blobs = std::fs::read_dir(stencil.root().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "a failed import keeps no blob\n{cut}");
    assert_consistent(&stencil);
}

#[test]
fn an_imported_image_pushes_and_pulls_back_identical() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let file = write(&stencil, "rootfs.tar.gz", &gzip(&rootfs_tar()));
    let reference = format!("{}/e2e/imported:v1", registry.host());
    let id = image_id(&stencil.run(&["import", &path_arg(&file), &reference]));
    // The size is the layer's as a tar, as docker and podman show it, whatever the
    // compression the layer is stored or sent with.
    let tar_size = rootfs_tar().len() as u64;
    assert_eq!(inspect(&stencil, &reference)["Size"], tar_size);
    stencil.run(&["push", &reference]).success();
    assert_eq!(
        inspect(&stencil, &reference)["Size"],
        tar_size,
        "after the push"
    );

    let other = Stencil::new();
    other.run(&["pull", "-q", &reference]).success();
    let pulled = inspect(&other, &reference);
    assert_eq!(pulled["Id"], id.as_str(), "the config travels unchanged");
    assert_eq!(pulled["Size"], tar_size, "pulled (gzip) and unpacked");
    let mounted = other.run(&["image", "mount", &reference]);
    mounted.success();
    let motd = std::fs::read_to_string(PathBuf::from(mounted.stdout.trim()).join("etc/motd"));
    other.run(&["image", "unmount", &reference]).success();
    assert_eq!(motd.ok().as_deref(), Some("imported\n"), "{mounted}");
    assert_consistent(&other);
}
