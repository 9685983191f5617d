//! `--filter label=KEY` and `--filter label=KEY=VALUE`: match images by the labels of
//! their config (`config.Labels`), as docker's image filters do.
//!
//! ```
//! use stencil::cmd::label_filter::LabelFilter;
//!
//! let labels = serde_json::json!({"org.example.tier": "web"});
//! assert!(LabelFilter::parse("org.example.tier").matches(&labels));
//! assert!(LabelFilter::parse("org.example.tier=web").matches(&labels));
//! assert!(!LabelFilter::parse("org.example.tier=db").matches(&labels));
//! ```

use anyhow::{Context, Result};
use serde_json::Value;
use stencil_reference::Digest;

use crate::engine::Engine;

/// Configs larger than this are refused (they are a few kilobytes in practice).
const CONFIG_LIMIT: u64 = 8 << 20;

/// One `label=` filter: a key that must be present, with a value when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    /// The label key.
    pub key: String,
    /// The value it must have, when given.
    pub value: Option<String>,
}

impl LabelFilter {
    /// Parses what follows `label=`: `KEY` or `KEY=VALUE`.
    pub fn parse(text: &str) -> LabelFilter {
        match text.split_once('=') {
            Some((key, value)) => LabelFilter {
                key: key.to_owned(),
                value: Some(value.to_owned()),
            },
            None => LabelFilter {
                key: text.to_owned(),
                value: None,
            },
        }
    }

    /// Whether the `Labels` object `labels` satisfies this filter.
    pub fn matches(&self, labels: &Value) -> bool {
        labels
            .get(&self.key)
            .and_then(Value::as_str)
            .is_some_and(|found| self.value.as_deref().is_none_or(|wanted| wanted == found))
    }
}

/// Whether the image with manifest `manifest_digest` satisfies every filter.
pub fn image_matches(
    engine: &Engine,
    manifest_digest: &str,
    filters: &[LabelFilter],
) -> Result<bool> {
    if filters.is_empty() {
        return Ok(true);
    }
    let digest = Digest::parse(manifest_digest)?;
    let image = engine.store().image(&digest)?;
    let bytes = engine
        .store()
        .read_blob(&image.config_digest, CONFIG_LIMIT)
        .with_context(|| format!("cannot read the config {}", image.config_digest))?;
    let config: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the config {} is not valid JSON", image.config_digest))?;
    let labels = &config["config"]["Labels"];
    Ok(filters.iter().all(|f| f.matches(labels)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_match_exactly() {
        let labels = serde_json::json!({"a": "1", "b": "x=y", "empty": ""});
        let table = [
            ("a", true),
            ("a=1", true),
            ("a=2", false),
            ("b=x=y", true),
            ("empty", true),
            ("empty=", true),
            ("missing", false),
            ("A", false),
        ];
        for (text, expected) in table {
            assert_eq!(
                LabelFilter::parse(text).matches(&labels),
                expected,
                "{text}"
            );
        }
        assert!(!LabelFilter::parse("a").matches(&Value::Null));
    }
}
