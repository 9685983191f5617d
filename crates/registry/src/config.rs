//! Per-registry settings: mirrors, insecure (plain HTTP) registries and concurrency.
//!
//! The registries file is TOML with one `[[registry]]` table per host. It decides only
//! *where* requests go and how many run at once; credentials live in the docker
//! `config.json` (see [`crate::DockerConfig`]). Plain HTTP is used only for loopback
//! hosts (`localhost`, `127.0.0.0/8`, `::1`) and hosts marked `insecure`; nothing ever
//! falls back from HTTPS to HTTP on its own.
//!
//! ```
//! use stencil_registry::RegistriesConfig;
//!
//! let config = RegistriesConfig::parse(r#"
//!     [[registry]]
//!     host = "docker.io"
//!     mirrors = ["mirror.example:5000"]
//!     concurrency = 6
//!
//!     [[registry]]
//!     host = "build.lan:5000"
//!     insecure = true
//! "#).unwrap();
//! assert_eq!(config.settings("docker.io").concurrency, 6);
//! assert_eq!(config.settings("docker.io").mirrors, ["mirror.example:5000"]);
//! assert_eq!(config.scheme("build.lan:5000"), "http");
//! assert_eq!(config.scheme("127.0.0.1:5000"), "http");
//! assert_eq!(config.scheme("ghcr.io"), "https");
//! ```

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How many blobs are fetched or pushed at once when a registry has no setting.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The parsed registries file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// One entry per registry host.
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistrySettings>,
    /// How long the client waits on the network, for every host.
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// How long the client waits on the network (the `[timeouts]` table, in seconds;
/// fractions allowed). A registry that stops sending fails the request after `read`
/// seconds of silence instead of hanging the pull.
///
/// ```
/// use std::time::Duration;
/// use stencil_registry::RegistriesConfig;
///
/// let config = RegistriesConfig::parse("[timeouts]\nread = 2.5\n").unwrap();
/// assert_eq!(config.timeouts.read(), Duration::from_millis(2500));
/// assert_eq!(config.timeouts.connect(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Seconds to establish a connection (default 30).
    #[serde(default = "default_connect_timeout")]
    pub connect: f64,
    /// Seconds a response may send nothing, headers or body (default 120).
    #[serde(default = "default_read_timeout")]
    pub read: f64,
}

fn default_connect_timeout() -> f64 {
    30.0
}

fn default_read_timeout() -> f64 {
    120.0
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: default_connect_timeout(),
            read: default_read_timeout(),
        }
    }
}

impl Timeouts {
    /// The connect timeout.
    pub fn connect(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.connect)
    }

    /// The read timeout.
    pub fn read(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.read)
    }
}

/// The settings of one registry host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// The host as in references (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub host: String,
    /// Talk plain HTTP to this host.
    #[serde(default)]
    pub insecure: bool,
    /// Hosts tried in order before the origin for pulls; the origin is the fallback.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// How many blobs to transfer at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}

impl RegistrySettings {
    fn defaults(host: &str) -> RegistrySettings {
        RegistrySettings {
            host: host.to_owned(),
            insecure: false,
            mirrors: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl RegistriesConfig {
    /// Parses the TOML text of a registries file.
    pub fn parse(text: &str) -> Result<RegistriesConfig> {
        Self::parse_at(text, Path::new("<registries config>"))
    }

    fn parse_at(text: &str, path: &Path) -> Result<RegistriesConfig> {
        let config: RegistriesConfig = toml::from_str(text).map_err(|err| Error::Config {
            path: path.to_owned(),
            reason: err.to_string().trim().to_owned(),
        })?;
        for (name, value) in [
            ("connect", config.timeouts.connect),
            ("read", config.timeouts.read),
        ] {
            // Duration::from_secs_f64 panics on these; refuse them here with a clear word.
            if !(value.is_finite() && value > 0.0 && value < 1e9) {
                return Err(Error::Config {
                    path: path.to_owned(),
                    reason: format!("timeouts.{name} = {value} is not a number of seconds above 0"),
                });
            }
        }
        if let Some(bad) = config.registries.iter().find(|r| r.concurrency == 0) {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!("registry {} has concurrency 0; use 1 or more", bad.host),
            });
        }
        Ok(config)
    }

    /// Reads a registries file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_at(&text, path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(Error::Config {
                path: path.to_owned(),
                reason: err.to_string(),
            }),
        }
    }

    /// The settings for `host`, or the defaults when it is not listed. `docker.io` and its
    /// API host `registry-1.docker.io` share one entry.
    pub fn settings(&self, host: &str) -> RegistrySettings {
        let wanted = canonical_host(host);
        self.registries
            .iter()
            .find(|r| canonical_host(&r.host) == wanted)
            .cloned()
            .unwrap_or_else(|| RegistrySettings::defaults(host))
    }

    /// `http` for loopback hosts and hosts marked insecure, `https` otherwise.
    pub fn scheme(&self, host: &str) -> &'static str {
        if is_loopback(host) || self.settings(host).insecure {
            "http"
        } else {
            "https"
        }
    }
}

fn canonical_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// Whether `host` (with an optional `:port`) names this machine: `localhost`, an address in
/// `127.0.0.0/8` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() > 1 {
        host
    } else {
        host.split(':').next().unwrap_or(host)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        let check = |host: &str, want: bool| assert_eq!(is_loopback(host), want, "{host}");
        for (host, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1", true),
            ("127.1.2.3:8080", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
            ("docker.io", false),
        ] {
            check(host, want);
        }
    }

    #[test]
    fn bad_files_are_config_errors() {
        let check = |text: &str| {
            let err = RegistriesConfig::parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{text}: {err}");
        };
        check("[[registry]]\nhost = 'a'\nconcurrency = 0\n");
        check("[[registry]]\nhost = 'a'\nmirror = ['b']\n");
        check("[[registry]\n");
    }
}
