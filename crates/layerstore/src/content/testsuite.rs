//! The conformance suite that every content store implementation must pass.
//!
//! [`run`] takes a factory that opens a fresh store in an empty directory (and reopens one
//! on an existing directory) and checks the contract of [`Provider`], [`Ingester`],
//! [`ContentWriter`] and [`Manager`]: write and commit, commit of an existing blob, size
//! and digest mismatches, resume after reopen with the prefix re-hashed, exclusive refs
//! across threads, abort, truncate, sha512, walk and delete. Each case panics with its
//! name and what differed. Cross-process exclusion needs a second process and is checked
//! by the crate's integration tests.
//!
//! ```
//! use stencil_layerstore::content::{LocalContent, testsuite};
//!
//! testsuite::run(&|dir: &std::path::Path| LocalContent::open(dir).unwrap());
//! ```

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use sha2::Digest as _;
use stencil_reference::Digest;

use super::{ContentWriter, Ingester, Manager, Provider, sha256_digest};
use crate::error::{ErrorKind, Result};

/// One conformance case: a name and a function of a fresh store directory.
type Case<S> = (&'static str, fn(&dyn Fn(&Path) -> S, &Path));

/// Runs every case, each in its own temporary directory, with stores made by `open`.
pub fn run<S>(open: &dyn Fn(&Path) -> S)
where
    S: Provider + Ingester + Manager + Send + Sync,
{
    let cases: Vec<Case<S>> = vec![
        ("write and commit", write_and_commit),
        ("commit of an existing blob", commit_existing),
        ("size mismatch", size_mismatch),
        ("digest mismatch", digest_mismatch),
        ("resume after reopen", resume_after_reopen),
        ("resume re-hashes the prefix", resume_rehashes_prefix),
        ("second writer on one ref", second_writer_in_use),
        (
            "second writer in another thread",
            second_writer_other_thread,
        ),
        ("abort", abort),
        ("truncate", truncate),
        ("sha512", sha512),
        ("walk and delete", walk_and_delete),
        ("missing blob", missing_blob),
    ];
    for (name, case) in cases {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{name}: tempdir: {error}"));
        case(open, dir.path());
    }
}

fn write_all<W: ContentWriter>(writer: &mut W, bytes: &[u8]) {
    writer.write_all(bytes).expect("write to ingest");
}

fn read_blob<S: Provider>(store: &S, digest: &Digest) -> Vec<u8> {
    let mut bytes = Vec::new();
    store
        .open(digest)
        .unwrap_or_else(|error| panic!("open {digest}: {error}"))
        .read_to_end(&mut bytes)
        .unwrap_or_else(|error| panic!("read {digest}: {error}"));
    bytes
}

#[track_caller]
fn expect_kind<T: std::fmt::Debug>(case: &str, result: Result<T>, kind: ErrorKind) {
    match result {
        Err(error) => assert_eq!(error.kind(), kind, "{case}: wrong error kind: {error}"),
        Ok(value) => panic!("{case}: expected {kind:?}, got Ok({value:?})"),
    }
}

fn write_and_commit<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"some layer bytes".repeat(1000);
    let digest = sha256_digest(&bytes);
    let mut writer = store.writer("write-and-commit").expect("writer");
    assert_eq!(writer.offset(), 0, "fresh writer offset");
    write_all(&mut writer, &bytes[..100]);
    write_all(&mut writer, &bytes[100..]);
    assert_eq!(writer.offset(), bytes.len() as u64, "offset after writes");
    assert_eq!(writer.digest(), digest, "running digest");
    writer.commit(bytes.len() as u64, &digest).expect("commit");
    assert_eq!(read_blob(&store, &digest), bytes, "blob content");
    assert_eq!(
        store.info(&digest).expect("info").size,
        bytes.len() as u64,
        "info size"
    );
    assert!(
        store.contains(&digest).expect("contains"),
        "contains after commit"
    );
    assert!(
        store.ingests().expect("ingests").is_empty(),
        "ingest left after commit"
    );
    // A committed blob is visible to a store opened afterwards on the same directory.
    assert_eq!(read_blob(&open(dir), &digest), bytes, "blob after reopen");
}

fn commit_existing<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"twice";
    let digest = sha256_digest(bytes);
    for round in 0..2 {
        let mut writer = store.writer(&format!("existing-{round}")).expect("writer");
        write_all(&mut writer, bytes);
        writer
            .commit(bytes.len() as u64, &digest)
            .expect("commit of an existing blob");
    }
    assert_eq!(read_blob(&store, &digest), bytes);
    assert!(
        store.ingests().expect("ingests").is_empty(),
        "ingest left after commit"
    );
}

fn size_mismatch<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"size matters";
    let digest = sha256_digest(bytes);
    for (claimed, case) in [
        (bytes.len() as u64 + 1, "short"),
        (bytes.len() as u64 - 1, "long"),
    ] {
        let mut writer = store.writer(case).expect("writer");
        write_all(&mut writer, bytes);
        expect_kind(
            case,
            writer.commit(claimed, &digest),
            ErrorKind::SizeMismatch,
        );
        assert!(
            !store.contains(&digest).expect("contains"),
            "{case}: committed despite mismatch"
        );
    }
    let message = {
        let mut writer = store.writer("message").expect("writer");
        write_all(&mut writer, bytes);
        writer
            .commit(99, &digest)
            .map(|_| ())
            .err()
            .map(|error| error.to_string())
    };
    let message = message.unwrap_or_default();
    assert!(
        message.contains(&digest.to_string()) && message.contains("99") && message.contains("12"),
        "size mismatch message names digest and sizes: {message}"
    );
}

fn digest_mismatch<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"these bytes";
    let wrong = sha256_digest(b"other bytes");
    let mut writer = store.writer("digest-mismatch").expect("writer");
    write_all(&mut writer, bytes);
    let error = writer.commit(bytes.len() as u64, &wrong).err();
    let error = error.unwrap_or_else(|| panic!("digest mismatch: commit succeeded"));
    assert_eq!(error.kind(), ErrorKind::DigestMismatch, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&wrong.to_string()) && message.contains(&sha256_digest(bytes).to_string()),
        "message names both digests: {message}"
    );
    assert!(
        !store.contains(&wrong).expect("contains"),
        "wrong digest committed"
    );
    assert!(
        !store.contains(&sha256_digest(bytes)).expect("contains"),
        "actual digest committed"
    );
    let mut walked = 0;
    store
        .walk(&mut |_| {
            walked += 1;
            Ok(())
        })
        .expect("walk");
    assert_eq!(walked, 0, "blobs after failed commit");
}

fn resume_after_reopen<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&bytes);
    {
        let store = open(dir);
        let mut writer = store.writer("resume").expect("writer");
        write_all(&mut writer, &bytes[..123_457]);
        // Dropped without commit: the bytes stay for a resume.
    }
    let store = open(dir);
    let statuses = store.ingests().expect("ingests");
    assert_eq!(statuses.len(), 1, "one ingest after drop: {statuses:?}");
    assert_eq!(statuses[0].offset, Some(123_457), "status offset");
    assert!(!statuses[0].in_use, "dropped writer still holds its ref");
    let mut writer = store.writer("resume").expect("writer on resume");
    assert_eq!(writer.offset(), 123_457, "resume offset");
    assert_eq!(
        writer.digest(),
        sha256_digest(&bytes[..123_457]),
        "prefix digest"
    );
    write_all(&mut writer, &bytes[123_457..]);
    writer
        .commit(bytes.len() as u64, &digest)
        .expect("commit after resume");
    assert_eq!(read_blob(&store, &digest), bytes);
}

fn resume_rehashes_prefix<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"0123456789abcdef";
    {
        let mut writer = store.writer("tampered").expect("writer");
        write_all(&mut writer, &bytes[..8]);
    }
    // Corrupt the prefix on disk behind the store's back.
    let statuses = store.ingests().expect("ingests");
    let data = statuses[0].dir.join("data");
    if data.exists() {
        std::fs::write(&data, b"XXXXXXXX").expect("tamper");
        let mut writer = store.writer("tampered").expect("writer on resume");
        write_all(&mut writer, &bytes[8..]);
        let digest = sha256_digest(bytes);
        expect_kind(
            "tampered prefix",
            writer.commit(bytes.len() as u64, &digest),
            ErrorKind::DigestMismatch,
        );
    }
}

fn second_writer_in_use<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let mut first = store.writer("shared-ref").expect("first writer");
    write_all(&mut first, b"first");
    expect_kind(
        "second writer",
        store.writer("shared-ref").map(|_| ()),
        ErrorKind::InUse,
    );
    expect_kind(
        "second store's writer",
        open(dir).writer("shared-ref").map(|_| ()),
        ErrorKind::InUse,
    );
    expect_kind(
        "abort while held",
        store.abort("shared-ref"),
        ErrorKind::InUse,
    );
    assert!(
        store.ingests().expect("ingests")[0].in_use,
        "status shows the ref in use"
    );
    let digest = sha256_digest(b"first");
    first.commit(5, &digest).expect("commit");
    // Once released, the ref can be taken again.
    store
        .writer("shared-ref")
        .expect("writer after commit")
        .abort()
        .expect("abort");
}

fn second_writer_other_thread<S: Provider + Ingester + Manager + Send + Sync>(
    open: &dyn Fn(&Path) -> S,
    dir: &Path,
) {
    let store = open(dir);
    let writer = store.writer("thread-ref").expect("first writer");
    let kind = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                store
                    .writer("thread-ref")
                    .map(|_| ())
                    .err()
                    .map(|error| error.kind())
            })
            .join()
            .expect("thread")
    });
    assert_eq!(kind, Some(ErrorKind::InUse), "writer in another thread");
    writer.abort().expect("abort");
}

fn abort<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"to be thrown away";
    let mut writer = store.writer("abort-me").expect("writer");
    write_all(&mut writer, bytes);
    writer.abort().expect("abort");
    assert!(
        store.ingests().expect("ingests").is_empty(),
        "ingest left after abort"
    );
    assert!(
        !store.contains(&sha256_digest(bytes)).expect("contains"),
        "aborted bytes committed"
    );
    let writer = store.writer("abort-me").expect("writer after abort");
    assert_eq!(writer.offset(), 0, "abort kept bytes");
    drop(writer);
    store.abort("abort-me").expect("abort by ref");
    store
        .abort("never-written")
        .expect("abort of an unknown ref");
    assert!(
        store.ingests().expect("ingests").is_empty(),
        "ingest left after abort by ref"
    );
    expect_kind(
        "empty ref",
        store.writer("").map(|_| ()),
        ErrorKind::InvalidIngestRef,
    );
}

fn truncate<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let mut writer = store.writer("truncate").expect("writer");
    write_all(&mut writer, b"garbage from a server that ignored Range");
    writer.truncate(0).expect("truncate");
    assert_eq!(writer.offset(), 0);
    write_all(&mut writer, b"good");
    let digest = sha256_digest(b"good");
    writer.commit(4, &digest).expect("commit after truncate");
    assert_eq!(read_blob(&store, &digest), b"good");
}

fn sha512<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let bytes = b"sha512 content";
    let digest = Digest::from_sha512_bytes(&sha2::Sha512::digest(bytes).into());
    let mut writer = store.writer("sha512").expect("writer");
    write_all(&mut writer, bytes);
    writer
        .commit(bytes.len() as u64, &digest)
        .expect("commit sha512");
    assert_eq!(read_blob(&store, &digest), bytes);
    let wrong = Digest::from_sha512_bytes(&sha2::Sha512::digest(b"other").into());
    let mut writer = store.writer("sha512-wrong").expect("writer");
    write_all(&mut writer, bytes);
    expect_kind(
        "sha512 mismatch",
        writer.commit(bytes.len() as u64, &wrong),
        ErrorKind::DigestMismatch,
    );
}

fn walk_and_delete<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let mut expected = BTreeSet::new();
    for index in 0..5u8 {
        let bytes = vec![index; 10 + usize::from(index)];
        let digest = sha256_digest(&bytes);
        let mut writer = store.writer(&format!("walk-{index}")).expect("writer");
        write_all(&mut writer, &bytes);
        writer.commit(bytes.len() as u64, &digest).expect("commit");
        expected.insert((digest.to_string(), bytes.len() as u64));
    }
    let mut walked = BTreeSet::new();
    store
        .walk(&mut |info| {
            walked.insert((info.digest.to_string(), info.size));
            Ok(())
        })
        .expect("walk");
    assert_eq!(walked, expected, "walk lists every blob");
    let victim = sha256_digest(&[0u8; 10]);
    store.delete(&victim).expect("delete");
    assert!(
        !store.contains(&victim).expect("contains"),
        "deleted blob still there"
    );
    expect_kind(
        "delete twice",
        store.delete(&victim),
        ErrorKind::BlobNotFound,
    );
}

fn missing_blob<S: Provider + Ingester + Manager>(open: &dyn Fn(&Path) -> S, dir: &Path) {
    let store = open(dir);
    let digest = sha256_digest(b"never stored");
    expect_kind(
        "open missing",
        store.open(&digest).map(|_| ()),
        ErrorKind::BlobNotFound,
    );
    expect_kind("info missing", store.info(&digest), ErrorKind::BlobNotFound);
}
