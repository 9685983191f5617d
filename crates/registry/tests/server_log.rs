//! Every request to the registry server is logged once, with method, path, status, bytes
//! and duration. Alone in its binary because it installs the global log subscriber.

mod conformance;

use std::io::Write;
use std::sync::{Arc, Mutex};

use conformance::*;
use stencil_registry::server::ServerConfig;

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_logged_once() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap_or_else(|e| panic!("{e}"));

    let server = StencilServer::start(ServerConfig::loopback()).await;
    let target = Target::new("stencil", &server.host);
    let blob = bytes(5, 777);
    let requests = [
        ("GET", "/v2/".to_owned(), Vec::new(), "status=200"),
        (
            "GET",
            format!("/v2/log/app/blobs/{}", digest_of(b"none")),
            Vec::new(),
            "status=404",
        ),
        (
            "POST",
            format!("/v2/log/app/blobs/uploads/?digest={}", digest_of(&blob)),
            blob.clone(),
            "status=201",
        ),
        (
            "GET",
            format!("/v2/log/app/blobs/{}", digest_of(&blob)),
            Vec::new(),
            "bytes=777",
        ),
    ];
    for (method, path, body, _) in &requests {
        target.send(method, path, &[], body.clone()).await;
    }
    let text =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" request "))
        .collect();
    assert_eq!(
        lines.len(),
        requests.len(),
        "one line per request expected:\n{text}"
    );
    for ((method, path, _, expected), line) in requests.iter().zip(&lines) {
        let path_only = path.split('?').next().unwrap_or(path);
        for fragment in [
            &format!("method={method}"),
            path_only,
            expected,
            "duration_ms=",
            "peer=127.0.0.1:",
        ] {
            assert!(
                line.contains(fragment),
                "{fragment:?} missing from the log line of {method} {path}:\n{line}"
            );
        }
    }
}
