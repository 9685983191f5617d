//! Crash safety: `stencil pull`, `push`, `rmi` (with its garbage collection) and `load`
//! are SIGKILLed at random moments, over and over, against a loopback `stencil registry
//! serve`. After every kill: `stencil fsck` finds the store consistent, an image is listed
//! only whole (fsck checks its blobs and snapshots), what was there before is still there,
//! and running the command again completes, without fetching again the blobs the killed
//! run had already stored.
//!
//! `commit` and `build` (a RUN and a COPY step) are killed the same way on a container
//! store. Moments are random delays drawn from a seeded generator across the time an
//! uninterrupted run takes (the shortest of three, measured first), so that nearly every
//! kill lands mid-command; each command reports how many did; the seed is printed, and `STENCIL_CRASH_SEED=N` replays a
//! run. `STENCIL_CRASH_ROUNDS` changes the number of kills per command (default 50).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use stencil_e2e::{Stencil, root_or_skip, stencil_binary};

/// splitmix64: a small, seedable generator (the tests need no statistical quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A delay in `[0, limit]`.
    fn delay(&mut self, limit: Duration) -> Duration {
        let micros = limit.as_micros().max(1) as u64;
        Duration::from_micros(self.next() % (micros + 1))
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A plain-tar layer holding one file of random (incompressible) bytes.
fn layer(rng: &mut Rng, name: &str, size: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(size as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, name, rng.bytes(size).as_slice())
        .unwrap_or_else(|e| panic!("{e}"));
    tar.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

/// Writes an oci-archive of one image named `name` with `layers` (plain tars).
fn oci_archive(path: &Path, name: &str, layers: &[&Vec<u8>]) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap_or_default();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(&manifest), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    }))
    .unwrap_or_default();
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut archive = tar::Builder::new(file);
    let mut add = |name: String, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        archive
            .append_data(&mut header, name, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    let mut blobs: Vec<&[u8]> = vec![&config, &manifest];
    blobs.extend(layers.iter().map(|l| l.as_slice()));
    for blob in blobs {
        add(format!("blobs/{}", sha256(blob).replace(':', "/")), blob);
    }
    archive.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// A `stencil registry serve` on its own store; its request log goes to a file.
struct Served {
    child: Child,
    host: String,
    log: PathBuf,
    store: Stencil,
}

impl Served {
    fn start() -> Served {
        let store = Stencil::new();
        let log = store.scratch().join("serve.log");
        let mut child = Command::new(stencil_binary())
            .arg("--root")
            .arg(store.root())
            .args(["registry", "serve", "--listen", "127.0.0.1:0"])
            .env_remove("STENCIL_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stencil registry serve: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the serve banner: {e}"));
        let host = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_owned();
        Served {
            child,
            host,
            log,
            store,
        }
    }

    /// Lines of the request log that are blob GETs, from line `from` on.
    fn blob_gets(&self, from: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .skip(from)
            .filter(|l| l.contains("method=GET") && l.contains("/blobs/sha256:"))
            .map(str::to_owned)
            .collect()
    }

    fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs stencil on `store` and SIGKILLs it after `delay`; returns whether it had exited.
fn kill_after(store: &Stencil, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(stencil_binary())
        .arg("--root")
        .arg(store.root())
        .args(args)
        .env_remove("STENCIL_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start stencil: {e}"));
    let deadline = Instant::now() + delay;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[track_caller]
fn assert_consistent(store: &Stencil, context: &str) {
    let checked = store.run(&["fsck"]);
    assert!(
        checked.code == Some(0) && checked.stdout.contains("store is consistent"),
        "{context}: fsck after a kill\n{checked}"
    );
}

fn images(store: &Stencil) -> BTreeSet<String> {
    store
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success()
        .lines()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn blobs(store: &Stencil) -> BTreeSet<String> {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect()
}

/// Digests of the downloads a killed pull left part-way (ingests holding some bytes).
fn partial_downloads(store: &Stencil) -> Vec<String> {
    let mut partial = Vec::new();
    for entry in std::fs::read_dir(store.root().join("ingest"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let held = std::fs::metadata(entry.path().join("data")).map_or(0, |m| m.len());
        let name = std::fs::read_to_string(entry.path().join("ref")).unwrap_or_default();
        if let Some(digest) = name.trim().strip_prefix("registry-pull-")
            && held > 0
        {
            partial.push(digest.to_owned());
        }
    }
    partial
}

fn timed(store: &Stencil, args: &[&str]) -> Duration {
    let started = Instant::now();
    store.run(args).success();
    started.elapsed()
}

struct Fixture {
    rng: Rng,
    rounds: usize,
    served: Served,
    /// The client store, holding `keep` (never touched) besides the test's images.
    client: Stencil,
    archive_a: PathBuf,
    archive_keep: PathBuf,
    a: String,
    b: String,
}

const KEEP: &str = "localhost/crash/keep:1";

fn fixture() -> Fixture {
    let seed = std::env::var("STENCIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("crash harness seed: {seed} (replay with STENCIL_CRASH_SEED={seed})");
    let rounds = std::env::var("STENCIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng(seed);
    let served = Served::start();
    let client = Stencil::new();
    // A and B share their base layer; KEEP shares nothing and must survive everything.
    let base = layer(&mut rng, "base", 2 << 20);
    let only_a = layer(&mut rng, "a", 512 << 10);
    let only_b = layer(&mut rng, "b", 512 << 10);
    let only_keep = layer(&mut rng, "keep", 64 << 10);
    let a = format!("{}/crash/a:1", served.host);
    let b = format!("{}/crash/b:1", served.host);
    let archive_a = client.scratch().join("a.tar");
    let archive_b = client.scratch().join("b.tar");
    let archive_keep = client.scratch().join("keep.tar");
    oci_archive(&archive_a, &a, &[&base, &only_a]);
    oci_archive(&archive_b, &b, &[&base, &only_b]);
    oci_archive(&archive_keep, KEEP, &[&only_keep]);
    for archive in [&archive_a, &archive_b, &archive_keep] {
        client
            .run(&["load", "-q", "-i", &archive.display().to_string()])
            .success();
    }
    client.run(&["push", "-q", &a]).success();
    client.run(&["push", "-q", &b]).success();
    Fixture {
        rng,
        rounds,
        served,
        client,
        archive_a,
        archive_keep,
        a,
        b,
    }
}

#[test]
fn kills_at_random_moments_lose_nothing_and_leave_the_store_consistent() {
    let started = Instant::now();
    let mut fx = fixture();
    let keep_and_b: BTreeSet<String> = [KEEP.to_owned(), fx.b.clone()].into();
    let a_path = fx.archive_a.display().to_string();

    // pull: A is removed first, so each round downloads it again (its base layer stays
    // through B).
    fx.client.run(&["rmi", &fx.a]).success();
    let full = calibrate(&fx.client, &["pull", "-q", &fx.a], &|| {
        fx.client.run(&["rmi", &fx.a]).success();
    });
    let mut finished = 0;
    let mut reused = 0;
    for round in 0..fx.rounds {
        let delay = fx.rng.delay(full);
        let context = format!("pull round {round}, killed after {delay:?}");
        let before = blobs(&fx.client);
        finished += usize::from(kill_after(&fx.client, &["pull", "-q", &fx.a], delay));
        assert_consistent(&fx.client, &context);
        let seen = images(&fx.client);
        assert!(
            seen.is_superset(&keep_and_b),
            "{context}: lost an image: {seen:?}"
        );
        let stored = blobs(&fx.client);
        let partial = partial_downloads(&fx.client);
        let mark = fx.served.log_lines();
        fx.client.run(&["pull", "-q", &fx.a]).success();
        // Nothing already stored is fetched again, and a partial download resumes where
        // it stopped (206 Partial Content).
        for line in fx.served.blob_gets(mark) {
            let again = stored.iter().find(|digest| line.contains(digest.as_str()));
            assert!(
                again.is_none(),
                "{context}: fetched {again:?} again: {line}"
            );
            if partial.iter().any(|digest| line.contains(digest.as_str())) {
                assert!(
                    line.contains("status=206"),
                    "{context}: did not resume: {line}"
                );
            }
        }
        reused += usize::from(stored.len() > before.len() || !partial.is_empty());
        assert_consistent(&fx.client, &context);
        fx.client.run(&["rmi", &fx.a]).success();
    }
    eprintln!(
        "pull: {} kills, {} mid-command ({full:?} a run), {reused} left blobs or partial downloads that the re-run reused",
        fx.rounds,
        fx.rounds - finished
    );

    // load: the archive of A into the client store.
    let full = calibrate(&fx.client, &["load", "-q", "-i", &a_path], &|| {
        fx.client.run(&["rmi", &fx.a]).success();
    });
    let mut finished = 0;
    for round in 0..fx.rounds {
        let delay = fx.rng.delay(full);
        let context = format!("load round {round}, killed after {delay:?}");
        finished += usize::from(kill_after(
            &fx.client,
            &["load", "-q", "-i", &a_path],
            delay,
        ));
        assert_consistent(&fx.client, &context);
        assert!(
            images(&fx.client).is_superset(&keep_and_b),
            "{context}: lost an image"
        );
        fx.client.run(&["load", "-q", "-i", &a_path]).success();
        assert_consistent(&fx.client, &context);
        fx.client.run(&["rmi", &fx.a]).success();
    }
    eprintln!(
        "load: {} kills, {} mid-command ({full:?} a run)",
        fx.rounds,
        fx.rounds - finished
    );

    // rmi: A goes (with garbage collection of its own layer), B and KEEP stay whole.
    fx.client.run(&["load", "-q", "-i", &a_path]).success();
    let full = calibrate(&fx.client, &["rmi", &fx.a], &|| {
        fx.client.run(&["load", "-q", "-i", &a_path]).success();
    });
    fx.client.run(&["rmi", &fx.a]).success();
    let mut finished = 0;
    for round in 0..fx.rounds {
        fx.client.run(&["load", "-q", "-i", &a_path]).success();
        let delay = fx.rng.delay(full);
        let context = format!("rmi round {round}, killed after {delay:?}");
        finished += usize::from(kill_after(&fx.client, &["rmi", &fx.a], delay));
        assert_consistent(&fx.client, &context);
        assert!(
            images(&fx.client).is_superset(&keep_and_b),
            "{context}: lost an image"
        );
        // Again: done, or says there is no such image any more.
        let again = fx.client.run(&["rmi", &fx.a]);
        assert!(
            again.code == Some(0) || again.stderr.contains("no such image"),
            "{context}\n{again}"
        );
        assert_consistent(&fx.client, &context);
        assert!(
            !images(&fx.client).contains(&fx.a),
            "{context}: A is still listed"
        );
    }
    eprintln!(
        "rmi: {} kills, {} mid-command ({full:?} a run)",
        fx.rounds,
        fx.rounds - finished
    );

    // push: A under a new repository each round, so that its blobs are uploaded again
    // (or mounted); the registry's store must stay consistent too.
    fx.client.run(&["load", "-q", "-i", &a_path]).success();
    let first = format!("{}/crash/push-first:1", fx.served.host);
    fx.client.run(&["tag", &fx.a, &first]).success();
    // Only the first push to a repository uploads: one timing.
    let full = timed(&fx.client, &["push", "-q", &first]);
    let mut finished = 0;
    for round in 0..fx.rounds {
        let target = format!("{}/crash/push{round}:1", fx.served.host);
        fx.client.run(&["tag", &fx.a, &target]).success();
        let delay = fx.rng.delay(full);
        let context = format!("push round {round}, killed after {delay:?}");
        finished += usize::from(kill_after(&fx.client, &["push", "-q", &target], delay));
        assert_consistent(&fx.client, &context);
        assert_consistent(&fx.served.store, &format!("{context} (registry store)"));
        fx.client.run(&["push", "-q", &target]).success();
        assert_consistent(&fx.served.store, &format!("{context} (registry store)"));
        fx.client.run(&["rmi", &target]).success();
    }
    eprintln!(
        "push: {} kills, {} mid-command ({full:?} a run)",
        fx.rounds,
        fx.rounds - finished
    );
    // Every pushed repository pulls back whole into a fresh store.
    let check = Stencil::new();
    check
        .run(&[
            "pull",
            "-q",
            &format!("{}/crash/push{}:1", fx.served.host, fx.rounds - 1),
        ])
        .success();
    assert_consistent(&check, "pull back of the last push");
    let _ = fx.archive_keep;
    eprintln!("crash harness took {:?}", started.elapsed());
}

/// Spawns stencil on `store` without waiting.
fn spawn(store: &Stencil, args: &[&str]) -> Child {
    Command::new(stencil_binary())
        .arg("--root")
        .arg(store.root())
        .args(args)
        .env_remove("STENCIL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start stencil: {e}"))
}

#[track_caller]
fn wait_success(child: Child, what: &str) {
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn parallel_pulls_share_layers_and_removals_and_tags_race_safely() {
    let mut rng = Rng(7);
    let served = Served::start();
    let source = Stencil::new();
    let base = layer(&mut rng, "base", 1 << 20);
    let names: Vec<String> = (0..8)
        .map(|n| format!("{}/parallel/i{n}:1", served.host))
        .collect();
    for (n, name) in names.iter().enumerate() {
        let own = layer(&mut rng, &format!("own{n}"), 64 << 10);
        let archive = source.scratch().join(format!("i{n}.tar"));
        oci_archive(&archive, name, &[&base, &own]);
        source
            .run(&["load", "-q", "-i", &archive.display().to_string()])
            .success();
        source.run(&["push", "-q", name]).success();
    }

    // Eight pulls at once into one root: all succeed, the shared layer moves and is
    // unpacked once.
    let client = Stencil::new();
    let mark = served.log_lines();
    let pulls: Vec<Child> = names
        .iter()
        .map(|name| spawn(&client, &["pull", "-q", name]))
        .collect();
    for (child, name) in pulls.into_iter().zip(&names) {
        wait_success(child, &format!("pull {name}"));
    }
    let base_digest = sha256(&base);
    let base_gets = served
        .blob_gets(mark)
        .into_iter()
        .filter(|line| line.contains(&base_digest) && line.contains("status=200"))
        .count();
    assert_eq!(
        base_gets, 1,
        "the shared layer was downloaded {base_gets} times"
    );
    let snapshots = std::fs::read_dir(client.root().join("snapshots/snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        snapshots, 9,
        "one snapshot for the shared layer and one per image"
    );
    assert_consistent(&client, "after eight parallel pulls");
    let listed = images(&client);
    for name in &names {
        assert!(listed.contains(name), "{name} missing from {listed:?}");
    }

    // Removing one image while another that shares its base is pulled loses nothing.
    for round in 0..4 {
        let (gone, pulled) = (&names[round * 2], &names[round * 2 + 1]);
        client.run(&["rmi", pulled]).success();
        let removal = spawn(&client, &["rmi", gone]);
        let pull = spawn(&client, &["pull", "-q", pulled]);
        wait_success(removal, &format!("rmi {gone}"));
        wait_success(pull, &format!("pull {pulled}"));
        let context = format!("rmi {gone} during pull {pulled}");
        assert_consistent(&client, &context);
        let listed = images(&client);
        assert!(
            listed.contains(pulled) && !listed.contains(gone),
            "{context}: {listed:?}"
        );
        // The pulled image is whole: it can be mounted.
        let mounted = client.run(&["image", "mount", pulled]);
        mounted.success();
        client.run(&["image", "unmount", pulled]).success();
    }

    // Concurrent tag updates: the tag ends on exactly one of the images, whole.
    let shared_tag = "localhost/parallel/shared:latest";
    let survivors: Vec<&String> = names.iter().skip(1).step_by(2).collect();
    for _ in 0..3 {
        let tags: Vec<Child> = survivors
            .iter()
            .map(|name| spawn(&client, &["tag", name, shared_tag]))
            .collect();
        for child in tags {
            wait_success(child, "tag");
        }
        let id = client
            .run(&["images", "-q", "--no-trunc", shared_tag])
            .success()
            .stdout
            .clone();
        assert_eq!(id.lines().count(), 1, "the tag names one image: {id}");
        let ids: BTreeSet<String> = survivors
            .iter()
            .map(|name| {
                client
                    .run(&["images", "-q", "--no-trunc", name])
                    .success()
                    .stdout
                    .clone()
            })
            .collect();
        assert!(
            ids.contains(&id),
            "the tag points at none of the tagged images: {id}"
        );
        assert_consistent(&client, "after concurrent tags");
    }
}

/// How long an uninterrupted run of `args` takes: the shortest of three (the first run
/// warms caches), each undone by `undo` so the next measures the same work.
fn calibrate(store: &Stencil, args: &[&str], undo: &dyn Fn()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        best = best.min(timed(store, args));
        undo();
    }
    best
}

#[test]
fn kills_of_commit_and_build_lose_nothing_and_leave_no_partial_image() {
    let test = "kills_of_commit_and_build_lose_nothing_and_leave_no_partial_image";
    if !root_or_skip(test) {
        return;
    }
    let Some(busybox) = stencil_e2e::peer("busybox") else {
        return;
    };
    let started = Instant::now();
    let seed = std::env::var("STENCIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("commit/build crash seed: {seed} (replay with STENCIL_CRASH_SEED={seed})");
    let rounds: usize = std::env::var("STENCIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng(seed);
    let store = Stencil::new();
    // A one-layer image holding a static busybox as /bin/sh.
    let mut tar = tar::Builder::new(Vec::new());
    let bytes = std::fs::read(&busybox).unwrap_or_else(|e| panic!("{e}"));
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    for name in ["bin/sh", "bin/busybox"] {
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o1777);
    dir.set_size(0);
    tar.append_data(&mut dir, "tmp/", std::io::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let rootfs = store.scratch().join("rootfs.tar");
    std::fs::write(&rootfs, tar.into_inner().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let base = "localhost/crash/sh:1";
    store
        .run(&["import", &rootfs.display().to_string(), base])
        .success();
    // A container whose changes (2 MiB of random bytes) each commit turns into a layer.
    store
        .run(&[
            "run",
            "--name",
            "changed",
            base,
            "/bin/sh",
            "-c",
            "/bin/busybox head -c 2097152 /dev/urandom > /tmp/big",
        ])
        .success();
    let before = images(&store);
    let containers = || {
        store
            .run(&["ps", "-a", "--format", "{{.Names}}"])
            .success()
            .stdout
            .clone()
    };
    let had_containers = containers();
    assert!(had_containers.contains("changed"), "{had_containers}");
    let lost_nothing = |context: &str| {
        assert_consistent(&store, context);
        let seen = images(&store);
        assert!(
            seen.is_superset(&before),
            "{context}: lost an image: {seen:?}"
        );
        assert_eq!(
            containers(),
            had_containers,
            "{context}: containers changed"
        );
    };

    // commit: each round under a new tag, removed once the re-run has made it.
    let full = calibrate(
        &store,
        &["commit", "changed", "localhost/crash/c:cal"],
        &|| {
            store.run(&["rmi", "localhost/crash/c:cal"]).success();
        },
    );
    let mut mid = 0;
    for round in 0..rounds {
        let tag = format!("localhost/crash/c:{round}");
        let delay = rng.delay(full);
        let context = format!("commit round {round}, killed after {delay:?} of {full:?}");
        mid += usize::from(!kill_after(&store, &["commit", "changed", &tag], delay));
        lost_nothing(&context);
        let listed = images(&store);
        if listed.contains(&tag) && round % 5 == 0 {
            // Listed means whole: it mounts.
            store.run(&["image", "mount", &tag]).success();
            store.run(&["image", "unmount", &tag]).success();
        }
        store.run(&["commit", "changed", &tag]).success();
        // The re-run's result is checked in full every tenth round (fsck takes time).
        if round % 10 == 0 {
            lost_nothing(&context);
        }
        store.run(&["rmi", &tag]).success();
    }
    eprintln!("commit: {rounds} kills, {mid} mid-command (one run takes {full:?})");

    // build: a RUN step (a container and its commit) and a COPY step, without cache.
    let context_dir = store.scratch().join("context");
    std::fs::create_dir_all(&context_dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(context_dir.join("data"), rng.bytes(1 << 20)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        context_dir.join("Dockerfile"),
        format!("FROM {base}\nRUN /bin/busybox head -c 1048576 /dev/urandom > /tmp/run\nCOPY data /data\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let context_arg = context_dir.display().to_string();
    let build = |tag: &str| -> Vec<String> {
        ["build", "-q", "--no-cache", "-t", tag, context_arg.as_str()]
            .map(str::to_owned)
            .to_vec()
    };
    let cal_args = build("localhost/crash/b:cal");
    let cal_args: Vec<&str> = cal_args.iter().map(String::as_str).collect();
    let full = calibrate(&store, &cal_args, &|| {
        store.run(&["rmi", "localhost/crash/b:cal"]).success();
    });
    let mut mid = 0;
    for round in 0..rounds {
        let tag = format!("localhost/crash/b:{round}");
        let args = build(&tag);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let delay = rng.delay(full);
        let context = format!("build round {round}, killed after {delay:?} of {full:?}");
        mid += usize::from(!kill_after(&store, &args, delay));
        lost_nothing(&context);
        store.run(&args).success();
        if round % 10 == 0 {
            lost_nothing(&context);
            let listed = images(&store);
            assert!(listed.contains(&tag), "{context}: {listed:?}");
            store.run(&["image", "mount", &tag]).success();
            store.run(&["image", "unmount", &tag]).success();
        }
        store.run(&["rmi", &tag]).success();
    }
    eprintln!("build: {rounds} kills, {mid} mid-command (one run takes {full:?})");
    // A killed build leaves its step's overlay mounted under ROOT/build-mounts until the
    // next build or fsck removes it; every round ran fsck, so none may be left.
    let root = store.root().display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let left: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&root))
        .collect();
    for point in left.iter().rev() {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
    assert!(
        left.is_empty(),
        "fsck left the mounts of killed builds under {root}: {left:?}"
    );
    eprintln!(
        "commit and build crash harness took {:?}",
        started.elapsed()
    );
}
