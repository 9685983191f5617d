//! The HTTP surface: routing of `/v2/…`, `/v1/search` and `/token`, and one handler per
//! endpoint of the OCI distribution spec.
//!
//! Every request is parsed here exactly once: the repository path becomes a
//! [`RepositoryName`], digests become [`Digest`], tags become [`Tag`]; anything that does
//! not parse gets the spec's error code (`NAME_INVALID`, `DIGEST_INVALID`, `TAG_INVALID`)
//! before any file is touched. Every response carries
//! `Docker-Distribution-API-Version: registry/2.0`, and every request is logged once with
//! its method, path, status, size and duration.
//!
//! ```text
//! GET  /v2/                                  version check (and auth challenge)
//! GET  /v2/_catalog?n=&last=                 repositories, paged with Link
//! GET  /v2/NAME/tags/list?n=&last=           tags, paged with Link
//! GET|HEAD|PUT|DELETE /v2/NAME/manifests/REF REF is a tag or a digest
//! GET|HEAD|DELETE     /v2/NAME/blobs/DIGEST  Range supported
//! POST /v2/NAME/blobs/uploads/[?digest=|?mount=&from=]
//! GET|PATCH|PUT|DELETE /v2/NAME/blobs/uploads/ID[?digest=]
//! GET  /v2/NAME/referrers/DIGEST[?artifactType=]
//! GET  /v1/search?q=&n=                      Docker Hub style search
//! GET  /token?service=&scope=                token endpoint (token auth only)
//! POST /token (form: grant_type=password|refresh_token)  OAuth2 token endpoint
//! ```

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use stencil_layerstore::content::{ContentWriter, Ingester, Provider, sha256_digest};
use stencil_reference::{Digest, Tag};

use super::State;
use super::auth::{Action, Identity};
use super::body::{self, ResponseBody, StreamError};
use super::error::{ApiError, Code};
use super::index::{ManifestRecord, RepositoryIndex};
use super::manifest::{self, OCI_INDEX};
use super::name::RepositoryName;
use super::uploads::Session;

type Resp = Response<ResponseBody>;
type Handled = Result<Resp, ApiError>;

/// The most entries one page of tags or repositories holds.
const MAX_PAGE: usize = 1000;
/// Search results when `n` is not given, and the most allowed.
const SEARCH_DEFAULT: usize = 25;
const SEARCH_MAX: usize = 100;

/// Handles one request and logs it.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Resp {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = match route(&state, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    tracing::info!(
        %peer,
        %method,
        path,
        status = response.status().as_u16(),
        bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn error_response(error: &ApiError) -> Resp {
    let body = error.body();
    let mut builder = Response::builder()
        .status(error.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    for (name, value) in &error.headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(body::full(body))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// Builds a response; header values are produced here from validated data, so building
/// cannot fail in practice, but a failure still becomes a 500 rather than a panic.
fn respond(status: StatusCode, headers: &[(&str, String)], body: ResponseBody) -> Handled {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(body).map_err(ApiError::internal)
}

fn json_response(status: StatusCode, value: &Value, headers: &[(&str, String)]) -> Handled {
    let text = value.to_string();
    let mut all = vec![
        ("content-type", "application/json".to_owned()),
        ("content-length", text.len().to_string()),
    ];
    all.extend(headers.iter().cloned());
    respond(status, &all, body::full(text))
}

/// The endpoints, with the raw (not yet validated) parts of the path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    Search,
    Token,
}

/// Splits `rest` (after `/v2/`) as `NAME{marker}LAST` where LAST holds no '/'.
fn split_last<'a>(rest: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = rest.rfind(marker)?;
    let last = &rest[at + marker.len()..];
    (!last.is_empty() && !last.contains('/') && at > 0).then(|| (&rest[..at], last))
}

fn parse_route(path: &str) -> Option<Route<'_>> {
    if path == "/v1/search" {
        return Some(Route::Search);
    }
    if path == "/token" {
        return Some(Route::Token);
    }
    if path == "/v2" || path == "/v2/" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return (!name.is_empty()).then_some(Route::UploadStart(name));
    }
    if let Some((name, id)) = split_last(rest, "/blobs/uploads/") {
        return Some(Route::Upload(name, id));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return (!name.is_empty()).then_some(Route::Tags(name));
    }
    if let Some((name, reference)) = split_last(rest, "/manifests/") {
        return Some(Route::Manifest(name, reference));
    }
    if let Some((name, digest)) = split_last(rest, "/blobs/") {
        return Some(Route::Blob(name, digest));
    }
    if let Some((name, digest)) = split_last(rest, "/referrers/") {
        return Some(Route::Referrers(name, digest));
    }
    None
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding writes it).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters, decoded, in order.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// What one request carries that handlers need besides its body.
struct Call<'a> {
    state: &'a State,
    method: Method,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    host: String,
}

impl Call<'_> {
    async fn authorize(&self, needs: &[(&RepositoryName, Action)]) -> Result<Identity, ApiError> {
        self.state
            .auth
            .authorize(&self.headers, &self.host, self.state.tls, needs)
            .await
    }

    fn repository(&self, raw: &str) -> Result<RepositoryName, ApiError> {
        RepositoryName::parse(&self.state.domain, raw).ok_or_else(|| {
            ApiError::new(
                Code::NameInvalid,
                format!("invalid repository name {raw:?}: use lowercase path components such as team/app"),
            )
        })
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Runs `work` on the repository index off the async threads.
    async fn index<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn RepositoryIndex) -> super::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let index = self.state.index.clone();
        tokio::task::spawn_blocking(move || work(index.as_ref()))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }
}

fn unsupported_method(method: &Method) -> ApiError {
    ApiError::new(
        Code::Unsupported,
        format!("method {method} is not supported on this endpoint"),
    )
}

async fn route(state: &Arc<State>, request: Request<Incoming>) -> Handled {
    let (parts, incoming) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let call = Call {
        state,
        method: parts.method.clone(),
        query: query_pairs(parts.uri.query()),
        host: parts
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(&state.domain)
            .to_owned(),
        headers: parts.headers,
    };
    let Some(route) = parse_route(&path) else {
        return Err(
            ApiError::new(Code::Unsupported, format!("no endpoint at {path}"))
                .with_status(StatusCode::NOT_FOUND),
        );
    };
    let method = call.method.clone();
    match (route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => {
            call.authorize(&[]).await?;
            json_response(StatusCode::OK, &json!({}), &[])
        }
        (Route::Catalog, &Method::GET) => catalog(&call).await,
        (Route::Search, &Method::GET) => search(&call).await,
        (Route::Token, &Method::GET) => token(&call).await,
        (Route::Token, &Method::POST) => oauth_token(&call, incoming).await,
        (Route::Tags(name), &Method::GET) => tags(&call, name).await,
        (Route::Manifest(name, reference), &Method::GET | &Method::HEAD) => {
            get_manifest(&call, name, reference).await
        }
        (Route::Manifest(name, reference), &Method::PUT) => {
            put_manifest(&call, name, reference, incoming).await
        }
        (Route::Manifest(name, reference), &Method::DELETE) => {
            delete_manifest(&call, name, reference).await
        }
        (Route::Blob(name, digest), &Method::GET | &Method::HEAD) => {
            get_blob(&call, name, digest).await
        }
        (Route::Blob(name, digest), &Method::DELETE) => delete_blob(&call, name, digest).await,
        (Route::UploadStart(name), &Method::POST) => start_upload(&call, name, incoming).await,
        (Route::Upload(name, id), &Method::GET) => upload_status(&call, name, id).await,
        (Route::Upload(name, id), &Method::PATCH) => patch_upload(&call, name, id, incoming).await,
        (Route::Upload(name, id), &Method::PUT) => finish_upload(&call, name, id, incoming).await,
        (Route::Upload(name, id), &Method::DELETE) => cancel_upload(&call, name, id).await,
        (Route::Referrers(name, digest), &Method::GET) => referrers(&call, name, digest).await,
        (_, method) => Err(unsupported_method(method)),
    }
}

// ---------------------------------------------------------------------------------------
// Listings.

/// Parses `n`: absent means the largest page; larger values are clamped.
fn page_size(call: &Call<'_>, default: usize, max: usize) -> Result<usize, ApiError> {
    match query_value(&call.query, "n") {
        None | Some("") => Ok(default),
        Some(text) => text.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            ApiError::new(
                Code::PaginationNumberInvalid,
                format!("invalid page size n={text:?}"),
            )
        }),
    }
}

/// One page of sorted `items` after `last`, and the Link header for the next one.
fn page(
    items: Vec<String>,
    n: usize,
    last: Option<&str>,
    base: &str,
) -> (Vec<String>, Option<String>) {
    let start = last.map_or(0, |last| {
        items.partition_point(|item| item.as_str() <= last)
    });
    let rest = &items[start.min(items.len())..];
    let taken: Vec<String> = rest.iter().take(n).cloned().collect();
    let link = (rest.len() > taken.len() && !taken.is_empty()).then(|| {
        let last = taken.last().map(String::as_str).unwrap_or_default();
        format!("<{base}?n={n}&last={last}>; rel=\"next\"")
    });
    (taken, link)
}

async fn catalog(call: &Call<'_>) -> Handled {
    let identity = call.authorize(&[]).await?;
    let n = page_size(call, MAX_PAGE, MAX_PAGE)?;
    let domain = call.state.domain.clone();
    let mut repositories = call.index(move |index| index.repositories(&domain)).await?;
    repositories.retain(|repository| call.state.auth.may_list(&identity, repository));
    let (repositories, link) = page(
        repositories,
        n,
        query_value(&call.query, "last"),
        "/v2/_catalog",
    );
    let headers: Vec<(&str, String)> = link.into_iter().map(|link| ("link", link)).collect();
    json_response(
        StatusCode::OK,
        &json!({ "repositories": repositories }),
        &headers,
    )
}

async fn tags(call: &Call<'_>, name: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Pull)]).await?;
    let n = page_size(call, MAX_PAGE, MAX_PAGE)?;
    let lookup = repo.clone();
    let Some(tags) = call.index(move |index| index.tags(&lookup)).await? else {
        return Err(ApiError::new(
            Code::NameUnknown,
            format!("repository {repo} is not known to this registry"),
        ));
    };
    let base = format!("/v2/{repo}/tags/list");
    let (tags, link) = page(tags, n, query_value(&call.query, "last"), &base);
    let headers: Vec<(&str, String)> = link.into_iter().map(|link| ("link", link)).collect();
    json_response(
        StatusCode::OK,
        &json!({ "name": repo.as_str(), "tags": tags }),
        &headers,
    )
}

async fn search(call: &Call<'_>) -> Handled {
    let identity = call.authorize(&[]).await?;
    let n = page_size(call, SEARCH_DEFAULT, SEARCH_MAX)?;
    let query = query_value(&call.query, "q").unwrap_or("").to_lowercase();
    let domain = call.state.domain.clone();
    let repositories = call.index(move |index| index.repositories(&domain)).await?;
    let matching: Vec<&String> = repositories
        .iter()
        .filter(|repository| repository.contains(&query))
        .filter(|repository| call.state.auth.may_list(&identity, repository))
        .collect();
    let results: Vec<Value> = matching
        .iter()
        .take(n)
        .map(|name| {
            json!({ "name": name, "description": "", "star_count": 0, "is_official": false, "is_automated": false })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "query": query,
            "num_results": matching.len(),
            "num_pages": 1,
            "page": 1,
            "page_size": n,
            "results": results,
        }),
        &[],
    )
}

async fn token(call: &Call<'_>) -> Handled {
    let scopes: Vec<String> = call
        .query
        .iter()
        .filter(|(key, _)| key == "scope")
        .map(|(_, value)| value.clone())
        .collect();
    let body = call
        .state
        .auth
        .issue_token(&call.headers, &call.host, &call.state.domain, &scopes)
        .await?;
    respond(
        StatusCode::OK,
        &[
            ("content-type", "application/json".to_owned()),
            ("content-length", body.len().to_string()),
        ],
        body::full(body),
    )
}

/// Form bodies of `POST /token` are small; anything bigger is refused.
const MAX_TOKEN_FORM: usize = 64 * 1024;

async fn oauth_token(call: &Call<'_>, incoming: Incoming) -> Handled {
    let bytes = body::read_limited(incoming, MAX_TOKEN_FORM, call.state.body_idle_timeout)
        .await
        .map_err(|error| {
            ApiError::new(
                Code::Unsupported,
                format!("reading the token request: {error}"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?;
    let form = query_pairs(Some(&String::from_utf8_lossy(&bytes)));
    let body = call
        .state
        .auth
        .issue_oauth_token(&form, &call.state.domain)
        .await?;
    respond(
        StatusCode::OK,
        &[
            ("content-type", "application/json".to_owned()),
            ("content-length", body.len().to_string()),
        ],
        body::full(body),
    )
}

// ---------------------------------------------------------------------------------------
// Manifests.

/// A manifest reference from the URL: a tag or a digest.
enum ManifestRef {
    Tag(Tag),
    Digest(Digest),
}

fn manifest_ref(text: &str) -> Result<ManifestRef, ApiError> {
    let text = percent_decode(text);
    if text.contains(':') {
        Digest::parse(&text)
            .map(ManifestRef::Digest)
            .map_err(|error| {
                ApiError::new(
                    Code::DigestInvalid,
                    format!("invalid digest {text:?}: {error}"),
                )
            })
    } else {
        Tag::parse(&text).map(ManifestRef::Tag).map_err(|error| {
            ApiError::new(Code::TagInvalid, format!("invalid tag {text:?}: {error}"))
        })
    }
}

fn manifest_unknown(repo: &RepositoryName, reference: &str) -> ApiError {
    ApiError::new(
        Code::ManifestUnknown,
        format!("manifest {reference} is not in repository {repo}"),
    )
}

/// Whether the `Accept` header (absent, or listing `type`, `*/*` or `application/*`)
/// lets the client receive `media_type`.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut listed = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let item = manifest::bare_media_type(item);
            if item.is_empty() {
                continue;
            }
            listed = true;
            if item == media_type || item == "*/*" || item == "application/*" {
                return true;
            }
        }
    }
    !listed
}

async fn get_manifest(call: &Call<'_>, name: &str, reference: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Pull)]).await?;
    let reference = manifest_ref(reference)?;
    let lookup = repo.clone();
    let record = call
        .index(move |index| {
            let digest = match reference {
                ManifestRef::Digest(digest) => digest,
                ManifestRef::Tag(tag) => match index.resolve_tag(&lookup, &tag)? {
                    Some(digest) => digest,
                    None => return Ok(Err(tag.to_string())),
                },
            };
            Ok(index
                .manifest(&lookup, &digest)?
                .ok_or_else(|| digest.to_string()))
        })
        .await?
        .map_err(|reference| manifest_unknown(&repo, &reference))?;
    if !accepts(&call.headers, &record.media_type) {
        return Err(ApiError::new(
            Code::ManifestUnknown,
            format!(
                "manifest {} in repository {repo} is {}, which the Accept header does not list",
                record.digest, record.media_type
            ),
        ));
    }
    let headers = [
        ("content-type", record.media_type.clone()),
        ("content-length", record.size.to_string()),
        ("docker-content-digest", record.digest.to_string()),
        ("etag", format!("\"{}\"", record.digest)),
    ];
    if call.method == Method::HEAD {
        return respond(StatusCode::OK, &headers, body::empty());
    }
    let file = open_blob(call, &record.digest).await?.ok_or_else(|| {
        ApiError::internal(format!(
            "manifest {} of {repo} is missing from the content store",
            record.digest
        ))
    })?;
    respond(
        StatusCode::OK,
        &headers,
        body::file_range(file, 0, record.size),
    )
}

async fn put_manifest(call: &Call<'_>, name: &str, reference: &str, incoming: Incoming) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;
    let reference = manifest_ref(reference)?;
    let declared_length = call
        .header(header::CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok());
    let too_large = |size: String| {
        ApiError::new(
            Code::ManifestInvalid,
            format!(
                "manifest for {repo} is {size} bytes, over the {} byte limit",
                super::MAX_MANIFEST_SIZE
            ),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if let Some(length) = declared_length.filter(|length| *length > super::MAX_MANIFEST_SIZE as u64)
    {
        body::drain(incoming, body::DRAIN_LIMIT).await;
        return Err(too_large(length.to_string()));
    }
    let bytes = body::read_limited(
        incoming,
        super::MAX_MANIFEST_SIZE,
        call.state.body_idle_timeout,
    )
    .await
    .map_err(|error| match error {
        StreamError::TooLarge { .. } => too_large("more than that".to_owned()),
        other => ApiError::new(
            Code::ManifestInvalid,
            format!("reading the manifest for {repo}: {other}"),
        ),
    })?;
    let checked = manifest::check_manifest(&bytes, call.header(header::CONTENT_TYPE))?;
    let (digest, tag) = match reference {
        ManifestRef::Digest(digest) => (digest, None),
        ManifestRef::Tag(tag) => (sha256_digest(&bytes), Some(tag)),
    };

    let lookup = repo.clone();
    let needed = checked.clone();
    let missing = call
        .index(move |index| {
            for blob in &needed.blobs {
                if !index.has_blob(&lookup, blob)? {
                    return Ok(Some(format!("blob {blob}")));
                }
            }
            for child in &needed.children {
                if index.manifest(&lookup, child)?.is_none() {
                    return Ok(Some(format!("manifest {child}")));
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(missing) = missing {
        return Err(ApiError::new(
            Code::ManifestBlobUnknown,
            format!(
                "{missing} referenced by the manifest is not in repository {repo}; push it first"
            ),
        ));
    }

    store_bytes(call, bytes.clone(), &digest).await?;
    let record = ManifestRecord {
        digest: digest.clone(),
        media_type: checked.media_type.clone(),
        size: bytes.len() as u64,
        artifact_type: checked.artifact_type.clone(),
        subject: checked.subject.clone(),
        annotations: checked.annotations.clone(),
    };
    let lookup = repo.clone();
    call.index(move |index| index.put_manifest(&lookup, &record, tag.as_ref()))
        .await?;
    let mut headers = vec![
        ("location", format!("/v2/{repo}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
        ("content-length", "0".to_owned()),
    ];
    if let Some(subject) = &checked.subject {
        headers.push(("oci-subject", subject.to_string()));
    }
    respond(StatusCode::CREATED, &headers, body::empty())
}

/// Writes small in-memory `bytes` (a manifest) into the content store as `digest`,
/// verified by the commit.
async fn store_bytes(call: &Call<'_>, bytes: Vec<u8>, digest: &Digest) -> Result<(), ApiError> {
    let content = call.state.content.clone();
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        if content.contains(&digest).map_err(ApiError::internal)? {
            return Ok(());
        }
        let ingest = format!("registry-manifest-{}", super::random_hex(16));
        let mut writer = content.writer(&ingest).map_err(ApiError::internal)?;
        if let Err(error) = std::io::Write::write_all(&mut writer, &bytes) {
            let _ = writer.abort();
            return Err(ApiError::internal(error));
        }
        writer
            .commit(bytes.len() as u64, &digest)
            .map_err(|error| commit_error(error, &digest))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Maps a failed commit to the client's error: a mismatch is its fault, the rest ours.
fn commit_error(error: stencil_layerstore::Error, digest: &Digest) -> ApiError {
    use stencil_layerstore::ErrorKind;
    match error.kind() {
        ErrorKind::DigestMismatch | ErrorKind::SizeMismatch => ApiError::new(
            Code::DigestInvalid,
            format!("content does not match digest {digest}: {error}"),
        ),
        ErrorKind::UnsupportedAlgorithm => ApiError::new(
            Code::DigestInvalid,
            format!("cannot verify {digest}: only sha256 and sha512 digests are accepted"),
        ),
        _ => ApiError::internal(error),
    }
}

fn check_delete_allowed(call: &Call<'_>) -> Result<(), ApiError> {
    if call.state.allow_delete {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Unsupported,
            "deleting is disabled on this registry",
        ))
    }
}

async fn delete_manifest(call: &Call<'_>, name: &str, reference: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Delete)]).await?;
    check_delete_allowed(call)?;
    let reference = manifest_ref(reference)?;
    let lookup = repo.clone();
    let (deleted, shown) = call
        .index(move |index| match reference {
            ManifestRef::Digest(digest) => {
                Ok((index.delete_manifest(&lookup, &digest)?, digest.to_string()))
            }
            ManifestRef::Tag(tag) => Ok((index.delete_tag(&lookup, &tag)?, tag.to_string())),
        })
        .await?;
    if !deleted {
        return Err(manifest_unknown(&repo, &shown));
    }
    respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".to_owned())],
        body::empty(),
    )
}

// ---------------------------------------------------------------------------------------
// Blobs.

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    let text = percent_decode(text);
    Digest::parse(&text).map_err(|error| {
        ApiError::new(
            Code::DigestInvalid,
            format!("invalid digest {text:?}: {error}"),
        )
    })
}

fn blob_unknown(repo: &RepositoryName, digest: &Digest) -> ApiError {
    ApiError::new(
        Code::BlobUnknown,
        format!("blob {digest} is not in repository {repo}"),
    )
}

/// Opens a committed blob, `None` when the content store does not have it.
async fn open_blob(call: &Call<'_>, digest: &Digest) -> Result<Option<std::fs::File>, ApiError> {
    let content = call.state.content.clone();
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || match content.open(&digest) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == stencil_layerstore::ErrorKind::BlobNotFound => Ok(None),
        Err(error) => Err(ApiError::internal(error)),
    })
    .await
    .map_err(ApiError::internal)?
}

/// A satisfiable byte range `start..=end` of a blob of `size` bytes, from a `Range`
/// header (`bytes=A-B`, `bytes=A-`, `bytes=-N`). `Ok(None)`: no usable Range, serve all.
fn byte_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges would need multipart/byteranges; serving the whole blob is allowed.
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().map_err(|_| ())?;
            if suffix == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn get_blob(call: &Call<'_>, name: &str, digest: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Pull)]).await?;
    let digest = parse_digest(digest)?;
    let (lookup, wanted) = (repo.clone(), digest.clone());
    if !call
        .index(move |index| index.has_blob(&lookup, &wanted))
        .await?
    {
        return Err(blob_unknown(&repo, &digest));
    }
    let Some(file) = open_blob(call, &digest).await? else {
        return Err(blob_unknown(&repo, &digest));
    };
    let size = file.metadata().map_err(ApiError::internal)?.len();
    let range = match call.header(header::RANGE) {
        None => None,
        Some(value) => byte_range(value, size).map_err(|()| {
            ApiError::new(
                Code::RangeInvalid,
                format!("range {value:?} is outside blob {digest} ({size} bytes)"),
            )
            .with_header("content-range", format!("bytes */{size}"))
        })?,
    };
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", digest.to_string()),
        ("accept-ranges", "bytes".to_owned()),
        ("etag", format!("\"{digest}\"")),
    ];
    let (status, start, length) = match range {
        Some((start, end)) => {
            headers.push(("content-range", format!("bytes {start}-{end}/{size}")));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    headers.push(("content-length", length.to_string()));
    if call.method == Method::HEAD {
        return respond(status, &headers, body::empty());
    }
    respond(status, &headers, body::file_range(file, start, length))
}

async fn delete_blob(call: &Call<'_>, name: &str, digest: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Delete)]).await?;
    check_delete_allowed(call)?;
    let digest = parse_digest(digest)?;
    let (lookup, wanted) = (repo.clone(), digest.clone());
    if !call
        .index(move |index| index.unlink_blob(&lookup, &wanted))
        .await?
    {
        return Err(blob_unknown(&repo, &digest));
    }
    respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".to_owned())],
        body::empty(),
    )
}

// ---------------------------------------------------------------------------------------
// Uploads.

fn upload_unknown(repo: &RepositoryName, id: &str) -> ApiError {
    ApiError::new(
        Code::BlobUploadUnknown,
        format!(
            "upload {id} to repository {repo} is unknown, finished or expired; start a new one"
        ),
    )
}

/// The `Range` header value for `offset` bytes received (`0-0` when none, as registries
/// write it).
fn received_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn session_headers(repo: &RepositoryName, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{repo}/blobs/uploads/{id}")),
        ("range", received_range(offset)),
        ("docker-upload-uuid", id.to_owned()),
        ("content-length", "0".to_owned()),
    ]
}

fn blob_created(repo: &RepositoryName, digest: &Digest) -> Handled {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".to_owned()),
        ],
        body::empty(),
    )
}

fn stream_error(repo: &RepositoryName, error: StreamError) -> ApiError {
    match error {
        StreamError::TooLarge { limit } => ApiError::new(
            Code::SizeInvalid,
            format!("blob upload to {repo} is larger than this registry's {limit} byte limit"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE),
        StreamError::Body(error) => ApiError::new(
            Code::BlobUploadInvalid,
            format!("blob upload to {repo} was interrupted: {error}"),
        ),
        StreamError::Write(error) => ApiError::internal(error),
        StreamError::Lost => ApiError::internal(format!("upload writer for {repo} was lost")),
        StreamError::Stalled { .. } => ApiError::new(
            Code::BlobUploadInvalid,
            format!(
                "blob upload to {repo} stalled: {error}; resume from the offset the upload URL reports"
            ),
        ),
    }
}

async fn create_session(call: &Call<'_>, repo: &RepositoryName) -> Result<String, ApiError> {
    // Each open session holds an ingest file and its lock: bound them, so that clients
    // that never finish cannot exhaust file descriptors before the expiry catches up.
    let open = call.state.uploads.open_count();
    if open >= call.state.max_uploads {
        return Err(ApiError::new(
            Code::TooManyRequests,
            format!(
                "too many uploads in progress ({open}) to start one for {repo}; finish or cancel some, or retry later"
            ),
        ));
    }
    let id = super::random_hex(16);
    let content = call.state.content.clone();
    let ingest = super::uploads::ingest_ref(&id);
    let writer = tokio::task::spawn_blocking(move || content.writer(&ingest))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    call.state.uploads.insert(id.clone(), repo.clone(), writer);
    Ok(id)
}

async fn start_upload(call: &Call<'_>, name: &str, incoming: Incoming) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;

    if let Some(mount) = query_value(&call.query, "mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = query_value(&call.query, "from")
            .and_then(|from| RepositoryName::parse(&call.state.domain, from))
        {
            // Without pull access to the source, the mount silently becomes an upload,
            // so that the answer does not tell whether the blob exists there.
            if call.authorize(&[(&from, Action::Pull)]).await.is_ok() {
                let (source, target, wanted) = (from.clone(), repo.clone(), digest.clone());
                let content = call.state.content.clone();
                let mounted = call
                    .index(move |index| {
                        let present = index.has_blob(&source, &wanted)?
                            && content.contains(&wanted).map_err(super::Error::from)?;
                        if present {
                            index.link_blob(&target, &wanted)?;
                        }
                        Ok(present)
                    })
                    .await?;
                if mounted {
                    return blob_created(&repo, &digest);
                }
            }
        }
    } else if let Some(digest) = query_value(&call.query, "digest") {
        let digest = parse_digest(digest)?;
        let id = create_session(call, &repo).await?;
        let Some(mut session) = call.state.uploads.get(&id, &repo).await else {
            return Err(upload_unknown(&repo, &id));
        };
        let result = finish(call, &repo, &mut session, incoming, &digest).await;
        if result.is_err() {
            // The client of a single-request upload never learnt the session's URL: drop it
            // now rather than leave it to the expiry.
            call.state.uploads.forget(&id);
            if let Some(writer) = session.writer.take() {
                let _ = tokio::task::spawn_blocking(move || writer.abort()).await;
            }
        }
        return result;
    }

    let id = create_session(call, &repo).await?;
    respond(
        StatusCode::ACCEPTED,
        &session_headers(&repo, &id, 0),
        body::empty(),
    )
}

/// Parses a `Content-Range` of an upload chunk: `START-END` (also tolerating a `bytes `
/// or `bytes=` prefix).
fn chunk_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value
        .strip_prefix("bytes=")
        .or_else(|| value.strip_prefix("bytes "))
        .unwrap_or(value);
    let value = value.split('/').next().unwrap_or(value);
    let (start, end) = value.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

/// Streams the request body into the session, enforcing `Content-Range` order.
async fn append(
    call: &Call<'_>,
    repo: &RepositoryName,
    session: &mut Session,
    incoming: Incoming,
) -> Result<(), ApiError> {
    let Some(writer) = session.writer.take() else {
        return Err(upload_unknown(repo, &session.id));
    };
    let offset = writer.offset();
    let expected = match call.header(header::CONTENT_RANGE) {
        None => None,
        Some(value) => match chunk_range(value) {
            Some((start, end)) if start == offset => Some(end - start + 1),
            _ => {
                session.writer = Some(writer);
                let mut error = ApiError::new(
                    Code::RangeInvalid,
                    format!(
                        "chunk range {value:?} does not continue upload {} to {repo}, which has {offset} bytes",
                        session.id
                    ),
                );
                for (name, value) in session_headers(repo, &session.id, offset) {
                    if name != "content-length" {
                        error = error.with_header(name, value);
                    }
                }
                return Err(error);
            }
        },
    };
    let (writer, result) = body::write_body(
        writer,
        incoming,
        call.state.max_blob_size,
        call.state.body_idle_timeout,
    )
    .await;
    let Some(mut writer) = writer else {
        call.state.uploads.forget(&session.id);
        return Err(stream_error(repo, StreamError::Lost));
    };
    call.state.uploads.touch(session);
    let outcome = match result {
        Ok(taken) => match expected {
            Some(expected) if expected != taken => {
                // Drop the partial chunk so that the client can send it again whole.
                let restored = tokio::task::spawn_blocking(move || {
                    let result = writer.truncate(offset);
                    (writer, result)
                })
                .await
                .map_err(ApiError::internal)?;
                writer = restored.0;
                restored.1.map_err(ApiError::internal)?;
                Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!(
                        "chunk for {repo} had {taken} bytes but its Content-Range announced {expected}"
                    ),
                ))
            }
            _ => Ok(()),
        },
        Err(error) => Err(stream_error(repo, error)),
    };
    session.writer = Some(writer);
    outcome
}

/// Appends the final body, commits as `digest` and links the blob into `repo`.
async fn finish(
    call: &Call<'_>,
    repo: &RepositoryName,
    session: &mut Session,
    incoming: Incoming,
    digest: &Digest,
) -> Handled {
    append(call, repo, session, incoming).await?;
    let Some(writer) = session.writer.take() else {
        return Err(upload_unknown(repo, &session.id));
    };
    call.state.uploads.forget(&session.id);
    let wanted = digest.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let size = writer.offset();
        writer.commit(size, &wanted)
    })
    .await
    .map_err(ApiError::internal)?;
    committed.map_err(|error| commit_error(error, digest))?;
    let (target, wanted) = (repo.clone(), digest.clone());
    call.index(move |index| index.link_blob(&target, &wanted))
        .await?;
    blob_created(repo, digest)
}

async fn upload_status(call: &Call<'_>, name: &str, id: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;
    let Some(session) = call.state.uploads.get(id, &repo).await else {
        return Err(upload_unknown(&repo, id));
    };
    let offset = session.writer.as_ref().map_or(0, |writer| writer.offset());
    respond(
        StatusCode::NO_CONTENT,
        &session_headers(&repo, id, offset),
        body::empty(),
    )
}

async fn patch_upload(call: &Call<'_>, name: &str, id: &str, incoming: Incoming) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;
    let Some(mut session) = call.state.uploads.get(id, &repo).await else {
        return Err(upload_unknown(&repo, id));
    };
    append(call, &repo, &mut session, incoming).await?;
    let offset = session.writer.as_ref().map_or(0, |writer| writer.offset());
    respond(
        StatusCode::ACCEPTED,
        &session_headers(&repo, id, offset),
        body::empty(),
    )
}

async fn finish_upload(call: &Call<'_>, name: &str, id: &str, incoming: Incoming) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;
    let digest = match query_value(&call.query, "digest") {
        Some(digest) => parse_digest(digest)?,
        None => {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("closing upload {id} to {repo} needs ?digest= with the blob's digest"),
            ));
        }
    };
    let Some(mut session) = call.state.uploads.get(id, &repo).await else {
        return Err(upload_unknown(&repo, id));
    };
    finish(call, &repo, &mut session, incoming, &digest).await
}

async fn cancel_upload(call: &Call<'_>, name: &str, id: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Push)]).await?;
    let Some(mut session) = call.state.uploads.get(id, &repo).await else {
        return Err(upload_unknown(&repo, id));
    };
    call.state.uploads.forget(id);
    if let Some(writer) = session.writer.take() {
        tokio::task::spawn_blocking(move || writer.abort())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    }
    respond(
        StatusCode::NO_CONTENT,
        &[("content-length", "0".to_owned())],
        body::empty(),
    )
}

// ---------------------------------------------------------------------------------------
// Referrers.

async fn referrers(call: &Call<'_>, name: &str, digest: &str) -> Handled {
    let repo = call.repository(name)?;
    call.authorize(&[(&repo, Action::Pull)]).await?;
    let subject = parse_digest(digest)?;
    let artifact_type = query_value(&call.query, "artifactType").map(str::to_owned);
    let lookup = repo.clone();
    let mut records = call.index(move |index| index.manifests(&lookup)).await?;
    records.retain(|record| record.subject.as_ref() == Some(&subject));
    if let Some(wanted) = &artifact_type {
        records.retain(|record| record.artifact_type.as_deref() == Some(wanted.as_str()));
    }
    records.sort_by(|a, b| a.digest.cmp(&b.digest));
    let manifests: Vec<Value> = records
        .iter()
        .map(|record| {
            let mut descriptor = json!({
                "mediaType": record.media_type,
                "digest": record.digest.as_str(),
                "size": record.size,
            });
            if let Some(artifact_type) = &record.artifact_type {
                descriptor["artifactType"] = json!(artifact_type);
            }
            if let Some(annotations) = &record.annotations {
                descriptor["annotations"] = Value::Object(annotations.clone());
            }
            descriptor
        })
        .collect();
    let text =
        json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }).to_string();
    let mut headers = vec![
        ("content-type", OCI_INDEX.to_owned()),
        ("content-length", text.len().to_string()),
    ];
    if artifact_type.is_some() {
        headers.push(("oci-filters-applied", "artifactType".to_owned()));
    }
    respond(StatusCode::OK, &headers, body::full(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_names_at_the_last_marker() {
        let cases = [
            ("/v2/", Some(Route::Base)),
            ("/v2", Some(Route::Base)),
            ("/v2/_catalog", Some(Route::Catalog)),
            ("/v2/a/b/tags/list", Some(Route::Tags("a/b"))),
            ("/v2/a/manifests/v1", Some(Route::Manifest("a", "v1"))),
            (
                "/v2/a/manifests/b/manifests/v1",
                Some(Route::Manifest("a/manifests/b", "v1")),
            ),
            ("/v2/a/blobs/sha256:00", Some(Route::Blob("a", "sha256:00"))),
            ("/v2/a/blobs/uploads/", Some(Route::UploadStart("a"))),
            ("/v2/a/blobs/uploads", Some(Route::UploadStart("a"))),
            ("/v2/a/blobs/uploads/abc", Some(Route::Upload("a", "abc"))),
            (
                "/v2/x/blobs/y/blobs/sha256:00",
                Some(Route::Blob("x/blobs/y", "sha256:00")),
            ),
            (
                "/v2/a/referrers/sha256:00",
                Some(Route::Referrers("a", "sha256:00")),
            ),
            ("/v1/search", Some(Route::Search)),
            ("/token", Some(Route::Token)),
            ("/v2/a/manifests/", None),
            ("/v2//manifests/x", None),
            ("/v3/", None),
        ];
        for (path, expected) in cases {
            assert_eq!(parse_route(path), expected, "{path}");
        }
    }

    #[test]
    fn byte_ranges() {
        type Expected = Result<Option<(u64, u64)>, ()>;
        let cases: [(&str, u64, Expected); 9] = [
            ("bytes=0-9", 100, Ok(Some((0, 9)))),
            ("bytes=90-", 100, Ok(Some((90, 99)))),
            ("bytes=-10", 100, Ok(Some((90, 99)))),
            ("bytes=50-500", 100, Ok(Some((50, 99)))),
            ("bytes=100-", 100, Err(())),
            ("bytes=9-3", 100, Err(())),
            ("bytes=x-3", 100, Err(())),
            ("items=0-3", 100, Ok(None)),
            ("bytes=0-1,5-6", 100, Ok(None)),
        ];
        for (value, size, expected) in cases {
            assert_eq!(byte_range(value, size), expected, "{value}");
        }
    }

    #[test]
    fn pages_follow_last_and_link_only_when_more_remain() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let (page1, link) = page(items.clone(), 2, None, "/v2/x/tags/list");
        assert_eq!(page1, ["a", "b"]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/x/tags/list?n=2&last=b>; rel=\"next\"")
        );
        let (page2, link) = page(items.clone(), 2, Some("b"), "/v2/x/tags/list");
        assert_eq!((page2, link), (vec!["c".to_owned(), "d".to_owned()], None));
        let (page3, link) = page(items, 0, None, "/v2/x/tags/list");
        assert_eq!((page3, link), (Vec::<String>::new(), None));
    }

    #[test]
    fn queries_are_decoded() {
        let pairs = query_pairs(Some(
            "digest=sha256%3Aab&artifactType=application%2Fvnd.x%2Bjson&q=a+b&flag",
        ));
        assert_eq!(query_value(&pairs, "digest"), Some("sha256:ab"));
        assert_eq!(
            query_value(&pairs, "artifactType"),
            Some("application/vnd.x+json")
        );
        assert_eq!(query_value(&pairs, "q"), Some("a b"));
        assert_eq!(query_value(&pairs, "flag"), Some(""));
    }
}
