//! `stencil build`: Dockerfile builds with a layer cache.

pub mod cache;
pub mod copy;
pub mod ignore;
pub mod parse;
pub mod plan;
pub mod words;
