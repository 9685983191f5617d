//! The `stencil` command (being written).
fn main() {}
