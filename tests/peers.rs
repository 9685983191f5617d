//! Real peers for end-to-end tests: a loopback `docker-registry`, and images built with
//! `umoci` and copied with `skopeo`.
//!
//! Each server binds 127.0.0.1 on a free port, is started by the test and stopped (killed
//! and reaped) when its guard drops.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer;

/// A CNCF distribution registry on loopback, killed on drop.
pub struct DockerRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts `docker-registry` with its own config and storage; `None` when the peer is
    /// missing outside CI (under `CI=true` a missing peer fails the test).
    pub fn start() -> Option<DockerRegistry> {
        DockerRegistry::start_with(None)
    }

    /// Like [`DockerRegistry::start`], with Basic authentication: only `user` with
    /// `password` may pull or push (an htpasswd file made by `htpasswd -Bbn`).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Option<DockerRegistry> {
        DockerRegistry::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Option<DockerRegistry> {
        let binary = peer("docker-registry")?;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("data");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = login {
            let htpasswd = peer("htpasswd")?;
            let line = run_peer(Command::new(htpasswd).args(["-Bbn", user, password]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line.trim_end())
                .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stencil-e2e\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let registry = DockerRegistry {
            child,
            port,
            _dir: dir,
        };
        wait_for_port(port);
        Some(registry)
    }

    /// `127.0.0.1:PORT`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry stores blobs: `sha256/XX/HEX/data`, served as they are.
    pub fn blobs_dir(&self) -> PathBuf {
        self._dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 20 s");
}

/// Runs a peer command and panics with its output when it fails.
pub fn run_peer(command: &mut Command) -> String {
    let rendered = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {rendered}: {e}"));
    assert!(
        output.status.success(),
        "{rendered} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An OCI layout built with umoci: one layer per entry of `layers`, each a closure that
/// changes the rootfs. Returns the layout directory (the image is tagged `TAG`).
pub struct LayoutBuilder {
    dir: PathBuf,
    bundle: PathBuf,
    tag: String,
    umoci: PathBuf,
}

impl LayoutBuilder {
    /// A new empty image `tag` in a layout under `scratch`; `None` when umoci is missing.
    pub fn new(scratch: &Path, tag: &str) -> Option<LayoutBuilder> {
        let umoci = peer("umoci")?;
        let dir = scratch.join("layout");
        let image = format!("{}:{tag}", dir.display());
        run_peer(Command::new(&umoci).args(["init", "--layout"]).arg(&dir));
        run_peer(Command::new(&umoci).args(["new", "--image", &image]));
        Some(LayoutBuilder {
            dir,
            bundle: scratch.join("bundle"),
            tag: tag.to_owned(),
            umoci,
        })
    }

    fn image(&self) -> String {
        format!("{}:{}", self.dir.display(), self.tag)
    }

    /// Adds one layer holding what `change` does to the root filesystem.
    pub fn layer(self, change: impl FnOnce(&Path)) -> LayoutBuilder {
        let _ = std::fs::remove_dir_all(&self.bundle);
        run_peer(
            Command::new(&self.umoci)
                .args(["unpack", "--image", &self.image()])
                .arg(&self.bundle),
        );
        change(&self.bundle.join("rootfs"));
        run_peer(
            Command::new(&self.umoci)
                .args(["repack", "--image", &self.image()])
                .arg(&self.bundle),
        );
        self
    }

    /// Sets the default command.
    pub fn cmd(self, cmd: &str) -> LayoutBuilder {
        run_peer(Command::new(&self.umoci).args([
            "config",
            "--image",
            &self.image(),
            "--config.cmd",
            cmd,
        ]));
        self
    }

    /// The finished layout directory and tag, as skopeo names it (`oci:DIR:TAG`).
    pub fn skopeo_name(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

/// Copies an image with skopeo over plain HTTP.
pub fn skopeo_copy(from: &str, to: &str) -> Option<()> {
    let skopeo = peer("skopeo")?;
    run_peer(Command::new(skopeo).args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ]));
    Some(())
}
