//! The benchmark cases: each builds its contenders (stencil, peers, floors), runs them
//! alternately and checks the targets on the medians.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Bench;
use super::fixtures::{Compression, Image, remove_if_present};
use super::load;
use super::measure::{Contender, Role, Row, alternate, sh, time};
use super::servers::{Server, free_port};

/// The measured outcome of one case.
pub struct Case {
    /// `scenario/image-compression`.
    pub id: String,
    /// What is compared, one line.
    pub title: String,
    /// One row per contender.
    pub rows: Vec<Row>,
    /// Extra facts (request counts, throughput, caveats).
    pub notes: Vec<String>,
    /// The targets, checked.
    pub checks: Vec<Check>,
    /// Markdown blocks (tables) shown after the rows, before the notes.
    pub markdown: Vec<String>,
    /// Set when the case could not run.
    pub error: Option<String>,
}

/// A target from the issue and whether this run meets it.
pub struct Check {
    /// What is compared.
    pub what: String,
    /// The figure measured.
    pub value: String,
    /// The target.
    pub target: String,
    /// Whether it holds.
    pub holds: bool,
}

impl Case {
    fn new(id: String, title: &str) -> Case {
        Case {
            id,
            title: title.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
            checks: Vec::new(),
            markdown: Vec::new(),
            error: None,
        }
    }

    /// The row labelled `label`.
    fn row(&self, label: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.label == label)
    }

    /// Median wall time of stencil over that of `label`.
    pub fn ratio(&self, label: &str) -> Option<f64> {
        let ours = self.rows.iter().find(|r| r.role == Role::Stencil)?;
        Some(ours.wall() / self.row(label)?.wall())
    }

    fn check_ratio(&mut self, label: &str, at_most: f64) {
        if let Some(ratio) = self.ratio(label) {
            self.checks.push(Check {
                what: format!("stencil / {label} (wall)"),
                value: format!("{ratio:.3}"),
                target: format!("≤ {at_most}"),
                holds: ratio <= at_most,
            });
        }
    }
}

type CaseFn = Box<dyn Fn(&Bench) -> Result<Case>>;

/// Every case id, in report order.
pub fn all_ids() -> Vec<String> {
    catalogue().into_iter().map(|(id, _)| id).collect()
}

/// Runs every selected case, in order; a case that fails is reported, not fatal.
pub fn run_all(bench: &Bench, mut save: impl FnMut(&Case) -> Result<()>) -> Result<()> {
    let cases = catalogue();
    for (id, case) in cases {
        if !bench.options.wants(&id) {
            continue;
        }
        eprintln!("xtask bench: {id}");
        let outcome = case(bench);
        let case = match outcome {
            Ok(case) => case,
            Err(error) => {
                eprintln!("xtask bench: {id} failed: {error:#}");
                let mut case = Case::new(id, "could not run");
                case.error = Some(format!("{error:#}"));
                case
            }
        };
        save(&case)?;
        // Cases leave their stores on the tmpfs; the next one starts from an empty one.
        clear_dir(&bench.tmp)?;
    }
    Ok(())
}

/// Every case, in report order.
fn catalogue() -> Vec<(String, CaseFn)> {
    let mut cases: Vec<(String, CaseFn)> = Vec::new();
    let images = ["minbase", "app", "layers50"];
    for name in images {
        for compression in Compression::ALL {
            let tag = format!("{name}-{}", compression.name());
            cases.push((
                format!("pull/{tag}"),
                Box::new(move |b: &Bench| {
                    pull(b, b.fx.image(name), compression, &b.tmp, "pull", true)
                }),
            ));
        }
    }
    cases.push((
        "pull-disk/minbase-gzip".to_owned(),
        Box::new(|b: &Bench| {
            pull(
                b,
                b.fx.image("minbase"),
                Compression::Gzip,
                &b.disk,
                "pull-disk",
                true,
            )
        }),
    ));
    // About 1 GiB uncompressed: the peak memory of a large pull (floors left out, they
    // would add minutes and are measured on the smaller images).
    cases.push((
        "pull-1gib/big-gzip".to_owned(),
        Box::new(|b: &Bench| {
            pull(
                b,
                b.fx.image("big"),
                Compression::Gzip,
                &b.tmp,
                "pull-1gib",
                false,
            )
        }),
    ));
    for name in images {
        cases.push((
            format!("fetch/{name}-gzip"),
            Box::new(move |b: &Bench| fetch(b, b.fx.image(name))),
        ));
    }
    for name in images {
        for compression in Compression::ALL {
            let tag = format!("{name}-{}", compression.name());
            cases.push((
                format!("unpack/{tag}"),
                Box::new(move |b: &Bench| unpack(b, b.fx.image(name), compression)),
            ));
        }
    }
    for name in images {
        cases.push((
            format!("push/{name}-gzip"),
            Box::new(move |b: &Bench| {
                push(
                    b,
                    b.fx.image(name),
                    Compression::Gzip,
                    PushTo::DockerRegistry,
                )
            }),
        ));
    }
    // The same pushes into `stencil registry serve`: how the two clients compare when the
    // registry is not the slower end (docker-registry hashes with Go's generic SHA-256).
    for name in ["minbase", "app"] {
        cases.push((
            format!("push-ours/{name}-gzip"),
            Box::new(move |b: &Bench| {
                push(b, b.fx.image(name), Compression::Gzip, PushTo::Stencil)
            }),
        ));
    }
    for name in images {
        cases.push((
            format!("warm/{name}-gzip"),
            Box::new(move |b: &Bench| warm(b, b.fx.image(name), Compression::Gzip)),
        ));
    }
    for name in ["minbase", "app"] {
        cases.push((
            format!("saveload/{name}-gzip"),
            Box::new(move |b: &Bench| save_load(b, b.fx.image(name), Compression::Gzip)),
        ));
    }
    for name in ["minbase", "layers50"] {
        cases.push((
            format!("run/{name}-gzip"),
            Box::new(move |b: &Bench| run_true(b, b.fx.image(name), Compression::Gzip)),
        ));
    }
    cases.push((
        "commit/minbase-gzip".to_owned(),
        Box::new(|b: &Bench| commit(b, b.fx.image("minbase"), Compression::Gzip)),
    ));
    cases.push(("serve/mixed".to_owned(), Box::new(serve)));
    cases
}

/// Removes everything inside `dir` (unmounting first), keeping `dir`.
fn clear_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        remove_if_present(&entry?.path())?;
    }
    Ok(())
}

/// An empty directory at `path` (whatever was there removed).
fn fresh(path: &Path) -> Result<()> {
    remove_if_present(path)?;
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Runs a set-up command (not timed); fails with its stderr.
fn setup(command: &mut Command, log: &Path) -> Result<()> {
    time(command, log).map(|_| ())
}

/// The floors shared by pull and unpack: hashing, decompressing and extracting the same
/// bytes, one pass each, and the one-pass `tar` with decompression.
fn floors<'a>(
    image: &'a Image,
    compression: Compression,
    out: &'a Path,
    with_hash: bool,
) -> Vec<Contender<'a>> {
    let blobs = image.blobs(compression);
    let tars = image.tars();
    let mut list = Vec::new();
    if with_hash {
        let blobs = blobs.clone();
        list.push(Contender::new("sha256sum", Role::Floor, move || {
            let mut command = Command::new("sha256sum");
            command.args(&blobs);
            command
        }));
    }
    let decompress = format!("{} -dc", compression.decompressor());
    let program = compression.decompressor();
    let blobs_for_decompress = blobs.clone();
    list.push(Contender::new(&decompress, Role::Floor, move || {
        let mut command = Command::new(program);
        command.arg("-dcq").args(&blobs_for_decompress);
        command
    }));
    let out_plain = out.to_path_buf();
    list.push(
        Contender::new("tar -xf (plain tar)", Role::Floor, move || {
            let mut args = vec![out_plain.clone()];
            args.extend(tars.iter().cloned());
            sh(
                "d=$1; shift; for f; do tar -xf \"$f\" -C \"$d\" || exit 1; done",
                &args,
            )
        })
        .prepare(move || fresh(out)),
    );
    let flag = match compression {
        Compression::Gzip => "-z",
        Compression::Zstd => "--zstd",
    };
    let label = match compression {
        Compression::Gzip => "tar -xzf",
        Compression::Zstd => "tar --zstd -xf",
    };
    let out_z = out.to_path_buf();
    list.push(
        Contender::new(label, Role::Floor, move || {
            let mut args = vec![out_z.clone()];
            args.extend(blobs.iter().cloned());
            sh(
                &format!("d=$1; shift; for f; do tar {flag} -xf \"$f\" -C \"$d\" || exit 1; done"),
                &args,
            )
        })
        .prepare(move || fresh(out)),
    );
    list
}

fn describe(image: &Image, compression: Compression) -> String {
    format!(
        "{} layers, {:.1} MiB {}",
        image.layers.len(),
        image.size(compression) as f64 / 1048576.0,
        compression.name()
    )
}

/// 1. Pull with unpack from the loopback registry, against `podman pull`.
fn pull(
    b: &Bench,
    image: &Image,
    compression: Compression,
    base: &Path,
    scenario: &str,
    with_floors: bool,
) -> Result<Case> {
    let mut case = Case::new(
        format!("{scenario}/{}", image.tag(compression)),
        &format!(
            "pull with unpack ({}), stores on {}",
            describe(image, compression),
            if base == b.tmp { "tmpfs" } else { "disk" }
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let root = base.join("stencil-root");
    let floor_out = base.join("floor");
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            b.stencil(&root, &["pull", "-q", &reference])
        })
        .prepare(|| fresh(&root)),
        Contender::new("podman", Role::Peer, || {
            b.podman(base, &["pull", "-q", "--tls-verify=false", &reference])
        })
        .prepare(|| {
            remove_if_present(&base.join("podman-root"))?;
            remove_if_present(&super::podman_runroot(base))
        }),
    ];
    if with_floors {
        contenders.extend(floors(image, compression, &floor_out, true));
    }
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    case.check_ratio(
        "podman",
        match compression {
            Compression::Gzip => 0.5,
            Compression::Zstd => 0.4,
        },
    );
    let bytes = image.size(compression) as f64 / 1048576.0;
    let unpacked = image
        .tars()
        .iter()
        .filter_map(|t| std::fs::metadata(t).ok())
        .map(|m| m.len())
        .sum::<u64>() as f64
        / 1048576.0;
    let stencil = case.row("stencil").map(|row| {
        let highest = row
            .samples
            .iter()
            .map(|s| s.rss_kib as f64 / 1024.0)
            .fold(f64::NAN, f64::max);
        (row.wall(), row.rss_mib(), highest)
    });
    if let Some((wall, rss, highest)) = stencil {
        case.notes.push(format!(
            "stencil: {:.0} MiB/s of compressed layers; peak RSS {rss:.0} MiB (median), \
             {highest:.0} MiB (highest run)",
            bytes / wall,
        ));
        // Issue #10: a large pull streams; its memory does not grow with the image.
        if unpacked >= 900.0 {
            case.checks.push(Check {
                what: format!(
                    "peak RSS of a {:.2} GiB pull (MiB, highest of the runs)",
                    unpacked / 1024.0
                ),
                value: format!("{highest:.1}"),
                target: "< 100".to_owned(),
                holds: highest < 100.0,
            });
        }
    }
    remove_if_present(&root)?;
    remove_if_present(&floor_out)?;
    remove_if_present(&base.join("podman-root"))?;
    remove_if_present(&super::podman_runroot(base))?;
    Ok(case)
}

/// 2. Fetch without unpack: the registry client into a content store, against skopeo.
fn fetch(b: &Bench, image: &Image) -> Result<Case> {
    let compression = Compression::Gzip;
    let mut case = Case::new(
        format!("fetch/{}", image.tag(compression)),
        &format!(
            "fetch without unpack ({}), stores on tmpfs",
            describe(image, compression)
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let ours = b.tmp.join("fetch-stencil");
    let theirs = b.tmp.join("fetch-skopeo");
    let blobs = image.blobs(compression);
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            let mut command = Command::new(&b.pull_bench);
            command.args(["--pull", &reference]).arg(&ours);
            command
        })
        .prepare(|| remove_if_present(&ours)),
        Contender::new("skopeo", Role::Peer, || {
            let mut command = Command::new("skopeo");
            command
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:bench", theirs.display()));
            command
        })
        .prepare(|| remove_if_present(&theirs)),
        Contender::new("sha256sum", Role::Floor, || {
            let mut command = Command::new("sha256sum");
            command.args(&blobs);
            command
        }),
    ];
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    case.notes.push(
        "stencil here is the registry client alone (`pull_bench --pull`, the \
         stencil-registry example): resolve, download and verify every blob into a content \
         store, nothing unpacked; the CLI has no fetch-only verb."
            .to_owned(),
    );
    Ok(case)
}

/// 3. Unpack of local layers: cow-fs's apply against `umoci unpack` and GNU tar.
fn unpack(b: &Bench, image: &Image, compression: Compression) -> Result<Case> {
    let mut case = Case::new(
        format!("unpack/{}", image.tag(compression)),
        &format!(
            "unpack of local layers ({}) into a directory on tmpfs",
            describe(image, compression)
        ),
    );
    let out = b.tmp.join("unpack-stencil");
    let bundle = b.tmp.join("unpack-umoci");
    let floor_out = b.tmp.join("unpack-floor");
    let blobs = image.blobs(compression);
    let layout = format!("{}:{}", b.fx.layout.display(), image.tag(compression));
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            let mut args = vec![b.apply.clone(), out.clone()];
            args.extend(blobs.iter().cloned());
            sh(
                "a=$1 d=$2; shift 2; for f; do \"$a\" \"$f\" \"$d\" || exit 1; done",
                &args,
            )
        })
        .prepare(|| fresh(&out)),
    ];
    // umoci 0.4.7 (Debian bookworm) refuses zstd layers ("blob is not correct mediatype").
    if compression == Compression::Gzip {
        contenders.push(
            Contender::new("umoci", Role::Peer, || {
                let mut command = Command::new("umoci");
                command.args(["unpack", "--image", &layout]).arg(&bundle);
                command
            })
            .prepare(|| remove_if_present(&bundle)),
        );
    }
    contenders.extend(floors(image, compression, &floor_out, false));
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    case.check_ratio(
        match compression {
            Compression::Gzip => "tar -xzf",
            Compression::Zstd => "tar --zstd -xf",
        },
        1.2,
    );
    case.check_ratio("umoci", 0.6);
    if compression == Compression::Zstd {
        case.notes.push(
            "No umoci row: umoci 0.4.7 refuses zstd layers (\"blob is not correct \
             mediatype\")."
                .to_owned(),
        );
    }
    case.notes.push(
        "stencil here is `apply LAYER DIR` (the stencil-cow-fs example) once per layer: \
         decompression and `apply_layer` into a plain directory (whiteouts applied by \
         deletion), nothing else. umoci also verifies blob digests and writes an mtree \
         manifest of the result; tar does neither."
            .to_owned(),
    );
    for path in [&out, &bundle, &floor_out] {
        remove_if_present(path)?;
    }
    Ok(case)
}

/// The registry a push case writes to.
#[derive(Clone, Copy, PartialEq)]
enum PushTo {
    DockerRegistry,
    Stencil,
}

/// The fewest runs of each push case's contenders.
const PUSH_RUNS: usize = 11;

/// 4. Push of an image the registry lacks, against `skopeo copy oci: docker://`.
fn push(b: &Bench, image: &Image, compression: Compression, to: PushTo) -> Result<Case> {
    let (scenario, registry) = match to {
        PushTo::DockerRegistry => ("push", "docker-registry"),
        PushTo::Stencil => ("push-ours", "`stencil registry serve`"),
    };
    let mut case = Case::new(
        format!("{scenario}/{}", image.tag(compression)),
        &format!(
            "push to an empty loopback {registry} ({})",
            describe(image, compression)
        ),
    );
    let root = b.tmp.join("push-stencil-root");
    let storage = b.tmp.join("push-registry");
    let port = free_port()?;
    let target = format!(
        "127.0.0.1:{port}/bench/{}:{}",
        image.name,
        compression.name()
    );
    fresh(&root)?;
    setup(
        &mut b.stencil(
            &root,
            &["pull", "-q", &b.reference(image.name, compression.name())],
        ),
        &b.log,
    )?;
    setup(
        &mut b.stencil(
            &root,
            &["tag", &b.reference(image.name, compression.name()), &target],
        ),
        &b.log,
    )?;
    let server: Rc<RefCell<Option<Server>>> = Rc::new(RefCell::new(None));
    let restart = || -> Result<()> {
        server.borrow_mut().take();
        fresh(&storage)?;
        let log = b.tmp.join("push-registry.log");
        *server.borrow_mut() = Some(match to {
            PushTo::DockerRegistry => Server::docker_registry(&storage, &log, port, false)?,
            PushTo::Stencil => Server::stencil(&b.stencil, &storage, &log, port)?,
        });
        Ok(())
    };
    let layout = format!("oci:{}:{}", b.fx.layout.display(), image.tag(compression));
    let blobs = image.blobs(compression);
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            b.stencil(&root, &["push", &target])
        })
        .prepare(restart),
        Contender::new("skopeo", Role::Peer, || {
            let mut command = Command::new("skopeo");
            command
                .args(["copy", "--quiet", "--dest-tls-verify=false", &layout])
                .arg(format!("docker://{target}"));
            command
        })
        .prepare(restart),
        Contender::new("sha256sum", Role::Floor, || {
            let mut command = Command::new("sha256sum");
            command.args(&blobs);
            command
        }),
        // What the registry itself costs: each blob streamed in one PATCH by curl, one
        // after the other, with no manifest, config or existence checks.
        Contender::new("curl PATCH", Role::Floor, || {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(
                    "host=$1; shift; for f; do \
                     l=$(curl -sfi -X POST \"http://$host/v2/bench/floor/blobs/uploads/\" \
                     | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'); \
                     case $l in /*) l=http://$host$l;; esac; \
                     curl -sf -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
                     -T \"$f\" \"$l\" || exit 1; done",
                )
                .arg("sh")
                .arg(format!("127.0.0.1:{port}"))
                .args(&blobs);
            command
        })
        .prepare(restart),
    ];
    // A push takes half a second and the registry's own speed moves by ±10 % from run
    // to run: at least 11 runs each, so that the medians can tell a few percent apart.
    case.rows = alternate(&mut contenders, b.options.runs.max(PUSH_RUNS), &b.log)?;
    drop(contenders);
    server.borrow_mut().take();
    match (to, case.ratio("skopeo"), case.ratio("curl PATCH")) {
        (PushTo::DockerRegistry, Some(skopeo), Some(floor)) => {
            // docker-registry hashes every blob on one core as it arrives (Go 1.19's
            // SHA-256, no SHA-NI), so a single large blob goes no faster than it can take
            // it, whoever sends it: the client must be within 0.8× of skopeo, or at the
            // registry's own floor (≤ 1.05×) where that floor is the slower bound.
            case.checks.push(Check {
                what: "stencil / skopeo, or / the registry's floor where that is higher (wall)"
                    .to_owned(),
                value: format!("{skopeo:.3} / {floor:.3}"),
                target: "≤ 0.8 or ≤ 1.05".to_owned(),
                holds: skopeo <= 0.8 || floor <= 1.05,
            });
        }
        _ => case.check_ratio("skopeo", 0.8),
    }
    case.notes.push(
        "The registry is restarted empty before each push (not timed); stencil pushes \
         from its store what `stencil pull` put there, skopeo from the OCI layout: the \
         same compressed bytes. `curl PATCH` is the registry's own cost: the blobs \
         streamed one by one, one request each, into a fresh registry."
            .to_owned(),
    );
    remove_if_present(&root)?;
    remove_if_present(&storage)?;
    Ok(case)
}

/// HTTP requests in a docker-registry access log excerpt: `(method, path)`.
fn requests_in(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let start = line.find("\"GET ").or_else(|| line.find("\"HEAD "))?;
            let rest = &line[start + 1..];
            let end = rest.find(" HTTP/")?;
            Some(rest[..end].to_owned())
        })
        .collect()
}

/// 5. Warm re-pull: every layer present; count the registry's requests.
fn warm(b: &Bench, image: &Image, compression: Compression) -> Result<Case> {
    let mut case = Case::new(
        format!("warm/{}", image.tag(compression)),
        &format!(
            "re-pull of an image already in the store ({})",
            describe(image, compression)
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let root = b.tmp.join("warm-stencil-root");
    let base = b.tmp.join("warm-podman");
    fresh(&root)?;
    fresh(&base)?;
    let stencil_pull = || b.stencil(&root, &["pull", "-q", &reference]);
    let podman_pull = || b.podman(&base, &["pull", "-q", "--tls-verify=false", &reference]);
    setup(&mut stencil_pull(), &b.log)?;
    setup(&mut podman_pull(), &b.log)?;
    for (label, mut command) in [("stencil", stencil_pull()), ("podman", podman_pull())] {
        let from = b.registry.log_len();
        setup(&mut command, &b.log)?;
        let requests = requests_in(&b.registry.log_since(from));
        let manifests = requests
            .iter()
            .filter(|r| r.contains("/manifests/"))
            .count();
        case.notes.push(format!(
            "{label}: {} HTTP requests ({manifests} for manifests): {}",
            requests.len(),
            requests.join(", ")
        ));
        if label == "stencil" {
            case.checks.push(Check {
                what: "requests of a warm re-pull".to_owned(),
                value: requests.len().to_string(),
                target: "the manifest request only (plus auth)".to_owned(),
                holds: requests
                    .iter()
                    .all(|r| r.contains("/manifests/") || r.ends_with("/v2/"))
                    && manifests == 1,
            });
        }
    }
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, stencil_pull),
        Contender::new("podman", Role::Peer, podman_pull),
    ];
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    remove_if_present(&root)?;
    remove_if_present(&base)?;
    remove_if_present(&super::podman_runroot(&base))?;
    Ok(case)
}

/// Fails with a clear message when the stencil binary lacks `verb` (containers land on main
/// in steps).
fn require_verb(b: &Bench, verb: &str) -> Result<()> {
    let status = Command::new(&b.stencil)
        .args([verb, "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", b.stencil.display()))?;
    if !status.success() {
        bail!("this stencil has no `{verb}` verb yet");
    }
    Ok(())
}

/// 6. `run --rm IMG /bin/true` on a warm store, against the unshare + chroot floor.
fn run_true(b: &Bench, image: &Image, compression: Compression) -> Result<Case> {
    require_verb(b, "run")?;
    let mut case = Case::new(
        format!("run/{}", image.tag(compression)),
        &format!(
            "`run --rm IMG /bin/true` on a warm store on tmpfs ({} layers)",
            image.layers.len()
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let root = b.tmp.join("run-stencil-root");
    let base = b.tmp.join("run-podman");
    fresh(&root)?;
    fresh(&base)?;
    setup(&mut b.stencil(&root, &["pull", "-q", &reference]), &b.log)?;
    setup(
        &mut b.podman(&base, &["pull", "-q", "--tls-verify=false", &reference]),
        &b.log,
    )?;
    let rootfs = &b.fx.rootfs;
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            b.stencil(&root, &["run", "--rm", &reference, "/bin/true"])
        }),
        Contender::new("podman", Role::Peer, || {
            b.podman(
                &base,
                &[
                    "run",
                    "--rm",
                    "--runtime",
                    "runc",
                    "--network",
                    "host",
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=1024:1024",
                    &reference,
                    "/bin/true",
                ],
            )
        }),
        Contender::new("unshare + chroot", Role::Floor, || {
            let mut command = Command::new("unshare");
            command
                .args(["--fork", "--pid", "--mount", "--uts", "--ipc", "chroot"])
                .arg(rootfs)
                .arg("/bin/true");
            command
        }),
    ];
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    if let (Some(ours), Some(floor)) = (case.row("stencil"), case.row("unshare + chroot")) {
        let over_ms = (ours.wall() - floor.wall()) * 1000.0;
        case.checks.push(Check {
            what: "stencil − floor (wall)".to_owned(),
            value: format!("{over_ms:+.1} ms"),
            target: "≤ +15 ms".to_owned(),
            holds: over_ms <= 15.0,
        });
    }
    case.notes.push(
        "The floor runs /bin/true in new PID, mount, UTS and IPC namespaces chrooted into \
         the pre-extracted minbase tree (no overlay mount, no /proc, no config); podman runs \
         with runc, host network and the rlimits this machine needs."
            .to_owned(),
    );
    remove_if_present(&root)?;
    remove_if_present(&base)?;
    remove_if_present(&super::podman_runroot(&base))?;
    Ok(case)
}

/// Files the committed container writes.
const COMMIT_FILES: usize = 10_000;

/// Case 7: commit of a container that wrote 10,000 small files, against `tar -cf` of its
/// upper directory.
fn commit(b: &Bench, image: &Image, compression: Compression) -> Result<Case> {
    require_verb(b, "commit")?;
    let mut case = Case::new(
        format!("commit/{}", image.tag(compression)),
        &format!(
            "commit of a container that wrote {COMMIT_FILES} files of 513 bytes, store on tmpfs"
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let root = b.tmp.join("commit-stencil-root");
    let archive = b.tmp.join("commit-floor.tar");
    fresh(&root)?;
    setup(&mut b.stencil(&root, &["pull", "-q", &reference]), &b.log)?;
    let script = format!(
        "mkdir /bench-files && cd /bench-files && i=0; while [ $i -lt {COMMIT_FILES} ]; do \
         printf '%512s\\n' $i > f$i; i=$((i+1)); done"
    );
    let make_container = || -> Result<()> {
        let _ = time(&mut b.stencil(&root, &["rm", "-f", "bench-commit"]), &b.log);
        setup(
            &mut b.stencil(
                &root,
                &[
                    "run",
                    "--name",
                    "bench-commit",
                    &reference,
                    "sh",
                    "-c",
                    &script,
                ],
            ),
            &b.log,
        )
    };
    make_container()?;
    let upper = find_upper(&root.join("snapshots"), "bench-files")?
        .context("cannot find the container's upper directory (a `bench-files` directory under the store's snapshots)")?;
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            b.stencil(&root, &["commit", "bench-commit", "bench/committed:latest"])
        }),
        Contender::new("tar -cf", Role::Peer, || {
            let mut command = Command::new("tar");
            command
                .arg("-cf")
                .arg(&archive)
                .arg("-C")
                .arg(&upper)
                .arg(".");
            command
        })
        .prepare(|| remove_if_present(&archive)),
        Contender::new("tar -czf", Role::Floor, || {
            let mut command = Command::new("tar");
            command
                .arg("-czf")
                .arg(&archive)
                .arg("-C")
                .arg(&upper)
                .arg(".");
            command
        })
        .prepare(|| remove_if_present(&archive)),
    ];
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    case.check_ratio("tar -cf", 1.5);
    case.notes.push(
        "The container is made once (`run --name bench-commit IMG sh -c 'mkdir /bench-files; \
         … printf > f$i …'`) and committed again on each run; tar reads the same upper \
         directory. stencil's commit also hashes the layer and writes the image; it keeps \
         the layer as a plain tar, as docker does, and compresses it at the first push \
         (`tar -czf` shows what compressing here would cost)."
            .to_owned(),
    );
    remove_if_present(&root)?;
    remove_if_present(&archive)?;
    Ok(case)
}

/// The directory under `dir` (three levels deep at most) that holds an entry `marker`:
/// the container's upper directory, wherever the snapshotter keeps it.
fn find_upper(dir: &Path, marker: &str) -> Result<Option<PathBuf>> {
    fn walk(dir: &Path, marker: &str, depth: usize) -> Option<PathBuf> {
        if dir.join(marker).is_dir() {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        let entries = std::fs::read_dir(dir).ok()?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(found) = walk(&entry.path(), marker, depth - 1)
            {
                return Some(found);
            }
        }
        None
    }
    Ok(walk(dir, marker, 4))
}

/// 8. Save and load round trip, against skopeo through a docker-archive.
fn save_load(b: &Bench, image: &Image, compression: Compression) -> Result<Case> {
    let mut case = Case::new(
        format!("saveload/{}", image.tag(compression)),
        &format!(
            "save to a docker-archive and load it into an empty store ({})",
            describe(image, compression)
        ),
    );
    let reference = b.reference(image.name, compression.name());
    let source = b.tmp.join("saveload-source");
    let archive = b.tmp.join("saveload.tar");
    let ours = b.tmp.join("saveload-stencil");
    let theirs = b.tmp.join("saveload-skopeo");
    fresh(&source)?;
    setup(&mut b.stencil(&source, &["pull", "-q", &reference]), &b.log)?;
    let layout = format!("oci:{}:{}", b.fx.layout.display(), image.tag(compression));
    let stencil_bin = b.stencil.display().to_string();
    let mut contenders = vec![
        Contender::new("stencil", Role::Stencil, || {
            let args: Vec<PathBuf> = vec![
                stencil_bin.clone().into(),
                source.clone(),
                ours.clone(),
                archive.clone(),
                reference.clone().into(),
            ];
            sh(
                "\"$1\" --root \"$2\" save -o \"$4\" \"$5\" && \"$1\" --root \"$3\" load -q -i \"$4\"",
                &args,
            )
        })
        .prepare(|| {
            remove_if_present(&archive)?;
            fresh(&ours)
        }),
        Contender::new("skopeo", Role::Peer, || {
            let args: Vec<PathBuf> = vec![
                layout.clone().into(),
                format!("docker-archive:{}:{reference}", archive.display()).into(),
                format!("docker-archive:{}", archive.display()).into(),
                format!("oci:{}:bench", theirs.display()).into(),
            ];
            sh(
                "skopeo copy --quiet \"$1\" \"$2\" && skopeo copy --quiet \"$3\" \"$4\"",
                &args,
            )
        })
        .prepare(|| {
            remove_if_present(&archive)?;
            remove_if_present(&theirs)
        }),
    ];
    case.rows = alternate(&mut contenders, b.options.runs, &b.log)?;
    drop(contenders);
    case.notes.push(
        "stencil's load also unpacks every layer into a snapshot (the image is ready to \
         run); skopeo's second copy only writes blobs into an OCI layout."
            .to_owned(),
    );
    for path in [&source, &archive, &ours, &theirs] {
        remove_if_present(path)?;
    }
    Ok(case)
}

/// 9. Registry server under load: `stencil registry serve` against docker-registry.
fn serve(b: &Bench) -> Result<Case> {
    let runs = b.options.serve_runs;
    let mut case = Case::new(
        "serve/mixed".to_owned(),
        &format!(
            "{} clients against a loopback registry on tmpfs, pushes and pulls of {} distinct \
             blobs mixed at random for {} s{}",
            load::CLIENTS,
            load::BLOBS,
            b.options.serve_seconds,
            if runs > 1 {
                format!(" × {runs} runs")
            } else {
                String::new()
            }
        ),
    );
    let blobs = Arc::new(load::Blobs::generate());
    let ours_root = b.tmp.join("serve-stencil");
    let theirs_storage = b.tmp.join("serve-docker-registry");
    fresh(&ours_root)?;
    fresh(&theirs_storage)?;
    let ours = Server::stencil(
        &b.stencil,
        &ours_root,
        &b.tmp.join("serve-stencil.log"),
        free_port()?,
    )?;
    let theirs = Server::docker_registry(
        &theirs_storage,
        &b.tmp.join("serve-docker-registry.log"),
        free_port()?,
        false,
    )?;
    let servers = [("stencil", &ours), ("docker-registry", &theirs)];
    let duration = Duration::from_secs(b.options.serve_seconds);
    let mut totals = [load::Mixed::default(), load::Mixed::default()];
    let mut first = Vec::new();
    for run in 0..runs {
        // The server that goes first alternates from run to run.
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        first.push(servers[order[0]].0);
        for index in order {
            let (label, server) = servers[index];
            let m = load::mixed(
                &server.host(),
                server.pid(),
                &format!("bench/load{run}"),
                &blobs,
                duration,
                0x5EED ^ run as u64,
            )?;
            let total = m.total();
            eprintln!(
                "    {label:<16} run {}: push {:>6.0} req/s {:>5.0} MB/s, pull {:>6.0} req/s \
                 {:>5.0} MB/s, all {:>6.0} req/s {:>5.0} MB/s, p99 {:.1} ms, {} errors, RSS {:.0} MiB",
                run + 1,
                m.rate(&m.push),
                m.mbps(&m.push),
                m.rate(&m.pull),
                m.mbps(&m.pull),
                m.rate(&total),
                m.mbps(&total),
                total.quantile_ms(0.99),
                m.errors(),
                server.peak_rss_mib(),
            );
            totals[index].merge(&m);
        }
    }
    let mut table = String::from(
        "| server | push req/s | push MB/s | pull req/s | pull MB/s | all req/s | all MB/s \
         | p50 / p99 push (ms) | p50 / p99 pull (ms) | errors | blobs wrong afterwards \
         | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut figures = Vec::new();
    for ((label, server), m) in servers.iter().zip(&totals) {
        let bad = load::verify(&server.host(), &m.pushed, &blobs)?;
        let peak = server.peak_rss_mib();
        let total = m.total();
        table.push_str(&format!(
            "| {label} | {:.0} | {:.1} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} / {:.1} \
             | {:.1} / {:.1} | {} | {bad} of {} | {peak:.0} |\n",
            m.rate(&m.push),
            m.mbps(&m.push),
            m.rate(&m.pull),
            m.mbps(&m.pull),
            m.rate(&total),
            m.mbps(&total),
            m.push.quantile_ms(0.5),
            m.push.quantile_ms(0.99),
            m.pull.quantile_ms(0.5),
            m.pull.quantile_ms(0.99),
            m.errors(),
            m.pushed.len(),
        ));
        let (early, late) = m.rss_halves();
        case.notes.push(format!(
            "{label}: {} pushes ({} repositories) and {} pulls in {:.1} s; resident memory \
             under load peaked at {early:.0} MiB in the first half and {late:.0} MiB in the \
             second",
            m.push.operations,
            m.pushed
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            m.pull.operations,
            m.seconds,
        ));
        figures.push((
            m.rate(&total),
            m.mbps(&total),
            m.errors() + bad as u64,
            early,
            late,
        ));
    }
    case.markdown.push(table);
    for (what, ours, theirs) in [
        ("requests/s", figures[0].0, figures[1].0),
        ("MB/s", figures[0].1, figures[1].1),
    ] {
        let ratio = ours / theirs;
        case.checks.push(Check {
            what: format!("mixed push + pull {what}, stencil / docker-registry"),
            value: format!("{ratio:.2}"),
            target: "≥ 1.5".to_owned(),
            holds: ratio >= 1.5,
        });
    }
    let (errors, early, late) = (figures[0].2, figures[0].3, figures[0].4);
    case.checks.push(Check {
        what: "stencil under load: errors + blobs wrong afterwards".to_owned(),
        value: errors.to_string(),
        target: "0".to_owned(),
        holds: errors == 0,
    });
    case.checks.push(Check {
        what: "stencil resident memory, peak of 2nd half / 1st half (bounded)".to_owned(),
        value: format!("{late:.0} / {early:.0} MiB"),
        target: "≤ 1.25×".to_owned(),
        holds: late <= early * 1.25,
    });
    case.notes.push(format!(
        "The blobs are {:.1} MB in all, 4 KiB to 1 MiB each. Each client picks at random a push (POST + monolithic PUT) of the next blob into \
         the next repository that lacks it (blob k % {blobs} into `bench/loadR-(k / {blobs})`, \
         so storage holds {blobs} distinct blobs while every push is a full upload) or a GET \
         of a blob already pushed. A push counts as two requests. Afterwards every pushed \
         (repository, blob) pair is fetched and its digest checked. {runs} run(s) of each \
         server, in the same bench run ({} first); figures are totals over the runs. Both \
         servers log errors only (stencil `--log-level warn`, docker-registry access log off) \
         and store on the same tmpfs; the load generator shares the two cores with the server.",
        blobs.bytes() as f64 / 1e6,
        first.join(", then "),
        blobs = load::BLOBS,
    ));
    drop(ours);
    drop(theirs);
    Ok(case)
}
