//! Fuzz target: image reference, tag and digest parsing. Whatever the input, parsing never
//! panics, and what parses prints back to a string that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stencil_reference::{Digest, Reference, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        let canonical = reference.canonical();
        let again = Reference::parse(&canonical)
            .unwrap_or_else(|e| panic!("canonical form {canonical:?} of {text:?} fails: {e}"));
        assert_eq!(again, reference, "canonical form {canonical:?} of {text:?}");
        let familiar = reference.familiar();
        let again = Reference::parse(&familiar)
            .unwrap_or_else(|e| panic!("familiar form {familiar:?} of {text:?} fails: {e}"));
        assert_eq!(again, reference, "familiar form {familiar:?} of {text:?}");
        let _ = (
            reference.namespace(),
            reference.registry_endpoint(),
            reference.name(),
        );
    }
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(Digest::parse(digest.as_str()).ok(), Some(digest));
    }
    let _ = Tag::parse(text);
});
