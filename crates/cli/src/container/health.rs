//! Health checks (docker's `HEALTHCHECK` and `--health-*`): while a container runs, the
//! process that waits for it (its monitor, or the CLI of a foreground `run`) probes it on a
//! thread of its own, by running the check's command inside it as `exec` does.
//!
//! The health is `starting` from each start until a probe succeeds (`healthy`) or
//! `retries` probes in a row fail outside the start period (`unhealthy`); a success makes
//! it healthy again. A probe fails on a non-zero exit, on a command that cannot run, or
//! when it takes longer than the timeout (it is killed). The last five probes are kept
//! with their first 4 KiB of output, as docker's `State.Health.Log`. A paused container
//! is not probed.
//!
//! The health lives in `ROOT/containers/ID/health.json`, written whole (a new file renamed
//! over the old) by that thread alone, so it never races the state the monitor writes;
//! `inspect` and `ps` read it. It stays after the container stops, with the last result.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::runtime::{self, ProcessSpec, Stdio};
use crate::engine::{Container, Engine, now, write_json};

/// The file in the container's directory holding its health.
const HEALTH_FILE: &str = "health.json";

/// How much of a probe's output is kept (docker's).
const MAX_OUTPUT: usize = 4096;

/// How many probes are kept (docker's).
const KEPT_PROBES: usize = 5;

/// A container's health (docker's `State.Health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failed probes in a row.
    pub failing_streak: u32,
    /// The last probes, oldest first.
    pub log: Vec<Probe>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// When it began (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code; -1 when it timed out.
    pub exit_code: i32,
    /// Its standard output and error, at most 4 KiB.
    pub output: String,
}

impl Health {
    /// Records `probe`: success makes the container healthy; a failure counts towards
    /// `retries` unless it falls in the start period (`counts` false) while it is still
    /// starting.
    fn record(&mut self, probe: Probe, retries: u32, counts: bool) {
        if probe.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if counts || self.status != "starting" {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        if self.log.len() > KEPT_PROBES {
            self.log.remove(0);
        }
    }

    /// What `ps` shows after `Up …`: `health: starting`, `healthy` or `unhealthy`.
    pub fn shown(&self) -> String {
        if self.status == "starting" {
            "health: starting".to_owned()
        } else {
            self.status.clone()
        }
    }
}

fn health_path(engine: &Engine, id: &str) -> PathBuf {
    engine.container_dir(id).join(HEALTH_FILE)
}

/// The recorded health of `container`: `None` when it has no health check or has never
/// run with one.
pub fn read(engine: &Engine, container: &Container) -> Option<Health> {
    container.config.healthcheck.as_ref()?;
    let text = std::fs::read(health_path(engine, &container.record.id)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write(path: &Path, health: &Health) {
    if let Err(error) = write_json(path, health) {
        tracing::warn!("cannot record the health: {error:#}");
    }
}

/// The probing thread of one run of a container; stopping it (or dropping it) ends the
/// probes and waits for the thread.
pub struct Checker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checker {
    /// Starts probing `container`, whose first process is host process `pid`, when it has
    /// a health check; its health is `starting` from now.
    pub fn start(engine: &Engine, container: &Container, pid: Option<i32>) -> Option<Checker> {
        let check = container.config.healthcheck.clone()?;
        let pid = pid?;
        let path = health_path(engine, &container.record.id);
        let mut health = Health {
            status: "starting".into(),
            ..Health::default()
        };
        write(&path, &health);
        let process = ProcessSpec {
            args: check.argv(),
            env: container.config.env.clone(),
            cwd: container.config.working_dir.clone(),
            user: container.config.user.clone(),
            tty: false,
            interactive: false,
            capabilities: super::monitor::capabilities_of(container),
            groups: container.config.group_add.clone(),
            rlimits: container.config.rlimits(),
        };
        let id = container.record.id.clone();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                let began = Instant::now();
                loop {
                    let starting = began.elapsed() < check.start_period();
                    let pause = if starting {
                        check.start_interval()
                    } else {
                        check.interval()
                    };
                    if wait_or_stop(&stopped, pause) {
                        return;
                    }
                    // A paused container is not probed: the probe would freeze with it.
                    if Cgroup::open(&id).is_ok_and(|cgroup| cgroup.is_frozen()) {
                        continue;
                    }
                    let counts = began.elapsed() >= check.start_period();
                    let probe = probe(pid, &process, check.timeout());
                    if *stopped.0.lock().unwrap_or_else(|e| e.into_inner()) {
                        // The container ended during the probe: its result says nothing.
                        return;
                    }
                    health.record(probe, check.retries(), counts);
                    write(&path, &health);
                }
            })
            .ok()?;
        Some(Checker {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the probes (the container stopped).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Sleeps `pause` unless told to stop first; returns whether to stop.
fn wait_or_stop(stop: &(Mutex<bool>, Condvar), pause: Duration) -> bool {
    let (flag, wake) = stop;
    let deadline = Instant::now() + pause;
    let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    while !*stopped {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stopped = wake
            .wait_timeout(stopped, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Runs the check's command in the container of process `pid`, killing it after
/// `timeout`.
fn probe(pid: i32, process: &ProcessSpec, timeout: Duration) -> Probe {
    let start = now();
    let finish = |exit_code: i32, output: String| Probe {
        start: start.clone(),
        end: now(),
        exit_code,
        output,
    };
    let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    let Ok((read, write)) = pipe else {
        return finish(
            -1,
            "cannot create a pipe for the health check's output".into(),
        );
    };
    let Ok(write_too) = write.try_clone() else {
        return finish(-1, "cannot duplicate the health check's output pipe".into());
    };
    let stdio = Stdio::Files {
        stdin: None,
        stdout: write,
        stderr: write_too,
    };
    let started = match runtime::start_exec(pid, process, stdio) {
        Ok(started) => started,
        Err(error) => return finish(error.exit_code(), format!("{error}\n")),
    };
    let probe_pid = started.pid();
    let (read_done, output_read) = std::sync::mpsc::channel();
    let output = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&output);
    std::thread::spawn(move || {
        read_capped(read, &kept);
        let _ = read_done.send(());
    });
    let (sender, receiver) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = sender.send(started.wait());
    });
    let (code, timed_out) = match receiver.recv_timeout(timeout) {
        Ok(code) => (code.unwrap_or(-1), false),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the process is our child,
            // not yet reaped (the waiter has not returned), so the pid is still its own.
            unsafe {
                libc::kill(probe_pid, libc::SIGKILL);
            }
            let _ = receiver.recv();
            (-1, true)
        }
    };
    let _ = waiter.join();
    // The output ends with the probe, unless something it started in the background
    // holds the pipe: then what came so far.
    let _ = output_read.recv_timeout(Duration::from_millis(200));
    let mut output =
        String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    if timed_out {
        output = format!(
            "Health check exceeded timeout ({})",
            crate::render::units::go_duration(timeout)
        );
    }
    finish(code, output)
}

/// Reads `fd` to its end, keeping the first [`MAX_OUTPUT`] bytes in `kept`.
fn read_capped(fd: OwnedFd, kept: &Mutex<Vec<u8>>) {
    let mut file = std::fs::File::from(fd);
    let mut buffer = [0u8; 8192];
    loop {
        match file.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            exit_code: code,
            ..Probe::default()
        }
    }

    #[test]
    fn health_follows_dockers_rules() {
        let mut health = Health {
            status: "starting".into(),
            ..Health::default()
        };
        // Failures in the start period do not count while it is starting.
        health.record(probe(1), 2, false);
        assert_eq!(
            (health.status.as_str(), health.failing_streak),
            ("starting", 0)
        );
        health.record(probe(0), 2, false);
        assert_eq!(
            (health.status.as_str(), health.failing_streak),
            ("healthy", 0)
        );
        // Once it is healthy they count, start period or not.
        health.record(probe(1), 2, false);
        assert_eq!(
            (health.status.as_str(), health.failing_streak),
            ("healthy", 1)
        );
        health.record(probe(1), 2, true);
        assert_eq!(
            (health.status.as_str(), health.failing_streak),
            ("unhealthy", 2)
        );
        health.record(probe(0), 2, true);
        assert_eq!(health.status, "healthy");
        assert_eq!(health.shown(), "healthy");
        for _ in 0..10 {
            health.record(probe(3), 2, true);
        }
        assert_eq!(health.log.len(), KEPT_PROBES);
        assert_eq!(health.failing_streak, 10);
        assert_eq!(health.shown(), "unhealthy");
    }
}
