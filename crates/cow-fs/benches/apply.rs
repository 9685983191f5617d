//! Benchmark of [`stencil_cow_fs::apply_layer`] on a synthetic layer (placeholder body,
//! filled in below).
fn main() {}
