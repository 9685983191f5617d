//! Containers end to end, as root and for real: `run`, `create`, `start`, `ps`, `logs`,
//! `stop`, `kill`, `wait`, `rm`, `exec`, `diff`, `commit`, `export`, against an image
//! imported from a busybox root filesystem (Debian's static busybox, with its applets as
//! relative symlinks, an `/etc/os-release`, a user 1000 and a file to delete).
//!
//! Without root these tests skip with a reason, except under `CI=true` where that fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stencil_e2e::peers::{DockerRegistry, run_peer};
use stencil_e2e::{Stencil, peer, root_or_skip};

const IMAGE: &str = "e2e/busybox:1";
const OS_RELEASE: &str = "NAME=\"Stencil Test Linux\"\nID=stencil-test\n";

/// A store holding [`IMAGE`]; `None` when root or busybox is missing outside CI.
fn store_with_image(test: &str) -> Option<Stencil> {
    if !root_or_skip(test) {
        return None;
    }
    let busybox = peer("busybox")?;
    let stencil = Stencil::new();
    let rootfs = stencil.scratch().join("rootfs");
    for dir in ["bin", "etc", "tmp", "root", "home/user"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
    }
    std::fs::copy(&busybox, rootfs.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy busybox: {e}"));
    let applets = run_peer(Command::new(&busybox).arg("--list"));
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .unwrap_or_else(|e| panic!("symlink {applet}: {e}"));
    }
    let files = [
        ("etc/os-release", OS_RELEASE),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nuser:x:1000:\n"),
        ("etc/doomed", "delete me\n"),
    ];
    for (path, text) in files {
        std::fs::write(rootfs.join(path), text).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    let tarball = stencil.scratch().join("rootfs.tar");
    run_peer(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    stencil
        .run(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tarball.to_str().unwrap_or_default(),
            IMAGE,
        ])
        .success();
    Some(stencil)
}

/// `resolv.conf` as `ls /etc` lists it in a container: there when the host has one.
fn resolv_line() -> &'static str {
    if Path::new("/etc/resolv.conf").exists() {
        "resolv.conf\n"
    } else {
        ""
    }
}

/// Polls `check` for up to ten seconds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Removes every container left by a failed test, so no process or mount outlives it.
struct Cleanup<'a>(&'a Stencil);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-aq", "--no-trunc"]);
        for id in ids.lines() {
            self.0.run(&["rm", "-f", id]);
        }
    }
}

#[test]
fn run_prints_output_and_propagates_exit_codes() {
    let Some(stencil) = store_with_image("run_prints_output") else {
        return;
    };
    stencil
        .run(&["run", "--rm", IMAGE, "cat", "/etc/os-release"])
        .success()
        .stdout_is(OS_RELEASE);
    stencil
        .run(&["run", "--rm", IMAGE, "sh", "-c", "exit 7"])
        .expect_code(7);
    stencil.run(&["run", "--rm", IMAGE, "true"]).expect_code(0);
    stencil
        .run(&["run", "--rm", IMAGE, "/etc/os-release"])
        .expect_code(126)
        .stderr_contains("permission denied");
    stencil
        .run(&["run", "--rm", IMAGE, "no-such-command"])
        .expect_code(127)
        .stderr_contains("executable file not found");
    stencil
        .run(&["run", "--rm", "e2e/absent:1", "true"])
        .expect_code(125)
        .stderr_contains("e2e/absent:1");
    // --rm left nothing behind.
    stencil.run(&["ps", "-aq"]).success().stdout_is("");
}

#[test]
fn run_flags_set_environment_directory_user_entrypoint_volumes_and_hostname() {
    let Some(stencil) = store_with_image("run_flags") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let env_file = stencil.scratch().join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=file\nBOTH=file\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let run = stencil.run(&[
        "run",
        "--rm",
        "-e",
        "A=one",
        "--env-file",
        env_file.to_str().unwrap_or_default(),
        "-e",
        "BOTH=flag",
        IMAGE,
        "sh",
        "-c",
        "echo $A $FROM_FILE $BOTH; echo $PATH",
    ]);
    run.success()
        .stdout_is("one file flag\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    stencil
        .run(&["run", "--rm", "-w", "/tmp/work", IMAGE, "pwd"])
        .success()
        .stdout_is("/tmp/work\n");
    stencil
        .run(&["run", "--rm", "-u", "1000", IMAGE, "id", "-u"])
        .success()
        .stdout_is("1000\n");
    stencil
        .run(&[
            "run",
            "--rm",
            "-u",
            "user",
            IMAGE,
            "sh",
            "-c",
            "id -un; echo $HOME",
        ])
        .success()
        .stdout_is("user\n/home/user\n");
    stencil
        .run(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            IMAGE,
            "from",
            "entrypoint",
        ])
        .success()
        .stdout_is("from entrypoint\n");
    // The image's CMD is used when no command is given.
    stencil
        .run(&["run", "--rm", "-e", "X=y", IMAGE])
        .success()
        .stdout_is("");

    let volume = stencil.scratch().join("volume");
    std::fs::create_dir_all(&volume).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(volume.join("host.txt"), "from the host\n").unwrap_or_else(|e| panic!("{e}"));
    let spec = format!("{}:/data", volume.display());
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            &spec,
            IMAGE,
            "sh",
            "-c",
            "cat /data/host.txt; echo back > /data/back.txt",
        ])
        .success()
        .stdout_is("from the host\n");
    assert_eq!(
        std::fs::read_to_string(volume.join("back.txt")).unwrap_or_default(),
        "back\n"
    );
    let read_only = format!("{}:/data:ro", volume.display());
    stencil
        .run(&["run", "--rm", "-v", &read_only, IMAGE, "touch", "/data/no"])
        .expect_code(1);
    assert!(
        !volume.join("no").exists(),
        "a read-only volume was written"
    );

    // PID 1 is the command, and only the container's processes are visible.
    let ps = stencil.run(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo $$; ps -o pid,args; true",
    ]);
    ps.success();
    let lines = ps.lines();
    assert_eq!(lines.first().copied(), Some("1"), "{ps}");
    let processes = &lines[2..];
    assert_eq!(processes.len(), 2, "only sh and ps are visible:\n{ps}");

    // The hostname is the short ID, or --hostname.
    let created = stencil.run(&["create", IMAGE, "hostname"]);
    created.success();
    let id = created.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{created}");
    stencil
        .run(&["start", "-a", &id])
        .success()
        .stdout_is(&format!("{}\n", &id[..12]));
    stencil
        .run(&["rm", &id])
        .success()
        .stdout_is(&format!("{id}\n"));
    stencil
        .run(&["run", "--rm", "--hostname", "box", IMAGE, "hostname"])
        .success()
        .stdout_is("box\n");
}

#[test]
fn detached_containers_log_stop_wait_kill_exec_and_rm() {
    let Some(stencil) = store_with_image("detached") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let script = "echo started; trap 'echo stopping; exit 3' TERM; while true; do sleep 0.1; done";
    let run = stencil.run(&["run", "-d", "--name", "looper", IMAGE, "sh", "-c", script]);
    run.success();
    let id = run.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{run}");
    eventually("the log", || {
        stencil.run(&["logs", "looper"]).stdout == "started\n"
    });
    let ps = stencil.run(&["ps"]);
    ps.success();
    assert_eq!(ps.lines().len(), 2, "{ps}");
    assert!(ps.lines()[0].starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.stdout.contains(&id[..12]) && ps.stdout.contains("Up ") && ps.stdout.contains("looper"),
        "{ps}"
    );
    stencil
        .run(&["ps", "-q"])
        .success()
        .stdout_is(&format!("{}\n", &id[..12]));

    // exec joins the running container.
    stencil
        .run(&[
            "exec",
            "-e",
            "E=x",
            "looper",
            "sh",
            "-c",
            "echo $E; cat /proc/1/cmdline | tr '\\0' ' '",
        ])
        .success()
        .stdout_is(&format!("x\nsh -c {script} "));
    stencil
        .run(&["exec", "looper", "sh", "-c", "exit 5"])
        .expect_code(5);

    // rm refuses a running container; stop sends SIGTERM, which the script traps.
    stencil
        .run(&["rm", "looper"])
        .expect_code(125)
        .stderr_contains("container is running");
    stencil
        .run(&["stop", "looper"])
        .success()
        .stdout_is("looper\n");
    stencil.run(&["wait", "looper"]).success().stdout_is("3\n");
    stencil
        .run(&["logs", "looper"])
        .success()
        .stdout_is("started\nstopping\n");
    let status = stencil.run(&["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"]);
    assert!(
        status.stdout.starts_with("looper exited Exited (3) "),
        "{status}"
    );
    stencil.run(&["ps", "-q"]).success().stdout_is("");

    // start again, then kill; a command ignoring SIGTERM is killed after -t.
    stencil
        .run(&["start", "looper"])
        .success()
        .stdout_is("looper\n");
    eventually("the second start", || {
        stencil.run(&["ps", "-q"]).stdout.len() == 13
    });
    stencil
        .run(&["kill", "looper"])
        .success()
        .stdout_is("looper\n");
    stencil
        .run(&["wait", "looper"])
        .success()
        .stdout_is("137\n");
    let stubborn = stencil.run(&["run", "-d", IMAGE, "sleep", "60"]);
    stubborn.success();
    let stubborn = stubborn.stdout.trim().to_owned();
    let started = Instant::now();
    stencil.run(&["stop", "-t", "1", &stubborn]).success();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop -t 1 took {:?}",
        started.elapsed()
    );
    stencil
        .run(&["wait", &stubborn])
        .success()
        .stdout_is("137\n");

    // The image cannot go while a container uses it.
    stencil
        .run(&["rmi", IMAGE])
        .expect_code(125)
        .stderr_contains("must force");
    stencil.run(&["rm", "looper", &stubborn]).success();
    stencil.run(&["ps", "-aq"]).success().stdout_is("");
    stencil.run(&["rmi", IMAGE]).success();
    let snapshots = std::fs::read_dir(stencil.root().join("snapshots/snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(snapshots, 0, "snapshots left after rm and rmi");
}

/// The cells of the `system df` row that starts with `kind`.
fn df_row(stencil: &Stencil, kind: &str) -> Vec<String> {
    let df = stencil.run(&["system", "df"]);
    df.success();
    let line = df
        .lines()
        .into_iter()
        .find(|line| line.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} row: {df}"))
        .to_owned();
    line.split("   ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn containers_are_sized_inspected_tailed_and_pruned() {
    let Some(stencil) = store_with_image("containers_managed") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let keeper = stencil.run(&[
        "run",
        "-d",
        "--name",
        "keeper",
        IMAGE,
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big; echo written; while true; do sleep 0.1; done",
    ]);
    keeper.success();
    let keeper = keeper.stdout.trim().to_owned();
    eventually("keeper's write", || {
        stencil.run(&["logs", "keeper"]).stdout == "written\n"
    });
    stencil
        .run(&[
            "run",
            "--name",
            "gone",
            IMAGE,
            "sh",
            "-c",
            "printf 12345 > /five; for i in 1 2 3 4 5; do echo line $i; done; exit 3",
        ])
        .expect_code(3);
    stencil
        .run(&["create", "--name", "fresh", IMAGE, "true"])
        .success();

    // ps filters, -n and -l, as docker's (a status filter looks beyond running ones).
    let names = |args: &[&str]| {
        let mut command = vec!["ps", "--format", "{{.Names}}"];
        command.extend_from_slice(args);
        let run = stencil.run(&command);
        run.success();
        run.stdout.clone()
    };
    assert_eq!(names(&["-f", "status=exited"]), "gone\n");
    assert_eq!(
        names(&["--filter", "status=created", "--filter", "status=exited"]),
        "fresh\ngone\n"
    );
    assert_eq!(names(&["-a", "-f", "name=kee"]), "keeper\n");
    assert_eq!(names(&["-f", "exited=3"]), "gone\n");
    assert_eq!(names(&["-f", "exited=0"]), "");
    assert_eq!(
        names(&["-a", "-f", "ancestor=e2e/busybox:1", "-f", "status=running"]),
        "keeper\n"
    );
    assert_eq!(
        names(&["-a", "-f", &format!("id={}", &keeper[..10])]),
        "keeper\n"
    );
    assert_eq!(names(&["-l"]), "fresh\n");
    assert_eq!(names(&["-n", "2"]), "fresh\ngone\n");
    stencil
        .run(&["ps", "-f", "colour=red"])
        .expect_code(125)
        .stderr_contains("unknown key");

    // top lists the processes of the running container, and only those.
    let top = stencil.run(&["top", "keeper"]);
    top.success();
    let lines = top.lines();
    assert!(
        lines[0].starts_with("UID") && lines[0].contains("CMD"),
        "{top}"
    );
    assert!(
        lines[1..].iter().any(|l| l.contains("head -c 300000")),
        "the container's shell: {top}"
    );
    assert!(
        lines[1..].iter().all(|l| !l.contains("stencil")),
        "no host process: {top}"
    );
    stencil
        .run(&["top", "gone"])
        .expect_code(125)
        .stderr_contains("not running");

    // restart stops and starts again; rename keeps the container, -p is accepted.
    stencil
        .run(&["restart", "-t", "1", "keeper"])
        .success()
        .stdout_is("keeper\n");
    eventually("keeper's second start", || {
        stencil.run(&["logs", "keeper"]).stdout == "written\nwritten\n"
    });
    stencil.run(&["rename", "keeper", "/kept"]).success();
    stencil
        .run(&["inspect", "-f", "{{.Name}} {{.Id}}", "kept"])
        .success()
        .stdout_is(&format!("/kept {keeper}\n"));
    stencil
        .run(&["container", "rename", "kept", "gone"])
        .expect_code(125)
        .stderr_contains("already in use");
    stencil.run(&["rename", "kept", "keeper"]).success();
    let published = stencil.run(&[
        "run",
        "--rm",
        "-p",
        "8080:80",
        "-p",
        "[::1]:53:53/udp",
        IMAGE,
        "true",
    ]);
    published.success();
    assert!(
        published.stderr.contains("Published ports are discarded"),
        "{published}"
    );
    stencil
        .run(&["run", "--rm", "-p", "70000:80", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("70000");

    // logs --tail, as docker's.
    stencil
        .run(&["logs", "--tail", "2", "gone"])
        .success()
        .stdout_is("line 4\nline 5\n");
    stencil
        .run(&["logs", "-n", "0", "gone"])
        .success()
        .stdout_is("");
    stencil
        .run(&["logs", "--tail", "all", "gone"])
        .success()
        .stdout_is("line 1\nline 2\nline 3\nline 4\nline 5\n");
    stencil
        .run(&["logs", "--tail", "many", "gone"])
        .expect_code(125)
        .stderr_contains("invalid --tail");

    // Sizes: the writable layer only, and the image beside it.
    let sizes = stencil.run(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]);
    sizes.success();
    assert!(sizes.stdout.contains("gone 5B (virtual "), "{sizes}");
    assert!(sizes.stdout.contains("keeper 300kB (virtual "), "{sizes}");
    assert!(sizes.stdout.contains("fresh 0B (virtual "), "{sizes}");
    assert_eq!(
        df_row(&stencil, "Containers"),
        ["Containers", "3", "1", "300kB", "5B (0%)"],
    );
    assert_eq!(df_row(&stencil, "Images")[2], "1", "the image is in use");
    let verbose = stencil.run(&["system", "df", "-v"]);
    verbose.success();
    let containers = verbose
        .stdout
        .split("Containers space usage:")
        .nth(1)
        .unwrap_or_default();
    assert!(
        containers.contains("keeper")
            && containers.contains("gone")
            && containers.contains("fresh"),
        "{verbose}"
    );

    // inspect finds containers first, images otherwise; --type narrows it.
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.Name}} {{.Path}}",
            "gone",
        ])
        .success()
        .stdout_is("exited 3 /gone sh\n");
    stencil
        .run(&["inspect", "-f", "{{.State.Running}} {{.Id}}", "keeper"])
        .success()
        .stdout_is(&format!("true {keeper}\n"));
    stencil
        .run(&["container", "inspect", "-s", "-f", "{{.SizeRw}}", "gone"])
        .success()
        .stdout_is("5\n");
    let image_id = stencil.run(&["inspect", "-f", "{{.Id}}", IMAGE]);
    image_id.success();
    assert!(image_id.stdout.starts_with("sha256:"), "{image_id}");
    stencil
        .run(&["inspect", "-f", "{{.Image}}", "gone"])
        .success()
        .stdout_is(&image_id.stdout);
    stencil
        .run(&["inspect", "--type", "container", IMAGE])
        .expect_code(125);
    stencil
        .run(&["image", "inspect", "gone"])
        .expect_code(125)
        .stderr_contains("gone");
    stencil
        .run(&["inspect", "nothing-here"])
        .expect_code(125)
        .stderr_contains("nothing-here");
    // What is found is printed before the command fails on what is not.
    stencil
        .run(&["inspect", "-f", "{{.Name}}", "gone", "nothing-here"])
        .expect_code(125)
        .stdout_is("/gone\n")
        .stderr_contains("nothing-here");

    // The container group mirrors the top-level verbs.
    let names = stencil.run(&["container", "ls", "-a", "--format", "{{.Names}}"]);
    names.success();
    let mut listed: Vec<&str> = names.lines();
    listed.sort();
    assert_eq!(listed, ["fresh", "gone", "keeper"], "{names}");

    // container prune: every stopped container, never a running one.
    let pruned = stencil.run(&["container", "prune", "-f"]);
    pruned.success();
    assert!(
        pruned.stdout.starts_with("Deleted Containers:\n"),
        "{pruned}"
    );
    assert_eq!(
        pruned.lines().len(),
        5,
        "two IDs, a blank line, the total: {pruned}"
    );
    assert!(
        pruned.stdout.ends_with("Total reclaimed space: 5B\n"),
        "{pruned}"
    );
    stencil
        .run(&["ps", "-a", "--format", "{{.Names}}"])
        .success()
        .stdout_is("keeper\n");
    stencil
        .run(&["container", "prune"])
        .expect_code(125)
        .stderr_contains("use -f");

    // info counts what is there.
    let info = stencil.run(&["info", "--format", "json"]);
    info.success();
    let info: serde_json::Value = serde_json::from_str(&info.stdout)
        .unwrap_or_else(|e| panic!("info --format json: {e}: {info}"));
    assert_eq!(info["Containers"], 1, "{info}");
    assert_eq!(info["ContainersRunning"], 1, "{info}");
    assert_eq!(info["Images"], 1, "{info}");
    assert_eq!(info["Driver"], "overlay", "{info}");
    assert_eq!(
        info["DockerRootDir"].as_str(),
        stencil.root().to_str(),
        "{info}"
    );
    let text = stencil.run(&["info"]);
    text.success();
    assert!(
        text.stdout.contains(" Containers: 1\n  Running: 1\n"),
        "{text}"
    );

    // system prune -a: the running container keeps its image, tag and all, until it is
    // removed.
    stencil.run(&["system", "prune", "-a", "-f"]).success();
    stencil
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success()
        .stdout_is("e2e/busybox:1\n");
    stencil.run(&["rm", "-f", "keeper"]).success();
    let all = stencil.run(&["system", "prune", "-a", "-f"]);
    all.success();
    assert!(all.stdout.contains("untagged: e2e/busybox:1"), "{all}");
    stencil.run(&["images", "-q"]).success().stdout_is("");
    assert_eq!(
        df_row(&stencil, "Containers"),
        ["Containers", "0", "0", "0B", "0B"]
    );
    stencil.assert_consistent();
}

#[test]
fn containers_and_build_steps_get_hosts_hostname_and_resolv_conf() {
    let Some(stencil) = store_with_image("network_files") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // The image has /etc but none of the three files, as most registry images.
    stencil
        .run(&[
            "run",
            "--name",
            "named",
            "--hostname",
            "web1",
            IMAGE,
            "sh",
            "-c",
            "cat /etc/hostname; grep -q localhost /etc/hosts && echo has-localhost; grep web1 /etc/hosts | tr -s ' \\t' ' '",
        ])
        .success()
        .stdout_is("web1\nhas-localhost\n127.0.0.1 web1\n");
    if let Ok(host_resolv) = std::fs::read_to_string("/etc/resolv.conf") {
        stencil
            .run(&["run", "--rm", IMAGE, "cat", "/etc/resolv.conf"])
            .success()
            .stdout_is(&host_resolv);
    }
    let isolated = stencil.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "cat",
        "/etc/hosts",
    ]);
    isolated.success();
    assert!(
        isolated
            .stdout
            .starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost"),
        "{isolated}"
    );
    // A file of the user's over one of them wins.
    let own = stencil.scratch().join("own-hosts");
    std::fs::write(&own, "10.0.0.1 mine\n").unwrap_or_else(|e| panic!("write: {e}"));
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/etc/hosts:ro", own.display()),
            IMAGE,
            "cat",
            "/etc/hosts",
        ])
        .success()
        .stdout_is("10.0.0.1 mine\n");

    // The placeholders made to mount on are not the container's change.
    stencil.run(&["diff", "named"]).success().stdout_is("");
    stencil
        .run(&[
            "run",
            "--name",
            "writer",
            IMAGE,
            "sh",
            "-c",
            "echo new > /etc/motd",
        ])
        .success();
    stencil
        .run(&["diff", "writer"])
        .success()
        .stdout_is("C /etc\nA /etc/motd\n");
    stencil.run(&["commit", "writer", "e2e/writer:1"]).success();
    let mounted = stencil.run(&["image", "mount", "e2e/writer:1"]);
    mounted.success();
    let root = PathBuf::from(mounted.stdout.trim());
    let present: Vec<bool> = ["etc/motd", "etc/hosts", "etc/hostname", "etc/resolv.conf"]
        .iter()
        .map(|path| root.join(path).symlink_metadata().is_ok())
        .collect();
    stencil.run(&["image", "unmount", "e2e/writer:1"]).success();
    assert_eq!(
        present,
        [true, false, false, false],
        "what the commit holds"
    );

    // RUN steps of a build get them too, and they stay out of the built layers.
    let context = stencil.scratch().join("context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nRUN grep -q localhost /etc/hosts && cat /etc/hostname > /built-on && test -f /etc/resolv.conf -o ! -f /host-has-no-resolv\n"
        ),
    )
    .unwrap_or_else(|e| panic!("write Dockerfile: {e}"));
    stencil
        .run(&[
            "build",
            "-q",
            "-t",
            "e2e/netbuilt:1",
            context.to_str().unwrap_or_default(),
        ])
        .success();
    let mounted = stencil.run(&["image", "mount", "e2e/netbuilt:1"]);
    mounted.success();
    let root = PathBuf::from(mounted.stdout.trim());
    let built_on = std::fs::read_to_string(root.join("built-on")).unwrap_or_default();
    let hosts_in_image = root.join("etc/hosts").symlink_metadata().is_ok();
    stencil
        .run(&["image", "unmount", "e2e/netbuilt:1"])
        .success();
    assert_eq!(
        built_on.trim().len(),
        12,
        "RUN saw a hostname: {built_on:?}"
    );
    assert!(
        !hosts_in_image,
        "the built image has no /etc/hosts of its own"
    );
    stencil.assert_consistent();
}

#[test]
fn cp_copies_both_ways_with_dockers_rules_and_stays_in_the_container() {
    let Some(stencil) = store_with_image("cp") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let script = "mkdir -p /d/sub && echo one > /d/a && echo two > /d/sub/b && \
                  ln -s /etc/passwd /d/link && ln -s ../../../../etc /d/up";
    stencil
        .run(&["run", "--name", "box", IMAGE, "sh", "-c", script])
        .success();
    let host = stencil.scratch().join("host");
    std::fs::create_dir_all(&host).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let at = |name: &str| host.join(name).display().to_string();
    let read = |name: &str| std::fs::read_to_string(host.join(name)).unwrap_or_default();

    // Out of a stopped container: a file to a new name, a directory into an existing
    // directory, a directory's contents to a new directory.
    stencil.run(&["cp", "box:/d/a", &at("a.txt")]).success();
    assert_eq!(read("a.txt"), "one\n");
    stencil.run(&["cp", "box:/d", &at("")]).success();
    assert_eq!(read("d/sub/b"), "two\n");
    stencil.run(&["cp", "box:/d/.", &at("flat")]).success();
    assert_eq!(read("flat/a"), "one\n");
    // Symlinks travel as symlinks; followed (-L), they resolve inside the container.
    let link = std::fs::read_link(host.join("d/link")).unwrap_or_default();
    assert_eq!(link, PathBuf::from("/etc/passwd"));
    stencil.run(&["cp", "-L", "box:/d/up", &at("up")]).success();
    assert_eq!(
        read("up/os-release"),
        OS_RELEASE,
        "../../../../etc from /d is the container's /etc, never the host's"
    );
    // To standard output: a tar of the entry.
    let tar = stencil.run(&["cp", "box:/d/sub", "-"]);
    tar.success();
    assert!(
        tar.stdout.contains("sub/b") && tar.stdout.contains("two"),
        "{tar}"
    );

    // Into the container: a file into a directory, a directory under a new name.
    std::fs::write(host.join("note.txt"), "from the host\n").unwrap_or_else(|e| panic!("{e}"));
    stencil.run(&["cp", &at("note.txt"), "box:/d/"]).success();
    stencil.run(&["cp", &at("flat"), "box:/copied"]).success();
    let seen = stencil.run(&["diff", "box"]);
    seen.success();
    for line in [
        "A /d/note.txt",
        "A /copied",
        "A /copied/a",
        "A /copied/sub/b",
    ] {
        assert!(seen.stdout.lines().any(|l| l == line), "{line}: {seen}");
    }

    // A running container sees what is copied in at once, and gives what it writes,
    // volumes included, as its processes see them.
    let volume = stencil.scratch().join("volume");
    std::fs::create_dir_all(&volume).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(volume.join("inside"), "in the volume\n").unwrap_or_else(|e| panic!("{e}"));
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "live",
            "-v",
            &format!("{}:/data", volume.display()),
            IMAGE,
            "sh",
            "-c",
            "echo up > /tmp/up; while true; do sleep 0.1; done",
        ])
        .success();
    stencil
        .run(&["cp", "live:/data/inside", &at("inside.txt")])
        .success();
    assert_eq!(read("inside.txt"), "in the volume\n");
    stencil
        .run(&["cp", &at("note.txt"), "live:/data/"])
        .success();
    assert_eq!(
        std::fs::read_to_string(volume.join("note.txt"))
            .ok()
            .as_deref(),
        Some("from the host\n"),
        "copied into the volume, on the host"
    );
    stencil
        .run(&["cp", &at("note.txt"), "live:/tmp/"])
        .success();
    stencil
        .run(&["exec", "live", "cat", "/tmp/note.txt"])
        .success()
        .stdout_is("from the host\n");
    eventually("the live container's file", || {
        stencil.run(&["cp", "live:/tmp/up", &at("up.txt")]).code == Some(0)
    });
    assert_eq!(read("up.txt"), "up\n");

    // Errors name what is missing; nothing is left half-copied.
    stencil
        .run(&["cp", "box:/nope", &at("nope")])
        .expect_code(125)
        .stderr_contains("/nope");
    assert!(!host.join("nope").exists());
    stencil
        .run(&["cp", &at("note.txt"), "box:/no/such/dir/x"])
        .expect_code(125)
        .stderr_contains("/no/such/dir");
    stencil
        .run(&["cp", "box:/d", &at("a.txt")])
        .expect_code(125)
        .stderr_contains("onto the file");
    stencil
        .run(&["cp", &at("a.txt"), &at("b.txt")])
        .expect_code(125)
        .stderr_contains("CONTAINER:PATH");
    let leftovers = std::fs::read_dir(&host)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".stencil-cp-"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "no staging directory left");
    stencil.assert_consistent();
}

#[test]
fn foreground_containers_keep_their_logs() {
    let Some(stencil) = store_with_image("foreground_logs") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // Live output still reaches our streams, each on its own.
    let run = stencil.run(&[
        "run",
        "--name",
        "fg",
        IMAGE,
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 4",
    ]);
    run.expect_code(4).stdout_is("hi\n").stderr_contains("oops");
    // logs keeps the streams apart, as docker's does.
    let logs = stencil.run(&["logs", "fg"]);
    logs.success().stdout_is("hi\n");
    assert_eq!(logs.stderr, "oops\n", "{logs}");
    // A second start appends, as docker's log does.
    stencil.run(&["start", "-a", "fg"]).expect_code(4);
    let logs = stencil.run(&["logs", "fg"]);
    logs.success().stdout_is("hi\nhi\n");
    assert_eq!(logs.stderr, "oops\noops\n", "{logs}");
    // With a terminal, what it showed.
    let tty = stencil.run(&["run", "-t", "--name", "fgt", IMAGE, "echo", "on a tty"]);
    tty.success();
    assert!(tty.stdout.contains("on a tty"), "{tty}");
    stencil
        .run(&["logs", "fgt"])
        .success()
        .stdout_is("on a tty\r\n");
}

#[test]
fn logs_keep_streams_times_and_a_window_like_dockers() {
    let Some(stencil) = store_with_image("logs_window") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // Two streams, a line written in two pieces a moment apart, a last line without its
    // newline, and a second batch a little later.
    let script = "echo out1; echo err1 >&2; printf 'pie'; sleep 0.3; echo ce; \
                  echo err2 >&2; sleep 1.2; echo late; printf 'no newline'";
    let run = stencil.run(&["run", "-d", "--name", "chatty", IMAGE, "sh", "-c", script]);
    run.success();
    stencil.run(&["wait", "chatty"]).success().stdout_is("0\n");

    let all = stencil.run(&["logs", "chatty"]);
    all.success().stdout_is("out1\npiece\nlate\nno newline");
    assert_eq!(all.stderr, "err1\nerr2\n", "{all}");

    // --tail counts lines, not the pieces a line was written in, in both streams.
    let tail = stencil.run(&["logs", "--tail", "3", "chatty"]);
    tail.success().stdout_is("late\nno newline");
    assert_eq!(tail.stderr, "err2\n", "{tail}");
    let tail = stencil.run(&["logs", "-n", "5", "chatty"]);
    tail.success().stdout_is("piece\nlate\nno newline");
    assert_eq!(tail.stderr, "err1\nerr2\n", "{tail}");

    // -t: each line begins with its RFC 3339 time; the times read back as --since/--until.
    let stamped = stencil.run(&["logs", "-t", "chatty"]);
    stamped.success();
    let lines: Vec<&str> = stamped.stdout.split('\n').collect();
    assert_eq!(lines.len(), 4, "{stamped}");
    let mut times = Vec::new();
    for (line, text) in lines.iter().zip(["out1", "piece", "late", "no newline"]) {
        let (time, rest) = line.split_once(' ').expect("a time, then the line");
        assert_eq!(rest, text, "{stamped}");
        assert!(
            time.len() == 30 && time.ends_with('Z') && &time[10..11] == "T",
            "{stamped}"
        );
        times.push(time.to_owned());
    }
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{stamped}");
    assert!(
        stamped
            .stderr
            .lines()
            .all(|line| line.ends_with(" err1") || line.ends_with(" err2"))
    );
    let late = &times[2];
    let since = stencil.run(&["logs", "--since", late, "chatty"]);
    since.success().stdout_is("late\nno newline");
    assert_eq!(since.stderr, "", "{since}");
    let until = stencil.run(&["logs", "--until", late, "chatty"]);
    until.success().stdout_is("out1\npiece\n");
    assert_eq!(until.stderr, "err1\nerr2\n", "{until}");
    // Relative times and Unix seconds.
    stencil
        .run(&["logs", "--since", "10m", "chatty"])
        .success()
        .stdout_is("out1\npiece\nlate\nno newline");
    stencil
        .run(&["logs", "--since", "4000000000", "chatty"])
        .success()
        .stdout_is("");
    stencil
        .run(&["logs", "--until", "1.5", "chatty"])
        .success()
        .stdout_is("");
    stencil
        .run(&["logs", "--since", "yesterday", "chatty"])
        .expect_code(125)
        .stderr_contains("invalid --since \"yesterday\"");

    // -f of a stopped container prints what there is and returns.
    stencil
        .run(&["logs", "-f", "chatty"])
        .success()
        .stdout_is("out1\npiece\nlate\nno newline");
    // -f of a live one follows both streams until it stops; -t and --tail go with it.
    let run = stencil.run(&[
        "run",
        "-d",
        "--name",
        "live",
        IMAGE,
        "sh",
        "-c",
        "echo a; sleep 0.6; echo b >&2; sleep 0.6; echo c",
    ]);
    run.success();
    let started = std::time::Instant::now();
    let follow = stencil
        .command(&["logs", "-f", "--tail", "all", "live"])
        .output()
        .unwrap();
    assert!(follow.status.success());
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "a\nc\n");
    assert_eq!(String::from_utf8_lossy(&follow.stderr), "b\n");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "logs -f returned before the container stopped"
    );
    stencil.run(&["wait", "live"]).success().stdout_is("0\n");
    stencil.assert_consistent();
}

/// Every capability we hold (root's, less what a sandbox took), as `/proc/PID/status`
/// prints it: what `--privileged` gives.
fn all_capabilities() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapPrm:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn run_takes_labels_hosts_capabilities_tmpfs_and_stop_settings() {
    let Some(stencil) = store_with_image("run_flags_more") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let cap_eff = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "grep", "CapEff", "/proc/self/status"]);
        let run = stencil.run(&args);
        run.success();
        run.stdout
            .trim()
            .trim_start_matches("CapEff:")
            .trim()
            .to_owned()
    };
    // docker's default set, then with one dropped (NET_RAW, 13) and one added (SYS_ADMIN, 21).
    assert_eq!(cap_eff(&[]), "00000000a80425fb");
    assert_eq!(
        cap_eff(&["--cap-drop", "NET_RAW", "--cap-add", "cap_sys_admin"]),
        "00000000a82405fb"
    );
    assert_eq!(
        cap_eff(&["--cap-drop", "ALL", "--cap-add", "CHOWN"]),
        "0000000000000001"
    );
    assert_eq!(cap_eff(&["--privileged"]), all_capabilities());
    assert_eq!(cap_eff(&["--cap-add", "ALL", "--cap-drop", "MKNOD"]), {
        let all = u64::from_str_radix(&all_capabilities(), 16).unwrap_or(0);
        format!("{:016x}", all & !(1 << 27))
    });
    stencil
        .run(&["run", "--rm", "--cap-add", "NOPE", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("invalid --cap-add \"NOPE\"");
    // A capability the set leaves out is really gone: chown fails without CHOWN.
    stencil
        .run(&[
            "run",
            "--rm",
            "--cap-drop",
            "CHOWN",
            IMAGE,
            "chown",
            "1:1",
            "/etc/os-release",
        ])
        .expect_code(1);
    // exec'd processes get the container's set.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "capped",
            "--cap-drop",
            "ALL",
            IMAGE,
            "sleep",
            "30",
        ])
        .success();
    stencil
        .run(&["exec", "capped", "grep", "CapEff", "/proc/self/status"])
        .success()
        .stdout_is("CapEff:\t0000000000000000\n");
    stencil.run(&["rm", "-f", "capped"]).success();
    // --privileged: /sys writable and nothing masked in /proc.
    let privileged = stencil.run(&[
        "run",
        "--rm",
        "--privileged",
        IMAGE,
        "sh",
        "-c",
        "grep ' /sys ' /proc/mounts; grep -c ' /proc/kcore ' /proc/mounts",
    ]);
    assert!(privileged.stdout.contains("sysfs rw,"), "{privileged}");
    assert!(privileged.stdout.ends_with("\n0\n"), "{privileged}");

    // --add-host lines close /etc/hosts; bad ones are refused.
    let hosts = stencil.run(&[
        "run",
        "--rm",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "v6=fd00::1",
        IMAGE,
        "cat",
        "/etc/hosts",
    ]);
    hosts.success();
    assert!(
        hosts.stdout.ends_with("10.1.2.3\tdb\nfd00::1\tv6\n"),
        "{hosts}"
    );
    stencil
        .run(&["run", "--rm", "--add-host", "db:ten", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("\"ten\" is not an IP address");

    // --tmpfs: a fresh tmpfs, docker's flags, the size asked, and nothing of it committed.
    let tmpfs = stencil.run(&[
        "run",
        "--name",
        "scratchy",
        "--tmpfs",
        "/scratch/deep:size=1m,mode=750",
        IMAGE,
        "sh",
        "-c",
        "grep ' /scratch/deep ' /proc/mounts; echo x > /scratch/deep/file; \
         dd if=/dev/zero of=/scratch/deep/big bs=1024 count=2048 2>/dev/null || echo full",
    ]);
    tmpfs.success();
    assert!(
        tmpfs
            .stdout
            .starts_with("tmpfs /scratch/deep tmpfs rw,nosuid,nodev,noexec,"),
        "{tmpfs}"
    );
    assert!(tmpfs.stdout.contains("size=1024k,mode=750"), "{tmpfs}");
    assert!(tmpfs.stdout.ends_with("full\n"), "{tmpfs}");
    let diff = stencil.run(&["diff", "scratchy"]);
    diff.success();
    assert!(!diff.stdout.contains("/scratch/deep/file"), "{diff}");
    stencil
        .run(&[
            "run",
            "--rm",
            "--tmpfs",
            "/t:size=1m,colour=red",
            IMAGE,
            "true",
        ])
        .expect_code(125)
        .stderr_contains("invalid --tmpfs option \"colour=red\"");
    stencil
        .run(&["run", "--rm", "--tmpfs", "relative", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("invalid --tmpfs target \"relative\"");

    // Labels: in inspect, in ps --filter and --format.
    stencil
        .run(&[
            "create", "--name", "labelled", "-l", "tier=web", "--label", "empty", IMAGE, "true",
        ])
        .success();
    stencil
        .run(&["create", "--name", "other", "-l", "tier=db", IMAGE, "true"])
        .success();
    stencil
        .run(&["inspect", "-f", "{{json .Config.Labels}}", "labelled"])
        .success()
        .stdout_is("{\"empty\":\"\",\"tier\":\"web\"}\n");
    stencil
        .run(&[
            "ps",
            "-a",
            "--filter",
            "label=tier=web",
            "--format",
            "{{.Names}} {{.Labels}}",
        ])
        .success()
        .stdout_is("labelled empty=,tier=web\n");
    stencil
        .run(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=tier",
            "--filter",
            "label=empty",
        ])
        .success()
        .stdout_is(&format!(
            "{}\n",
            stencil
                .run(&["ps", "-aq", "--filter", "name=labelled"])
                .stdout
                .trim()
        ));
    stencil
        .run(&["create", "-l", "=x", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("invalid label \"=x\"");
    // container prune --filter label= removes the containers with it only.
    stencil
        .run(&["container", "prune", "-f", "--filter", "label=tier=db"])
        .success();
    stencil
        .run(&[
            "ps",
            "-a",
            "--filter",
            "label=tier",
            "--format",
            "{{.Names}}",
        ])
        .success()
        .stdout_is("labelled\n");

    // --stop-signal and --stop-timeout: what stop sends, and how long it waits.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "usr1",
            "--stop-signal",
            "USR1",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got usr1; exit 7' USR1; echo up; while true; do sleep 0.1; done",
        ])
        .success();
    eventually("usr1 to start", || {
        stencil.run(&["logs", "usr1"]).stdout == "up\n"
    });
    stencil.run(&["stop", "usr1"]).success();
    stencil.run(&["wait", "usr1"]).success().stdout_is("7\n");
    stencil
        .run(&["logs", "usr1"])
        .success()
        .stdout_is("up\ngot usr1\n");
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "stubborn",
            "--stop-timeout",
            "1",
            IMAGE,
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.1; done",
        ])
        .success();
    eventually("stubborn to start", || {
        stencil.run(&["logs", "stubborn"]).stdout == "up\n"
    });
    let started = Instant::now();
    stencil.run(&["stop", "stubborn"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "--stop-timeout 1 waited {:?}",
        started.elapsed()
    );
    stencil
        .run(&["wait", "stubborn"])
        .success()
        .stdout_is("137\n");
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.Config.StopTimeout}} {{.Config.StopSignal}}",
            "stubborn",
            "usr1",
        ])
        .success()
        .stdout_is("1 \n USR1\n");
    stencil
        .run(&["run", "--rm", "--stop-signal", "NOSIG", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("invalid --stop-signal \"NOSIG\"");
    stencil.assert_consistent();
}

#[test]
fn attach_follows_output_sends_input_and_proxies_signals() {
    let Some(stencil) = store_with_image("attach") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // Output from now on, both streams, then the container's exit code.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "later",
            IMAGE,
            "sh",
            "-c",
            "echo before; sleep 1; echo after; echo oops >&2; exit 3",
        ])
        .success();
    eventually("the first line", || {
        stencil.run(&["logs", "later"]).stdout == "before\n"
    });
    let attached = stencil.run(&["attach", "later"]);
    attached.expect_code(3).stdout_is("after\n");
    assert_eq!(attached.stderr, "oops\n", "{attached}");
    stencil
        .run(&["attach", "later"])
        .expect_code(125)
        .stderr_contains("cannot attach to container later: it is not running");

    // Input reaches a -i container; the attachment ends when it stops.
    stencil
        .run(&[
            "run",
            "-di",
            "--name",
            "reader",
            IMAGE,
            "sh",
            "-c",
            "while read line; do [ \"$line\" = quit ] && exit 5; echo \"got $line\"; done",
        ])
        .success();
    let attached = stencil.run_with(
        &["container", "attach", "reader"],
        &[],
        Some(b"one\ntwo\nquit\n"),
    );
    attached.expect_code(5).stdout_is("got one\ngot two\n");

    // Our signals go to the container; with --sig-proxy=false they do not.
    let script = "trap 'echo interrupted; exit 9' INT; echo ready; while true; do sleep 0.1; done";
    stencil
        .run(&["run", "-d", "--name", "trapper", IMAGE, "sh", "-c", script])
        .success();
    eventually("trapper to start", || {
        stencil.run(&["logs", "trapper"]).stdout == "ready\n"
    });
    let child = stencil
        .command(&["attach", "--no-stdin", "trapper"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Let it attach before the signal.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.status.code(), Some(9), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "interrupted\n");
    stencil.assert_consistent();
}

#[test]
fn detached_interactive_containers_keep_their_input_open() {
    let Some(stencil) = store_with_image("detached_interactive") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    stencil
        .run(&["run", "-di", "--name", "di", IMAGE, "sh"])
        .success();
    stencil
        .run(&["run", "-dit", "--name", "dit", IMAGE, "sh"])
        .success();
    // sh reading end-of-file would have exited at once.
    std::thread::sleep(Duration::from_millis(1500));
    let states = stencil.run(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    states.success();
    let mut lines = states.lines();
    lines.sort();
    assert_eq!(lines, ["di running", "dit running"], "{states}");
    let input = stencil.run(&["exec", "di", "sh", "-c", "ls -l /proc/1/fd/0"]);
    input.success();
    assert!(input.stdout.contains("pipe:"), "{input}");
    stencil.run(&["stop", "-t", "1", "di", "dit"]).success();
    stencil.run(&["ps", "-q"]).success().stdout_is("");
}

#[test]
fn wait_reads_the_code_of_a_container_that_removes_itself() {
    let Some(stencil) = store_with_image("wait_rm") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let run = stencil.run(&["run", "-d", "--rm", IMAGE, "sh", "-c", "sleep 1; exit 3"]);
    run.success();
    let id = run.stdout.trim().to_owned();
    stencil.run(&["wait", &id]).success().stdout_is("3\n");
    // The monitor removes it once the waiter has read the code.
    eventually("the removal", || {
        stencil.run(&["ps", "-aq"]).stdout.is_empty()
    });
    stencil
        .run(&["wait", "no-such-box"])
        .expect_code(1)
        .stderr_contains("No such container: no-such-box");
}

#[test]
fn containers_handed_to_runc_stop_kill_and_go() {
    let Some(stencil) = store_with_image("runc_lifecycle") else {
        return;
    };
    let Some(runc) = peer("runc") else {
        return;
    };
    let runc = runc.to_str().unwrap_or_default().to_owned();
    let _cleanup = Cleanup(&stencil);
    let script = "echo up; trap 'echo down; exit 4' TERM; while true; do sleep 0.1; done";
    stencil
        .run(&[
            "run",
            "-d",
            "--runtime",
            &runc,
            "--name",
            "rc",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    eventually("the log", || stencil.run(&["logs", "rc"]).stdout == "up\n");
    stencil
        .run(&["ps", "--format", "{{.Names}} {{.State}}"])
        .success()
        .stdout_is("rc running\n");
    stencil
        .run(&["exec", "rc", "cat", "/etc/os-release"])
        .success()
        .stdout_is(OS_RELEASE);
    stencil.run(&["stop", "rc"]).success().stdout_is("rc\n");
    stencil.run(&["wait", "rc"]).success().stdout_is("4\n");
    stencil
        .run(&["logs", "rc"])
        .success()
        .stdout_is("up\ndown\n");
    let status = stencil.run(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(status.stdout.starts_with("rc Exited (4) "), "{status}");

    stencil.run(&["start", "rc"]).success();
    eventually("the second start", || {
        stencil.run(&["ps", "-q"]).stdout.len() == 13
    });
    stencil.run(&["kill", "rc"]).success().stdout_is("rc\n");
    stencil.run(&["wait", "rc"]).success().stdout_is("137\n");

    stencil.run(&["start", "rc"]).success();
    eventually("the third start", || {
        stencil.run(&["ps", "-q"]).stdout.len() == 13
    });
    stencil.run(&["rm", "-f", "rc"]).success();
    stencil.run(&["ps", "-aq"]).success().stdout_is("");

    // Limits reach runc's cgroup, which `stats` and `pause` find where they look for ours
    // (here, not in a test of its own: `runc list` below sees every runc container).
    stencil
        .run(&[
            "run",
            "-d",
            "--runtime",
            &runc,
            "--name",
            "rclimited",
            "-m",
            "64m",
            "--pids-limit",
            "20",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    let pid = stencil.run(&["inspect", "-f", "{{.State.Pid}}", "rclimited"]);
    pid.success();
    let pid = pid.stdout.trim().to_owned();
    let memory = cgroup_dir(&pid, "memory");
    let limit = if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(read_trimmed(&memory.join(limit)), "67108864");
    assert_eq!(
        read_trimmed(&cgroup_dir(&pid, "pids").join("pids.max")),
        "20"
    );
    stencil
        .run(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "rclimited",
        ])
        .success()
        .stdout_is("rclimited 1\n");
    stencil.run(&["pause", "rclimited"]).success();
    stencil
        .run(&["inspect", "-f", "{{.State.Status}}", "rclimited"])
        .success()
        .stdout_is("paused\n");
    stencil.run(&["unpause", "rclimited"]).success();
    stencil.run(&["rm", "-f", "rclimited"]).success();
    eventually("runc's cgroup to go", || !memory.exists());
    stencil.run(&["ps", "-aq"]).success().stdout_is("");
    // runc forgot them too.
    let list = run_peer(Command::new(&runc).args(["list", "-q"]));
    assert!(!list.lines().any(|l| l.len() == 64), "{list}");

    // Capabilities, tmpfs and extra hosts reach runc's bundle too.
    let flags = stencil.run(&[
        "run",
        "--rm",
        "--runtime",
        &runc,
        "--cap-drop",
        "NET_RAW",
        "--cap-add",
        "SYS_ADMIN",
        "--tmpfs",
        "/scratch:size=1m",
        "--add-host",
        "db:10.1.2.3",
        IMAGE,
        "sh",
        "-c",
        "grep CapEff /proc/self/status; grep ' /scratch ' /proc/mounts; tail -n 1 /etc/hosts",
    ]);
    flags.success();
    assert!(
        flags.stdout.starts_with("CapEff:\t00000000a82405fb\n"),
        "{flags}"
    );
    assert!(
        flags
            .stdout
            .contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,")
            && flags.stdout.contains("size=1024k"),
        "{flags}"
    );
    assert!(flags.stdout.ends_with("10.1.2.3\tdb\n"), "{flags}");
}

#[test]
fn a_container_dies_unexpectedly_and_ps_says_so() {
    let Some(stencil) = store_with_image("dies") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let run = stencil.run(&["run", "-d", IMAGE, "sleep", "60"]);
    run.success();
    let id = run.stdout.trim().to_owned();
    let state_path = stencil
        .root()
        .join("containers")
        .join(&id)
        .join("state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap_or_default()).unwrap_or_default();
    let monitor = state["MonitorPid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no monitor pid: {state}"));
    let pid = state["Pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid: {state}"));
    // The monitor dies first, then the container: nobody sees the exit status.
    run_peer(Command::new("kill").args(["-9", &monitor.to_string()]));
    run_peer(Command::new("kill").args(["-9", &pid.to_string()]));
    eventually("the dead container", || {
        stencil
            .run(&["ps", "-a", "--format", "{{.Status}}"])
            .stdout
            .starts_with("Exited (unknown)")
    });
    stencil.run(&["rm", &id]).success();
}

#[test]
fn commit_records_how_the_container_was_run_as_docker_does() {
    let Some(stencil) = store_with_image("commit_config") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    stencil
        .run(&[
            "run",
            "--name",
            "configured",
            "-t",
            "-e",
            "FOO=bar",
            "-w",
            "/work",
            "-l",
            "team=ops",
            "--stop-signal",
            "USR2",
            IMAGE,
            "sh",
            "-c",
            "echo \"hi from $FOO in $(pwd)\"",
        ])
        .success();
    stencil
        .run(&["commit", "configured", "e2e/configured:1"])
        .success();
    let config = stencil.run(&["inspect", "-f", "{{json .Config}}", "e2e/configured:1"]);
    config.success();
    let config: serde_json::Value =
        serde_json::from_str(config.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{config}"));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .map(|list| list.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(env.contains(&"FOO=bar"), "{config}");
    assert!(
        !env.iter()
            .any(|e| e.starts_with("HOSTNAME=") || *e == "TERM=xterm"),
        "the runtime's own variables are not the image's: {config}"
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["sh", "-c", "echo \"hi from $FOO in $(pwd)\""]),
        "{config}"
    );
    assert_eq!(config["WorkingDir"], "/work", "{config}");
    assert_eq!(config["Labels"]["team"], "ops", "{config}");
    assert_eq!(config["StopSignal"], "USR2", "{config}");
    // The image runs the container's command by default.
    stencil
        .run(&["run", "--rm", "e2e/configured:1"])
        .success()
        .stdout_is("hi from bar in /work\n");
    // -c changes go over it.
    stencil
        .run(&[
            "commit",
            "-c",
            "CMD [\"echo\", \"changed\"]",
            "configured",
            "e2e/configured:2",
        ])
        .success();
    stencil
        .run(&["run", "--rm", "e2e/configured:2"])
        .success()
        .stdout_is("changed\n");
    stencil.assert_consistent();
}

#[test]
fn writes_stay_in_their_container_until_commit() {
    let Some(stencil) = store_with_image("writes") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let first = stencil.run(&[
        "create",
        "--name",
        "first",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /etc/os-release; rm /etc/doomed; mkdir /srv; echo new > /srv/new",
    ]);
    first.success();
    stencil.run(&["start", "-a", "first"]).success();
    stencil
        .run(&["run", "--rm", IMAGE, "cat", "/etc/os-release"])
        .success()
        .stdout_is(OS_RELEASE);
    stencil
        .run(&[
            "run",
            "--name",
            "second",
            IMAGE,
            "sh",
            "-c",
            "cat /etc/os-release; ls /etc",
        ])
        .success()
        // The network files are mounted on placeholders of the runtime's.
        .stdout_is(&format!(
            "{OS_RELEASE}doomed\ngroup\nhostname\nhosts\nos-release\npasswd\n{}",
            resolv_line()
        ));
    stencil
        .run(&["diff", "first"])
        .success()
        .stdout_is("C /etc\nD /etc/doomed\nC /etc/os-release\nA /srv\nA /srv/new\n");

    // export: the whole flattened filesystem.
    let exported = stencil.scratch().join("first.tar");
    stencil
        .run(&[
            "export",
            "first",
            "-o",
            exported.to_str().unwrap_or_default(),
        ])
        .success();
    let names = tar_names(&exported);
    for wanted in ["etc/os-release", "srv/new", "bin/busybox", "bin/sh"] {
        assert!(
            names.iter().any(|n| n.trim_start_matches("./") == wanted),
            "{wanted} not in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("doomed")),
        "deleted file exported: {names:?}"
    );

    let commit = stencil.run(&[
        "commit",
        "-m",
        "edited",
        "-a",
        "Tester",
        "-c",
        "ENV EDITED=yes",
        "first",
        "e2e/edited:1",
    ]);
    commit.success();
    assert!(
        commit.stdout.starts_with("sha256:") && commit.stdout.trim().len() == 71,
        "{commit}"
    );
    stencil
        .run(&[
            "run",
            "--rm",
            "e2e/edited:1",
            "sh",
            "-c",
            "cat /etc/os-release /srv/new; echo $EDITED; ls /etc",
        ])
        .success()
        .stdout_is(&format!(
            "changed\nnew\nyes\ngroup\nhostname\nhosts\nos-release\npasswd\n{}",
            resolv_line()
        ));
    let history = stencil.run(&["history", "e2e/edited:1"]);
    assert!(history.stdout.contains("edited"), "{history}");
    // The image has no /proc, /sys or /dev: the directories the runtime made to mount on
    // are not the container's change, so they are in neither diff nor commit.
    let mounted = stencil.run(&["image", "mount", "e2e/edited:1"]);
    mounted.success();
    let view = Path::new(mounted.stdout.trim());
    assert!(view.join("srv/new").exists(), "{mounted}");
    for dir in ["proc", "sys", "dev"] {
        assert!(
            !view.join(dir).exists(),
            "the commit recorded the runtime's /{dir} mount point"
        );
    }
    stencil.run(&["image", "unmount", "e2e/edited:1"]).success();
    stencil.run(&["rm", "first", "second"]).success();
}

#[test]
fn run_and_create_pull_a_missing_image_as_docker_does() {
    let Some(stencil) = store_with_image("run_pulls") else {
        return;
    };
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let remote = format!("{}/e2e/auto:1", registry.host());
    stencil.run(&["tag", IMAGE, &remote]).success();
    stencil.run(&["push", "-q", &remote]).success();

    let fresh = Stencil::new();
    let _cleanup = Cleanup(&fresh);
    // Not in the store: said so and pulled, progress on standard error only.
    let first = fresh.run(&["run", "--rm", &remote, "cat", "/etc/os-release"]);
    first.success().stdout_is(OS_RELEASE);
    assert!(
        first.stderr.starts_with(&format!(
            "Unable to find image '{remote}' locally\n1: Pulling from e2e/auto\n"
        )),
        "{first}"
    );
    assert!(first.stderr.contains("Pull complete"), "{first}");
    assert!(
        first
            .stderr
            .contains(&format!("Status: Downloaded newer image for {remote}")),
        "{first}"
    );
    // Present now: nothing pulled.
    let second = fresh.run(&["run", "--rm", &remote, "true"]);
    second.success();
    assert_eq!(second.stderr, "", "{second}");
    // --pull always asks the registry again; create pulls too.
    let always = fresh.run(&["create", "--pull", "always", &remote, "true"]);
    always.success();
    assert!(always.stderr.contains("Image is up to date"), "{always}");
    assert!(!always.stderr.contains("Unable to find"), "{always}");
    // --pull never: the image must be there.
    let other = Stencil::new();
    other
        .run(&["run", "--rm", "--pull", "never", &remote, "true"])
        .expect_code(125)
        .stderr_contains("Unable to find image");
    other.run(&["images", "-q"]).success().stdout_is("");
    // A name no registry has: the pull's error, nothing stored.
    let absent = format!("{}/e2e/absent:1", registry.host());
    other
        .run(&["run", "--rm", &absent, "true"])
        .expect_code(125)
        .stderr_contains("e2e/absent");
    // Flags are checked before anything is pulled.
    other
        .run(&["run", "--rm", "--cap-add", "NOPE", &remote, "true"])
        .expect_code(125)
        .stderr_contains("NOPE");
    other.run(&["images", "-q"]).success().stdout_is("");
    fresh.assert_consistent();
    other.assert_consistent();
}

#[test]
fn committed_deletions_reach_other_tools_through_a_registry() {
    let Some(stencil) = store_with_image("commit_push") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let (Some(skopeo), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    stencil
        .run(&[
            "run",
            "--name",
            "deleter",
            IMAGE,
            "sh",
            "-c",
            "rm /etc/doomed; echo kept > /etc/kept",
        ])
        .success();
    let target = format!("{}/e2e/deleted:1", registry.host());
    stencil.run(&["commit", "deleter", &target]).success();
    let inspect = |what: &str| {
        stencil
            .run(&["inspect", "--format", what, &target])
            .success()
            .stdout
            .trim()
            .to_owned()
    };
    let id = inspect("{{.Id}}");
    // Committed layers are kept as plain tars; push compresses them, and the image then
    // has the manifest the registry stores.
    assert!(
        inspect("{{json .Descriptor}}").contains("sha256"),
        "inspect shows the manifest descriptor"
    );
    // Until then it has no digest a registry could serve, and shows none, as docker.
    assert_eq!(inspect("{{json .RepoDigests}}"), "[]");
    stencil
        .run(&["images", "--digests", "--format", "{{.Digest}}", &target])
        .success()
        .stdout_is("<none>\n");
    let pushed = stencil.run(&["push", &target]).success().stdout.clone();
    let digest = inspect("{{.Descriptor.digest}}");
    assert!(
        inspect("{{json .RepoDigests}}").contains(&format!("@{digest}")),
        "after the push the digest is shown"
    );
    stencil
        .run(&["images", "--digests", "--format", "{{.Digest}}", &target])
        .success()
        .stdout_is(&format!("{digest}\n"));
    assert!(
        pushed.contains(&format!("digest: {digest} ")),
        "push reports the digest the image now has ({digest}):\n{pushed}"
    );
    assert_eq!(inspect("{{.Id}}"), id, "the image ID does not change");
    // Layers are listed, the config is not (as docker's push output).
    let config_short = &id.trim_start_matches("sha256:")[..12];
    assert!(
        !pushed.contains(config_short),
        "config {config_short} listed:\n{pushed}"
    );
    // The compression is shown, one line per plain layer (two: the base and the commit).
    let compressing: Vec<&str> = pushed
        .lines()
        .filter(|line| line.ends_with(": Compressing"))
        .collect();
    let compressed = pushed.matches(": Compressed as ").count();
    assert!(
        compressing.len() == 2 && compressed == 2,
        "push shows each compression:\n{pushed}"
    );
    let raw = run_peer(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]));
    let manifest: serde_json::Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("manifest {raw}: {e}"));
    let media_types: Vec<&str> = manifest["layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .filter_map(|l| l["mediaType"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !media_types.is_empty()
            && media_types
                .iter()
                .all(|m| m.ends_with("+gzip") || m.ends_with(".gzip")),
        "every pushed layer is gzip: {media_types:?}"
    );
    let remote = run_peer(Command::new(&skopeo).args([
        "inspect",
        "--format",
        "{{.Digest}}",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]));
    assert_eq!(
        remote.trim(),
        digest,
        "the registry has the image's manifest"
    );
    // A second push has nothing left to compress or send.
    let again = stencil.run(&["push", &target]).success().stdout.clone();
    assert!(again.contains(&format!("digest: {digest} ")), "{again}");
    assert!(!again.contains("Compress"), "{again}");
    // By digest: no tag is set, and none is printed.
    let repository = target
        .rsplit_once(':')
        .map_or(target.as_str(), |(name, _)| name);
    let by_digest = stencil
        .run(&["push", &format!("{repository}@{digest}")])
        .success()
        .stdout
        .clone();
    assert!(
        by_digest.contains(&format!("\ndigest: {digest} size: ")),
        "{by_digest}"
    );
    stencil.assert_consistent();
    // The committed image still runs, from the compressed layer.
    stencil
        .run(&["run", "--rm", &target, "cat", "/etc/kept"])
        .success()
        .stdout_is("kept\n");
    let layout = stencil.scratch().join("layout");
    run_peer(Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:deleted", layout.display()),
    ]));
    let bundle = stencil.scratch().join("bundle");
    run_peer(Command::new(&umoci).args([
        "unpack",
        "--image",
        &format!("{}:deleted", layout.display()),
        bundle.to_str().unwrap_or_default(),
    ]));
    let rootfs = bundle.join("rootfs");
    assert!(
        rootfs.join("etc/os-release").is_file(),
        "the base layer is there"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/kept")).unwrap_or_default(),
        "kept\n"
    );
    assert!(
        !rootfs.join("etc/doomed").exists(),
        "umoci still shows the deleted file"
    );
    stencil.run(&["rm", "deleter"]).success();
}

fn tar_names(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = tar::Archive::new(file);
    archive
        .entries()
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("entry: {e}"));
            let path: PathBuf = entry
                .path()
                .unwrap_or_else(|e| panic!("path: {e}"))
                .into_owned();
            path.display().to_string()
        })
        .collect()
}

/// Whether the host has only the unified cgroup hierarchy (v2), as stencil decides.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The host directory of `controller`'s cgroup of process `pid`, from `/proc/PID/cgroup`
/// (containers have no cgroup namespace, so the path is the host's).
fn cgroup_dir(pid: &str, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/cgroup: {e}"));
    let v2 = cgroup_v2();
    let path = text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        wanted.then(|| path.to_owned())
    });
    let path = path.unwrap_or_else(|| panic!("no {controller} cgroup for {pid}:\n{text}"));
    let mount = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    mount.join(path.trim_start_matches('/'))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn resource_limits_reach_the_cgroup_and_hold() {
    let Some(stencil) = store_with_image("resource_limits") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let run = stencil.run(&[
        "run",
        "-d",
        "--name",
        "limited",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        IMAGE,
        "sleep",
        "60",
    ]);
    run.success();
    let pid = stencil.run(&["inspect", "-f", "{{.State.Pid}}", "limited"]);
    pid.success();
    let pid = pid.stdout.trim().to_owned();
    let memory = cgroup_dir(&pid, "memory");
    let cpu = cgroup_dir(&pid, "cpu");
    let pids = cgroup_dir(&pid, "pids");
    assert!(
        memory.to_string_lossy().contains("stencil/"),
        "not in a stencil cgroup: {}",
        memory.display()
    );
    if cgroup_v2() {
        assert_eq!(read_trimmed(&memory.join("memory.max")), "67108864");
        assert_eq!(read_trimmed(&cpu.join("cpu.max")), "50000 100000");
    } else {
        assert_eq!(
            read_trimmed(&memory.join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");
    }
    assert_eq!(read_trimmed(&pids.join("pids.max")), "20");
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.State.Paused}}",
            "limited",
        ])
        .success()
        .stdout_is("67108864 134217728 500000000 20 false\n");

    let stats = stencil.run(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
    ]);
    stats.success();
    let fields: Vec<&str> = stats.stdout.split_whitespace().collect();
    match fields.as_slice() {
        ["limited", _used, "/", "64MiB", pids] => {
            assert!(pids.parse::<u32>().is_ok_and(|n| n >= 1), "{stats}");
        }
        _ => panic!("unexpected stats line\n{stats}"),
    }
    let table = stencil.run(&["stats", "--no-stream", "limited"]);
    table.success();
    assert!(
        table.stdout.starts_with(
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS\n"
        ),
        "{table}"
    );

    // CPU % comes from the cgroup's CPU time; the quota holds a busy loop near half a CPU.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "spinner",
            "--cpus",
            "0.5",
            IMAGE,
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .success();
    let spin = stencil.run(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.CPUPerc}}",
        "spinner",
    ]);
    spin.success();
    let percent: f64 = spin
        .stdout
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap_or_else(|_| panic!("CPU % is not a percentage\n{spin}"));
    assert!((1.0..=70.0).contains(&percent), "{spin}");
    stencil.run(&["rm", "-f", "spinner"]).success();

    // An exec'd process joins the container's cgroups.
    let stencil_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("stencil/"))
            .map(str::to_owned)
            .collect()
    };
    let exec = stencil.run(&["exec", "limited", "cat", "/proc/self/cgroup"]);
    exec.success();
    let first = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert_eq!(stencil_lines(&exec.stdout), stencil_lines(&first), "{exec}");

    stencil.run(&["rm", "-f", "limited"]).success();
    eventually("the cgroup of a removed container to go", || {
        !memory.exists() && !cpu.exists() && !pids.exists()
    });

    // Forks beyond the limit fail; memory beyond it gets the process OOM-killed.
    stencil
        .run(&[
            "run",
            "--rm",
            "--pids-limit",
            "10",
            IMAGE,
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done; wait",
        ])
        .stderr_contains("can't fork");
    stencil
        .run(&[
            "run",
            "--name",
            "hungry",
            "-m",
            "16m",
            IMAGE,
            "sh",
            "-c",
            "x=a; while true; do x=$x$x; done",
        ])
        .expect_code(137);
    // inspect tells an OOM kill from a plain SIGKILL, as docker's State.OOMKilled does.
    let oom = |name: &str| {
        let out = stencil.run(&["inspect", "-f", "{{.State.OOMKilled}}", name]);
        out.success();
        out.stdout.trim().to_owned()
    };
    assert_eq!(oom("hungry"), "true");
    stencil
        .run(&[
            "run",
            "--name",
            "killed",
            "-m",
            "16m",
            IMAGE,
            "sh",
            "-c",
            "sh -c 'kill -9 $$'; exit $?",
        ])
        .expect_code(137);
    assert_eq!(oom("killed"), "false");
    stencil.run(&["rm", "hungry", "killed"]).success();

    // A foreground container's cgroup goes when it exits; without limits it has one too.
    let own = stencil.run(&["run", "--rm", IMAGE, "cat", "/proc/self/cgroup"]);
    own.success();
    let line = own
        .lines()
        .into_iter()
        .find(|l| l.contains("stencil/"))
        .unwrap_or_else(|| panic!("no stencil cgroup\n{own}"))
        .to_owned();
    let mut fields = line.splitn(3, ':').skip(1);
    let (controllers, path) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    let controller = controllers.split(',').next().unwrap_or("");
    let dir = if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    } else {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(path.trim_start_matches('/'))
    };
    assert!(!dir.exists(), "{} outlived its container", dir.display());
}

#[test]
fn pause_freezes_a_container_until_unpause() {
    let Some(stencil) = store_with_image("pause_freezes") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let id = stencil
        .run(&["run", "-d", "--name", "frozen", IMAGE, "sleep", "60"])
        .success()
        .stdout
        .trim()
        .to_owned();
    let pid = stencil.run(&["inspect", "-f", "{{.State.Pid}}", "frozen"]);
    pid.success();
    let pid = pid.stdout.trim().to_owned();
    let freezer = cgroup_dir(&pid, "freezer");
    let frozen = || {
        if cgroup_v2() {
            read_trimmed(&freezer.join("cgroup.events")).contains("frozen 1")
        } else {
            read_trimmed(&freezer.join("freezer.state")) == "FROZEN"
        }
    };
    assert!(!frozen());

    stencil
        .run(&["pause", "frozen"])
        .success()
        .stdout_is("frozen\n");
    assert!(
        frozen(),
        "the freezer of {} is not frozen",
        freezer.display()
    );
    let ps = stencil.run(&["ps", "--format", "{{.Names}}|{{.Status}}|{{.State}}"]);
    ps.success();
    assert!(
        ps.stdout.starts_with("frozen|Up ") && ps.stdout.ends_with(" (Paused)|paused\n"),
        "{ps}"
    );
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "frozen",
        ])
        .success()
        .stdout_is("paused true\n");
    stencil
        .run(&["ps", "-q", "--filter", "status=paused"])
        .success()
        .stdout_is(&format!("{}\n", &id[..12]));
    stencil
        .run(&["ps", "-q", "--filter", "status=running"])
        .success()
        .stdout_is("");
    stencil
        .run(&["exec", "frozen", "true"])
        .expect_code(125)
        .stderr_contains("is paused, unpause the container before exec");
    stencil
        .run(&["pause", "frozen"])
        .expect_code(125)
        .stderr_contains("is already paused");

    stencil.run(&["unpause", "frozen"]).success();
    assert!(!frozen());
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "frozen",
        ])
        .success()
        .stdout_is("running false\n");
    stencil.run(&["exec", "frozen", "true"]).success();
    stencil
        .run(&["unpause", "frozen"])
        .expect_code(125)
        .stderr_contains("is not paused");

    // commit freezes a running container while it reads the changes (docker's --pause
    // default), then thaws it; --pause=false does not; a paused one stays paused.
    stencil
        .run(&[
            "exec",
            "frozen",
            "sh",
            "-c",
            "mkdir /many && cd /many && i=0; while [ $i -lt 3000 ]; do echo $i > f$i; i=$((i+1)); done",
        ])
        .success();
    let frozen_during = |args: &[&str]| {
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut seen = false;
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let mut seen = false;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    seen |= frozen();
                    std::thread::sleep(Duration::from_micros(500));
                }
                seen
            });
            stencil.run(args).success();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            seen = watcher.join().unwrap_or(false);
        });
        seen
    };
    assert!(frozen_during(&["commit", "frozen", "e2e/frozen:1"]));
    assert!(!frozen(), "commit left the container frozen");
    assert!(!frozen_during(&[
        "commit",
        "--pause=false",
        "frozen",
        "e2e/frozen:2"
    ]));
    stencil.run(&["pause", "frozen"]).success();
    stencil.run(&["commit", "frozen", "e2e/frozen:3"]).success();
    assert!(frozen(), "commit thawed a container the user paused");
    stencil.run(&["unpause", "frozen"]).success();
    stencil
        .run(&["commit", "--pause=maybe", "frozen"])
        .expect_code(125)
        .stderr_contains("invalid --pause");

    // A paused container stops: the signal, then the thaw, as docker does.
    stencil.run(&["pause", "frozen"]).success();
    stencil.run(&["stop", "-t", "1", "frozen"]).success();
    stencil
        .run(&["wait", "frozen"])
        .success()
        .stdout_is("137\n");
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "frozen",
        ])
        .success()
        .stdout_is("exited false\n");
    assert!(
        !freezer.exists(),
        "{} outlived its container",
        freezer.display()
    );
    stencil
        .run(&["pause", "frozen"])
        .expect_code(125)
        .stderr_contains("is not running");
}

#[test]
fn resource_flags_reject_bad_values() {
    let Some(stencil) = store_with_image("resource_flags") else {
        return;
    };
    let check = |flags: &[&str], needle: &str| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        stencil.run(&args).expect_code(125).stderr_contains(needle);
    };
    check(&["-m", "12x"], "'12x' for '--memory");
    check(&["--memory", "1k"], "--memory");
    check(&["--cpus", "abc"], "'abc' for '--cpus");
    check(&["--cpus", "100000"], "--cpus");
    check(&["--memory-swap", "1g"], "--memory-swap");
    check(&["-m", "64m", "--memory-swap", "32m"], "--memory-swap");
    check(&["--pids-limit", "many"], "'many' for '--pids-limit");
    // docker's forms that are fine.
    stencil
        .run(&[
            "run",
            "--rm",
            "-m",
            "64M",
            "--memory-swap",
            "-1",
            "--cpus",
            "1",
            "--pids-limit",
            "-1",
            IMAGE,
            "true",
        ])
        .success();
    stencil
        .run(&["create", "--name", "sized", "-m", "1g", IMAGE, "true"])
        .success();
    stencil
        .run(&["inspect", "-f", "{{.HostConfig.Memory}}", "sized"])
        .success()
        .stdout_is("1073741824\n");
}

/// `volume inspect -f '{{.Mountpoint}}' NAME`.
fn mountpoint(stencil: &Stencil, name: &str) -> PathBuf {
    let out = stencil.run(&["volume", "inspect", "-f", "{{.Mountpoint}}", name]);
    out.success();
    PathBuf::from(out.stdout.trim())
}

/// `volume ls -q`, one name per entry.
fn volume_names(stencil: &Stencil) -> Vec<String> {
    let out = stencil.run(&["volume", "ls", "-q"]);
    out.success();
    out.lines().into_iter().map(str::to_owned).collect()
}

#[test]
fn named_volumes_are_shared_kept_and_left_out_of_commits() {
    let Some(stencil) = store_with_image("named_volumes") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // `-v NAME:PATH` makes the volume when it is missing; what one container writes the
    // next one reads, read-only when asked.
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo hi > /data/f",
        ])
        .success();
    assert_eq!(volume_names(&stencil), ["data"]);
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "data:/elsewhere:ro",
            IMAGE,
            "cat",
            "/elsewhere/f",
        ])
        .success()
        .stdout_is("hi\n");
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "data:/d:ro",
            IMAGE,
            "sh",
            "-c",
            "echo x > /d/g",
        ])
        .expect_code(1)
        .stderr_contains("Read-only file system");
    let data = mountpoint(&stencil, "data");
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap_or_default(),
        "hi\n"
    );

    // A volume in use, even by a stopped container, cannot be removed.
    stencil
        .run(&[
            "create",
            "--name",
            "user",
            "-v",
            "data:/data",
            IMAGE,
            "true",
        ])
        .success();
    let refused = stencil.run(&["volume", "rm", "data"]);
    assert_ne!(refused.code, Some(0), "{refused}");
    refused.stderr_contains("volume data is in use");
    assert!(data.join("f").exists(), "a refused rm lost the data");
    let listed = stencil.run(&["volume", "ls", "--filter", "dangling=false"]);
    listed.success();
    assert_eq!(listed.lines(), ["DRIVER    VOLUME NAME", "local     data"]);
    // --volumes-from mounts another container's volumes at the same paths.
    stencil
        .run(&[
            "run",
            "--rm",
            "--volumes-from",
            "user",
            IMAGE,
            "cat",
            "/data/f",
        ])
        .success()
        .stdout_is("hi\n");
    stencil
        .run(&[
            "run",
            "--rm",
            "--volumes-from",
            "user:ro",
            IMAGE,
            "sh",
            "-c",
            "echo x > /data/x",
        ])
        .expect_code(1)
        .stderr_contains("Read-only file system");
    stencil
        .run(&["run", "--rm", "--volumes-from", "nosuch", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("invalid --volumes-from \"nosuch\"");
    for filter in ["volume=data", "volume=/data/"] {
        stencil
            .run(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
            .success()
            .stdout_is("user\n");
    }
    stencil
        .run(&["ps", "-a", "--filter", "volume=other", "-q"])
        .success()
        .stdout_is("");
    let inspect = stencil.run(&["inspect", "-f", "{{json .Mounts}}", "user"]);
    inspect.success();
    let mounts: serde_json::Value =
        serde_json::from_str(inspect.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {inspect}"));
    assert_eq!(mounts[0]["Type"], "volume", "{inspect}");
    assert_eq!(mounts[0]["Name"], "data", "{inspect}");
    assert_eq!(mounts[0]["Destination"], "/data", "{inspect}");

    // Writes into a volume are not the container's changes: commit leaves them out.
    stencil
        .run(&[
            "run",
            "--name",
            "writer",
            "-v",
            "data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo new > /data/n; echo layer > /layer",
        ])
        .success();
    stencil
        .run(&["commit", "writer", "e2e/voltest:1"])
        .success();
    stencil
        .run(&[
            "run",
            "--rm",
            "e2e/voltest:1",
            "sh",
            "-c",
            "cat /layer; test -e /data/n || echo no-n",
        ])
        .success()
        .stdout_is("layer\nno-n\n");
    let df = stencil.run(&["system", "df"]);
    df.success();
    assert!(
        df.lines()
            .iter()
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["Local", "Volumes", "1"]),
        "{df}"
    );

    // Once no container uses it, it goes, files and all; `rm -v` keeps named volumes.
    stencil.run(&["rm", "-v", "user", "writer"]).success();
    assert_eq!(volume_names(&stencil), ["data"]);
    stencil
        .run(&["volume", "rm", "data"])
        .success()
        .stdout_is("data\n");
    assert!(!data.exists(), "{} outlived its volume", data.display());
    assert!(volume_names(&stencil).is_empty());
    stencil.assert_consistent();
}

#[test]
fn anonymous_volumes_get_the_image_content_and_go_with_their_container() {
    let Some(stencil) = store_with_image("anonymous_volumes") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // An image that declares VOLUME /srv over a directory it fills.
    stencil
        .run(&[
            "run",
            "--name",
            "seeder",
            IMAGE,
            "sh",
            "-c",
            "mkdir -p /srv/sub && echo seed > /srv/sub/seed && chown -R 1000:1000 /srv && chmod 750 /srv",
        ])
        .success();
    stencil
        .run(&["commit", "-c", "VOLUME /srv", "seeder", "e2e/vol:1"])
        .success();
    stencil.run(&["rm", "seeder"]).success();

    stencil
        .run(&[
            "run",
            "--name",
            "va",
            "e2e/vol:1",
            "sh",
            "-c",
            "cat /srv/sub/seed; echo more > /srv/new",
        ])
        .success()
        .stdout_is("seed\n");
    stencil
        .run(&["inspect", "-f", "{{json .Config.Volumes}}", "va"])
        .success()
        .stdout_is("{\"/srv\":{}}\n");
    let names = volume_names(&stencil);
    let [anonymous] = names.as_slice() else {
        panic!("expected one anonymous volume, got {names:?}");
    };
    assert!(
        anonymous.len() == 64 && anonymous.bytes().all(|b| b.is_ascii_hexdigit()),
        "{anonymous}"
    );
    let labels = stencil.run(&["volume", "inspect", "-f", "{{json .Labels}}", anonymous]);
    labels
        .success()
        .stdout_is("{\"com.docker.volume.anonymous\":\"\"}\n");
    // The copy keeps the image's owners and modes, the volume's top directory included.
    let data = mountpoint(&stencil, anonymous);
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::metadata(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    assert_eq!((top.uid(), top.mode() & 0o7777), (1000, 0o750));
    let seed = std::fs::metadata(data.join("sub/seed")).unwrap_or_else(|e| panic!("seed: {e}"));
    assert_eq!(seed.uid(), 1000);
    assert!(data.join("new").exists());
    // `rm` without -v leaves it dangling; `rm -v` removes it.
    stencil.run(&["rm", "-v", "va"]).success();
    assert!(
        volume_names(&stencil).is_empty(),
        "rm -v kept the anonymous volume"
    );
    assert!(!data.exists());

    // --rm removes the anonymous volume with the container.
    stencil
        .run(&["run", "--rm", "e2e/vol:1", "ls", "/srv"])
        .success();
    assert!(
        volume_names(&stencil).is_empty(),
        "--rm kept the anonymous volume"
    );

    // A named volume with content keeps it; nocopy gets no copy; `-v PATH` is anonymous.
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "kept:/srv",
            IMAGE,
            "sh",
            "-c",
            "echo mine > /srv/own",
        ])
        .success();
    stencil
        .run(&["run", "--rm", "-v", "kept:/srv", "e2e/vol:1", "ls", "/srv"])
        .success()
        .stdout_is("own\n");
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "bare:/srv:nocopy",
            "e2e/vol:1",
            "ls",
            "-A",
            "/srv",
        ])
        .success()
        .stdout_is("");
    stencil
        .run(&[
            "run",
            "--name",
            "vb",
            "-v",
            "/scratch",
            IMAGE,
            "sh",
            "-c",
            "echo s > /scratch/s",
        ])
        .success();
    stencil.run(&["rm", "vb"]).success();
    let mut names = volume_names(&stencil);
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");

    // prune takes the dangling anonymous volume; -a the named ones too.
    let pruned = stencil.run(&["volume", "prune", "-f"]);
    pruned.success();
    assert!(pruned.stdout.starts_with("Deleted Volumes:\n"), "{pruned}");
    let mut left = volume_names(&stencil);
    left.sort();
    assert_eq!(left, ["bare", "kept"]);
    stencil.run(&["volume", "prune", "-af"]).success();
    assert!(volume_names(&stencil).is_empty());
    stencil.assert_consistent();
}

#[test]
fn volume_input_errors_name_the_fault_and_change_nothing() {
    let Some(stencil) = store_with_image("volume_errors") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    stencil
        .run(&["run", "--rm", "-v", "bad/name:/x", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("\"bad/name\" includes invalid characters");
    stencil
        .run(&["run", "--rm", "-v", "a1:/x", "-v", "b1:/x/", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("duplicate mount point: /x");
    stencil
        .run(&["run", "--rm", "-v", "/tmp:/x:nocopy", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("nocopy is for volumes");
    stencil
        .run(&["volume", "rm", "nosuch"])
        .expect_code(125)
        .stderr_contains("no such volume: nosuch");
    stencil.run(&["volume", "rm", "-f", "nosuch"]).success();
    stencil
        .run(&["volume", "create", "-o", "type=tmpfs", "t1"])
        .expect_code(125)
        .stderr_contains("\"type=tmpfs\" is not supported");
    stencil
        .run(&["volume", "create", "--driver", "nfs", "t2"])
        .expect_code(125)
        .stderr_contains("volume driver \"nfs\"");
    assert!(
        volume_names(&stencil).is_empty(),
        "a failed command left a volume"
    );
    assert!(stencil.run(&["ps", "-aq"]).stdout.is_empty());

    // A symlink in the image resolves inside its root filesystem: the copy into a new
    // volume never reads the host's files.
    let host = stencil.scratch().join("host-secret");
    std::fs::create_dir_all(&host).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(host.join("secret"), "host\n").unwrap_or_else(|e| panic!("{e}"));
    let link = format!("ln -s {} /escape", host.display());
    stencil
        .run(&["run", "--name", "linker", IMAGE, "sh", "-c", &link])
        .success();
    stencil.run(&["commit", "linker", "e2e/link:1"]).success();
    stencil
        .run(&[
            "run",
            "--rm",
            "-v",
            "esc:/escape",
            "e2e/link:1",
            "ls",
            "-A",
            "/escape",
        ])
        .success()
        .stdout_is("");
    let esc = mountpoint(&stencil, "esc");
    assert!(!esc.join("secret").exists(), "the host's file was copied");
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap_or_default(),
        "host\n"
    );
    stencil
        .run(&["volume", "create", "--label", "team=db", "made"])
        .success()
        .stdout_is("made\n");
    stencil
        .run(&["volume", "create", "made"])
        .success()
        .stdout_is("made\n");
    stencil
        .run(&[
            "volume",
            "ls",
            "--filter",
            "label=team=db",
            "--format",
            "{{.Name}} {{.Labels}}",
        ])
        .success()
        .stdout_is("made team=db\n");
}

#[test]
fn update_changes_limits_of_running_and_stopped_containers() {
    let Some(stencil) = store_with_image("update_limits") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "upd",
            "-m",
            "32m",
            "--pids-limit",
            "20",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    let pid = stencil.run(&["inspect", "-f", "{{.State.Pid}}", "upd"]);
    pid.success();
    let pid = pid.stdout.trim().to_owned();
    let (memory, cpu, pids) = (
        cgroup_dir(&pid, "memory"),
        cgroup_dir(&pid, "cpu"),
        cgroup_dir(&pid, "pids"),
    );
    let (memory_file, quota_file) = if cgroup_v2() {
        (memory.join("memory.max"), cpu.join("cpu.max"))
    } else {
        (
            memory.join("memory.limit_in_bytes"),
            cpu.join("cpu.cfs_quota_us"),
        )
    };
    assert_eq!(read_trimmed(&memory_file), (32u64 << 20).to_string());

    // Raised at once in the running container's cgroup, and recorded.
    stencil
        .run(&[
            "update",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "upd",
        ])
        .success()
        .stdout_is("upd\n");
    assert_eq!(read_trimmed(&memory_file), (64u64 << 20).to_string());
    assert_eq!(read_trimmed(&pids.join("pids.max")), "50");
    let quota = read_trimmed(&quota_file);
    assert!(quota.starts_with("50000"), "cpu quota {quota}");
    stencil
        .run(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
            "upd",
        ])
        .success()
        .stdout_is(&format!("{} 500000000 50\n", 64u64 << 20));
    // Lowered below what the default swap limit allowed: written in the kernel's order.
    let memsw = memory.join("memory.memsw.limit_in_bytes");
    let check_memsw = |mib: u64| {
        if memsw.exists() {
            assert_eq!(read_trimmed(&memsw), (mib << 20).to_string());
        }
    };
    check_memsw(128);
    stencil.run(&["update", "-m", "16m", "upd"]).success();
    assert_eq!(read_trimmed(&memory_file), (16u64 << 20).to_string());
    check_memsw(32);
    // Raised above the old memory+swap limit: that one first.
    stencil
        .run(&["update", "-m", "40m", "--memory-swap", "80m", "upd"])
        .success();
    assert_eq!(read_trimmed(&memory_file), (40u64 << 20).to_string());
    check_memsw(80);
    stencil
        .run(&["update", "-m", "16m", "--memory-swap", "32m", "upd"])
        .success();
    // 0 and -1 lift a limit.
    stencil
        .run(&["update", "--cpus", "0", "--pids-limit", "-1", "upd"])
        .success();
    assert_eq!(read_trimmed(&pids.join("pids.max")), "max");
    let quota = read_trimmed(&quota_file);
    assert!(
        quota == "-1" || quota.starts_with("max"),
        "cpu quota {quota}"
    );

    // Bad values name the flag and change nothing.
    stencil
        .run(&["update", "-m", "1m", "upd"])
        .expect_code(125)
        .stderr_contains("--memory");
    assert_eq!(read_trimmed(&memory_file), (16u64 << 20).to_string());
    stencil
        .run(&["update", "upd"])
        .expect_code(125)
        .stderr_contains("at least one setting");

    // A stopped container gets its new limits at its next start.
    stencil
        .run(&["create", "--name", "later", IMAGE, "sleep", "60"])
        .success();
    stencil.run(&["update", "-m", "48m", "later"]).success();
    stencil.run(&["start", "later"]).success();
    let later = stencil.run(&["inspect", "-f", "{{.State.Pid}}", "later"]);
    later.success();
    let later_memory = cgroup_dir(later.stdout.trim(), "memory");
    let file = if cgroup_v2() {
        later_memory.join("memory.max")
    } else {
        later_memory.join("memory.limit_in_bytes")
    };
    assert_eq!(read_trimmed(&file), (48u64 << 20).to_string());
}

/// `inspect -f TEMPLATE CONTAINER`, trimmed.
fn inspect_field(stencil: &Stencil, template: &str, container: &str) -> String {
    let run = stencil.run(&["inspect", "-f", template, container]);
    run.success();
    run.stdout.trim().to_owned()
}

/// Whether a monitor process for container `id` is alive.
fn monitor_alive(id: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|entry| {
                std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                    let text = String::from_utf8_lossy(&cmdline);
                    text.contains("__monitor") && text.contains(id)
                })
            })
        })
        .unwrap_or(false)
}

#[test]
fn restart_policies_start_containers_again_until_stopped_by_hand() {
    let Some(stencil) = store_with_image("restart") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let state = |name: &str| inspect_field(&stencil, "{{.State.Status}} {{.RestartCount}}", name);

    // on-failure:2: a failing container runs three times in all, then stays exited.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            IMAGE,
            "sh",
            "-c",
            "echo attempt; exit 3",
        ])
        .success();
    eventually("two restarts, then exited", || state("flaky") == "exited 2");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(state("flaky"), "exited 2", "no third restart");
    assert_eq!(inspect_field(&stencil, "{{.State.ExitCode}}", "flaky"), "3");
    assert_eq!(
        inspect_field(&stencil, "{{json .HostConfig.RestartPolicy}}", "flaky"),
        r#"{"Name":"on-failure","MaximumRetryCount":2}"#
    );
    stencil
        .run(&["logs", "flaky"])
        .stdout_is("attempt\nattempt\nattempt\n");
    // on-failure leaves a clean exit alone.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "clean",
            "--restart",
            "on-failure",
            IMAGE,
            "true",
        ])
        .success();
    eventually("the clean exit", || state("clean") == "exited 0");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state("clean"), "exited 0");

    // always: restarted after clean exits too, with docker's growing delay, during which
    // it is `restarting` (running, for docker's State.Running and `ps`).
    let id = stencil.run(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        IMAGE,
        "true",
    ]);
    id.success();
    let id = id.stdout.trim().to_owned();
    eventually("a restarting container", || {
        state("loop").starts_with("restarting ")
            && inspect_field(&stencil, "{{.RestartCount}}", "loop")
                .parse::<u32>()
                .is_ok_and(|count| count >= 2)
    });
    let shown = stencil.run(&["ps", "--format", "{{.Names}} {{.State}} {{.Status}}"]);
    assert!(
        shown.stdout.contains("loop restarting Restarting (0)")
            || shown.stdout.contains("loop running Up"),
        "ps without -a lists it: {}",
        shown.stdout
    );
    // (Restarting nearly all the time by now; running for the few ms of a run.)
    let refused = stencil.run(&["rm", "loop"]);
    refused
        .expect_code(125)
        .stderr_contains("stop the container before removing or force remove");
    assert!(
        refused.stderr.contains("container is restarting")
            || refused.stderr.contains("container is running"),
        "{}",
        refused.stderr
    );
    // stop: it stays stopped, its monitor gone.
    stencil.run(&["stop", "loop"]).success().stdout_is("loop\n");
    let stopped = state("loop");
    assert!(stopped.starts_with("exited "), "{stopped}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state("loop"), stopped, "stop holds");
    assert!(
        !monitor_alive(&id),
        "the monitor of a stopped container exits"
    );
    // A start by hand restarts the count and the policy.
    stencil.run(&["start", "loop"]).success();
    eventually("restarts counted afresh", || {
        let now = state("loop");
        now.starts_with("restarting ") && now != "restarting 0"
    });
    // rm -f takes a restarting container and its monitor away.
    stencil.run(&["rm", "-f", "loop"]).success();
    stencil
        .run(&["inspect", "loop"])
        .expect_code(125)
        .stderr_contains("no such object: loop");
    eventually("the monitor gone with the container", || {
        !monitor_alive(&id)
    });

    // kill: a signal that is not the stop signal leaves the policy; SIGKILL turns it off.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "server",
            "--restart",
            "always",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 5' USR1; echo serving; while :; do sleep 0.1; done",
        ])
        .success();
    eventually("the server up", || {
        stencil.run(&["logs", "server"]).stdout == "serving\n"
    });
    stencil.run(&["kill", "-s", "USR1", "server"]).success();
    eventually("the server restarted", || {
        state("server") == "running 1"
            && stencil.run(&["logs", "server"]).stdout == "serving\nserving\n"
    });
    stencil.run(&["kill", "server"]).success();
    eventually("the server killed", || state("server") == "exited 1");
    assert_eq!(
        inspect_field(&stencil, "{{.State.ExitCode}}", "server"),
        "137"
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(state("server"), "exited 1", "a killed container stays down");

    // A foreground run returns its code; the restart happens in the background.
    stencil
        .run(&[
            "run",
            "--name",
            "fore",
            "--restart",
            "on-failure:1",
            IMAGE,
            "sh",
            "-c",
            "echo once; exit 4",
        ])
        .expect_code(4)
        .stdout_is("once\n");
    eventually("the foreground container restarted once", || {
        state("fore") == "exited 1"
    });
    stencil.run(&["logs", "fore"]).stdout_is("once\nonce\n");

    // update --restart gives an existing container a policy from its next exit on.
    stencil
        .run(&["create", "--name", "later", IMAGE, "sh", "-c", "exit 2"])
        .success();
    stencil
        .run(&["update", "--restart", "on-failure:1", "later"])
        .success();
    stencil.run(&["start", "later"]).success();
    eventually("the updated policy applied", || {
        state("later") == "exited 1"
    });

    // Bad policies name themselves and create nothing.
    let before = stencil.run(&["ps", "-aq"]).stdout;
    for (policy, message) in [
        ("sometimes", "invalid restart policy \"sometimes\""),
        ("always:3", "cannot be used with restart policy \"always\""),
        ("on-failure:-1", "cannot be negative"),
        ("on-failure:x", "must be an integer"),
    ] {
        stencil
            .run(&["run", "-d", "--restart", policy, IMAGE, "true"])
            .expect_code(125)
            .stderr_contains(message);
    }
    stencil
        .run(&["run", "-d", "--rm", "--restart", "always", IMAGE, "true"])
        .expect_code(125)
        .stderr_contains("Conflicting options: --restart and --rm");
    stencil
        .run(&["update", "--restart", "never", "later"])
        .expect_code(125)
        .stderr_contains("invalid restart policy \"never\"");
    assert_eq!(stencil.run(&["ps", "-aq"]).stdout, before);
    stencil.assert_consistent();
}

#[test]
fn health_checks_probe_running_containers_as_dockers_do() {
    let Some(stencil) = store_with_image("health") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    let status = |name: &str| {
        stencil
            .run(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Names}} {{.Status}}",
            ])
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    let health = |name: &str| -> serde_json::Value {
        serde_json::from_str(&inspect_field(&stencil, "{{json .State.Health}}", name))
            .unwrap_or_default()
    };

    // Failing probes make it unhealthy after --health-retries; a passing one, healthy.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "web",
            "--health-cmd",
            "test -f /tmp/ready && echo ready",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    assert!(
        status("web").ends_with("(health: starting)") || status("web").ends_with("(unhealthy)"),
        "{}",
        status("web")
    );
    eventually("unhealthy", || status("web").ends_with("(unhealthy)"));
    let seen = health("web");
    assert_eq!(seen["Status"], "unhealthy");
    assert!(seen["FailingStreak"].as_u64().unwrap_or(0) >= 2, "{seen}");
    assert_eq!(seen["Log"][0]["ExitCode"], 1, "{seen}");
    stencil
        .run(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}",
        ])
        .stdout_is("web\n");
    stencil
        .run(&["exec", "web", "sh", "-c", "echo > /tmp/ready"])
        .success();
    eventually("healthy", || status("web").ends_with("(healthy)"));
    let seen = health("web");
    assert_eq!(seen["FailingStreak"], 0);
    let log = seen["Log"].as_array().cloned().unwrap_or_default();
    assert!(log.len() <= 5, "five probes kept: {seen}");
    assert_eq!(
        log.last().map(|p| p["Output"].clone()),
        Some("ready\n".into())
    );
    stencil
        .run(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"])
        .stdout_is("web\n");
    assert_eq!(
        inspect_field(&stencil, "{{json .Config.Healthcheck}}", "web"),
        r#"{"Test":["CMD-SHELL","test -f /tmp/ready && echo ready"],"Interval":200000000,"Retries":2}"#
    );

    // A probe over its timeout is killed and fails.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "slow",
            "--health-cmd",
            "sleep 30",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "300ms",
            "--health-retries",
            "1",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    eventually("the slow probe timed out", || {
        health("slow")["Status"] == "unhealthy"
    });
    let seen = health("slow");
    assert_eq!(seen["Log"][0]["ExitCode"], -1, "{seen}");
    assert_eq!(
        seen["Log"][0]["Output"], "Health check exceeded timeout (300ms)",
        "{seen}"
    );

    // Failures in the start period do not count.
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "warming",
            "--health-cmd",
            "false",
            "--health-interval",
            "100ms",
            "--health-start-period",
            "30s",
            "--health-retries",
            "1",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    eventually("probes in the start period", || {
        health("warming")["Log"]
            .as_array()
            .is_some_and(|log| log.len() >= 3)
    });
    let seen = health("warming");
    assert_eq!(
        (seen["Status"].as_str(), seen["FailingStreak"].as_u64()),
        (Some("starting"), Some(0)),
        "{seen}"
    );

    // The image's HEALTHCHECK runs; flags change its fields; --no-healthcheck turns it off.
    let context = stencil.scratch().join("healthy-context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {IMAGE}\nHEALTHCHECK --interval=30s --retries=1 CMD echo from-image\n"),
    )
    .unwrap_or_else(|e| panic!("write Dockerfile: {e}"));
    stencil
        .run(&[
            "build",
            "-q",
            "-t",
            "e2e/checked:1",
            context.to_str().unwrap_or_default(),
        ])
        .success();
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "inherits",
            "--health-interval",
            "100ms",
            "e2e/checked:1",
            "sleep",
            "60",
        ])
        .success();
    eventually("the image's check", || {
        status("inherits").ends_with("(healthy)")
    });
    assert_eq!(health("inherits")["Log"][0]["Output"], "from-image\n");
    assert_eq!(
        inspect_field(&stencil, "{{json .Config.Healthcheck}}", "inherits"),
        r#"{"Test":["CMD-SHELL","echo from-image"],"Interval":100000000,"Retries":1}"#
    );
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "unchecked",
            "--no-healthcheck",
            "e2e/checked:1",
            "sleep",
            "60",
        ])
        .success();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        status("unchecked").starts_with("unchecked Up "),
        "{}",
        status("unchecked")
    );
    assert!(
        !status("unchecked").contains('('),
        "{}",
        status("unchecked")
    );
    assert_eq!(
        inspect_field(&stencil, "{{json .State.Health}}", "unchecked"),
        "null"
    );
    stencil
        .run(&["ps", "--filter", "health=none", "--format", "{{.Names}}"])
        .stdout_is("unchecked\n");

    // Bad flags name themselves.
    for (args, message) in [
        (
            vec!["--no-healthcheck", "--health-cmd", "true"],
            "--no-healthcheck conflicts",
        ),
        (
            vec!["--health-interval", "soon", "--health-cmd", "true"],
            "invalid --health-interval",
        ),
        (
            vec!["--health-timeout=-1s", "--health-cmd", "true"],
            "invalid --health-timeout",
        ),
        (
            vec!["--health-timeout=10us", "--health-cmd", "true"],
            "give at least 1ms",
        ),
        (
            vec!["--health-retries=-1", "--health-cmd", "true"],
            "cannot be negative",
        ),
        (vec!["--health-cmd", " "], "invalid --health-cmd"),
    ] {
        let mut full = vec!["run", "-d"];
        full.extend(args);
        full.extend([IMAGE, "true"]);
        stencil.run(&full).expect_code(125).stderr_contains(message);
    }
    stencil
        .run(&["ps", "--filter", "health=sick"])
        .expect_code(125)
        .stderr_contains("health is starting, healthy, unhealthy or none");
}

#[test]
fn ulimits_groups_shm_size_and_cidfile_reach_the_container() {
    let Some(stencil) = store_with_image("ulimits") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    // Limits: soft and hard, one value for both, -1 for none; exec gets them too.
    stencil
        .run(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:2048",
            "--ulimit",
            "nproc=77",
            "--ulimit",
            "core=-1",
            IMAGE,
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c",
        ])
        .success()
        .stdout_is("1024\n2048\n77\n77\nunlimited\n");
    // Supplementary groups by name and by gid, for the user the image names and for -u.
    stencil
        .run(&[
            "run",
            "--rm",
            "--group-add",
            "user",
            "--group-add",
            "4242",
            IMAGE,
            "id",
            "-G",
        ])
        .success()
        .stdout_is("0 1000 4242\n");
    stencil
        .run(&[
            "run",
            "-d",
            "--name",
            "grouped",
            "--group-add",
            "4242",
            "--ulimit",
            "nofile=512",
            "--shm-size",
            "2m",
            IMAGE,
            "sleep",
            "60",
        ])
        .success();
    stencil
        .run(&[
            "exec",
            "-u",
            "user",
            "grouped",
            "sh",
            "-c",
            "id -G; ulimit -n",
        ])
        .success()
        .stdout_is("1000 4242\n512\n");
    // /dev/shm of the asked size (docker's 64 MiB by default).
    let shm = |args: &[&str]| {
        let mut full = vec!["run", "--rm"];
        full.extend(args);
        full.extend([IMAGE, "sh", "-c", "grep ' /dev/shm ' /proc/mounts"]);
        let run = stencil.run(&full);
        run.success();
        run.stdout.clone()
    };
    assert!(shm(&[]).contains("size=65536k"), "{}", shm(&[]));
    assert!(
        shm(&["--shm-size", "1m"]).contains("size=1024k"),
        "{}",
        shm(&["--shm-size", "1m"])
    );
    let host_config: serde_json::Value =
        serde_json::from_str(&inspect_field(&stencil, "{{json .HostConfig}}", "grouped"))
            .unwrap_or_default();
    assert_eq!(host_config["GroupAdd"], serde_json::json!(["4242"]));
    assert_eq!(
        host_config["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Hard": 512, "Soft": 512}])
    );
    assert_eq!(host_config["ShmSize"], 2 << 20);

    // --cidfile: the ID, written once; an existing file is refused before anything is made.
    let cidfile = stencil.scratch().join("cid");
    let created = stencil.run(&[
        "create",
        "--cidfile",
        cidfile.to_str().unwrap_or_default(),
        IMAGE,
        "true",
    ]);
    created.success();
    assert_eq!(
        std::fs::read_to_string(&cidfile).unwrap_or_default(),
        created.stdout.trim()
    );
    let before = stencil.run(&["ps", "-aq"]).stdout;
    stencil
        .run(&[
            "run",
            "--cidfile",
            cidfile.to_str().unwrap_or_default(),
            IMAGE,
            "true",
        ])
        .expect_code(125)
        .stderr_contains("container ID file found");
    // A failed create leaves no file behind.
    let unused = stencil.scratch().join("cid-unused");
    stencil
        .run(&[
            "create",
            "--cidfile",
            unused.to_str().unwrap_or_default(),
            "e2e/missing:1",
            "true",
        ])
        .expect_code(125);
    assert!(
        !unused.exists(),
        "the claimed cidfile is removed on failure"
    );

    // Bad values name themselves and create nothing.
    for (args, message) in [
        (vec!["--ulimit", "files=10"], "unknown name \"files\""),
        (
            vec!["--ulimit", "nofile=20:10"],
            "soft limit must be less than or equal",
        ),
        (vec!["--ulimit", "nofile"], "write NAME=SOFT[:HARD]"),
        (vec!["--ulimit", "nofile=lots"], "is not a limit"),
        (vec!["--shm-size", "0"], "invalid --shm-size"),
        (vec!["--shm-size", "big"], "invalid --shm-size"),
        (
            vec!["--group-add", "nosuchgroup"],
            "unable to find group nosuchgroup",
        ),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args);
        full.extend([IMAGE, "true"]);
        stencil.run(&full).expect_code(125).stderr_contains(message);
    }
    assert_eq!(stencil.run(&["ps", "-aq"]).stdout, before);

    // ps --filter name= is a regular expression, as docker's.
    for name in ["pair", "pair2"] {
        stencil
            .run(&["create", "--name", name, IMAGE, "true"])
            .success();
    }
    let names = |filter: &str| {
        stencil
            .run(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
            .stdout
    };
    assert_eq!(names("name=^pair$"), "pair\n");
    assert_eq!(names("name=/pair2"), "pair2\n");
    let mut both: Vec<String> = names("name=pai").lines().map(str::to_owned).collect();
    both.sort();
    assert_eq!(both, ["pair", "pair2"]);
    stencil
        .run(&["ps", "--filter", "name=(unclosed"])
        .expect_code(125)
        .stderr_contains("regular expression");
}

/// Runs stencil with `args` on a new terminal (a pty), typing each of `typed` into it
/// 300 ms apart; returns its exit code (`None`: still running after 10 s, then killed)
/// and what the terminal showed.
fn on_a_terminal(stencil: &Stencil, args: &[&str], typed: &[&[u8]]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the name, termios and size are not asked.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here.
    let (master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let stdio = |file: &std::fs::File| file.try_clone().unwrap_or_else(|e| panic!("dup: {e}"));
    let mut child = stencil
        .command(args)
        .stdin(stdio(&slave))
        .stdout(stdio(&slave))
        .stderr(stdio(&slave))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn stencil: {e}"));
    drop(slave);
    let mut reader = master.try_clone().unwrap_or_else(|e| panic!("dup: {e}"));
    let shown = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut buffer = [0u8; 4096];
        // Ends with EIO once no process holds the terminal.
        while let Ok(read @ 1..) = reader.read(&mut buffer) {
            shown.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    });
    let mut writer = master;
    for keys in typed {
        std::thread::sleep(Duration::from_millis(300));
        let _ = writer.write_all(keys);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            _ if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    drop(writer);
    (code, shown.join().unwrap_or_default())
}

#[test]
fn attach_detaches_on_its_keys_and_leaves_the_container_running() {
    let Some(stencil) = store_with_image("detach") else {
        return;
    };
    let _cleanup = Cleanup(&stencil);
    stencil
        .run(&["run", "-dit", "--name", "shell", IMAGE, "sh"])
        .success();
    // docker's Ctrl-P Ctrl-Q; what was typed before reached the shell.
    let (code, shown) = on_a_terminal(
        &stencil,
        &["attach", "shell"],
        &[b"echo typed-$((6*7))\r", &[0x10, 0x11]],
    );
    assert_eq!(code, Some(0), "detached: {shown:?}");
    assert!(shown.contains("typed-42"), "{shown:?}");
    assert!(shown.contains("read escape sequence"), "{shown:?}");
    eventually("the shell still up", || {
        stencil
            .run(&["ps", "--format", "{{.Names}} {{.State}}"])
            .stdout
            == "shell running\n"
    });
    // Other keys: Ctrl-P Ctrl-Q go to the container then; a broken-off prefix too.
    let (code, shown) = on_a_terminal(
        &stencil,
        &["attach", "--detach-keys", "ctrl-a,x", "shell"],
        &[
            &[0x10, 0x11],
            b"echo again-$((2*3))\r",
            &[0x01, b'y'],
            &[0x01, b'x'],
        ],
    );
    assert_eq!(code, Some(0), "detached: {shown:?}");
    assert!(shown.contains("again-6"), "{shown:?}");
    stencil
        .run(&["ps", "--format", "{{.Names}} {{.State}}"])
        .stdout_is("shell running\n");
    stencil
        .run(&["attach", "--detach-keys", "ctrl-1", "shell"])
        .expect_code(125)
        .stderr_contains("invalid detach keys \"ctrl-1\"");
}
