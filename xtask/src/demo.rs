//! `cargo xtask demo`: stencil's main job on embedded defaults, with no internet.
//!
//! It builds the CLI and runs it as a new user would, printing each command before its
//! output, against a private store under `target/demo/`: names in the three namespaces,
//! then the images chapter end to end: a busybox root filesystem (Debian's static busybox)
//! imported as an image, tagged in the self-hosted namespace, pushed to a registry on
//! loopback, removed, pulled back, listed, inspected and mounted; a container run from it,
//! a file changed in another, committed as a new image and run; then an image built from a
//! two-stage Dockerfile on it, built again from the cache; and the store checked.
//!
//! The registry is stencil's own (`stencil registry serve`) on a free loopback port, with
//! a store of its own, so the image really travels.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::shell::{cargo, ensure_packages, run, workspace_root};

/// What the demo needs beyond the toolchain.
const PACKAGES: &[(&str, &str)] = &[("busybox-static", "busybox")];

/// Builds stencil and runs the demo script.
pub fn run_demo() -> Result<()> {
    ensure_packages(PACKAGES)?;
    run(cargo().args([
        "build",
        "--quiet",
        "--package",
        "stencil",
        "--bin",
        "stencil",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let demo = target.join("demo");
    reset(&demo)?;
    let stencil = Stencil {
        binary: target.join("debug").join("stencil"),
        root: demo.join("root"),
    };

    section("Image names in the three namespaces: official, user and self-hosted.");
    stencil.run(&[
        "ref",
        "ubuntu",
        "jpetazzo/clock",
        "localhost:5000/wordpress",
    ])?;

    let registry = Registry::start(&stencil.binary, &demo)?;
    let image = format!("localhost:{}/demo/busybox:1.0", registry.port);
    let rootfs = busybox_rootfs(&demo)?;

    section("A root filesystem tarball becomes a one-layer image in the self-hosted namespace.");
    stencil.run(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\", \"-c\", \"cat /etc/motd\"]",
        "-m",
        "busybox from Debian",
        &rootfs.display().to_string(),
        &image,
    ])?;
    stencil.run(&["images"])?;

    section("Push it to the registry, forget it locally, and pull it back.");
    stencil.run(&["push", &image])?;
    stencil.run(&["rmi", &image])?;
    stencil.run(&["images"])?;
    stencil.run(&["pull", &image])?;
    stencil.run(&["pull", &image])?;

    section("Understand the image: its layers, history and configuration.");
    stencil.run(&["history", &image])?;
    stencil.run(&[
        "inspect",
        "--format",
        "ID {{.Id}}\nCmd {{json .Config.Cmd}}\nLayers {{json .RootFS.Layers}}",
        &image,
    ])?;
    stencil.run(&["tag", &image, "busybox-demo:latest"])?;
    stencil.run(&["images", "--digests"])?;

    section("Mount its root filesystem read-only and read a file.");
    let mounted = stencil.output(&["image", "mount", &image])?;
    let motd = Path::new(mounted.trim()).join("etc/motd");
    println!("$ cat {}", motd.display());
    print!(
        "{}",
        std::fs::read_to_string(&motd)
            .with_context(|| format!("cannot read {}", motd.display()))?
    );
    stencil.run(&["image", "unmount", &image])?;

    section("Run a container from the pulled image: its command prints the message.");
    stencil.run(&["run", "--rm", &image])?;
    section("Change a file in a container, see the change, commit it as a new image and run that.");
    stencil.run(&[
        "run",
        "--name",
        "demo-edit",
        &image,
        "sh",
        "-c",
        "echo 'Changed in a container, committed by stencil.' > /etc/motd",
    ])?;
    stencil.run(&["diff", "demo-edit"])?;
    stencil.run(&["ps", "-a"])?;
    stencil.run(&[
        "commit",
        "-m",
        "new message",
        "demo-edit",
        "demo/busybox-edited:1",
    ])?;
    stencil.run(&["run", "--rm", "demo/busybox-edited:1"])?;
    stencil.run(&["history", "demo/busybox-edited:1"])?;
    stencil.run(&["rm", "demo-edit"])?;

    section(
        "Build an image from a Dockerfile: a builder stage runs a command, the final stage copies its result.",
    );
    let context = build_context(&demo)?;
    let context = context.display().to_string();
    stencil.run(&["build", "-t", "demo/hello:1", &context])?;
    section("Build it again: every step comes from the cache, no command runs, no layer is made.");
    stencil.run(&["build", "-t", "demo/hello:1", &context])?;
    stencil.run(&["history", "demo/hello:1"])?;
    section("Run the built image.");
    stencil.run(&["run", "--rm", "demo/hello:1"])?;

    section("Every blob re-hashed, every record and snapshot accounted for.");
    stencil.run(&["fsck"])?;
    println!("\nThe store is at {}.", stencil.root.display());
    drop(registry);
    Ok(())
}

fn section(title: &str) {
    println!("\n# {title}");
}

struct Stencil {
    binary: PathBuf,
    root: PathBuf,
}

impl Stencil {
    fn command(&self, args: &[&str]) -> Command {
        let shown: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        println!("$ stencil {}", shown.join(" "));
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root).args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let status = self.command(args).status()?;
        if !status.success() {
            bail!("`stencil {}` failed with {status}", args.join(" "));
        }
        Ok(())
    }

    fn output(&self, args: &[&str]) -> Result<String> {
        let output = self.command(args).stderr(Stdio::inherit()).output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{text}");
        if !output.status.success() {
            bail!("`stencil {}` failed with {}", args.join(" "), output.status);
        }
        Ok(text)
    }
}

/// `arg` as a shell would need it typed: bare when safe, else in single quotes.
fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Removes what a previous demo left, unmounting its image mounts first.
fn reset(demo: &Path) -> Result<()> {
    let mounts = demo.join("root/mounts");
    if let Ok(entries) = std::fs::read_dir(&mounts) {
        for entry in entries.flatten() {
            let _ = Command::new("umount").arg("-R").arg(entry.path()).status();
        }
    }
    if demo.exists() {
        std::fs::remove_dir_all(demo)
            .with_context(|| format!("cannot clean {}", demo.display()))?;
    }
    std::fs::create_dir_all(demo).with_context(|| format!("cannot create {}", demo.display()))
}

/// A build context: a two-stage Dockerfile on the demo's busybox image and a file.
fn build_context(demo: &Path) -> Result<PathBuf> {
    let context = demo.join("build-context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox-demo:latest AS builder\n\
         RUN echo \"Made by a RUN step of stencil build.\" > /greeting && cat /etc/motd >> /greeting\n\
         \n\
         FROM busybox-demo:latest\n\
         COPY --from=builder /greeting /etc/greeting\n\
         COPY message.txt /etc/message\n\
         LABEL org.opencontainers.image.title=\"stencil demo\"\n\
         CMD [\"cat\", \"/etc/greeting\", \"/etc/message\"]\n",
    )?;
    std::fs::write(
        context.join("message.txt"),
        "Copied from the build context.\n",
    )?;
    Ok(context)
}

/// A tiny root filesystem: Debian's static busybox with a few applets and a message.
fn busybox_rootfs(demo: &Path) -> Result<PathBuf> {
    let rootfs = demo.join("rootfs");
    for dir in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("busybox is not installed (apt-get install busybox-static)")?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    for applet in ["sh", "ls", "cat", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    std::fs::write(
        rootfs.join("etc/motd"),
        "Hello from an image built, pushed and pulled by stencil.\n",
    )?;
    let tarball = demo.join("busybox-rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("tar failed with {status}");
    }
    Ok(tarball)
}

/// A registry on a free loopback port, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(stencil: &Path, demo: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let root = demo.join("registry");
        println!(
            "\n# The built-in registry serves the self-hosted namespace from a store of its own:"
        );
        println!(
            "$ stencil --root {} registry serve --listen 127.0.0.1:{port} &",
            root.display()
        );
        let child = Command::new(stencil)
            .arg("--root")
            .arg(&root)
            // Its per-request log lines would drown the demo; warnings still show.
            .args(["--log-level", "warn", "registry", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start `stencil registry serve`")?;
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the registry did not start listening on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
