//! A small HTTP/1.1 load generator for registry servers (`cargo xtask bench --filter
//! serve`): plain threads, one keep-alive connection each, no dependencies.
//!
//! A run is one mixed load against one server for a fixed time: each of 16 clients picks,
//! at random (seeded), either a push of a blob the server's repository does not hold yet
//! (POST, then a monolithic PUT with the digest) or a GET of a blob some client has
//! already pushed. The 200 distinct blobs are pushed in rounds: push number `k` sends blob
//! `k % 200` to repository `PREFIX-{k / 200}`, so every push is a full upload the server
//! has to receive, hash and link, while its storage holds 200 blobs. It counts requests,
//! bytes and errors (any status other than the expected one) of each kind, keeps every
//! latency for p50 / p99 and samples the server's resident memory. Afterwards every pushed
//! (repository, blob) pair is fetched once more and its digest checked.

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

/// What one kind of request (push or pull) measured.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// HTTP requests completed (a push is two: POST and PUT).
    pub requests: u64,
    /// Operations (pushes or pulls) completed.
    pub operations: u64,
    /// Requests with an unexpected status or a transport error.
    pub errors: u64,
    /// Body bytes sent (push) or received (pull).
    pub bytes: u64,
    /// Latency of each operation, microseconds.
    pub latencies_us: Vec<u32>,
}

impl Phase {
    /// Adds `other`'s counts and latencies.
    pub fn merge(&mut self, other: &Phase) {
        self.requests += other.requests;
        self.operations += other.operations;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.latencies_us.extend_from_slice(&other.latencies_us);
    }

    /// The `q` quantile of the operation latencies, milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        f64::from(sorted[i]) / 1000.0
    }
}

/// What one mixed run (or several, merged) measured.
#[derive(Debug, Clone, Default)]
pub struct Mixed {
    /// Pushes of new blobs.
    pub push: Phase,
    /// GETs of pushed blobs.
    pub pull: Phase,
    /// Wall seconds under load.
    pub seconds: f64,
    /// Resident memory of the server, `(seconds since the run began, MiB)`, every 250 ms.
    pub rss: Vec<(f64, f64)>,
    /// The pushes that completed: `(repository, blob index)`.
    pub pushed: Vec<(String, usize)>,
}

impl Mixed {
    /// Adds another run's figures (its samples shifted after this run's).
    pub fn merge(&mut self, other: &Mixed) {
        self.push.merge(&other.push);
        self.pull.merge(&other.pull);
        let offset = self.seconds;
        self.rss
            .extend(other.rss.iter().map(|&(t, m)| (t + offset, m)));
        self.seconds += other.seconds;
        self.pushed.extend_from_slice(&other.pushed);
    }

    /// Pushes and pulls together.
    pub fn total(&self) -> Phase {
        let mut all = self.push.clone();
        all.merge(&self.pull);
        all
    }

    /// Requests per second of `phase` over this run.
    pub fn rate(&self, phase: &Phase) -> f64 {
        phase.requests as f64 / self.seconds
    }

    /// MB/s (10^6 bytes) of `phase` over this run.
    pub fn mbps(&self, phase: &Phase) -> f64 {
        phase.bytes as f64 / self.seconds / 1e6
    }

    /// Errors of both kinds.
    pub fn errors(&self) -> u64 {
        self.push.errors + self.pull.errors
    }

    /// The highest resident memory sampled in the first and in the second half, MiB.
    pub fn rss_halves(&self) -> (f64, f64) {
        let half = self.seconds / 2.0;
        let peak = |first: bool| {
            self.rss
                .iter()
                .filter(|(t, _)| (*t < half) == first)
                .map(|&(_, m)| m)
                .fold(f64::NAN, f64::max)
        };
        (peak(true), peak(false))
    }
}

#[derive(Default)]
struct ClientResult {
    push: Phase,
    pull: Phase,
    pushed: Vec<(String, usize)>,
}

/// What the clients of a run share: the next push number and the pushes done so far.
struct Shared {
    next: std::sync::atomic::AtomicUsize,
    done: std::sync::Mutex<Vec<usize>>,
}

/// Runs the mixed load against `host` (server process `pid`) for `duration` from
/// [`CLIENTS`] clients, pushing to repositories `PREFIX-N`; `seed` varies the choices.
pub fn mixed(
    host: &str,
    pid: u32,
    prefix: &str,
    blobs: &Arc<Blobs>,
    duration: Duration,
    seed: u64,
) -> Result<Mixed> {
    let shared = Arc::new(Shared {
        next: std::sync::atomic::AtomicUsize::new(0),
        done: std::sync::Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (blobs, shared) = (Arc::clone(blobs), Arc::clone(&shared));
            let (host, prefix) = (host.to_owned(), prefix.to_owned());
            std::thread::spawn(move || {
                client_loop(
                    &host,
                    &prefix,
                    &blobs,
                    &shared,
                    deadline,
                    seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )
            })
        })
        .collect();
    let mut rss = Vec::new();
    while Instant::now() < deadline {
        rss.push((start.elapsed().as_secs_f64(), rss_mib(pid, "VmRSS:")));
        std::thread::sleep(Duration::from_millis(250));
    }
    let results = join(handles)?;
    let seconds = start.elapsed().as_secs_f64();
    rss.push((seconds, rss_mib(pid, "VmRSS:")));
    let mut mixed = Mixed {
        seconds,
        rss,
        ..Mixed::default()
    };
    for result in results {
        mixed.push.merge(&result.push);
        mixed.pull.merge(&result.pull);
        mixed.pushed.extend(result.pushed);
    }
    Ok(mixed)
}

fn client_loop(
    host: &str,
    prefix: &str,
    blobs: &Blobs,
    shared: &Shared,
    deadline: Instant,
    seed: u64,
) -> ClientResult {
    let mut result = ClientResult::default();
    let mut state = seed | 1;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut connection = None;
    let mut sink = Vec::new();
    let repository = |k: usize| format!("{prefix}-{}", k / BLOBS);
    while Instant::now() < deadline {
        let pick = random();
        let existing = {
            let done = shared
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (!done.is_empty() && pick & 1 == 0).then(|| done[(pick >> 1) as usize % done.len()])
        };
        let begun = Instant::now();
        match existing {
            None => {
                let k = shared
                    .next
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (digest, data) = &blobs.items[k % BLOBS];
                let repo = repository(k);
                match upload(&mut connection, host, &repo, digest, data) {
                    Ok(()) => {
                        result.push.bytes += data.len() as u64;
                        result.push.requests += 2;
                        result.push.operations += 1;
                        result.pushed.push((repo, k % BLOBS));
                        shared
                            .done
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(k);
                    }
                    Err(_) => {
                        result.push.errors += 1;
                        connection = None;
                    }
                }
                result.push.latencies_us.push(micros(begun.elapsed()));
            }
            Some(k) => {
                let path = format!("/v2/{}/blobs/{}", repository(k), blobs.items[k % BLOBS].0);
                sink.clear();
                match exchange(&mut connection, host, "GET", &path, None, None, &mut sink) {
                    Ok(response) if response.status == 200 => {
                        result.pull.bytes += sink.len() as u64;
                        result.pull.requests += 1;
                        result.pull.operations += 1;
                    }
                    _ => {
                        result.pull.errors += 1;
                        connection = None;
                    }
                }
                result.pull.latencies_us.push(micros(begun.elapsed()));
            }
        }
    }
    result
}

/// Resident memory of process `pid` from `/proc/PID/status` field `field` (`VmRSS:`,
/// `VmHWM:`), in MiB; NaN when it cannot be read.
pub fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Fetches every pushed `(repository, blob)` pair once, from [`CLIENTS`] threads, and
/// counts those whose status is not 200 or whose content does not match its digest.
pub fn verify(host: &str, pushed: &[(String, usize)], blobs: &Arc<Blobs>) -> Result<usize> {
    let pushed = Arc::new(pushed.to_vec());
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (pushed, blobs, host) = (Arc::clone(&pushed), Arc::clone(blobs), host.to_owned());
            std::thread::spawn(move || {
                let mut connection = None;
                let mut body = Vec::new();
                let mut bad = 0;
                for (repo, index) in pushed.iter().skip(client).step_by(CLIENTS) {
                    let digest = &blobs.items[*index].0;
                    body.clear();
                    let path = format!("/v2/{repo}/blobs/{digest}");
                    match exchange(&mut connection, &host, "GET", &path, None, None, &mut body) {
                        Ok(response)
                            if response.status == 200 && &sha256_bytes(&body) == digest => {}
                        _ => {
                            bad += 1;
                            connection = None;
                        }
                    }
                }
                bad
            })
        })
        .collect();
    let mut bad = 0;
    for handle in handles {
        bad += handle
            .join()
            .map_err(|_| anyhow::anyhow!("a verifying client panicked"))?;
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
                read_exactly(reader, size, body)?;
                line.clear();
                reader.read_line(&mut line)?;
            }
        } else if let Some(length) = length {
            read_exactly(reader, length, body)?;
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

/// Appends exactly `length` bytes from `reader` to `body` (through std's `read_to_end`,
/// which is optimised even in the unoptimised xtask build, unlike a zero-filled resize).
fn read_exactly(
    reader: &mut BufReader<TcpStream>,
    length: usize,
    body: &mut Vec<u8>,
) -> Result<()> {
    body.reserve(length);
    let got = reader.by_ref().take(length as u64).read_to_end(body)?;
    if got != length {
        bail!("connection closed after {got} of {length} body bytes");
    }
    Ok(())
}
