//! Registries the bench starts on loopback: CNCF `docker-registry` and `stencil registry
//! serve`. Each binds 127.0.0.1 on a free port and is killed and reaped when dropped.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A registry process on loopback.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its stdout and stderr go (docker-registry's access log).
    pub log: PathBuf,
}

impl Server {
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id (for its peak memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `docker-registry` storing under `storage`, logging to `log`; with `access_log` every
    /// request is a line of the log (for counting requests), else only errors are logged.
    pub fn docker_registry(
        storage: &Path,
        log: &Path,
        port: u16,
        access_log: bool,
    ) -> Result<Server> {
        std::fs::create_dir_all(storage)?;
        let config = storage.with_extension("yml");
        let logging = if access_log {
            "log:\n  level: info\n"
        } else {
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n{logging}storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&config);
        Server::spawn(command, port, log)
    }

    /// `stencil --root ROOT registry serve` on `port`, request log off (warn level).
    pub fn stencil(binary: &Path, root: &Path, log: &Path, port: u16) -> Result<Server> {
        let mut command = Command::new(binary);
        command
            .arg("--root")
            .arg(root)
            .args(["--log-level", "warn", "registry", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"));
        Server::spawn(command, port, log)
    }

    fn spawn(mut command: Command, port: u16, log: &Path) -> Result<Server> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let mut server = Server {
            child,
            port,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                bail!("{:?} exited with {status}:\n{text}", command.get_program());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on 127.0.0.1:{port} after 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.port = port;
        Ok(server)
    }

    /// Length of the log so far (to count what a command adds to it).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The log lines written since offset `from`.
    pub fn log_since(&self, from: u64) -> String {
        // The access log is written as requests finish; give the last one a moment.
        std::thread::sleep(Duration::from_millis(300));
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(0).min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        super::load::rss_mib(self.pid(), "VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
