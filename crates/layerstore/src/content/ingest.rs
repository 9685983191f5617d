//! Ingests: resumable, exclusive, verified writes that become blobs on commit.
//!
//! Each ingest ref gets a directory `ingest/ID/` where `ID` is the sha256 hex of the ref,
//! holding `ref` (the ref itself, for listings), `data` (the bytes so far), `expected`
//! (digest and size, when the writer set them) and `lock`. A
//! writer holds an exclusive, non-blocking `flock(2)` on `lock` for its whole life: flock
//! locks belong to an open file description, so a second writer in another thread or in
//! another process fails with [`crate::ErrorKind::InUse`] instead of interleaving bytes.
//! The lock vanishes with the process, so a killed writer never leaves a stale lock.
//!
//! Reopening a ref re-hashes the bytes already in `data` (they are not trusted) and
//! continues after them. Dropping a writer keeps its bytes for a later resume; only
//! [`ContentWriter::commit`] and [`ContentWriter::abort`] remove the directory.
//!
//! What this module does not do: decide what a blob is for, or wait for a busy ref.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use stencil_reference::{Algorithm, Digest};

use super::digester::{Digester, STREAM_BUFFER, digest_reader};
use super::local::{LocalContent, sync_dir};
use super::{ContentWriter, Provider};
use crate::error::{Error, Result};

/// The longest accepted ingest ref, in bytes.
const MAX_REF_LEN: usize = 1024;

/// One ingest directory as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The ingest ref, when its `ref` file is readable.
    pub ingest_ref: Option<String>,
    /// The ingest directory.
    pub dir: PathBuf,
    /// Bytes written so far, when a `data` file exists.
    pub offset: Option<u64>,
    /// Whether a writer holds it right now.
    pub in_use: bool,
    /// When `data` was last written.
    pub updated_at: Option<SystemTime>,
    /// The digest and size the writer said to expect ([`LocalWriter::set_expected`]).
    pub expected: Option<(Digest, u64)>,
}

impl IngestStatus {
    /// An ingest left behind by an interrupted commit or abort: no ref or no data, and no
    /// writer. Safe to remove.
    pub fn is_leftover(&self) -> bool {
        !self.in_use && (self.ingest_ref.is_none() || self.offset.is_none())
    }
}

/// A writer into one ingest of a [`LocalContent`]; see the module documentation.
#[derive(Debug)]
pub struct LocalWriter {
    content: LocalContent,
    ingest_ref: String,
    dir: PathBuf,
    data_path: PathBuf,
    data: BufWriter<File>,
    digester: DebugDigester,
    offset: u64,
    /// Held until the writer is committed, aborted or dropped.
    _lock: Flock<File>,
}

/// [`Digester`] wrapper so that [`LocalWriter`] can derive `Debug`.
struct DebugDigester(Digester);

impl std::fmt::Debug for DebugDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester")
    }
}

fn ingest_dir(content: &LocalContent, ingest_ref: &str) -> PathBuf {
    content
        .ingest_root()
        .join(super::sha256_digest(ingest_ref.as_bytes()).hex())
}

fn check_ref(ingest_ref: &str) -> Result<()> {
    if ingest_ref.is_empty() || ingest_ref.len() > MAX_REF_LEN || ingest_ref.contains('\0') {
        return Err(Error::InvalidIngestRef {
            ingest_ref: ingest_ref.to_owned(),
        });
    }
    Ok(())
}

/// Takes the exclusive lock of the ingest directory `dir`, creating it when needed.
///
/// A commit or abort removes the directory while holding the lock, so a second writer that
/// opened the old `lock` file may win the lock on an unlinked file; it notices because the
/// path no longer names the file it locked, and starts over.
fn lock_ingest(dir: &Path, ingest_ref: &str) -> Result<Flock<File>> {
    let lock_path = dir.join("lock");
    for _ in 0..16 {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
        {
            Ok(file) => file,
            // The directory was removed between create_dir_all and open: try again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(&lock_path)(error)),
        };
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::InUse {
                    ingest_ref: ingest_ref.to_owned(),
                });
            }
            Err((_, errno)) => return Err(Error::io(&lock_path)(io::Error::from(errno))),
        };
        let held = lock.metadata().map_err(Error::io(&lock_path))?;
        match fs::metadata(&lock_path) {
            Ok(current) if current.ino() == held.ino() && current.dev() == held.dev() => {
                return Ok(lock);
            }
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(&lock_path)(error)),
        }
    }
    Err(Error::InUse {
        ingest_ref: ingest_ref.to_owned(),
    })
}

impl LocalWriter {
    pub(super) fn open(content: LocalContent, ingest_ref: &str) -> Result<LocalWriter> {
        check_ref(ingest_ref)?;
        let dir = ingest_dir(&content, ingest_ref);
        let lock = lock_ingest(&dir, ingest_ref)?;
        let ref_path = dir.join("ref");
        match fs::read(&ref_path) {
            Ok(existing) if existing == ingest_ref.as_bytes() => {}
            Ok(_) | Err(_) => fs::write(&ref_path, ingest_ref).map_err(Error::io(&ref_path))?,
        }
        let data_path = dir.join("data");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(Error::io(&data_path))?;
        let (digester, offset) = rehash_prefix(&mut file, u64::MAX, &data_path)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(Error::io(&data_path))?;
        Ok(LocalWriter {
            content,
            ingest_ref: ingest_ref.to_owned(),
            dir,
            data_path,
            data: BufWriter::with_capacity(STREAM_BUFFER, file),
            digester: DebugDigester(digester),
            offset,
            _lock: lock,
        })
    }

    /// The ingest ref this writer holds.
    pub fn ingest_ref(&self) -> &str {
        &self.ingest_ref
    }

    /// Records what the finished blob is expected to be, in the ingest directory's
    /// `expected` file, so that listings ([`IngestStatus::expected`]) can tell what a
    /// partial ingest is for. [`ContentWriter::commit`] still takes (and checks) its own
    /// arguments.
    pub fn set_expected(&mut self, digest: &Digest, size: u64) -> Result<()> {
        let path = self.dir.join("expected");
        fs::write(&path, format!("{digest} {size}\n")).map_err(Error::io(&path))
    }

    /// Flushes buffered bytes and fsyncs the data file.
    fn sync(&mut self) -> Result<()> {
        self.data.flush().map_err(Error::io(&self.data_path))?;
        self.data
            .get_ref()
            .sync_all()
            .map_err(Error::io(&self.data_path))
    }

    fn remove_dir(&self) -> Result<()> {
        remove_ingest_dir(&self.dir)
    }
}

/// Reads `file` from the start, up to `limit` bytes, through a fresh sha256 hash.
fn rehash_prefix(file: &mut File, limit: u64, path: &Path) -> Result<(Digester, u64)> {
    file.seek(SeekFrom::Start(0)).map_err(Error::io(path))?;
    let mut digester = Digester::new(Algorithm::Sha256)
        .ok_or_else(|| Error::io(path)(io::Error::other("sha256 unavailable")))?;
    let mut buffer = vec![0u8; STREAM_BUFFER];
    let mut offset = 0u64;
    let mut limited = Read::by_ref(file).take(limit);
    loop {
        let read = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Error::io(path)(error)),
        };
        digester.update(&buffer[..read]);
        offset += read as u64;
    }
    Ok((digester, offset))
}

/// Removes an ingest directory's known files, then the directory itself.
fn remove_ingest_dir(dir: &Path) -> Result<()> {
    // `lock` goes last so that a concurrent opener notices the directory is gone.
    for name in ["data", "ref", "expected", "lock"] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io(&path)(error)),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        // Unknown files inside: remove them too, the directory is ours.
        Err(_) => match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io(dir)(error)),
        },
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.data.write(buf).map_err(|e| self.name_path(e))?;
        self.digester.0.update(&buf[..written]);
        self.offset += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.data.flush().map_err(|e| self.name_path(e))
    }
}

impl LocalWriter {
    /// `error` with the ingest file's path in its message ("…/data: No space left on
    /// device"), keeping its kind so that callers can still tell a full disk.
    fn name_path(&self, error: io::Error) -> io::Error {
        io::Error::new(
            error.kind(),
            format!("{}: {error}", self.data_path.display()),
        )
    }
}

impl ContentWriter for LocalWriter {
    fn offset(&self) -> u64 {
        self.offset
    }

    fn digest(&self) -> Digest {
        self.digester.0.current()
    }

    fn truncate(&mut self, size: u64) -> Result<()> {
        self.data.flush().map_err(Error::io(&self.data_path))?;
        if size > self.offset {
            return Err(Error::io(&self.data_path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot truncate to {size} bytes, only {} written",
                    self.offset
                ),
            )));
        }
        let file = self.data.get_mut();
        file.set_len(size).map_err(Error::io(&self.data_path))?;
        let (digester, offset) = rehash_prefix(file, size, &self.data_path)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(Error::io(&self.data_path))?;
        self.digester = DebugDigester(digester);
        self.offset = offset;
        Ok(())
    }

    fn commit(mut self, size: u64, expected: &Digest) -> Result<()> {
        self.sync()?;
        if self.offset != size {
            // A short ingest is kept so that the download can resume; a long one is wrong.
            if self.offset > size {
                self.remove_dir()?;
            }
            return Err(Error::SizeMismatch {
                expected: expected.clone(),
                expected_size: size,
                actual_size: self.offset,
            });
        }
        let actual = match expected.algorithm() {
            Algorithm::Sha256 => self.digester.0.current(),
            Algorithm::Sha512 => {
                // Writers hash sha256 as bytes pass; a sha512 digest is rare enough to pay a
                // second read of the file.
                let mut file = File::open(&self.data_path).map_err(Error::io(&self.data_path))?;
                match digest_reader(Algorithm::Sha512, &mut file)
                    .map_err(Error::io(&self.data_path))?
                {
                    Some((digest, _)) => digest,
                    None => {
                        return Err(Error::UnsupportedAlgorithm {
                            digest: expected.clone(),
                        });
                    }
                }
            }
            _ => {
                return Err(Error::UnsupportedAlgorithm {
                    digest: expected.clone(),
                });
            }
        };
        if &actual != expected {
            self.remove_dir()?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
                expected_size: size,
                actual_size: self.offset,
            });
        }
        let target = self.content.blob_path(expected);
        let target_dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.content.root().to_path_buf());
        if !self.content.contains(expected)? {
            fs::create_dir_all(&target_dir).map_err(Error::io(&target_dir))?;
            self.data
                .get_ref()
                .set_permissions(fs::Permissions::from_mode(0o444))
                .map_err(Error::io(&self.data_path))?;
            fs::rename(&self.data_path, &target).map_err(Error::io(&target))?;
            sync_dir(&target_dir)?;
        }
        self.remove_dir()
    }

    fn abort(self) -> Result<()> {
        self.remove_dir()
    }
}

/// Removes the ingest `ingest_ref` unless a writer holds it.
pub(super) fn abort_ref(content: &LocalContent, ingest_ref: &str) -> Result<()> {
    check_ref(ingest_ref)?;
    let dir = ingest_dir(content, ingest_ref);
    if !dir.exists() {
        return Ok(());
    }
    let _lock = lock_ingest(&dir, ingest_ref)?;
    remove_ingest_dir(&dir)
}

/// Removes the ingest directory `dir` unless a writer holds it (for fsck repair and
/// recovery on open). Returns whether it was removed.
pub(crate) fn remove_unheld(dir: &Path) -> Result<bool> {
    let lock_path = dir.join("lock");
    if lock_path.exists() {
        let file = File::open(&lock_path).map_err(Error::io(&lock_path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                remove_ingest_dir(dir)?;
                drop(lock);
                Ok(true)
            }
            Err((_, Errno::EWOULDBLOCK)) => Ok(false),
            Err((_, errno)) => Err(Error::io(&lock_path)(io::Error::from(errno))),
        }
    } else {
        remove_ingest_dir(dir)?;
        Ok(true)
    }
}

/// Lists the ingest directories.
pub(super) fn list(content: &LocalContent) -> Result<Vec<IngestStatus>> {
    let root = content.ingest_root();
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(&root)(error)),
    };
    let mut statuses = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(&root))?;
        let dir = entry.path();
        let ingest_ref = fs::read_to_string(dir.join("ref")).ok();
        let data = fs::metadata(dir.join("data")).ok();
        let in_use = match File::open(dir.join("lock")) {
            Ok(file) => matches!(
                Flock::lock(file, FlockArg::LockSharedNonblock),
                Err((_, Errno::EWOULDBLOCK))
            ),
            Err(_) => false,
        };
        let expected = fs::read_to_string(dir.join("expected"))
            .ok()
            .and_then(|text| {
                let (digest, size) = text.trim().split_once(' ')?;
                Some((Digest::parse(digest).ok()?, size.parse().ok()?))
            });
        statuses.push(IngestStatus {
            expected,
            ingest_ref,
            offset: data.as_ref().map(|metadata| metadata.len()),
            updated_at: data.and_then(|metadata| metadata.modified().ok()),
            in_use,
            dir,
        });
    }
    statuses.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(statuses)
}
