//! End-to-end tests of the pull pipeline: layers unpacked while they download and in
//! parallel, corrupted blobs refused with nothing left behind, shared layers reported as
//! `Already exists`, and a killed pull resumed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stencil_e2e::peers::{DockerRegistry, LayoutBuilder, skopeo_copy};
use stencil_e2e::{Stencil, noise};

fn write(path: &Path, content: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn snapshot_dirs(stencil: &Stencil) -> usize {
    std::fs::read_dir(stencil.root().join("snapshots/snapshots"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Three layers: a big base (so that the layers above unpack while it still does), then
/// deletions through whiteouts, changes below directories the layers do not list, and a
/// directory removed whole.
#[test]
fn layers_unpack_in_parallel_into_the_right_merged_tree() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(builder) = LayoutBuilder::new(stencil.scratch(), "v1") else {
        return;
    };
    let layout = builder
        .layer(|rootfs| {
            for i in 0..1500 {
                write(
                    &rootfs.join(format!("usr/share/many/{:02}/file{i}", i % 40)),
                    format!("file {i}\n").as_bytes(),
                );
            }
            write(&rootfs.join("opt/app/a"), b"a\n");
            write(&rootfs.join("opt/app/b"), b"b\n");
            write(&rootfs.join("var/cache/x/data"), b"cached\n");
            write(&rootfs.join("etc/keep"), b"one\n");
            set_mode(&rootfs.join("opt/app"), 0o750);
            set_mode(&rootfs.join("opt"), 0o711);
        })
        .layer(|rootfs| {
            std::fs::remove_file(rootfs.join("opt/app/a")).unwrap_or_else(|e| panic!("{e}"));
            write(&rootfs.join("opt/app/c"), b"c\n");
            std::fs::remove_dir_all(rootfs.join("var/cache/x")).unwrap_or_else(|e| panic!("{e}"));
        })
        .layer(|rootfs| {
            write(&rootfs.join("opt/app/d"), b"d\n");
            write(&rootfs.join("etc/keep"), b"three\n");
            write(&rootfs.join("srv/data/file"), b"s\n");
            set_mode(&rootfs.join("srv/data"), 0o700);
        });
    let image = format!("{}/e2e/parallel:v1", registry.host());
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{image}")) else {
        return;
    };
    let pulled = stencil.run(&["pull", &image]);
    pulled.success();
    assert_eq!(
        pulled.stdout.matches("Pull complete").count(),
        3,
        "{pulled}"
    );
    let mounted = stencil.run(&["image", "mount", &image]);
    mounted.success();
    let tree = Path::new(mounted.stdout.trim()).to_path_buf();
    let read = |rel: &str| std::fs::read_to_string(tree.join(rel)).ok();
    let checks = [
        ("opt/app/a", None),
        ("opt/app/b", Some("b\n")),
        ("opt/app/c", Some("c\n")),
        ("opt/app/d", Some("d\n")),
        ("etc/keep", Some("three\n")),
        ("var/cache/x/data", None),
        ("srv/data/file", Some("s\n")),
        ("usr/share/many/07/file1487", Some("file 1487\n")),
    ];
    let seen: Vec<(&str, Option<String>)> = checks.iter().map(|(p, _)| (*p, read(p))).collect();
    let modes = [
        ("opt", mode_of(&tree.join("opt"))),
        ("opt/app", mode_of(&tree.join("opt/app"))),
        ("srv/data", mode_of(&tree.join("srv/data"))),
    ];
    let gone = tree.join("var/cache/x").exists();
    stencil.run(&["image", "unmount", &image]).success();
    for ((path, expected), (_, actual)) in checks.iter().zip(&seen) {
        assert_eq!(actual.as_deref(), *expected, "{path}\n{pulled}");
    }
    assert_eq!(
        modes,
        [("opt", 0o711), ("opt/app", 0o750), ("srv/data", 0o700)],
        "{pulled}"
    );
    assert!(!gone, "var/cache/x survived its whiteout");
    stencil.run(&["fsck"]).success();
}

#[test]
fn a_corrupted_blob_fails_the_pull_naming_it_and_leaves_nothing() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(builder) = LayoutBuilder::new(stencil.scratch(), "v1") else {
        return;
    };
    let layout = builder
        .layer(|rootfs| write(&rootfs.join("data/noise"), &noise(3 << 20, 7)))
        .layer(|rootfs| write(&rootfs.join("etc/motd"), b"hello\n"));
    let image = format!("{}/e2e/corrupt:v1", registry.host());
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{image}")) else {
        return;
    };
    // The noise layer is the biggest blob the registry stores.
    let mut biggest: Option<(u64, std::path::PathBuf)> = None;
    let blobs = registry.blobs_dir();
    for prefix in std::fs::read_dir(&blobs)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        for blob in std::fs::read_dir(prefix.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
        {
            let data = blob.path().join("data");
            let size = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(s, _)| size > *s) {
                biggest = Some((size, data));
            }
        }
    }
    let (size, data) = biggest.unwrap_or_else(|| panic!("no blobs in the registry"));
    assert!(size > 1 << 20, "the noise layer is the biggest blob");
    let digest = format!(
        "sha256:{}",
        data.parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut bytes = std::fs::read(&data).unwrap_or_else(|e| panic!("{e}"));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap_or_else(|e| panic!("{e}"));

    let failed = stencil.run(&["pull", &image]);
    failed.expect_code(125).stderr_contains(&digest);
    stencil.run(&["images", "-q"]).success().stdout_is("");
    assert_eq!(snapshot_dirs(&stencil), 0, "no snapshot may stay\n{failed}");
    stencil.run(&["fsck"]).success();
}

#[test]
fn a_second_image_sharing_the_base_reports_it_as_already_there() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(builder) = LayoutBuilder::new(&stencil.scratch().join("one"), "v1") else {
        return;
    };
    std::fs::create_dir_all(stencil.scratch().join("two")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(stencil.scratch().join("one")).unwrap_or_else(|e| panic!("{e}"));
    // The same bytes in both images: umoci records modification times, so the base's
    // are fixed (files written a second apart would make two different layers).
    let base = |rootfs: &Path| {
        write(&rootfs.join("etc/base"), b"shared\n");
        let fixed = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for path in [
            rootfs.join("etc/base"),
            rootfs.join("etc"),
            rootfs.to_path_buf(),
        ] {
            std::fs::File::open(&path)
                .and_then(|file| file.set_modified(fixed))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    };
    let first = builder
        .layer(base)
        .layer(|rootfs| write(&rootfs.join("one"), b"1\n"));
    let Some(second) = LayoutBuilder::new(&stencil.scratch().join("two"), "v1") else {
        return;
    };
    let second = second
        .layer(base)
        .layer(|rootfs| write(&rootfs.join("two"), b"2\n"));
    let (one, two) = (
        format!("{}/e2e/one:v1", registry.host()),
        format!("{}/e2e/two:v1", registry.host()),
    );
    let Some(()) = skopeo_copy(&first.skopeo_name(), &format!("docker://{one}")) else {
        return;
    };
    let Some(()) = skopeo_copy(&second.skopeo_name(), &format!("docker://{two}")) else {
        return;
    };
    stencil.run(&["pull", &one]).success();
    let pulled = stencil.run(&["pull", &two]);
    pulled.success();
    assert_eq!(
        pulled.stdout.matches("Already exists").count(),
        1,
        "{pulled}"
    );
    assert_eq!(
        pulled.stdout.matches("Pull complete").count(),
        1,
        "{pulled}"
    );
    // The shared layer moved no bytes.
    assert_eq!(
        pulled.stdout.matches("Pulling fs layer").count(),
        1,
        "{pulled}"
    );
    stencil.run(&["fsck"]).success();
}

/// A loopback TCP proxy that can slow the server's answers to a trickle.
struct SlowProxy {
    port: u16,
    slow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    fn start(upstream: u16) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let slow = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (slow, stop) = (slow.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let (client_read, server_write) = (client.try_clone(), server.try_clone());
                    let (Ok(mut client_read), Ok(mut server_write)) = (client_read, server_write)
                    else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut server_write);
                        let _ = server_write.shutdown(std::net::Shutdown::Write);
                    });
                    let (slow, stop) = (slow.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let (mut server, mut client) = (server, client);
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = match server.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if client.write_all(&buffer[..n]).is_err()
                                || stop.load(Ordering::SeqCst)
                            {
                                break;
                            }
                            if slow.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                        let _ = client.shutdown(std::net::Shutdown::Both);
                    });
                }
            })
        };
        SlowProxy {
            port,
            slow,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Bytes in the store's ingests (partial downloads).
fn ingested(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root.join("ingest")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_killed_pull_resumes_where_it_stopped() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(builder) = LayoutBuilder::new(stencil.scratch(), "v1") else {
        return;
    };
    let payload = noise(8 << 20, 11);
    let layout = builder.layer(|rootfs| write(&rootfs.join("data/payload"), &payload));
    let pushed = format!("{}/e2e/resume:v1", registry.host());
    let Some(()) = skopeo_copy(&layout.skopeo_name(), &format!("docker://{pushed}")) else {
        return;
    };
    let proxy = SlowProxy::start(registry.port());
    let image = format!("127.0.0.1:{}/e2e/resume:v1", proxy.port);
    let mut child = stencil
        .command(&["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start stencil: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingested(&stencil.root()) < 1 << 20 {
        assert!(Instant::now() < deadline, "no download progress in 60 s");
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the slow pull ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = child.wait();
    let kept = ingested(&stencil.root());
    assert!(
        kept >= 1 << 20,
        "the partial download is kept ({kept} bytes)"
    );
    stencil.run(&["images", "-q"]).success().stdout_is("");

    proxy.slow.store(false, Ordering::SeqCst);
    let resumed = stencil.run(&["pull", &image]);
    resumed.success();
    assert!(resumed.stdout.contains("Resuming download"), "{resumed}");
    assert!(resumed.stdout.contains("Pull complete"), "{resumed}");
    assert_eq!(ingested(&stencil.root()), 0, "{resumed}");
    let mounted = stencil.run(&["image", "mount", &image]);
    mounted.success();
    let content = std::fs::read(Path::new(mounted.stdout.trim()).join("data/payload"));
    stencil.run(&["image", "unmount", &image]).success();
    assert!(
        content.as_deref().ok() == Some(payload.as_slice()),
        "the resumed layer differs\n{resumed}"
    );
    // The killed pull's unfinished snapshots are gone too.
    stencil.run(&["fsck"]).success();
}
