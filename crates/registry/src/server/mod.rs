//! The registry server behind `stencil registry serve`: OCI Distribution v1.1 over HTTP,
//! backed by the stencil store itself.
//!
//! Blobs and manifests pushed to the server land in the store's content store (streamed
//! into an ingest, verified, committed atomically), and blobs already there are served
//! without a copy. Repository `P` of a server whose served domain is `D` (by default
//! `localhost:PORT`) is the image name `D/P` in the store: pushed images are recorded and
//! tagged there (so `stencil images` lists them and garbage collection keeps them), and
//! images stencil pulled or built under `D/P` are served as they are. Which repository
//! holds which blob or manifest is kept by a [`RepositoryIndex`] ([`StoreIndex`]: the
//! store's records plus a [`FileIndex`] under `ROOT/registry/` for what the store does not
//! record, such as artifacts, indexes and blob links). Authentication is none (loopback only), htpasswd Basic, or Bearer
//! tokens from the server's own token endpoint ([`AuthMode`]), with an [`AccessPolicy`].
//!
//! It deliberately does not unpack, run or garbage-collect anything: deleting a blob or a
//! manifest removes it from its repository, and the store's garbage collection decides
//! when the bytes go.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stencil_registry::server::Error> {
//! use std::sync::Arc;
//! use stencil_layerstore::Store;
//! use stencil_registry::server::{Server, ServerConfig};
//!
//! let store = Arc::new(Store::open("/var/lib/stencil")?);
//! let server = Server::bind(ServerConfig::loopback(), store).await?;
//! println!("serving {} on {}", server.served_domain(), server.local_addr());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

mod auth;
mod body;
mod error;
mod index;
mod manifest;
mod name;
mod routes;
mod store_index;
mod tls;
mod uploads;

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use stencil_layerstore::Store;
use stencil_layerstore::content::LocalContent;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use auth::{AccessPolicy, AccessRule, Action, AuthMode, Htpasswd, Principal};
pub use error::{Error, ErrorKind, Result};
pub use index::{FileIndex, ManifestRecord, RepositoryIndex};
pub use name::RepositoryName;
pub use store_index::StoreIndex;
pub use tls::TlsFiles;

use crate::{Clock, SystemClock};

/// The largest manifest or index accepted, in bytes (the spec's recommended limit).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// How a server listens and behaves. Start from [`ServerConfig::new`] or
/// [`ServerConfig::loopback`] and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address to listen on (port 0: any free port, see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// The registry domain whose repositories this server holds; `localhost:PORT` when
    /// unset, with the port actually bound.
    pub served_domain: Option<String>,
    /// How clients authenticate.
    pub auth: AuthMode,
    /// Who may do what when `auth` is not [`AuthMode::None`].
    pub policy: AccessPolicy,
    /// Serve a non-loopback address without authentication anyway.
    pub allow_insecure_listen: bool,
    /// Accept `DELETE` of manifests, tags and blobs.
    pub allow_delete: bool,
    /// An upload session idle for this long is aborted.
    pub upload_expiry: Duration,
    /// The largest blob accepted, in bytes; `None` for no limit.
    pub max_blob_size: Option<u64>,
    /// The most upload sessions open at once; more are refused with 429.
    pub max_uploads: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a request body may send nothing before the request is failed (an upload
    /// keeps what arrived and can be resumed).
    pub body_idle_timeout: Duration,
    /// The clock (upload expiry, token lifetimes, sweeps).
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    /// Defaults for `listen`: no auth, deletes allowed, uploads expire after an idle hour,
    /// at most 1024 of them open, no blob size limit, 30 s to send headers, 60 s of silence
    /// in a body.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            served_domain: None,
            auth: AuthMode::None,
            policy: AccessPolicy::default(),
            allow_insecure_listen: false,
            allow_delete: true,
            upload_expiry: Duration::from_secs(3600),
            max_blob_size: None,
            max_uploads: 1024,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
            tls: None,
        }
    }

    /// [`ServerConfig::new`] on `127.0.0.1`, any free port.
    pub fn loopback() -> ServerConfig {
        ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) content: LocalContent,
    pub(crate) index: Arc<dyn RepositoryIndex>,
    pub(crate) uploads: uploads::Uploads,
    pub(crate) auth: auth::Authenticator,
    pub(crate) domain: String,
    pub(crate) allow_delete: bool,
    pub(crate) max_blob_size: Option<u64>,
    pub(crate) max_uploads: usize,
    pub(crate) body_idle_timeout: Duration,
    /// Whether connections are TLS (for the token realm's scheme).
    pub(crate) tls: bool,
}

/// A bound, not yet running, registry server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    addr: SocketAddr,
    state: Arc<State>,
    header_timeout: Duration,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
    /// Keeps the store (and so its root) alive as long as the server.
    _store: Arc<Store>,
}

impl Server {
    /// Binds `config.listen` and prepares to serve `store`, with a [`StoreIndex`]: pushed
    /// images are recorded and tagged in the store, and images already there under the
    /// served domain are served.
    pub async fn bind(config: ServerConfig, store: Arc<Store>) -> Result<Server> {
        let index = Arc::new(StoreIndex::new(store.clone()));
        Server::bind_with_index(config, store, index).await
    }

    /// [`Server::bind`] with another repository index.
    pub async fn bind_with_index(
        config: ServerConfig,
        store: Arc<Store>,
        index: Arc<dyn RepositoryIndex>,
    ) -> Result<Server> {
        if !config.listen.ip().is_loopback()
            && config.auth.is_none()
            && !config.allow_insecure_listen
        {
            return Err(Error::InsecureListen {
                addr: config.listen,
            });
        }
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let domain = config
            .served_domain
            .clone()
            .unwrap_or_else(|| format!("localhost:{}", addr.port()));
        if RepositoryName::parse(&domain, "probe").is_none() {
            return Err(Error::InvalidDomain {
                domain,
                reason: "not a registry domain of an image reference (host[:port])".to_owned(),
            });
        }
        let content = store.content().clone();
        let uploads =
            uploads::Uploads::new(content.clone(), config.clock.clone(), config.upload_expiry);
        // A few directory reads at start-up: not worth a blocking thread.
        let leftovers = uploads.remove_leftovers()?;
        if leftovers > 0 {
            tracing::info!(
                count = leftovers,
                "removed uploads left by an earlier server"
            );
        }
        let state = State {
            content,
            index,
            uploads,
            auth: auth::Authenticator::new(config.auth, config.policy, config.clock.clone()),
            domain,
            allow_delete: config.allow_delete,
            max_blob_size: config.max_blob_size,
            max_uploads: config.max_uploads,
            body_idle_timeout: config.body_idle_timeout,
            tls: tls.is_some(),
        };
        Ok(Server {
            tls,
            listener,
            addr,
            state: Arc::new(state),
            header_timeout: config.header_timeout,
            sweep_interval: (config.upload_expiry / 4)
                .clamp(Duration::from_millis(50), Duration::from_secs(60)),
            clock: config.clock,
            _store: store,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry domain of the repositories served (`localhost:PORT` by default).
    pub fn served_domain(&self) -> &str {
        &self.state.domain
    }

    /// Serves one connection that is already open, over any byte stream, until the client
    /// closes it: the same request handling as [`Server::run`] without the listener, for
    /// in-process use (fuzzing feeds raw HTTP/1 bytes through an in-memory pipe). `peer`
    /// is the address logged for the connection.
    pub async fn serve_stream<S>(&self, stream: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // The sender lives until the connection ends, so the connection never sees a stop.
        let (_stop_sender, stop_receiver) = watch::channel(false);
        serve_connection(
            self.state.clone(),
            stream,
            peer,
            self.header_timeout,
            stop_receiver,
        )
        .await;
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish (at most 10 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let (stop_sender, stop_receiver) = watch::channel(false);
        let sweeper = {
            let state = self.state.clone();
            let clock = self.clock.clone();
            let interval = self.sweep_interval;
            tokio::spawn(async move {
                loop {
                    clock.sleep(interval).await;
                    state.uploads.sweep().await;
                }
            })
        };
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = %self.addr, domain = %self.state.domain, "registry listening");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let (state, timeout, stop) = (self.state.clone(), self.header_timeout, stop_receiver.clone());
                        match self.tls.clone() {
                            None => {
                                connections.spawn(serve_connection(state, stream, peer, timeout, stop));
                            }
                            Some(tls) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                                connections.spawn(async move {
                                    // The handshake gets the same deadline as request headers.
                                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                        Ok(Ok(stream)) => serve_connection(state, stream, peer, timeout, stop).await,
                                        Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(error) => {
                        // Running out of file descriptors is transient: wait and go on.
                        tracing::warn!(%error, "accepting a connection failed");
                        self.clock.sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop_sender.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still running after 10 s of shutdown were cut");
        }
        connections.abort_all();
        sweeper.abort();
        Ok(())
    }
}

/// Serves `config` from `store` until `shutdown` completes: [`Server::bind`] then
/// [`Server::run`].
pub async fn serve(
    config: ServerConfig,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Server::bind(config, store).await?.run(shutdown).await
}

async fn serve_connection<S>(
    state: Arc<State>,
    stream: S,
    peer: SocketAddr,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(routes::handle(state, request, peer).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// `bytes` random bytes from the kernel, as lowercase hex: upload ids and tokens.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // /dev/urandom never blocks once the system has booted and cannot run short; a
    // failure to read it means a broken system, where refusing to mint ids is right.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .expect("reading /dev/urandom");
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}
