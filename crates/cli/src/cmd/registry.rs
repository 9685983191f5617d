//! `stencil registry serve`: the built-in registry, serving the store it runs on.
//!
//! Images pushed to it are recorded in the store (`stencil images` lists them as
//! `localhost:PORT/NAME`), and images the store already holds under the served domain are
//! served without a copy. It listens on loopback without authentication by default; any
//! other address needs `--htpasswd` (Basic or, with `--auth token`, Bearer tokens from its
//! own token endpoint) unless `--insecure-listen` forces it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use stencil_registry::server::{AccessPolicy, AuthMode, Htpasswd, Server, ServerConfig, TlsFiles};

use crate::engine::Engine;

/// `stencil registry …` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Serve the store as an OCI Distribution registry.
    Serve(ServeArgs),
}

/// How clients authenticate to `registry serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthKind {
    /// HTTP Basic on every request.
    Basic,
    /// Bearer tokens from the server's own `/token` endpoint (the Docker token flow).
    Token,
}

/// Arguments of `stencil registry serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// The registry domain clients use in image names (default: localhost:PORT).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub domain: Option<String>,
    /// Users allowed in (bcrypt htpasswd file, as `htpasswd -B` writes).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// With --htpasswd: Basic on every request, or Bearer tokens.
    #[arg(long, value_enum, default_value = "token")]
    pub auth: AuthKind,
    /// Serve HTTPS with this certificate chain (PEM)…
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// …and this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without authentication anyway.
    #[arg(long)]
    pub insecure_listen: bool,
    /// Refuse DELETE requests.
    #[arg(long)]
    pub no_delete: bool,
}

/// Runs `stencil registry serve` until Ctrl-C or SIGTERM.
pub async fn serve(engine: &Engine, args: &ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(args.listen);
    config.served_domain = args.domain.clone();
    config.allow_insecure_listen = args.insecure_listen;
    config.allow_delete = !args.no_delete;
    if let Some(path) = &args.htpasswd {
        let users = Htpasswd::load(path)
            .with_context(|| format!("cannot read the users of {}", path.display()))?;
        config.auth = match args.auth {
            AuthKind::Basic => AuthMode::Basic {
                users,
                realm: "stencil".to_owned(),
            },
            AuthKind::Token => AuthMode::Token {
                users,
                service: "stencil-registry".to_owned(),
                lifetime: Duration::from_secs(300),
                realm: None,
            },
        };
        config.policy = AccessPolicy::authenticated_users();
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let store = Arc::new(
        stencil_layerstore::Store::open(engine.root())
            .with_context(|| format!("cannot open the store at {}", engine.root().display()))?,
    );
    let server = Server::bind(config, store)
        .await
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    // The first line tells scripts where to reach the server when --listen used port 0.
    println!(
        "serving {} at {scheme}://{} (store {})",
        server.served_domain(),
        server.local_addr(),
        engine.root().display()
    );
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Refuses `--insecure-listen` paired with credentials, which would be contradictory.
pub fn validate(args: &ServeArgs) -> Result<()> {
    if args.insecure_listen && args.htpasswd.is_some() {
        bail!("--insecure-listen is for serving without --htpasswd; drop one of them");
    }
    Ok(())
}
