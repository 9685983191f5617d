//! One module per verb group of the command line; each turns parsed arguments into output.
//!
//! Modules here render for people (text) and for programs (JSON); the parsing of the
//! arguments themselves lives in `main.rs`.

pub mod reference;
