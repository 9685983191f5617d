//! The report: markdown tables of medians and ratios, written below the hand-written
//! introduction of `docs/benchmarks.md` (everything after the marker line is replaced).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::Bench;
use super::cases::Case;
use super::fixtures::Compression;
use super::measure::Role;

/// The line after which `docs/benchmarks.md` belongs to the bench.
const MARKER: &str =
    "<!-- Everything below is written by `cargo xtask bench`; edit above this line. -->";

/// The current UTC time as `date -u` prints it.
pub fn now() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
}

fn output(command: &mut Command) -> String {
    command
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB RAM", kib / 1048576.0))
        .unwrap_or_default();
    format!(
        "{} CPUs (`nproc`), {cpu}, {memory}, kernel {}",
        output(&mut Command::new("nproc")),
        output(Command::new("uname").arg("-r"))
    )
}

fn versions() -> String {
    let first_line = |program: &str, arg: &str| {
        output(Command::new(program).arg(arg))
            .lines()
            .next()
            .unwrap_or("?")
            .to_owned()
    };
    [
        first_line("podman", "--version"),
        first_line("skopeo", "--version"),
        first_line("umoci", "--version"),
        first_line("tar", "--version"),
        first_line("gzip", "--version"),
        first_line("zstd", "--version"),
    ]
    .join("; ")
}

/// Shortens the paths and hosts of a command line for the report.
fn shorten(bench: &Bench, text: &str) -> String {
    let release = bench.stencil.parent().map(|p| p.display().to_string());
    let mut text = text.replace(&bench.tmp.display().to_string(), "$TMPFS");
    text = text.replace(&bench.fx.dir.display().to_string(), "$BENCH");
    if let Some(release) = release {
        text = text.replace(&release, "target/release");
    }
    text.replace(&bench.registry.host(), "$REGISTRY")
}

/// The part of a case that goes in each section of the report.
struct Pieces {
    targets: String,
    ratios: String,
    block: String,
}

/// Separates the pieces of a case in its saved file.
const SPLIT: &str = "<!-- piece -->\n";

/// Saves one case's figures in `saved` (one file per case), so that a later run that
/// does not measure it still reports them.
pub fn save_case(bench: &Bench, case: &Case, date: &str, saved: &Path) -> Result<()> {
    std::fs::create_dir_all(saved)?;
    let pieces = render_case(bench, case, date);
    let file = saved.join(format!("{}.md", case.id.replace('/', "_")));
    std::fs::write(
        &file,
        format!(
            "{}{SPLIT}{}{SPLIT}{}",
            pieces.targets, pieces.ratios, pieces.block
        ),
    )
    .with_context(|| format!("cannot write {}", file.display()))
}

/// The generated part of the report: the last figures of every case saved in `saved`,
/// in the order of `order`.
pub fn render(bench: &Bench, started: &str, order: &[String], saved: &Path) -> Result<String> {
    let mut all = Vec::new();
    for id in order {
        let file = saved.join(format!("{}.md", id.replace('/', "_")));
        if let Ok(text) = std::fs::read_to_string(&file) {
            let parts: Vec<&str> = text.split(SPLIT).collect();
            if let [targets, ratios, block] = parts[..] {
                all.push(Pieces {
                    targets: targets.to_owned(),
                    ratios: ratios.to_owned(),
                    block: block.to_owned(),
                });
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(out, "- Date: {started}");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Peers: {}", versions());
    let _ = writeln!(
        out,
        "- Last run: {} per contender (push cases at least 11), alternating; figures are \
         medians{}. Each case says when it was measured and how many runs: a filtered run \
         updates only its cases.",
        bench.options.runs,
        if bench.options.filters.is_empty() {
            String::new()
        } else {
            format!(
                "; only cases matching {}",
                bench
                    .options
                    .filters
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let images: Vec<String> = bench
        .fx
        .images
        .iter()
        .map(|i| {
            format!(
                "{} ({} layers, {:.1} MiB uncompressed, {:.1} MiB gzip, {:.1} MiB zstd)",
                i.name,
                i.layers.len(),
                i.tars()
                    .iter()
                    .filter_map(|t| std::fs::metadata(t).ok())
                    .map(|m| m.len())
                    .sum::<u64>() as f64
                    / 1048576.0,
                i.size(Compression::Gzip) as f64 / 1048576.0,
                i.size(Compression::Zstd) as f64 / 1048576.0,
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "- Images: {}; the minbase tree pre-extracted at {}.",
        images.join(", "),
        shorten(bench, &bench.fx.rootfs.display().to_string())
    );
    let _ = writeln!(
        out,
        "- `$BENCH` is target/bench (fixtures), `$TMPFS` the tmpfs mounted at \
         target/bench/tmpfs, `$REGISTRY` the loopback docker-registry serving the fixtures.\n"
    );

    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| case | what | measured | target | holds |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for pieces in &all {
        out.push_str(&pieces.targets);
    }
    let _ = writeln!(out, "\n### Ratios to each contender\n");
    let _ = writeln!(
        out,
        "stencil's median wall time over each other contender's (below 1: stencil is faster).\n"
    );
    let _ = writeln!(out, "| case | stencil (s) | ratios |");
    let _ = writeln!(out, "|---|---|---|");
    for pieces in &all {
        out.push_str(&pieces.ratios);
    }
    let _ = writeln!(out, "\n### Cases\n");
    for pieces in &all {
        out.push_str(&pieces.block);
    }
    Ok(out)
}

/// One case's rows in the targets and ratios tables, and its own section.
fn render_case(bench: &Bench, case: &Case, date: &str) -> Pieces {
    let mut targets = String::new();
    for check in &case.checks {
        let _ = writeln!(
            targets,
            "| {} | {} | {} | {} | {} |",
            case.id,
            check.what,
            check.value,
            check.target,
            if check.holds { "yes" } else { "**no**" }
        );
    }
    if let Some(error) = &case.error {
        let first = shorten(bench, error.lines().next().unwrap_or(""));
        let _ = writeln!(
            targets,
            "| {} | could not run: {first} | | | **no** |",
            case.id
        );
    }
    let mut ratios = String::new();
    if let Some(ours) = case.rows.iter().find(|r| r.role == Role::Stencil) {
        let list: Vec<String> = case
            .rows
            .iter()
            .filter(|r| r.role != Role::Stencil)
            .filter_map(|r| case.ratio(&r.label).map(|x| format!("{} {x:.2}", r.label)))
            .collect();
        let _ = writeln!(
            ratios,
            "| {} | {:.3} | {} |",
            case.id,
            ours.wall(),
            list.join(" · ")
        );
    }
    let mut out = String::new();
    let _ = writeln!(out, "#### {}: {}\n", case.id, case.title);
    match case.rows.first().map(|r| r.samples.len()) {
        Some(runs) => {
            let _ = writeln!(out, "Measured {date}, {runs} runs each.\n");
        }
        None => {
            let _ = writeln!(out, "Measured {date}.\n");
        }
    }
    if let Some(error) = &case.error {
        let _ = writeln!(
            out,
            "Could not run:\n\n```text\n{}\n```\n",
            shorten(bench, error.trim())
        );
        return Pieces {
            targets,
            ratios,
            block: out,
        };
    }
    if !case.rows.is_empty() {
        let _ = writeln!(
            out,
            "| contender | kind | wall (s) | CPU (s) | peak RSS (MiB) | stencil / this | runs, wall (s) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for row in &case.rows {
            let kind = match row.role {
                Role::Stencil => "stencil",
                Role::Peer => "peer",
                Role::Floor => "floor",
            };
            let ratio = match row.role {
                Role::Stencil => "1".to_owned(),
                _ => case
                    .ratio(&row.label)
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_default(),
            };
            let runs: Vec<String> = row
                .samples
                .iter()
                .map(|s| format!("{:.2}", s.wall))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {kind} | {:.3} | {:.3} | {:.1} | {ratio} | {} |",
                row.label,
                row.wall(),
                row.cpu(),
                row.rss_mib(),
                runs.join(" ")
            );
        }
        let _ = writeln!(out, "\nCommands:\n");
        for row in &case.rows {
            let _ = writeln!(
                out,
                "- {}: `{}`",
                row.label,
                shorten(bench, &row.command).replace('`', "'")
            );
        }
        let _ = writeln!(out);
    }
    for block in &case.markdown {
        let _ = writeln!(out, "{}", shorten(bench, block));
    }
    for note in &case.notes {
        let _ = writeln!(out, "- {}", shorten(bench, note));
    }
    if !case.notes.is_empty() {
        let _ = writeln!(out);
    }
    Pieces {
        targets,
        ratios,
        block: out,
    }
}

/// Replaces what follows the marker in `path` (keeping the introduction above it).
pub fn write(path: &Path, generated: &str) -> Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let intro = match existing.find(MARKER) {
        Some(at) => existing[..at].to_owned(),
        None if existing.is_empty() => "# Benchmarks\n\n".to_owned(),
        None => format!("{}\n\n", existing.trim_end()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{intro}{MARKER}\n\n{generated}"))
        .with_context(|| format!("cannot write {}", path.display()))
}
