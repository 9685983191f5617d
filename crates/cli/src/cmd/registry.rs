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
    /// Address to listen on: `IP:PORT`, `localhost:PORT`, or `:PORT` for every interface
    /// as the distribution registry takes it (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR:PORT", value_parser = parse_listen)]
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

/// Parses `--listen`: a socket address, `:PORT` (every interface), or `HOST:PORT` with a
/// name the resolver knows (`localhost:5000`).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let bad = || format!("invalid listen address {text:?}: give IP:PORT, HOST:PORT or :PORT");
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host == "localhost" {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("invalid listen address {text:?}: cannot resolve {host:?}"))
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

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_takes_the_forms_the_distribution_registry_takes() {
        let parsed = |text: &str| parse_listen(text).map(|a| a.to_string());
        assert_eq!(parsed("127.0.0.1:5000"), Ok("127.0.0.1:5000".to_owned()));
        assert_eq!(parsed("[::1]:5000"), Ok("[::1]:5000".to_owned()));
        assert_eq!(parsed(":5000"), Ok("0.0.0.0:5000".to_owned()));
        assert_eq!(parsed("localhost:0"), Ok("127.0.0.1:0".to_owned()));
        for bad in ["5000:", "localhost", ":http", "", "127.0.0.1:99999"] {
            let error = parse_listen(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
