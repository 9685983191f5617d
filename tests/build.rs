//! End-to-end tests of `stencil build`, as root and for real: a multi-stage Dockerfile
//! using every instruction, the layer cache, reproducible digests, errors that name the
//! Dockerfile line, and the result checked out by skopeo and umoci from docker-registry.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stencil_e2e::peers::{DockerRegistry, run_peer};
use stencil_e2e::{Run, Stencil, in_ci, peer};

/// Whether the test may run: builds mount overlays and run containers, so root.
fn as_root(test: &str) -> bool {
    let root = nix_is_root();
    if !root {
        assert!(!in_ci(), "{test} needs root under CI=true");
        eprintln!("skipping {test}: needs root");
    }
    root
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Imports a busybox root filesystem as `e2e/busybox:1`; `None` without busybox.
fn import_busybox(stencil: &Stencil) -> Option<()> {
    let busybox = peer("busybox")?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for name in ["bin", "etc", "tmp"] {
        builder
            .append_data(&mut dir.clone(), name, &b""[..])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n";
    let mut file = tar::Header::new_ustar();
    file.set_mode(0o644);
    file.set_size(passwd.len() as u64);
    builder
        .append_data(&mut file, "etc/passwd", &passwd[..])
        .unwrap_or_else(|e| panic!("{e}"));
    builder
        .append_path_with_name(&busybox, "bin/busybox")
        .unwrap_or_else(|e| panic!("{e}"));
    for applet in [
        "sh", "echo", "cat", "chmod", "true", "false", "ls", "id", "env", "touch",
    ] {
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        builder
            .append_link(&mut link, format!("bin/{applet}"), "busybox")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let tar = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let path = stencil.scratch().join("busybox.tar");
    std::fs::write(&path, tar).unwrap_or_else(|e| panic!("{e}"));
    stencil
        .run(&["import", &path.display().to_string(), "e2e/busybox:1"])
        .success();
    Some(())
}

/// Writes `files` (path, contents, mode) under a new context directory `name`.
fn context(stencil: &Stencil, name: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
    let dir = stencil.scratch().join(name);
    for (path, contents, mode) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&full, contents).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn tar_of(files: &[(&str, &str)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(body.len() as u64);
        builder
            .append_data(&mut header, name, body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let plain = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
    if !gzip {
        return plain;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &plain).unwrap_or_else(|e| panic!("{e}"));
    encoder.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn inspect(stencil: &Stencil, image: &str) -> Value {
    let run = stencil.run(&["inspect", image]);
    run.success();
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    parsed[0].clone()
}

fn blob_count(stencil: &Stencil) -> usize {
    std::fs::read_dir(stencil.root().join("blobs/sha256")).map_or(0, |d| d.count())
}

/// The `Step N/M : …` lines of a build, each with whether it was taken from the cache and
/// whether a container ran.
fn steps(run: &Run) -> Vec<(String, bool, bool)> {
    let mut out: Vec<(String, bool, bool)> = Vec::new();
    for line in run.stdout.lines() {
        if let Some((_, text)) = line.split_once(" : ").filter(|_| line.starts_with("Step ")) {
            out.push((text.to_owned(), false, false));
        } else if let Some(last) = out.last_mut() {
            last.1 |= line == " ---> Using cache";
            last.2 |= line.starts_with(" ---> Running in ");
        }
    }
    out
}

const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
# escape=\
ARG BASE=e2e/busybox:1
FROM ${BASE} AS builder
ARG MESSAGE=default
SHELL ["/bin/sh", "-c"]
ENV GREETING="hello world" \
    STAGE=builder
WORKDIR /src
COPY app.txt ./
RUN echo "$MESSAGE $GREETING from $STAGE" > /src/out.txt && cat app.txt >> /src/out.txt && chmod 640 /src/out.txt

FROM $BASE
LABEL org.example.title="e2e build" org.example.stage=final
MAINTAINER Ann <ann@example.com>
ENV APP=/app
WORKDIR ${APP}
COPY --from=builder --chown=app:1000 /src/out.txt ./
COPY --chmod=755 tools/ /usr/local/bin/
ADD archive.tar.gz /opt/
ADD plain.tar /opt/plain/
COPY *.md /docs/
USER 1000:1000
EXPOSE 8080/tcp 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD ["/bin/true"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/out.txt"]
"#;

fn multi_stage_context(stencil: &Stencil) -> PathBuf {
    let archive = tar_of(&[("a/from-archive.txt", "packed\n")], true);
    let plain = tar_of(&[("plain.txt", "plain\n")], false);
    context(
        stencil,
        "ctx",
        &[
            ("Dockerfile", MULTI_STAGE.as_bytes(), 0o644),
            ("app.txt", b"app v1\n", 0o644),
            ("tools/tool", b"#!/bin/sh\necho tool\n", 0o600),
            ("archive.tar.gz", &archive, 0o644),
            ("plain.tar", &plain, 0o644),
            ("README.md", b"readme\n", 0o644),
            ("NOTES.md", b"notes\n", 0o644),
            ("secret.md", b"not for the image\n", 0o644),
            (".dockerignore", b"# keep secrets out\nsecret.md\n", 0o644),
        ],
    )
}

#[test]
fn a_multi_stage_build_records_every_instruction_and_rebuilds_from_the_cache() {
    if !as_root("multi-stage build") {
        return;
    }
    let stencil = Stencil::new();
    if import_busybox(&stencil).is_none() {
        return;
    }
    let ctx = multi_stage_context(&stencil);
    let ctx_arg = ctx.display().to_string();
    let iid = stencil.scratch().join("iid");
    let build = stencil.run(&[
        "build",
        "-t",
        "e2e/built:1",
        "-t",
        "e2e/built:latest",
        "--build-arg",
        "MESSAGE=made",
        "--label",
        "extra=yes",
        "--iidfile",
        &iid.display().to_string(),
        &ctx_arg,
    ]);
    build.success();
    let first = steps(&build);
    assert_eq!(first.len(), 27, "{build}");
    assert!(
        build.stdout.contains("Step 1/27 : ARG BASE=e2e/busybox:1"),
        "{build}"
    );
    assert!(first.iter().all(|(_, cached, _)| !cached), "{build}");
    let ran: Vec<&str> = first
        .iter()
        .filter(|(_, _, ran)| *ran)
        .map(|(text, _, _)| text.as_str())
        .collect();
    assert_eq!(ran.len(), 1, "one RUN step ran\n{build}");
    assert!(ran[0].starts_with("RUN echo"), "{build}");
    assert!(
        build.stdout.contains("Successfully tagged e2e/built:1\n"),
        "{build}"
    );
    assert!(
        build
            .stdout
            .contains("Successfully tagged e2e/built:latest\n"),
        "{build}"
    );
    let id = std::fs::read_to_string(&iid).unwrap_or_default();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    assert!(
        build
            .stdout
            .contains(&format!("Successfully built {}\n", &id[7..19])),
        "{build}"
    );

    // The config holds what each metadata instruction says.
    let image = inspect(&stencil, "e2e/built:1");
    assert_eq!(image["Id"], json!(id));
    let config = &image["Config"];
    assert_eq!(config["Labels"]["org.example.title"], "e2e build");
    assert_eq!(config["Labels"]["org.example.stage"], "final");
    assert_eq!(config["Labels"]["extra"], "yes");
    assert_eq!(image["Author"], "Ann <ann@example.com>");
    let env = config["Env"].as_array().cloned().unwrap_or_default();
    assert!(env.contains(&json!("APP=/app")), "{config}");
    assert!(
        !env.iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("GREETING="))),
        "the builder's ENV stays there: {config}"
    );
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(
        config["ExposedPorts"],
        json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(config["Volumes"], json!({"/data": {}}));
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(
        config["Healthcheck"],
        json!({"Test": ["CMD", "/bin/true"], "Interval": 30_000_000_000i64, "Timeout": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(config["OnBuild"], json!(["RUN echo triggered"]));
    assert_eq!(config["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(config["Cmd"], json!(["cat /app/out.txt"]));
    // busybox's layer, then WORKDIR (it made /app), three COPY and two ADD layers.
    let layers = image["RootFS"]["Layers"].as_array().map_or(0, Vec::len);
    assert_eq!(layers, 7, "{image}");
    let history = image["History"].as_array().cloned().unwrap_or_default();
    let empty = history
        .iter()
        .filter(|h| h["empty_layer"] == json!(true))
        .count();
    assert_eq!(history.len() - empty, layers, "{image}");
    assert!(
        history
            .iter()
            .any(|h| h["created_by"] == json!("/bin/sh -c #(nop)  EXPOSE 8080/tcp 53/udp")),
        "{image}"
    );

    // The files, with their owners and modes.
    let mounted = stencil.run(&["image", "mount", "e2e/built:1"]);
    mounted.success();
    let root = PathBuf::from(mounted.stdout.trim());
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_default();
    let meta = |path: &str| std::fs::symlink_metadata(root.join(path)).ok();
    let out = read("app/out.txt");
    let out_meta = meta("app/out.txt");
    let tool_mode = meta("usr/local/bin/tool").map(|m| m.mode() & 0o7777);
    let archive = read("opt/a/from-archive.txt");
    let plain = read("opt/plain/plain.txt");
    let docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    stencil.run(&["image", "unmount", "e2e/built:1"]).success();
    assert_eq!(out, "made hello world from builder\napp v1\n");
    assert_eq!(
        out_meta
            .as_ref()
            .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777)),
        Some((1000, 1000, 0o640))
    );
    assert_eq!(tool_mode, Some(0o755));
    assert_eq!(archive, "packed\n");
    assert_eq!(plain, "plain\n");
    let mut docs = docs;
    docs.sort();
    assert_eq!(
        docs,
        ["NOTES.md", "README.md"],
        ".dockerignore keeps secret.md out"
    );

    // It runs: ENTRYPOINT and CMD as the USER, in the WORKDIR.
    let ran = stencil.run(&["run", "--rm", "e2e/built:1"]);
    ran.success()
        .stdout_is("made hello world from builder\napp v1\n");
    let whoami = stencil.run(&["run", "--rm", "e2e/built:1", "id -u; pwd; echo $APP"]);
    whoami.success().stdout_is("1000\n/app\n/app\n");

    // A child image runs the ONBUILD trigger.
    let child_ctx = context(
        &stencil,
        "child",
        &[("Dockerfile", b"FROM e2e/built:1\n", 0o644)],
    );
    let child = stencil.run(&[
        "build",
        "-t",
        "e2e/child:1",
        &child_ctx.display().to_string(),
    ]);
    child.success();
    assert!(
        child.stdout.contains("# Executing 1 build trigger\n"),
        "{child}"
    );
    assert!(child.stdout.contains("\ntriggered\n"), "{child}");
    let child_config = inspect(&stencil, "e2e/child:1");
    assert_eq!(
        child_config["Config"].get("OnBuild"),
        None,
        "{child_config}"
    );

    // Intermediate images are hidden unless -a, as docker hides them.
    let listed = stencil.run(&["images", "-q"]);
    listed.success();
    assert_eq!(
        listed.lines().len(),
        3,
        "busybox, the result and its child\n{listed}"
    );
    let all = stencil.run(&["images", "-a", "-q"]);
    assert!(all.lines().len() > 10, "{all}");

    // Nothing changed: every step from the cache, no container, no new blob.
    let blobs = blob_count(&stencil);
    let again = stencil.run(&[
        "build",
        "-t",
        "e2e/built:1",
        "--build-arg",
        "MESSAGE=made",
        "--label",
        "extra=yes",
        &ctx_arg,
    ]);
    again.success();
    let second = steps(&again);
    let not_cached: Vec<&String> = second
        .iter()
        .filter(|(text, cached, _)| {
            !cached && !text.starts_with("FROM") && !text.starts_with("ARG BASE")
        })
        .map(|(text, _, _)| text)
        .collect();
    assert!(not_cached.is_empty(), "{not_cached:?}\n{again}");
    assert!(second.iter().all(|(_, _, ran)| !ran), "{again}");
    assert!(
        again
            .stdout
            .contains(&format!("Successfully built {}\n", &id[7..19])),
        "{again}"
    );
    assert_eq!(
        blob_count(&stencil),
        blobs,
        "a cached rebuild stores no blob\n{again}"
    );
    let image_again = inspect(&stencil, "e2e/built:1");
    assert_eq!(image_again["RootFS"], image["RootFS"]);

    // A changed source file: the steps before its COPY come from the cache, it and
    // everything after run again.
    std::fs::write(ctx.join("app.txt"), "app v2\n").unwrap_or_else(|e| panic!("{e}"));
    let changed = stencil.run(&[
        "build",
        "-t",
        "e2e/built:2",
        "--build-arg",
        "MESSAGE=made",
        &ctx_arg,
    ]);
    changed.success();
    let third = steps(&changed);
    let copy = third
        .iter()
        .position(|(t, _, _)| t == "COPY app.txt ./")
        .unwrap_or(usize::MAX);
    assert!(copy < third.len(), "{changed}");
    for (index, (text, cached, _)) in third.iter().enumerate().take(copy) {
        if !text.starts_with("FROM") && !text.starts_with("ARG BASE") {
            assert!(
                cached,
                "step {text:?} should come from the cache\n{changed}"
            );
        }
        let _ = index;
    }
    assert!(!third[copy].1, "{changed}");
    assert!(third[copy + 1].2, "the RUN after it ran again\n{changed}");

    // --no-cache runs everything again.
    let fresh = stencil.run(&["build", "--no-cache", "-q", &ctx_arg]);
    fresh.success();
    assert!(fresh.stdout.trim().starts_with("sha256:"), "{fresh}");
    assert_eq!(fresh.lines().len(), 1, "{fresh}");

    // --target stops at a stage.
    let target = stencil.run(&[
        "build",
        "--target",
        "builder",
        "-t",
        "e2e/builder:1",
        &ctx_arg,
    ]);
    target.success();
    assert_eq!(steps(&target).len(), 8, "{target}");
    let builder = inspect(&stencil, "e2e/builder:1");
    assert_eq!(builder["Config"]["WorkingDir"], "/src");
}

#[test]
fn two_builds_with_source_date_epoch_give_the_same_digest() {
    if !as_root("reproducible build") {
        return;
    }
    let stencil = Stencil::new();
    if import_busybox(&stencil).is_none() {
        return;
    }
    let dockerfile = "FROM e2e/busybox:1\nCOPY . /ctx/\nRUN echo made > /made && touch /stamp\nCMD [\"cat\", \"/made\"]\n";
    let files: &[(&str, &[u8], u32)] = &[
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("a/b.txt", b"b\n", 0o600),
        ("c", b"c\n", 0o755),
    ];
    let epoch = Path::new("1700000000");
    let mut results = Vec::new();
    for name in ["first", "second"] {
        // A second context written later: other file times, which the epoch hides; no
        // cache, so every layer is made again.
        let ctx = context(&stencil, name, files);
        let run = stencil.run_with(
            &["build", "--no-cache", "-q", &ctx.display().to_string()],
            &[("SOURCE_DATE_EPOCH", epoch)],
            None,
        );
        run.success();
        let id = run.stdout.trim().to_owned();
        let image = inspect(&stencil, &id);
        let created = image["Created"].as_str().unwrap_or_default().to_owned();
        assert!(created.starts_with("2023-11-14T22:13:20"), "{image}");
        results.push((id, image["RootFS"].clone(), image["History"].clone()));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(results[0], results[1]);
    let (id, ..) = &results[0];
    let manifest = stencil.run(&[
        "images",
        "--no-trunc",
        "--digests",
        "--format",
        "{{.ID}} {{.Digest}}",
    ]);
    let digests: Vec<&str> = manifest
        .lines()
        .into_iter()
        .filter(|l| l.starts_with(id.as_str()))
        .collect();
    assert_eq!(digests.len(), 1, "one image, the same manifest\n{manifest}");
}

#[test]
fn a_context_tar_on_standard_input_builds_as_a_directory_does() {
    if !as_root("build from stdin tar") {
        return;
    }
    let stencil = Stencil::new();
    if import_busybox(&stencil).is_none() {
        return;
    }
    let files = [
        (
            "Dockerfile",
            "FROM e2e/busybox:1\nCOPY greeting.txt /greeting.txt\nRUN cat /greeting.txt\n",
        ),
        ("greeting.txt", "hello from a tar\n"),
        (
            "other.Dockerfile",
            "FROM e2e/busybox:1\nCOPY greeting.txt /other.txt\n",
        ),
    ];
    let mut ids = Vec::new();
    for gzip in [false, true] {
        let run = stencil.run_with(&["build", "-q", "-"], &[], Some(&tar_of(&files, gzip)));
        run.success();
        ids.push(run.stdout.trim().to_owned());
    }
    assert_eq!(
        ids[0], ids[1],
        "the same context, plain or gzip, the same image"
    );
    let mounted = stencil.run(&["image", "mount", &ids[0]]);
    mounted.success();
    let copied = std::fs::read_to_string(PathBuf::from(mounted.stdout.trim()).join("greeting.txt"));
    stencil.run(&["image", "unmount", &ids[0]]).success();
    assert_eq!(copied.ok().as_deref(), Some("hello from a tar\n"));
    // -f names a Dockerfile inside the piped context.
    stencil
        .run_with(
            &[
                "build",
                "-q",
                "-f",
                "other.Dockerfile",
                "-t",
                "e2e/other:1",
                "-",
            ],
            &[],
            Some(&tar_of(&files, false)),
        )
        .success();
    // Neither a Dockerfile nor a tar: said so, nothing built, no context left behind.
    stencil
        .run_with(
            &["build", "-t", "e2e/never:1", "-"],
            &[],
            Some(&[0xff, 0xfe, 0x00, 0x81][..]),
        )
        .expect_code(125)
        .stderr_contains("neither a Dockerfile");
    // A tar without the Dockerfile asked for is said to be so, not a temporary path.
    stencil
        .run_with(
            &["build", "-t", "e2e/never:1", "-f", "absent.Dockerfile", "-"],
            &[],
            Some(&tar_of(&files, true)),
        )
        .expect_code(125)
        .stderr_contains("the build context on standard input has no absent.Dockerfile");
    stencil
        .run(&["images", "-q", "e2e/never:1"])
        .success()
        .stdout_is("");
    let leftovers: Vec<String> = std::fs::read_dir(stencil.root())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".build-context-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    stencil.assert_consistent();
}

#[test]
fn errors_name_the_dockerfile_line_and_tag_nothing() {
    if !as_root("build errors") {
        return;
    }
    let stencil = Stencil::new();
    if import_busybox(&stencil).is_none() {
        return;
    }
    for (dockerfile, needles) in [
        (
            "FROM e2e/busybox:1\n\nFROBNICATE x\n",
            &["Dockerfile:3: unknown instruction: FROBNICATE"][..],
        ),
        (
            "FROM e2e/busybox:1\nENV A=1\nCOPY missing.txt /\n",
            &[
                "Dockerfile:3: COPY missing.txt /",
                "file not found in build context",
            ][..],
        ),
        (
            "FROM e2e/busybox:1\nRUN echo fine\nRUN exit 3\n",
            &["Dockerfile:3: RUN exit 3", "returned a non-zero code: 3"][..],
        ),
        (
            "FROM e2e/busybox:1 AS one\nFROM scratch\nCOPY --from=127.0.0.1:1/nosuch /x /\n",
            &[
                "Dockerfile:3: COPY --from=127.0.0.1:1/nosuch /x /",
                "no stage named \"127.0.0.1:1/nosuch\"",
            ][..],
        ),
        (
            "FROM e2e/busybox:1\nRUN cat <<EOF\nEOF\n",
            &["Dockerfile:2: heredocs"][..],
        ),
        (
            "FROM e2e/busybox:1 AS one\n",
            &["target stage \"two\" could not be found"][..],
        ),
    ] {
        let ctx = context(
            &stencil,
            "bad",
            &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
        );
        let mut args = vec!["build", "-t", "e2e/failed:1"];
        if dockerfile == "FROM e2e/busybox:1 AS one\n" {
            args.extend(["--target", "two"]);
        }
        let ctx_arg = ctx.display().to_string();
        args.push(&ctx_arg);
        let run = stencil.run(&args);
        run.expect_code(125);
        for needle in needles {
            run.stderr_contains(needle);
        }
        run.stderr_contains("Error: ");
        let tagged = stencil.run(&["images", "-q", "e2e/failed"]);
        tagged.success().stdout_is("");
    }
    // Nothing mounted or left active behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mounts.contains(&stencil.root().display().to_string()),
        "{mounts}"
    );
    stencil.run(&["fsck"]).success();
}

#[test]
fn a_built_image_pushed_to_docker_registry_checks_out_with_skopeo_and_umoci() {
    if !as_root("build and push") {
        return;
    }
    let stencil = Stencil::new();
    if import_busybox(&stencil).is_none() {
        return;
    }
    let (Some(skopeo), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let dockerfile = "FROM e2e/busybox:1 AS builder\nRUN echo built > /made && chmod 600 /made\nFROM scratch\nCOPY --from=builder /made /made\nCOPY --chmod=750 run.sh /bin/run.sh\nCMD [\"/bin/run.sh\"]\n";
    let ctx = context(
        &stencil,
        "ctx",
        &[
            ("Dockerfile", dockerfile.as_bytes(), 0o644),
            ("run.sh", b"#!/bin/sh\n", 0o644),
        ],
    );
    let name = format!("{}/e2e/built:1", registry.host());
    stencil
        .run(&["build", "-t", &name, &ctx.display().to_string()])
        .success();
    stencil.run(&["push", &name]).success();
    let layout = stencil.scratch().join("layout");
    run_peer(Command::new(skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:built", layout.display()),
    ]));
    let bundle = stencil.scratch().join("bundle");
    run_peer(Command::new(umoci).args([
        "unpack",
        "--image",
        &format!("{}:built", layout.display()),
        &bundle.display().to_string(),
    ]));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap_or_default(),
        "built\n"
    );
    let mode = |p: &str| {
        std::fs::metadata(rootfs.join(p))
            .map(|m| m.mode() & 0o7777)
            .ok()
    };
    assert_eq!(mode("made"), Some(0o600));
    assert_eq!(mode("bin/run.sh"), Some(0o750));
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("config.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(
        config["process"]["args"],
        json!(["/bin/run.sh"]),
        "{config}"
    );
}
