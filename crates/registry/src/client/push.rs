//! Pushing: blobs the registry lacks, then manifests, for single images and indexes.
//!
//! Each blob is checked with `HEAD` first and skipped when present. A missing blob is
//! mounted from another repository of the same registry when the caller names candidates
//! (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`), otherwise uploaded: in one `PUT` when
//! small, in `PATCH` chunks when large. Bodies stream from the store a few pieces at a
//! time (memory does not grow with blob or chunk size), anew for each retry; a chunk cut
//! half-way resumes from the offset the registry reports for the upload (`GET` of its
//! location). An upload abandoned by a killed push is simply started afresh next time.
//! Manifests go last, children of an index before the index. This module reads from the
//! store; it does not build images.
//!
//! ```no_run
//! # async fn demo(root: stencil_registry::Descriptor) -> Result<(), stencil_registry::Error> {
//! use std::sync::Arc;
//! use stencil_layerstore::content::LocalContent;
//! use stencil_reference::Reference;
//! use stencil_registry::{Client, NoProgress, PushOptions};
//!
//! let store = Arc::new(LocalContent::open("/tmp/store").unwrap());
//! let client = Client::builder().build()?;
//! let target = Reference::parse("localhost:5000/app:1.0").unwrap();
//! let digest = client.push(&target, &store, &root, &PushOptions::default(), Arc::new(NoProgress)).await?;
//! println!("pushed {digest}");
//! # Ok(()) }
//! ```

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::channel::Channel;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};
use stencil_reference::{Digest, Reference};

use super::manifest::{self, Descriptor, Manifest};
use super::progress::{Progress, ProgressEvent};
use super::store::{ContentStore, store_error};
use super::transport::{Answer, BodySource, Call, expect_success};
use super::{Client, Repository};
use crate::error::{Error, Result};

/// Choices for [`Client::push`].
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Other repositories (paths on the same registry, like `library/base`) that may hold
    /// the blobs already; each missing blob is mounted from the first that has it.
    pub mount_from: Vec<String>,
    /// Blobs up to this size go in one request; larger ones in chunks.
    pub monolithic_limit: u64,
    /// The size of one `PATCH` chunk.
    pub chunk_size: u64,
    /// How many blobs to push at once (default: the registry's configured concurrency).
    pub concurrency: Option<usize>,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions {
            mount_from: Vec::new(),
            monolithic_limit: 16 * 1024 * 1024,
            chunk_size: 64 * 1024 * 1024,
            concurrency: None,
        }
    }
}

/// How one blob reached the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The registry had it already.
    AlreadyPresent,
    /// Mounted from the named repository.
    Mounted(String),
    /// Uploaded in one request.
    Monolithic,
    /// Uploaded in this many `PATCH` chunks.
    Chunked(u64),
}

impl Client {
    /// Pushes the manifest or index `root` (which must be in `store`, with everything it
    /// refers to) to `target`, and returns the digest of `root` as the registry stored it.
    /// `target`'s tag names the pushed image; a digest-only target pushes by digest.
    pub async fn push<S: ContentStore>(
        &self,
        target: &Reference,
        store: &Arc<S>,
        root: &Descriptor,
        options: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest> {
        let repository = Repository::origin(target);
        let tag_or_digest = match target.tag() {
            Some(tag) => tag.to_string(),
            None => root.digest.to_string(),
        };
        let bytes = read_manifest(&**store, root)?;
        match Manifest::parse(&bytes, Some(&root.media_type), root.digest.as_str())? {
            Manifest::Image(image) => {
                self.push_blobs(
                    target,
                    &repository,
                    store,
                    image.blobs().cloned().collect(),
                    options,
                    &progress,
                )
                .await?;
            }
            Manifest::Index(index) => {
                for child in &index.manifests {
                    let child_bytes = read_manifest(&**store, child)?;
                    let Manifest::Image(image) = Manifest::parse(
                        &child_bytes,
                        Some(&child.media_type),
                        child.digest.as_str(),
                    )?
                    else {
                        return Err(Error::InvalidManifest {
                            url: child.digest.to_string(),
                            reason: "nested indexes are not pushed".into(),
                        });
                    };
                    self.push_blobs(
                        target,
                        &repository,
                        store,
                        image.blobs().cloned().collect(),
                        options,
                        &progress,
                    )
                    .await?;
                    self.put_manifest(&repository, child.digest.as_str(), child, child_bytes)
                        .await?;
                }
            }
        }
        self.put_manifest(&repository, &tag_or_digest, root, bytes)
            .await
    }

    async fn push_blobs<S: ContentStore>(
        &self,
        target: &Reference,
        repository: &Repository,
        store: &Arc<S>,
        blobs: Vec<Descriptor>,
        options: &PushOptions,
        progress: &Arc<dyn Progress>,
    ) -> Result<()> {
        let concurrency = options
            .concurrency
            .unwrap_or_else(|| self.concurrency_for(target))
            .max(1);
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for descriptor in blobs {
            let (client, store, progress, semaphore) = (
                self.clone(),
                store.clone(),
                progress.clone(),
                semaphore.clone(),
            );
            let (repository, options) = (repository.clone(), options.clone());
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                client
                    .push_blob(&repository, &descriptor, &store, &options, &*progress)
                    .await
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(Error::Protocol {
                    url: target.to_string(),
                    reason: format!("a blob upload task failed: {e}"),
                })
            });
            if let (Err(err), None) = (result, &first_error) {
                tasks.abort_all();
                first_error = Some(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Pushes one blob of `store` to the repository of `target` unless it is there.
    pub async fn push_blob_to<S: ContentStore>(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        store: &Arc<S>,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushOutcome> {
        self.push_blob(
            &Repository::origin(target),
            descriptor,
            store,
            options,
            progress,
        )
        .await
    }

    async fn push_blob<S: ContentStore>(
        &self,
        repository: &Repository,
        descriptor: &Descriptor,
        store: &Arc<S>,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushOutcome> {
        let digest = &descriptor.digest;
        let push_scope = repository.scope("pull,push");
        let head_url = repository.url(self, &format!("blobs/{digest}"))?;
        let head = Call::new(
            Method::HEAD,
            head_url,
            &repository.host,
            vec![push_scope.clone()],
        );
        let answer = self.send(&head).await?;
        if answer.response.status().is_success() {
            progress.event(ProgressEvent::AlreadyPresent {
                digest: digest.clone(),
            });
            return Ok(PushOutcome::AlreadyPresent);
        }
        if answer.response.status() != StatusCode::NOT_FOUND {
            expect_success(answer, &repository.display).await?;
        }
        let mut upload = None;
        if let Some(from) = self
            .mount_source(repository, digest, &options.mount_from)
            .await?
        {
            let path = format!(
                "/v2/{}/blobs/uploads/?mount={}&from={}",
                repository.path,
                digest,
                encode_query(&from)
            );
            let url = self.api_url(&repository.host, &path)?;
            let scopes = vec![push_scope.clone(), format!("repository:{from}:pull")];
            let call = Call::new(Method::POST, url, &repository.host, scopes);
            let answer = expect_success(self.send(&call).await?, &repository.display).await?;
            if answer.response.status() == StatusCode::CREATED {
                progress.event(ProgressEvent::Mounted {
                    digest: digest.clone(),
                    from: from.clone(),
                });
                return Ok(PushOutcome::Mounted(from));
            }
            // 202: the registry could not mount and opened an ordinary upload instead.
            upload = Some(upload_location(&answer)?);
        }
        let location = match upload {
            Some(location) => location,
            None => {
                let url = repository.url(self, "blobs/uploads/")?;
                let call = Call::new(
                    Method::POST,
                    url,
                    &repository.host,
                    vec![push_scope.clone()],
                )
                .header(CONTENT_LENGTH, "0");
                let answer = expect_success(self.send(&call).await?, &repository.display).await?;
                upload_location(&answer)?
            }
        };
        progress.event(ProgressEvent::Started {
            digest: digest.clone(),
            size: descriptor.size,
            offset: 0,
        });
        let size = descriptor.size;
        let scopes = vec![push_scope];
        let outcome;
        let mut location = location;
        // Bodies stream from the store, a few pieces at a time: memory does not grow with
        // the blob, whichever way it goes.
        if size <= options.monolithic_limit {
            let url = with_digest(&location, digest);
            let call = Call::new(Method::PUT, url, &repository.host, scopes)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, &size.to_string())
                .streamed_body(blob_body(store, digest, 0, size));
            let answer = expect_success(self.send(&call).await?, digest.as_str()).await?;
            check_pushed_digest(&answer, digest)?;
            progress.event(ProgressEvent::Bytes {
                digest: digest.clone(),
                done: size,
                size,
            });
            outcome = PushOutcome::Monolithic;
        } else {
            let chunk_size = options.chunk_size.max(1);
            let mut sent = 0u64;
            let mut chunks = 0u64;
            let mut recoveries = 0;
            while sent < size {
                let want = chunk_size.min(size - sent);
                let end = sent + want - 1;
                let call = Call::new(
                    Method::PATCH,
                    location.clone(),
                    &repository.host,
                    scopes.clone(),
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, &format!("{sent}-{end}"))
                .header(CONTENT_LENGTH, &want.to_string())
                .streamed_body(blob_body(store, digest, sent, want));
                let failure = match self.send(&call).await {
                    Ok(answer) if answer.response.status().is_success() => {
                        location = upload_location(&answer)?;
                        sent += want;
                        chunks += 1;
                        progress.event(ProgressEvent::Bytes {
                            digest: digest.clone(),
                            done: sent,
                            size,
                        });
                        continue;
                    }
                    Ok(answer) => match expect_success(answer, digest.as_str()).await {
                        Err(err) => err,
                        Ok(_) => continue,
                    },
                    Err(err) => err,
                };
                // A chunk cut half-way may have left part of itself with the registry: ask
                // how much it holds and go on from there.
                recoveries += 1;
                if recoveries > self.inner.retry.attempts {
                    return Err(failure);
                }
                match self
                    .upload_status(&location, &repository.host, &scopes)
                    .await
                {
                    Ok((status_location, offset)) if offset <= size => {
                        tracing::debug!(%digest, offset, "upload interrupted; resuming");
                        progress.event(ProgressEvent::Resuming {
                            digest: digest.clone(),
                            offset,
                        });
                        location = status_location;
                        sent = offset;
                    }
                    _ => return Err(failure),
                }
            }
            let call = Call::new(
                Method::PUT,
                with_digest(&location, digest),
                &repository.host,
                scopes,
            )
            .header(CONTENT_LENGTH, "0");
            let answer = expect_success(self.send(&call).await?, digest.as_str()).await?;
            check_pushed_digest(&answer, digest)?;
            outcome = PushOutcome::Chunked(chunks);
        }
        progress.event(ProgressEvent::Done {
            digest: digest.clone(),
        });
        Ok(outcome)
    }

    /// How much of the upload at `location` the registry holds (`GET` of the upload:
    /// `Range: 0-LAST`), and where to send the next chunk.
    async fn upload_status(
        &self,
        location: &Url,
        host: &str,
        scopes: &[String],
    ) -> Result<(Url, u64)> {
        let call = Call::new(Method::GET, location.clone(), host, scopes.to_vec());
        let answer = expect_success(self.send(&call).await?, location.as_str()).await?;
        let held = answer
            .response
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|range| range.trim().rsplit('-').next()?.trim().parse::<u64>().ok())
            .map_or(0, |last| last + 1);
        let next = upload_location(&answer).unwrap_or_else(|_| location.clone());
        Ok((next, held))
    }

    /// The first of `candidates` (other repositories of the same registry) that holds
    /// `digest`, found with one `HEAD` each: a mount attempt that fails opens an upload,
    /// so only a repository known to have the blob is worth one.
    async fn mount_source(
        &self,
        repository: &Repository,
        digest: &Digest,
        candidates: &[String],
    ) -> Result<Option<String>> {
        for from in candidates.iter().filter(|from| **from != repository.path) {
            let path = format!("/v2/{from}/blobs/{digest}");
            let url = self.api_url(&repository.host, &path)?;
            let call = Call::new(
                Method::HEAD,
                url,
                &repository.host,
                vec![format!("repository:{from}:pull")],
            );
            if self.send(&call).await?.response.status().is_success() {
                return Ok(Some(from.clone()));
            }
        }
        Ok(None)
    }

    async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        descriptor: &Descriptor,
        bytes: Vec<u8>,
    ) -> Result<Digest> {
        let url = repository.url(self, &format!("manifests/{reference}"))?;
        let call = Call::new(
            Method::PUT,
            url,
            &repository.host,
            vec![repository.scope("pull,push")],
        )
        .header(CONTENT_TYPE, &descriptor.media_type)
        .body(Bytes::from(bytes));
        let answer = expect_success(self.send(&call).await?, &repository.display).await?;
        check_pushed_digest(&answer, &descriptor.digest)?;
        Ok(descriptor.digest.clone())
    }
}

fn read_manifest<S: ContentStore>(store: &S, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let digest = &descriptor.digest;
    if descriptor.size > manifest::MANIFEST_SIZE_LIMIT {
        return Err(Error::ManifestTooLarge {
            url: digest.to_string(),
            limit: manifest::MANIFEST_SIZE_LIMIT,
        });
    }
    let mut reader = store
        .open(digest)
        .map_err(|e| store_error("local store", digest, e))?;
    let bytes = read_chunk(&mut reader, descriptor.size, digest)?;
    check_length(&bytes, descriptor.size, digest)?;
    Ok(bytes.to_vec())
}

/// Bytes per piece of a streamed upload body.
const PIECE: usize = 256 * 1024;
/// Pieces read ahead of the network.
const PIECES_AHEAD: usize = 4;

/// A body source that streams `len` bytes of blob `digest` from `offset`, read from the
/// store on a blocking thread a piece at a time, anew for each attempt.
fn blob_body<S: ContentStore>(store: &Arc<S>, digest: &Digest, offset: u64, len: u64) -> BodySource
where
    S::Reader: 'static,
{
    let (store, digest) = (store.clone(), digest.clone());
    Arc::new(move || {
        let (mut sender, body) = Channel::<Bytes, std::io::Error>::new(PIECES_AHEAD);
        let (store, digest) = (store.clone(), digest.clone());
        tokio::spawn(async move {
            let opened = tokio::task::spawn_blocking(move || {
                let mut reader = store.open(&digest).map_err(std::io::Error::other)?;
                reader.seek(SeekFrom::Start(offset))?;
                Ok::<_, std::io::Error>(reader)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let mut reader = match opened {
                Ok(reader) => reader,
                Err(error) => return sender.abort(error),
            };
            let mut left = len;
            while left > 0 {
                let want = PIECE.min(usize::try_from(left).unwrap_or(PIECE));
                let read = tokio::task::spawn_blocking(move || {
                    let mut piece = vec![0u8; want];
                    let read = reader.read_exact(&mut piece).map(|()| piece);
                    (reader, read)
                })
                .await;
                let piece = match read {
                    Ok((back, Ok(piece))) => {
                        reader = back;
                        piece
                    }
                    Ok((_, Err(error))) => return sender.abort(error),
                    Err(error) => return sender.abort(std::io::Error::other(error)),
                };
                left -= want as u64;
                // The request was dropped (a failure, a redirect): stop reading.
                if sender.send_data(Bytes::from(piece)).await.is_err() {
                    return;
                }
            }
        });
        reqwest::Body::wrap(body)
    })
}

/// Reads up to `len` bytes: one chunk, never the whole of a large blob.
fn read_chunk(reader: &mut impl Read, len: u64, digest: &Digest) -> Result<Bytes> {
    let mut buffer = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    reader
        .take(len)
        .read_to_end(&mut buffer)
        .map_err(|e| Error::Store {
            digest: digest.clone(),
            reason: e.to_string(),
        })?;
    Ok(Bytes::from(buffer))
}

fn check_length(bytes: &Bytes, want: u64, digest: &Digest) -> Result<()> {
    if bytes.len() as u64 == want {
        return Ok(());
    }
    Err(Error::SizeMismatch {
        url: "local store".into(),
        digest: digest.clone(),
        expected: want,
        actual: bytes.len() as u64,
    })
}

fn upload_location(answer: &Answer) -> Result<Url> {
    let location = answer
        .response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            url: answer.url.to_string(),
            reason: "an upload answer without a Location header".into(),
        })?;
    answer.url.join(location).map_err(|e| Error::Protocol {
        url: answer.url.to_string(),
        reason: format!("invalid upload location {location:?}: {e}"),
    })
}

fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

fn check_pushed_digest(answer: &Answer, expected: &Digest) -> Result<()> {
    let Some(value) = answer
        .response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    match Digest::parse(value.trim()) {
        Ok(actual) if &actual != expected => Err(Error::DigestMismatch {
            url: answer.url.to_string(),
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(()),
    }
}

/// Percent-encodes a repository path for a query value (`/` stays readable to registries,
/// which accept it either way).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
