//! One request to a registry, done right: authentication, redirects, retries, and turning
//! unwelcome statuses into [`Error`]s that name the URL.
//!
//! Redirects are followed here rather than by the HTTP client so that the `Authorization`
//! header is dropped as soon as a redirect leaves the registry's host (blob storage gets
//! pre-signed URLs, never registry credentials) and so that HTTPS never turns into plain
//! HTTP. Retries cover connection failures, 5xx and 429 (waiting as `Retry-After` says,
//! within [`crate::RetryPolicy::max_retry_after`]); the bodies of retried requests are
//! [`Bytes`], so they can be sent again. This module does not stream bodies into a store.
//!
//! ```text
//! GET https://r.example/v2/a/blobs/sha256:…  Authorization: Bearer …   → 307 Location: https://cdn.example/…
//! GET https://cdn.example/…                  (no Authorization)        → 200
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use super::Client;
use crate::config::is_loopback;
use crate::error::{Error, Result};

/// At most this many redirects are followed for one request.
const MAX_REDIRECTS: usize = 10;

/// Error bodies are read up to this size for their message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Makes a fresh streamed body for each attempt of a request.
pub(crate) type BodySource = Arc<dyn Fn() -> reqwest::Body + Send + Sync>;

/// A request body: bytes in memory, or a source that streams them anew for each attempt
/// (so that retries and redirects can resend a body that is never held whole).
#[derive(Clone)]
pub(crate) enum CallBody {
    Bytes(Bytes),
    Streamed(BodySource),
}

impl std::fmt::Debug for CallBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallBody::Bytes(bytes) => write!(f, "{} bytes", bytes.len()),
            CallBody::Streamed(_) => f.write_str("streamed"),
        }
    }
}

impl CallBody {
    fn to_body(&self) -> reqwest::Body {
        match self {
            CallBody::Bytes(bytes) => reqwest::Body::from(bytes.clone()),
            CallBody::Streamed(source) => source(),
        }
    }
}

/// One request as the client means it, re-sendable for retries.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<CallBody>,
    /// The registry host the credentials and tokens are for.
    pub host: String,
    /// Token scopes the request needs.
    pub scopes: Vec<String>,
}

impl Call {
    pub(crate) fn new(method: Method, url: Url, host: &str, scopes: Vec<String>) -> Call {
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            host: host.to_owned(),
            scopes,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Call {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Call {
        self.body = Some(CallBody::Bytes(body));
        self
    }

    /// A body streamed from `source`, called once per attempt.
    pub(crate) fn streamed_body(mut self, source: BodySource) -> Call {
        self.body = Some(CallBody::Streamed(source));
        self
    }
}

/// The final answer to a call, and the URL that gave it (after redirects).
#[derive(Debug)]
pub(crate) struct Answer {
    pub response: Response,
    pub url: Url,
}

impl Client {
    /// Sends `call` with retries; returns the last answer whatever its status.
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer> {
        let policy = self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_authenticated(call).await;
            let delay = match &result {
                Ok(answer) if is_retryable_status(answer.response.status()) => {
                    retry_after(answer.response.headers())
                        .map(|d| d.min(policy.max_retry_after))
                        .unwrap_or_else(|| policy.backoff(attempt))
                }
                Err(err) if err.is_retryable() => policy.backoff(attempt),
                _ => return result,
            };
            if attempt >= policy.attempts {
                return result;
            }
            tracing::debug!(url = %call.url, attempt, ?delay, "retrying");
            self.inner.clock.sleep(delay).await;
        }
    }

    async fn send_authenticated(&self, call: &Call) -> Result<Answer> {
        let sent = self.authorization(&call.host, &call.scopes).await?;
        let answer = self.send_following_redirects(call, sent.as_deref()).await?;
        if answer.response.status() != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let Some(challenge) = answer
            .response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Ok(answer);
        };
        match self
            .after_unauthorized(&call.host, &call.scopes, &challenge, sent.as_deref())
            .await?
        {
            Some(fresh) => self.send_following_redirects(call, Some(&fresh)).await,
            None => Ok(answer),
        }
    }

    async fn send_following_redirects(
        &self,
        call: &Call,
        authorization: Option<&str>,
    ) -> Result<Answer> {
        let mut url = call.url.clone();
        let mut method = call.method.clone();
        let mut body = call.body.clone();
        let mut on_origin = true;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(call.headers.clone());
            if let (true, Some(value)) = (on_origin, authorization) {
                request = request.header(header::AUTHORIZATION, value);
            }
            if let Some(body) = &body {
                request = request.body(body.to_body());
            }
            let response = request.send().await.map_err(|source| Error::Transport {
                url: url.to_string(),
                source,
            })?;
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (true, Some(location)) = (
                status.is_redirection() && status != StatusCode::NOT_MODIFIED,
                location,
            ) else {
                return Ok(Answer { response, url });
            };
            let next = url.join(&location).map_err(|e| Error::Protocol {
                url: url.to_string(),
                reason: format!("redirect to an invalid location {location:?}: {e}"),
            })?;
            if url.scheme() == "https"
                && next.scheme() != "https"
                && !next.host_str().is_some_and(is_loopback)
            {
                return Err(Error::Protocol {
                    url: url.to_string(),
                    reason: format!("refusing a redirect from https to {next}"),
                });
            }
            // Credentials are for the registry only: once a redirect leaves its host (or
            // port, or scheme), they are never sent again for this request.
            on_origin = on_origin && next.origin() == call.url.origin();
            if status == StatusCode::SEE_OTHER {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        Err(Error::Protocol {
            url: call.url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// `Retry-After` as a delay: seconds, or an HTTP date measured against the system time.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(mut response: Response, url: &Url, limit: u64) -> Result<Vec<u8>> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(Error::ManifestTooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| Error::Transport {
        url: url.to_string(),
        source,
    })? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::ManifestTooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Passes a successful answer through; turns any other into the matching [`Error`].
/// `what` names the object for 404s: a reference, repository or digest.
pub(crate) async fn expect_success(answer: Answer, what: &str) -> Result<Answer> {
    let status = answer.response.status();
    if status.is_success() {
        return Ok(answer);
    }
    let url = answer.url.to_string();
    // The registry as a user names it (with its port), for hints like `stencil login HOST`.
    let host = match (answer.url.host_str(), answer.url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let retry = retry_after(answer.response.headers());
    let body = read_limited(answer.response, &answer.url, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let (code, mut message) = match serde_json::from_slice::<Envelope>(&body) {
        Ok(envelope) if !envelope.errors.is_empty() => {
            let first = &envelope.errors[0];
            let mut text: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    let detail = e
                        .detail
                        .as_ref()
                        .filter(|d| !d.is_null())
                        .map(|d| format!(" ({d})"));
                    format!("{}{}", e.message.to_lowercase(), detail.unwrap_or_default())
                })
                .collect();
            text.dedup();
            (Some(first.code.clone()), text.join("; "))
        }
        _ => (None, String::new()),
    };
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    Err(match status.as_u16() {
        401 => Error::Unauthorized {
            url,
            registry: host,
            message,
        },
        403 => Error::Denied { url, message },
        404 => Error::NotFound {
            url,
            what: what.to_owned(),
            code,
        },
        429 => Error::TooManyRequests {
            url,
            retry_after: retry,
        },
        status => Error::Status {
            url,
            status,
            code,
            message,
        },
    })
}

/// The `rel="next"` target of a `Link` header, resolved against `base`.
pub(crate) fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                p.trim()
                    .replace(' ', "")
                    .trim_start_matches("rel=")
                    .trim_matches('"')
                    == "next"
            });
            if is_next {
                base.join(target).ok()
            } else {
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
        let check = |value: &str, want: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::LINK, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                next_link(&headers, &base).map(|u| u.to_string()),
                want.map(str::to_owned),
                "{value}"
            );
        };
        check(
            r#"</v2/_catalog?last=b&n=2>; rel="next""#,
            Some("http://127.0.0.1:5000/v2/_catalog?last=b&n=2"),
        );
        check(
            r#"<https://other.example/x>; rel=next"#,
            Some("https://other.example/x"),
        );
        check(r#"</v2/_catalog?last=b>; rel="prev""#, None);
        check("garbage", None);
    }

    #[test]
    fn retry_after_values() {
        let check = |value: &str, want: Option<Duration>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(retry_after(&headers), want, "{value}");
        };
        check("3", Some(Duration::from_secs(3)));
        check("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO));
        check("soon", None);
    }
}
