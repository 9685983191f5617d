//! Fuzz target: the registry server's request handling, in process. Each input is raw
//! bytes sent on one connection (HTTP/1 requests, pipelined or not) through an in-memory
//! pipe; the server must answer or close without panicking, and within a bounded time.
//!
//! The first byte picks the server: one without authentication (every route reachable)
//! or one with token authentication (the `Authorization` parser and the token endpoint).
//! Both serve one store in a temporary directory that lives as long as the process, so
//! what one input pushes, a later one can pull.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stencil_layerstore::Store;
use stencil_registry::server::{AuthMode, Htpasswd, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `fuzz:pw`, bcrypt cost 4 so that a right guess costs little.
const USERS: &str = "fuzz:$2y$04$QjGWUxr14yGKqxXDpCUDLeoA7JwPBcMzITiQLWxNciNYp7O1Csyki\n";

struct Servers {
    runtime: tokio::runtime::Runtime,
    open: Server,
    token: Server,
    _root: tempfile::TempDir,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let root = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(root.path()).expect("store"));
        let (open, token) = runtime.block_on(async {
            let mut config = ServerConfig::loopback();
            config.served_domain = Some("localhost:5000".into());
            config.body_idle_timeout = Duration::from_millis(200);
            config.header_timeout = Duration::from_millis(200);
            let open = Server::bind(config.clone(), store.clone())
                .await
                .expect("bind");
            config.auth = AuthMode::Token {
                users: Htpasswd::parse(USERS, std::path::Path::new("fuzz-users")).expect("users"),
                service: "fuzz".into(),
                lifetime: Duration::from_secs(300),
                realm: None,
            };
            let token = Server::bind(config, store).await.expect("bind");
            (open, token)
        });
        Servers {
            runtime,
            open,
            token,
            _root: root,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((first, request)) = data.split_first() else {
        return;
    };
    let servers = servers();
    let server = if first & 1 == 0 {
        &servers.open
    } else {
        &servers.token
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    servers.runtime.block_on(async {
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        let serving = server.serve_stream(server_side, peer);
        let talking = async {
            let _ = client.write_all(request).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let finished = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(serving, talking)
        })
        .await;
        assert!(
            finished.is_ok(),
            "the server did not finish a connection within 10 s"
        );
    });
});
