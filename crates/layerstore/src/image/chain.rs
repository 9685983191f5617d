//! Chain IDs: the identity of a stack of layers, as the OCI image-spec defines it.
//!
//! `ChainID(L0) = DiffID(L0)` and `ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " +
//! DiffID(Ln))`. A diff ID is the sha256 of a layer's *uncompressed* tar stream; computing
//! one needs the decompressed bytes, which is the snapshotter's business, so this module
//! only combines diff IDs.
//!
//! ```
//! use stencil_layerstore::image::{chain_id, chain_ids};
//! use stencil_layerstore::content::sha256_digest;
//!
//! let a = sha256_digest(b"layer a");
//! let b = sha256_digest(b"layer b");
//! let ids = chain_ids(&[a.clone(), b.clone()]);
//! assert_eq!(ids[0], a);
//! assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
//! assert_eq!(chain_id(Some(&ids[0]), &b), ids[1]);
//! ```

use stencil_reference::Digest;

use crate::content::sha256_digest;

/// The chain ID of `diff_id` stacked on the chain `parent` (`None` for the bottom layer).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// The chain ID of every prefix of `diff_ids`, bottom layer first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut ids: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = chain_id(ids.last(), diff_id);
        ids.push(next);
    }
    ids
}
