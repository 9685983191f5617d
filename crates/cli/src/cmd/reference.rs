//! `stencil ref`: parse and normalise image references, as `docker` would read them.
//!
//! Each input gives one line in order: its canonical form, or with `--json` an object with
//! the keys `input`, `name`, `domain`, `path`, `tag`, `digest`, `canonical`, `familiar`
//! and `namespace`. An invalid input gives `{"input": …, "error": …}` (or an error line on
//! standard error in text mode) and makes the command exit 1 after every input is printed.

use serde_json::{Value, json};
use stencil_reference::{Error, Reference};

/// One input of `stencil ref` and what became of it.
#[derive(Debug)]
pub struct Described {
    /// The text exactly as the user gave it.
    pub input: String,
    /// The parsed reference, or why it is not one.
    pub outcome: RefOutcome,
}

/// The result of parsing one input.
#[derive(Debug)]
pub enum RefOutcome {
    /// A valid, normalised reference.
    Parsed(Reference),
    /// The input is not a valid reference.
    Invalid(Error),
}

/// Parses one input of `stencil ref`.
pub fn describe(input: &str) -> Described {
    let outcome = match Reference::parse(input) {
        Ok(reference) => RefOutcome::Parsed(reference),
        Err(error) => RefOutcome::Invalid(error),
    };
    Described {
        input: input.to_owned(),
        outcome,
    }
}

impl Described {
    /// Whether the input parsed.
    pub fn is_valid(&self) -> bool {
        matches!(self.outcome, RefOutcome::Parsed(_))
    }

    /// The JSON object printed for this input by `stencil ref --json`.
    pub fn to_json(&self) -> Value {
        match &self.outcome {
            RefOutcome::Parsed(r) => json!({
                "input": self.input,
                "name": r.name(),
                "domain": r.domain(),
                "path": r.path(),
                "tag": r.tag().map(|t| t.as_str().to_owned()),
                "digest": r.digest().map(|d| d.to_string()),
                "canonical": r.canonical(),
                "familiar": r.familiar(),
                "namespace": r.namespace().as_str(),
            }),
            RefOutcome::Invalid(e) => json!({ "input": self.input, "error": e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Value) {
        assert_eq!(describe(input).to_json(), expected, "input {input:?}");
    }

    #[test]
    fn json_objects_have_exactly_the_documented_keys() {
        check(
            "ubuntu",
            json!({"input": "ubuntu", "name": "docker.io/library/ubuntu", "domain": "docker.io",
                   "path": "library/ubuntu", "tag": "latest", "digest": null,
                   "canonical": "docker.io/library/ubuntu:latest", "familiar": "ubuntu:latest",
                   "namespace": "official"}),
        );
        check(
            "jpetazzo/clock:v1",
            json!({"input": "jpetazzo/clock:v1", "name": "docker.io/jpetazzo/clock",
                   "domain": "docker.io", "path": "jpetazzo/clock", "tag": "v1", "digest": null,
                   "canonical": "docker.io/jpetazzo/clock:v1", "familiar": "jpetazzo/clock:v1",
                   "namespace": "user"}),
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let input = format!("localhost:5000/wordpress@{digest}");
        check(
            &input,
            json!({"input": input, "name": "localhost:5000/wordpress", "domain": "localhost:5000",
                   "path": "wordpress", "tag": null, "digest": digest,
                   "canonical": format!("localhost:5000/wordpress@{digest}"),
                   "familiar": format!("localhost:5000/wordpress@{digest}"),
                   "namespace": "self-hosted"}),
        );
    }

    #[test]
    fn invalid_inputs_become_error_objects() {
        let described = describe("Ubuntu");
        assert!(!described.is_valid());
        let value = described.to_json();
        assert_eq!(value["input"], "Ubuntu");
        let message = value["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("Ubuntu"),
            "error should name the input: {message}"
        );
        assert_eq!(value.as_object().map(|o| o.len()), Some(2), "{value}");
    }
}
