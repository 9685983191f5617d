//! `cargo xtask test`: the one command that CI runs and that a developer runs before pushing.
//!
//! Steps, stopping at the first failure: install missing test peers (Debian packages, as
//! root), `cargo fmt --check`, `cargo clippy -D warnings`, build the `stencil` binary the
//! end-to-end tests drive, then `cargo test --workspace` (unit, doc, end-to-end and tidy).

use anyhow::Result;

use crate::shell::{cargo, ensure_packages, run};

/// Debian packages the tests drive, with a program that shows each is installed.
const PEERS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("busybox-static", "busybox"),
    ("runc", "runc"),
    ("apache2-utils", "htpasswd"),
    ("openssl", "openssl"),
    ("podman", "podman"),
    ("xz-utils", "xz"),
    ("bzip2", "bzip2"),
];

/// Runs every check CI runs, in order.
pub fn run_all() -> Result<()> {
    ensure_packages(PEERS)?;
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
