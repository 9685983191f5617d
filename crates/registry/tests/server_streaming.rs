//! Blobs stream through the registry server: pushing and pulling a 128 MiB blob raises the
//! process's peak memory by far less than the blob's size, and the bytes come back intact.
//!
//! This is the only test in its binary, so that no other test's memory is counted.

mod conformance;

use conformance::*;
use stencil_layerstore::content::Digester;
use stencil_reference::Algorithm;
use stencil_registry::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOB_SIZE: usize = 128 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;
/// Allowed growth of the peak resident set; a buffered transfer would need the blob size.
const GROWTH_LIMIT: u64 = 40 * 1024 * 1024;

/// The peak resident set of this process, in bytes (VmHWM).
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The `n`th chunk of the test blob (generated, never held whole): cheap to make, and
/// different for every `n` so that a dropped or repeated chunk changes the digest.
fn chunk(n: usize) -> Vec<u8> {
    let mut chunk = vec![(n % 251) as u8; CHUNK];
    chunk[..8].copy_from_slice(&(n as u64).to_le_bytes());
    chunk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_streams_both_ways_in_bounded_memory() {
    let server = StencilServer::start(ServerConfig::loopback()).await;
    let target = Target::new("stencil", &server.host);
    let mut expected =
        Digester::new(Algorithm::Sha256).unwrap_or_else(|| panic!("sha256 digester"));
    for n in 0..BLOB_SIZE / CHUNK {
        expected.update(&chunk(n));
    }
    let digest = expected.finish();
    let before = peak_memory();

    let reply = target
        .send("POST", "/v2/big/blob/blobs/uploads/", &[], vec![])
        .await;
    let session = reply
        .location()
        .unwrap_or_else(|| panic!("no session: {reply:?}"));
    // A raw HTTP/1.1 PATCH, written chunk by chunk as it is generated.
    let mut stream = tokio::net::TcpStream::connect(&server.host)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "PATCH {session} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {BLOB_SIZE}\r\nConnection: close\r\n\r\n",
        server.host
    );
    stream
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for n in 0..BLOB_SIZE / CHUNK {
        stream
            .write_all(&chunk(n))
            .await
            .unwrap_or_else(|e| panic!("sending chunk {n}: {e}"));
    }
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "PATCH answered {answer}"
    );
    let reply = target
        .send("PUT", &format!("{session}?digest={digest}"), &[], vec![])
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");

    let client = reqwest::Client::new();
    let mut response = client
        .get(format!("http://{}/v2/big/blob/blobs/{digest}", server.host))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    let mut received =
        Digester::new(Algorithm::Sha256).unwrap_or_else(|| panic!("sha256 digester"));
    let mut size = 0usize;
    while let Some(bytes) = response.chunk().await.unwrap_or_else(|e| panic!("{e}")) {
        size += bytes.len();
        received.update(&bytes);
    }
    assert_eq!((size, received.finish()), (BLOB_SIZE, digest.clone()));

    let growth = peak_memory().saturating_sub(before);
    assert!(
        growth < GROWTH_LIMIT,
        "peak memory grew by {} MiB while moving a {} MiB blob",
        growth / (1024 * 1024),
        BLOB_SIZE / (1024 * 1024)
    );
}
