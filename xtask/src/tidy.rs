//! Tidy checks: project rules that plain `cargo test` enforces on every source file.
//!
//! - every `.rs` file opens with a `//!` comment saying what it is;
//! - no unfinished or debugging markers in landed code (the macros for unfinished work,
//!   debug printing, ignored tests and tests that expect a panic);
//! - member crates take third-party versions from `[workspace.dependencies]` only;
//! - library crates deny missing docs;
//! - the fuzz targets stay a workspace of their own, out of the normal build.

use std::path::{Path, PathBuf};

use crate::shell::workspace_root;

/// Markers assembled at run time so that this file does not flag itself.
fn forbidden_markers() -> Vec<String> {
    vec![
        format!("{}!(", "todo"),
        format!("{}!(", "unimplemented"),
        format!("{}!(", "dbg"),
        format!("#[{}", "ignore"),
        format!("#[{}", "should_panic"),
    ]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let root = workspace_root();
    for top in ["crates", "xtask", "tests", "fuzz"] {
        rust_files(&root.join(top), &mut files);
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[track_caller]
fn check(problems: Vec<String>, rule: &str) {
    assert!(problems.is_empty(), "{rule}:\n  {}", problems.join("\n  "));
}

#[test]
fn finds_the_sources_it_checks() {
    let files = all_rust_files();
    let this = workspace_root().join("xtask/src/tidy.rs");
    assert!(files.contains(&this), "walker missed {}", this.display());
    assert!(files.len() >= 10, "only {} .rs files found", files.len());
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let problems = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|path| relative(&path))
        .collect();
    check(problems, "files that do not open with a `//!` doc comment");
}

#[test]
fn no_unfinished_or_debugging_markers() {
    let markers = forbidden_markers();
    let mut problems = Vec::new();
    for path in all_rust_files() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            for marker in &markers {
                if line.contains(marker.as_str()) {
                    problems.push(format!(
                        "{}:{}: {}",
                        relative(&path),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    check(problems, "forbidden markers in landed code");
}

#[test]
fn member_crates_take_versions_from_the_workspace() {
    let mut problems = Vec::new();
    let root = workspace_root();
    let manifests = [
        "crates/reference",
        "crates/layerstore",
        "crates/cow-fs",
        "crates/registry",
        "crates/cli",
        "xtask",
        "tests",
    ];
    for member in manifests {
        let path = root.join(member).join("Cargo.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut in_dependencies = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_dependencies = line.contains("dependencies");
                continue;
            }
            if in_dependencies
                && !line.is_empty()
                && !line.starts_with('#')
                && !line.contains("workspace = true")
            {
                problems.push(format!("{member}/Cargo.toml: {line}"));
            }
        }
    }
    check(
        problems,
        "dependencies not declared with `workspace = true`",
    );
}

#[test]
fn library_crates_deny_missing_docs() {
    let problems = ["reference", "layerstore", "cow-fs", "registry", "cli"]
        .iter()
        .map(|name| {
            workspace_root()
                .join("crates")
                .join(name)
                .join("src/lib.rs")
        })
        .filter(|path| {
            !std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains("#![deny(missing_docs)]")
        })
        .map(|path| relative(&path))
        .collect();
    check(problems, "library crates without #![deny(missing_docs)]");
}

#[test]
fn fuzz_targets_stay_out_of_the_main_workspace() {
    let root = workspace_root();
    let main = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let fuzz = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap_or_default();
    let mut problems = Vec::new();
    if !main.contains("exclude = [\"fuzz\"]") {
        problems.push("Cargo.toml: the workspace must exclude \"fuzz\"".to_owned());
    }
    if !fuzz.lines().any(|line| line.trim() == "[workspace]") {
        problems.push("fuzz/Cargo.toml: must be a workspace of its own".to_owned());
    }
    // Each target the xtask runs must exist as a bin of the fuzz package.
    for target in crate::fuzz::TARGETS {
        if !fuzz.contains(&format!("fuzz_targets/{target}.rs")) {
            problems.push(format!("fuzz/Cargo.toml: no [[bin]] for target {target}"));
        }
    }
    check(problems, "fuzz workspace");
}
