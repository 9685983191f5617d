//! Durability and resource acceptance: a writer SIGKILLed in the middle of an ingest or of
//! a commit leaves the blob complete or absent and a store that fsck passes; ingesting a
//! 2 GiB stream stays under 64 MiB of resident memory.
//!
//! The writers run in child processes: this test binary re-executed with
//! `STENCIL_LAYERSTORE_ROLE` set, which [`child_process_entry`] dispatches on (in a normal
//! run it does nothing).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use stencil_layerstore::Store;
use stencil_layerstore::content::{ContentWriter, Ingester, Provider, sha256_digest};
use stencil_layerstore::fsck::FsckOptions;

const ROLE_ENV: &str = "STENCIL_LAYERSTORE_ROLE";
const ROOT_ENV: &str = "STENCIL_LAYERSTORE_ROOT";
const CRASH_BLOB: usize = 32 << 20;
const LARGE_BLOB: u64 = 2 << 30;
const RSS_LIMIT_KIB: u64 = 64 << 10;

/// Deterministic bytes: a 64 KiB pseudo-random block repeated, each copy stamped with its
/// index (generating every byte would dominate the test's time in a debug build).
fn pattern(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let block: Vec<u8> = (0..64 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut bytes = Vec::with_capacity(size);
    for index in 0u64.. {
        if bytes.len() >= size {
            break;
        }
        let start = bytes.len();
        bytes.extend_from_slice(&block[..block.len().min(size - start)]);
        let stamp = index.to_le_bytes();
        let end = (start + stamp.len()).min(bytes.len());
        bytes[start..end].copy_from_slice(&stamp[..end - start]);
    }
    bytes
}

/// The crash test's blob and its digest, computed once per process.
fn crash_blob() -> &'static (Vec<u8>, stencil_layerstore::Digest) {
    static BLOB: std::sync::OnceLock<(Vec<u8>, stencil_layerstore::Digest)> =
        std::sync::OnceLock::new();
    BLOB.get_or_init(|| {
        let bytes = pattern(CRASH_BLOB);
        let digest = sha256_digest(&bytes);
        (bytes, digest)
    })
}

/// A reader yielding `remaining` bytes of a repeated 1 MiB block, without allocating more.
struct Generated {
    block: Vec<u8>,
    remaining: u64,
    position: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let take = (self.block.len() - self.position)
            .min(buf.len())
            .min(self.remaining as usize);
        buf[..take].copy_from_slice(&self.block[self.position..self.position + take]);
        self.position = (self.position + take) % self.block.len();
        self.remaining -= take as u64;
        Ok(take)
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn child_process_entry() {
    let (Ok(role), Ok(root)) = (std::env::var(ROLE_ENV), std::env::var(ROOT_ENV)) else {
        return;
    };
    let store = Store::open(&root).expect("child opens the store");
    match role.as_str() {
        // Write half, announce, then keep writing slowly: killed mid-ingest.
        "crash-ingest" => {
            let (bytes, digest) = crash_blob();
            let mut writer = store.content().writer("crash").expect("writer");
            writer.write_all(&bytes[..CRASH_BLOB / 2]).expect("write");
            writer.flush().expect("flush");
            println!("ready");
            for chunk in bytes[CRASH_BLOB / 2..].chunks(64 << 10) {
                writer.write_all(chunk).expect("write");
                std::thread::sleep(Duration::from_millis(2));
            }
            writer.commit(CRASH_BLOB as u64, digest).expect("commit");
        }
        // Write everything, announce, commit: killed mid-commit (or just after).
        "crash-commit" => {
            let (bytes, digest) = crash_blob();
            let mut writer = store.content().writer("crash").expect("writer");
            writer.write_all(bytes).expect("write");
            println!("ready");
            writer.commit(CRASH_BLOB as u64, digest).expect("commit");
            std::thread::sleep(Duration::from_secs(30));
        }
        "memory" => {
            let mut reader = Generated {
                block: pattern(1 << 20),
                remaining: LARGE_BLOB,
                position: 0,
            };
            let (digest, size) = store.ingest(&mut reader, None).expect("ingest 2 GiB");
            println!("ingested {digest} {size}");
            println!("vmhwm={}", peak_rss_kib());
        }
        other => panic!("unknown role {other}"),
    }
}

fn child(role: &str, root: &Path) -> Command {
    let exe = std::env::current_exe().expect("current test binary");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(ROOT_ENV, root)
        .stdout(Stdio::piped());
    command
}

/// Runs `role` in a child, SIGKILLs it as soon as it prints `ready`, and checks the store.
fn check(role: &str, round: u32) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    Store::open(dir.path()).expect("create store");
    let mut process = child(role, dir.path()).spawn().expect("spawn writer");
    let stdout = process.stdout.take().expect("child stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .any(|line| line.is_ok_and(|line| line.contains("ready")));
    assert!(ready, "{role} round {round}: child never got ready");
    process.kill().expect("SIGKILL");
    let status = process.wait().expect("wait");
    assert!(
        !status.success(),
        "{role} round {round}: child finished before the kill"
    );

    let store = Store::open(dir.path()).expect("reopen after the kill");
    let (bytes, digest) = crash_blob();
    let present = store.content().contains(digest).expect("contains");
    if present {
        let mut stored = Vec::new();
        store
            .content()
            .open(digest)
            .expect("open")
            .read_to_end(&mut stored)
            .expect("read");
        assert!(
            stored == *bytes,
            "{role} round {round}: blob present but incomplete"
        );
    }
    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(
        report.problems.is_empty(),
        "{role} round {round}: {:?}",
        report.problems
    );
    // What an interrupted ingest left resumes to completion.
    if !present {
        let mut writer = store.content().writer("crash").expect("resume");
        let offset = writer.offset() as usize;
        assert!(
            offset <= CRASH_BLOB,
            "{role} round {round}: offset {offset}"
        );
        writer.write_all(&bytes[offset..]).expect("write the rest");
        writer
            .commit(CRASH_BLOB as u64, digest)
            .expect("commit after resume");
    }
    present
}

#[test]
fn writer_killed_mid_ingest_or_mid_commit() {
    for round in 0..2 {
        assert!(
            !check("crash-ingest", round),
            "mid-ingest kill committed the blob"
        );
    }
    let mut outcomes = Vec::new();
    for round in 0..4 {
        outcomes.push(check("crash-commit", round));
    }
    println!("mid-commit kills, blob present afterwards: {outcomes:?}");
}

#[test]
fn ingesting_two_gib_stays_under_64_mib() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = child("memory", dir.path()).output().expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(" {LARGE_BLOB}")),
        "child did not ingest 2 GiB: {stdout}"
    );
    let peak: u64 = stdout
        .split("vmhwm=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(u64::MAX);
    println!("peak RSS while ingesting 2 GiB: {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB, limit {RSS_LIMIT_KIB} KiB"
    );
}

#[test]
fn reopening_removes_what_an_interrupted_commit_left() {
    // The state a commit killed between its rename and the removal of its ingest
    // directory leaves: `ref` and `lock` without `data`, the blob already in place.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let digest = store.put_blob(b"committed").expect("blob");
    let leftover = dir
        .path()
        .join("ingest")
        .join(sha256_digest(b"interrupted").hex());
    std::fs::create_dir_all(&leftover).expect("ingest dir");
    std::fs::write(leftover.join("ref"), "interrupted").expect("ref");
    std::fs::write(leftover.join("lock"), "").expect("lock");
    let report = store.fsck(&FsckOptions::default()).expect("fsck");
    assert_eq!(
        report.problems.len(),
        1,
        "fsck reports the leftover: {:?}",
        report.problems
    );
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert!(!leftover.exists(), "reopening removed the leftover");
    assert!(store.content().contains(&digest).expect("contains"));
    assert!(
        store
            .fsck(&FsckOptions::default())
            .expect("fsck")
            .problems
            .is_empty()
    );
}
