//! One module per verb group of the command line; each turns parsed arguments into output.
//!
//! Each module defines its clap arguments and a `run`-style function; `main.rs` only lists
//! the verbs and maps results to exit codes.

pub mod all_tags;
pub mod archive;
pub mod build;
pub mod containers;
pub mod cp;
pub mod fsck;
pub mod images;
pub mod import;
pub mod inspect;
pub mod label_filter;
pub mod login;
pub mod manifest;
pub mod mount;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod resources;
pub mod search;
pub mod system;
pub mod tag;
pub mod volumes;
