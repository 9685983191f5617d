//! The end-to-end harness: run the `stencil` binary in a private store and explain failures.
//!
//! Every test gets a fresh root under a temporary directory. A failed expectation prints
//! the command line, its exit status, stdout, stderr and a listing of the store root, so a
//! CI log alone tells what went wrong.
//!
//! Peers (skopeo, umoci, docker-registry, busybox) are found with [`peer`]: when one is
//! missing the test skips with a printed reason, except under `CI=true`, where that is a
//! failure (CI installs them through `cargo xtask test`).

pub mod hostile_server;
pub mod peers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private stencil store and the binary that works on it.
pub struct Stencil {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

/// What one run of a command produced.
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// Exit status code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    listing: String,
}

impl Stencil {
    /// A fresh store in a new temporary directory.
    pub fn new() -> Stencil {
        let dir = tempfile::Builder::new()
            .prefix("stencil-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Stencil {
            binary: stencil_binary(),
            dir,
        }
    }

    /// The store root given to every command as `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A scratch directory beside the root, for files the test creates.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// `stencil --root ROOT ARGS…` as a command to start in the background.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(self.root()).args(args);
        command.env_remove("STENCIL_ROOT").env_remove("STENCIL_LOG");
        command
    }

    /// Runs `stencil fsck` and asserts that it reports a consistent store.
    #[track_caller]
    pub fn assert_consistent(&self) {
        let checked = self.run(&["fsck"]);
        checked.success();
        assert!(
            checked.stdout.ends_with("store is consistent\n"),
            "{checked}"
        );
    }

    /// Runs `stencil --root ROOT ARGS…` and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    /// Like [`Stencil::run`], with extra environment variables and, when given, `stdin`
    /// written to the command's standard input (else it reads nothing).
    pub fn run_with(&self, args: &[&str], env: &[(&str, &Path)], stdin: Option<&[u8]>) -> Run {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(self.root()).args(args);
        command.env_remove("STENCIL_ROOT").env_remove("STENCIL_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        if let Some(input) = stdin {
            let file = self.dir.path().join(".stdin");
            std::fs::write(&file, input)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
            let opened = std::fs::File::open(&file)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", file.display()));
            command.stdin(opened);
        }
        let rendered = format!(
            "stencil --root {} {}",
            self.root().display(),
            args.join(" ")
        );
        let output: Output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        Run {
            command: rendered,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            listing: listing(&self.root()),
        }
    }
}

impl Default for Stencil {
    fn default() -> Self {
        Stencil::new()
    }
}

impl Run {
    /// Asserts the exit code, explaining the whole run on failure.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        if self.code != Some(code) {
            panic!("expected exit code {code}\n{self}");
        }
        self
    }

    /// Asserts success (exit 0).
    #[track_caller]
    pub fn success(&self) -> &Run {
        self.expect_code(0)
    }

    /// Asserts that stdout equals `expected` exactly.
    #[track_caller]
    pub fn stdout_is(&self, expected: &str) -> &Run {
        if self.stdout != expected {
            panic!("stdout differs; expected:\n{expected}\n{self}");
        }
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Run {
        if !self.stderr.contains(needle) {
            panic!("stderr lacks {needle:?}\n{self}");
        }
        self
    }

    /// Stdout split into lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        writeln!(f, "--- stderr:\n{}", self.stderr)?;
        write!(f, "--- store root:\n{}", self.listing)
    }
}

/// The `stencil` binary built beside this test executable (`target/<profile>/stencil`).
pub fn stencil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STENCIL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    // target/<profile>/deps/<test>-<hash> → target/<profile>/stencil
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let binary = profile_dir.join("stencil");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p stencil` (cargo xtask test does)",
        binary.display()
    );
    binary
}

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the tests run as root; when not, says that `test` is skipped, and fails under
/// `CI=true`, where tests that need root (namespaces, mounts) must run.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(!in_ci(), "{test} needs root under CI=true");
        eprintln!("skipping {test}: needs root for namespaces and mounts");
    }
    root
}

/// `len` bytes that gzip cannot shrink, the same for the same `seed` (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The path of a peer program, or `None` (with a printed reason) when it is missing outside
/// CI. Under `CI=true` a missing peer fails the test.
pub fn peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let reason = format!("peer `{program}` is not installed (cargo xtask test installs it)");
        assert!(!in_ci(), "{reason}");
        eprintln!("skipping: {reason}");
    }
    found
}

fn listing(root: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![root.to_path_buf()];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            count += 1;
            if count > 200 {
                out.push_str("  … (listing cut at 200 entries)\n");
                return out;
            }
            let path = entry.path();
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let meta = entry.metadata().ok();
            let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let _ = writeln!(out, "  {shown} ({size} bytes)");
            if meta.is_some_and(|m| m.is_dir()) {
                stack.push(path);
            }
        }
    }
    if out.is_empty() {
        out.push_str("  (empty or absent)\n");
    }
    out
}
