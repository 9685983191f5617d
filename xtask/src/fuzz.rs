//! `cargo xtask fuzz [--time SECS] [TARGET...]`: builds the cargo-fuzz targets in `fuzz/`
//! and runs each for a bounded time, with a corpus seeded from the tests' own inputs.
//!
//! Seeds come from three places: the files committed under `fuzz/seeds/TARGET/`, the
//! string literals of the tests and sources that exercise the same parser (references,
//! `WWW-Authenticate` values, JSON documents, Dockerfiles), and for `layer_apply` every layer the
//! cow-fs apply and breakout tests build (their harness writes them out when
//! `STENCIL_FUZZ_SEEDS` is set). Corpora grow in `fuzz/corpus/TARGET/` (not committed);
//! crashes land in `fuzz/artifacts/TARGET/` and make the task fail. It needs cargo-fuzz
//! (installed with `cargo install cargo-fuzz` when missing) and nightly flags, which it
//! enables with `RUSTC_BOOTSTRAP=1` on the stable toolchain.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::shell::{cargo, on_path, run, workspace_root};

/// Every target, in the order they run.
pub const TARGETS: [&str; 6] = [
    "reference",
    "documents",
    "www_authenticate",
    "layer_apply",
    "registry_server",
    "dockerfile",
];

/// What one target's run did.
struct Outcome {
    target: String,
    executions: Option<u64>,
    crashed: bool,
    artifacts: Vec<PathBuf>,
}

/// Parses the task's arguments and runs the chosen targets.
pub fn run_fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().context("--time needs a number of seconds")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--time {value:?}: not a number of seconds"))?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => bail!(
                "unknown fuzz argument {other:?}; targets are {}",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    if !on_path("cargo-fuzz") {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = workspace_root().join("fuzz");
    // Only the chosen targets: the build of each takes minutes.
    let mut build = fuzz_command(&fuzz_dir);
    build.args(["build", "-O"]);
    if targets.len() == 1 {
        build.arg(&targets[0]);
    }
    run(&mut build)?;
    let mut outcomes = Vec::new();
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeded = seed(target, &corpus)?;
        eprintln!("xtask: {target}: {seeded} seed inputs, {seconds} s");
        outcomes.push(run_target(&fuzz_dir, target, &corpus, seconds)?);
    }
    eprintln!("\n{:<18} {:>14}  result", "TARGET", "EXECUTIONS");
    for outcome in &outcomes {
        let executions = outcome
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let result = if outcome.crashed {
            format!("CRASH {:?}", outcome.artifacts)
        } else {
            "no crash".to_owned()
        };
        eprintln!("{:<18} {executions:>14}  {result}", outcome.target);
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (reproduce with `cargo fuzz run -O TARGET ARTIFACT` in fuzz/ \
             with RUSTC_BOOTSTRAP=1, then add the input as a regression test)",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn fuzz_command(fuzz_dir: &Path) -> Command {
    let mut command = cargo();
    command
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .arg("fuzz");
    command
}

fn run_target(fuzz_dir: &Path, target: &str, corpus: &Path, seconds: u64) -> Result<Outcome> {
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let before = listing(&artifacts);
    let mut command = fuzz_command(fuzz_dir);
    command
        .args(["run", "-O", target])
        .arg(corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args([
            "-print_final_stats=1",
            "-rss_limit_mb=2048",
            "-timeout=30",
            "-max_len=1048576",
        ])
        .stderr(Stdio::piped());
    eprintln!(
        "$ cargo fuzz run -O {target} {} -- -max_total_time={seconds} …",
        corpus.display()
    );
    let output = command
        .output()
        .with_context(|| format!("could not start the fuzz target {target}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    let executions = log
        .lines()
        .filter_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    let new_artifacts: Vec<PathBuf> = listing(&artifacts)
        .difference(&before)
        .map(|name| artifacts.join(name))
        .collect();
    let crashed = !output.status.success() || !new_artifacts.is_empty();
    if crashed {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(Outcome {
        target: target.to_owned(),
        executions,
        crashed,
        artifacts: new_artifacts,
    })
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Fills `corpus` with the target's seeds; returns how many inputs it then holds.
fn seed(target: &str, corpus: &Path) -> Result<usize> {
    std::fs::create_dir_all(corpus)?;
    let root = workspace_root();
    let committed = root.join("fuzz/seeds").join(target);
    if let Ok(entries) = std::fs::read_dir(&committed) {
        for entry in entries.flatten() {
            std::fs::copy(entry.path(), corpus.join(entry.file_name()))?;
        }
    }
    let literals = |dirs: &[&str], keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut found = BTreeSet::new();
        for dir in dirs {
            for file in rust_sources(&root.join(dir)) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                found.extend(string_literals(&text).into_iter().filter(|s| keep(s)));
            }
        }
        found.into_iter().collect()
    };
    let inputs: Vec<Vec<u8>> = match target {
        "reference" => literals(&["crates/reference", "tests"], &|s| {
            !s.is_empty() && s.len() < 512 && !s.contains(' ')
        })
        .into_iter()
        .map(String::into_bytes)
        .collect(),
        "www_authenticate" => literals(&["crates/registry"], &|s| {
            s.to_ascii_lowercase().contains("realm")
        })
        .into_iter()
        .map(String::into_bytes)
        .collect(),
        // The first byte picks the declared media type (see the target).
        "documents" => literals(&["crates", "tests"], &|s| {
            s.trim_start().starts_with('{') && s.contains('"')
        })
        .into_iter()
        .enumerate()
        .map(|(n, s)| {
            let mut input = vec![(n % 5) as u8];
            input.extend(s.into_bytes());
            input
        })
        .collect(),
        "layer_apply" => {
            let layers = corpus.join("..").join(".layer-seeds");
            let _ = std::fs::remove_dir_all(&layers);
            std::fs::create_dir_all(&layers)?;
            run(cargo()
                .args(["test", "-q", "-p", "stencil-cow-fs"])
                .args(["--test", "apply", "--test", "breakout"])
                .env("STENCIL_FUZZ_SEEDS", &layers))?;
            let mut inputs = Vec::new();
            for entry in std::fs::read_dir(&layers)?.flatten() {
                inputs.push(std::fs::read(entry.path())?);
            }
            std::fs::remove_dir_all(&layers)?;
            inputs
        }
        // Every Dockerfile the builder's tests and sources spell out.
        "dockerfile" => literals(&["crates/cli/src/build", "tests"], &|s| {
            s.lines()
                .any(|line| line.trim_start().to_ascii_uppercase().starts_with("FROM "))
        })
        .into_iter()
        .map(String::into_bytes)
        .collect(),
        _ => Vec::new(),
    };
    for input in inputs {
        let name = format!("seed-{:016x}", fnv1a(&input));
        std::fs::write(corpus.join(name), input)?;
    }
    Ok(listing(corpus).len())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name() == "target" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The string literals of Rust source text: `"…"` with escapes resolved, and raw
/// strings `r"…"`, `r#"…"#`. Approximate (a lexer, not a parser), which is all seeds need.
fn string_literals(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                // A char literal such as '"' must not open a string; lifetimes pass.
                if bytes.get(i + 2) == Some(&b'\'') {
                    i += 3;
                    continue;
                }
                if bytes.get(i + 1) == Some(&b'\\') && bytes.get(i + 3) == Some(&b'\'') {
                    i += 4;
                    continue;
                }
                i += 1;
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                match text[open + 1..].find(&close) {
                    Some(end) => {
                        found.push(text[open + 1..open + 1 + end].to_owned());
                        i = open + 1 + end + close.len();
                    }
                    None => break,
                }
            }
            b'"' => {
                let mut value = String::new();
                let mut chars = text[i + 1..].char_indices();
                let mut end = None;
                while let Some((at, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(i + 1 + at + 1);
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('r') => value.push('\r'),
                            Some('0') => value.push('\0'),
                            Some('\n') => {
                                // A line continuation skips the next line's indentation.
                                while chars.clone().next().is_some_and(|(_, c)| c.is_whitespace()) {
                                    chars.next();
                                }
                            }
                            Some(other) => value.push(other),
                            None => {}
                        },
                        c => value.push(c),
                    }
                }
                match end {
                    Some(end) => {
                        found.push(value);
                        i = end;
                    }
                    None => break,
                }
            }
            _ => i += 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::string_literals;

    #[test]
    fn string_literals_of_source_text() {
        let text = r####"let a = "x\"y"; // "comment"
            let b = r#"{"k": 1}"#; let c = '"'; let d = "multi\
                line"; fn f<'a>(s: &'a str) {} let e = "\\n";"####;
        assert_eq!(
            string_literals(text),
            ["x\"y", "{\"k\": 1}", "multiline", "\\n"]
        );
    }
}
