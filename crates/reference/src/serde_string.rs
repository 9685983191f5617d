//! Serde support (feature `serde`, on by default): [`Reference`], [`Digest`] and [`Tag`]
//! serialize as their canonical strings and deserialize through their `parse`, so a value
//! read from JSON is as validated as one parsed from the command line.
//!
//! This module adds no format of its own; it only bridges `Display` and `FromStr`.
//!
//! ```
//! use stencil_reference::Digest;
//!
//! let digest = Digest::from_sha256_bytes(&[0; 32]);
//! let json = serde_json::to_string(&digest).unwrap();
//! assert_eq!(json, format!("\"sha256:{}\"", "0".repeat(64)));
//! assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
//! assert!(serde_json::from_str::<Digest>("\"sha256:../../etc\"").is_err());
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::{Digest, Reference, Tag};

/// Reads a string and parses it with `T::from_str`, reporting the parse error's message.
struct ParsedStringVisitor<T>(PhantomData<T>, &'static str);

impl<T> Visitor<'_> for ParsedStringVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! serde_as_string {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(ParsedStringVisitor(PhantomData, $expecting))
            }
        }
    };
}

serde_as_string!(
    Reference,
    "an image reference string such as \"ubuntu:22.04\""
);
serde_as_string!(
    Digest,
    "a digest string such as \"sha256:<64 hex characters>\""
);
serde_as_string!(Tag, "an image tag string such as \"latest\"");
