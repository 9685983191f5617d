//! Image references and digests (being written).
#![deny(missing_docs)]
