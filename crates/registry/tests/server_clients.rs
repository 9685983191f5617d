//! Real clients against the stencil registry server: `skopeo copy` into it and out of it,
//! for an OCI image, as Docker schema 2 (`--format v2s2`) and for a two-platform index
//! (`--all`), with no auth, htpasswd Basic and the token flow; wrong credentials fail.
//! Skipped with a reason when skopeo is missing, except under `CI=true`.

mod conformance;

use std::io::Write;
use std::path::Path;

use conformance::*;
use stencil_registry::server::{AuthMode, Htpasswd, ServerConfig};

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its descriptor.
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = digest_of(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(blobs.join(hex), bytes).unwrap_or_else(|e| panic!("{e}"));
    descriptor(media_type, bytes)
}

/// A gzip layer holding one file, and the sha256 of its tar (the diff ID).
fn layer(name: &str, content: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, content)
        .unwrap_or_else(|e| panic!("{e}"));
    let tar = tar.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap_or_else(|e| panic!("{e}"));
    (
        gzip.finish().unwrap_or_else(|e| panic!("{e}")),
        digest_of(&tar),
    )
}

/// One platform's image in the layout; returns the manifest's descriptor.
fn image(dir: &Path, architecture: &str) -> serde_json::Value {
    let (layer, diff_id) = layer(
        &format!("hello-{architecture}.txt"),
        architecture.as_bytes(),
    );
    let layer_descriptor = put_blob(dir, OCI_LAYER, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "config": {},
    }))
    .unwrap_or_default();
    let config_descriptor = put_blob(dir, OCI_CONFIG, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": [layer_descriptor],
    }))
    .unwrap_or_default();
    let mut descriptor = put_blob(dir, OCI_MANIFEST, &manifest);
    descriptor["platform"] = serde_json::json!({ "os": "linux", "architecture": architecture });
    descriptor
}

/// An OCI layout with `v1` (one amd64 image) and `multi` (an amd64 + arm64 index).
fn layout(dir: &Path) {
    let amd64 = image(dir, "amd64");
    let arm64 = image(dir, "arm64");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd64, arm64],
    }))
    .unwrap_or_default();
    let mut multi = put_blob(dir, OCI_INDEX, &index);
    multi["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "multi" });
    let mut single = amd64.clone();
    single["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "v1" });
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let top = serde_json::json!({ "schemaVersion": 2, "manifests": [single, multi] });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs skopeo; returns whether it succeeded and its stderr.
async fn skopeo(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running skopeo: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn copy(args: &[&str]) {
    let (ok, stderr) = skopeo(&[&["copy", "--quiet"], args].concat()).await;
    assert!(ok, "skopeo copy {args:?} failed:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_into_and_out_of_the_server() {
    if !peer_available("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let source = work.path().join("source");
    layout(&source);
    let server = StencilServer::start(ServerConfig::loopback()).await;
    let target = Target::new("stencil", &server.host);
    let host = &server.host;
    let src = |tag: &str| format!("oci:{}:{tag}", source.display());
    let remote = |tag: &str| format!("docker://{host}/clients/app:{tag}");

    copy(&["--dest-tls-verify=false", &src("v1"), &remote("v1")]).await;
    copy(&[
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &src("v1"),
        &remote("docker"),
    ])
    .await;
    copy(&[
        "--dest-tls-verify=false",
        "--all",
        &src("multi"),
        &remote("multi"),
    ])
    .await;

    let cases = [
        ("v1", OCI_MANIFEST),
        ("docker", DOCKER_MANIFEST),
        ("multi", OCI_INDEX),
    ];
    for (tag, media_type) in cases {
        let reply = target
            .send(
                "GET",
                &format!("/v2/clients/app/manifests/{tag}"),
                &[
                    ("accept", OCI_MANIFEST),
                    ("accept", OCI_INDEX),
                    ("accept", DOCKER_MANIFEST),
                ],
                vec![],
            )
            .await;
        assert_eq!(
            (reply.status, reply.header("content-type")),
            (200, Some(media_type)),
            "{tag}: {reply:?}"
        );
    }
    // The OCI image was pushed unchanged: same manifest digest as in the layout.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("index.json")).unwrap_or_default())
            .unwrap_or_default();
    let reply = target
        .send(
            "HEAD",
            "/v2/clients/app/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(
        reply.header("docker-content-digest"),
        index["manifests"][0]["digest"].as_str()
    );

    for (tag, all) in [("v1", false), ("docker", false), ("multi", true)] {
        let out = work.path().join(format!("out-{tag}"));
        let destination = format!("oci:{}:{tag}", out.display());
        let source_ref = remote(tag);
        let mut args = vec!["--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([source_ref.as_str(), destination.as_str()]);
        copy(&args).await;
        let (ok, stderr) = skopeo(&["inspect", &destination]).await;
        assert!(ok, "inspecting the copy of {tag} failed:\n{stderr}");
    }
    // Every platform of the index arrived in the copy.
    let out_index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("out-multi/index.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let digest = out_index["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:")
        .to_owned();
    let copied: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("out-multi/blobs/sha256").join(digest)).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(
        copied["manifests"].as_array().map(Vec::len),
        Some(2),
        "{copied}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_authenticates_with_basic_and_tokens() {
    if !peer_available("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let source = work.path().join("source");
    layout(&source);
    let hash = bcrypt::hash("wonderland", 4).unwrap_or_default();
    let users = Htpasswd::parse(&format!("alice:{hash}\n"), "test".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let modes = [
        (
            "basic",
            AuthMode::Basic {
                users: users.clone(),
                realm: "test".into(),
            },
        ),
        (
            "token",
            AuthMode::Token {
                users,
                service: "test-registry".into(),
                lifetime: std::time::Duration::from_secs(300),
                realm: None,
            },
        ),
    ];
    for (label, mode) in modes {
        let mut config = ServerConfig::loopback();
        config.auth = mode;
        let server = StencilServer::start(config).await;
        let source_ref = format!("oci:{}:v1", source.display());
        let remote = format!("docker://{}/auth/app:v1", server.host);
        let (ok, stderr) = skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:guess",
            &source_ref,
            &remote,
        ])
        .await;
        assert!(!ok, "{label}: a push with a wrong password succeeded");
        let lower = stderr.to_lowercase();
        assert!(
            lower.contains("unauthorized")
                || lower.contains("401")
                || lower.contains("authentication required"),
            "{label}: unclear error for wrong credentials:\n{stderr}"
        );
        let (ok, stderr) = skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wonderland",
            &source_ref,
            &remote,
        ])
        .await;
        assert!(ok, "{label}: push failed:\n{stderr}");
        let out = format!(
            "oci:{}:v1",
            work.path().join(format!("out-{label}")).display()
        );
        let (ok, stderr) = skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--src-creds",
            "alice:wonderland",
            &remote,
            &out,
        ])
        .await;
        assert!(ok, "{label}: pull failed:\n{stderr}");
        let (ok, _) = skopeo(&["copy", "--quiet", "--src-tls-verify=false", &remote, &out]).await;
        assert!(!ok, "{label}: an anonymous pull succeeded");
    }
}

/// Writes `bytes` into `content` as a committed blob.
fn commit_blob(content: &stencil_layerstore::content::LocalContent, bytes: &[u8]) {
    use stencil_layerstore::content::{ContentWriter, Ingester};
    let digest = stencil_layerstore::content::sha256_digest(bytes);
    let mut writer = content
        .writer(&format!("test-{digest}"))
        .unwrap_or_else(|e| panic!("{e}"));
    writer.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    writer
        .commit(bytes.len() as u64, &digest)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stencil_client_pushes_and_pulls_in_each_auth_mode() {
    use std::sync::Arc;
    use stencil_layerstore::content::{LocalContent, Provider};
    use stencil_reference::{Digest, Reference};
    use stencil_registry::{
        Client, Descriptor, DockerConfig, ErrorKind, NoProgress, PullOptions, PushOptions,
    };

    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let source =
        Arc::new(LocalContent::open(work.path().join("source")).unwrap_or_else(|e| panic!("{e}")));
    let (layer, diff_id) = layer("hello.txt", b"hello from stencil");
    let config = config_json(&[diff_id]);
    let manifest = manifest_json(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer)],
        serde_json::json!({}),
    );
    for blob in [&layer, &config, &manifest] {
        commit_blob(&source, blob);
    }
    let manifest_digest = Digest::parse(&digest_of(&manifest)).unwrap_or_else(|e| panic!("{e}"));
    let root = Descriptor::new(OCI_MANIFEST, manifest_digest.clone(), manifest.len() as u64);

    let hash = bcrypt::hash("wonderland", 4).unwrap_or_default();
    let users = Htpasswd::parse(&format!("alice:{hash}\n"), "test".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let modes = [
        ("none", AuthMode::None),
        (
            "basic",
            AuthMode::Basic {
                users: users.clone(),
                realm: "test".into(),
            },
        ),
        (
            "token",
            AuthMode::Token {
                users,
                service: "test-registry".into(),
                lifetime: std::time::Duration::from_secs(300),
                realm: None,
            },
        ),
    ];
    for (label, mode) in modes {
        let mut config = ServerConfig::loopback();
        config.auth = mode;
        let server = StencilServer::start(config).await;
        let client_for = |password: &str| {
            let path = work.path().join(format!("config-{label}-{password}.json"));
            let auth = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("alice:{password}"),
            );
            std::fs::write(
                &path,
                serde_json::json!({ "auths": { server.host.clone(): { "auth": auth } } })
                    .to_string(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            Client::builder()
                .credentials(DockerConfig::new(path))
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let reference = Reference::parse(&format!("{}/client/app:v1", server.host))
            .unwrap_or_else(|e| panic!("{e}"));

        if label != "none" {
            let error = client_for("guess")
                .push(
                    &reference,
                    &source,
                    &root,
                    &PushOptions::default(),
                    Arc::new(NoProgress),
                )
                .await
                .err()
                .unwrap_or_else(|| panic!("{label}: a push with a wrong password succeeded"));
            assert_eq!(error.kind(), ErrorKind::Unauthorized, "{label}: {error}");
            assert!(
                error.to_string().contains(&server.host),
                "{label}: the error does not name the registry: {error}"
            );
        }
        let client = client_for("wonderland");
        let pushed = client
            .push(
                &reference,
                &source,
                &root,
                &PushOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: push: {e}"));
        assert_eq!(pushed, manifest_digest, "{label}");
        let destination = Arc::new(
            LocalContent::open(work.path().join(format!("pulled-{label}")))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let pulled = client
            .pull(
                &reference,
                &destination,
                &PullOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: pull: {e}"));
        assert_eq!(pulled.manifest.digest, manifest_digest, "{label}");
        let layer_digest = Digest::parse(&digest_of(&layer)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            destination.contains(&layer_digest).unwrap_or(false),
            "{label}: the layer was not pulled"
        );
    }
}
