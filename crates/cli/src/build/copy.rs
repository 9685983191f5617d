//! `COPY` and `ADD`: choosing the source files (build context with `.dockerignore`, or
//! another stage's or image's root filesystem), hashing them for the cache, and copying
//! them into the root filesystem being built, with docker's directory semantics.
//!
//! Semantics, as docker's: a source directory's *contents* are copied; several sources,
//! or a destination ending in `/` or naming an existing directory, make the destination a
//! directory; a relative destination is relative to `WORKDIR`; missing directories are
//! created `0755`; everything new is owned by `root` unless `--chown`; `--chmod` sets the
//! mode of everything copied; sources may hold wildcards (`*`, `?`, `[…]`); a source may
//! not leave the context (`../x`). `ADD` also unpacks local tar archives (plain, gzip,
//! zstd) into the destination, and refuses URLs: builds here are offline.
//!
//! Paths in the destination root are resolved inside it: a symlink in the image is
//! followed as if the root were `/`, never to the host.
//!
//! ```
//! use stencil::build::copy::{CopyOptions, Source, copy_into, resolve_sources};
//!
//! let context = tempfile::tempdir().unwrap();
//! std::fs::create_dir(context.path().join("src")).unwrap();
//! std::fs::write(context.path().join("src/main.c"), "int main;").unwrap();
//! let rootfs = tempfile::tempdir().unwrap();
//! let source = Source { root: context.path().to_path_buf(), ignore: None };
//! let matched = resolve_sources(&source, &["src".to_owned()]).unwrap();
//! let options = CopyOptions::default();
//! copy_into(&source, rootfs.path(), "/app", &matched, "code/", &options).unwrap();
//! assert!(rootfs.path().join("app/code/main.c").is_file());
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use super::ignore::{Ignore, glob_match};

/// Where `COPY` reads from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The build context directory, or a mounted root filesystem (`--from`).
    pub root: PathBuf,
    /// The context's `.dockerignore` (none for `--from`).
    pub ignore: Option<Ignore>,
}

/// One source path that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Relative to the source root, `/`-separated (`""` is the root itself).
    pub rel: String,
    /// The path on the host.
    pub path: PathBuf,
    /// Whether it is a directory (after following a symlink named as the source).
    pub is_dir: bool,
}

/// How files are written.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown`: the owner of everything new (`root` when `None` and running as root).
    pub owner: Option<(u32, u32)>,
    /// `--chmod`: the mode of everything copied.
    pub mode: Option<u32>,
    /// `ADD`: unpack local tar archives.
    pub extract_archives: bool,
}

/// Cleans `path` lexically into segments; `..` may not climb above the root.
fn segments(path: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => out.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

impl Source {
    fn excluded(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.excludes(rel))
    }

    /// Every path below `rel` (which is included), sorted, that is not excluded.
    fn walk(&self, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let dir = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        names.sort();
        for name in names {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            let excluded = self.excluded(&child);
            if !excluded {
                out.push((child.clone(), path.clone()));
            }
            // An excluded directory is still walked when a `!` pattern may re-include
            // something below it.
            let walk_below = !excluded || self.ignore.as_ref().is_some_and(Ignore::has_exceptions);
            if meta.is_dir() && walk_below {
                self.walk(&child, out)?;
            }
        }
        Ok(())
    }
}

/// The paths that the `COPY` sources `patterns` name in `source`, in order.
pub fn resolve_sources(source: &Source, patterns: &[String]) -> Result<Vec<Matched>> {
    let mut matched = Vec::new();
    for pattern in patterns {
        let Some(parts) = segments(pattern) else {
            bail!("forbidden path outside the build context: {pattern}");
        };
        let rel = parts.join("/");
        let wildcard = parts.iter().any(|p| p.contains(['*', '?', '[']));
        if wildcard {
            let mut all = Vec::new();
            source.walk("", &mut all)?;
            let before = matched.len();
            for (path_rel, path) in all {
                let path_parts: Vec<&str> = path_rel.split('/').collect();
                let hit = path_parts.len() == parts.len()
                    && parts.iter().zip(&path_parts).all(|(p, n)| glob_match(p, n));
                if hit {
                    let is_dir = fs::metadata(&path).is_ok_and(|m| m.is_dir());
                    matched.push(Matched {
                        rel: path_rel,
                        path,
                        is_dir,
                    });
                }
            }
            if matched.len() == before {
                bail!(
                    "no source files were specified: {pattern} matches nothing in the build context (or only what .dockerignore excludes)"
                );
            }
            continue;
        }
        let path = resolve_in_root(&source.root, &rel, true)?;
        let exists = fs::symlink_metadata(&path).is_ok();
        if !exists || (!rel.is_empty() && source.excluded(&rel)) {
            bail!(
                "file not found in build context or excluded by .dockerignore: {pattern} (stat {}: no such file or directory)",
                if rel.is_empty() { "." } else { rel.as_str() }
            );
        }
        let is_dir = fs::metadata(&path).is_ok_and(|m| m.is_dir());
        matched.push(Matched { rel, path, is_dir });
    }
    Ok(matched)
}

/// The digest of the files `matched` names (paths below each, types, modes, sizes,
/// contents and link targets; not times or owners), for the cache key.
pub fn content_digest(source: &Source, matched: &[Matched]) -> Result<String> {
    let mut hasher = Sha256::new();
    for item in matched {
        let mut entries = vec![(String::new(), item.path.clone())];
        if item.is_dir {
            let mut below = Vec::new();
            let inner = Source {
                root: item.path.clone(),
                ignore: None,
            };
            inner.walk("", &mut below)?;
            entries.extend(below.into_iter().filter(|(rel, _)| {
                let full = if item.rel.is_empty() {
                    rel.clone()
                } else {
                    format!("{}/{rel}", item.rel)
                };
                !source.excluded(&full)
            }));
        }
        hasher.update(format!("source {}\n", item.rel));
        for (rel, path) in entries {
            let meta = if rel.is_empty() {
                fs::metadata(&path)
            } else {
                fs::symlink_metadata(&path)
            }
            .with_context(|| format!("cannot inspect {}", path.display()))?;
            let kind = meta.file_type();
            hasher.update(format!("{rel}\0{:o}\0", meta.mode()));
            if kind.is_file() {
                hasher.update(format!("{}\0", meta.len()));
                let mut file = fs::File::open(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mut file_hash = Sha256::new();
                std::io::copy(&mut file, &mut file_hash)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                hasher.update(file_hash.finalize());
            } else if kind.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                hasher.update(target.to_string_lossy().as_bytes());
            }
            hasher.update(b"\n");
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Resolves `rel` inside `root`: symlinks are followed as if `root` were `/` (the last
/// component too when `follow_last`), `..` stops at the root.
pub fn resolve_in_root(root: &Path, rel: &str, follow_last: bool) -> Result<PathBuf> {
    let mut pending: Vec<String> = segments(rel).unwrap_or_default();
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(resolved.join("/")).join(&part);
        let is_last = pending.is_empty();
        let link = fs::symlink_metadata(&candidate)
            .ok()
            .filter(|m| m.file_type().is_symlink());
        if link.is_some() && (!is_last || follow_last) {
            hops += 1;
            if hops > 40 {
                bail!("too many levels of symbolic links resolving {rel}");
            }
            let target = fs::read_link(&candidate)
                .with_context(|| format!("cannot read link {}", candidate.display()))?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                resolved.clear();
            }
            let mut parts: Vec<String> = Path::new(&target)
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    Component::ParentDir => Some("..".to_owned()),
                    _ => None,
                })
                .collect();
            parts.reverse();
            pending.extend(parts);
        } else {
            resolved.push(part);
        }
    }
    Ok(root.join(resolved.join("/")))
}

/// Copies `matched` into root filesystem `rootfs` at `dest` (relative to `workdir`).
pub fn copy_into(
    source: &Source,
    rootfs: &Path,
    workdir: &str,
    matched: &[Matched],
    dest: &str,
    options: &CopyOptions,
) -> Result<()> {
    let absolute = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    let dest_segments = segments(&absolute).unwrap_or_default();
    let dest_rel = dest_segments.join("/");
    let dest_path = resolve_in_root(rootfs, &dest_rel, true)?;
    let names_dir = dest.ends_with('/')
        || dest.ends_with("/.")
        || dest == "."
        || fs::metadata(&dest_path).is_ok_and(|m| m.is_dir());
    if matched.len() > 1 && !names_dir {
        bail!(
            "when copying more than one source, the destination must be a directory and end with a /: {dest}"
        );
    }
    for item in matched {
        if item.is_dir {
            let target = make_dirs(rootfs, &dest_rel, options)?;
            copy_tree(&item.path, &target, options, source, &item.rel)?;
        } else if options.extract_archives && is_tar_archive(&item.path)? {
            let target = make_dirs(rootfs, &dest_rel, options)?;
            extract(&item.path, &target)?;
        } else if names_dir {
            let target = make_dirs(rootfs, &dest_rel, options)?;
            let name = item
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = Path::new(&item.rel)
                .file_name()
                .map_or(name, |n| n.to_string_lossy().into_owned());
            copy_entry(
                &item.path,
                &target.join(name),
                options,
                true,
                source,
                &item.rel,
            )?;
        } else {
            let (parent, name) = match dest_rel.rsplit_once('/') {
                Some((parent, name)) => (parent.to_owned(), name.to_owned()),
                None => (String::new(), dest_rel.clone()),
            };
            if name.is_empty() {
                bail!(
                    "cannot copy a file onto the root directory: give a file name or end the destination with /"
                );
            }
            let target = make_dirs(rootfs, &parent, options)?;
            copy_entry(
                &item.path,
                &target.join(name),
                options,
                true,
                source,
                &item.rel,
            )?;
        }
    }
    Ok(())
}

/// Creates the directories of `rel` in `rootfs` that are missing (`0755`, new ones owned
/// as `options` says) and returns the resolved path.
pub fn make_dirs(rootfs: &Path, rel: &str, options: &CopyOptions) -> Result<PathBuf> {
    let mut done = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(part);
        let path = resolve_in_root(rootfs, &done, true)?;
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("cannot create directory /{done}: a file is in the way"),
            Err(_) => {
                fs::create_dir(&path)
                    .with_context(|| format!("cannot create directory /{done}"))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                if let Some((uid, gid)) = options.owner {
                    std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                        .with_context(|| format!("cannot change the owner of /{done}"))?;
                }
            }
        }
    }
    resolve_in_root(rootfs, rel, true)
}

/// Copies directory `from`'s contents (source path `rel`) into existing directory `to`,
/// leaving out what `source` excludes.
fn copy_tree(
    from: &Path,
    to: &Path,
    options: &CopyOptions,
    source: &Source,
    rel: &str,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", from.display()))?;
    names.sort();
    let exceptions = source.ignore.as_ref().is_some_and(Ignore::has_exceptions);
    for name in names {
        let child_rel = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let path = from.join(&name);
        if source.excluded(&child_rel) {
            // A `!` pattern may re-include something below an excluded directory.
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !(is_dir && exceptions) {
                continue;
            }
        }
        copy_entry(&path, &to.join(&name), options, false, source, &child_rel)?;
    }
    Ok(())
}

/// Copies one entry (a directory with its contents) from `from` to `to`, replacing what
/// is at `to` unless both are directories. The top-level source follows symlinks.
fn copy_entry(
    from: &Path,
    to: &Path,
    options: &CopyOptions,
    follow: bool,
    source: &Source,
    rel: &str,
) -> Result<()> {
    let meta = if follow {
        fs::metadata(from)
    } else {
        fs::symlink_metadata(from)
    }
    .with_context(|| format!("cannot inspect {}", from.display()))?;
    let existing = fs::symlink_metadata(to).ok();
    let kind = meta.file_type();
    if let Some(existing) = &existing
        && !(existing.is_dir() && kind.is_dir())
    {
        if existing.is_dir() {
            fs::remove_dir_all(to)
        } else {
            fs::remove_file(to)
        }
        .with_context(|| format!("cannot replace {}", to.display()))?;
    }
    let mode = options.mode.unwrap_or(meta.mode() & 0o7777);
    if kind.is_dir() {
        if existing.as_ref().is_none_or(|e| !e.is_dir()) {
            fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
        }
        copy_tree(from, to, options, source, rel)?;
        fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    } else if kind.is_symlink() {
        let target = fs::read_link(from)?;
        std::os::unix::fs::symlink(&target, to)
            .with_context(|| format!("cannot create {}", to.display()))?;
    } else if kind.is_file() {
        let mut input =
            fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
        let mut output =
            fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
        std::io::copy(&mut input, &mut output)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        output.flush()?;
        fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    } else {
        tracing::warn!(path = %from.display(), "special file not copied");
        return Ok(());
    }
    let (uid, gid) = options.owner.unwrap_or((0, 0));
    if nix::unistd::geteuid().is_root() || options.owner.is_some() {
        std::os::unix::fs::lchown(to, Some(uid), Some(gid))
            .with_context(|| format!("cannot change the owner of {}", to.display()))?;
    }
    let mtime = nix::sys::time::TimeVal::new(meta.mtime(), meta.mtime_nsec() / 1000);
    let _ = nix::sys::stat::lutimes(to, &mtime, &mtime);
    Ok(())
}

/// Whether `path` is a tar archive, plain or compressed (gzip, zstd).
fn is_tar_archive(path: &Path) -> Result<bool> {
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok((kind, peeked)) = stencil_cow_fs::compression::detect(file) else {
        return Ok(false);
    };
    let Ok(plain) = stencil_cow_fs::compression::decompress(kind, peeked) else {
        return Ok(false);
    };
    let mut block = Vec::with_capacity(512);
    if plain.take(512).read_to_end(&mut block).is_err() {
        return Ok(false);
    }
    Ok(
        block.len() == 512
            && !block.iter().all(|b| *b == 0)
            && crate::engine::is_tar_header(&block),
    )
}

/// Unpacks tar archive `path` into directory `target`, never outside it. A helper thread
/// decompresses into a pipe, as the engine's unpacking does.
fn extract(path: &Path, target: &Path) -> Result<()> {
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (reader, mut writer) = std::io::pipe().context("cannot create a pipe")?;
    let decompressor = std::thread::spawn(move || -> Result<()> {
        let (kind, peeked) = stencil_cow_fs::compression::detect(file)?;
        let mut plain = stencil_cow_fs::compression::decompress(kind, peeked)?;
        // A closed pipe means the unpacking stopped; its error is the one reported.
        let _ = std::io::copy(&mut plain, &mut writer);
        Ok(())
    });
    let applied =
        stencil_cow_fs::apply_layer(reader, target, &stencil_cow_fs::ApplyOptions::default());
    let decompressed = decompressor
        .join()
        .map_err(|_| anyhow::anyhow!("the decompression thread panicked"))?;
    applied.with_context(|| format!("cannot unpack {}", path.display()))?;
    decompressed.with_context(|| format!("cannot decompress {}", path.display()))?;
    Ok(())
}

/// Parses `--chown=USER[:GROUP]` (names looked up in the image's `/etc/passwd` and
/// `/etc/group`; a missing group is the user's number, as docker does).
pub fn parse_chown(spec: &str, rootfs: Option<&Path>) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let table = |file: &str| -> BTreeMap<String, (u32, u32)> {
        let Some(rootfs) = rootfs else {
            return BTreeMap::new();
        };
        let Ok(path) = resolve_in_root(rootfs, file, true) else {
            return BTreeMap::new();
        };
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let id = fields.get(2)?.parse().ok()?;
                let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some(((*fields.first()?).to_owned(), (id, gid)))
            })
            .collect()
    };
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => match table("etc/passwd").get(user) {
            Some((uid, _)) => *uid,
            None => {
                bail!("--chown={spec}: no user {user:?} in the image's /etc/passwd; give a number")
            }
        },
    };
    let gid = match group {
        None => uid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match table("etc/group").get(group) {
                Some((gid, _)) => *gid,
                None => {
                    bail!(
                        "--chown={spec}: no group {group:?} in the image's /etc/group; give a number"
                    )
                }
            },
        },
    };
    Ok((uid, gid))
}

/// Parses `--chmod=MODE` (octal).
pub fn parse_chmod(spec: &str) -> Result<u32> {
    match u32::from_str_radix(spec, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => bail!("--chmod={spec}: give an octal mode such as 755 or 0644"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (path, content) in files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            if path.ends_with('/') {
                fs::create_dir_all(&full).unwrap_or_else(|e| panic!("{e}"));
            } else {
                fs::write(&full, content).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        dir
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let source = Source {
            root: root.to_path_buf(),
            ignore: None,
        };
        let mut all = Vec::new();
        source.walk("", &mut all).unwrap_or_else(|e| panic!("{e}"));
        for (rel, path) in all {
            let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            out.push(if meta.is_dir() {
                format!("{rel}/")
            } else {
                rel
            });
        }
        out
    }

    fn options() -> CopyOptions {
        // Unprivileged test runs cannot chown to root; owners are checked by the e2e tests.
        CopyOptions {
            owner: nix::unistd::geteuid().is_root().then_some((0, 0)),
            ..CopyOptions::default()
        }
    }

    #[track_caller]
    fn check(
        context: &[(&str, &str)],
        ignore: &str,
        sources: &[&str],
        dest: &str,
        expected: Result<&[&str], &str>,
    ) {
        let context = tree(context);
        let rootfs = tree(&[("etc/", ""), ("bin", "x")]);
        std::os::unix::fs::symlink("/etc", rootfs.path().join("link"))
            .unwrap_or_else(|e| panic!("{e}"));
        let source = Source {
            root: context.path().to_path_buf(),
            ignore: Some(Ignore::parse(ignore)),
        };
        let sources: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
        let result = resolve_sources(&source, &sources).and_then(|matched| {
            copy_into(&source, rootfs.path(), "/work", &matched, dest, &options())
        });
        match (result, expected) {
            (Ok(()), Ok(want)) => {
                let mut got = listing(rootfs.path());
                got.retain(|p| !["bin", "etc/", "link"].contains(&p.as_str()));
                assert_eq!(got, want, "{sources:?} -> {dest}");
            }
            (Err(error), Err(needle)) => {
                let text = format!("{error:#}");
                assert!(text.contains(needle), "{text}");
            }
            (got, want) => panic!("{sources:?} -> {dest}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn copy_semantics_like_docker() {
        let context: &[(&str, &str)] = &[
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("dir/x", "x"),
            ("dir/sub/y", "y"),
            ("dir/skip.log", "s"),
        ];
        // A file to a file name, relative to WORKDIR.
        check(context, "", &["a.txt"], "new", Ok(&["work/", "work/new"]));
        // A file into a directory.
        check(context, "", &["a.txt"], "/opt/", Ok(&["opt/", "opt/a.txt"]));
        // A directory's contents, with .dockerignore applied.
        check(
            context,
            "**/*.log",
            &["dir"],
            "/d",
            Ok(&["d/", "d/sub/", "d/sub/y", "d/x"]),
        );
        // Wildcards; through a symlink of the image, resolved inside the root.
        check(
            context,
            "",
            &["*.txt"],
            "/link/",
            Ok(&["etc/a.txt", "etc/b.txt"]),
        );
        check(
            context,
            "",
            &["a.txt", "b.txt"],
            "/x",
            Err("must be a directory and end with a /"),
        );
        check(
            context,
            "",
            &["missing"],
            "/x",
            Err("file not found in build context"),
        );
        check(
            context,
            "a.txt",
            &["a.txt"],
            "/x",
            Err("excluded by .dockerignore"),
        );
        check(
            context,
            "",
            &["*.none"],
            "/x",
            Err("no source files were specified"),
        );
        check(
            context,
            "",
            &["../etc/passwd"],
            "/x",
            Err("forbidden path outside the build context"),
        );
        check(
            context,
            "",
            &["a.txt"],
            "/bin/sub",
            Err("a file is in the way"),
        );
    }

    #[test]
    fn content_digest_follows_content_and_mode_not_time() {
        let context = tree(&[("dir/x", "1"), ("dir/y", "2")]);
        let source = Source {
            root: context.path().to_path_buf(),
            ignore: None,
        };
        let digest = || {
            let matched =
                resolve_sources(&source, &["dir".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
            content_digest(&source, &matched).unwrap_or_else(|e| panic!("{e}"))
        };
        let first = digest();
        let time = nix::sys::time::TimeVal::new(1000, 0);
        nix::sys::stat::lutimes(&context.path().join("dir/x"), &time, &time)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(digest(), first);
        fs::write(context.path().join("dir/x"), "changed").unwrap_or_else(|e| panic!("{e}"));
        let changed = digest();
        assert_ne!(changed, first);
        fs::set_permissions(
            context.path().join("dir/y"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(digest(), changed);
    }

    #[test]
    fn chown_and_chmod_parsing() {
        let rootfs = tree(&[
            (
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\nstaff:x:50:\n"),
        ]);
        let r = Some(rootfs.path());
        assert_eq!(parse_chown("1:2", r).ok(), Some((1, 2)));
        assert_eq!(parse_chown("7", r).ok(), Some((7, 7)));
        assert_eq!(parse_chown("app:staff", r).ok(), Some((1000, 50)));
        assert!(
            format!(
                "{:#}",
                parse_chown("nobody", r)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
            .contains("no user \"nobody\"")
        );
        assert_eq!(parse_chmod("755").ok(), Some(0o755));
        assert!(parse_chmod("rwx").is_err());
        assert!(parse_chmod("77777").is_err());
    }
}
