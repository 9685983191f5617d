//! `stencil cp`: copy files between a container and the host, as `docker cp` does, for
//! running and stopped containers.
//!
//! ```text
//! stencil cp [-L] CONTAINER:SRC DEST|-      from the container
//! stencil cp [-L] SRC|- CONTAINER:DEST      into the container
//! ```
//!
//! Files travel as a tar stream. The container's side is handled by this binary re-executed
//! as the hidden verb `__cp` chrooted into the container's root filesystem, so every path
//! of the container (symlinks, `..`) resolves inside it and never on the host, whatever the
//! container made of its files. The host's side is handled here. Destinations follow
//! docker's rules: a directory that exists receives the source under its own name (or its
//! contents, for `SRC/.`); a destination that does not exist becomes the copy, its parent
//! must exist; a directory is never copied onto a file. With `-` the tar itself is written
//! to standard output or read from standard input.
//!
//! A running container is seen as its processes see it, through `/proc/PID/root`: with
//! its volumes and its `/etc/hosts`, as `docker cp` sees it. A stopped one is its root
//! filesystem, mounted for the copy.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::engine::Engine;

/// The hidden verb that works inside the container's root.
pub const CHROOT_VERB: &str = "__cp";

/// Arguments of `stencil cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Follow a symbolic link given as the source (copy what it points to).
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// `CONTAINER:SRC`, a host path, or `-` (a tar on standard input).
    #[arg(value_name = "SRC")]
    pub source: String,
    /// `CONTAINER:DEST`, a host path, or `-` (a tar on standard output).
    #[arg(value_name = "DEST")]
    pub destination: String,
}

/// Arguments of the hidden `__cp` verb.
#[derive(Debug, clap::Args)]
pub struct ChrootArgs {
    /// `out` (write a tar of PATH to stdout) or `in` (place the tar on stdin at PATH).
    pub direction: String,
    /// The root to chroot into.
    pub root: PathBuf,
    /// The path inside it.
    pub path: String,
    /// For `out`: follow a final symlink.
    #[arg(long)]
    pub follow_link: bool,
    /// For `in`: the tar holds a directory's contents, not one entry.
    #[arg(long)]
    pub contents: bool,
}

/// One side of a copy.
enum End<'a> {
    Container { name: &'a str, path: &'a str },
    Host(&'a str),
    Stream,
}

fn end(text: &str) -> End<'_> {
    if text == "-" {
        return End::Stream;
    }
    // `NAME:PATH`, unless it reads as a local path (`./a:b`, `/a:b`), as docker decides.
    if !text.starts_with('/')
        && !text.starts_with('.')
        && let Some((name, path)) = text.split_once(':')
        && !name.is_empty()
        && !name.contains('/')
    {
        return End::Container { name, path };
    }
    End::Host(text)
}

/// Runs `stencil cp`.
pub fn run(engine: &Engine, args: &CpArgs) -> Result<()> {
    match (end(&args.source), end(&args.destination)) {
        (End::Container { name, path }, destination) => {
            let container = engine.container(name)?;
            let path = absolute_in_container(path, name)?;
            let destination = match destination {
                End::Container { .. } => {
                    bail!("copying between containers is not supported: copy to the host first")
                }
                End::Host(dest) => Some(dest),
                End::Stream => None,
            };
            with_rootfs(engine, &container, |rootfs| {
                let mut child = chroot_child(rootfs, "out", &path, args.follow_link)?
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("cannot start the copy inside the container")?;
                let stdout = child.stdout.take().context("no pipe from the copy")?;
                let placed = match destination {
                    None => std::io::copy(&mut { stdout }, &mut std::io::stdout().lock())
                        .map(|_| ())
                        .context("cannot write the tar to standard output"),
                    Some(dest) => place(
                        stdout,
                        Path::new(dest),
                        dest.ends_with('/'),
                        is_contents(&path),
                    )
                    .with_context(|| format!("cannot copy {name}:{path} to {dest}")),
                };
                let status = child.wait().context("the copy inside the container")?;
                // The container's side printed why it failed (a missing path, say); what
                // the host's side then saw follows from it.
                if !status.success() {
                    bail!("cannot copy {name}:{path} (see the error above)");
                }
                placed
            })
        }
        (source, End::Container { name, path }) => {
            let container = engine.container(name)?;
            let path = absolute_in_container(path, name)?;
            // A tar on standard input is unpacked into the destination, as docker does.
            let (tar, contents): (Box<dyn Read>, bool) = match source {
                End::Stream => (Box::new(std::io::stdin()), true),
                End::Host(src) => (
                    Box::new(host_tar(Path::new(src), args.follow_link)?),
                    is_contents(src),
                ),
                End::Container { .. } => unreachable!("matched above"),
            };
            with_rootfs(engine, &container, |rootfs| {
                let mut command = chroot_child(rootfs, "in", &path, false)?;
                if contents {
                    command.arg("--contents");
                }
                let mut child = command
                    .stdin(Stdio::piped())
                    .spawn()
                    .context("cannot start the copy inside the container")?;
                let mut stdin = child.stdin.take().context("no pipe to the copy")?;
                let mut tar = tar;
                let sent = std::io::copy(&mut tar, &mut stdin);
                drop(stdin);
                let status = child.wait().context("the copy inside the container")?;
                if !status.success() {
                    bail!("cannot copy into {name}:{path} (see the error above)");
                }
                sent.context("cannot read what to copy")?;
                Ok(())
            })
        }
        _ => {
            bail!("one side of a copy must be CONTAINER:PATH (e.g. `stencil cp web:/etc/hosts .`)")
        }
    }
}

/// `DIR/.`: the directory's contents rather than the directory.
fn is_contents(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

fn absolute_in_container(path: &str, name: &str) -> Result<String> {
    if path.is_empty() {
        bail!("no path after \"{name}:\": give CONTAINER:PATH");
    }
    // Relative paths are relative to the container's root, as docker takes them.
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

/// Runs `body` on the container's root: a running container's as its processes see it
/// (`/proc/PID/root`, volumes included); otherwise its root filesystem, mounted for the
/// while when it is not.
fn with_rootfs(
    engine: &Engine,
    container: &crate::engine::Container,
    body: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if let (true, Some(pid)) = (container.is_running(), container.state.pid)
        && crate::engine::process_start_time(pid) == container.state.pid_start
    {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        if root.exists() {
            return body(&root);
        }
    }
    let rootfs = engine.container_rootfs(&container.record.id);
    let was_mounted = crate::engine::is_mountpoint(&rootfs);
    let rootfs = engine.mount_container(container)?;
    let result = body(&rootfs);
    if !was_mounted && !engine.container(&container.record.id)?.is_running() {
        let _ = engine.unmount_container(container);
    }
    result
}

fn chroot_child(root: &Path, direction: &str, path: &str, follow: bool) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the stencil binary")?;
    let mut command = Command::new(exe);
    command.arg(CHROOT_VERB).arg(direction).arg(root).arg(path);
    if follow {
        command.arg("--follow-link");
    }
    Ok(command)
}

/// A tar of the host path `src` (its own name at the top, or the contents for `DIR/.`).
fn host_tar(src: &Path, follow: bool) -> Result<std::fs::File> {
    let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
    write_tar(&mut file, src, follow).with_context(|| format!("cannot read {}", src.display()))?;
    std::io::Seek::rewind(&mut file).context("cannot read the temporary file")?;
    Ok(file)
}

/// Writes a tar of `src` to `out`: `src` under its file name, or, when it ends with `/.`,
/// the entries of the directory.
fn write_tar(out: &mut dyn Write, src: &Path, follow: bool) -> Result<()> {
    let contents_only = is_contents(&src.to_string_lossy());
    let meta = if follow {
        fs::metadata(src)
    } else {
        fs::symlink_metadata(src)
    }
    .with_context(|| format!("cannot find {}", src.display()))?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    if contents_only {
        if !meta.is_dir() {
            bail!("{} is not a directory", src.display());
        }
        for entry in fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            append(&mut builder, &entry.path(), Path::new(&name), false)?;
        }
    } else {
        let name = src
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("root"));
        append(&mut builder, src, &name, follow)?;
    }
    builder.finish().context("cannot finish the tar")?;
    Ok(())
}

fn append(
    builder: &mut tar::Builder<&mut dyn Write>,
    path: &Path,
    name: &Path,
    follow: bool,
) -> Result<()> {
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .with_context(|| format!("cannot find {}", path.display()))?;
    if meta.is_dir() {
        builder
            .append_dir_all(name, path)
            .with_context(|| format!("cannot read {}", path.display()))
    } else if meta.is_file() {
        let mut file =
            fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        builder
            .append_file(name, &mut file)
            .with_context(|| format!("cannot read {}", path.display()))
    } else {
        builder
            .append_path_with_name(path, name)
            .with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Places the tar `stream` (one top entry, or with `contents` the entries of a directory)
/// at `dest` with docker's rules, working on the current root (the host's, or the
/// container's after the chroot). `must_be_dir`: `dest` was written with a trailing `/`.
fn place(stream: impl Read, dest: &Path, must_be_dir: bool, contents: bool) -> Result<()> {
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Unpacked next to the destination first, so a failure leaves it as it was and the
    // final move is a rename on one filesystem.
    let existing = fs::metadata(dest).ok();
    let staging_parent = if existing.as_ref().is_some_and(fs::Metadata::is_dir) {
        dest.to_path_buf()
    } else {
        if !parent.is_dir() {
            bail!(
                "the directory {} of the destination does not exist",
                parent.display()
            );
        }
        parent
    };
    let staging = tempfile::Builder::new()
        .prefix(".stencil-cp-")
        .tempdir_in(&staging_parent)
        .with_context(|| format!("cannot write in {}", staging_parent.display()))?;
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive
        .unpack(staging.path())
        .context("cannot unpack what was copied")?;
    let mut tops: Vec<PathBuf> = fs::read_dir(staging.path())?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    tops.sort();
    let into = |dir: &Path| -> Result<()> {
        for top in &tops {
            let name = top.file_name().map(PathBuf::from).unwrap_or_default();
            replace(top, &dir.join(name))?;
        }
        Ok(())
    };
    match existing {
        // An existing directory receives the entry, or the contents.
        Some(meta) if meta.is_dir() => into(dest)?,
        Some(_) if contents => {
            bail!(
                "cannot copy a directory's contents onto the file {}",
                dest.display()
            )
        }
        Some(_) => match tops.as_slice() {
            [top] if !fs::symlink_metadata(top)?.is_dir() => replace(top, dest)?,
            _ => bail!("cannot copy a directory onto the file {}", dest.display()),
        },
        // A missing destination becomes the directory of the contents, or the entry.
        None if contents => {
            fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
            into(dest)?;
        }
        None => match tops.as_slice() {
            [top] if !must_be_dir || fs::symlink_metadata(top)?.is_dir() => replace(top, dest)?,
            [_] => bail!("{} does not exist and is not a directory", dest.display()),
            _ => bail!("the copy holds {} entries, expected one", tops.len()),
        },
    }
    Ok(())
}

/// Moves `from` to `to`, replacing a file there, or merging into a directory there.
fn replace(from: &Path, to: &Path) -> Result<()> {
    let from_meta = fs::symlink_metadata(from)?;
    match fs::symlink_metadata(to) {
        Ok(to_meta) if to_meta.is_dir() && from_meta.is_dir() => {
            for entry in fs::read_dir(from)? {
                let entry = entry?;
                replace(&entry.path(), &to.join(entry.file_name()))?;
            }
            Ok(())
        }
        Ok(to_meta) if to_meta.is_dir() => {
            bail!("cannot copy a file onto the directory {}", to.display())
        }
        _ => fs::rename(from, to).with_context(|| format!("cannot write {}", to.display())),
    }
}

/// The hidden `__cp` verb: chroots into `args.root`, then writes a tar of `args.path` to
/// standard output (`out`) or places the tar from standard input at it (`in`).
pub fn chroot_main(args: &ChrootArgs) -> Result<()> {
    nix::unistd::chroot(&args.root)
        .with_context(|| format!("cannot enter {}", args.root.display()))?;
    std::env::set_current_dir("/").context("cannot enter the container's root")?;
    let path = Path::new(&args.path);
    if path.components().any(|c| c == Component::ParentDir) && !path.is_absolute() {
        bail!("invalid path {}", args.path);
    }
    match args.direction.as_str() {
        "out" => {
            let mut out = std::io::stdout().lock();
            write_tar(&mut out, path, args.follow_link)
        }
        "in" => {
            let must_be_dir = args.path.ends_with('/');
            place(std::io::stdin().lock(), path, must_be_dir, args.contents)
        }
        other => bail!("unknown copy direction {other:?}"),
    }
}
