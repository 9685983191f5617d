//! End-to-end tests of `stencil registry serve`: stencil, skopeo and the docker token flow
//! against the built-in registry, each server started by the test on a free port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use stencil_e2e::peers::{LayoutBuilder, run_peer, skopeo_copy};
use stencil_e2e::{Stencil, peer, stencil_binary};

/// A `stencil registry serve` process on its own store, killed on drop.
struct Served {
    child: Child,
    host: String,
    _store: Stencil,
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        let store = Stencil::new();
        let mut child = Command::new(stencil_binary())
            .arg("--root")
            .arg(store.root())
            .args(["registry", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stencil registry serve: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the serve banner: {e}"));
        // "serving localhost:PORT at http://127.0.0.1:PORT (store …)"
        let host = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_owned();
        assert!(host.starts_with("localhost:"), "banner {line:?}");
        Served {
            child,
            host,
            _store: store,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stencil_and_skopeo_push_and_pull_through_the_built_in_registry() {
    let served = Served::start(&[]);
    let client = Stencil::new();
    let Some(layout) = LayoutBuilder::new(client.scratch(), "v1") else {
        return;
    };
    let layout = layout.layer(|root| {
        std::fs::write(root.join("greeting"), "hi\n").unwrap_or_else(|e| panic!("{e}"));
    });
    // skopeo pushes in, stencil pulls it.
    let from_skopeo = format!("{}/peers/skopeo:v1", served.host);
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{from_skopeo}")) else {
        return;
    };
    client.run(&["pull", "-q", &from_skopeo]).success();
    // stencil pushes under a new name, skopeo reads it back with the same digest.
    let pushed = format!("{}/peers/stencil:v2", served.host);
    client.run(&["tag", &from_skopeo, &pushed]).success();
    client.run(&["push", &pushed]).success();
    let Some(skopeo) = peer("skopeo") else {
        return;
    };
    let digest = |name: &str| {
        run_peer(Command::new(&skopeo).args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{name}"),
        ]))
        .trim()
        .to_owned()
    };
    assert_eq!(digest(&from_skopeo), digest(&pushed));
    // A fresh store pulls what stencil pushed.
    let other = Stencil::new();
    let pulled = other.run(&["pull", &pushed]);
    pulled.success();
    assert!(
        pulled.stdout.contains("Status: Downloaded newer image"),
        "{pulled}"
    );
    other.run(&["fsck"]).success();
}

#[test]
fn the_token_flow_admits_the_right_user_only() {
    let Some(htpasswd) = peer("htpasswd") else {
        return;
    };
    let client = Stencil::new();
    let users = client.scratch().join("users");
    let line = run_peer(Command::new(htpasswd).args(["-Bbn", "ana", "s3cret"]));
    std::fs::write(&users, line).unwrap_or_else(|e| panic!("{e}"));
    let served = Served::start(&[
        "--htpasswd",
        &users.display().to_string(),
        "--auth",
        "token",
    ]);
    let Some(layout) = LayoutBuilder::new(client.scratch(), "v1") else {
        return;
    };
    let layout = layout.layer(|root| {
        std::fs::write(root.join("secret"), "42\n").unwrap_or_else(|e| panic!("{e}"));
    });
    let load = client.scratch().join("image.tar");
    let Some(()) = skopeo_copy(
        &layout.skopeo_name(),
        &format!(
            "oci-archive:{}:{}/private/app:1",
            load.display(),
            served.host
        ),
    ) else {
        return;
    };
    client
        .run(&["load", "-q", "-i", &load.display().to_string()])
        .success();
    let name = format!("{}/private/app:1", served.host);

    let docker_config = client.scratch().join("docker");
    let with_config = |args: &[&str], password: Option<&str>| {
        let mut command = Command::new(stencil_binary());
        command
            .arg("--root")
            .arg(client.root())
            .args(args)
            .env("DOCKER_CONFIG", &docker_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{e}"));
        if let (Some(password), Some(mut stdin)) = (password, child.stdin.take()) {
            use std::io::Write;
            let _ = stdin.write_all(password.as_bytes());
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    };
    // Anonymous push is refused with a message that says how to log in.
    let anonymous = with_config(&["push", &name], None);
    assert_eq!(anonymous.status.code(), Some(125));
    let message = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        message.contains("login") || message.contains("unauthorized"),
        "{message}"
    );
    // Wrong password: login fails.
    let wrong = with_config(
        &["login", "-u", "ana", "--password-stdin", &served.host],
        Some("nope"),
    );
    assert_eq!(
        wrong.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // Right password: login, push, and a fresh store pulls with the saved credentials.
    let right = with_config(
        &["login", "-u", "ana", "--password-stdin", &served.host],
        Some("s3cret"),
    );
    assert_eq!(
        right.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let pushed = with_config(&["push", &name], None);
    assert_eq!(
        pushed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    client.run(&["rmi", &name]).success();
    let pulled = with_config(&["pull", "-q", &name], None);
    assert_eq!(
        pulled.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
}

/// The served image of `served` under `name`, pushed by skopeo from a one-layer layout.
fn push_with_skopeo(served: &Served, client: &Stencil, name: &str) -> Option<String> {
    let layout = LayoutBuilder::new(client.scratch(), "v1")?.layer(|root| {
        std::fs::create_dir_all(root.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("etc/motd"), "served\n").unwrap_or_else(|e| panic!("{e}"));
    });
    let full = format!("{}/{name}", served.host);
    skopeo_copy(&layout.skopeo_name(), &format!("docker://{full}"))?;
    Some(full)
}

#[test]
fn podman_pulls_from_the_built_in_registry() {
    let served = Served::start(&[]);
    let client = Stencil::new();
    let Some(full) = push_with_skopeo(&served, &client, "peers/podman:v1") else {
        return;
    };
    let Some(podman) = peer("podman") else {
        return;
    };
    let root = client.scratch().join("podman-root");
    let runroot = client.scratch().join("podman-runroot");
    let podman = |args: &[&str]| {
        run_peer(
            Command::new(&podman)
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args(["--storage-driver", "vfs"])
                .args(args),
        )
    };
    podman(&["pull", "--tls-verify=false", &full]);
    let listed = podman(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"]);
    let stencil_digest = {
        let pulled = Stencil::new();
        pulled.run(&["pull", "-q", &full]).success();
        let inspected = pulled.run(&["images", "--digests", "--format", "{{.Digest}}", &full]);
        inspected.success();
        inspected.stdout.trim().to_owned()
    };
    assert!(stencil_digest.starts_with("sha256:"), "{stencil_digest}");
    assert!(
        listed.contains(&full) && listed.contains(&stencil_digest),
        "podman lists {full} with digest {stencil_digest}: {listed}"
    );
    // The file podman unpacked is the one pushed.
    let mounted = podman(&["image", "mount", &full]);
    let motd = std::fs::read_to_string(std::path::Path::new(mounted.trim()).join("etc/motd"))
        .unwrap_or_else(|e| panic!("reading etc/motd under podman's mount {mounted}: {e}"));
    podman(&["image", "unmount", &full]);
    assert_eq!(motd, "served\n");
}

#[test]
fn removing_local_images_never_breaks_what_the_registry_serves() {
    let served = Served::start(&[]);
    let client = Stencil::new();
    let Some(full) = push_with_skopeo(&served, &client, "peers/kept:v1") else {
        return;
    };
    // The push recorded the image in the server's own store; remove it there and collect
    // garbage, as a person cleaning the machine would.
    let owner = &served._store;
    owner.run(&["images", &full]).success();
    owner.run(&["rmi", &full]).success();
    owner.run(&["image", "prune", "-a", "-f"]).success();
    owner.run(&["fsck"]).success();
    // The repository still has its manifest and every blob it names.
    let fresh = Stencil::new();
    let pulled = fresh.run(&["pull", &full]);
    pulled.success();
    fresh.run(&["fsck"]).success();
    let mounted = fresh.run(&["image", "mount", &full]);
    mounted.success();
    let motd =
        std::fs::read_to_string(std::path::Path::new(mounted.stdout.trim()).join("etc/motd"))
            .unwrap_or_else(|e| panic!("reading etc/motd: {e}"));
    fresh.run(&["image", "unmount", &full]).success();
    assert_eq!(motd, "served\n");
}
