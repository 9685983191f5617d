//! Behaviour of the registry server beyond the conformance checklist: refusing an
//! unauthenticated public listen address, the served domain and where pushed content lands
//! in the store, abandoned uploads expiring (on a clock the test moves) and leftovers of an
//! earlier server being removed, size limits, disabled deletes, search, and unknown routes.

mod conformance;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::*;
use stencil_layerstore::Store;
use stencil_layerstore::content::{Ingester, Provider};
use stencil_reference::{Digest, Tag};
use stencil_registry::server::{
    AuthMode, ErrorKind, FileIndex, Htpasswd, RepositoryIndex, RepositoryName, Server, ServerConfig,
};
use stencil_registry::{Clock, SleepFuture};

#[derive(Debug)]
struct TestClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps end after at most 20 ms of real time, so that the server's periodic sweep
    /// runs often while the test decides what time it is.
    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration.min(Duration::from_millis(20))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_refuses_what_it_must() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(Store::open(root.path()).unwrap_or_else(|e| panic!("{e}")));
    let users = Htpasswd::parse("", "empty".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let public = || ServerConfig::new("0.0.0.0:0".parse().unwrap_or_else(|e| panic!("{e}")));
    let forced = {
        let mut config = public();
        config.allow_insecure_listen = true;
        config
    };
    let with_auth = {
        let mut config = public();
        config.auth = AuthMode::Basic {
            users,
            realm: "r".into(),
        };
        config
    };
    let bad_domain = {
        let mut config = ServerConfig::loopback();
        config.served_domain = Some("not a domain".into());
        config
    };
    let cases: Vec<(&str, ServerConfig, Option<ErrorKind>)> = vec![
        (
            "public address without auth",
            public(),
            Some(ErrorKind::InsecureListen),
        ),
        ("public address without auth, forced", forced, None),
        ("public address with auth", with_auth, None),
        (
            "invalid served domain",
            bad_domain,
            Some(ErrorKind::InvalidDomain),
        ),
        ("loopback without auth", ServerConfig::loopback(), None),
    ];
    for (label, config, expected) in cases {
        let result = Server::bind(config, store.clone()).await;
        match (result, expected) {
            (Ok(_), None) => {}
            (Err(error), Some(kind)) => assert_eq!(error.kind(), kind, "{label}: {error}"),
            (Ok(server), Some(kind)) => panic!(
                "{label}: bound {} instead of failing with {kind:?}",
                server.local_addr()
            ),
            (Err(error), None) => panic!("{label}: {error}"),
        }
    }
    let error = Server::bind(public(), store)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("0.0.0.0") && error.contains("auth"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_content_lands_in_the_store_under_the_served_domain() {
    let mut config = ServerConfig::loopback();
    config.served_domain = Some("registry.test:5000".into());
    let server = StencilServer::start(config).await;
    assert_eq!(server.domain, "registry.test:5000");
    let target = Target::new("stencil", &server.host);
    let layer = bytes(7, 4096);
    let config_blob = config_json(&[digest_of(&layer)]);
    for blob in [&layer, &config_blob] {
        let reply = target
            .send(
                "POST",
                &format!("/v2/team/app/blobs/uploads/?digest={}", digest_of(blob)),
                &[],
                blob.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    let manifest = manifest_json(
        OCI_MANIFEST,
        (OCI_CONFIG, &config_blob),
        &[(OCI_LAYER, &layer)],
        serde_json::json!({}),
    );
    let reply = target
        .send(
            "PUT",
            "/v2/team/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");

    for blob in [&layer, &config_blob, &manifest] {
        let digest = Digest::parse(&digest_of(blob)).unwrap_or_else(|e| panic!("{e}"));
        let info = server.store.content().info(&digest).unwrap_or_else(|e| {
            panic!(
                "{digest} not in the store: {e}\n{}",
                listing(server.root.path())
            )
        });
        assert_eq!(info.size, blob.len() as u64);
    }
    let index = FileIndex::new(server.root.path().join("registry"));
    let repo = RepositoryName::parse("registry.test:5000", "team/app")
        .unwrap_or_else(|| panic!("repository name"));
    assert_eq!(repo.image_name(), "registry.test:5000/team/app");
    let tagged = index
        .resolve_tag(&repo, &Tag::parse("v1").unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tagged.map(|d| d.to_string()),
        Some(digest_of(&manifest)),
        "{}",
        listing(server.root.path())
    );
    assert!(
        server
            .root
            .path()
            .join("registry/registry.test:5000/team/app/_tags/v1")
            .is_file()
    );
    let ingests = server
        .store
        .content()
        .ingests()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ingests.is_empty(),
        "uploads left ingests behind: {ingests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire_and_leftovers_are_removed_at_start() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        // An upload left by an earlier server process, and an ingest that is not ours.
        let store = Store::open(root.path()).unwrap_or_else(|e| panic!("{e}"));
        for ingest in ["registry-upload-0123", "pull-something"] {
            let mut writer = store
                .content()
                .writer(ingest)
                .unwrap_or_else(|e| panic!("{e}"));
            std::io::Write::write_all(&mut writer, b"partial").unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let clock = Arc::new(TestClock {
        start: Instant::now(),
        offset: Mutex::new(Duration::ZERO),
    });
    let mut config = ServerConfig::loopback();
    config.upload_expiry = Duration::from_secs(600);
    config.clock = clock.clone();
    let server = StencilServer::start_in(config, root).await;
    let refs = |server: &StencilServer| -> Vec<String> {
        let mut refs: Vec<String> = server
            .store
            .content()
            .ingests()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter_map(|status| status.ingest_ref)
            .collect();
        refs.sort();
        refs
    };
    assert_eq!(
        refs(&server),
        ["pull-something"],
        "the earlier server's upload was not removed"
    );

    let target = Target::new("stencil", &server.host);
    let reply = target
        .send("POST", "/v2/team/app/blobs/uploads/", &[], vec![])
        .await;
    let session = reply.location().unwrap_or_default();
    let reply = target.send("PATCH", &session, &[], bytes(1, 1000)).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(refs(&server).len(), 2);

    // Idle for half the expiry: several sweeps later the session is still there.
    if let Ok(mut offset) = clock.offset.lock() {
        *offset += Duration::from_secs(300);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.send("GET", &session, &[], vec![]).await.status, 204);

    if let Ok(mut offset) = clock.offset.lock() {
        *offset += Duration::from_secs(301);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = target.send("GET", &session, &[], vec![]).await;
        if reply.status == 404 {
            assert_eq!(reply.error_codes(), ["BLOB_UPLOAD_UNKNOWN"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned upload did not expire: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refs(&server),
        ["pull-something"],
        "the expired upload's ingest is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_deletes_search_and_routes() {
    let mut config = ServerConfig::loopback();
    config.max_blob_size = Some(1000);
    config.allow_delete = false;
    config.max_uploads = 2;
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);
    let small = bytes(3, 500);
    let reply = target
        .send(
            "POST",
            &format!("/v2/search/me/blobs/uploads/?digest={}", digest_of(&small)),
            &[],
            small.clone(),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let large = bytes(4, 1001);
    let oversized_manifest = vec![b' '; 4 * 1024 * 1024 + 1];
    // (label, method, path, body, content type, status, code)
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Vec<u8>,
        &'a str,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "blob over the size limit",
            "POST",
            format!("/v2/search/me/blobs/uploads/?digest={}", digest_of(&large)),
            large.clone(),
            "application/octet-stream",
            413,
            Some("SIZE_INVALID"),
        ),
        (
            "manifest over 4 MiB",
            "PUT",
            "/v2/search/me/manifests/big".into(),
            oversized_manifest,
            OCI_MANIFEST,
            413,
            Some("MANIFEST_INVALID"),
        ),
        (
            "delete disabled",
            "DELETE",
            format!("/v2/search/me/blobs/{}", digest_of(&small)),
            vec![],
            "",
            405,
            Some("UNSUPPORTED"),
        ),
        (
            "unknown endpoint",
            "GET",
            "/v2/search/me/nothing".into(),
            vec![],
            "",
            404,
            Some("UNSUPPORTED"),
        ),
        (
            "wrong method",
            "PATCH",
            "/v2/".into(),
            vec![],
            "",
            405,
            Some("UNSUPPORTED"),
        ),
        (
            "invalid digest",
            "GET",
            "/v2/search/me/blobs/sha256:zz".into(),
            vec![],
            "",
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "invalid tag",
            "GET",
            "/v2/search/me/manifests/-bad".into(),
            vec![],
            "",
            400,
            Some("TAG_INVALID"),
        ),
        (
            "PUT of an upload without digest",
            "PUT",
            "/v2/search/me/blobs/uploads/abc".into(),
            vec![],
            "",
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "invalid page size",
            "GET",
            "/v2/search/me/tags/list?n=-1".into(),
            vec![],
            "",
            400,
            Some("PAGINATION_NUMBER_INVALID"),
        ),
        (
            "search",
            "GET",
            "/v1/search?q=SEARCH&n=5".into(),
            vec![],
            "",
            200,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (label, method, path, body, content_type, status, code) in cases {
        let headers: Vec<(&str, &str)> = if content_type.is_empty() {
            vec![]
        } else {
            vec![("content-type", content_type)]
        };
        let reply = target.send(method, &path, &headers, body).await;
        let codes = reply.error_codes();
        if reply.status != status || code.is_some_and(|code| !codes.iter().any(|c| c == code)) {
            failures.push(format!(
                "{label}: {method} {path}: {} {codes:?}, expected {status} {code:?}",
                reply.status
            ));
        }
        // Every error names what it is about.
        if reply.status >= 400
            && !reply.json()["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.chars().next().is_some_and(char::is_lowercase))
        {
            failures.push(format!(
                "{label}: error message missing or not lowercase: {}",
                String::from_utf8_lossy(&reply.body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The refused single-request uploads above left no session open; two may be open.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = target
            .send("POST", "/v2/search/me/blobs/uploads/", &[], vec![])
            .await;
        statuses.push((reply.status, reply.error_codes()));
    }
    assert_eq!(
        statuses,
        [
            (202, vec![]),
            (202, vec![]),
            (429, vec!["TOOMANYREQUESTS".to_owned()])
        ],
        "upload sessions are not bounded"
    );
    let reply = target.get("/v1/search?q=SEARCH&n=5").await;
    assert_eq!(
        reply.json()["results"][0]["name"],
        "search/me",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["num_results"], 1);
    let reply = target.get("/v1/search?q=nothing-like-it").await;
    assert_eq!(reply.json()["results"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_shares_images_with_the_store() {
    let mut config = ServerConfig::loopback();
    config.served_domain = Some("registry.test:5000".into());
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);

    // Pushed through the server: recorded and tagged in the store.
    let layer = bytes(11, 2048);
    let config_blob = config_json(&[digest_of(&layer)]);
    for blob in [&layer, &config_blob] {
        let path = format!("/v2/pushed/app/blobs/uploads/?digest={}", digest_of(blob));
        assert_eq!(
            target.send("POST", &path, &[], blob.to_vec()).await.status,
            201
        );
    }
    let manifest = manifest_json(
        OCI_MANIFEST,
        (OCI_CONFIG, &config_blob),
        &[(OCI_LAYER, &layer)],
        serde_json::json!({}),
    );
    let reply = target
        .send(
            "PUT",
            "/v2/pushed/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let reference = stencil_reference::Reference::parse("registry.test:5000/pushed/app:v1")
        .unwrap_or_else(|e| panic!("{e}"));
    let image = server
        .store
        .resolve(&reference)
        .unwrap_or_else(|e| panic!("pushed image not in the store: {e}"));
    assert_eq!(image.manifest_digest.to_string(), digest_of(&manifest));
    assert_eq!(image.layers.len(), 1);

    // Put in the store by stencil (as a pull or build would): served without a copy.
    let local_layer = bytes(12, 3000);
    let local_config = config_json(&[digest_of(&local_layer)]);
    let local_manifest = manifest_json(
        DOCKER_MANIFEST,
        (DOCKER_CONFIG, &local_config),
        &[(DOCKER_LAYER, &local_layer)],
        serde_json::json!({}),
    );
    for blob in [&local_layer, &local_config, &local_manifest] {
        server
            .store
            .put_blob(blob)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let manifest_digest =
        Digest::parse(&digest_of(&local_manifest)).unwrap_or_else(|e| panic!("{e}"));
    server
        .store
        .record_image(&manifest_digest, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let local = stencil_reference::Reference::parse("registry.test:5000/local/app:latest")
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .store
        .tag(&local, &manifest_digest)
        .unwrap_or_else(|e| panic!("{e}"));
    // An image of another registry is not served.
    let other = stencil_reference::Reference::parse("docker.io/library/app:latest")
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .store
        .tag(&other, &manifest_digest)
        .unwrap_or_else(|e| panic!("{e}"));

    let reply = target
        .send(
            "GET",
            "/v2/local/app/manifests/latest",
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("content-type")),
        (200, Some(DOCKER_MANIFEST)),
        "{reply:?}"
    );
    assert_eq!(reply.body, local_manifest);
    let reply = target
        .get(&format!("/v2/local/app/blobs/{}", digest_of(&local_layer)))
        .await;
    assert_eq!(
        (reply.status, reply.body == local_layer),
        (200, true),
        "{reply:?}"
    );
    let reply = target
        .get(&format!("/v2/pushed/app/blobs/{}", digest_of(&local_layer)))
        .await;
    assert_eq!(
        reply.status, 404,
        "a blob of local/app leaked into pushed/app"
    );
    assert_eq!(
        target.get("/v2/local/app/tags/list").await.json()["tags"],
        serde_json::json!(["latest"])
    );
    assert_eq!(
        target.get("/v2/_catalog").await.json()["repositories"],
        serde_json::json!(["local/app", "pushed/app"])
    );
    assert_eq!(target.get("/v2/library/app/tags/list").await.status, 404);

    // Deleting the tag through the server untags it in the store.
    assert_eq!(
        target
            .send("DELETE", "/v2/local/app/manifests/latest", &[], vec![])
            .await
            .status,
        202
    );
    assert!(
        server.store.resolve(&local).is_err(),
        "the store still has the deleted tag"
    );
    assert!(
        server.store.resolve(&other).is_ok(),
        "the other registry's tag went too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_the_given_certificate() {
    if !peer_available("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        output.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut broken = ServerConfig::loopback();
    broken.tls = Some(stencil_registry::server::TlsFiles {
        cert: key.clone(),
        key: key.clone(),
    });
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(Store::open(root.path()).unwrap_or_else(|e| panic!("{e}")));
    let error = Server::bind(broken, store)
        .await
        .err()
        .unwrap_or_else(|| panic!("a key file was accepted as a certificate"));
    assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
    assert!(error.to_string().contains("key.pem"), "{error}");

    let mut config = ServerConfig::loopback();
    config.tls = Some(stencil_registry::server::TlsFiles {
        cert: cert.clone(),
        key,
    });
    let server = StencilServer::start(config).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(&cert).unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&pem).unwrap_or_else(|e| panic!("{e}")),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let response = client
        .get(format!("https://{}/v2/", server.host))
        .send()
        .await
        .unwrap_or_else(|e| panic!("https request: {e:?}"));
    assert_eq!(response.status().as_u16(), 200);
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v2/", server.host))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status().as_u16() != 200),
        "plain http was served on the tls port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_fails_and_keeps_what_arrived() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = ServerConfig::loopback();
    config.body_idle_timeout = Duration::from_millis(300);
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);
    let reply = target
        .send("POST", "/v2/slow/app/blobs/uploads/", &[], vec![])
        .await;
    let session = reply
        .location()
        .unwrap_or_else(|| panic!("no session: {reply:?}"));

    let mut stream = tokio::net::TcpStream::connect(&server.host)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "PATCH {session} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\n",
        server.host
    );
    stream
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(&[7u8; 10])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the server kept waiting for a stalled body"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains("BLOB_UPLOAD_INVALID")
            && answer.contains("stalled"),
        "{answer}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "failed before the idle timeout"
    );

    let reply = target.send("GET", &session, &[], vec![]).await;
    assert_eq!(
        (reply.status, reply.header("range")),
        (204, Some("0-9")),
        "{reply:?}"
    );
}
