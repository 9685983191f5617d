//! `cargo xtask bench`: stencil against the tools its users would otherwise pick, on real
//! images, with physical floors measured in the same run; writes `docs/benchmarks.md`.
//!
//! Not part of CI: it needs root, the Debian mirror once (fixtures) and several minutes.
//! Fixtures are cached under `target/bench/` ([`fixtures`]); the stores of pull and unpack
//! cases live on one tmpfs mounted at `target/bench/tmpfs` (the shared disks here vary 3×
//! between runs for small-file writes), unmounted at the end.
//!
//! ```text
//! cargo xtask bench [--runs N] [--filter TEXT]... [--serve-seconds S] [--serve-runs N] [--no-write]
//! ```
//! A case runs when its id (`pull/minbase-gzip`, `unpack/app-zstd`, `serve/mixed`, …)
//! contains one of the filters (all cases without a filter).

mod cases;
mod fixtures;
mod load;
mod measure;
mod report;
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::shell::{cargo, ensure_packages, run, workspace_root};
use fixtures::Fixtures;
use servers::Server;

/// Debian packages of the peers and fixture tools (package, program that shows it).
const PACKAGES: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("docker-registry", "docker-registry"),
    ("zstd", "zstd"),
    ("curl", "curl"),
];

const USAGE: &str =
    "usage: cargo xtask bench [--runs N] [--filter TEXT]... [--serve-seconds S] [--serve-runs N] [--no-write]

  --runs N           timed runs of each contender, alternating (default 5, at least 1)
  --filter TEXT      only cases whose id contains TEXT (repeatable), e.g. pull, unpack/app,
                     push, fetch, warm, saveload, serve, run, commit, zstd
  --serve-seconds S  length of each registry load run (default 60)
  --serve-runs N     registry load runs of each server, alternating who goes first (default 1)
  --no-write         print the report, leave docs/benchmarks.md alone";

/// Command-line options.
pub struct Options {
    /// Timed runs per contender.
    pub runs: usize,
    /// Case id substrings; empty means every case.
    pub filters: Vec<String>,
    /// Seconds of each registry load run.
    pub serve_seconds: u64,
    /// Registry load runs of each server.
    pub serve_runs: usize,
    /// Write docs/benchmarks.md.
    pub write: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            runs: 5,
            filters: Vec::new(),
            serve_seconds: 60,
            serve_runs: 1,
            write: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
            };
            match arg.as_str() {
                "--runs" => {
                    options.runs = value("--runs")?.parse().context("--runs takes a number")?;
                    if options.runs == 0 {
                        bail!("--runs must be at least 1");
                    }
                }
                "--filter" => options.filters.push(value("--filter")?),
                "--serve-seconds" => {
                    options.serve_seconds = value("--serve-seconds")?
                        .parse()
                        .context("--serve-seconds takes a number")?;
                }
                "--serve-runs" => {
                    options.serve_runs = value("--serve-runs")?
                        .parse()
                        .context("--serve-runs takes a number")?;
                    if options.serve_runs == 0 {
                        bail!("--serve-runs must be at least 1");
                    }
                }
                "--no-write" => options.write = false,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown bench option {other:?}\n\n{USAGE}"),
            }
        }
        Ok(options)
    }

    /// Whether case `id` is selected.
    pub fn wants(&self, id: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| id.contains(f.as_str()))
    }
}

/// Everything a case needs.
pub struct Bench {
    /// Fixtures (layers, images, the OCI layout).
    pub fx: Fixtures,
    /// The release `stencil` binary.
    pub stencil: PathBuf,
    /// The registry client's bench example (`pull_bench --pull REF DIR`: fetch, no unpack).
    pub pull_bench: PathBuf,
    /// cow-fs's `apply LAYER DIR` example (decompress + apply, nothing else).
    pub apply: PathBuf,
    /// docker-registry holding every fixture image, access log on (for request counts).
    pub registry: Server,
    /// Scratch on the tmpfs.
    pub tmp: PathBuf,
    /// Scratch on disk (same filesystem as the fixtures).
    pub disk: PathBuf,
    /// Where each run's stderr goes.
    pub log: PathBuf,
    /// Options.
    pub options: Options,
}

impl Bench {
    /// `REGISTRY/bench/NAME:TAG` on the fixture registry.
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/bench/{name}:{tag}", self.registry.host())
    }

    /// `stencil --root ROOT ARGS…`.
    pub fn stencil(&self, root: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.stencil);
        command
            .arg("--root")
            .arg(root)
            .args(args)
            .env_remove("STENCIL_ROOT")
            .env_remove("STENCIL_LOG");
        command
    }

    /// `podman --root R --runroot R2 ARGS…` with a private store under `base`.
    pub fn podman(&self, base: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(base.join("podman-root"))
            .arg("--runroot")
            .arg(podman_runroot(base))
            .args(args);
        command
    }
}

/// podman's run root for a store under `base`: podman refuses run roots longer than 50
/// characters, so it lives under `/run/stencil-bench/` (a tmpfs too), named after `base`.
pub fn podman_runroot(base: &Path) -> PathBuf {
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/run/stencil-bench").join(name)
}

/// Runs the bench.
pub fn run_bench(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench needs root (debootstrap, tmpfs and overlay mounts, podman)");
    }
    ensure_packages(PACKAGES)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let release = target.join("release");
    let dir = target.join("bench");
    eprintln!("xtask bench: fixtures under {}", dir.display());
    let fx = Fixtures::build(&dir)?;
    run(cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "stencil",
        "-p",
        "stencil-registry",
        "-p",
        "stencil-cow-fs",
        "--bins",
        "--examples",
    ]))?;
    let tmp = dir.join("tmpfs");
    fixtures::mount_tmpfs(&tmp, "10g")?;
    let _unmount = Unmount(tmp.clone());
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk)?;
    let registry = Server::docker_registry(
        &dir.join("registry"),
        &dir.join("registry.log"),
        servers::free_port()?,
        true,
    )?;
    for image in &fx.images {
        for compression in fixtures::Compression::ALL {
            let tag = image.tag(compression);
            run(Command::new("skopeo").args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", fx.layout.display()),
                &format!(
                    "docker://{}/bench/{}:{}",
                    registry.host(),
                    image.name,
                    compression.name()
                ),
            ]))?;
        }
    }
    let bench = Bench {
        fx,
        stencil: release.join("stencil"),
        pull_bench: release.join("examples/pull_bench"),
        apply: release.join("examples/apply"),
        registry,
        log: dir.join("last-run.log"),
        tmp,
        disk,
        options,
    };
    let started = report::now();
    let saved = bench.fx.dir.join("results");
    let commit = source_commit();
    cases::run_all(&bench, |case| {
        let when = format!("{} with stencil at {commit}", report::now());
        report::save_case(&bench, case, &when, &saved)
    })?;
    let text = report::render(&bench, &started, &cases::all_ids(), &saved)?;
    println!("{text}");
    if bench.options.write {
        let path = workspace_root().join("docs/benchmarks.md");
        report::write(&path, &text)?;
        eprintln!("xtask bench: wrote {}", path.display());
    }
    fixtures::remove_if_present(&bench.disk)?;
    fixtures::remove_if_present(Path::new("/run/stencil-bench"))?;
    Ok(())
}

/// The commit the measured binaries were built from (`+changes` when the crates differ
/// from it), so that figures kept from older runs say what they measured.
fn source_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace_root())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--", "crates"]).is_empty();
    match (head.is_empty(), dirty) {
        (true, _) => "an unknown commit".to_owned(),
        (false, true) => format!("{head}+changes"),
        (false, false) => head,
    }
}

/// Unmounts the tmpfs (and whatever is mounted inside it) when the bench ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        fixtures::unmount_under(&self.0);
    }
}
