//! The built-in container runtime, for real: as root, on a busybox rootfs built in a
//! temporary directory (no image store involved).
//!
//! Each test starts containers through `stencil::container::runtime` and checks what the
//! process inside sees. Outside CI the tests skip with a reason when not root or when
//! `/usr/bin/busybox` (busybox-static) is missing; under `CI=true` either is a failure.
//! The tests run on many threads at once, which also exercises the runtime's promise that
//! `start` is safe to call from a multi-threaded process.

use std::fs;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use stencil::container::caps;
use stencil::container::runtime::{
    Network, ProcessSpec, RunError, Spec, Stdio, Volume, exec, start,
};
use tempfile::TempDir;

const BUSYBOX: &str = "/usr/bin/busybox";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the tests can run here; under CI a missing requirement fails.
fn runnable() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root");
    }
    if !Path::new(BUSYBOX).is_file() {
        missing.push("/usr/bin/busybox (Debian package busybox-static)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("the runtime tests need {}", missing.join(" and "));
    assert!(!in_ci(), "{reason}");
    eprintln!("skipping: {reason}");
    false
}

/// A rootfs with busybox and its applets in /bin, a user 1000 and a few groups.
struct Rootfs {
    dir: TempDir,
}

impl Rootfs {
    fn new() -> Rootfs {
        let dir = tempfile::Builder::new()
            .prefix("stencil-runtime-")
            .tempdir()
            .expect("temporary directory");
        let root = dir.path().join("rootfs");
        for sub in ["bin", "etc", "tmp", "home/user", "proc", "dev", "sys"] {
            fs::create_dir_all(root.join(sub)).expect("rootfs directory");
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
        // A hard link when possible: a copy is open for writing for a moment, and a
        // container cloned by another test thread meanwhile would hold that descriptor.
        if fs::hard_link(BUSYBOX, root.join("bin/busybox")).is_err() {
            fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
        }
        let applets = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", root.join("bin").join(applet));
            }
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nuser:x:1000:\nwheel:x:10:user\n",
        )
        .expect("group");
        fs::write(root.join("etc/notexec"), "#!/bin/sh\necho no\n").expect("file");
        Rootfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn spec(&self, args: &[&str]) -> Spec {
        Spec {
            rootfs: self.path(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            hostname: "stencil-test".into(),
            ..Spec::default()
        }
    }
}

/// Output of a finished container.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn capture_files() -> (fs::File, fs::File, Stdio) {
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    let stdio = Stdio::Files {
        stdin: None,
        stdout: OwnedFd::from(out.try_clone().expect("clone")),
        stderr: OwnedFd::from(err.try_clone().expect("clone")),
    };
    (out, err, stdio)
}

fn read_back(mut file: fs::File) -> String {
    let mut text = String::new();
    file.rewind().expect("rewind");
    file.read_to_string(&mut text).expect("read output");
    text
}

/// Runs `spec` to completion with its output captured.
fn run(spec: &Spec) -> Result<Outcome, RunError> {
    let (out, err, stdio) = capture_files();
    let code = start(spec, stdio)?.wait()?;
    Ok(Outcome {
        code,
        stdout: read_back(out),
        stderr: read_back(err),
    })
}

/// Runs `spec`, expecting it to start; returns its outcome.
#[track_caller]
fn check(spec: &Spec) -> Outcome {
    match run(spec) {
        Ok(outcome) => outcome,
        Err(e) => panic!("{:?} failed to start: {e}", spec.args),
    }
}

#[test]
fn output_and_exit_statuses() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let hello = check(&rootfs.spec(&["echo", "hello", "world"]));
    assert_eq!(
        (hello.code, hello.stdout.as_str()),
        (0, "hello world\n"),
        "{hello:?}"
    );
    let seven = check(&rootfs.spec(&["sh", "-c", "echo out; echo err >&2; exit 7"]));
    assert_eq!(
        (seven.code, seven.stdout.as_str(), seven.stderr.as_str()),
        (7, "out\n", "err\n")
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["nosuchcommand"],
            127,
            "exec: \"nosuchcommand\": executable file not found in $PATH",
        ),
        (&["/bin/nosuch"], 127, "no such file or directory"),
        (&["/etc/notexec"], 126, "permission denied"),
        (&["/etc"], 126, "is a directory"),
    ];
    for (args, code, message) in cases {
        match run(&rootfs.spec(args)) {
            Err(e) => {
                assert_eq!(e.exit_code(), *code, "{args:?}: {e}");
                assert!(e.to_string().contains(message), "{args:?}: {e}");
            }
            Ok(outcome) => panic!("{args:?} should not start: {outcome:?}"),
        }
    }
}

#[test]
fn pid_one_and_only_its_processes() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let out = check(&rootfs.spec(&["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l"]));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "the shell is PID 1: {out:?}");
    // The shell, ls, grep and wc at most: no host process is visible.
    let count: usize = lines
        .get(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(999);
    assert!((1..=4).contains(&count), "processes visible: {out:?}");
    let host = check(&rootfs.spec(&["sh", "-c", "ls /proc | grep -E '^[0-9]+$' | wc -l"]));
    let host_count = fs::read_dir("/proc")
        .expect("/proc")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    assert!(host_count > 10, "host /proc has {host_count} processes");
    assert!(
        host.stdout.trim().parse::<usize>().unwrap_or(999) <= 4,
        "{host:?}"
    );
}

#[test]
fn hostname_env_cwd_and_user() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&[
        "sh",
        "-c",
        "hostname; echo $FOO; pwd; id -u; id -g; id -G; echo $HOME",
    ]);
    spec.env.push("FOO=bar baz".into());
    spec.cwd = "/made/by/run".into();
    spec.user = "1000".into();
    let out = check(&spec);
    assert_eq!(
        out.stdout, "stencil-test\nbar baz\n/made/by/run\n1000\n1000\n1000 10\n/home/user\n",
        "{out:?}"
    );
    assert!(rootfs.path().join("made/by/run").is_dir());
    let mut root = rootfs.spec(&["sh", "-c", "id -u; id -g; echo $HOME"]);
    root.user = "user:wheel".into();
    root.env.push("HOME=/custom".into());
    assert_eq!(check(&root).stdout, "1000\n10\n/custom\n");
    let mut unknown = rootfs.spec(&["true"]);
    unknown.user = "nobody".into();
    let error = run(&unknown).expect_err("unknown user");
    assert_eq!(error.exit_code(), 125, "{error}");
    assert!(
        error.to_string().contains("unable to find user nobody"),
        "{error}"
    );
}

#[test]
fn volumes_read_write_and_read_only() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let rw = rootfs.dir.path().join("rw");
    let ro = rootfs.dir.path().join("ro");
    fs::create_dir_all(&rw).expect("dir");
    fs::create_dir_all(&ro).expect("dir");
    fs::write(ro.join("given"), "from host\n").expect("file");
    let mut spec = rootfs.spec(&[
        "sh",
        "-c",
        "echo written > /data/rw/new && cat /data/ro/given && if echo x > /data/ro/refused; then echo WROTE; fi",
    ]);
    spec.volumes = vec![
        Volume {
            host: rw.clone(),
            container: "/data/rw".into(),
            read_only: false,
        },
        Volume {
            host: ro.clone(),
            container: "/data/ro".into(),
            read_only: true,
        },
    ];
    let out = check(&spec);
    assert_eq!(out.stdout, "from host\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert_eq!(
        fs::read_to_string(rw.join("new")).expect("written"),
        "written\n"
    );
    assert!(!ro.join("refused").exists());
}

#[test]
fn network_none_has_only_loopback_up() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    spec.network = Network::None;
    let out = check(&spec);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"lo"), "{out:?}");
    assert_eq!(lines.len(), 2, "only lo: {out:?}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is up: {out:?}");
    // With the host network the host's interfaces are there.
    let host = check(&rootfs.spec(&["ls", "/sys/class/net"]));
    let host_count = fs::read_dir("/sys/class/net")
        .expect("host interfaces")
        .count();
    assert_eq!(host.stdout.lines().count(), host_count, "{host:?}");
}

#[test]
fn read_only_rootfs_refuses_writes() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&[
        "sh",
        "-c",
        "touch /written; echo $?; touch /dev/shm/ok; echo $?",
    ]);
    spec.read_only = true;
    let out = check(&spec);
    assert_eq!(out.stdout, "1\n0\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!rootfs.path().join("written").exists());
    spec.read_only = false;
    assert_eq!(check(&spec).stdout, "0\n0\n");
    assert!(rootfs.path().join("written").exists());
}

fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn capabilities_are_dockers_set_with_no_new_privs() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let docker = format!("{:016x}", caps::default_mask());
    assert_eq!(docker, "00000000a80425fb");
    let root = check(&rootfs.spec(&["cat", "/proc/self/status"]));
    for (field, expected) in [
        ("CapEff:", docker.as_str()),
        ("CapPrm:", docker.as_str()),
        ("CapBnd:", docker.as_str()),
        ("CapInh:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
    ] {
        assert_eq!(
            status_field(&root.stdout, field),
            expected,
            "{field} {root:?}"
        );
    }
    let mut user = rootfs.spec(&["cat", "/proc/self/status"]);
    user.user = "1000".into();
    let user = check(&user);
    assert_eq!(status_field(&user.stdout, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&user.stdout, "CapBnd:"), docker);
}

#[test]
fn no_host_descriptor_leaks_in() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    // A descriptor without close-on-exec, as a careless library might leave one.
    let leaky = nix::fcntl::open(
        "/etc/hostname",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open");
    // `; true` keeps sh from exec'ing ls, whose own directory descriptor would show.
    let out = check(&rootfs.spec(&["sh", "-c", "ls /proc/$$/fd; true"]));
    drop(leaky);
    assert_eq!(out.stdout, "0\n1\n2\n", "{out:?}");
}

#[test]
fn working_directory_symlink_cannot_escape() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let host = rootfs.dir.path().join("host-secret-dir");
    fs::create_dir_all(&host).expect("dir");
    fs::write(host.join("only-on-host"), "secret").expect("file");
    symlink(&host, rootfs.path().join("absolute")).expect("symlink");
    symlink("../../../../../../../../..", rootfs.path().join("relative")).expect("symlink");
    for cwd in ["/absolute", "/relative", "/relative/tmp/../.."] {
        let mut spec = rootfs.spec(&["sh", "-c", "pwd -P; ls"]);
        spec.cwd = cwd.into();
        let out = check(&spec);
        assert!(!out.stdout.contains("only-on-host"), "{cwd}: {out:?}");
        assert_eq!(out.code, 0, "{cwd}: {out:?}");
    }
    // The relative link resolves to the container's root, where busybox lives.
    let mut spec = rootfs.spec(&["ls"]);
    spec.cwd = "/relative".into();
    assert!(check(&spec).stdout.lines().any(|l| l == "bin"));
    assert!(!host.join("tmp").exists() && fs::read_dir(&host).expect("dir").count() == 1);
}

#[test]
fn exec_joins_a_running_container() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&["sleep", "30"]);
    spec.hostname = "exec-target".into();
    spec.network = Network::None;
    let (_out, _err, stdio) = capture_files();
    let container = start(&spec, stdio).expect("start sleep");
    let pid = container.pid();
    let process = ProcessSpec {
        args: vec![
            "sh".into(),
            "-c".into(),
            "hostname; cat /proc/1/comm; echo $$; ls /sys/class/net; id -u; pwd; exit 3".into(),
        ],
        env: vec!["PATH=/bin".into()],
        cwd: "/tmp".into(),
        user: "user".into(),
        ..ProcessSpec::default()
    };
    let (out, err, stdio) = capture_files();
    let code = exec(pid, &process, stdio);
    // With -t the exec'd process gets a terminal of the container's own /dev/pts.
    let terminal = ProcessSpec {
        args: vec!["sh".into(), "-c".into(), "tty; ls -1 /dev/pts".into()],
        tty: true,
        ..process.clone()
    };
    let (tty_out, _tty_err, stdio) = capture_files();
    let tty_code = exec(pid, &terminal, stdio);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert_eq!(container.wait().expect("wait"), 137);
    let (stdout, stderr) = (read_back(out), read_back(err));
    assert_eq!(code.expect("exec"), 3, "{stdout} {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["exec-target", "sleep"], "{stdout} {stderr}");
    assert_ne!(lines[2], "1", "the exec'd shell is not PID 1");
    assert!(lines[2].parse::<u32>().is_ok_and(|n| n < 10), "{stdout}");
    assert_eq!(lines[3..], ["lo", "1000", "/tmp"], "{stdout} {stderr}");
    assert_eq!(tty_code.expect("exec -t"), 0);
    let tty_lines: Vec<String> = read_back(tty_out)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    assert_eq!(
        tty_lines,
        ["/dev/pts/0", "0", "ptmx"],
        "terminal of exec -t"
    );
    let missing = exec(pid, &process, Stdio::Inherit).expect_err("container is gone");
    assert_eq!(missing.exit_code(), 125, "{missing}");
}

#[test]
fn init_reaps_and_forwards_signals() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&["sh", "-c", "echo $$; exit 7"]);
    spec.init = true;
    let out = check(&spec);
    assert_eq!((out.code, out.stdout.as_str()), (7, "2\n"), "{out:?}");
    // A process as PID 1 ignores SIGTERM unless it handles it; under the init it dies.
    let mut sleeper = rootfs.spec(&["sleep", "30"]);
    sleeper.init = true;
    let (_out, _err, stdio) = capture_files();
    let started = start(&sleeper, stdio).expect("start");
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(started.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    assert_eq!(started.wait().expect("wait"), 128 + 15);
}

#[test]
fn tty_gives_a_terminal_in_the_container() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    let mut spec = rootfs.spec(&["sh", "-c", "tty; stty size; echo done"]);
    spec.tty = true;
    let out = check(&spec);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    assert_eq!(lines.first(), Some(&"/dev/pts/0"), "{out:?}");
    assert_eq!(lines.last(), Some(&"done"), "{out:?}");
}

#[test]
fn oci_runtime_delegate_runs_with_runc() {
    if !runnable() {
        return;
    }
    let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        let reason = "runc is not installed (cargo xtask test installs it)";
        assert!(!in_ci(), "{reason}");
        eprintln!("skipping: {reason}");
        return;
    };
    let rootfs = Rootfs::new();
    let volume = rootfs.dir.path().join("volume");
    fs::create_dir_all(&volume).expect("dir");
    let mut spec = rootfs.spec(&[
        "sh",
        "-c",
        "echo $$; hostname; id -u; pwd; ls /sys/class/net; grep CapBnd /proc/self/status; echo hi > /v/file; exit 7",
    ]);
    spec.hostname = "oci-host".into();
    spec.user = "1000".into();
    spec.cwd = "/work/dir".into();
    spec.network = Network::None;
    spec.volumes = vec![Volume {
        host: volume.clone(),
        container: "/v".into(),
        read_only: false,
    }];
    fs::set_permissions(&volume, fs::Permissions::from_mode(0o777)).expect("chmod");
    let bundle = rootfs.dir.path().join("bundle");
    let id = format!("stencil-test-{}", std::process::id());
    let (out, err, stdio) = capture_files();
    let code = stencil::container::oci::run_with_runtime(&runc, &spec, &bundle, &id, stdio)
        .expect("runc starts");
    let (stdout, stderr) = (read_back(out), read_back(err));
    assert_eq!(code, 7, "{stdout} {stderr}");
    let docker = format!("{:016x}", caps::default_mask());
    assert_eq!(
        stdout,
        format!("1\noci-host\n1000\n/work/dir\nlo\nCapBnd:\t{docker}\n"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(volume.join("file")).expect("written"),
        "hi\n"
    );
    for (args, code) in [
        (&["nosuchcommand"][..], 127),
        (&["/etc/notexec"][..], 126),
        (&["/etc"][..], 126),
        (&["/bin/nosuch"][..], 127),
    ] {
        let spec = rootfs.spec(args);
        let error =
            stencil::container::oci::run_with_runtime(&runc, &spec, &bundle, &id, Stdio::Inherit)
                .expect_err("refused before runc runs");
        assert_eq!(error.exit_code(), code, "{args:?}: {error}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(
        config["root"]["path"],
        rootfs.path().to_str().expect("utf8")
    );
}

#[test]
fn foreground_wait_forwards_signals() {
    if !runnable() {
        return;
    }
    let rootfs = Rootfs::new();
    // PID 1 receives only the signals it handles: this one traps SIGTERM.
    let spec = rootfs.spec(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready > /tmp/ready; i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; exit 1",
    ]);
    let ready = rootfs.path().join("tmp/ready");
    let (_out, _err, stdio) = capture_files();
    let started = start(&spec, stdio).expect("start");
    let signaller = std::thread::spawn(move || {
        // Only once our SIGTERM handler is in place (SigCgt in /proc/self/status) and the
        // container has set its trap: an unhandled SIGTERM would end the test process.
        let handled = || {
            fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let mask = status_field(&status, "SigCgt:");
                    u64::from_str_radix(&mask, 16).ok()
                })
                .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
        };
        for _ in 0..400 {
            if ready.exists() && handled() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(
            handled(),
            "wait_forwarding_signals installed no SIGTERM handler"
        );
        nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM)
            .expect("signal ourselves");
    });
    let code = started.wait_forwarding_signals().expect("wait");
    signaller.join().expect("signaller");
    assert_eq!(code, 42, "SIGTERM sent to stencil reached the container");
}
