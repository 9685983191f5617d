//! A small HTTP/1.1 load generator for registry servers (`cargo xtask bench --filter
//! serve`): plain threads, one keep-alive connection each, no dependencies.
//!
//! A run is two phases against one server: 16 clients push 200 distinct blobs (POST then
//! a monolithic PUT with the digest), then for a fixed time the same clients send HEAD and
//! GET requests for those blobs and for two image manifests, round-robin from different
//! offsets. It counts requests, bytes and errors (any status other than the expected one)
//! and keeps every latency for p50 / p99. Afterwards every blob is fetched once more and
//! its digest checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::fixtures::sha256_bytes;

/// Concurrent clients.
pub const CLIENTS: usize = 16;
/// Distinct blobs pushed and pulled.
pub const BLOBS: usize = 200;

/// Media types a manifest request accepts.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

/// The blobs of the load: sizes spread log-uniformly from 4 KiB to 1 MiB, content from a
/// seeded generator so each is distinct.
pub struct Blobs {
    /// `(digest, content)`.
    pub items: Vec<(String, Vec<u8>)>,
}

impl Blobs {
    /// The fixed set of [`BLOBS`] blobs.
    pub fn generate() -> Blobs {
        let items = (0..BLOBS)
            .map(|i| {
                let fraction = i as f64 / (BLOBS - 1) as f64;
                let size = (4096.0 * 256f64.powf(fraction)) as usize;
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
                let mut data = Vec::with_capacity(size + 8);
                while data.len() < size {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    data.extend_from_slice(&state.to_le_bytes());
                }
                data.truncate(size);
                (sha256_bytes(&data), data)
            })
            .collect();
        Blobs { items }
    }

    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|(_, d)| d.len() as u64).sum()
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phase {
    /// Requests completed.
    pub requests: u64,
    /// Requests with an unexpected status or a transport error.
    pub errors: u64,
    /// Body bytes sent (push) or received (pull).
    pub bytes: u64,
    /// Wall seconds of the phase.
    pub seconds: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

impl Phase {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// MB/s (10^6 bytes).
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }

    fn from(results: Vec<ClientResult>, seconds: f64) -> Phase {
        let mut latencies: Vec<u32> = Vec::new();
        let mut phase = Phase {
            seconds,
            ..Phase::default()
        };
        for result in results {
            phase.requests += result.latencies_us.len() as u64;
            phase.errors += result.errors;
            phase.bytes += result.bytes;
            latencies.extend(result.latencies_us);
        }
        latencies.sort_unstable();
        let pick = |q: f64| {
            if latencies.is_empty() {
                f64::NAN
            } else {
                let i = ((latencies.len() - 1) as f64 * q).round() as usize;
                f64::from(latencies[i]) / 1000.0
            }
        };
        phase.p50_ms = pick(0.50);
        phase.p99_ms = pick(0.99);
        phase
    }
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    errors: u64,
    bytes: u64,
}

/// One request of the pull mix.
#[derive(Clone)]
struct Request {
    head: bool,
    path: String,
    manifest: bool,
}

/// Pushes every blob to `host` under `repo` with [`CLIENTS`] clients.
pub fn push(host: &str, repo: &str, blobs: &Arc<Blobs>) -> Result<Phase> {
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let blobs = Arc::clone(blobs);
            let (host, repo) = (host.to_owned(), repo.to_owned());
            std::thread::spawn(move || -> ClientResult {
                let mut result = ClientResult::default();
                let mut connection = None;
                for (digest, data) in blobs.items.iter().skip(client).step_by(CLIENTS) {
                    let begun = Instant::now();
                    match upload(&mut connection, &host, &repo, digest, data) {
                        Ok(()) => result.bytes += data.len() as u64,
                        Err(_) => {
                            result.errors += 1;
                            connection = None;
                        }
                    }
                    result.latencies_us.push(micros(begun.elapsed()));
                }
                result
            })
        })
        .collect();
    let results = join(handles)?;
    Ok(Phase::from(results, start.elapsed().as_secs_f64()))
}

/// Sends the pull mix (HEAD and GET of every blob in `blob_repo`, of each tag of
/// `manifest_repo`) for `duration` from [`CLIENTS`] clients.
pub fn pull(
    host: &str,
    blob_repo: &str,
    manifest_repo: &str,
    tags: &[&str],
    blobs: &Blobs,
    duration: Duration,
) -> Result<Phase> {
    let mut mix = Vec::new();
    for (digest, _) in &blobs.items {
        for head in [true, false] {
            mix.push(Request {
                head,
                path: format!("/v2/{blob_repo}/blobs/{digest}"),
                manifest: false,
            });
        }
    }
    for tag in tags {
        for head in [true, false] {
            mix.push(Request {
                head,
                path: format!("/v2/{manifest_repo}/manifests/{tag}"),
                manifest: true,
            });
        }
    }
    let mix = Arc::new(mix);
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let mix = Arc::clone(&mix);
            let host = host.to_owned();
            std::thread::spawn(move || -> ClientResult {
                let mut result = ClientResult::default();
                let mut connection = None;
                let mut sink = Vec::new();
                let mut index = client * mix.len() / CLIENTS;
                while Instant::now() < deadline {
                    let request = &mix[index % mix.len()];
                    index += 1;
                    let begun = Instant::now();
                    let method = if request.head { "HEAD" } else { "GET" };
                    let accept = request.manifest.then_some(ACCEPT);
                    sink.clear();
                    match exchange(
                        &mut connection,
                        &host,
                        method,
                        &request.path,
                        accept,
                        None,
                        &mut sink,
                    ) {
                        Ok(response) if response.status == 200 => {
                            result.bytes += sink.len() as u64;
                        }
                        _ => {
                            result.errors += 1;
                            connection = None;
                        }
                    }
                    result.latencies_us.push(micros(begun.elapsed()));
                }
                result
            })
        })
        .collect();
    let results = join(handles)?;
    Ok(Phase::from(results, start.elapsed().as_secs_f64()))
}

/// Fetches every blob once and counts those whose content does not match its digest.
pub fn verify(host: &str, repo: &str, blobs: &Blobs) -> Result<usize> {
    let mut connection = None;
    let mut bad = 0;
    let mut body = Vec::new();
    for (digest, _) in &blobs.items {
        body.clear();
        let path = format!("/v2/{repo}/blobs/{digest}");
        let response = exchange(&mut connection, host, "GET", &path, None, None, &mut body)?;
        if response.status != 200 || &sha256_bytes(&body) != digest {
            bad += 1;
        }
    }
    Ok(bad)
}

fn join(handles: Vec<std::thread::JoinHandle<ClientResult>>) -> Result<Vec<ClientResult>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a load client panicked"))
        })
        .collect()
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn upload(
    connection: &mut Option<BufReader<TcpStream>>,
    host: &str,
    repo: &str,
    digest: &str,
    data: &[u8],
) -> Result<()> {
    let mut sink = Vec::new();
    let path = format!("/v2/{repo}/blobs/uploads/");
    let started = exchange(connection, host, "POST", &path, None, Some(&[]), &mut sink)?;
    if started.status != 202 {
        bail!("POST {path}: status {}", started.status);
    }
    let location = started
        .location
        .context("upload started without a Location")?;
    // Locations may be absolute (docker-registry) or relative.
    let location = match location.find("://") {
        Some(at) => {
            let rest = &location[at + 3..];
            rest[rest.find('/').unwrap_or(rest.len())..].to_owned()
        }
        None => location,
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{separator}digest={digest}");
    sink.clear();
    let done = exchange(connection, host, "PUT", &put, None, Some(data), &mut sink)?;
    if done.status != 201 {
        bail!("PUT {put}: status {}", done.status);
    }
    Ok(())
}

struct Response {
    status: u16,
    location: Option<String>,
}

/// One request on the kept-alive connection (opened when `None`); the body goes to `body`.
fn exchange(
    connection: &mut Option<BufReader<TcpStream>>,
    host: &str,
    method: &str,
    path: &str,
    accept: Option<&str>,
    upload: Option<&[u8]>,
    body: &mut Vec<u8>,
) -> Result<Response> {
    if connection.is_none() {
        let stream = TcpStream::connect(host).with_context(|| format!("connect {host}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        *connection = Some(BufReader::with_capacity(1 << 16, stream));
    }
    let Some(reader) = connection.as_mut() else {
        bail!("no connection");
    };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: stencil-bench\r\n");
    if let Some(accept) = accept {
        head.push_str(&format!("Accept: {accept}\r\n"));
    }
    if let Some(data) = upload {
        head.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            data.len()
        ));
    }
    head.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(head.as_bytes())?;
    if let Some(data) = upload {
        stream.write_all(data)?;
    }
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut close, mut location) = (None, false, false, None);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "location" => location = Some(value.to_owned()),
            _ => {}
        }
    }
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    if !no_body {
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    loop {
                        line.clear();
                        reader.read_line(&mut line)?;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..])?;
                line.clear();
                reader.read_line(&mut line)?;
            }
        } else if let Some(length) = length {
            let start = body.len();
            body.resize(start + length, 0);
            reader.read_exact(&mut body[start..])?;
        } else {
            reader.read_to_end(body)?;
            close = true;
        }
    }
    if close {
        *connection = None;
    }
    Ok(Response { status, location })
}
