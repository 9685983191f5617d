//! End-to-end tests of `stencil ref` (being written).
