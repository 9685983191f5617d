//! Discovery: the tags of a repository, the repositories of a registry, and search.
//!
//! Tags and catalog follow the `Link: <…>; rel="next"` header page by page (asking for
//! `n` entries per page when given) until the registry stops sending one. Search uses
//! Docker Hub's `GET /v1/search?q=&n=`; on a registry without it (404), it filters the
//! catalog by name instead. This module reads only; deleting is not discovery.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stencil_registry::Error> {
//! use stencil_reference::Reference;
//! use stencil_registry::Client;
//!
//! let client = Client::builder().build()?;
//! let repo = Reference::parse("localhost:5000/app").unwrap();
//! for tag in client.tags(&repo, Some(100)).await? {
//!     println!("{tag}");
//! }
//! for hit in client.search("localhost:5000", "app", 25).await? {
//!     println!("{} {}", hit.name, hit.description);
//! }
//! # Ok(()) }
//! ```

use reqwest::{Method, Url};
use serde::Deserialize;
use stencil_reference::Reference;

use super::transport::{Call, expect_success, next_link, read_limited};
use super::{Client, Repository, api_host};
use crate::error::{Error, ErrorKind, Result};

/// Listing pages are read up to this size each.
const PAGE_LIMIT: u64 = 16 * 1024 * 1024;

/// At most this many pages are followed, so a looping `Link` cannot run forever.
const MAX_PAGES: usize = 10_000;

/// At most this many names are collected over all pages, so that a registry sending page
/// after full page cannot grow memory without bound (about 50 MB of names at most).
const MAX_ENTRIES: usize = 1_000_000;

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SearchResult {
    /// The repository name (`library/ubuntu` or `ubuntu` on Docker Hub).
    pub name: String,
    /// Its description, empty when none (Docker Hub sends `null` for some).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub description: String,
    /// Stars on Docker Hub (0 elsewhere).
    #[serde(default)]
    pub star_count: u64,
    /// Whether it is an official image.
    #[serde(default)]
    pub is_official: bool,
    /// Whether it is an automated build.
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default)]
    results: Vec<SearchResult>,
}

impl Client {
    /// Every tag of `repository`'s repository (its tag and digest are ignored), asking for
    /// `page_size` tags per request when given.
    pub async fn tags(
        &self,
        repository: &Reference,
        page_size: Option<u32>,
    ) -> Result<Vec<String>> {
        let repo = Repository::origin(repository);
        let query = page_size.map(|n| format!("?n={n}")).unwrap_or_default();
        let first = repo.url(self, &format!("tags/list{query}"))?;
        let name = repository.name();
        self.pages(
            first,
            &repo.host,
            vec![repo.scope("pull")],
            &name,
            |body, url| {
                let page: TagsPage = parse_json(body, url)?;
                Ok(page.tags.unwrap_or_default())
            },
        )
        .await
    }

    /// Checks that `registry` (a host as in references) answers the API with this client's
    /// credentials: what `login` does before storing them. A wrong password is
    /// [`ErrorKind::Unauthorized`].
    pub async fn ping(&self, registry: &str) -> Result<()> {
        let host = api_host(registry)?;
        let url = self.api_url(&host, "/v2/")?;
        let answer = self
            .send(&Call::new(Method::GET, url, &host, Vec::new()))
            .await?;
        expect_success(answer, registry).await.map(|_| ())
    }

    /// Every repository of `registry` (a host as in references: `localhost:5000`).
    pub async fn catalog(&self, registry: &str, page_size: Option<u32>) -> Result<Vec<String>> {
        let host = api_host(registry)?;
        let query = page_size.map(|n| format!("?n={n}")).unwrap_or_default();
        let first = self.api_url(&host, &format!("/v2/_catalog{query}"))?;
        self.pages(
            first,
            &host,
            vec!["registry:catalog:*".into()],
            registry,
            |body, url| {
                let page: CatalogPage = parse_json(body, url)?;
                Ok(page.repositories)
            },
        )
        .await
    }

    /// Searches `registry` for `query`, at most `limit` results: Docker Hub's search API,
    /// or the catalog filtered by name where the registry has no search.
    pub async fn search(
        &self,
        registry: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>> {
        let api = api_host(registry)?;
        let host = if api == "registry-1.docker.io" {
            "index.docker.io".to_owned()
        } else {
            api
        };
        let mut url = self.api_url(&host, "/v1/search")?;
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("n", &limit.to_string());
        let answer = self
            .send(&Call::new(Method::GET, url, &host, Vec::new()))
            .await?;
        if answer.response.status().as_u16() == 404 {
            return self.search_catalog(registry, query, limit).await;
        }
        let answer = expect_success(answer, registry).await?;
        let body = read_limited(answer.response, &answer.url, PAGE_LIMIT).await?;
        let page: SearchPage = parse_json(&body, &answer.url)?;
        Ok(page.results.into_iter().take(limit).collect())
    }

    async fn search_catalog(
        &self,
        registry: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>> {
        let needle = query.to_lowercase();
        let names = match self.catalog(registry, None).await {
            Ok(names) => names,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    url: err.to_string(),
                    what: format!("search or catalog on {registry}"),
                    code: None,
                });
            }
            Err(err) => return Err(err),
        };
        Ok(names
            .into_iter()
            .filter(|name| name.to_lowercase().contains(&needle))
            .take(limit)
            .map(|name| SearchResult {
                name,
                description: String::new(),
                star_count: 0,
                is_official: false,
                is_automated: false,
            })
            .collect())
    }

    async fn pages(
        &self,
        first: Url,
        host: &str,
        scopes: Vec<String>,
        what: &str,
        parse: impl Fn(&[u8], &Url) -> Result<Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        let mut visited = std::collections::HashSet::new();
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::Protocol {
                    url: url.to_string(),
                    reason: format!("more than {MAX_PAGES} pages"),
                });
            }
            if !visited.insert(url.clone()) {
                return Err(Error::Protocol {
                    url: url.to_string(),
                    reason: "the next-page link leads back to a page already read".to_owned(),
                });
            }
            let call = Call::new(Method::GET, url, host, scopes.clone());
            let answer = expect_success(self.send(&call).await?, what).await?;
            next = next_link(answer.response.headers(), &answer.url);
            let url = answer.url.clone();
            let body = read_limited(answer.response, &url, PAGE_LIMIT).await?;
            all.extend(parse(&body, &url)?);
            if all.len() > MAX_ENTRIES {
                return Err(Error::Protocol {
                    url: url.to_string(),
                    reason: format!("more than {MAX_ENTRIES} entries over {pages} pages"),
                });
            }
        }
        Ok(all)
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8], url: &Url) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Protocol {
        url: url.to_string(),
        reason: format!("unreadable JSON: {e}"),
    })
}
