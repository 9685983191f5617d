//! The stencil engine and command implementations, behind the `stencil` binary.
//!
//! `main.rs` only parses arguments and hands them to the functions here, so every
//! command's behaviour can be tested without spawning a process. Later issues add the
//! `Engine` that composes the store, snapshotter and registry client (pull, run, commit,
//! build); today the library holds the global options and the `ref` command.
//!
//! This crate is the only place where the lower crates meet; it deliberately holds no
//! format, protocol or filesystem logic of its own that belongs in them.
//!
//! ```
//! use stencil::cmd::reference::{describe, RefOutcome};
//!
//! let described = describe("jpetazzo/clock");
//! match described.outcome {
//!     RefOutcome::Parsed(ref r) => assert_eq!(r.canonical(), "docker.io/jpetazzo/clock:latest"),
//!     RefOutcome::Invalid(ref e) => panic!("unexpected error: {e}"),
//! }
//! ```
#![deny(missing_docs)]

pub mod build;
pub mod cmd;
pub mod container;
pub mod engine;
pub mod options;
pub mod render;
