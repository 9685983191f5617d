//! Upload sessions: one ingest of the content store per `POST /v2/NAME/blobs/uploads/`.
//!
//! A session owns an ingest writer between requests, so a chunked upload hashes each byte
//! once instead of re-reading the prefix on every `PATCH`. Each request takes the session's
//! lock, so two requests on one session never interleave. A session idle for longer than
//! the configured expiry is aborted by [`Uploads::sweep`], which the server runs
//! periodically; ingests left by an earlier server process are removed at start-up. This
//! module does not parse HTTP or verify digests (the writer's commit does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stencil_layerstore::content::{ContentWriter, Ingester, LocalContent, LocalWriter};

use super::name::RepositoryName;
use crate::Clock;

/// Prefix of the ingest refs of uploads, so that leftovers can be recognised.
const INGEST_PREFIX: &str = "registry-upload-";

/// One upload in progress.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) repo: RepositoryName,
    /// `None` once committed, aborted or lost.
    pub(crate) writer: Option<LocalWriter>,
    pub(crate) last_active: Instant,
}

/// The upload sessions of a server.
#[derive(Debug)]
pub(crate) struct Uploads {
    content: LocalContent,
    clock: Arc<dyn Clock>,
    expiry: Duration,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

/// The ingest ref of upload `id`.
pub(crate) fn ingest_ref(id: &str) -> String {
    format!("{INGEST_PREFIX}{id}")
}

impl Uploads {
    pub(crate) fn new(content: LocalContent, clock: Arc<dyn Clock>, expiry: Duration) -> Uploads {
        Uploads {
            content,
            clock,
            expiry,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes upload ingests that no session of this process owns and no writer holds:
    /// what a previous server left behind. Called once at start-up.
    pub(crate) fn remove_leftovers(&self) -> stencil_layerstore::Result<usize> {
        let owned: Vec<String> = self.sessions().keys().map(|id| ingest_ref(id)).collect();
        let mut removed = 0;
        for status in self.content.ingests()? {
            let Some(ingest) = status.ingest_ref else {
                continue;
            };
            if ingest.starts_with(INGEST_PREFIX) && !status.in_use && !owned.contains(&ingest) {
                self.content.abort(&ingest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Registers a new session `id` for `repo`, writing through `writer` (opened on the
    /// ingest ref [`ingest_ref`] of `id`).
    pub(crate) fn insert(&self, id: String, repo: RepositoryName, writer: LocalWriter) {
        let session = Session {
            id: id.clone(),
            repo,
            writer: Some(writer),
            last_active: self.clock.now(),
        };
        self.sessions()
            .insert(id, Arc::new(tokio::sync::Mutex::new(session)));
    }

    /// The session `id`, when it exists and belongs to `repo`.
    pub(crate) async fn get(
        &self,
        id: &str,
        repo: &RepositoryName,
    ) -> Option<tokio::sync::OwnedMutexGuard<Session>> {
        let session = self.sessions().get(id).cloned()?;
        let guard = session.lock_owned().await;
        (guard.repo == *repo && guard.writer.is_some()).then_some(guard)
    }

    /// Marks a session as used now.
    pub(crate) fn touch(&self, session: &mut Session) {
        session.last_active = self.clock.now();
    }

    /// Forgets the session `id` (after a commit, an abort or a lost writer).
    pub(crate) fn forget(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// The number of sessions open.
    pub(crate) fn open_count(&self) -> usize {
        self.sessions().len()
    }

    /// Aborts sessions idle for longer than the expiry; returns how many. Sessions busy
    /// with a request are active by definition and skipped.
    pub(crate) async fn sweep(&self) -> usize {
        let now = self.clock.now();
        let candidates: Vec<(String, Arc<tokio::sync::Mutex<Session>>)> = self
            .sessions()
            .iter()
            .map(|(id, session)| (id.clone(), session.clone()))
            .collect();
        let mut expired = 0;
        for (id, session) in candidates {
            let Ok(mut guard) = session.try_lock_owned() else {
                continue;
            };
            if now.saturating_duration_since(guard.last_active) < self.expiry {
                continue;
            }
            self.forget(&id);
            if let Some(writer) = guard.writer.take() {
                let aborted = tokio::task::spawn_blocking(move || writer.abort()).await;
                if let Ok(Err(error)) = aborted {
                    tracing::warn!(upload = %id, %error, "aborting an expired upload failed");
                }
            }
            tracing::info!(upload = %id, repository = %guard.repo, "expired an abandoned upload");
            expired += 1;
        }
        expired
    }
}
