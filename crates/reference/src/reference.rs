//! [`Reference`]: a parsed, normalised image reference, and its [`Namespace`].
//!
//! The grammar is docker/distribution's, `[domain[:port]/]path[:tag][@digest]`, read by a
//! hand-written single-pass parser rather than a regular expression. Normalisation happens
//! once, in [`Reference::parse`]; every accessor then reads the normalised form. This module
//! knows nothing about registries beyond Docker Hub's name and API endpoint.
//!
//! ```
//! use stencil_reference::{Namespace, Reference};
//!
//! let r = Reference::parse("jpetazzo/clock").unwrap();
//! assert_eq!(r.canonical(), "docker.io/jpetazzo/clock:latest");
//! assert_eq!(r.namespace(), Namespace::User);
//! ```

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, check_digest};
use crate::error::Error;
use crate::tag::{DEFAULT_TAG, Tag, check_tag};

/// The longest normalised name (`domain/path`) allowed, in characters.
pub const NAME_MAX_LEN: usize = 255;

/// The domain of Docker Hub, which a reference without a domain names.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// The old spelling of Docker Hub's domain; normalised to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";

/// Where Docker Hub actually serves the registry API.
const DEFAULT_REGISTRY_ENDPOINT: &str = "registry-1.docker.io";

/// The Docker Hub namespace of official images (`ubuntu` is `library/ubuntu`).
const OFFICIAL_PREFIX: &str = "library/";

/// Which kind of namespace an image name lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// An official Docker Hub image: `docker.io/library/…`, written `ubuntu`.
    Official,
    /// Any other Docker Hub image: `docker.io/jpetazzo/clock`, written `jpetazzo/clock`.
    User,
    /// An image on any registry other than Docker Hub, such as `localhost:5000/wordpress`.
    SelfHosted,
}

impl Namespace {
    /// `official`, `user` or `self-hosted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Official => "official",
            Namespace::User => "user",
            Namespace::SelfHosted => "self-hosted",
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, normalised image reference: a name (domain and path) with a tag, a digest,
/// or both.
///
/// Every `Reference` has a tag or a digest: [`Reference::parse`] adds the tag `latest` when
/// the input gives neither. Ordering is by name, then tag, then digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The normalised `domain/path`.
    name: String,
    /// Where the domain ends in `name`; the path starts one byte later.
    domain_len: usize,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` would understand it.
    ///
    /// The first path component is a domain when it contains `.` or `:`, is `localhost`, or
    /// (as in Docker) contains an uppercase letter; otherwise the domain is `docker.io`.
    /// `index.docker.io` becomes `docker.io`, and a one-component Docker Hub path gets the
    /// `library/` prefix.
    ///
    /// ```
    /// use stencil_reference::Reference;
    ///
    /// let r = Reference::parse("index.docker.io/ubuntu@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
    /// assert_eq!(r.name(), "docker.io/library/ubuntu");
    /// assert!(r.tag().is_none());
    /// ```
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.is_empty() {
            return Err(Error::EmptyReference);
        }
        if is_hex_identifier(s) {
            return Err(Error::HexIdentifier {
                input: s.to_owned(),
            });
        }

        let layout = Layout::scan(s);
        let before_digest = &s[..layout.name_and_tag_end];
        let digest = (layout.name_and_tag_end < s.len()).then(|| &s[layout.name_and_tag_end + 1..]);
        let (name, tag) = match layout.tag_colon {
            Some(colon) => (&before_digest[..colon], Some(&before_digest[colon + 1..])),
            None => (before_digest, None),
        };

        let split = split_domain(name, &layout);
        if let Err(reason) = check_domain(split.domain) {
            return Err(if split.domain_by_uppercase {
                // Only the uppercase letter made this look like a domain; the user most
                // likely meant a Docker Hub repository.
                uppercase_error(s, name, name)
            } else {
                Error::InvalidFormat {
                    input: s.to_owned(),
                    reason,
                }
            });
        }
        if let Err(reason) = check_path(split.path) {
            return Err(if split.domain_by_uppercase {
                // `Foo/Bar`: the whole name is in the wrong case, not just the path.
                uppercase_error(s, name, name)
            } else if split.path.bytes().any(|b| b.is_ascii_uppercase()) {
                uppercase_error(s, name, split.path)
            } else {
                Error::InvalidFormat {
                    input: s.to_owned(),
                    reason,
                }
            });
        }

        let domain = if split.domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            split.domain
        };
        let official_prefix = if domain == DEFAULT_DOMAIN && !split.path_has_slash {
            OFFICIAL_PREFIX
        } else {
            ""
        };
        let name_len = domain.len() + 1 + official_prefix.len() + split.path.len();
        if name_len > NAME_MAX_LEN {
            return Err(Error::NameTooLong {
                input: s.to_owned(),
                length: name_len,
            });
        }

        let tag = match tag {
            Some(tag) => {
                check_tag(tag).map_err(|e| e.within_reference(s))?;
                Some(tag)
            }
            None if digest.is_none() => Some(DEFAULT_TAG),
            None => None,
        };
        let digest = match digest {
            Some(digest) => {
                let algorithm = check_digest(digest).map_err(|e| e.within_reference(s))?;
                Some(Digest::from_checked(digest, algorithm))
            }
            None => None,
        };

        let mut normalised = String::with_capacity(name_len);
        normalised.push_str(domain);
        normalised.push('/');
        normalised.push_str(official_prefix);
        normalised.push_str(split.path);
        Ok(Reference {
            name: normalised,
            domain_len: domain.len(),
            tag: tag.map(Tag::from_checked),
            digest,
        })
    }

    /// The registry domain, with its port if any: `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.name[..self.domain_len]
    }

    /// The repository path inside the registry: `library/ubuntu`, `jpetazzo/clock`.
    pub fn path(&self) -> &str {
        &self.name[self.domain_len + 1..]
    }

    /// The full normalised name, `domain/path`: `docker.io/library/ubuntu`.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The name as a person writes it: `ubuntu`, `jpetazzo/clock`,
    /// `localhost:5000/wordpress`.
    ///
    /// Docker Hub names lose `docker.io/`, and official ones `library/` too, unless the
    /// first path component would then be read as a domain (`docker.io/my.org/app`); the
    /// familiar form always parses back to the same name.
    pub fn familiar_name(&self) -> String {
        if self.domain() != DEFAULT_DOMAIN {
            return self.name.clone();
        }
        let path = self.path();
        if let Some(official) = path.strip_prefix(OFFICIAL_PREFIX)
            && !official.contains('/')
        {
            return official.to_owned();
        }
        let first_component = path.split('/').next().unwrap_or(path);
        if first_component.contains('.') || first_component == "localhost" {
            return self.name.clone();
        }
        path.to_owned()
    }

    /// The tag, if any. Present unless the reference was parsed with a digest only.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The canonical form, `name[:tag][@digest]`: `docker.io/library/ubuntu:latest`. The same
    /// as `Display`.
    pub fn canonical(&self) -> String {
        // Built directly rather than through `Display`, whose formatting machinery costs
        // more than the copying.
        let mut out = String::with_capacity(self.name.len() + self.suffix_len());
        out.push_str(&self.name);
        self.write_suffix(&mut out);
        out
    }

    /// The familiar form, `familiar_name[:tag][@digest]`: `ubuntu:latest`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        out.reserve(self.suffix_len());
        self.write_suffix(&mut out);
        out
    }

    /// The namespace kind: official (`docker.io/library/…`), user (other Docker Hub names)
    /// or self-hosted (any other domain).
    pub fn namespace(&self) -> Namespace {
        if self.domain() != DEFAULT_DOMAIN {
            Namespace::SelfHosted
        } else if self.path().starts_with(OFFICIAL_PREFIX) {
            Namespace::Official
        } else {
            Namespace::User
        }
    }

    /// The host (and port) serving the registry API: `registry-1.docker.io` for Docker Hub,
    /// the domain otherwise.
    pub fn registry_endpoint(&self) -> &str {
        if self.domain() == DEFAULT_DOMAIN {
            DEFAULT_REGISTRY_ENDPOINT
        } else {
            self.domain()
        }
    }

    /// The same name with `tag` as its tag; a digest, if any, is kept.
    pub fn with_tag(&self, tag: Tag) -> Reference {
        Reference {
            tag: Some(tag),
            ..self.clone()
        }
    }

    /// The same name with `digest` as its digest; a tag, if any, is kept.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Length of `[:tag][@digest]`.
    fn suffix_len(&self) -> usize {
        self.tag.as_ref().map_or(0, |tag| 1 + tag.as_str().len())
            + self
                .digest
                .as_ref()
                .map_or(0, |digest| 1 + digest.as_str().len())
    }

    fn write_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag.as_str());
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            f.write_str(":")?;
            f.write_str(tag.as_str())?;
        }
        if let Some(digest) = &self.digest {
            f.write_str("@")?;
            f.write_str(digest.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

/// The error for a repository name with uppercase letters. `repository` ends where `name`
/// ends, and `name` starts `input`; when lowercasing just the repository gives a valid
/// reference (tags may keep their case), the error suggests it.
fn uppercase_error(input: &str, name: &str, repository: &str) -> Error {
    let start = name.len() - repository.len();
    let candidate = format!(
        "{}{}{}",
        &input[..start],
        repository.to_ascii_lowercase(),
        &input[name.len()..]
    );
    // The candidate's repository is lowercase, and when its first component was a domain
    // only by being uppercase it is lowercase too, so this parse cannot come back here.
    let suggestion = Reference::parse(&candidate).is_ok().then_some(candidate);
    Error::UppercaseRepository {
        input: input.to_owned(),
        repository: repository.to_owned(),
        suggestion,
    }
}

/// Where the separators of a reference string are, found in one pass so that the checks
/// that follow need no searching of their own.
struct Layout {
    /// Index of the first `@` (which starts the digest), or the input's length.
    name_and_tag_end: usize,
    /// Index of the first `/` before `name_and_tag_end`.
    first_slash: Option<usize>,
    /// Index of the second `/` before `name_and_tag_end`.
    second_slash: Option<usize>,
    /// Index of the last `:` after the last `/` before `name_and_tag_end`: the tag
    /// separator, so that a port (`localhost:5000/x`) is never taken for a tag.
    tag_colon: Option<usize>,
    /// The text before the first `/` contains `.` or `:`.
    first_has_dot_or_colon: bool,
    /// The text before the first `/` contains an ASCII uppercase letter.
    first_has_uppercase: bool,
}

/// The bytes [`Layout::scan`] acts on: `@ / : .` and ASCII uppercase letters.
const LAYOUT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    table[b'@' as usize] = true;
    table[b'/' as usize] = true;
    table[b':' as usize] = true;
    table[b'.' as usize] = true;
    let mut letter = b'A';
    while letter <= b'Z' {
        table[letter as usize] = true;
        letter += 1;
    }
    table
};

impl Layout {
    fn scan(s: &str) -> Layout {
        let mut layout = Layout {
            name_and_tag_end: s.len(),
            first_slash: None,
            second_slash: None,
            tag_colon: None,
            first_has_dot_or_colon: false,
            first_has_uppercase: false,
        };
        for (i, &b) in s.as_bytes().iter().enumerate() {
            // Most bytes are lowercase letters and digits: one table lookup skips them
            // without the unpredictable branches of the `match` below.
            if !LAYOUT_BYTES[usize::from(b)] {
                continue;
            }
            match b {
                b'@' => {
                    layout.name_and_tag_end = i;
                    break;
                }
                b'/' => {
                    if layout.first_slash.is_none() {
                        layout.first_slash = Some(i);
                    } else if layout.second_slash.is_none() {
                        layout.second_slash = Some(i);
                    }
                    layout.tag_colon = None;
                }
                b':' => {
                    layout.tag_colon = Some(i);
                    layout.first_has_dot_or_colon |= layout.first_slash.is_none();
                }
                b'.' => layout.first_has_dot_or_colon |= layout.first_slash.is_none(),
                _ => layout.first_has_uppercase |= layout.first_slash.is_none(),
            }
        }
        layout
    }
}

/// A name cut into its domain and path, before normalisation.
struct DomainSplit<'a> {
    domain: &'a str,
    path: &'a str,
    /// The path holds more than one component.
    path_has_slash: bool,
    /// The first component was taken as a domain only because it holds an uppercase letter.
    domain_by_uppercase: bool,
}

/// Decides whether the first component of `name` is a registry domain, as Docker does.
/// `layout` describes the reference `name` starts.
fn split_domain<'a>(name: &'a str, layout: &Layout) -> DomainSplit<'a> {
    let docker_hub = DomainSplit {
        domain: DEFAULT_DOMAIN,
        path: name,
        path_has_slash: layout.first_slash.is_some(),
        domain_by_uppercase: false,
    };
    // A '/' of the layout is before the tag and digest, so it is inside `name`.
    let Some(slash) = layout.first_slash else {
        return docker_hub;
    };
    let first = &name[..slash];
    if layout.first_has_dot_or_colon || first == "localhost" || layout.first_has_uppercase {
        DomainSplit {
            domain: first,
            path: &name[slash + 1..],
            path_has_slash: layout.second_slash.is_some(),
            // Repository paths are lowercase, so Docker reads an uppercase first component as
            // a host name; we follow it so that both tools agree on what a name means.
            domain_by_uppercase: !layout.first_has_dot_or_colon && first != "localhost",
        }
    } else {
        docker_hub
    }
}

/// Whether `s` is a bare 64-character image ID, which Docker refuses as a name.
fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks `host[:port]`, where host is dot-separated labels of `[A-Za-z0-9-]` (not starting
/// or ending with `-`) or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let bytes = domain.as_bytes();
    let (host, port) = if bytes.first() == Some(&b'[') {
        let Some(close) = bytes.iter().position(|&b| b == b']') else {
            return Err(format!(
                "registry address {domain:?} opens '[' for an IPv6 address but never closes it"
            ));
        };
        let (host, after) = domain.split_at(close + 1);
        let inner = &host.as_bytes()[1..host.len() - 1];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!(
                "registry address {host:?} must hold an IPv6 address (hexadecimal digits and ':')"
            ));
        }
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => {
                return Err(format!(
                    "registry address {domain:?} has {after:?} after ']' where only ':port' may follow"
                ));
            }
        }
    } else {
        let (host, port) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) => (&domain[..colon], Some(&domain[colon + 1..])),
            None => (domain, None),
        };
        if !is_host_name(host.as_bytes()) {
            return Err(format!(
                "registry host {host:?} must be dot-separated labels of letters, digits and '-' \
                 (a label neither starts nor ends with '-'), or a bracketed IPv6 address"
            ));
        }
        (host, port)
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "registry port {port:?} of {host:?} must be a decimal number"
        ));
    }
    Ok(())
}

/// Whether `host` is non-empty dot-separated labels of `[A-Za-z0-9-]`, none starting or
/// ending with `-`.
fn is_host_name(host: &[u8]) -> bool {
    // `previous` starts as a '.' so that an empty first label is caught like an empty
    // middle one.
    let mut previous = b'.';
    for &b in host {
        let allowed = match b {
            b'.' => previous != b'.' && previous != b'-',
            b'-' => previous != b'.',
            _ => b.is_ascii_alphanumeric(),
        };
        if !allowed {
            return false;
        }
        previous = b;
    }
    previous != b'.' && previous != b'-'
}

/// Checks a repository path: `/`-separated components, each of lowercase letters and digits
/// joined by `.`, `_`, `__` or a run of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    let bytes = path.as_bytes();
    let mut start = 0;
    loop {
        match check_path_component(bytes, start) {
            Ok(end) if end == bytes.len() => return Ok(()),
            Ok(slash) => start = slash + 1,
            Err(problem) => {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(bytes.len(), |i| start + i);
                return Err(problem.describe(path, &path[start..end], start));
            }
        }
    }
}

/// What is wrong with one path component; positions are indices into the whole path.
enum ComponentProblem {
    Empty,
    BadStart,
    BadSeparator(usize, usize),
    BadEnd,
    BadCharacter(usize),
}

impl ComponentProblem {
    fn describe(self, path: &str, component: &str, component_start: usize) -> String {
        match self {
            ComponentProblem::Empty => format!(
                "repository path {path:?} has an empty component; check for a leading, \
                 trailing or doubled '/'"
            ),
            ComponentProblem::BadStart => {
                format!("path component {component:?} must start with a lowercase letter or digit")
            }
            ComponentProblem::BadSeparator(start, end) => format!(
                "path component {component:?} joins parts with {:?}; only '.', '_', '__' or a \
                 run of '-' may do that",
                &path[start..end]
            ),
            ComponentProblem::BadEnd => {
                format!("path component {component:?} must end with a lowercase letter or digit")
            }
            ComponentProblem::BadCharacter(at) => {
                let character = path[at.max(component_start)..]
                    .chars()
                    .next()
                    .unwrap_or('?');
                format!("character {character:?} is not allowed in a repository name")
            }
        }
    }
}

/// Checks the component of `path` that starts at `start` against
/// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*` and returns where it ends: at a `/` or at the end
/// of `path`.
fn check_path_component(path: &[u8], start: usize) -> Result<usize, ComponentProblem> {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let is_separator = |b: u8| matches!(b, b'.' | b'_' | b'-');
    match path.get(start) {
        None | Some(b'/') => return Err(ComponentProblem::Empty),
        Some(&b) if is_separator(b) => return Err(ComponentProblem::BadStart),
        Some(_) => {}
    }
    let mut i = start;
    loop {
        let run_start = i;
        while i < path.len() && is_alnum(path[i]) {
            i += 1;
        }
        if i == run_start {
            // The byte where an alphanumeric must be (the first one, or the one after a
            // separator) is something else; separators were ruled out above and below.
            return Err(ComponentProblem::BadCharacter(i));
        }
        if i == path.len() || path[i] == b'/' {
            return Ok(i);
        }
        let separator_start = i;
        while i < path.len() && is_separator(path[i]) {
            i += 1;
        }
        if i == separator_start {
            return Err(ComponentProblem::BadCharacter(i));
        }
        let separator = &path[separator_start..i];
        let allowed =
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-');
        if !allowed {
            return Err(ComponentProblem::BadSeparator(separator_start, i));
        }
        if i == path.len() || path[i] == b'/' {
            return Err(ComponentProblem::BadEnd);
        }
    }
}
