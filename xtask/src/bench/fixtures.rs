//! Benchmark fixtures, built once and cached under `target/bench/`.
//!
//! - `minbase-rootfs/`: Debian bookworm `debootstrap --variant=minbase` (about 6,800 files);
//! - `minbase.tar`: that tree as one layer;
//! - `app.tar`: an application layer with many small files: Python libraries from Debian
//!   packages (Django, Babel, NumPy, …, with their byte-compiled `.pyc`), installed with
//!   apt in a chroot of the minbase tree through an overlay whose upper directory becomes
//!   the layer;
//! - `layers50/NN.tar`: 49 small layers (40 files each) that sit on the minbase layer to
//!   make a 50-layer image;
//! - `big/`: two more layers for an image of about 1 GiB uncompressed (minbase, app, 512 MiB
//!   of incompressible 4 MiB files from `/dev/urandom`, and about 150 MiB of log-like text
//!   that gzip shrinks about 5×), for the peak memory of a large pull;
//! - every tar in gzip (`gzip -6 -n`) and zstd (`zstd -3`), digests cached beside them;
//! - `oci/`: an OCI layout holding eight images, `minbase`, `app`, `layers50` and `big`, each as
//!   `NAME-gzip` and `NAME-zstd` (blobs hard-linked, rebuilt on every run: it is cheap).
//!
//! A fixture is made under a `.tmp` name and renamed when complete, so an interrupted
//! build is redone, never half-used.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::shell::run;

/// Debian packages that make the application layer: pure-Python trees of many small files.
const APP_PACKAGES: &[&str] = &[
    "python3-django",
    "python3-babel",
    "python3-numpy",
    "python3-yaml",
    "python3-requests",
    "python3-jinja2",
];

/// Layers on top of the minbase layer in the 50-layer image.
const SMALL_LAYERS: usize = 49;

/// A compressed layer file and its descriptor fields.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The file.
    pub path: PathBuf,
    /// `sha256:…` of the file.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip, as most registries serve.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Both, gzip first.
    pub const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The program that decompresses it to stdout (`gzip -dc`, `zstd -dc`).
    pub fn decompressor(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// One layer: its plain tar and both compressed forms.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed tar.
    pub tar: PathBuf,
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// gzip form.
    pub gzip: Blob,
    /// zstd form.
    pub zstd: Blob,
}

impl Layer {
    /// The compressed form for `compression`.
    pub fn blob(&self, compression: Compression) -> &Blob {
        match compression {
            Compression::Gzip => &self.gzip,
            Compression::Zstd => &self.zstd,
        }
    }
}

/// One benchmark image (in two compressions).
#[derive(Debug, Clone)]
pub struct Image {
    /// `minbase`, `app` or `layers50`.
    pub name: &'static str,
    /// Its layers, base first.
    pub layers: Vec<Layer>,
}

impl Image {
    /// The tag in the OCI layout and the case name: `NAME-COMPRESSION`.
    pub fn tag(&self, compression: Compression) -> String {
        format!("{}-{}", self.name, compression.name())
    }

    /// The compressed layer files.
    pub fn blobs(&self, compression: Compression) -> Vec<PathBuf> {
        self.layers
            .iter()
            .map(|l| l.blob(compression).path.clone())
            .collect()
    }

    /// The plain layer tars.
    pub fn tars(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.tar.clone()).collect()
    }

    /// Total compressed bytes.
    pub fn size(&self, compression: Compression) -> u64 {
        self.layers.iter().map(|l| l.blob(compression).size).sum()
    }
}

/// Everything the scenarios use.
pub struct Fixtures {
    /// `target/bench`.
    pub dir: PathBuf,
    /// The pre-extracted minbase root filesystem.
    pub rootfs: PathBuf,
    /// The OCI layout holding every image.
    pub layout: PathBuf,
    /// `minbase`, `app`, `layers50`.
    pub images: Vec<Image>,
}

impl Fixtures {
    /// Builds what is missing under `dir` and returns the whole set.
    pub fn build(dir: &Path) -> Result<Fixtures> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let rootfs = minbase_rootfs(dir)?;
        let minbase = layer_from_tree(&rootfs, &dir.join("minbase.tar"))?;
        let app_upper = app_upper(dir, &rootfs)?;
        let app = layer_from_tree(&app_upper, &dir.join("app.tar"))?;
        let mut layers50 = vec![minbase.clone()];
        for index in 1..=SMALL_LAYERS {
            layers50.push(small_layer(&dir.join("layers50"), index)?);
        }
        let big = vec![
            minbase.clone(),
            app.clone(),
            generated_layer(&dir.join("big"), "random", RANDOM_LAYER)?,
            generated_layer(&dir.join("big"), "text", TEXT_LAYER)?,
        ];
        let images = vec![
            Image {
                name: "minbase",
                layers: vec![minbase.clone()],
            },
            Image {
                name: "app",
                layers: vec![minbase, app],
            },
            Image {
                name: "big",
                layers: big,
            },
            Image {
                name: "layers50",
                layers: layers50,
            },
        ];
        let layout = dir.join("oci");
        write_layout(&layout, &images)?;
        Ok(Fixtures {
            dir: dir.to_path_buf(),
            rootfs,
            layout,
            images,
        })
    }

    /// The image named `name`.
    pub fn image(&self, name: &str) -> &Image {
        self.images
            .iter()
            .find(|i| i.name == name)
            .unwrap_or(&self.images[0])
    }
}

fn minbase_rootfs(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("minbase-rootfs");
    if rootfs.join("etc/os-release").exists() {
        return Ok(rootfs);
    }
    let tmp = dir.join("minbase-rootfs.tmp");
    remove_if_present(&tmp)?;
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian"))
    .context("debootstrap failed (apt-get install -y debootstrap; it needs the Debian mirror)")?;
    rename(&tmp, &rootfs)?;
    Ok(rootfs)
}

/// The application layer's tree: what apt adds to the minbase tree.
fn app_upper(dir: &Path, rootfs: &Path) -> Result<PathBuf> {
    let upper = dir.join("app-upper");
    if upper.is_dir() {
        return Ok(upper);
    }
    let tmp = dir.join("app.tmp");
    remove_if_present(&tmp)?;
    for sub in ["upper", "work", "merged"] {
        std::fs::create_dir_all(tmp.join(sub))?;
    }
    let (u, w, m) = (tmp.join("upper"), tmp.join("work"), tmp.join("merged"));
    // A private mount namespace: the overlay and /proc vanish with the shell.
    let script = format!(
        "set -e
mount -t overlay overlay -o lowerdir={lower},upperdir={u},workdir={w} {m}
mount -t proc proc {m}/proc
cp /etc/resolv.conf {m}/etc/resolv.conf
chroot {m} sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {packages} >/dev/null && apt-get clean'
umount {m}/proc
umount {m}",
        lower = rootfs.display(),
        u = u.display(),
        w = w.display(),
        m = m.display(),
        packages = APP_PACKAGES.join(" "),
    );
    run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script))
    .context("installing the application layer's packages in a chroot failed")?;
    // What is not application content: apt's lists and caches, the copied resolv.conf,
    // and overlay whiteouts (character devices 0/0) for the few files apt replaced.
    let mut clean = Command::new("sh");
    clean.arg("-c").arg(
        "cd \"$1\" && rm -rf etc/resolv.conf var/lib/apt/lists var/cache/apt var/cache/debconf var/log \
         && find . -type c -delete",
    );
    clean.arg("sh").arg(&u);
    run(&mut clean)?;
    rename(&u, &upper)?;
    remove_if_present(&tmp)?;
    Ok(upper)
}

/// The big image's incompressible layer: 128 files of 4 MiB from `/dev/urandom`.
const RANDOM_LAYER: &str = "mkdir -p opt/big/data
for i in $(seq -w 1 128); do head -c 4194304 /dev/urandom > opt/big/data/part$i.bin; done";

/// The big image's compressible layer: 10 log files of about 15 MiB, numbered lines
/// with seeded random fields.
const TEXT_LAYER: &str = "mkdir -p var/log/big
awk 'BEGIN { srand(7); for (i = 0; i < 2000000; i++) printf \"%08d 2026-01-01T00:%02d:%02d GET /api/v1/items/%d status=%d took=%.3fms\\n\", i, (i / 60) % 60, i % 60, int(rand() * 100000), (rand() < 0.9 ? 200 : 404), rand() * 50 > (\"var/log/big/access\" int(i / 200000) \".log\") }'";

/// A layer whose tree `script` (sh, run inside it) makes, cached as `dir/NAME/` and
/// `dir/NAME.tar`.
fn generated_layer(dir: &Path, name: &str, script: &str) -> Result<Layer> {
    let tree = dir.join(name);
    if !tree.is_dir() {
        let tmp = dir.join(format!("{name}.tmp"));
        remove_if_present(&tmp)?;
        std::fs::create_dir_all(&tmp)?;
        run(Command::new("sh").arg("-ec").arg(script).current_dir(&tmp))
            .with_context(|| format!("cannot make the {name} layer of the big image"))?;
        rename(&tmp, &tree)?;
    }
    layer_from_tree(&tree, &dir.join(format!("{name}.tar")))
}

/// Layer `index` of the 50-layer image: 40 files of 1–8 KiB under `/opt/layerNN/`.
fn small_layer(dir: &Path, index: usize) -> Result<Layer> {
    let tree = dir.join(format!("{index:02}"));
    if !tree.is_dir() {
        let tmp = dir.join(format!("{index:02}.tmp"));
        remove_if_present(&tmp)?;
        let files = tmp.join(format!("opt/layer{index:02}"));
        std::fs::create_dir_all(&files)?;
        for file in 0..40 {
            let size = 1024 * (1 + (index * 7 + file * 3) % 8);
            let mut text = String::with_capacity(size);
            let mut line = 0;
            while text.len() < size {
                let _ = writeln!(text, "layer {index} file {file} line {line}");
                line += 1;
            }
            std::fs::write(files.join(format!("f{file:02}.txt")), text)?;
        }
        std::fs::create_dir_all(tmp.join("etc"))?;
        std::fs::write(
            tmp.join(format!("etc/layer{index:02}.conf")),
            format!("layer={index}\n"),
        )?;
        rename(&tmp, &tree)?;
    }
    layer_from_tree(&tree, &dir.join(format!("{index:02}.tar")))
}

/// `tar` of `tree` (numeric owners, sorted), then gzip and zstd forms; each step cached.
fn layer_from_tree(tree: &Path, tar: &Path) -> Result<Layer> {
    if !tar.exists() {
        let tmp = with_suffix(tar, ".tmp");
        run(Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(tree)
            .arg("-cf")
            .arg(&tmp)
            .arg("."))?;
        rename(&tmp, tar)?;
    }
    let gzip = with_suffix(tar, ".gz");
    if !gzip.exists() {
        let tmp = with_suffix(&gzip, ".tmp");
        let out = std::fs::File::create(&tmp)?;
        run(Command::new("gzip")
            .args(["-6", "-n", "-c"])
            .arg(tar)
            .stdout(out))?;
        rename(&tmp, &gzip)?;
    }
    let zstd = with_suffix(tar, ".zst");
    if !zstd.exists() {
        let tmp = with_suffix(&zstd, ".tmp");
        run(Command::new("zstd")
            .args(["-q", "-3", "-f", "-o"])
            .arg(&tmp)
            .arg(tar))?;
        rename(&tmp, &zstd)?;
    }
    Ok(Layer {
        tar: tar.to_path_buf(),
        diff_id: digest_of(tar)?,
        gzip: blob(&gzip)?,
        zstd: blob(&zstd)?,
    })
}

fn blob(path: &Path) -> Result<Blob> {
    Ok(Blob {
        path: path.to_path_buf(),
        digest: digest_of(path)?,
        size: std::fs::metadata(path)?.len(),
    })
}

/// `sha256:…` of a file, cached in `FILE.sha256` (the files never change once renamed).
fn digest_of(path: &Path) -> Result<String> {
    let cache = with_suffix(path, ".sha256");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && text.starts_with("sha256:")
    {
        return Ok(text.trim().to_owned());
    }
    let digest = sha256_file(path)?;
    std::fs::write(&cache, &digest)?;
    Ok(digest)
}

/// `sha256:…` of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// `sha256:…` of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes the OCI layout with every image in both compressions.
fn write_layout(layout: &Path, images: &[Image]) -> Result<()> {
    let tmp = with_suffix(layout, ".tmp");
    remove_if_present(&tmp)?;
    let blobs = tmp.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put_file = |blob: &Blob| -> Result<()> {
        let target = blobs.join(blob.digest.trim_start_matches("sha256:"));
        if !target.exists() {
            std::fs::hard_link(&blob.path, &target)
                .or_else(|_| std::fs::copy(&blob.path, &target).map(|_| ()))
                .with_context(|| format!("cannot link {}", blob.path.display()))?;
        }
        Ok(())
    };
    let put_json = |text: &str| -> Result<(String, usize)> {
        let digest = sha256_bytes(text.as_bytes());
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), text)?;
        Ok((digest, text.len()))
    };
    let mut entries = Vec::new();
    for image in images {
        let diff_ids: Vec<String> = image
            .layers
            .iter()
            .map(|l| format!("\"{}\"", l.diff_id))
            .collect();
        let history: Vec<String> = (0..image.layers.len())
            .map(|i| {
                format!(
                    "{{\"created\":\"2026-01-01T00:00:00Z\",\"created_by\":\"bench {} layer {i}\"}}",
                    image.name
                )
            })
            .collect();
        let config = format!(
            "{{\"created\":\"2026-01-01T00:00:00Z\",\"architecture\":\"amd64\",\"os\":\"linux\",\
             \"config\":{{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\
             \"Cmd\":[\"/bin/bash\"]}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}},\
             \"history\":[{}]}}",
            diff_ids.join(","),
            history.join(",")
        );
        let (config_digest, config_size) = put_json(&config)?;
        for compression in Compression::ALL {
            let mut layers = Vec::new();
            for layer in &image.layers {
                let blob = layer.blob(compression);
                put_file(blob)?;
                layers.push(format!(
                    "{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}}",
                    compression.media_type(),
                    blob.digest,
                    blob.size
                ));
            }
            let manifest = format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
                 \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\
                 \"digest\":\"{config_digest}\",\"size\":{config_size}}},\"layers\":[{}]}}",
                layers.join(",")
            );
            let (digest, size) = put_json(&manifest)?;
            entries.push(format!(
                "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{digest}\",\
                 \"size\":{size},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{}\"}}}}",
                image.tag(compression)
            ));
        }
    }
    std::fs::write(
        tmp.join("index.json"),
        format!(
            "{{\"schemaVersion\":2,\"manifests\":[{}]}}",
            entries.join(",")
        ),
    )?;
    std::fs::write(tmp.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}")?;
    remove_if_present(layout)?;
    rename(&tmp, layout)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
}

/// Removes a file or tree if it exists (unmounting what is mounted inside it first).
pub fn remove_if_present(path: &Path) -> Result<()> {
    unmount_under(path);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove {}", path.display())),
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
        }
    }
}

/// Detaches every mount at or below `path`, deepest first (podman and stencil leave
/// overlay and bind mounts in their roots).
pub fn unmount_under(path: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = path.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        if let Ok(c) = std::ffi::CString::new(point) {
            // SAFETY: c is a valid NUL-terminated path; umount2 only reads it.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mounts a tmpfs at `dir` (creating it) unless one is there already.
pub fn mount_tmpfs(dir: &Path, size: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|p| Path::new(&unescape_mountinfo(p)) == dir);
    if mounted {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .context("cannot run mount")?;
    if !status.success() {
        bail!("mounting a tmpfs on {} failed (run as root)", dir.display());
    }
    Ok(())
}
