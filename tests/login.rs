//! End-to-end tests of `stencil login` and `stencil logout` against a docker-registry with
//! htpasswd (Basic) authentication, and of pulls and pushes with good and bad credentials.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use stencil_e2e::peers::DockerRegistry;
use stencil_e2e::{Run, Stencil};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// Runs stencil with `DOCKER_CONFIG` pointing into the test's own directory.
fn run(stencil: &Stencil, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let config_dir = docker_config_dir(stencil);
    stencil.run_with(args, &[("DOCKER_CONFIG", config_dir.as_path())], stdin)
}

fn docker_config_dir(stencil: &Stencil) -> PathBuf {
    stencil.scratch().join("docker-config")
}

fn config_json(stencil: &Stencil) -> serde_json::Value {
    let path = docker_config_dir(stencil).join("config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// A one-file tarball imported as `name`.
fn import(stencil: &Stencil, name: &str) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello", &b"hello\n"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let tarball = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let path = stencil.scratch().join("hello.tar");
    std::fs::write(&path, tarball).unwrap_or_else(|e| panic!("{e}"));
    stencil
        .run(&["import", &path.display().to_string(), name])
        .success();
}

#[test]
fn login_checks_stores_0600_and_logout_forgets() {
    let Some(registry) = DockerRegistry::start_with_htpasswd(USER, PASSWORD) else {
        return;
    };
    let host = registry.host();
    let stencil = Stencil::new();
    let image = format!("{host}/e2e/private:v1");
    import(&stencil, &image);

    // Without credentials the registry refuses the push. (The registry crate's hint names
    // the host without its port; the URL before it is exact.)
    run(&stencil, &["push", &image], None)
        .expect_code(125)
        .stderr_contains(&format!(
            "authentication required by http://{host}/v2/e2e/private/"
        ))
        .stderr_contains("stencil login");

    // Wrong credentials are refused and nothing is stored.
    let wrong = run(
        &stencil,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(b"wrong password\n"),
    );
    wrong
        .expect_code(125)
        .stderr_contains(&format!("login to {host} failed"))
        .stderr_contains("check the user name and password");
    assert!(config_json(&stencil).is_null(), "nothing stored\n{wrong}");

    // Right ones are stored, owner-only, with the trailing newline of stdin dropped.
    run(
        &stencil,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(format!("{PASSWORD}\n").as_bytes()),
    )
    .success()
    .stdout_is("Login Succeeded\n");
    let path = docker_config_dir(&stencil).join("config.json");
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(mode, 0o600, "config.json is private");
    let auth = config_json(&stencil)["auths"][&host]["auth"].clone();
    assert_eq!(
        auth, "YWxpY2U6Y29ycmVjdCBob3JzZQ==",
        "base64 of user:password"
    );

    // The stored credentials serve push and pull.
    let pushed = run(&stencil, &["push", &image], None);
    pushed.success();
    let other = Stencil::new();
    other
        .run_with(
            &["pull", "-q", &image],
            &[("DOCKER_CONFIG", docker_config_dir(&stencil).as_path())],
            None,
        )
        .success();

    // -p works too, with docker's warning.
    run(
        &stencil,
        &["login", "-u", USER, "-p", PASSWORD, &host],
        None,
    )
    .success()
    .stderr_contains("--password-stdin");

    run(&stencil, &["logout", &host], None)
        .success()
        .stdout_is(&format!("Removing login credentials for {host}\n"));
    assert!(
        config_json(&stencil)["auths"].get(&host).is_none(),
        "{}",
        config_json(&stencil)
    );
    run(&stencil, &["logout", &host], None)
        .success()
        .stdout_is(&format!("Not logged in to {host}\n"));
    stencil.assert_consistent();
}

#[test]
fn pull_with_wrong_stored_credentials_fails_with_125_and_stores_nothing() {
    let Some(registry) = DockerRegistry::start_with_htpasswd(USER, PASSWORD) else {
        return;
    };
    let host = registry.host();
    let owner = Stencil::new();
    let image = format!("{host}/e2e/locked:v1");
    import(&owner, &image);
    run(&owner, &["login", "-u", USER, "-p", PASSWORD, &host], None).success();
    run(&owner, &["push", &image], None).success();

    let stranger = Stencil::new();
    let dir = docker_config_dir(&stranger);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    // base64("alice:guess")
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "YWxpY2U6Z3Vlc3M="}}}}}}"#),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pulled = run(&stranger, &["pull", &image], None);
    pulled
        .expect_code(125)
        .stderr_contains(&format!(
            "cannot pull {image}: authentication required by http://{host}/v2/e2e/locked/manifests/v1"
        ))
        .stderr_contains("stencil login");
    assert_eq!(
        pulled.stderr.trim().lines().count(),
        1,
        "one clear line\n{pulled}"
    );
    stranger.run(&["images", "-aq"]).success().stdout_is("");
    stranger.assert_consistent();
}

#[test]
fn login_without_a_password_or_a_terminal_says_what_to_give() {
    let stencil = Stencil::new();
    run(&stencil, &["login", "-u", USER, "localhost:1"], None)
        .expect_code(125)
        .stderr_contains("--password-stdin");
    run(
        &stencil,
        &["login", "--password-stdin", "localhost:1"],
        Some(b"x"),
    )
    .expect_code(125)
    .stderr_contains("--username");
    run(
        &stencil,
        &["login", "-u", USER, "-p", "x", "bad host"],
        None,
    )
    .expect_code(125)
    .stderr_contains("invalid registry \"bad host\"");
    // Nothing listens on port 1: the message names the address.
    run(
        &stencil,
        &["login", "-u", USER, "-p", "x", "127.0.0.1:1"],
        None,
    )
    .expect_code(125)
    .stderr_contains("127.0.0.1:1");
    assert!(!Path::new(&docker_config_dir(&stencil).join("config.json")).exists());
}
