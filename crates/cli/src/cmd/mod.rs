//! One module per verb group of the command line; each turns parsed arguments into output.
//!
//! Each module defines its clap arguments and a `run`-style function; `main.rs` only lists
//! the verbs and maps results to exit codes.

pub mod images;
pub mod inspect;
pub mod pull;
pub mod reference;
pub mod tag;
