//! Harness of the registry server tests: a stencil server or a real `docker-registry` on a
//! free loopback port, a plain HTTP client whose replies keep status, headers and body,
//! peers that skip themselves with a reason (but fail under `CI=true`), and small OCI
//! objects to push.
//!
//! Nothing here is a test by itself; `tests/server_*.rs` use what they need.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stencil_layerstore::Store;
use stencil_layerstore::content::sha256_digest;
use stencil_registry::server::{Server, ServerConfig};
use tokio::sync::oneshot;

/// Whether the binary `name` is on PATH. When it is not, the test fails under `CI=true`
/// (CI installs every peer) and otherwise skips, printing why.
pub fn peer_available(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed but CI=true: install it (apt-get install {name})"
        );
        eprintln!("skipping: {name} is not installed (apt-get install {name})");
    }
    found
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}

/// A stencil registry server running in the test's runtime, stopped when dropped.
pub struct StencilServer {
    pub host: String,
    pub domain: String,
    pub store: Arc<Store>,
    pub root: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl StencilServer {
    /// Starts a server with `config` (its listen address should be loopback, port 0) on a
    /// fresh store.
    pub async fn start(config: ServerConfig) -> StencilServer {
        let root = tempfile::tempdir().expect("temporary store root");
        StencilServer::start_in(config, root).await
    }

    /// Starts a server on the store at `root`.
    pub async fn start_in(config: ServerConfig, root: tempfile::TempDir) -> StencilServer {
        let store = Arc::new(Store::open(root.path()).expect("open store"));
        let server = Server::bind(config, store.clone())
            .await
            .expect("bind server");
        let host = server.local_addr().to_string();
        let domain = server.served_domain().to_owned();
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let result = server
                .run(async {
                    let _ = receiver.await;
                })
                .await;
            if let Err(error) = result {
                eprintln!("stencil server stopped with an error: {error}");
            }
        });
        StencilServer {
            host,
            domain,
            store,
            root,
            shutdown: Some(sender),
        }
    }
}

impl Drop for StencilServer {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// A `docker-registry` process on 127.0.0.1, killed when dropped.
pub struct DockerRegistry {
    child: Child,
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DockerRegistry {
    /// Starts `docker-registry` with its own config (filesystem storage in a temporary
    /// directory, deletes enabled) plus `extra` YAML lines; `None` when it is not installed
    /// outside CI.
    pub fn start(extra: &str) -> Option<DockerRegistry> {
        if !peer_available("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary registry directory");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                storage.display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = DockerRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {} within 15 s",
                registry.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

/// A reply with everything a check may look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// Why reading the body failed, when it did.
    pub body_error: Option<String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The codes of an OCI error body, empty when the body is not one.
    pub fn error_codes(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|error| error["code"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The path and query of the `Location` header (registries may answer absolute URLs).
    pub fn location(&self) -> Option<String> {
        let location = self.header("location")?;
        Some(match location.find("://") {
            Some(scheme_end) => {
                let rest = &location[scheme_end + 3..];
                rest.find('/')
                    .map_or("/".to_owned(), |slash| rest[slash..].to_owned())
            }
            None => location.to_owned(),
        })
    }
}

/// A registry under test, reached over plain HTTP.
pub struct Target {
    pub name: &'static str,
    pub host: String,
    http: reqwest::Client,
}

impl Target {
    pub fn new(name: &'static str, host: &str) -> Target {
        // reqwest is built without a bundled crypto provider; plain HTTP never uses it, but
        // building a client requires one to be installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Target {
            name,
            host: host.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
        }
    }

    /// Sends one request; `path` may carry a query.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let url = format!("http://{}{path}", self.host);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("http method");
        let mut request = self.http.request(method.clone(), &url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A body that breaks off is a finding of the check, not a crash of the suite.
        let (body, body_error) = match response.bytes().await {
            Ok(body) => (body.to_vec(), None),
            Err(error) => (
                Vec::new(),
                Some(format!("{method} {url}: reading the body: {error}")),
            ),
        };
        Reply {
            status,
            headers,
            body,
            body_error,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new()).await
    }
}

/// `algorithm:hex` of `bytes` (sha256).
pub fn digest_of(bytes: &[u8]) -> String {
    sha256_digest(bytes).to_string()
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state & 0xff) as u8
        })
        .collect()
}

/// An image config naming `diff_ids`.
pub fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string()
    .into_bytes()
}

/// A descriptor value.
pub fn descriptor(media_type: &str, content: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest_of(content), "size": content.len() })
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An image manifest of `media_type` over `config` and `layers`, with extra top-level
/// fields merged in.
pub fn manifest_json(
    media_type: &str,
    config: (&str, &[u8]),
    layers: &[(&str, &[u8])],
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config.0, config.1),
        "layers": layers.iter().map(|(media_type, bytes)| descriptor(media_type, bytes)).collect::<Vec<_>>(),
    });
    if let (Some(target), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
    serde_json::to_vec(&manifest).expect("manifest json")
}

/// Lists the files under `dir`, for failure messages.
pub fn listing(dir: &Path) -> String {
    let mut lines = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if let Ok(entries) = std::fs::read_dir(&path) {
            for entry in entries.flatten() {
                let path = entry.path();
                lines.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
                if path.is_dir() {
                    pending.push(path);
                }
            }
        }
    }
    lines.sort();
    lines.join("\n")
}
