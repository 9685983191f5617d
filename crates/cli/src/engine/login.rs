//! `login` and `logout`: check credentials against a registry, then keep or forget them in
//! the docker `config.json` (through its credential helper when one is configured).
//!
//! The check is docker's: `GET /v2/` with the credentials ([`Client::ping`]), through the
//! Basic or token flow the registry asks for. A token service refusing them, or a Basic
//! registry answering 401, means they are wrong; nothing is stored then.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use stencil::engine::{Engine, login_server};
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let server = login_server(Some("localhost:5000"))?;
//! engine.login(&server, "alice", "s3cret").await?;
//! # Ok(()) }
//! ```

use anyhow::{Context, Result, bail};
use stencil_registry::{Client, Credentials, DOCKER_HUB_AUTH_KEY, DockerConfig};

use super::{Engine, docker_config_path};

/// The registry name Docker Hub is known by in references.
const DOCKER_HUB: &str = "docker.io";

/// The registry a `login`/`logout` argument names: a host as in references
/// (`localhost:5000`), `docker.io` for Docker Hub (also for no argument, docker's
/// `https://index.docker.io/v1/` key and its other host names).
pub fn login_server(argument: Option<&str>) -> Result<String> {
    let Some(text) = argument.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(DOCKER_HUB.to_owned());
    };
    if text == DOCKER_HUB_AUTH_KEY {
        return Ok(DOCKER_HUB.to_owned());
    }
    let without_scheme = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        bail!(
            "invalid registry {text:?}: give a host with an optional port, like ghcr.io or localhost:5000"
        );
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    })
}

/// How `logout` and messages name a server: Docker Hub by docker's key, others by host.
pub fn server_key(server: &str) -> &str {
    if server == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY
    } else {
        server
    }
}

impl Engine {
    /// Checks `username`/`password` against `server` (see [`login_server`]) and stores them
    /// in the docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub async fn login(&self, server: &str, username: &str, password: &str) -> Result<()> {
        if username.is_empty() {
            bail!("login to {server}: the user name is empty (give -u USER)");
        }
        if password.is_empty() {
            bail!(
                "login to {server}: the password is empty (give -p, --password-stdin or type it)"
            );
        }
        let client = Client::builder()
            .config(self.registries_config()?)
            // Exactly the credentials being checked, whatever the config file holds.
            .credentials(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .user_agent(concat!("stencil/", env!("CARGO_PKG_VERSION")))
            .build()?;
        match client.ping(server).await {
            Ok(()) => {}
            Err(stencil_registry::Error::Unauthorized { url, .. }) => bail!(
                "login to {server} failed: {url} refused the credentials of user {username:?}; check the user name and password"
            ),
            Err(error) => {
                return Err(anyhow::Error::from(error))
                    .with_context(|| format!("login to {server} failed"));
            }
        }
        let file = DockerConfig::new(docker_config_path());
        file.store(server, username, password)
            .with_context(|| format!("cannot store the credentials for {server}"))?;
        Ok(())
    }

    /// Forgets the credentials of `server`; whether there were any.
    pub fn logout(&self, server: &str) -> Result<bool> {
        let file = DockerConfig::new(docker_config_path());
        file.erase(server)
            .with_context(|| format!("cannot remove the credentials for {server}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_named_as_in_references() {
        let table: &[(Option<&str>, Result<&str, &str>)] = &[
            (None, Ok("docker.io")),
            (Some(""), Ok("docker.io")),
            (Some("https://index.docker.io/v1/"), Ok("docker.io")),
            (Some("registry-1.docker.io"), Ok("docker.io")),
            (Some("localhost:5000"), Ok("localhost:5000")),
            (Some("http://127.0.0.1:5000/v2/"), Ok("127.0.0.1:5000")),
            (Some("GHCR.io"), Ok("ghcr.io")),
            (Some("bad host"), Err("invalid registry \"bad host\"")),
        ];
        for (argument, expected) in table {
            let got = login_server(*argument).map_err(|e| e.to_string());
            match (got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{argument:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{argument:?}: {got}"),
                (got, want) => panic!("{argument:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(server_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
    }
}
