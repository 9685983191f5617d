//! Project automation for stencil, run as `cargo xtask <task>`.
//!
//! - `cargo xtask test`: everything CI runs (peers install, fmt, clippy, build, tests).
//! - `cargo xtask demo`: the main job of stencil on embedded defaults, offline.
//! - `cargo xtask bench`: stencil against its peers on real images (not CI; writes
//!   docs/benchmarks.md).
//! - `cargo xtask fuzz [--time SECS] [TARGET...]`: each cargo-fuzz target for a bounded time.
//!
//! This is a plain binary so it needs nothing beyond cargo; it is not a library and
//! nothing else depends on it. Its `tidy` module holds tests run by plain `cargo test`.

mod bench;
mod demo;
mod fuzz;
mod shell;
mod test;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <test|demo|bench|fuzz>

  test   install missing test peers, then fmt, clippy, build and every test (what CI runs)
  demo   build stencil and show its main job on embedded defaults (no internet)
  bench  stencil against podman, skopeo, umoci, tar and docker-registry; writes
         docs/benchmarks.md (root; `cargo xtask bench --help`)
  fuzz   [--time SECS] [TARGET...]: run each fuzz target (default 60 s each) with seeded
         corpora; targets: reference, documents, www_authenticate, layer_apply,
         registry_server";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("test") => test::run_all(),
        Some("demo") => demo::run_demo(),
        Some("bench") => {
            let rest: Vec<String> = std::env::args().skip(2).collect();
            bench::run_bench(&rest)
        }
        Some("fuzz") => fuzz::run_fuzz(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("xtask: unknown task {:?}\n\n{USAGE}", other.unwrap_or(""));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
