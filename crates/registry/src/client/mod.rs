//! The OCI Distribution client: one [`Client`] per process, shared by every pull and push.
//!
//! The client owns the HTTP transport, the registries configuration, the credential
//! source, the clock and the token cache; all four side effects are passed in through
//! [`ClientBuilder`], so tests can substitute each. It knows the protocol, not the store:
//! blobs go to and come from a [`BlobStore`], which the layerstore implements.
//!
//! Sub-modules, one idea each: `transport` (retries, redirects, status mapping), `auth`
//! (challenges and tokens), `pull`, `push`, `discovery` (tags, catalog, search),
//! `manifest` (the minimal image model), `ingest` (network-to-store pipeline), `credentials` (docker `config.json`), `store`
//! (what the client needs from a content store), `progress`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stencil_registry::Error> {
//! use stencil_registry::Client;
//! use stencil_reference::Reference;
//!
//! let client = Client::builder().build()?;
//! let reference = Reference::parse("localhost:5000/busybox:latest").unwrap();
//! let resolved = client.resolve(&reference).await?;
//! println!("{} is {}", reference, resolved.descriptor.digest);
//! # Ok(()) }
//! ```

pub(crate) mod auth;
pub(crate) mod credentials;
pub(crate) mod discovery;
pub(crate) mod ingest;
pub(crate) mod manifest;
pub(crate) mod progress;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod store;
pub(crate) mod tap;
pub(crate) mod transport;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stencil_reference::Reference;

use crate::config::{RegistriesConfig, Timeouts};
use crate::error::{Error, Result};
use credentials::{Anonymous, CredentialSource};

/// A boxed future, as [`Clock::sleep`] returns.
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Time as the client sees it: when tokens expire and how long to wait before a retry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> SleepFuture;
}

/// The real clock: `Instant::now` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// How requests are retried after connection failures, interrupted bodies, 5xx and 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub attempts: u32,
    /// The first backoff; it doubles after each failure.
    pub base_delay: Duration,
    /// The longest backoff between two attempts.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; longer waits are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1`, after `attempt` failures (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Builds a [`Client`]; every side effect has a production default.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
    config: RegistriesConfig,
    credentials: Option<Arc<dyn CredentialSource>>,
    clock: Option<Arc<dyn Clock>>,
    retry: RetryPolicy,
    user_agent: Option<String>,
}

impl ClientBuilder {
    /// Uses this HTTP client. It must not follow redirects itself
    /// (`reqwest::redirect::Policy::none()`): the client follows them, so that it can drop
    /// the `Authorization` header when a redirect leaves the registry's host.
    pub fn http(mut self, http: reqwest::Client) -> ClientBuilder {
        self.http = Some(http);
        self
    }

    /// Uses these registries settings (mirrors, insecure hosts, concurrency).
    pub fn config(mut self, config: RegistriesConfig) -> ClientBuilder {
        self.config = config;
        self
    }

    /// Takes credentials from `source` (default: none, anonymous).
    pub fn credentials(mut self, source: impl CredentialSource + 'static) -> ClientBuilder {
        self.credentials = Some(Arc::new(source));
        self
    }

    /// Uses `clock` for token expiry and retry waits (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> ClientBuilder {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Retries as `policy` says (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> ClientBuilder {
        self.retry = policy;
        self
    }

    /// Sends this `User-Agent` (default: `stencil/VERSION`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> ClientBuilder {
        self.user_agent = Some(agent.into());
        self
    }

    /// Builds the client. Without an explicit HTTP client this builds one with rustls on
    /// the `ring` provider and the system's trust roots.
    pub fn build(self) -> Result<Client> {
        let agent = self
            .user_agent
            .unwrap_or_else(|| format!("stencil/{}", env!("CARGO_PKG_VERSION")));
        let http = match self.http {
            Some(http) => http,
            None => default_http_client(&agent, &self.config.timeouts)?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                config: self.config,
                credentials: self.credentials.unwrap_or_else(|| Arc::new(Anonymous)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                retry: self.retry,
                auth: auth::AuthCache::default(),
            }),
        })
    }
}

fn default_http_client(agent: &str, timeouts: &Timeouts) -> Result<reqwest::Client> {
    // reqwest is built without a bundled crypto provider (the default one needs cmake);
    // install ring as the process default unless the program already chose one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(agent)
        .connect_timeout(timeouts.connect())
        .read_timeout(timeouts.read())
        .build()
        .map_err(|source| Error::Transport {
            url: "(client setup)".into(),
            source,
        })
}

/// A registry client. Cheap to clone: clones share the connection pool and token cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    config: RegistriesConfig,
    credentials: Arc<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    auth: auth::AuthCache,
}

impl Client {
    /// A builder with production defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The registries settings in use.
    pub fn config(&self) -> &RegistriesConfig {
        &self.inner.config
    }
}

/// Where one repository is served: an API host (a mirror or the origin) and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repository {
    /// `host[:port]` of the API: `registry-1.docker.io`, `localhost:5000`, a mirror.
    pub host: String,
    /// `library/ubuntu`.
    pub path: String,
    /// The reference as the user wrote it, normalised, for messages.
    pub display: String,
}

impl Repository {
    fn origin(reference: &Reference) -> Repository {
        Repository {
            host: reference.registry_endpoint().to_owned(),
            path: reference.path().to_owned(),
            display: reference.to_string(),
        }
    }

    /// The origin last, after the configured mirrors (mirrors serve pulls only).
    pub(crate) fn candidates(client: &Client, reference: &Reference) -> Vec<Repository> {
        let origin = Repository::origin(reference);
        let mut list: Vec<Repository> = client
            .config()
            .settings(reference.domain())
            .mirrors
            .into_iter()
            .map(|host| Repository {
                host,
                ..origin.clone()
            })
            .collect();
        list.push(origin);
        list
    }

    /// The `/v2/<path>/<rest>` URL on this repository's host.
    pub(crate) fn url(&self, client: &Client, rest: &str) -> Result<reqwest::Url> {
        client.api_url(&self.host, &format!("/v2/{}/{rest}", self.path))
    }

    /// The token scope for `actions` (`pull` or `pull,push`) on this repository.
    pub(crate) fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{actions}", self.path)
    }
}

impl Client {
    /// `scheme://host/path`, with the scheme the configuration allows for `host`.
    pub(crate) fn api_url(&self, host: &str, path_and_query: &str) -> Result<reqwest::Url> {
        let scheme = self.inner.config.scheme(host);
        let text = format!("{scheme}://{host}{path_and_query}");
        reqwest::Url::parse(&text).map_err(|e| Error::InvalidName {
            name: text.clone(),
            reason: e.to_string(),
        })
    }

    /// The concurrency configured for the registry of `reference`.
    pub(crate) fn concurrency_for(&self, reference: &Reference) -> usize {
        self.inner
            .config
            .settings(reference.domain())
            .concurrency
            .max(1)
    }
}

/// The API host for a registry name as users write it (`docker.io` → Docker Hub's API).
pub(crate) fn api_host(registry: &str) -> Result<String> {
    let name = registry.trim().trim_end_matches('/');
    if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
        return Err(Error::InvalidName {
            name: registry.to_owned(),
            reason:
                "a registry is a host name with an optional port, like ghcr.io or localhost:5000"
                    .into(),
        });
    }
    Ok(match name {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "registry-1.docker.io".into(),
        other => other.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_insecure_hosts() {
        let config =
            RegistriesConfig::parse("[[registry]]\nhost = \"build.lan:5000\"\ninsecure = true\n")
                .unwrap();
        let client = Client::builder().config(config).build().unwrap();
        let check = |host: &str, want: &str| {
            let url = client.api_url(host, "/v2/").unwrap();
            assert_eq!(url.as_str(), want, "{host}");
        };
        check("ghcr.io", "https://ghcr.io/v2/");
        check("registry-1.docker.io", "https://registry-1.docker.io/v2/");
        check("10.1.2.3:5000", "https://10.1.2.3:5000/v2/");
        check("build.lan:5000", "http://build.lan:5000/v2/");
        check("localhost:5000", "http://localhost:5000/v2/");
        check("127.0.0.1:5000", "http://127.0.0.1:5000/v2/");
        check("[::1]:5000", "http://[::1]:5000/v2/");
        let err = client.api_url("bad host", "/v2/").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidName);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
        };
        let got: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(200), Duration::from_millis(500));
    }
}
