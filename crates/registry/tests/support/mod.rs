//! Test support for the registry client: a real `docker-registry` started per test, a
//! byte-level fake HTTP server for faults a real registry cannot produce, a test clock,
//! and small images crafted in a local content store.
//!
//! Nothing here is a test by itself; each `tests/*.rs` file uses what it needs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stencil_layerstore::content::{ContentWriter, Ingester, LocalContent, sha256_digest};
use stencil_reference::Digest;
use stencil_registry::{Clock, Descriptor, SleepFuture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// The real registry.

/// A `docker-registry` process on 127.0.0.1, killed when dropped.
pub struct RealRegistry {
    child: Child,
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `docker-registry`, with htpasswd Basic auth when `basic_auth` is given. Returns
/// `None` (after printing why) when the program is missing, except under `CI=true`, where
/// a missing peer fails the test.
pub fn real_registry(basic_auth: Option<(&str, &str)>) -> Option<RealRegistry> {
    let binary = "/usr/bin/docker-registry";
    if !Path::new(binary).exists() {
        let reason = "docker-registry is not installed (apt-get install docker-registry)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}; CI must have it");
        }
        eprintln!("skipping: {reason}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let host = format!("127.0.0.1:{port}");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
        dir.path().join("data").display()
    );
    if let Some((user, password)) = basic_auth {
        let output = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd runs");
        assert!(output.status.success(), "htpasswd failed: {output:?}");
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, &output.stdout).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            file.display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config_path)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("docker-registry starts");
    let registry = RealRegistry { child, host, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&registry.host).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(registry.dir.path().join("registry.log"))
                .unwrap_or_default();
            panic!(
                "docker-registry did not listen on {} within 20 s; its log:\n{log}",
                registry.host
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(registry)
}

// ---------------------------------------------------------------------------------------
// The fake server.

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The address the request came to (`127.0.0.1:PORT`).
    pub server: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// What the fake server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Declare this many bytes but send only `body`, then close: a cut connection.
    pub declared_len: Option<usize>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            declared_len: None,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn cut_after(mut self, sent: usize) -> Reply {
        self.declared_len = Some(self.body.len());
        self.body.truncate(sent);
        self
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A tiny HTTP/1.1 server on a loopback address: one request per connection, answered by
/// a handler, every request logged. Byte-level so that it can cut a body half-way.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(
        ip: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let (log, handler) = (log.clone(), handler.clone());
                    tokio::spawn(async move {
                        let _ = serve_one(socket, addr, &log, &*handler).await;
                    });
                }
            })
        };
        FakeServer { addr, log, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve_one(
    mut socket: tokio::net::TcpStream,
    addr: SocketAddr,
    log: &Mutex<Vec<Seen>>,
    handler: &Handler,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let seen = Seen {
        method,
        target,
        headers,
        body,
        server: addr,
    };
    log.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", reply.status);
    let declared = reply.declared_len.unwrap_or(reply.body.len());
    out.push_str(&format!("content-length: {declared}\r\n"));
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    socket.write_all(out.as_bytes()).await?;
    if seen.method != "HEAD" {
        socket.write_all(&reply.body).await?;
    }
    socket.flush().await?;
    socket.shutdown().await
}

// ---------------------------------------------------------------------------------------
// The clock.

/// A clock whose sleeps return at once, are recorded, and advance its time.
#[derive(Debug, Clone)]
pub struct TestClock {
    start: Instant,
    offset: Arc<Mutex<Duration>>,
    pub slept: Arc<Mutex<Vec<Duration>>>,
}

impl TestClock {
    pub fn new() -> TestClock {
        TestClock {
            start: Instant::now(),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
            slept: Arc::new(Mutex::new(Vec::new())),
        }
    }
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().unwrap().clone()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap()
    }
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.slept.lock().unwrap().push(duration);
        self.advance(duration);
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------
// Images.

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A content store in a temporary directory.
pub fn store() -> (tempfile::TempDir, Arc<LocalContent>) {
    let dir = tempfile::tempdir().unwrap();
    let content = LocalContent::open(dir.path().join("content")).unwrap();
    (dir, Arc::new(content))
}

/// Commits `bytes` to `store` and returns its descriptor.
pub fn put(store: &LocalContent, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = sha256_digest(bytes);
    let mut writer = store.writer(&format!("test-{digest}")).unwrap();
    writer.write_all(bytes).unwrap();
    writer.commit(bytes.len() as u64, &digest).unwrap();
    Descriptor::new(media_type, digest, bytes.len() as u64)
}

/// A tar holding one file `name` with `content`, gzipped when `gzip`.
pub fn layer_tar(name: &str, content: &[u8], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, content).unwrap();
    let tar = builder.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).unwrap();
    encoder.finish().unwrap()
}

/// An image crafted in a store: its manifest descriptor and its blobs.
#[derive(Debug, Clone)]
pub struct Crafted {
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Crafts an image of `layer_sizes` layers (pseudo-random content of those sizes, so
/// compression does not shrink them) for `arch`, OCI or Docker schema 2.
pub fn craft_image(
    store: &LocalContent,
    docker: bool,
    arch: &str,
    layer_sizes: &[usize],
    seed: u8,
) -> Crafted {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let content = noise(*size, seed.wrapping_add(i as u8));
        let gzip = docker || i % 2 == 0;
        let tar = layer_tar(&format!("file-{seed}-{i}.bin"), &content, false);
        diff_ids.push(sha256_digest(&tar).to_string());
        let bytes = if gzip {
            layer_tar(&format!("file-{seed}-{i}.bin"), &content, true)
        } else {
            tar
        };
        let media_type = match (docker, gzip) {
            (true, _) => DOCKER_LAYER,
            (false, true) => OCI_LAYER_GZIP,
            (false, false) => OCI_LAYER,
        };
        layers.push(put(store, media_type, &bytes));
    }
    let config_json = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": format!("stencil test seed {seed}")}],
    });
    let config = put(
        store,
        if docker { DOCKER_CONFIG } else { OCI_CONFIG },
        config_json.to_string().as_bytes(),
    );
    let media_type = if docker {
        stencil_registry::DOCKER_MANIFEST
    } else {
        stencil_registry::OCI_MANIFEST
    };
    let manifest_json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest_json).unwrap();
    let manifest = put(store, media_type, &manifest_bytes);
    Crafted {
        manifest,
        manifest_bytes,
        config,
        layers,
    }
}

/// An OCI index (or, with `docker`, a Docker manifest list) over `images`, each tagged
/// with its architecture.
pub fn craft_index(
    store: &LocalContent,
    docker: bool,
    images: &[(&str, &Crafted)],
) -> (Descriptor, Vec<u8>) {
    let media_type = if docker {
        stencil_registry::DOCKER_MANIFEST_LIST
    } else {
        stencil_registry::OCI_INDEX
    };
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(arch, image)| {
            let mut entry = serde_json::to_value(&image.manifest).unwrap();
            entry["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            entry
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    (put(store, media_type, &bytes), bytes)
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The bytes of a committed blob.
pub fn blob(store: &LocalContent, digest: &Digest) -> Vec<u8> {
    use std::io::Read;
    use stencil_layerstore::content::Provider;
    let mut out = Vec::new();
    store.open(digest).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// A docker config.json in `dir` holding `user:password` for `host`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let path = dir.join("config.json");
    stencil_registry::DockerConfig::new(&path)
        .store(host, user, password)
        .unwrap();
    path
}
