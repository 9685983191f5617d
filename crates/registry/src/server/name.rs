//! [`RepositoryName`]: a repository path on the server, validated once at the edge.
//!
//! Repository `P` on a server whose served domain is `D` is the store's image name `D/P`:
//! `localhost:5000/team/app` is repository `team/app` of the server that serves
//! `localhost:5000`. The name is checked with [`stencil_reference::Reference`]'s grammar,
//! so that no path built from it can leave its directory: components are lowercase
//! alphanumerics joined by `.`, `_`, `__` or `-`, never `..` or empty. This module does not
//! know where repositories live on disk.
//!
//! ```
//! use stencil_registry::server::RepositoryName;
//!
//! let name = RepositoryName::parse("localhost:5000", "team/app").unwrap();
//! assert_eq!(name.as_str(), "team/app");
//! assert_eq!(name.image_name(), "localhost:5000/team/app");
//! assert!(RepositoryName::parse("localhost:5000", "../etc").is_none());
//! assert!(RepositoryName::parse("localhost:5000", "app:tag").is_none());
//! ```

use std::fmt;

use stencil_reference::Reference;

/// A valid repository path on one served domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName {
    /// The store's image name, `domain/path`.
    image_name: String,
    /// Where the path starts in `image_name`.
    path_start: usize,
}

impl RepositoryName {
    /// Validates `path` as a repository of the served domain `domain`; `None` when it is
    /// not a valid repository path (or `domain` is not a valid registry domain).
    pub fn parse(domain: &str, path: &str) -> Option<RepositoryName> {
        // A ':' or '@' would be read as a tag or digest by the reference grammar.
        if path.is_empty() || path.contains([':', '@']) {
            return None;
        }
        let reference = Reference::parse(&format!("{domain}/{path}")).ok()?;
        if reference.domain() != domain || reference.path() != path {
            return None;
        }
        Some(RepositoryName {
            image_name: reference.name(),
            path_start: domain.len() + 1,
        })
    }

    /// The repository path, as clients write it in URLs (`team/app`).
    pub fn as_str(&self) -> &str {
        &self.image_name[self.path_start..]
    }

    /// The served domain this repository belongs to.
    pub fn domain(&self) -> &str {
        &self.image_name[..self.path_start - 1]
    }

    /// The image name in the store (`localhost:5000/team/app`).
    pub fn image_name(&self) -> &str {
        &self.image_name
    }

    /// The path components, each safe to use as a directory name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('/')
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
