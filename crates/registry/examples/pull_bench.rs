//! Pull benchmark against `skopeo copy`: the issue's acceptance figures, measured by hand.
//!
//! Starts a loopback `docker-registry`, crafts and pushes two images (one ~200 MB gzip
//! layer, and twenty ~5 MB layers), then times, alternately, a stencil pull into an empty
//! content store (in a child process), both under `/usr/bin/time` for wall time, CPU time and peak RSS, and `skopeo copy
//! docker://… oci:DIR`. Both write under the directory given (default: a temporary
//! directory; pass `/dev/shm/x` for tmpfs). It is not a test and asserts nothing.
//!
//! ```text
//! cargo run --release -p stencil-registry --example pull_bench -- [WORK_DIR] [RUNS]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use stencil_layerstore::content::LocalContent;
use stencil_reference::Reference;
use stencil_registry::{Client, NoProgress, PullOptions, PushOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--pull") {
        pull_child(&args[2], Path::new(&args[3]));
        return;
    }
    let work = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("stencil-pull-bench"));
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let registry = support::real_registry(None).expect("docker-registry is installed");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_dir, source) = support::store();
    let images = [
        (
            "bench/one-big-layer:1",
            support::craft_image(&source, false, "amd64", &[200 << 20], 1),
        ),
        (
            "bench/twenty-layers:1",
            support::craft_image(&source, false, "amd64", &[5 << 20; 20], 2),
        ),
    ];
    let client = Client::builder().build().unwrap();
    for (name, image) in &images {
        let target = Reference::parse(&format!("{}/{name}", registry.host)).unwrap();
        runtime
            .block_on(client.push(
                &target,
                &source,
                &image.manifest,
                &PushOptions::default(),
                Arc::new(NoProgress),
            ))
            .unwrap();
        let bytes: u64 = image.layers.iter().map(|l| l.size).sum();
        println!(
            "pushed {name}: {} layers, {:.1} MiB",
            image.layers.len(),
            bytes as f64 / 1048576.0
        );
    }
    let me = std::env::current_exe().unwrap();
    for (name, _) in &images {
        let target = format!("{}/{name}", registry.host);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let dir = work.join(format!("stencil-{run}"));
            let mut command = Command::new(&me);
            command.args(["--pull", &target]).arg(&dir);
            ours.push(measure(command));
            let dir = work.join(format!("skopeo-{run}"));
            let mut command = Command::new("skopeo");
            command
                .args([
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    &format!("docker://{target}"),
                ])
                .arg(format!("oci:{}:bench", dir.display()));
            theirs.push(measure(command));
        }
        let median = |runs: &[Measure], field: fn(&Measure) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(field).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        for (tool, runs) in [("stencil", &ours), ("skopeo", &theirs)] {
            println!(
                "{name} {tool}: median wall {:.2} s, cpu {:.2} s, max RSS {:.0} MiB; runs {:?}",
                median(runs, |m| m.wall),
                median(runs, |m| m.cpu),
                median(runs, |m| m.rss_mib),
                runs.iter()
                    .map(|m| (m.wall * 100.0).round() / 100.0)
                    .collect::<Vec<_>>()
            );
        }
        println!(
            "{name}: wall ratio stencil/skopeo {:.2}",
            median(&ours, |m| m.wall) / median(&theirs, |m| m.wall)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

struct Measure {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

/// Runs `command` under `/usr/bin/time`: wall and CPU seconds, peak RSS.
fn measure(command: Command) -> Measure {
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%e %U %S %M", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    let output = timed.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let fields: Vec<f64> = stderr
        .lines()
        .last()
        .unwrap_or_default()
        .split(' ')
        .filter_map(|f| f.parse().ok())
        .collect();
    Measure {
        wall: fields[0],
        cpu: fields[1] + fields[2],
        rss_mib: fields[3] / 1024.0,
    }
}

/// Pulls `target` into a new store at `dir`.
fn pull_child(target: &str, dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(LocalContent::open(dir).unwrap());
    let client = Client::builder().build().unwrap();
    let reference = Reference::parse(target).unwrap();
    runtime
        .block_on(client.pull(
            &reference,
            &store,
            &PullOptions::default(),
            Arc::new(NoProgress),
        ))
        .unwrap();
}
