//! Options every command shares: where the store lives and how much to log.
//!
//! The store root is chosen as design.md says: `--root DIR`, else `$STENCIL_ROOT`, else
//! `/var/lib/stencil` for root, else `$XDG_DATA_HOME/stencil` (falling back to
//! `~/.local/share/stencil`). The environment and the user id are passed in, never read
//! behind the caller's back, so the rule is testable.
//!
//! ```
//! use std::path::PathBuf;
//! use stencil::options::{resolve_root, Environment};
//!
//! let env = Environment { stencil_root: None, xdg_data_home: None,
//!                         home: Some("/home/ana".into()), is_root: false };
//! assert_eq!(resolve_root(None, &env), Some(PathBuf::from("/home/ana/.local/share/stencil")));
//! ```

use std::path::PathBuf;

/// The parts of the process environment that decide defaults.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$STENCIL_ROOT`, when set and not empty.
    pub stencil_root: Option<PathBuf>,
    /// `$XDG_DATA_HOME`, when set and not empty.
    pub xdg_data_home: Option<PathBuf>,
    /// `$HOME`, when set and not empty.
    pub home: Option<PathBuf>,
    /// Whether the effective user is root.
    pub is_root: bool,
}

impl Environment {
    /// Reads the real environment of this process.
    pub fn from_process() -> Environment {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            stencil_root: var("STENCIL_ROOT"),
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
            // SAFETY: geteuid has no preconditions and cannot fail.
            is_root: unsafe { libc::geteuid() } == 0,
        }
    }
}

/// Picks the store root; `None` only when no rule applies (no home directory at all).
pub fn resolve_root(flag: Option<PathBuf>, env: &Environment) -> Option<PathBuf> {
    if let Some(root) = flag.or_else(|| env.stencil_root.clone()) {
        return Some(root);
    }
    if env.is_root {
        return Some(PathBuf::from("/var/lib/stencil"));
    }
    env.xdg_data_home
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".local/share")))
        .map(|data| data.join("stencil"))
}

/// How much stencil logs on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings (the default).
    Warn,
    /// Progress of each operation.
    Info,
    /// Details useful when reporting a bug.
    Debug,
    /// Every request and syscall worth knowing.
    Trace,
}

impl LogLevel {
    /// The directive understood by `tracing_subscriber::EnvFilter`.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(flag: Option<&str>, env: Environment, expected: Option<&str>) {
        assert_eq!(
            resolve_root(flag.map(PathBuf::from), &env),
            expected.map(PathBuf::from)
        );
    }

    #[test]
    fn root_follows_flag_then_environment_then_user_defaults() {
        let user = Environment {
            home: Some("/home/ana".into()),
            ..Environment::default()
        };
        let root_user = Environment {
            is_root: true,
            ..user.clone()
        };
        let with_var = Environment {
            stencil_root: Some("/srv/st".into()),
            ..root_user.clone()
        };
        let with_xdg = Environment {
            xdg_data_home: Some("/data".into()),
            ..user.clone()
        };
        check(Some("/tmp/r"), with_var.clone(), Some("/tmp/r"));
        check(None, with_var, Some("/srv/st"));
        check(None, root_user, Some("/var/lib/stencil"));
        check(None, with_xdg, Some("/data/stencil"));
        check(None, user, Some("/home/ana/.local/share/stencil"));
        check(None, Environment::default(), None);
    }
}
