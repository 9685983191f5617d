//! Property tests: generated references normalise as a model predicts, and the canonical and
//! familiar forms parse back to the same [`Reference`]; arbitrary strings never panic the
//! parser and never yield a digest that is unsafe as a path component.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use stencil_reference::{Digest, Reference, Tag};

/// One path component: lowercase alphanumerics joined by every kind of separator.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,3}"
}

/// A path component that cannot be mistaken for a domain when it comes first.
fn first_component_without_domain() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,4}(([_]|__|-{1,3})[a-z0-9]{1,4}){0,3}"
        .prop_filter("not localhost", |c| c != "localhost")
}

/// A domain as written by a user, or none.
fn domain() -> impl Strategy<Value = Option<String>> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?";
    let port = proptest::option::of("[0-9]{1,5}");
    let with_port = |host: BoxedStrategy<String>| {
        (host, port.clone()).prop_map(|(host, port)| match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    };
    prop_oneof![
        Just(None),
        with_port(
            proptest::collection::vec(label, 2..4)
                .prop_map(|labels| labels.join("."))
                .boxed()
        )
        .prop_map(Some),
        "[a-z0-9]{1,6}:[0-9]{1,5}".prop_map(Some),
        with_port(Just("localhost".to_owned()).boxed()).prop_map(Some),
        with_port("\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}\\]".boxed()).prop_map(Some),
        with_port("[A-Z][a-zA-Z0-9]{0,5}".boxed()).prop_map(Some),
        Just(Some("docker.io".to_owned())),
        Just(Some("index.docker.io".to_owned())),
    ]
}

/// The parts of a generated reference, kept so that a model can predict its normal form.
#[derive(Debug, Clone)]
struct Parts {
    domain: Option<String>,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<String>,
}

impl Parts {
    fn input(&self) -> String {
        let mut s = String::new();
        if let Some(domain) = &self.domain {
            s.push_str(domain);
            s.push('/');
        }
        s.push_str(&self.path.join("/"));
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }

    /// The canonical form, computed from the normalisation rules rather than the parser.
    fn expected_canonical(&self) -> String {
        let domain = match self.domain.as_deref() {
            None | Some("index.docker.io") => "docker.io",
            Some(domain) => domain,
        };
        let mut path = self.path.join("/");
        if domain == "docker.io" && self.path.len() == 1 {
            path.insert_str(0, "library/");
        }
        let mut s = format!("{domain}/{path}");
        match (&self.tag, &self.digest) {
            (None, None) => s.push_str(":latest"),
            (Some(tag), _) => {
                s.push(':');
                s.push_str(tag);
            }
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::array::uniform32(any::<u8>())
            .prop_map(|b| Digest::from_sha256_bytes(&b).to_string()),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}")),
        "[0-9a-f]{96}".prop_map(|hex| format!("sha384:{hex}")),
        "[0-9a-f]{64}".prop_map(|hex| format!("blake3:{hex}")),
    ]
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        domain(),
        prop_oneof![4 => component(), 1 => Just("localhost".to_owned())],
        first_component_without_domain(),
        proptest::collection::vec(component(), 0..4),
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        proptest::option::of(digest()),
    )
        .prop_map(
            |(domain, first_after_domain, first_alone, rest, tag, digest)| {
                // Without a domain, the first component must not look like one; after a domain it
                // may, which exercises the familiar form keeping `docker.io/`.
                let first = if domain.is_some() {
                    first_after_domain
                } else {
                    first_alone
                };
                let mut path = vec![first];
                path.extend(rest);
                Parts {
                    domain,
                    path,
                    tag,
                    digest,
                }
            },
        )
}

/// Checks the round-trip laws for one successfully parsed reference.
fn check_round_trips(reference: &Reference) -> Result<(), TestCaseError> {
    let canonical = reference.canonical();
    prop_assert_eq!(&canonical, &reference.to_string());
    let reparsed = Reference::parse(&canonical).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&reparsed, reference);
    prop_assert_eq!(reparsed.canonical(), canonical);

    let familiar = reference.familiar();
    let from_familiar =
        Reference::parse(&familiar).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&from_familiar, reference, "familiar form {:?}", familiar);
    prop_assert_eq!(from_familiar.familiar(), familiar);

    prop_assert_eq!(
        reference.name(),
        format!("{}/{}", reference.domain(), reference.path())
    );
    prop_assert!(reference.name().len() <= 255);
    prop_assert!(reference.tag().is_some() || reference.digest().is_some());
    if let Some(digest) = reference.digest() {
        check_digest_is_path_safe(digest)?;
    }
    Ok(())
}

fn check_digest_is_path_safe(digest: &Digest) -> Result<(), TestCaseError> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    prop_assert!(safe(digest.algorithm().as_str()), "algorithm of {}", digest);
    prop_assert!(safe(digest.hex()), "hex of {}", digest);
    prop_assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_references_normalise_as_the_model_predicts(parts in parts()) {
        let input = parts.input();
        let reference = Reference::parse(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reference.canonical(), parts.expected_canonical());
        check_round_trips(&reference)?;
    }

    #[test]
    fn strings_over_the_grammar_alphabet_never_panic_and_round_trip_when_valid(
        input in "[a-zA-Z0-9./:_@\\[\\]-]{0,40}"
    ) {
        match Reference::parse(&input) {
            Ok(reference) => check_round_trips(&reference)?,
            Err(err) => {
                prop_assert_eq!(err.input(), input.as_str());
                prop_assert!(err.to_string().starts_with("invalid reference"), "{}", err);
            }
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_and_errors_quote_the_input(input in any::<String>()) {
        match Reference::parse(&input) {
            Ok(reference) => check_round_trips(&reference)?,
            Err(err) => {
                prop_assert_eq!(err.input(), input.as_str());
                prop_assert!(err.to_string().contains(&format!("{input:?}")), "{}", err);
            }
        }
        if let Ok(digest) = Digest::parse(&input) {
            check_digest_is_path_safe(&digest)?;
        }
    }

    #[test]
    fn digest_strings_round_trip_and_stay_path_safe(
        input in "(sha256|sha384|sha512|blake3|md5|[a-z]{1,3})[:]([0-9a-fA-F./]{0,130})"
    ) {
        if let Ok(digest) = Digest::parse(&input) {
            check_digest_is_path_safe(&digest)?;
            prop_assert_eq!(digest.to_string(), input.clone());
            prop_assert_eq!(Digest::parse(digest.as_str()).ok(), Some(digest));
        }
    }

    #[test]
    fn computed_hashes_become_valid_digests(bytes in proptest::array::uniform32(any::<u8>())) {
        let digest = Digest::from_sha256_bytes(&bytes);
        prop_assert_eq!(Digest::parse(digest.as_str()).ok(), Some(digest.clone()));
        check_digest_is_path_safe(&digest)?;
    }

    #[test]
    fn tags_from_the_grammar_parse_and_others_do_not(
        tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        bad in "[.-][A-Za-z0-9_.-]{0,10}|[A-Za-z0-9_]{1,5}[^A-Za-z0-9_.-][A-Za-z0-9_.-]{0,5}",
    ) {
        prop_assert_eq!(Tag::parse(&tag).map(|t| t.to_string()).ok(), Some(tag.clone()));
        prop_assert!(Tag::parse(&bad).is_err());
        let reference = Reference::parse(&format!("x:{tag}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reference.tag().map(Tag::as_str), Some(tag.as_str()));
    }
}
