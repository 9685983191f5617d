//! [`Tag`]: a validated image tag such as `latest` or `22.04`.
//!
//! A tag matches `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Unlike repository names, tags may hold
//! uppercase letters. This module does not know which image a tag belongs to.
//!
//! ```
//! use stencil_reference::Tag;
//!
//! let tag = Tag::parse("22.04").unwrap();
//! assert_eq!(tag.as_str(), "22.04");
//! assert!(Tag::parse(".hidden").is_err());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The longest tag the grammar allows, in characters.
pub const TAG_MAX_LEN: usize = 128;

/// The tag added by normalisation when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A validated image tag.
///
/// The default tag is held without allocating, since normalisation adds it to most
/// references.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Cow<'static, str>);

impl Tag {
    /// Validates `s` as a tag.
    ///
    /// ```
    /// use stencil_reference::{ErrorKind, Tag};
    ///
    /// assert_eq!(Tag::parse("v1.0-rc_2").unwrap().as_str(), "v1.0-rc_2");
    /// assert_eq!(Tag::parse("-x").unwrap_err().kind(), ErrorKind::TagInvalid);
    /// assert_eq!(Tag::parse(&"a".repeat(129)).unwrap_err().kind(), ErrorKind::TagTooLong);
    /// ```
    pub fn parse(s: &str) -> Result<Tag, Error> {
        check_tag(s)?;
        Ok(Tag::from_checked(s))
    }

    /// Wraps a string that [`check_tag`] has accepted.
    pub(crate) fn from_checked(s: &str) -> Tag {
        if s == DEFAULT_TAG {
            Tag::latest()
        } else {
            Tag(Cow::Owned(s.to_owned()))
        }
    }

    /// The default tag, `latest`.
    pub fn latest() -> Tag {
        Tag(Cow::Borrowed(DEFAULT_TAG))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `s` against the tag grammar without allocating on success.
pub(crate) fn check_tag(s: &str) -> Result<(), Error> {
    let bytes = s.as_bytes();
    let starts_well = bytes
        .first()
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
    if !starts_well
        || !bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(Error::TagInvalid {
            input: s.to_owned(),
            tag: s.to_owned(),
        });
    }
    // Every byte is ASCII here, so the byte length is the character count.
    if bytes.len() > TAG_MAX_LEN {
        return Err(Error::TagTooLong {
            input: s.to_owned(),
            tag: s.to_owned(),
            length: bytes.len(),
        });
    }
    Ok(())
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Tag {
    type Err = Error;

    fn from_str(s: &str) -> Result<Tag, Error> {
        Tag::parse(s)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
