//! Pulling: resolve a reference to a manifest, pick a platform, stream blobs into the store.
//!
//! Resolution of a tag sends `HEAD` to learn the digest, then `GET`s the
//! manifest by that digest, so that a tag moving in between cannot mix two images; the
//! bytes are always checked against the digest they were fetched by. Blobs already in the
//! store cost no request. The others are fetched a few at a time, each streamed through
//! the layerstore's ingester (memory does not grow with blob size), resumed with `Range`
//! from the ingest's offset when a connection breaks, verified, then committed. Mirrors
//! are tried before the origin. This module does not unpack layers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stencil_registry::Error> {
//! use std::sync::Arc;
//! use stencil_layerstore::content::LocalContent;
//! use stencil_reference::Reference;
//! use stencil_registry::{Client, NoProgress, PullOptions};
//!
//! let store = Arc::new(LocalContent::open("/tmp/store").unwrap());
//! let client = Client::builder().build()?;
//! let reference = Reference::parse("localhost:5000/app:1.0").unwrap();
//! let pulled = client.pull(&reference, &store, &PullOptions::default(), Arc::new(NoProgress)).await?;
//! println!("{} layers", pulled.image.layers.len());
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};
use stencil_layerstore::content::{ContentWriter, Digester};
use stencil_reference::{Algorithm, Digest, Reference};

use super::ingest::{IngestPipeline, WorkerFailure};
use super::manifest::{self, Descriptor, ImageManifest, Manifest, Platform};
use super::progress::{Progress, ProgressEvent};
use super::store::{ContentStore, pull_ingest_ref, put_small, store_error};
use super::tap::BlobTap;
use super::transport::{Call, expect_success, read_limited};
use super::{Client, Repository};
use crate::config::is_loopback;
use crate::error::{Error, ErrorKind, Result};

/// How long a pull waits for another writer (another pull of the same blob) to finish.
const IN_USE_WAIT: Duration = Duration::from_secs(600);
const IN_USE_POLL: Duration = Duration::from_millis(200);

/// Choices for [`Client::pull`].
#[derive(Clone)]
pub struct PullOptions {
    /// The platform to pick from an index (default: this machine's).
    pub platform: Platform,
    /// Fetch foreign layers from their `urls` when the registry does not have them.
    pub allow_foreign_layers: bool,
    /// How many blobs to fetch at once (default: the registry's configured concurrency).
    pub concurrency: Option<usize>,
    /// Receives each layer's bytes while they download (to unpack them on the way); with a
    /// tap, the config blob is fetched before the layers.
    pub tap: Option<Arc<dyn BlobTap>>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("allow_foreign_layers", &self.allow_foreign_layers)
            .field("concurrency", &self.concurrency)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: Platform::host(),
            allow_foreign_layers: false,
            concurrency: None,
            tap: None,
        }
    }
}

/// A manifest or index as the registry serves it, verified against its digest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Media type, digest and size of the manifest bytes.
    pub descriptor: Descriptor,
    /// The parsed manifest or index.
    pub manifest: Manifest,
    /// The exact bytes, which hash to `descriptor.digest`.
    pub bytes: Bytes,
    repository: Repository,
}

/// What [`Client::pull`] stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What the reference points at: an index, or the image manifest itself.
    pub root: Descriptor,
    /// The image manifest chosen (equal to `root` without an index).
    pub manifest: Descriptor,
    /// The image manifest's content.
    pub image: ImageManifest,
}

/// Whether a blob needed a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The store had it: no request was made.
    AlreadyPresent,
    /// It was downloaded, verified and committed.
    Fetched,
}

/// Hashes `bytes` with the algorithm of `expected`.
pub(crate) fn digest_like(expected: &Digest, bytes: &[u8]) -> Result<Digest> {
    let mut digester =
        Digester::new(expected.algorithm()).ok_or_else(|| Error::UnverifiableDigest {
            digest: expected.clone(),
        })?;
    digester.update(bytes);
    Ok(digester.finish())
}

/// Looks a manifest up by digest in the local store.
type LocalManifests<'a> = dyn Fn(&Digest) -> Option<Vec<u8>> + Send + Sync + 'a;

/// The manifest `digest` from `store` when it is there, small enough and intact.
fn read_local_manifest<S: stencil_layerstore::content::Provider>(
    store: &S,
    digest: &Digest,
) -> Option<Vec<u8>> {
    let mut reader = store.open(digest).ok()?;
    let mut bytes = Vec::new();
    let limit = manifest::MANIFEST_SIZE_LIMIT + 1;
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut reader, limit), &mut bytes).ok()?;
    if bytes.len() as u64 > manifest::MANIFEST_SIZE_LIMIT {
        return None;
    }
    (digest_like(digest, &bytes).ok()? == *digest).then_some(bytes)
}

impl Client {
    /// Resolves `reference` to its manifest or index, trying mirrors before the origin.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved> {
        let candidates = Repository::candidates(self, reference);
        let last = candidates.len() - 1;
        for (i, repository) in candidates.into_iter().enumerate() {
            match self.resolve_at(&repository, reference, None).await {
                Ok(resolved) => return Ok(resolved),
                Err(err) if i < last => {
                    tracing::warn!(mirror = %repository.host, %err, "mirror failed; trying the next source");
                }
                Err(err) => return Err(err),
            }
        }
        unreachable_candidates(reference)
    }

    /// Like [`Client::resolve`], but a manifest that `local` already holds (by the digest
    /// the registry's `HEAD` names) is read from it instead of fetched again, so that a
    /// warm re-pull costs one request.
    async fn resolve_with_local(
        &self,
        reference: &Reference,
        local: &LocalManifests<'_>,
    ) -> Result<Resolved> {
        let candidates = Repository::candidates(self, reference);
        let last = candidates.len() - 1;
        for (i, repository) in candidates.into_iter().enumerate() {
            match self.resolve_at(&repository, reference, Some(local)).await {
                Ok(resolved) => return Ok(resolved),
                Err(err) if i < last => {
                    tracing::warn!(mirror = %repository.host, %err, "mirror failed; trying the next source");
                }
                Err(err) => return Err(err),
            }
        }
        unreachable_candidates(reference)
    }

    async fn resolve_at(
        &self,
        repository: &Repository,
        reference: &Reference,
        local: Option<&LocalManifests<'_>>,
    ) -> Result<Resolved> {
        // A digest pins the content already: no HEAD is needed to learn it.
        if let Some(digest) = reference.digest() {
            return self
                .fetch_manifest_at(repository, digest.as_str(), Some(digest))
                .await;
        }
        let target = reference
            .tag()
            .map_or("latest".to_owned(), |tag| tag.to_string());
        let url = repository.url(self, &format!("manifests/{target}"))?;
        let head = Call::new(
            Method::HEAD,
            url,
            &repository.host,
            vec![repository.scope("pull")],
        )
        .header(ACCEPT, &manifest::manifest_accept());
        let answer = self.send(&head).await?;
        // A failed HEAD has no body to explain itself, and some registries answer HEAD
        // badly: on anything but success the GET below gives the verdict, with the
        // registry's error message.
        let pinned = if answer.response.status().is_success() {
            docker_content_digest(&answer.response)
        } else {
            None
        };
        if let (Some(digest), Some(local)) = (&pinned, local)
            && let Some(bytes) = local(digest)
        {
            let content_type = answer
                .response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let url = answer.url.to_string();
            let manifest = Manifest::parse(&bytes, content_type, &url)?;
            return Ok(Resolved {
                descriptor: Descriptor::new(
                    manifest.media_type(),
                    digest.clone(),
                    bytes.len() as u64,
                ),
                manifest,
                bytes: Bytes::from(bytes),
                repository: repository.clone(),
            });
        }
        self.fetch_manifest_at(repository, &target, pinned.as_ref())
            .await
    }

    /// Fetches a manifest of `reference`'s repository by digest (an index entry) and
    /// verifies it.
    pub async fn fetch_manifest(&self, reference: &Reference, digest: &Digest) -> Result<Resolved> {
        let candidates = Repository::candidates(self, reference);
        let last = candidates.len() - 1;
        for (i, repository) in candidates.into_iter().enumerate() {
            match self
                .fetch_manifest_at(&repository, digest.as_str(), Some(digest))
                .await
            {
                Err(err) if i < last => {
                    tracing::warn!(mirror = %repository.host, %err, "mirror failed")
                }
                result => return result,
            }
        }
        unreachable_candidates(reference)
    }

    async fn fetch_manifest_at(
        &self,
        repository: &Repository,
        target: &str,
        expected: Option<&Digest>,
    ) -> Result<Resolved> {
        let by = expected.map_or(target.to_owned(), Digest::to_string);
        let url = repository.url(self, &format!("manifests/{by}"))?;
        let call = Call::new(
            Method::GET,
            url,
            &repository.host,
            vec![repository.scope("pull")],
        )
        .header(ACCEPT, &manifest::manifest_accept());
        let answer = expect_success(self.send(&call).await?, &repository.display).await?;
        let url = answer.url.to_string();
        let content_type = answer
            .response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let advertised = docker_content_digest(&answer.response);
        let bytes =
            read_limited(answer.response, &answer.url, manifest::MANIFEST_SIZE_LIMIT).await?;
        let digest = match expected.or(advertised.as_ref()) {
            Some(expected) => {
                let actual = digest_like(expected, &bytes)?;
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        url,
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            None => digest_like(&Digest::from_sha256_bytes(&[0; 32]), &bytes)?,
        };
        let manifest = Manifest::parse(&bytes, content_type.as_deref(), &url)?;
        Ok(Resolved {
            descriptor: Descriptor::new(manifest.media_type(), digest, bytes.len() as u64),
            manifest,
            bytes: Bytes::from(bytes),
            repository: repository.clone(),
        })
    }

    /// Pulls `reference` into `store`: the index (if any), the manifest for
    /// `options.platform`, the config and every layer. Blobs already present are skipped;
    /// the others are fetched concurrently, each verified before it is committed.
    pub async fn pull<S: ContentStore>(
        &self,
        reference: &Reference,
        store: &Arc<S>,
        options: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pulled> {
        let local = |digest: &Digest| read_local_manifest(&**store, digest);
        let resolved = self.resolve_with_local(reference, &local).await?;
        let origin = resolved.repository.host.clone();
        put_small(
            &**store,
            &resolved.descriptor.digest,
            &resolved.bytes,
            &origin,
        )?;
        let root = resolved.descriptor.clone();
        let (manifest, image) = match resolved.manifest {
            Manifest::Image(image) => (root.clone(), image),
            Manifest::Index(index) => {
                let chosen =
                    index
                        .select(&options.platform)
                        .ok_or_else(|| Error::NoMatchingPlatform {
                            reference: reference.to_string(),
                            platform: options.platform.to_string(),
                            available: index.platforms(),
                        })?;
                let child = match read_local_manifest(&**store, &chosen.digest) {
                    Some(bytes) => {
                        let manifest = Manifest::parse(
                            &bytes,
                            Some(&chosen.media_type),
                            &resolved.repository.display,
                        )?;
                        Resolved {
                            descriptor: Descriptor::new(
                                manifest.media_type(),
                                chosen.digest.clone(),
                                bytes.len() as u64,
                            ),
                            manifest,
                            bytes: Bytes::from(bytes),
                            repository: resolved.repository.clone(),
                        }
                    }
                    None => self.fetch_manifest(reference, &chosen.digest).await?,
                };
                put_small(&**store, &child.descriptor.digest, &child.bytes, &origin)?;
                let Manifest::Image(image) = child.manifest else {
                    return Err(Error::InvalidManifest {
                        url: child.repository.host,
                        reason: format!("index entry {} is not an image manifest", chosen.digest),
                    });
                };
                (child.descriptor, image)
            }
        };
        let concurrency = options
            .concurrency
            .unwrap_or_else(|| self.concurrency_for(reference))
            .max(1);
        let repositories = Arc::new(Repository::candidates(self, reference));
        progress.event(ProgressEvent::Manifest {
            digest: manifest.digest.clone(),
            config: image.config.digest.clone(),
            layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
        });
        let mut blobs: Vec<Descriptor> = image.blobs().cloned().collect();
        if let Some(tap) = &options.tap {
            // The tap needs the config (diff IDs) before the first layer byte arrives.
            let config = blobs.remove(0);
            self.fetch_blob_from_any(
                &repositories,
                &config,
                &**store,
                &*progress,
                None,
                options.allow_foreign_layers,
            )
            .await?;
            tap.begin(&config.digest, &image.layers);
        }
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for descriptor in blobs {
            let (client, store, progress) = (self.clone(), store.clone(), progress.clone());
            let (repositories, semaphore) = (repositories.clone(), semaphore.clone());
            let allow_foreign = options.allow_foreign_layers;
            let tap = options.tap.clone();
            tasks.spawn(async move {
                let _permit = match semaphore.clone().try_acquire_owned() {
                    Ok(permit) => Ok(permit),
                    Err(_) => {
                        progress.event(ProgressEvent::Waiting {
                            digest: descriptor.digest.clone(),
                        });
                        semaphore.acquire_owned().await
                    }
                };
                client
                    .fetch_blob_from_any(
                        &repositories,
                        &descriptor,
                        &*store,
                        &*progress,
                        tap.as_deref(),
                        allow_foreign,
                    )
                    .await
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(Error::Protocol {
                    url: reference.to_string(),
                    reason: format!("a blob transfer task failed: {e}"),
                })
            });
            if let (Err(err), None) = (result, &first_error) {
                // One failure stops the others: their ingests stay for a later resume.
                tasks.abort_all();
                first_error = Some(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(Pulled {
                root,
                manifest,
                image,
            }),
        }
    }

    /// Fetches one blob of `reference`'s repository into `store` (no request when it is
    /// present), streaming and verifying it.
    pub async fn fetch_blob<S: ContentStore>(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &S,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome> {
        let repositories = Repository::candidates(self, reference);
        self.fetch_blob_from_any(&repositories, descriptor, store, progress, None, false)
            .await
    }

    async fn fetch_blob_from_any<S: ContentStore>(
        &self,
        repositories: &[Repository],
        descriptor: &Descriptor,
        store: &S,
        progress: &dyn Progress,
        tap: Option<&dyn BlobTap>,
        allow_foreign: bool,
    ) -> Result<BlobOutcome> {
        let digest = &descriptor.digest;
        if !digest.algorithm().is_verifiable() {
            return Err(Error::UnverifiableDigest {
                digest: digest.clone(),
            });
        }
        if store
            .contains(digest)
            .map_err(|e| store_error("local store", digest, e))?
        {
            progress.event(ProgressEvent::AlreadyPresent {
                digest: digest.clone(),
            });
            return Ok(BlobOutcome::AlreadyPresent);
        }
        let last = repositories.len().saturating_sub(1);
        for (i, repository) in repositories.iter().enumerate() {
            let url = repository.url(self, &format!("blobs/{digest}"))?;
            let scopes = vec![repository.scope("pull")];
            match self
                .fetch_blob_url(
                    url,
                    &repository.host,
                    scopes,
                    descriptor,
                    store,
                    progress,
                    tap,
                )
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(err)
                    if i < last
                        && matches!(
                            err.kind(),
                            ErrorKind::NotFound | ErrorKind::Transport | ErrorKind::Status
                        ) =>
                {
                    tracing::warn!(mirror = %repository.host, %err, "mirror failed; trying the next source");
                }
                Err(err) if err.kind() == ErrorKind::NotFound && !descriptor.urls.is_empty() => {
                    return self
                        .fetch_foreign(descriptor, store, progress, tap, allow_foreign)
                        .await;
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::NotFound {
            url: String::new(),
            what: digest.to_string(),
            code: None,
        })
    }

    async fn fetch_foreign<S: ContentStore>(
        &self,
        descriptor: &Descriptor,
        store: &S,
        progress: &dyn Progress,
        tap: Option<&dyn BlobTap>,
        allow: bool,
    ) -> Result<BlobOutcome> {
        let refused = || Error::ForeignLayer {
            digest: descriptor.digest.clone(),
            urls: descriptor.urls.join(", "),
        };
        if !allow {
            return Err(refused());
        }
        let mut last_error = None;
        for text in &descriptor.urls {
            let Ok(url) = Url::parse(text) else { continue };
            let host = url.host_str().unwrap_or_default().to_owned();
            let plain_ok = is_loopback(&host) || self.inner.config.settings(&host).insecure;
            if url.scheme() != "https" && !(url.scheme() == "http" && plain_ok) {
                continue;
            }
            match self
                .fetch_blob_url(url, &host, Vec::new(), descriptor, store, progress, tap)
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(refused))
    }

    /// Opens the ingest for `digest`, waiting while another writer holds it. `None` when
    /// the other writer committed the blob meanwhile.
    async fn open_writer<S: ContentStore>(
        &self,
        store: &S,
        digest: &Digest,
        url: &str,
    ) -> Result<Option<S::Writer>> {
        let started = self.inner.clock.now();
        loop {
            match store.writer(&pull_ingest_ref(digest)) {
                // Another process may have committed the blob between the caller's check
                // and this writer (it held the ingest, then released it on commit): look
                // again now that the ingest is ours, so the blob is not fetched twice.
                Ok(writer)
                    if store
                        .contains(digest)
                        .map_err(|e| store_error(url, digest, e))? =>
                {
                    let _ = writer.abort();
                    return Ok(None);
                }
                Ok(writer) => return Ok(Some(writer)),
                Err(err) if err.kind() == stencil_layerstore::ErrorKind::InUse => {
                    if store
                        .contains(digest)
                        .map_err(|e| store_error(url, digest, e))?
                    {
                        return Ok(None);
                    }
                    if self.inner.clock.now().duration_since(started) > IN_USE_WAIT {
                        return Err(store_error(url, digest, err));
                    }
                    self.inner.clock.sleep(IN_USE_POLL).await;
                }
                Err(err) => return Err(store_error(url, digest, err)),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob_url<S: ContentStore>(
        &self,
        url: Url,
        host: &str,
        scopes: Vec<String>,
        descriptor: &Descriptor,
        store: &S,
        progress: &dyn Progress,
        tap: Option<&dyn BlobTap>,
    ) -> Result<BlobOutcome> {
        let (digest, size) = (&descriptor.digest, descriptor.size);
        let url_text = url.to_string();
        let store_err = |e| store_error(&url_text, digest, e);
        let io_err = |e: std::io::Error| Error::Store {
            digest: digest.clone(),
            reason: e.to_string(),
        };
        let Some(mut writer) = self.open_writer(store, digest, &url_text).await? else {
            progress.event(ProgressEvent::AlreadyPresent {
                digest: digest.clone(),
            });
            return Ok(BlobOutcome::AlreadyPresent);
        };
        let mut offset = writer.offset();
        if offset > size {
            writer.truncate(0).map_err(store_err)?;
            offset = 0;
        }
        progress.event(ProgressEvent::Started {
            digest: digest.clone(),
            size,
            offset,
        });
        // Only a transfer from the first byte can feed a tap: bytes kept from an earlier
        // run are in the ingest file, not in this stream.
        let stream = tap
            .filter(|_| offset == 0)
            .and_then(|tap| tap.open(descriptor));
        let mut pipeline = IngestPipeline::start(writer, stream);
        let transferred = self
            .transfer(
                &url,
                host,
                &scopes,
                descriptor,
                offset,
                &mut pipeline,
                progress,
            )
            .await;
        let worker_error = |failure| match failure {
            WorkerFailure::Io(e) => io_err(e),
            WorkerFailure::Store(e) => store_error(&url_text, digest, e),
            WorkerFailure::Lost(reason) => Error::Store {
                digest: digest.clone(),
                reason,
            },
        };
        let (writer, mut stream, written) = pipeline.finish().await.map_err(worker_error)?;
        if let Err(failure) = written {
            // The store refused the bytes themselves (more than the descriptor's size):
            // they are wrong content, not an interruption, so nothing is kept to resume.
            // A full disk keeps nothing either: the partial download would hold the very
            // space the user has to free, and a resume needs that space anyway.
            let disk_full = matches!(&failure, WorkerFailure::Io(e) if is_disk_full(e));
            let err = worker_error(failure);
            if disk_full
                || matches!(
                    err.kind(),
                    ErrorKind::SizeMismatch | ErrorKind::DigestMismatch
                )
            {
                let _ = writer.abort();
            }
            return Err(err);
        }
        if let Err(err) = transferred {
            // An interrupted transfer keeps its ingest for a later resume; wrong content
            // does not.
            if matches!(err.kind(), ErrorKind::SizeMismatch) {
                let _ = writer.abort();
            }
            return Err(err);
        }
        // The writer hashes everything (including bytes from before a resume) with sha256;
        // checking here gives the precise error and removes the bad ingest. Other
        // algorithms are checked by the commit itself.
        if digest.algorithm() == Algorithm::Sha256 {
            let actual = writer.digest();
            if &actual != digest {
                let _ = writer.abort();
                return Err(Error::DigestMismatch {
                    url: url_text,
                    expected: digest.clone(),
                    actual,
                });
            }
            progress.event(ProgressEvent::Verified {
                digest: digest.clone(),
            });
            // The tap may finish its work while the blob is synced and renamed.
            if let Some(stream) = stream.take() {
                stream.finish();
            }
        }
        let commit = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || writer.commit(size, &digest))
        };
        commit
            .await
            .map_err(|e| Error::Store {
                digest: digest.clone(),
                reason: e.to_string(),
            })?
            .map_err(store_err)?;
        if digest.algorithm() != Algorithm::Sha256 {
            progress.event(ProgressEvent::Verified {
                digest: digest.clone(),
            });
        }
        if let Some(stream) = stream.take() {
            stream.finish();
        }
        progress.event(ProgressEvent::Done {
            digest: digest.clone(),
        });
        Ok(BlobOutcome::Fetched)
    }

    /// Moves the bytes of one blob from `offset` on into `pipeline`, resuming with `Range`
    /// after interruptions. Returns once `descriptor.size` bytes were queued.
    #[allow(clippy::too_many_arguments)]
    async fn transfer<W: ContentWriter + Send + 'static>(
        &self,
        url: &Url,
        host: &str,
        scopes: &[String],
        descriptor: &Descriptor,
        mut offset: u64,
        pipeline: &mut IngestPipeline<W>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let (digest, size) = (&descriptor.digest, descriptor.size);
        let stopped = || Error::Store {
            digest: digest.clone(),
            reason: "the ingest writer stopped".into(),
        };
        let mut failures = 0;
        while offset < size {
            let mut call = Call::new(Method::GET, url.clone(), host, scopes.to_vec());
            if offset > 0 {
                call = call.header(RANGE, &format!("bytes={offset}-"));
            }
            let answer = expect_success(self.send(&call).await?, digest.as_str()).await?;
            let resumed_at = match answer.response.status() {
                StatusCode::PARTIAL_CONTENT => content_range_start(&answer.response),
                _ => Some(0),
            };
            if resumed_at != Some(offset) {
                // The server ignored the range (or answered another one): start over.
                pipeline.truncate().await.map_err(|_| stopped())?;
                offset = 0;
                if resumed_at != Some(0) {
                    continue;
                }
            }
            let mut response = answer.response;
            let interruption = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let next = offset + chunk.len() as u64;
                        if next > size {
                            return Err(Error::SizeMismatch {
                                url: url.to_string(),
                                digest: digest.clone(),
                                expected: size,
                                actual: next,
                            });
                        }
                        pipeline.write(chunk).await.map_err(|_| stopped())?;
                        offset = next;
                        progress.event(ProgressEvent::Bytes {
                            digest: digest.clone(),
                            done: offset,
                            size,
                        });
                    }
                    Ok(None) => break None,
                    Err(source) => break Some(source),
                }
            };
            if offset >= size {
                break;
            }
            failures += 1;
            if failures >= self.inner.retry.attempts {
                return Err(match interruption {
                    Some(source) => Error::Transport {
                        url: url.to_string(),
                        source,
                    },
                    None => Error::Protocol {
                        url: url.to_string(),
                        reason: format!("the body of {digest} ended at {offset} of {size} bytes"),
                    },
                });
            }
            tracing::debug!(%url, offset, "blob transfer interrupted; resuming");
            progress.event(ProgressEvent::Resuming {
                digest: digest.clone(),
                offset,
            });
            self.inner
                .clock
                .sleep(self.inner.retry.backoff(failures))
                .await;
        }
        Ok(())
    }
}

fn unreachable_candidates<T>(reference: &Reference) -> Result<T> {
    // Candidates always hold the origin; this only guards the loop's type.
    Err(Error::NotFound {
        url: String::new(),
        what: reference.to_string(),
        code: None,
    })
}

fn docker_content_digest(response: &reqwest::Response) -> Option<Digest> {
    let value = response
        .headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?;
    Digest::parse(value.trim()).ok()
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// Whether `error` says the disk (or the user's quota) is full.
fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || error.kind() == std::io::ErrorKind::QuotaExceeded
}
