//! Registry authentication: `WWW-Authenticate` challenges, Basic credentials and the
//! Bearer token flow, with tokens cached per registry and scope until they expire.
//!
//! The first request to a host goes out anonymous; a 401 names the scheme. For Basic the
//! stored credentials are sent; for Bearer the client asks the challenge's `realm` for a
//! token covering the request's scope (`repository:library/ubuntu:pull`), sending the
//! credentials (if any) with Basic, and caches it for `expires_in` seconds. Once a host's
//! challenge is known, later requests authenticate up front. This module does not decide
//! which scope a request needs; the caller says.
//!
//! ```text
//! GET /v2/library/ubuntu/manifests/latest            → 401
//!   WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example"
//! GET https://auth.example/token?service=registry.example&scope=repository:library/ubuntu:pull
//!                                                    → {"token":"…","expires_in":300}
//! GET /v2/library/ubuntu/manifests/latest  Authorization: Bearer …   → 200
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::Client;
use super::credentials::Credentials;
use crate::config::is_loopback;
use crate::error::{Error, Result};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Where tokens are asked for.
        realm: String,
        /// The service the token is for, when named.
        service: Option<String>,
        /// The scope the registry asks for, when named.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: a scheme, then `key="value"` pairs whose quoted
/// values may hold commas (scopes like `pull,push` do). `None` for schemes other than
/// Basic and Bearer, and for a Bearer challenge without a realm. Public so that the fuzz
/// targets can reach it; it never panics, whatever the header holds.
///
/// ```
/// use stencil_registry::{Challenge, parse_challenge};
///
/// let challenge = parse_challenge(r#"Bearer realm="https://auth.example/token",scope="repository:a:pull,push""#);
/// assert_eq!(challenge, Some(Challenge::Bearer {
///     realm: "https://auth.example/token".into(),
///     service: None,
///     scope: Some("repository:a:pull,push".into()),
/// }));
/// ```
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        _ => None,
    }
}

fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    expires: Instant,
}

/// What the client remembers between requests: each host's challenge and the tokens issued
/// for each (host, scope).
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The user name that marks a password as an OAuth2 identity (refresh) token, as docker's
/// credential helpers spell it.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Tokens without `expires_in` live 60 seconds (the token specification's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

fn basic_header(credentials: &Credentials) -> String {
    let pair = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl Client {
    fn lookup_credentials(&self, host: &str) -> Result<Option<Credentials>> {
        self.inner.credentials.credentials(host)
    }

    /// The `Authorization` value to send up front to `host` for `scopes`, when the host's
    /// challenge is already known.
    pub(crate) async fn authorization(
        &self,
        host: &str,
        scopes: &[String],
    ) -> Result<Option<String>> {
        let challenge = self
            .inner
            .auth
            .challenges
            .lock()
            .ok()
            .and_then(|c| c.get(host).cloned());
        match challenge {
            None => Ok(None),
            Some(challenge) => self.answer_challenge(host, scopes, &challenge, false).await,
        }
    }

    /// Records the challenge of a 401 and returns the header to retry with, or `None` when
    /// there is nothing new to try (no credentials for Basic, the same token again).
    pub(crate) async fn after_unauthorized(
        &self,
        host: &str,
        scopes: &[String],
        header: &str,
        sent: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(challenge) = parse_challenge(header) else {
            return Ok(None);
        };
        if let Ok(mut challenges) = self.inner.auth.challenges.lock() {
            challenges.insert(host.to_owned(), challenge.clone());
        }
        let fresh = self
            .answer_challenge(host, scopes, &challenge, true)
            .await?;
        Ok(fresh.filter(|f| Some(f.as_str()) != sent))
    }

    async fn answer_challenge(
        &self,
        host: &str,
        scopes: &[String],
        challenge: &Challenge,
        force_new: bool,
    ) -> Result<Option<String>> {
        match challenge {
            Challenge::Basic => Ok(self.lookup_credentials(host)?.as_ref().map(basic_header)),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut scopes: Vec<String> = scopes.to_vec();
                if scopes.is_empty() {
                    scopes.extend(scope.iter().flat_map(|s| s.split(' ')).map(str::to_owned));
                }
                let key = (host.to_owned(), scopes.join(" "));
                let now = self.inner.clock.now();
                if !force_new {
                    let cached = self
                        .inner
                        .auth
                        .tokens
                        .lock()
                        .ok()
                        .and_then(|t| t.get(&key).cloned());
                    if let Some(token) = cached.filter(|t| t.expires > now) {
                        return Ok(Some(format!("Bearer {}", token.value)));
                    }
                }
                let token = self
                    .fetch_token(host, realm, service.as_deref(), &scopes)
                    .await?;
                if let Ok(mut tokens) = self.inner.auth.tokens.lock() {
                    tokens.insert(key, token.clone());
                }
                Ok(Some(format!("Bearer {}", token.value)))
            }
        }
    }

    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken> {
        let fail = |reason: String| Error::Token {
            url: realm.to_owned(),
            registry: host.to_owned(),
            reason,
        };
        let mut url = reqwest::Url::parse(realm).map_err(|e| fail(format!("bad realm: {e}")))?;
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let insecure_ok =
            is_loopback(&realm_host) || self.inner.config.settings(&realm_host).insecure;
        if url.scheme() != "https" && !(url.scheme() == "http" && insecure_ok) {
            return Err(fail(format!(
                "refusing to send credentials to {realm}: only https, or http on loopback and insecure hosts"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let credentials = self.lookup_credentials(host)?;
        // An identity token (docker's `identitytoken`, or a helper's `<token>` user) is an
        // OAuth2 refresh token: it is exchanged with a form POST, never sent as Basic.
        let refresh_form = credentials
            .as_ref()
            .filter(|c| c.username == IDENTITY_TOKEN_USER)
            .map(|c| {
                let mut form = reqwest::Url::parse("form:").expect("a constant URL parses");
                form.query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", &c.password)
                    .append_pair("client_id", "stencil")
                    .append_pair("service", service.unwrap_or_default())
                    .append_pair("scope", &scopes.join(" "));
                form.query().unwrap_or_default().to_owned()
            });
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let request = match (&refresh_form, &credentials) {
                (Some(form), _) => {
                    let mut post =
                        reqwest::Url::parse(realm).map_err(|e| fail(format!("bad realm: {e}")))?;
                    post.set_query(None);
                    self.inner
                        .http
                        .post(post)
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(form.clone())
                }
                (None, Some(credentials)) => self
                    .inner
                    .http
                    .get(url.clone())
                    .header(reqwest::header::AUTHORIZATION, basic_header(credentials)),
                (None, None) => self.inner.http.get(url.clone()),
            };
            let issued = self.inner.clock.now();
            let result = request.send().await;
            let retry = match &result {
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(e) => !e.is_builder(),
            };
            if retry && attempt < self.inner.retry.attempts {
                self.inner
                    .clock
                    .sleep(self.inner.retry.backoff(attempt))
                    .await;
                continue;
            }
            let response = result.map_err(|source| Error::Transport {
                url: url.to_string(),
                source,
            })?;
            break (response, issued);
        };
        let (response, issued) = response;
        let status = response.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Error::Unauthorized {
                url: url.to_string(),
                registry: host.to_owned(),
                message: "the token service refused the credentials".into(),
            });
        }
        if !status.is_success() {
            return Err(fail(format!("answered {status}")));
        }
        let body = super::transport::read_limited(response, &url, 1024 * 1024).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| fail(format!("unreadable token: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the answer holds no token".into()))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early so a token does not expire between check and use.
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        Ok(CachedToken {
            value,
            expires: issued + lifetime - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let check = |header: &str, want: Option<Challenge>| {
            assert_eq!(parse_challenge(header), want, "{header}")
        };
        let bearer = |realm: &str, service: Option<&str>, scope: Option<&str>| {
            Some(Challenge::Bearer {
                realm: realm.into(),
                service: service.map(Into::into),
                scope: scope.map(Into::into),
            })
        };
        check(r#"Basic realm="Registry Realm""#, Some(Challenge::Basic));
        check(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
            bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/ubuntu:pull,push"),
            ),
        );
        check(
            r#"bearer realm=http://127.0.0.1:1/t"#,
            bearer("http://127.0.0.1:1/t", None, None),
        );
        check(r#"Bearer service="x""#, None);
        check("Negotiate abc", None);
        check("", None);
    }
}
