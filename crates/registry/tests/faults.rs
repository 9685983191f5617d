//! The client against a fake registry for what a real one will not do on demand: the
//! Bearer token flow with per-scope caching and expiry, 5xx and 429 with `Retry-After`,
//! a body cut half-way and resumed with `Range`, a redirect to another host (which must
//! not see the `Authorization` header), and content that does not match its digest.
//!
//! The fake server listens on loopback addresses only and answers from closures; a test
//! clock records every wait instead of sleeping.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stencil_layerstore::content::{Ingester, LocalContent, Provider, sha256_digest};
use stencil_reference::{Digest, Reference};
use stencil_registry::{
    BlobOutcome, Client, CredentialSource, Credentials, Descriptor, ErrorKind, NoProgress,
    ProgressEvent, PullOptions, RetryPolicy, pull_ingest_ref,
};
use support::*;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug)]
struct StaticCredentials;

impl CredentialSource for StaticCredentials {
    fn credentials(&self, _registry: &str) -> stencil_registry::Result<Option<Credentials>> {
        Ok(Some(Credentials {
            username: "bob".into(),
            password: "pw".into(),
        }))
    }
}

fn client_with(clock: &TestClock, attempts: u32) -> Client {
    Client::builder()
        .clock(clock.clone())
        .retry(RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        })
        .credentials(StaticCredentials)
        .build()
        .unwrap()
}

fn reference(host: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{host}/{rest}")).unwrap()
}

fn descriptor(bytes: &[u8]) -> Descriptor {
    Descriptor::new(LAYER, sha256_digest(bytes), bytes.len() as u64)
}

fn events() -> (
    Arc<Mutex<Vec<ProgressEvent>>>,
    impl Fn(ProgressEvent) + Send + Sync,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        move |event| seen.lock().unwrap().push(event)
    };
    (seen, sink)
}

fn no_ingests(store: &LocalContent) -> bool {
    store.ingests().unwrap().is_empty()
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_scope_and_reused_until_expiry() {
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::OCI_MANIFEST,
        "config": descriptor(b"{}"), "layers": [],
    })
    .to_string();
    let issued: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let token_requests: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let server = {
        let (issued, token_requests) = (issued.clone(), token_requests.clone());
        FakeServer::start("127.0.0.1", move |seen| {
            if seen.path() == "/token" {
                token_requests.lock().unwrap().push(seen.clone());
                let scope = seen
                    .target
                    .split("scope=")
                    .nth(1)
                    .unwrap_or_default()
                    .replace("%3A", ":")
                    .replace("%2F", "/");
                let mut issued = issued.lock().unwrap();
                let token = format!("tok-{}", issued.len() + 1);
                issued.insert(token.clone(), scope);
                return Reply::new(
                    200,
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                );
            }
            let repo = seen
                .path()
                .trim_start_matches("/v2/")
                .split("/manifests/")
                .next()
                .unwrap_or_default();
            let granted = seen
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| issued.lock().unwrap().get(t).cloned());
            if granted.as_deref() != Some(&format!("repository:{repo}:pull")) {
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="fake""#,
                    seen.server
                );
                return Reply::new(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#,
                )
                .header("www-authenticate", &challenge);
            }
            Reply::new(200, manifest.clone()).header("content-type", stencil_registry::OCI_MANIFEST)
        })
        .await
    };
    let clock = TestClock::new();
    let client = client_with(&clock, 3);
    for rest in ["team/a:1", "team/a:2", "team/b:1", "team/a:1"] {
        client
            .resolve(&reference(&server.host(), rest))
            .await
            .unwrap();
    }
    let scopes = |requests: &[Seen]| -> Vec<String> {
        requests
            .iter()
            .map(|r| {
                r.target
                    .split("scope=")
                    .nth(1)
                    .unwrap_or_default()
                    .replace("%3A", ":")
                    .replace("%2F", "/")
            })
            .collect()
    };
    let requests = token_requests.lock().unwrap().clone();
    assert_eq!(
        scopes(&requests),
        ["repository:team/a:pull", "repository:team/b:pull"]
    );
    assert!(requests.iter().all(|r| r.target.contains("service=fake")));
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Basic Ym9iOnB3")),
        "credentials go to the token service: {requests:?}"
    );

    // After expiry, the next request for the scope gets a new token.
    clock.advance(Duration::from_secs(301));
    client
        .resolve(&reference(&server.host(), "team/a:1"))
        .await
        .unwrap();
    assert_eq!(token_requests.lock().unwrap().len(), 3);
}

/// A blob behind a fake registry whose answers to the first requests are scripted.
async fn scripted_blob(bytes: Vec<u8>, script: Vec<Reply>) -> (FakeServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let server = {
        let count = count.clone();
        FakeServer::start("127.0.0.1", move |_seen| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            script
                .get(n)
                .cloned()
                .unwrap_or_else(|| Reply::new(200, bytes.clone()))
        })
        .await
    };
    (server, count)
}

#[tokio::test]
async fn retries_honour_retry_after_and_back_off() {
    let bytes = noise(5000, 1);
    let check = |name: &'static str,
                 script: Vec<Reply>,
                 want: Result<(), ErrorKind>,
                 sleeps: Vec<Duration>| {
        let bytes = bytes.clone();
        async move {
            let (server, _) = scripted_blob(bytes.clone(), script).await;
            let clock = TestClock::new();
            let client = client_with(&clock, 3);
            let (_dir, store) = store();
            let got = client
                .fetch_blob(
                    &reference(&server.host(), "r/x:1"),
                    &descriptor(&bytes),
                    &*store,
                    &NoProgress,
                )
                .await;
            match (got, want) {
                (Ok(outcome), Ok(())) => {
                    assert_eq!(outcome, BlobOutcome::Fetched, "{name}");
                    assert_eq!(blob(&store, &sha256_digest(&bytes)), bytes, "{name}");
                }
                (Err(err), Err(kind)) => {
                    assert_eq!(err.kind(), kind, "{name}: {err}");
                    assert!(err.to_string().contains(&server.host()), "{name}: {err}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
            assert_eq!(clock.sleeps(), sleeps, "{name}");
        }
    };
    let ms = Duration::from_millis;
    let busy = || Reply::new(429, "").header("retry-after", "7");
    let down = || Reply::new(503, "");
    check(
        "429 twice, then served",
        vec![busy(), busy()],
        Ok(()),
        vec![ms(7000), ms(7000)],
    )
    .await;
    check("503 once, then served", vec![down()], Ok(()), vec![ms(250)]).await;
    check(
        "503 always",
        vec![down(), down(), down()],
        Err(ErrorKind::Status),
        vec![ms(250), ms(500)],
    )
    .await;
    check(
        "429 always",
        vec![busy(), busy(), busy()],
        Err(ErrorKind::TooManyRequests),
        vec![ms(7000), ms(7000)],
    )
    .await;
    check(
        "Retry-After is capped",
        vec![Reply::new(429, "").header("retry-after", "86400")],
        Ok(()),
        vec![ms(60_000)],
    )
    .await;
    check(
        "404 is final",
        vec![Reply::new(404, "")],
        Err(ErrorKind::NotFound),
        vec![],
    )
    .await;
}

#[tokio::test]
async fn interrupted_blob_resumes_with_range() {
    let bytes = noise(200_000, 2);
    let size = bytes.len();
    let cut = 80_000;
    let ranged = {
        let bytes = bytes.clone();
        move |seen: &Seen| {
            let start: usize = seen
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse().ok())
                .unwrap_or(0);
            Reply::new(206, bytes[start..].to_vec()).header(
                "content-range",
                &format!("bytes {start}-{}/{size}", size - 1),
            )
        }
    };
    // (name, bytes already in the ingest, first answer, ranges the client must ask for)
    struct Case {
        name: &'static str,
        prewritten: usize,
        cut_first: bool,
        honour_range: bool,
        ranges: Vec<Option<String>>,
    }
    let cases = [
        Case {
            name: "cut mid-body, resumed",
            prewritten: 0,
            cut_first: true,
            honour_range: true,
            ranges: vec![None, Some(format!("bytes={cut}-"))],
        },
        Case {
            name: "cut, server ignores the range",
            prewritten: 0,
            cut_first: true,
            honour_range: false,
            ranges: vec![None, Some(format!("bytes={cut}-"))],
        },
        Case {
            name: "partial ingest from an earlier process",
            prewritten: 1234,
            cut_first: false,
            honour_range: true,
            ranges: vec![Some("bytes=1234-".into())],
        },
    ];
    for case in cases {
        let first = Arc::new(AtomicUsize::new(0));
        let server = {
            let (bytes, ranged, first) = (bytes.clone(), ranged.clone(), first.clone());
            let (cut_first, honour_range) = (case.cut_first, case.honour_range);
            FakeServer::start("127.0.0.1", move |seen| {
                if cut_first && first.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Reply::new(200, bytes.clone()).cut_after(cut);
                }
                if honour_range && seen.header("range").is_some() {
                    ranged(seen)
                } else {
                    Reply::new(200, bytes.clone())
                }
            })
            .await
        };
        let (_dir, store) = store();
        let digest = sha256_digest(&bytes);
        if case.prewritten > 0 {
            let mut writer = store.writer(&pull_ingest_ref(&digest)).unwrap();
            writer.write_all(&bytes[..case.prewritten]).unwrap();
        }
        let clock = TestClock::new();
        let client = client_with(&clock, 4);
        let (seen_events, sink) = events();
        let outcome = client
            .fetch_blob(
                &reference(&server.host(), "r/x:1"),
                &descriptor(&bytes),
                &*store,
                &sink,
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(outcome, BlobOutcome::Fetched, "{}", case.name);
        assert_eq!(blob(&store, &digest), bytes, "{}", case.name);
        assert!(no_ingests(&store), "{}", case.name);
        let ranges: Vec<Option<String>> = server
            .seen()
            .iter()
            .map(|s| s.header("range").map(str::to_owned))
            .collect();
        assert_eq!(ranges, case.ranges, "{}", case.name);
        let seen_events = seen_events.lock().unwrap();
        assert!(
            matches!(seen_events.first(), Some(ProgressEvent::Started { offset, .. }) if *offset == case.prewritten as u64),
            "{}: {seen_events:?}",
            case.name
        );
        assert!(
            matches!(seen_events.last(), Some(ProgressEvent::Done { .. })),
            "{}",
            case.name
        );
        assert_eq!(
            seen_events
                .iter()
                .any(|e| matches!(e, ProgressEvent::Resuming { .. })),
            case.cut_first,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn redirect_to_another_host_gets_no_authorization() {
    let bytes = noise(3000, 3);
    let storage = {
        let bytes = bytes.clone();
        FakeServer::start("127.0.0.2", move |_| Reply::new(200, bytes.clone())).await
    };
    let location = format!("http://{}/storage/blob?signature=abc", storage.host());
    let registry = FakeServer::start("127.0.0.1", move |seen| {
        if seen.header("authorization").is_none() {
            return Reply::new(401, "").header("www-authenticate", r#"Basic realm="fake""#);
        }
        Reply::new(307, "").header("location", &location)
    })
    .await;
    let clock = TestClock::new();
    let client = client_with(&clock, 2);
    let (_dir, store) = store();
    client
        .fetch_blob(
            &reference(&registry.host(), "r/x:1"),
            &descriptor(&bytes),
            &*store,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(blob(&store, &sha256_digest(&bytes)), bytes);
    let at_registry = registry.seen();
    assert_eq!(
        at_registry.last().and_then(|s| s.header("authorization")),
        Some("Basic Ym9iOnB3")
    );
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(
        at_storage[0].header("authorization"),
        None,
        "credentials leaked: {at_storage:?}"
    );
    assert_eq!(at_storage[0].target, "/storage/blob?signature=abc");
}

#[tokio::test]
async fn content_that_does_not_match_is_refused() {
    let good = noise(4000, 4);
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::OCI_MANIFEST,
        "config": descriptor(b"{}"), "layers": [descriptor(&good)],
    })
    .to_string();
    let manifest_digest = sha256_digest(manifest.as_bytes());
    let wrong: Digest = sha256_digest(b"something else");

    enum Fetch {
        Blob(Descriptor),
        Resolve(String),
    }
    let check = |name: &'static str, reply: Reply, fetch: Fetch, kind: ErrorKind| async move {
        let server = FakeServer::start("127.0.0.1", move |_| reply.clone()).await;
        let clock = TestClock::new();
        let client = client_with(&clock, 2);
        let (_dir, store) = store();
        let err = match &fetch {
            Fetch::Blob(descriptor) => client
                .fetch_blob(
                    &reference(&server.host(), "r/x:1"),
                    descriptor,
                    &*store,
                    &NoProgress,
                )
                .await
                .map(|_| ())
                .unwrap_err(),
            Fetch::Resolve(rest) => client
                .resolve(&reference(&server.host(), rest))
                .await
                .map(|_| ())
                .unwrap_err(),
        };
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(err.to_string().contains(&server.host()), "{name}: {err}");
        if let Fetch::Blob(descriptor) = &fetch {
            assert!(
                !store.contains(&descriptor.digest).unwrap(),
                "{name}: committed"
            );
            assert!(no_ingests(&store), "{name}: ingest left behind");
        }
        err.to_string()
    };
    let message = check(
        "corrupted blob",
        Reply::new(200, bad.clone()),
        Fetch::Blob(descriptor(&good)),
        ErrorKind::DigestMismatch,
    )
    .await;
    assert!(
        message.contains(sha256_digest(&good).as_str())
            && message.contains(sha256_digest(&bad).as_str()),
        "{message}"
    );
    let mut long = good.clone();
    long.push(0);
    check(
        "blob too long",
        Reply::new(200, long),
        Fetch::Blob(descriptor(&good)),
        ErrorKind::SizeMismatch,
    )
    .await;
    check(
        "manifest by digest with other bytes",
        Reply::new(200, manifest.replace("4000", "4001"))
            .header("content-type", stencil_registry::OCI_MANIFEST),
        Fetch::Resolve(format!("r/x@{manifest_digest}")),
        ErrorKind::DigestMismatch,
    )
    .await;
    check(
        "manifest by tag with a wrong Docker-Content-Digest",
        Reply::new(200, manifest.clone()).header("docker-content-digest", wrong.as_str()),
        Fetch::Resolve("r/x:1".into()),
        ErrorKind::DigestMismatch,
    )
    .await;
    check(
        "manifest over 4 MiB",
        Reply::new(200, vec![b' '; 4 * 1024 * 1024 + 1]),
        Fetch::Resolve("r/x:1".into()),
        ErrorKind::ManifestTooLarge,
    )
    .await;
    let denied = check(
        "403 with an OCI error envelope",
        Reply::new(403, r#"{"errors":[{"code":"DENIED","message":"Requested access to the resource is denied","detail":null}]}"#),
        Fetch::Resolve("r/x:1".into()),
        ErrorKind::Denied,
    )
    .await;
    assert!(
        denied.contains("requested access to the resource is denied"),
        "{denied}"
    );
}

#[tokio::test]
async fn foreign_layers_need_permission() {
    let layer = noise(2500, 5);
    let foreign = FakeServer::start("127.0.0.2", {
        let layer = layer.clone();
        move |_| Reply::new(200, layer.clone())
    })
    .await;
    let mut layer_descriptor = descriptor(&layer);
    layer_descriptor.media_type = stencil_registry::DOCKER_FOREIGN_LAYER.into();
    layer_descriptor.urls = vec![format!("http://{}/layer.tar.gz", foreign.host())];
    let config = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::DOCKER_MANIFEST,
        "config": descriptor(&config), "layers": [layer_descriptor],
    })
    .to_string();
    let registry = FakeServer::start("127.0.0.1", move |seen| {
        if seen.path().contains("/manifests/") {
            Reply::new(200, manifest.clone())
                .header("content-type", stencil_registry::DOCKER_MANIFEST)
        } else if seen.path().ends_with(sha256_digest(&config).as_str()) {
            Reply::new(200, config.clone())
        } else {
            Reply::new(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            )
        }
    })
    .await;
    let clock = TestClock::new();
    let client = client_with(&clock, 2);
    let target = reference(&registry.host(), "win/app:1");
    for allow in [false, true] {
        let (_dir, store) = store();
        let options = PullOptions {
            allow_foreign_layers: allow,
            ..PullOptions::default()
        };
        let got = client
            .pull(&target, &store, &options, Arc::new(NoProgress))
            .await;
        if allow {
            let pulled = got.unwrap();
            assert_eq!(blob(&store, &pulled.image.layers[0].digest), layer);
        } else {
            let err = got.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ForeignLayer, "{err}");
            assert!(err.to_string().contains(&foreign.host()), "{err}");
        }
    }
    assert_eq!(
        foreign.seen().len(),
        1,
        "the foreign URL is fetched only when allowed"
    );
}

#[tokio::test]
async fn mirrors_are_tried_first_and_the_origin_is_the_fallback() {
    let layer = noise(3000, 6);
    let config = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::OCI_MANIFEST,
        "config": descriptor(&config), "layers": [descriptor(&layer)],
    })
    .to_string();
    let serve = {
        let (layer, config, manifest) = (layer.clone(), config.clone(), manifest.clone());
        move |seen: &Seen| {
            if seen.path().contains("/manifests/") {
                Reply::new(200, manifest.clone())
                    .header("content-type", stencil_registry::OCI_MANIFEST)
            } else if seen.path().ends_with(sha256_digest(&layer).as_str()) {
                Reply::new(200, layer.clone())
            } else {
                Reply::new(200, config.clone())
            }
        }
    };
    // (name, how the mirror answers, requests the origin must get)
    let cases: [(&str, Option<u16>, bool); 3] = [
        ("healthy mirror serves everything", None, false),
        ("mirror without the image", Some(404), true),
        ("broken mirror", Some(500), true),
    ];
    for (name, failure, origin_used) in cases {
        let mirror = {
            let serve = serve.clone();
            FakeServer::start("127.0.0.3", move |seen| match failure {
                Some(status) => Reply::new(status, ""),
                None => serve(seen),
            })
            .await
        };
        let origin = FakeServer::start("127.0.0.1", serve.clone()).await;
        let registries = stencil_registry::RegistriesConfig::parse(&format!(
            "[[registry]]\nhost = \"{}\"\nmirrors = [\"{}\"]\n",
            origin.host(),
            mirror.host()
        ))
        .unwrap();
        let clock = TestClock::new();
        let client = Client::builder()
            .clock(clock.clone())
            .config(registries)
            .retry(RetryPolicy {
                attempts: 2,
                ..RetryPolicy::default()
            })
            .build()
            .unwrap();
        let (_dir, store) = store();
        let target = reference(&origin.host(), "mirrored/app:1");
        let pulled = client
            .pull(
                &target,
                &store,
                &PullOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            blob(&store, &pulled.image.layers[0].digest),
            layer,
            "{name}"
        );
        assert!(!mirror.seen().is_empty(), "{name}: mirror not asked");
        assert_eq!(
            !origin.seen().is_empty(),
            origin_used,
            "{name}: origin saw {:?}",
            origin.seen()
        );
    }
}

#[tokio::test]
async fn docker_hub_style_search() {
    let server = FakeServer::start("127.0.0.1", |seen| {
        if seen.path() != "/v1/search" {
            return Reply::new(404, "");
        }
        Reply::new(
            200,
            serde_json::json!({"num_results": 3, "query": "x", "results": [
                {"name": "library/busybox", "description": "Busybox base image.", "star_count": 3000, "is_official": true, "is_automated": false},
                {"name": "someone/busybox-tools", "description": null, "star_count": 2},
                {"name": "other/busybox", "description": "", "star_count": 1, "is_official": false, "is_automated": true},
            ]})
            .to_string(),
        )
    })
    .await;
    let client = Client::builder().build().unwrap();
    let hits = client.search(&server.host(), "busy box", 2).await.unwrap();
    let got: Vec<(&str, u64, bool)> = hits
        .iter()
        .map(|h| (h.name.as_str(), h.star_count, h.is_official))
        .collect();
    assert_eq!(
        got,
        [
            ("library/busybox", 3000, true),
            ("someone/busybox-tools", 2, false)
        ]
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/search?q=busy+box&n=2");
}

#[tokio::test]
async fn identity_tokens_are_exchanged_with_a_form_post() {
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::OCI_MANIFEST,
        "config": descriptor(b"{}"), "layers": [],
    })
    .to_string();
    let server = FakeServer::start("127.0.0.1", move |seen| {
        if seen.path() == "/token" {
            let body = String::from_utf8_lossy(&seen.body);
            let ok = seen.method == "POST"
                && seen.header("authorization").is_none()
                && body.contains("grant_type=refresh_token")
                && body.contains("refresh_token=refresh-abc")
                && body.contains("scope=repository%3Ateam%2Fa%3Apull");
            return if ok {
                Reply::new(200, r#"{"access_token":"from-refresh","expires_in":60}"#)
            } else {
                Reply::new(
                    400,
                    format!("unexpected token request {} {body}", seen.method),
                )
            };
        }
        if seen.header("authorization") == Some("Bearer from-refresh") {
            return Reply::new(200, manifest.clone())
                .header("content-type", stencil_registry::OCI_MANIFEST);
        }
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="fake""#,
            seen.server
        );
        Reply::new(401, "").header("www-authenticate", &challenge)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {server.host(): {"auth": "", "identitytoken": "refresh-abc"}}})
            .to_string(),
    )
    .unwrap();
    let client = Client::builder()
        .credentials(stencil_registry::DockerConfig::new(&path))
        .build()
        .unwrap();
    client
        .resolve(&reference(&server.host(), "team/a:1"))
        .await
        .unwrap();
}

/// A chunk of a large upload cut half-way (the registry kept part of it, then failed): the
/// client asks the upload's status and goes on from what the registry holds, streaming
/// each chunk from the store.
#[tokio::test]
async fn an_interrupted_chunked_upload_resumes_from_the_registry_offset() {
    let bytes = noise(300_000, 9);
    let digest = sha256_digest(&bytes);
    let (_dir, store) = store();
    let descriptor = put(&store, LAYER, &bytes);
    let held = Arc::new(Mutex::new(Vec::<u8>::new()));
    let failed_once = Arc::new(AtomicUsize::new(0));
    let server = {
        let (held, failed_once, digest) = (held.clone(), failed_once.clone(), digest.clone());
        FakeServer::start("127.0.0.1", move |seen| {
            let upload = "/v2/app/blobs/uploads/u1";
            let mut data = held.lock().unwrap();
            let status = |data: &Vec<u8>, code| {
                Reply::new(code, Vec::new())
                    .header("location", upload)
                    .header("range", &format!("0-{}", data.len().saturating_sub(1)))
            };
            match (seen.method.as_str(), seen.path()) {
                ("HEAD", _) => Reply::new(404, Vec::new()),
                ("POST", _) => status(&data, 202),
                ("GET", path) if path == upload => status(&data, 204),
                ("PATCH", path) if path == upload => {
                    let start: usize = seen
                        .header("content-range")
                        .and_then(|r| r.split('-').next()?.parse().ok())
                        .unwrap_or(usize::MAX);
                    if start != data.len() {
                        return Reply::new(416, Vec::new());
                    }
                    // The second chunk: keep half of it, then fail.
                    if start > 0 && failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                        let half = seen.body.len() / 2;
                        data.extend_from_slice(&seen.body[..half]);
                        return Reply::new(500, Vec::new());
                    }
                    data.extend_from_slice(&seen.body);
                    status(&data, 202)
                }
                ("PUT", path) if path == upload => {
                    if sha256_digest(&data) == digest {
                        Reply::new(201, Vec::new()).header("docker-content-digest", digest.as_str())
                    } else {
                        Reply::new(400, Vec::new())
                    }
                }
                _ => Reply::new(404, Vec::new()),
            }
        })
        .await
    };
    let clock = TestClock::new();
    let client = client_with(&clock, 3);
    let options = stencil_registry::PushOptions {
        monolithic_limit: 1024,
        chunk_size: 100_000,
        ..Default::default()
    };
    let (events, sink) = events();
    let outcome = client
        .push_blob_to(
            &reference(&server.host(), "app:1"),
            &descriptor,
            &store,
            &options,
            &sink,
        )
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    assert_eq!(
        *held.lock().unwrap(),
        bytes,
        "the registry got the blob whole"
    );
    assert!(
        matches!(outcome, stencil_registry::PushOutcome::Chunked(_)),
        "{outcome:?}"
    );
    let resumed: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Resuming { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(resumed, [150_000], "resumed where the registry stopped");
    let statuses = server.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(statuses, 1, "one status request");
}

#[tokio::test]
async fn a_warm_re_pull_costs_one_request() {
    let layer = noise(3000, 9);
    let config = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": stencil_registry::OCI_MANIFEST,
        "config": descriptor(&config), "layers": [descriptor(&layer)],
    })
    .to_string();
    let manifest_digest = sha256_digest(manifest.as_bytes());
    let server = {
        let (layer, config, manifest) = (layer.clone(), config.clone(), manifest.clone());
        let digest = manifest_digest.to_string();
        FakeServer::start("127.0.0.1", move |seen| {
            if seen.path().contains("/manifests/") {
                Reply::new(200, manifest.clone())
                    .header("content-type", stencil_registry::OCI_MANIFEST)
                    .header("docker-content-digest", &digest)
            } else if seen.path().ends_with(sha256_digest(&layer).as_str()) {
                Reply::new(200, layer.clone())
            } else {
                Reply::new(200, config.clone())
            }
        })
        .await
    };
    let client = Client::builder().build().unwrap();
    let (_dir, store) = store();
    let target = reference(&server.host(), "warm/app:1");
    let options = PullOptions::default();
    let pull = || client.pull(&target, &store, &options, Arc::new(NoProgress));
    let first = pull().await.unwrap_or_else(|e| panic!("first pull: {e}"));
    let cold = server.seen().len();
    assert_eq!(
        cold,
        4,
        "HEAD, GET manifest, config, layer: {:?}",
        server.seen()
    );
    let second = pull().await.unwrap_or_else(|e| panic!("warm pull: {e}"));
    let warm: Vec<String> = server.seen()[cold..]
        .iter()
        .map(|seen| format!("{} {}", seen.method, seen.path()))
        .collect();
    assert_eq!(
        warm,
        ["HEAD /v2/warm/app/manifests/1"],
        "the manifest comes from the store by the digest HEAD names"
    );
    assert_eq!(first.manifest.digest, second.manifest.digest);
    assert_eq!(second.manifest.digest, manifest_digest);
}
