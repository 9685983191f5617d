//! `RUN` steps: a command in a container of the root filesystem built so far.
//!
//! The container gets its own namespaces (no network unless `--network host`), the
//! image's environment, working directory and user; its output goes to the build's output
//! (nowhere with `-q`). The caller mounts the root filesystem and commits it afterwards.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// What a `RUN` step runs.
#[derive(Debug, Clone)]
pub(super) struct Container {
    /// The mounted, writable root filesystem.
    pub rootfs: PathBuf,
    /// The command.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// `USER`.
    pub user: String,
    /// Share the host's network.
    pub network_host: bool,
    /// Discard the command's output.
    pub quiet: bool,
}

/// Runs `container` to completion and returns its exit status.
pub(super) fn run(container: &Container, out: &mut dyn Write) -> Result<i32> {
    let _ = out;
    bail!(
        "RUN {:?} (in {}, as {:?} in {}, {} variables, network {}, quiet {}) needs the container runtime, which this stencil does not have yet",
        container.args,
        container.rootfs.display(),
        container.user,
        container.cwd,
        container.env.len(),
        if container.network_host {
            "host"
        } else {
            "none"
        },
        container.quiet
    )
}
