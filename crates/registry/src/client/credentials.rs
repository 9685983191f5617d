//! Credentials from the docker `config.json`, so that existing `docker login`s work.
//!
//! Three sources, in docker's order: `credHelpers[host]` (run `docker-credential-NAME
//! get`), `credsStore` (the same, for every host), then `auths[host].auth` (base64 of
//! `user:password`). Docker Hub is stored under `https://index.docker.io/v1/`. This module
//! reads and writes the file and runs helpers; it never sends anything over the network.
//!
//! ```
//! use stencil_registry::{CredentialSource, DockerConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("config.json");
//! let config = DockerConfig::new(&path);
//! config.store("localhost:5000", "alice", "s3cret").unwrap();
//! let found = config.credentials("localhost:5000").unwrap().unwrap();
//! assert_eq!((found.username.as_str(), found.password.as_str()), ("alice", "s3cret"));
//! assert!(config.credentials("ghcr.io").unwrap().is_none());
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The key docker uses for Docker Hub in `auths` and for credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password for one registry. A user name of `<token>`
/// ([`IDENTITY_TOKEN_USER`](crate::IDENTITY_TOKEN_USER)) marks the password as an OAuth2
/// identity token, as docker's credential helpers and `identitytoken` entries do.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in debug logs.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where the client gets credentials from: the docker config in production, anything in
/// tests.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The credentials for `registry` (a host as in references, `docker.io` for Docker
    /// Hub), or `None` to go anonymous.
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>>;
}

/// One set of credentials for every registry: for `login`, to check credentials before
/// storing them.
impl CredentialSource for Credentials {
    fn credentials(&self, _registry: &str) -> Result<Option<Credentials>> {
        Ok(Some(self.clone()))
    }
}

/// No credentials at all: every request is anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn credentials(&self, _registry: &str) -> Result<Option<Credentials>> {
        Ok(None)
    }
}

/// A docker `config.json` at an explicit path, with an optional directory to find
/// `docker-credential-*` helpers in (else `PATH`).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

impl DockerConfig {
    /// The config at `path` (usually `~/.docker/config.json`, or `$DOCKER_CONFIG/config.json`).
    pub fn new(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// Look for `docker-credential-NAME` in `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfig {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The file this config reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn config_error(&self, reason: impl Into<String>) -> Error {
        Error::Config {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn read_value(&self) -> Result<serde_json::Value> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| self.config_error(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
            Err(e) => Err(self.config_error(e.to_string())),
        }
    }

    fn read(&self) -> Result<ConfigFile> {
        serde_json::from_value(self.read_value()?).map_err(|e| self.config_error(e.to_string()))
    }

    /// Stores credentials for `registry` (what `login` does): through the registry's
    /// credential helper (`credHelpers`, else `credsStore`) when one is configured, else as
    /// base64 `user:password` in `auths`. Every other field of the file is kept; the file
    /// is replaced atomically and is readable by its owner only.
    pub fn store(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let mut value = self.read_value()?;
        let helper = Self::helper_for(&self.read()?, registry);
        let entry = match &helper {
            // With a helper, the secret goes to the helper and `auths` only records the
            // registry, as docker does.
            Some(helper) => {
                let input = serde_json::json!({
                    "ServerURL": auth_key(registry), "Username": username, "Secret": password,
                });
                self.run_helper(helper, "store", registry, input.to_string().as_bytes())?
                    .ok_or_else(|| Error::CredentialHelper {
                        helper: helper.clone(),
                        registry: registry.to_owned(),
                        reason: "it refused to store the credentials".into(),
                    })?;
                serde_json::json!({})
            }
            None => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                serde_json::json!({ "auth": encoded })
            }
        };
        let root = value
            .as_object_mut()
            .ok_or_else(|| self.config_error("the top level is not a JSON object"))?;
        let auths = root
            .entry("auths")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or_else(|| self.config_error("`auths` is not a JSON object"))?;
        auths.insert(auth_key(registry), entry);
        self.write_value(&value)
    }

    /// Removes the credentials of `registry` (what `logout` does): from its helper when
    /// one is configured, and its `auths` entry. Returns whether there were any.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let mut erased = false;
        if let Some(helper) = Self::helper_for(&self.read()?, registry) {
            erased = self
                .run_helper(&helper, "erase", registry, auth_key(registry).as_bytes())?
                .is_some();
        }
        let mut value = self.read_value()?;
        let removed = value
            .get_mut("auths")
            .and_then(|a| a.as_object_mut())
            .and_then(|a| a.remove(&auth_key(registry)))
            .is_some();
        if removed {
            self.write_value(&value)?;
        }
        Ok(erased || removed)
    }

    fn write_value(&self, value: &serde_json::Value) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.config_error(e.to_string()))?;
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let text =
            serde_json::to_vec_pretty(value).map_err(|e| self.config_error(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.config_error(e.to_string())
        })
    }

    /// Runs `docker-credential-HELPER ACTION` with `input` on stdin. `Ok(None)` when the
    /// helper says it has no such credentials.
    fn run_helper(
        &self,
        helper: &str,
        action: &str,
        registry: &str,
        input: &[u8],
    ) -> Result<Option<String>> {
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let fail = |reason: String| Error::CredentialHelper {
            helper: helper.to_owned(),
            registry: registry.to_owned(),
            reason,
        };
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {} {action}: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
        }
        let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            // Helpers report a missing entry on stdout with a failing status.
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(
                format!("{} {}", stdout.trim(), stderr.trim())
                    .trim()
                    .to_owned(),
            ));
        }
        Ok(Some(stdout))
    }

    fn helper_get(&self, helper: &str, registry: &str) -> Result<Option<Credentials>> {
        let Some(stdout) =
            self.run_helper(helper, "get", registry, auth_key(registry).as_bytes())?
        else {
            return Ok(None);
        };
        let answer: HelperAnswer =
            serde_json::from_str(&stdout).map_err(|e| Error::CredentialHelper {
                helper: helper.to_owned(),
                registry: registry.to_owned(),
                reason: format!("unreadable answer: {e}"),
            })?;
        Ok(Some(Credentials {
            username: answer.username,
            password: answer.secret,
        }))
    }

    /// The helper configured for `registry` (`credHelpers`, else `credsStore`), if any.
    fn helper_for(file: &ConfigFile, registry: &str) -> Option<String> {
        let key = auth_key(registry);
        let wanted_host = key_host(&key);
        file.cred_helpers
            .iter()
            .find(|(k, _)| key_host(k) == wanted_host)
            .map(|(_, v)| v.clone())
            .or_else(|| file.creds_store.clone())
            .filter(|helper| !helper.is_empty())
    }
}

/// The key under which docker stores `registry`.
fn auth_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_AUTH_KEY.to_owned(),
        other => other.to_owned(),
    }
}

/// The host part of an `auths` key, which may be a bare host or a URL.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

impl CredentialSource for DockerConfig {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let file = self.read()?;
        let key = auth_key(registry);
        let wanted_host = key_host(&key);
        if let Some(helper) = file
            .cred_helpers
            .iter()
            .find(|(k, _)| key_host(k) == wanted_host)
            .map(|(_, v)| v)
        {
            return self.helper_get(helper, registry);
        }
        if let Some(store) = file.creds_store.as_deref().filter(|s| !s.is_empty())
            && let Some(found) = self.helper_get(store, registry)?
        {
            return Ok(Some(found));
        }
        let Some(entry) = file
            .auths
            .iter()
            .find(|(k, _)| key_host(k) == wanted_host)
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                username: super::auth::IDENTITY_TOKEN_USER.to_owned(),
                password: token.to_owned(),
            }));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| self.config_error(format!("auths.{key}.auth is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| self.config_error(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) = text.split_once(':').ok_or_else(|| {
                self.config_error(format!("auths.{key}.auth is not user:password"))
            })?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            })),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sources_in_docker_order() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\ncase \"$1\" in store) cat > \"$(dirname \"$0\")/stored\"; exit 0 ;; erase) touch \"$(dirname \"$0\")/erased\"; exit 0 ;; esac\nread server\ncase \"$server\" in\n  helped.example) echo '{\"ServerURL\":\"x\",\"Username\":\"h\",\"Secret\":\"hs\"}' ;;\n  broken.example) echo boom >&2; exit 1 ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &path,
            serde_json::json!({
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
                    "http://plain.example/v2/": {"auth": b64("p:pp")},
                    "helped.example": {"auth": b64("ignored:ignored")},
                    "bad.example": {"auth": "%%%"},
                },
                "credHelpers": {"helped.example": "fake", "broken.example": "fake", "missing.example": "nosuch"},
                "currentContext": "kept",
            })
            .to_string(),
        )
        .unwrap();
        let config = DockerConfig::new(&path).with_helper_dir(dir.path());
        let check =
            |registry: &str, want: std::result::Result<Option<(&str, &str)>, crate::ErrorKind>| {
                let got = config.credentials(registry);
                match (got, want) {
                    (Ok(got), Ok(want)) => assert_eq!(
                        got.as_ref()
                            .map(|c| (c.username.as_str(), c.password.as_str())),
                        want,
                        "{registry}"
                    ),
                    (Err(err), Err(kind)) => assert_eq!(err.kind(), kind, "{registry}: {err}"),
                    (got, want) => panic!("{registry}: got {got:?}, want {want:?}"),
                }
            };
        check("docker.io", Ok(Some(("hub", "hubpw"))));
        check("plain.example", Ok(Some(("p", "pp"))));
        check("helped.example", Ok(Some(("h", "hs"))));
        check("nowhere.example", Ok(None));
        check("broken.example", Err(crate::ErrorKind::CredentialHelper));
        check("missing.example", Err(crate::ErrorKind::CredentialHelper));
        check("bad.example", Err(crate::ErrorKind::Config));

        // A registry with a helper: login stores through it, logout erases through it.
        config.store("helped.example", "h", "hs").unwrap();
        let stored = std::fs::read_to_string(dir.path().join("stored")).unwrap();
        assert!(
            stored.contains(r#""Username":"h""#) && stored.contains(r#""Secret":"hs""#),
            "{stored}"
        );
        assert!(config.erase("helped.example").unwrap());
        assert!(dir.path().join("erased").exists());

        config.store("docker.io", "new", "newpw").unwrap();
        check("docker.io", Ok(Some(("new", "newpw"))));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("currentContext"), "other fields kept: {text}");
        assert!(config.erase("docker.io").unwrap());
        check("docker.io", Ok(None));
    }
}
