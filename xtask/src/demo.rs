//! `cargo xtask demo`: stencil's main job on embedded defaults, with no internet.
//!
//! It builds the CLI, then runs it as a new user would, printing each command before its
//! output. Today that is naming images in all three namespaces with `stencil ref`; the
//! demo grows with pull, run, commit and build as those land.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::shell::{cargo, run, workspace_root};

/// Builds stencil and runs the demo script against a private, temporary store root.
pub fn run_demo() -> Result<()> {
    run(cargo().args([
        "build",
        "--quiet",
        "--package",
        "stencil",
        "--bin",
        "stencil",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let stencil = target.join("debug").join("stencil");
    let root = target.join("demo-root");
    std::fs::create_dir_all(&root)?;

    let stencil_cmd = |args: &[&str]| {
        let mut command = Command::new(&stencil);
        command.arg("--root").arg(&root).args(args);
        command
    };

    println!("# Image names in the three namespaces: official, user and self-hosted.");
    run(&mut stencil_cmd(&[
        "ref",
        "ubuntu",
        "jpetazzo/clock",
        "localhost:5000/wordpress",
    ]))?;
    println!(
        "\n# The same names, fully described (tags default to `latest`; digests pin content)."
    );
    run(&mut stencil_cmd(&[
        "ref",
        "--json",
        "ubuntu:22.04",
        "jpetazzo/clock",
        "localhost:5000/wordpress@sha256:4c5f3b4c0c8c0bb8cf8cf5a6c6fb3b0e9b4b9f9c3f6d1c1fbd9a2b7c1e0e5d7a",
    ]))?;
    println!("\n# A name that is not valid is refused with a reason (exit status 1).");
    let mut invalid = stencil_cmd(&["ref", "Ubuntu"]);
    eprintln!("$ stencil ref Ubuntu");
    let status = invalid.status()?;
    println!("(exit status {})", status.code().unwrap_or(-1));
    Ok(())
}
