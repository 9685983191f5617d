//! `RUN` steps: a command in a container of the root filesystem built so far.
//!
//! The container gets its own namespaces (no network unless `--network host`), the
//! image's environment, working directory and user, through the built-in runtime
//! ([`crate::container::runtime`]). Its standard output and error are the build's own
//! (stencil's standard streams), or nothing with `-q`. The caller mounts the root
//! filesystem before and commits it after.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::container::netfiles::network_files;
use crate::container::runtime::{self, DEFAULT_PATH, Network, Spec, Stdio};

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
    /// The container's host name (its ID, as docker gives it).
    pub hostname: String,
    /// Share the host's network.
    pub network_host: bool,
    /// Discard the command's output.
    pub quiet: bool,
}

/// Runs `container` to completion and returns its exit status.
pub(super) fn run(container: &Container) -> Result<i32> {
    let mut env = container.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    // /etc/hosts, /etc/hostname and /etc/resolv.conf, as docker build gives RUN; the
    // files live as long as the step.
    let files = tempfile::Builder::new()
        .prefix("stencil-run-")
        .tempdir()
        .context("cannot create a directory for the network files of RUN")?;
    let network = if container.network_host {
        Network::Host
    } else {
        Network::None
    };
    let volumes = network_files(
        files.path(),
        &container.rootfs,
        &container.hostname,
        network,
        &[],
        &[],
    )
    .context("cannot write the network files of RUN")?;
    let spec = Spec {
        rootfs: container.rootfs.clone(),
        args: container.args.clone(),
        env,
        cwd: container.cwd.clone(),
        user: container.user.clone(),
        hostname: container.hostname.clone(),
        network,
        volumes,
        ..Spec::default()
    };
    let stdio = if container.quiet {
        let null = |what: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map(std::os::fd::OwnedFd::from)
                .with_context(|| format!("cannot open /dev/null for the {what} of RUN"))
        };
        Stdio::Files {
            stdin: None,
            stdout: null("output")?,
            stderr: null("errors")?,
        }
    } else {
        Stdio::Inherit
    };
    let started =
        runtime::start(&spec, stdio).with_context(|| format!("cannot run {:?}", container.args))?;
    let status = started
        .wait()
        .with_context(|| format!("cannot wait for {:?}", container.args))?;
    Ok(status)
}
