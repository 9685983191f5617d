//! Hostile registries and archives: each case must fail with a clear error (exit 125,
//! naming what is at fault), in bounded time and memory, and store nothing (no image, no
//! layer, fsck consistent).
//!
//! The registry is [`HostileServer`], a raw-socket server that serves one good image
//! except where a case breaks it. Pulls run with `[timeouts] read = 1` in the store's
//! `registries.toml`, so silence costs seconds, not minutes.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use stencil_e2e::hostile_server::{HostileServer, Reply, Request};
use stencil_e2e::{Run, Stencil};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A one-layer image: its gzip layer, config and manifest, with their digests.
struct Image {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new() -> Image {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(6);
        header.set_mode(0o644);
        tar.append_data(&mut header, "hello", &b"hello\n"[..])
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = tar.into_inner().unwrap_or_else(|e| panic!("{e}"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap_or_else(|e| panic!("{e}"));
        let layer = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&plain)]},
        }))
        .unwrap_or_default();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha256(&layer), "size": layer.len()}],
        }))
        .unwrap_or_default();
        Image {
            layer,
            config,
            manifest,
        }
    }

    /// Answers the requests a pull makes for this image, as a good registry would.
    fn serve(&self, request: &Request, reply: &mut Reply) {
        let path = request.path.as_str();
        let body: Option<(&[u8], &str)> = if path == "/v2/" {
            Some((b"{}", "application/json"))
        } else if path.contains("/manifests/") {
            Some((&self.manifest, MANIFEST))
        } else if path.ends_with(&sha256(&self.layer)) {
            Some((&self.layer, "application/octet-stream"))
        } else if path.ends_with(&sha256(&self.config)) {
            Some((&self.config, "application/octet-stream"))
        } else {
            None
        };
        match body {
            Some((bytes, kind)) if request.method == "HEAD" => {
                let length = bytes.len().to_string();
                let digest = sha256(bytes);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: {kind}\r\n\
                     Docker-Content-Digest: {digest}\r\nConnection: close\r\n\r\n"
                );
                let _ = reply.stream.write_all(head.as_bytes());
            }
            Some((bytes, kind)) => {
                reply.send("200 OK", &[("Content-Type", kind)], bytes);
            }
            None => reply.send(
                "404 Not Found",
                &[],
                b"{\"errors\":[{\"code\":\"NOT_FOUND\"}]}",
            ),
        }
    }
}

/// A store whose client gives up after one silent second.
fn store() -> Stencil {
    let stencil = Stencil::new();
    std::fs::create_dir_all(stencil.root()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        stencil.root().join("registries.toml"),
        "[timeouts]\nconnect = 2\nread = 1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    stencil
}

/// Asserts the pull failed as a stencil error mentioning `needle`, within `limit`, and
/// left no image, no blob and (with `ingest_empty`) no partial download.
#[track_caller]
fn assert_refused(stencil: &Stencil, run: &Run, took: Duration, needle: &str, limit: Duration) {
    run.expect_code(125).stderr_contains(needle);
    assert!(run.stderr.contains("Error: "), "{run}");
    assert!(took < limit, "took {took:?}, more than {limit:?}\n{run}");
    stencil.run(&["images", "-q"]).success().stdout_is("");
    let checked = stencil.run(&["fsck"]);
    checked.success();
    assert!(
        checked.stdout.ends_with("store is consistent\n"),
        "{checked}"
    );
    // Verified blobs of a failed pull (its manifest and config) may stay, unreferenced
    // and reclaimable, for a retry to reuse; the layer at fault never does.
    let bad_layer = Image::new().layer;
    assert!(
        !stencil
            .root()
            .join("blobs")
            .join(sha256(&bad_layer).replace(':', "/"))
            .exists(),
        "the refused layer is not stored\n{checked}"
    );
}

/// Wrong bytes are dropped at once; other downloads cut short by the failure may keep
/// their ingest for a later resume.
#[track_caller]
fn assert_no_ingest_of_the_layer(stencil: &Stencil, run: &Run) {
    let layer = sha256(&Image::new().layer);
    for entry in std::fs::read_dir(stencil.root().join("ingest"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let held = std::fs::read_to_string(entry.path().join("ref")).unwrap_or_default();
        assert!(
            !held.contains(&layer),
            "the ingest of the refused layer stays: {held}\n{run}"
        );
    }
}

fn pull(stencil: &Stencil, server: &HostileServer) -> (Run, Duration) {
    let started = Instant::now();
    let run = stencil.run(&["pull", &format!("{}/hostile/image:1", server.host())]);
    (run, started.elapsed())
}

fn with_image(
    change: impl Fn(&Image, &Request, &mut Reply) -> bool + Send + Sync + 'static,
) -> HostileServer {
    let image = Arc::new(Image::new());
    HostileServer::start(move |request, reply| {
        if !change(&image, request, reply) {
            image.serve(request, reply);
        }
    })
}

#[test]
fn the_good_image_pulls() {
    // The baseline every hostile case departs from: this server's image is fine.
    let server = with_image(|_, _, _| false);
    let stencil = store();
    let (run, _) = pull(&stencil, &server);
    run.success();
    assert_eq!(stencil.run(&["images", "-q"]).success().lines().len(), 1);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let server = with_image(|image, request, reply| {
        if request.method == "GET" && request.path.ends_with(&sha256(&image.layer)) {
            let mut wrong = image.layer.clone();
            let last = wrong.len() - 1;
            wrong[last] ^= 0xff;
            reply.send("200 OK", &[], &wrong);
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "sha256:", Duration::from_secs(30));
    assert_no_ingest_of_the_layer(&stencil, &run);
}

#[test]
fn an_oversized_manifest_is_refused_without_reading_it_all() {
    let server = with_image(|_, request, reply| {
        if request.path.contains("/manifests/") {
            // 64 MiB announced, streamed slowly enough that reading it all would show.
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                64 << 20
            );
            let _ = reply.stream.write_all(head.as_bytes());
            let chunk = vec![b' '; 64 << 10];
            for _ in 0..1024 {
                if reply.stream.write_all(&chunk).is_err() || reply.stopping() {
                    break;
                }
            }
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "larger than", Duration::from_secs(30));
}

#[test]
fn an_endless_chunked_manifest_is_cut_at_the_limit() {
    let server = with_image(|_, request, reply| {
        if request.path.contains("/manifests/") {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            let _ = reply.stream.write_all(head.as_bytes());
            let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
            while !reply.stopping() && reply.stream.write_all(chunk.as_bytes()).is_ok() {}
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "larger than", Duration::from_secs(30));
}

#[test]
fn an_endless_chunked_layer_is_cut_at_its_size() {
    let server = with_image(|image, request, reply| {
        if request.method == "GET" && request.path.ends_with(&sha256(&image.layer)) {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = reply.stream.write_all(head.as_bytes());
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            while !reply.stopping() && reply.stream.write_all(chunk.as_bytes()).is_ok() {}
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "sha256:", Duration::from_secs(30));
    assert_no_ingest_of_the_layer(&stencil, &run);
}

#[test]
fn an_index_posing_as_a_manifest_is_refused() {
    let server = with_image(|image, request, reply| {
        if request.path.contains("/manifests/") {
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "manifests": [{"mediaType": MANIFEST, "digest": sha256(&image.manifest),
                               "size": image.manifest.len()}],
            }))
            .unwrap_or_default();
            reply.send("200 OK", &[("Content-Type", MANIFEST)], &index);
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "manifest", Duration::from_secs(30));
}

#[test]
fn a_silent_registry_times_out() {
    let server = with_image(|_, request, reply| {
        if request.path.contains("/manifests/") {
            reply.sleep(Duration::from_secs(120));
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "timed out", Duration::from_secs(40));
}

#[test]
fn a_layer_that_stalls_half_way_times_out() {
    let server = with_image(|image, request, reply| {
        if request.method == "GET" && request.path.ends_with(&sha256(&image.layer)) {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                image.layer.len()
            );
            let _ = reply.stream.write_all(head.as_bytes());
            let _ = reply
                .stream
                .write_all(&image.layer[..image.layer.len() / 2]);
            reply.sleep(Duration::from_secs(120));
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "timed out", Duration::from_secs(40));
}

#[test]
fn a_redirect_loop_is_cut() {
    let server = with_image(|image, request, reply| {
        if request.path.ends_with(&sha256(&image.layer)) {
            let location = request.path.clone();
            reply.send("307 Temporary Redirect", &[("Location", &location)], b"");
            return true;
        }
        false
    });
    let stencil = store();
    let (run, took) = pull(&stencil, &server);
    assert_refused(&stencil, &run, took, "redirects", Duration::from_secs(30));
    let redirects = server
        .requests()
        .iter()
        .filter(|line| line.starts_with("GET") && line.contains("/blobs/"))
        .count();
    assert!(
        redirects < 100,
        "{redirects} blob requests for one redirect loop"
    );
}

#[test]
fn endless_pages_of_ten_thousand_tags_are_cut() {
    let pages = std::sync::atomic::AtomicUsize::new(0);
    let server = HostileServer::start(move |request, reply| {
        if request.path.contains("/tags/list") {
            let page = pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tags: Vec<String> = (0..10_000).map(|n| format!("t{n}")).collect();
            let body =
                serde_json::to_vec(&serde_json::json!({"name": "hostile/image", "tags": tags}))
                    .unwrap_or_default();
            // Every page links to a next one, forever.
            let next = format!("</v2/hostile/image/tags/list?n=10000&last=p{page}>; rel=\"next\"");
            reply.send(
                "200 OK",
                &[("Content-Type", "application/json"), ("Link", &next)],
                &body,
            );
        } else {
            reply.send("200 OK", &[("Content-Type", "application/json")], b"{}");
        }
    });
    let stencil = store();
    let started = Instant::now();
    let run = stencil.run(&[
        "pull",
        "--all-tags",
        &format!("{}/hostile/image", server.host()),
    ]);
    let took = started.elapsed();
    assert_refused(
        &stencil,
        &run,
        took,
        "more than 1000000 entries",
        Duration::from_secs(60),
    );
}

#[test]
fn permissions_are_private_and_secrets_stay_out_of_logs_and_errors() {
    use std::os::unix::fs::PermissionsExt;
    let Some(htpasswd) = stencil_e2e::peer("htpasswd") else {
        return;
    };
    let password = "s3cret-Passw0rd-xyz";
    // A registry that wants Basic credentials.
    let served = Stencil::new();
    let users = served.scratch().join("users");
    let output = std::process::Command::new(htpasswd)
        .args(["-nbBC", "4", "alice", password])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&users, &output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(stencil_e2e::stencil_binary())
        .arg("--root")
        .arg(served.root())
        .args([
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "basic",
            "--htpasswd",
        ])
        .arg(&users)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("stdout"))),
        &mut banner,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let host = banner.split_whitespace().nth(1).unwrap_or("").to_owned();

    let client = Stencil::new();
    let docker = client.scratch().join("docker");
    let env = [("DOCKER_CONFIG", docker.as_path())];
    let mut seen = Vec::new();
    let login = client.run_with(
        &[
            "--log-level",
            "debug",
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ],
        &env,
        Some(password.as_bytes()),
    );
    login.success();
    seen.push(login);
    let wrong = client.run_with(
        &[
            "--log-level",
            "debug",
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ],
        &env,
        Some(b"wrong-Passw0rd-abc"),
    );
    wrong.expect_code(125);
    assert!(!wrong.stderr.contains("wrong-Passw0rd-abc"), "{wrong}");
    // Blobs for the mode check: an imported one-file layer.
    let tarball = client.scratch().join("rootfs.tar");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(2);
    header.set_mode(0o644);
    tar.append_data(&mut header, "hi", &b"hi"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&tarball, tar.into_inner().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .run(&[
            "import",
            &tarball.display().to_string(),
            "localhost/secret/imported:1",
        ])
        .success();
    // A pull through the stored credentials, at debug level.
    let missing = client.run_with(
        &[
            "--log-level",
            "debug",
            "pull",
            &format!("{host}/secret/none:1"),
        ],
        &env,
        None,
    );
    seen.push(missing);
    let _ = child.kill();
    let _ = child.wait();
    for run in &seen {
        assert!(
            !run.stdout.contains(password) && !run.stderr.contains(password),
            "{run}"
        );
    }
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode(&docker.join("config.json")),
        0o600,
        "credentials file mode"
    );
    assert_eq!(mode(&client.root()), 0o700, "store root mode");
    let blobs: Vec<_> = std::fs::read_dir(client.root().join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(!blobs.is_empty(), "the import stored blobs");
    for entry in blobs {
        assert_eq!(
            mode(&entry.path()) & 0o222,
            0,
            "blob {} is writable",
            entry.path().display()
        );
    }
}
