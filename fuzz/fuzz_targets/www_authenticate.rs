//! Fuzz target: the client's `WWW-Authenticate` challenge parser. Never panics; a Bearer
//! challenge always carries a realm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stencil_registry::{Challenge, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(header) {
        assert!(
            header.to_ascii_lowercase().contains("realm"),
            "{header:?} gave {realm:?}"
        );
    }
});
