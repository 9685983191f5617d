//! The client against the real CNCF distribution registry (`docker-registry`) on
//! 127.0.0.1: push then pull of crafted OCI, Docker schema 2 and multi-platform images,
//! chunked uploads, mounts, skipping present blobs, tags and catalog paging, search by
//! catalog, errors users see, and htpasswd Basic auth from a docker `config.json`.
//!
//! Each test starts its own registry with its own storage directory and stops it when it
//! ends; without `docker-registry` the tests skip with a reason, except under `CI=true`.

mod support;

use std::sync::{Arc, Mutex};

use stencil_reference::Reference;
use stencil_registry::{
    Client, DockerConfig, ErrorKind, Platform, Progress, ProgressEvent, PullOptions, PushOptions,
};
use support::*;

fn client() -> Client {
    Client::builder().build().unwrap()
}

fn reference(host: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{host}/{rest}")).unwrap()
}

/// Collects progress events.
#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<ProgressEvent>>>);

impl Events {
    fn sink(&self) -> Arc<dyn Progress> {
        let events = self.0.clone();
        Arc::new(move |event: ProgressEvent| events.lock().unwrap().push(event))
    }
    fn count(&self, want: fn(&ProgressEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| want(e)).count()
    }
}

fn skopeo_raw(target: &str) -> Option<Vec<u8>> {
    let output = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ])
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "skopeo inspect {target}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output.stdout)
}

/// Pushes a crafted single-platform image, pulls it back into an empty store, and checks
/// digests, bytes, skopeo's view and the progress events.
async fn check_round_trip(docker: bool, layer_sizes: &[usize], push_options: PushOptions) {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, docker, "amd64", layer_sizes, 7);
    let target = reference(&registry.host, "round/trip:v1");
    let client = client();
    let pushed = client
        .push(
            &target,
            &source,
            &image.manifest,
            &push_options,
            Events::default().sink(),
        )
        .await
        .unwrap();
    assert_eq!(pushed, image.manifest.digest);

    if let Some(raw) = skopeo_raw(&target.to_string()) {
        assert_eq!(
            raw, image.manifest_bytes,
            "skopeo sees other manifest bytes"
        );
    }

    let (_dst_dir, destination) = store();
    let events = Events::default();
    let options = PullOptions {
        platform: "linux/amd64".parse().unwrap(),
        ..PullOptions::default()
    };
    let pulled = client
        .pull(&target, &destination, &options, events.sink())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert_eq!(pulled.root, pulled.manifest);
    assert_eq!(pulled.image.layers, image.layers);
    for blob_descriptor in image.layers.iter().chain([&image.config, &image.manifest]) {
        assert_eq!(
            blob(&destination, &blob_descriptor.digest),
            blob(&source, &blob_descriptor.digest),
            "{}",
            blob_descriptor.digest
        );
    }
    let blobs = layer_sizes.len() + 1;
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Done { .. })),
        blobs
    );
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Verified { .. })),
        blobs
    );

    // A second pull finds every blob present and transfers none; a second push too.
    let again = Events::default();
    client
        .pull(&target, &destination, &options, again.sink())
        .await
        .unwrap();
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::AlreadyPresent { .. })),
        blobs
    );
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::Started { .. })),
        0
    );
    let again = Events::default();
    client
        .push(
            &target,
            &source,
            &image.manifest,
            &push_options,
            again.sink(),
        )
        .await
        .unwrap();
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::AlreadyPresent { .. })),
        blobs
    );

    // By digest, the same manifest comes back verified.
    let by_digest = reference(
        &registry.host,
        &format!("round/trip@{}", image.manifest.digest),
    );
    let resolved = client.resolve(&by_digest).await.unwrap();
    assert_eq!(resolved.bytes.as_ref(), image.manifest_bytes.as_slice());
}

#[tokio::test]
async fn oci_image_round_trip() {
    check_round_trip(false, &[3000, 70_000, 10], PushOptions::default()).await;
}

#[tokio::test]
async fn docker_schema2_image_round_trip() {
    check_round_trip(true, &[5000, 20_000], PushOptions::default()).await;
}

#[tokio::test]
async fn chunked_upload_round_trip() {
    let options = PushOptions {
        monolithic_limit: 1024,
        chunk_size: 16 * 1024,
        ..PushOptions::default()
    };
    check_round_trip(false, &[100_000, 40_000, 500], options).await;
}

#[tokio::test]
async fn oci_index_round_trip() {
    check_index_round_trip(false).await;
}

#[tokio::test]
async fn docker_manifest_list_round_trip() {
    check_index_round_trip(true).await;
}

/// Pushes a two-platform index, then pulls each platform (and one it lacks) back.
async fn check_index_round_trip(docker: bool) {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let amd64 = craft_image(&source, docker, "amd64", &[4000], 1);
    let arm64 = craft_image(&source, docker, "arm64", &[4000], 2);
    let (index, index_bytes) =
        craft_index(&source, docker, &[("amd64", &amd64), ("arm64", &arm64)]);
    let target = reference(&registry.host, "multi/arch:latest");
    let client = client();
    let pushed = client
        .push(
            &target,
            &source,
            &index,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    assert_eq!(pushed, index.digest);
    if let Some(raw) = skopeo_raw(&target.to_string()) {
        assert_eq!(raw, index_bytes);
    }

    let cases: [(&str, Result<&support::Crafted, ErrorKind>); 4] = [
        ("linux/amd64", Ok(&amd64)),
        ("linux/arm64", Ok(&arm64)),
        ("linux/arm64/v8", Ok(&arm64)),
        ("linux/s390x", Err(ErrorKind::NoMatchingPlatform)),
    ];
    for (platform, want) in cases {
        let (_dir, destination) = store();
        let options = PullOptions {
            platform: platform.parse::<Platform>().unwrap(),
            ..PullOptions::default()
        };
        let got = client
            .pull(&target, &destination, &options, Events::default().sink())
            .await;
        match (got, want) {
            (Ok(pulled), Ok(image)) => {
                assert_eq!(pulled.root.digest, index.digest, "{platform}");
                assert_eq!(pulled.manifest.digest, image.manifest.digest, "{platform}");
                assert_eq!(
                    blob(&destination, &image.layers[0].digest),
                    blob(&source, &image.layers[0].digest)
                );
            }
            (Err(err), Err(kind)) => assert_eq!(err.kind(), kind, "{platform}: {err}"),
            (got, want) => panic!("{platform}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn cross_repository_mount() {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, false, "amd64", &[9000, 9001], 3);
    let client = client();
    let base = reference(&registry.host, "team/base:1");
    client
        .push(
            &base,
            &source,
            &image.manifest,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    let events = Events::default();
    let options = PushOptions {
        mount_from: vec!["team/nothing-here".into(), "team/base".into()],
        ..PushOptions::default()
    };
    let app = reference(&registry.host, "team/app:1");
    client
        .push(&app, &source, &image.manifest, &options, events.sink())
        .await
        .unwrap();
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Mounted { .. })),
        3,
        "config and two layers mounted"
    );
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Started { .. })),
        0,
        "nothing uploaded"
    );
    let (_dir, destination) = store();
    client
        .pull(
            &app,
            &destination,
            &PullOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn tags_catalog_and_search_page_through() {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, false, "amd64", &[100], 4);
    let client = client();
    let tags = ["a", "b", "c", "d", "e"];
    for repo in ["lib/alpha", "lib/beta", "other/gamma"] {
        for tag in tags {
            let target = reference(&registry.host, &format!("{repo}:{tag}"));
            client
                .push(
                    &target,
                    &source,
                    &image.manifest,
                    &PushOptions::default(),
                    Events::default().sink(),
                )
                .await
                .unwrap();
        }
    }
    let alpha = reference(&registry.host, "lib/alpha");
    for page in [None, Some(1), Some(2), Some(100)] {
        let mut got = client.tags(&alpha, page).await.unwrap();
        got.sort();
        assert_eq!(got, tags, "page size {page:?}");
        let catalog = client.catalog(&registry.host, page).await.unwrap();
        assert_eq!(
            catalog,
            ["lib/alpha", "lib/beta", "other/gamma"],
            "page size {page:?}"
        );
    }
    let check = |query: &'static str, want: &'static [&'static str]| {
        let (client, host) = (client.clone(), registry.host.clone());
        async move {
            let hits = client.search(&host, query, 10).await.unwrap();
            let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(names, want, "search {query:?}");
        }
    };
    check("lib", &["lib/alpha", "lib/beta"]).await;
    check("GAMMA", &["other/gamma"]).await;
    check("zzz", &[]).await;
}

#[tokio::test]
async fn errors_users_understand() {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, false, "amd64", &[100], 5);
    let client = client();
    let present = reference(&registry.host, "errs/present:v1");
    client
        .push(
            &present,
            &source,
            &image.manifest,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    let absent_digest = support::noise(32, 9);
    let absent_digest =
        stencil_reference::Digest::from_sha256_bytes(&absent_digest.try_into().unwrap());
    let check = |rest: String, kind: ErrorKind, mention: &'static str| {
        let (client, host) = (client.clone(), registry.host.clone());
        async move {
            let target = reference(&host, &rest);
            let err = client.resolve(&target).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{rest}: {err}");
            let message = err.to_string();
            assert!(message.contains(&target.to_string()), "{message}");
            assert!(message.contains(mention), "{message}");
        }
    };
    // The message follows the registry's code (this one says MANIFEST_UNKNOWN for a
    // missing repository too, as docker then reports it).
    check(
        "nosuch/repo:latest".into(),
        ErrorKind::NotFound,
        "not found",
    )
    .await;
    check(
        "errs/present:nosuchtag".into(),
        ErrorKind::NotFound,
        "manifest for",
    )
    .await;
    check(
        format!("errs/present@{absent_digest}"),
        ErrorKind::NotFound,
        "not found",
    )
    .await;

    // Pushing an image whose blobs are missing locally names the digest.
    let (_empty_dir, empty) = store();
    let err = client
        .push(
            &present,
            &empty,
            &image.manifest,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(
        err.to_string().contains(image.manifest.digest.as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn basic_auth_with_docker_config() {
    let Some(registry) = real_registry(Some(("alice", "right-password"))) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, true, "amd64", &[2000], 6);
    let target = reference(&registry.host, "private/app:1");
    let config_dir = tempfile::tempdir().unwrap();
    let check = |password: Option<&'static str>, want: Result<(), ErrorKind>| {
        let (source, image, target) = (source.clone(), image.clone(), target.clone());
        let host = registry.host.clone();
        let config_dir = config_dir.path().join(password.unwrap_or("anonymous"));
        async move {
            let mut builder = Client::builder();
            if let Some(password) = password {
                let path = docker_config(&config_dir, &host, "alice", password);
                builder = builder.credentials(DockerConfig::new(path));
            }
            let client = builder.build().unwrap();
            let pushed = client
                .push(
                    &target,
                    &source,
                    &image.manifest,
                    &PushOptions::default(),
                    Events::default().sink(),
                )
                .await;
            let pulled = async {
                let (_dir, destination) = store();
                client
                    .pull(
                        &target,
                        &destination,
                        &PullOptions::default(),
                        Events::default().sink(),
                    )
                    .await
            };
            match (pushed, want) {
                (Ok(_), Ok(())) => {
                    pulled.await.unwrap();
                }
                (Err(err), Err(kind)) => {
                    assert_eq!(err.kind(), kind, "{password:?}: {err}");
                    assert!(err.to_string().contains("stencil login"), "{err}");
                    assert_eq!(pulled.await.unwrap_err().kind(), kind);
                }
                (got, want) => panic!("{password:?}: got {got:?}, want {want:?}"),
            }
        }
    };
    // What `login` does: check the candidate credentials before storing them.
    for (password, want) in [
        (None, Some(ErrorKind::Unauthorized)),
        (Some("wrong-password"), Some(ErrorKind::Unauthorized)),
        (Some("right-password"), None),
    ] {
        let mut builder = Client::builder();
        if let Some(password) = password {
            builder = builder.credentials(stencil_registry::Credentials {
                username: "alice".into(),
                password: password.into(),
            });
        }
        let got = builder.build().unwrap().ping(&registry.host).await;
        assert_eq!(
            got.map_err(|e| e.kind()).err(),
            want,
            "ping with {password:?}"
        );
    }
    check(None, Err(ErrorKind::Unauthorized)).await;
    check(Some("wrong-password"), Err(ErrorKind::Unauthorized)).await;
    check(Some("right-password"), Ok(())).await;
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let image = craft_image(&source, false, "amd64", &[50_000; 8], 8);
    let target = reference(&registry.host, "many/layers:1");
    let client = client();
    client
        .push(
            &target,
            &source,
            &image.manifest,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    for limit in [1usize, 2, 5] {
        let (_dir, destination) = store();
        let in_flight = Arc::new(Mutex::new((0usize, 0usize)));
        let sink: Arc<dyn Progress> = {
            let in_flight = in_flight.clone();
            Arc::new(move |event: ProgressEvent| {
                let mut counts = in_flight.lock().unwrap();
                match event {
                    ProgressEvent::Started { .. } => counts.0 += 1,
                    ProgressEvent::Done { .. } => counts.0 -= 1,
                    _ => {}
                }
                counts.1 = counts.1.max(counts.0);
            })
        };
        let options = PullOptions {
            concurrency: Some(limit),
            ..PullOptions::default()
        };
        client
            .pull(&target, &destination, &options, sink)
            .await
            .unwrap();
        let peak = in_flight.lock().unwrap().1;
        assert!(
            (1..=limit).contains(&peak),
            "limit {limit}: {peak} blobs at once"
        );
    }
}

/// Reads a `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test]
async fn pull_memory_does_not_grow_with_blob_size() {
    let Some(registry) = real_registry(None) else {
        return;
    };
    let (_src_dir, source) = store();
    let blob_mib = 64;
    let image = craft_image(&source, false, "amd64", &[blob_mib << 20], 9);
    let target = reference(&registry.host, "big/layer:1");
    let client = client();
    client
        .push(
            &target,
            &source,
            &image.manifest,
            &PushOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    let (_dir, destination) = store();
    // Writing 5 to clear_refs resets the peak RSS to the current RSS (Linux >= 4.0), so the
    // peak below is the pull's own.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_mib("VmRSS:");
    client
        .pull(
            &target,
            &destination,
            &PullOptions::default(),
            Events::default().sink(),
        )
        .await
        .unwrap();
    let growth = status_mib("VmHWM:").saturating_sub(before);
    eprintln!("pulling a {blob_mib} MiB layer raised peak memory by {growth} MiB");
    assert!(
        growth < 32,
        "pulling a {blob_mib} MiB layer raised peak memory by {growth} MiB"
    );
    assert_eq!(
        blob(&destination, &image.layers[0].digest).len() as u64,
        image.layers[0].size
    );
}
