//! `cargo xtask test`: the one command that CI runs and that a developer runs before pushing.
//!
//! Steps, stopping at the first failure: install missing test peers (Debian packages, as
//! root), `cargo fmt --check`, `cargo clippy -D warnings`, build the `stencil` binary the
//! end-to-end tests drive, then `cargo test --workspace` (unit, doc, end-to-end and tidy).

use std::process::Command;

use anyhow::{Result, bail};

use crate::shell::{cargo, on_path, run};

/// Debian packages the tests drive, with a program that shows each is installed.
const PEERS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("busybox-static", "busybox"),
];

/// Runs every check CI runs, in order.
pub fn run_all() -> Result<()> {
    ensure_peers()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

fn ensure_peers() -> Result<()> {
    let missing: Vec<&str> = PEERS
        .iter()
        .filter(|(_, program)| !on_path(program))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        let message = format!(
            "test peers missing: {} (install them with `apt-get install -y {}` as root)",
            missing.join(", "),
            missing.join(" ")
        );
        if in_ci {
            bail!(message);
        }
        eprintln!("xtask: warning: {message}; tests that need them will say so");
        return Ok(());
    }
    eprintln!("xtask: installing test peers: {}", missing.join(", "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}
