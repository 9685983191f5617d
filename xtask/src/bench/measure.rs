//! Timing child processes and running contenders alternately.
//!
//! Each timed run is one child process: wall time from before `spawn` to the return of
//! `wait4`, CPU time (user + system) and peak RSS from the rusage `wait4` reports for that
//! child (which includes its own waited-for descendants, so `sh -c` pipelines count whole).
//! Contenders of a case run in turn (A B C A B C …) so that the machine's drift over the
//! minutes of a case spreads over all of them alike.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One timed run of a child process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds from spawn to exit.
    pub wall: f64,
    /// User + system CPU seconds of the child and its waited-for descendants.
    pub cpu: f64,
    /// Peak resident set of the child or of its largest descendant, in KiB.
    pub rss_kib: u64,
}

/// Runs `command` to completion, stdout to /dev/null and stderr to `log`, and measures it.
/// A non-zero exit is an error quoting the end of the log.
pub fn time(command: &mut Command, log: &Path) -> Result<Sample> {
    let shown = render(command);
    let err = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    let start = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped (std never waits on it: the
        // `Child` is dropped without `wait`); both pointers are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).with_context(|| format!("wait4 for `{shown}`"));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    drop(child);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{shown}` failed (wait status {status:#x}); end of its stderr:\n{}",
            tail.join("\n")
        );
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Sample {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// What a contender is, for the ratio column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The stencil command being measured (the numerator of every ratio).
    Stencil,
    /// A tool people would otherwise use.
    Peer,
    /// A physical floor: the least work any tool must do on the same bytes.
    Floor,
}

/// A set-up step run before each timed run of a contender (not timed).
pub type Prepare<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// One command measured in a case.
pub struct Contender<'a> {
    /// Short name in the table ("stencil", "podman", "gzip -dc").
    pub label: String,
    /// Its role.
    pub role: Role,
    /// Builds the command for one run.
    pub command: Box<dyn Fn() -> Command + 'a>,
    /// Runs before each timed run: clears the previous run's output.
    pub prepare: Prepare<'a>,
}

impl<'a> Contender<'a> {
    /// A contender whose runs need no preparation.
    pub fn new(label: &str, role: Role, command: impl Fn() -> Command + 'a) -> Contender<'a> {
        Contender {
            label: label.to_owned(),
            role,
            command: Box::new(command),
            prepare: Box::new(|| Ok(())),
        }
    }

    /// Adds a preparation step run before each timed run.
    pub fn prepare(mut self, prepare: impl FnMut() -> Result<()> + 'a) -> Contender<'a> {
        self.prepare = Box::new(prepare);
        self
    }
}

/// The measured runs of one contender.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its label.
    pub label: String,
    /// Its role.
    pub role: Role,
    /// The command line of its last run, as shown in the report.
    pub command: String,
    /// Every run, in order.
    pub samples: Vec<Sample>,
}

impl Row {
    /// Median wall seconds.
    pub fn wall(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall))
    }

    /// Median CPU seconds.
    pub fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu))
    }

    /// Median peak RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        median(self.samples.iter().map(|s| s.rss_kib as f64 / 1024.0))
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Runs every contender `runs` times, in turn, and returns their rows in the same order.
/// `log` receives each run's stderr (kept for the failure message).
pub fn alternate(contenders: &mut [Contender<'_>], runs: usize, log: &Path) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = contenders
        .iter()
        .map(|c| Row {
            label: c.label.clone(),
            role: c.role,
            command: String::new(),
            samples: Vec::new(),
        })
        .collect();
    for run in 0..runs {
        for (contender, row) in contenders.iter_mut().zip(rows.iter_mut()) {
            (contender.prepare)()
                .with_context(|| format!("preparing {} (run {})", contender.label, run + 1))?;
            let mut command = (contender.command)();
            row.command = render(&command);
            let sample = time(&mut command, log)
                .with_context(|| format!("{} (run {})", contender.label, run + 1))?;
            eprintln!(
                "    {:<22} run {}: {:>8.3} s wall {:>8.3} s cpu {:>7.1} MiB",
                contender.label,
                run + 1,
                sample.wall,
                sample.cpu,
                sample.rss_kib as f64 / 1024.0
            );
            row.samples.push(sample);
        }
    }
    Ok(rows)
}

/// A command line as a shell would take it (quoting only where needed); past 12
/// arguments the rest is summed up (the 50-layer cases list every layer file).
pub fn render(command: &Command) -> String {
    let mut words = vec![quote(&command.get_program().to_string_lossy())];
    let args: Vec<String> = command
        .get_args()
        .map(|a| quote(&a.to_string_lossy()))
        .collect();
    if args.len() > 12 {
        words.extend(args[..10].iter().cloned());
        words.push(format!(
            "… ({} more, the last {})",
            args.len() - 11,
            args[args.len() - 1]
        ));
    } else {
        words.extend(args);
    }
    words.join(" ")
}

fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `sh -c SCRIPT sh ARGS…`: for floors that loop over several layer files.
pub fn sh(script: &str, args: &[PathBuf]) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg("sh").args(args);
    command
}
