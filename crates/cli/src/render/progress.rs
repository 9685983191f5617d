//! Transfer progress as docker shows it: live bars on a terminal, plain lines otherwise.
//!
//! On a terminal each blob gets one line that changes in place (`Pulling fs layer`,
//! `Downloading [====>   ] 12.3MB/30.1MB`, `Extracting`, `Pull complete`). Elsewhere
//! (a pipe, a CI log) each step is one line, so logs stay readable. Nothing is drawn for
//! `-q`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stencil_reference::Digest;

use super::units::human_size;

/// Where and how progress is shown.
pub enum ProgressDisplay {
    /// Nothing (`-q`).
    Quiet,
    /// One line per step on standard output, or with `stderr` on standard error (the
    /// pull that `run` makes of a missing image, whose standard output is the
    /// container's).
    Lines {
        /// Lines go to standard error.
        stderr: bool,
    },
    /// Bars redrawn in place on the terminal.
    Bars(Bars),
}

/// The live bars of a terminal display.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

/// One step of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Waiting or starting, with a status text such as `Pulling fs layer`.
    Status(&'a str),
    /// Bytes moved: `done` of `total`, under a verb such as `Downloading`.
    Bytes {
        /// `Downloading` or `Pushing`.
        verb: &'a str,
        /// Bytes so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A final status such as `Pull complete`.
    Finished(&'a str),
}

impl ProgressDisplay {
    /// Bars when standard output is a terminal, lines otherwise, nothing when `quiet`.
    pub fn for_stdout(quiet: bool) -> ProgressDisplay {
        ProgressDisplay::new(quiet, false)
    }

    /// As [`ProgressDisplay::for_stdout`], on standard error.
    pub fn for_stderr(quiet: bool) -> ProgressDisplay {
        ProgressDisplay::new(quiet, true)
    }

    fn new(quiet: bool, stderr: bool) -> ProgressDisplay {
        let terminal = if stderr {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
        } else {
            std::io::IsTerminal::is_terminal(&std::io::stdout())
        };
        if quiet {
            ProgressDisplay::Quiet
        } else if terminal {
            let target = if stderr {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::stdout()
            };
            ProgressDisplay::Bars(Bars {
                multi: MultiProgress::with_draw_target(target),
                bars: Mutex::new(HashMap::new()),
            })
        } else {
            ProgressDisplay::Lines { stderr }
        }
    }

    /// Shows one step of the blob `digest`.
    pub fn step(&self, digest: &Digest, step: Step<'_>) {
        match self {
            ProgressDisplay::Quiet => {}
            ProgressDisplay::Lines { stderr } => {
                let text = match step {
                    // Byte counts would flood a log; the start and end lines say enough.
                    Step::Bytes { .. } => return,
                    Step::Status(text) | Step::Finished(text) => text,
                };
                let line = format!("{}: {text}\n", short(digest));
                write_out(*stderr, &line);
            }
            ProgressDisplay::Bars(bars) => bars.step(digest, step),
        }
    }

    /// Prints a line above the bars (or plainly), e.g. `Digest: …`.
    pub fn line(&self, text: &str) {
        match self {
            ProgressDisplay::Quiet => {}
            ProgressDisplay::Lines { stderr } => write_out(*stderr, &format!("{text}\n")),
            ProgressDisplay::Bars(bars) => {
                let _ = bars.multi.println(text);
            }
        }
    }
}

/// Writes `text` to standard error or output, ignoring a closed reader.
fn write_out(stderr: bool, text: &str) {
    let _ = if stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())
    };
}

impl Bars {
    fn step(&self, digest: &Digest, step: Step<'_>) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(digest.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(short(digest).to_owned());
            bar
        });
        match step {
            Step::Status(text) => bar.set_message(text.to_owned()),
            Step::Bytes { verb, done, total } => {
                bar.set_message(format!(
                    "{verb:<12}{} {}/{}",
                    gauge(done, total),
                    human_size(done),
                    human_size(total)
                ));
            }
            Step::Finished(text) => bar.finish_with_message(text.to_owned()),
        }
    }
}

/// docker's `[=====>     ]` gauge, 50 characters wide.
fn gauge(done: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(0);
    let mut text = String::with_capacity(WIDTH as usize + 2);
    text.push('[');
    for i in 0..WIDTH {
        text.push(if i + 1 < filled {
            '='
        } else if i + 1 == filled {
            '>'
        } else {
            ' '
        });
    }
    text.push(']');
    text
}

/// docker's short id: the first 12 hex digits.
pub fn short(digest: &Digest) -> &str {
    let hex = digest.hex();
    &hex[..12.min(hex.len())]
}

#[cfg(test)]
mod tests {
    use super::gauge;

    #[test]
    fn gauge_fills_in_proportion() {
        let table = [(0, 100, 0), (50, 100, 24), (100, 100, 49), (7, 0, 0)];
        for (done, total, equals) in table {
            let text = gauge(done, total);
            assert_eq!(text.len(), 52, "{text}");
            assert_eq!(text.matches('=').count(), equals, "{done}/{total}: {text}");
        }
        assert!(gauge(100, 100).ends_with(">]"));
    }
}
