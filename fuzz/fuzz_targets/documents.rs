//! Fuzz target: manifest, index and image config parsing, as the registry client and the
//! store read them (both parsers take the same bytes, with and without a declared media
//! type). Nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stencil_layerstore::image::{ImageConfig, parse_document};
use stencil_registry::Manifest;

const MEDIA_TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the declared media type, so the corpus explores each.
    let (declared, bytes) = match data.split_first() {
        Some((first, rest)) => (MEDIA_TYPES[usize::from(*first) % MEDIA_TYPES.len()], rest),
        None => (None, data),
    };
    if let Ok(manifest) = Manifest::parse(bytes, declared, "fuzz") {
        let _ = manifest.media_type();
    }
    let _ = parse_document(bytes, declared, None);
    let _ = ImageConfig::parse(bytes, None).map(|config| config.platform());
});
