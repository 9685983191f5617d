//! Hostile archives for `stencil load` and `stencil import`: path traversal (`..` and
//! absolute entry names, a symbolic link then an entry written through it, a
//! `manifest.json` naming `../x`), symbolic links posing as `manifest.json` or as blobs,
//! and huge extension headers (a PAX header and a GNU long name of hundreds of MiB, a
//! `manifest.json` claiming 1 GiB). Each must fail with exit 125 and an error naming the
//! archive or the entry, within bounded time and memory, store nothing, leave fsck clean,
//! and write nothing outside the store (a victim directory is checked after each).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use stencil_e2e::{Run, Stencil};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A raw 512-byte tar header: any name, type, link and declared size (no validation).
fn header(name: &[u8], kind: u8, link: &[u8], size: u64) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    block[100..108].copy_from_slice(b"0000755\0");
    block[108..116].copy_from_slice(b"0000000\0");
    block[116..124].copy_from_slice(b"0000000\0");
    block[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    block[136..148].copy_from_slice(b"00000000000\0");
    block[156] = kind;
    block[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// A tar being written by hand, so that names the `tar` crate would refuse get in.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(&mut self, name: &str, kind: u8, link: &str, data: &[u8]) -> &mut Tar {
        self.0.extend_from_slice(&header(
            name.as_bytes(),
            kind,
            link.as_bytes(),
            data.len() as u64,
        ));
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.entry(name, b'0', "", data)
    }

    fn dir(&mut self, name: &str) -> &mut Tar {
        self.entry(name, b'5', "", b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.entry(name, b'2', target, b"")
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.0);
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes
    }
}

/// A docker-archive of one image `hostile/x:1` with `layer` (a plain tar) as its only
/// layer; `extra` adds entries before `manifest.json`, `manifest` replaces its text.
fn docker_archive(layer: &[u8], extra: &dyn Fn(&mut Tar), manifest: Option<&str>) -> Vec<u8> {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
    }))
    .unwrap_or_default();
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let default_manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["hostile/x:1"],"Layers":["layer/layer.tar"]}}]"#
    );
    let mut tar = Tar::default();
    tar.file(&config_name, &config)
        .dir("layer/")
        .file("layer/layer.tar", layer);
    extra(&mut tar);
    tar.file(
        "manifest.json",
        manifest.unwrap_or(&default_manifest).as_bytes(),
    );
    tar.finish()
}

fn good_layer() -> Vec<u8> {
    Tar::default()
        .dir("etc/")
        .file("etc/hello", b"hello\n")
        .finish()
}

/// The victim directory outside the store, and what it holds.
struct Victim {
    dir: PathBuf,
}

impl Victim {
    fn new(stencil: &Stencil) -> Victim {
        let dir = stencil.scratch().join("victim");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("precious"), b"keep me\n").unwrap_or_else(|e| panic!("{e}"));
        Victim { dir }
    }

    /// The victim's path as an entry name climbing out of any directory.
    fn climbing(&self, leaf: &str) -> String {
        format!("{}{}/{leaf}", "../".repeat(8), self.dir.display()).replace("//", "/")
    }

    #[track_caller]
    fn untouched(&self, context: &str) {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["precious"],
            "{context}: the victim directory changed"
        );
        let kept = std::fs::read(self.dir.join("precious")).unwrap_or_default();
        assert_eq!(kept, b"keep me\n", "{context}: the victim file changed");
    }
}

#[track_caller]
fn assert_refused_and_nothing_stored(
    stencil: &Stencil,
    victim: &Victim,
    run: &Run,
    took: Duration,
    needles: &[&str],
) {
    let context = run.command.clone();
    assert_eq!(run.code, Some(125), "{run}");
    assert!(run.stderr.starts_with("Error: "), "{run}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "expected {needle:?} in\n{run}");
    }
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(took < Duration::from_secs(30), "{context}: took {took:?}");
    assert_refused_and_nothing_stored_quiet(stencil, victim, &context);
}

/// Nothing is listed or stored, fsck is clean and the victim is untouched.
#[track_caller]
fn assert_refused_and_nothing_stored_quiet(stencil: &Stencil, victim: &Victim, context: &str) {
    let context = context.to_owned();
    stencil.run(&["images", "-aq"]).success().stdout_is("");
    let blobs: Vec<String> = std::fs::read_dir(stencil.root().join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(blobs.is_empty(), "{context}: blobs stayed: {blobs:?}");
    let checked = stencil.run(&["fsck"]);
    assert!(
        checked.code == Some(0)
            && checked.stdout.ends_with("store is consistent\n")
            && !checked.stdout.contains("unreferenced"),
        "{context}: fsck\n{checked}"
    );
    victim.untouched(&context);
}

/// Runs `args` with `path` last; returns the run and how long it took.
fn timed(stencil: &Stencil, verb: &str, path: &Path) -> (Run, Duration) {
    let started = Instant::now();
    let run = match verb {
        "load" => stencil.run(&["load", "-q", "-i", &path.display().to_string()]),
        _ => stencil.run(&["import", &path.display().to_string(), "hostile/imp:1"]),
    };
    (run, started.elapsed())
}

/// The largest resident set of any child this process has waited for, in KiB.
fn children_peak_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}

/// Layers (plain tars) that try to leave the directory they are applied in.
fn escaping_layers(victim: &Victim) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "dot-dot",
            Tar::default()
                .file(&victim.climbing("pwned"), b"x")
                .finish(),
            "pwned",
        ),
        (
            "absolute",
            Tar::default()
                .file(&format!("{}/pwned", victim.dir.display()), b"x")
                .finish(),
            "pwned",
        ),
        (
            "write-through-symlink",
            Tar::default()
                .symlink("link", &victim.dir.display().to_string())
                .file("link/pwned", b"x")
                .finish(),
            "link",
        ),
        (
            "write-through-relative-symlink",
            Tar::default()
                .symlink("up", &"../".repeat(8))
                .file(&format!("up{}/pwned", victim.dir.display()), b"x")
                .finish(),
            "pwned",
        ),
    ]
}

/// A layer's escaping entry is either refused (exit 125, nothing stored) or, as
/// containerd and docker's chrooted untar do, kept inside the image; never written outside.
#[track_caller]
fn assert_refused_or_confined(
    stencil: &Stencil,
    victim: &Victim,
    run: &Run,
    took: Duration,
    needle: &str,
) {
    if run.code == Some(0) {
        victim.untouched(&run.command);
        assert!(took < Duration::from_secs(30), "{run}");
        let checked = stencil.run(&["fsck"]);
        assert!(
            checked.stdout.ends_with("store is consistent\n"),
            "{checked}"
        );
        let images = stencil
            .run(&["images", "-aq", "--no-trunc"])
            .success()
            .stdout
            .clone();
        for id in images.lines() {
            stencil.run(&["rmi", "-f", id]).success();
        }
        assert_refused_and_nothing_stored_quiet(stencil, victim, &run.command);
    } else {
        assert_refused_and_nothing_stored(stencil, victim, run, took, &[needle]);
    }
}

#[test]
fn escaping_layers_are_refused_or_confined_by_load_and_import() {
    let stencil = Stencil::new();
    let victim = Victim::new(&stencil);
    for (what, layer, needle) in escaping_layers(&victim) {
        // import: the layer is the rootfs tarball itself.
        let tarball = stencil.scratch().join(format!("{what}.tar"));
        std::fs::write(&tarball, &layer).unwrap_or_else(|e| panic!("{e}"));
        let (run, took) = timed(&stencil, "import", &tarball);
        assert_refused_or_confined(&stencil, &victim, &run, took, needle);
        // load: the layer inside a docker-archive.
        let archive = stencil.scratch().join(format!("{what}-archive.tar"));
        std::fs::write(&archive, docker_archive(&layer, &|_| {}, None))
            .unwrap_or_else(|e| panic!("{e}"));
        let (run, took) = timed(&stencil, "load", &archive);
        assert_refused_or_confined(&stencil, &victim, &run, took, needle);
    }
}

#[test]
fn archives_that_point_outside_themselves_are_refused_by_load() {
    let stencil = Stencil::new();
    let victim = Victim::new(&stencil);
    let layer = good_layer();
    // A manifest and a layer outside the archive, which a followed symlink would read.
    let outside_manifest = stencil.scratch().join("outside-manifest.json");
    std::fs::write(
        &outside_manifest,
        r#"[{"Config":"c.json","RepoTags":["hostile/x:1"],"Layers":["layer/layer.tar"]}]"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let outside_layer = stencil.scratch().join("outside-layer.tar");
    std::fs::write(&outside_layer, &layer).unwrap_or_else(|e| panic!("{e}"));
    let victim_entry = victim.climbing("pwned");
    let absolute_entry = format!("{}/pwned", victim.dir.display());
    let cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![
        (
            "dot-dot-entry",
            docker_archive(
                &layer,
                &|tar| {
                    tar.file(&victim_entry, b"x");
                },
                None,
            ),
            vec!["pwned".into(), "climbs out".into()],
        ),
        (
            "absolute-entry",
            docker_archive(
                &layer,
                &|tar| {
                    tar.file(&absolute_entry, b"x");
                },
                None,
            ),
            vec!["pwned".into(), "absolute".into()],
        ),
        (
            "manifest-names-dot-dot",
            docker_archive(
                &layer,
                &|_| {},
                Some(r#"[{"Config":"../x.json","RepoTags":["hostile/x:1"],"Layers":["../x"]}]"#),
            ),
            vec!["manifest.json".into(), "../x".into()],
        ),
        (
            "manifest-names-dot-dot-layer",
            {
                let config = serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
                }))
                .unwrap_or_default();
                let mut tar = Tar::default();
                tar.file("c.json", &config).file(
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["hostile/x:1"],"Layers":["../../outside-layer.tar"]}]"#,
                );
                tar.finish()
            },
            vec!["manifest.json".into(), "../../outside-layer.tar".into()],
        ),
        (
            "symlinked-manifest",
            {
                let mut tar = Tar::default();
                tar.symlink("manifest.json", &outside_manifest.display().to_string());
                tar.finish()
            },
            vec!["manifest.json is a link".into()],
        ),
        (
            "symlinked-blob",
            {
                let config = serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
                }))
                .unwrap_or_default();
                let mut tar = Tar::default();
                tar.file("c.json", &config)
                    .symlink("l.tar", &outside_layer.display().to_string())
                    .file(
                        "manifest.json",
                        br#"[{"Config":"c.json","RepoTags":["hostile/x:1"],"Layers":["l.tar"]}]"#,
                    );
                tar.finish()
            },
            vec!["l.tar".into()],
        ),
    ];
    for (what, bytes, needles) in cases {
        let archive = stencil.scratch().join(format!("{what}.tar"));
        std::fs::write(&archive, bytes).unwrap_or_else(|e| panic!("{e}"));
        let (run, took) = timed(&stencil, "load", &archive);
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let name = format!("{what}.tar");
        needles.push(&name);
        assert_refused_and_nothing_stored(&stencil, &victim, &run, took, &needles);
    }
}

/// Writes a gzip-compressed tar: `before`, then a header of `kind` declaring `size` bytes
/// followed by that many zero bytes, then `after`.
fn huge_entry_archive(path: &Path, before: &[u8], kind: u8, name: &str, size: u64, after: &[u8]) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut write = |bytes: &[u8]| gz.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    write(before);
    write(&header(name.as_bytes(), kind, b"", size));
    let chunk = vec![b'a'; 1 << 20];
    let mut left = size.div_ceil(512) * 512;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        write(&chunk[..n]);
        left -= n as u64;
    }
    write(after);
    gz.finish().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn huge_headers_are_refused_in_bounded_memory_and_time() {
    let stencil = Stencil::new();
    let victim = Victim::new(&stencil);
    let layer = good_layer();
    let huge = 400u64 << 20;
    let rest_archive = docker_archive(&layer, &|_| {}, None);
    let rest_layer = good_layer();
    let mut cases: Vec<(String, &str, PathBuf, Vec<&str>)> = Vec::new();
    for (kind, what) in [(b'x', "pax"), (b'L', "gnu-longname")] {
        let archive = stencil.scratch().join(format!("{what}-archive.tar.gz"));
        huge_entry_archive(&archive, &[], kind, "././@LongLink", huge, &rest_archive);
        cases.push((what.into(), "load", archive, vec!["extension header"]));
        let tarball = stencil.scratch().join(format!("{what}-rootfs.tar.gz"));
        huge_entry_archive(&tarball, &[], kind, "././@LongLink", huge, &rest_layer);
        cases.push((what.into(), "import", tarball, vec![]));
    }
    // A manifest.json claiming 1 GiB, of which only a little is there.
    let claimed = stencil.scratch().join("claimed-manifest.tar");
    let mut bytes = header(b"manifest.json", b'0', b"", 1 << 30).to_vec();
    bytes.extend_from_slice(&[b'['; 4096]);
    std::fs::write(&claimed, bytes).unwrap_or_else(|e| panic!("{e}"));
    cases.push(("claimed".into(), "load", claimed, vec!["manifest.json"]));
    for (what, verb, path, needles) in cases {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (run, took) = timed(&stencil, verb, &path);
        let mut needles = needles;
        needles.push(&name);
        assert_refused_and_nothing_stored(&stencil, &victim, &run, took, &needles);
        let peak = children_peak_kib();
        assert!(
            peak < 200 << 10,
            "{what} ({verb}): a child reached {peak} KiB of memory for a {huge}-byte header"
        );
        let _ = std::fs::remove_file(&path);
    }
}
