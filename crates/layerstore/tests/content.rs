//! Content store acceptance: the conformance suite on [`LocalContent`], and exclusion of
//! one ingest ref across two processes.
//!
//! The second process is this test binary re-executed with `STENCIL_LAYERSTORE_CHILD` set;
//! [`child_process_entry`] is the test that does the child's part and does nothing in a
//! normal run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use stencil_layerstore::ErrorKind;
use stencil_layerstore::content::{
    ContentWriter, Ingester, LocalContent, sha256_digest, testsuite,
};

const CHILD_ENV: &str = "STENCIL_LAYERSTORE_CHILD";
const ROOT_ENV: &str = "STENCIL_LAYERSTORE_CHILD_ROOT";

#[test]
fn conformance_of_local_content() {
    testsuite::run(&|dir: &Path| match LocalContent::open(dir) {
        Ok(store) => store,
        Err(error) => panic!("open {}: {error}", dir.display()),
    });
}

/// The child's part: `hold` takes the ref, writes, says `held`, and keeps the ref until its
/// stdin closes; `try` tries to take the ref and prints the error kind.
#[test]
fn child_process_entry() {
    let (Ok(role), Ok(root)) = (std::env::var(CHILD_ENV), std::env::var(ROOT_ENV)) else {
        return;
    };
    let store = LocalContent::open(&root).expect("child opens the store");
    match role.as_str() {
        "hold" => {
            let mut writer = store.writer("two-processes").expect("child writer");
            writer.write_all(b"from the child").expect("child write");
            writer.flush().expect("child flush");
            println!("held");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "try" => match store.writer("two-processes") {
            Ok(_) => println!("result=ok"),
            Err(error) => println!("result={:?}", error.kind()),
        },
        other => panic!("unknown child role {other}"),
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
        .env(CHILD_ENV, role)
        .env(ROOT_ENV, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

fn child_result(root: &Path) -> String {
    let output = child("try", root).output().expect("spawn child");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.split("result=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "no result; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

#[test]
fn two_processes_writing_one_ref() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalContent::open(dir.path()).expect("open");

    // This process holds the ref: the child is refused.
    let writer = store.writer("two-processes").expect("parent writer");
    assert_eq!(child_result(dir.path()), format!("{:?}", ErrorKind::InUse));
    drop(writer);
    assert_eq!(
        child_result(dir.path()),
        "ok",
        "ref free after the parent's writer dropped"
    );

    // The child holds the ref: this process is refused until the child exits.
    let mut holder = child("hold", dir.path()).spawn().expect("spawn holder");
    let stdout = holder.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let held = lines.any(|line| line.is_ok_and(|line| line.contains("held")));
    assert!(held, "child did not take the ref");
    let refused = store
        .writer("two-processes")
        .map(|_| ())
        .err()
        .map(|error| error.kind());
    assert_eq!(
        refused,
        Some(ErrorKind::InUse),
        "parent while the child holds the ref"
    );
    drop(holder.stdin.take());
    assert!(holder.wait().expect("wait child").success());

    // The child's bytes are resumed, never interleaved.
    let mut writer = store
        .writer("two-processes")
        .expect("writer after child exit");
    assert_eq!(writer.offset(), b"from the child".len() as u64);
    let bytes = b"from the child, then the parent";
    writer
        .set_expected(&sha256_digest(bytes), bytes.len() as u64)
        .expect("set expected");
    let listed = store.ingests().expect("ingests");
    assert_eq!(
        listed[0].expected,
        Some((sha256_digest(bytes), bytes.len() as u64)),
        "expected digest and size recorded"
    );
    writer.write_all(b", then the parent").expect("write");
    writer
        .commit(bytes.len() as u64, &sha256_digest(bytes))
        .expect("commit");
}
