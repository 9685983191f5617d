//! `stencil search [--limit N] [--filter …] [--no-trunc] [--format …] TERM`: docker's search.
//!
//! TERM searches Docker Hub, unless its first component names a registry
//! (`localhost:5000/word`, `registry.example.com/word`): then that registry is asked, with
//! Docker Hub's `/v1/search` API or, where it has none, its catalog filtered by name (the
//! registry client decides). Rows have docker's fields `Name`, `Description`,
//! `StarCount`, `IsOfficial` and `IsAutomated`; the booleans print as `[OK]` or nothing.
//!
//! `--list-tags REPOSITORY` lists the repository's tags instead, as podman's does (and
//! `skopeo list-tags`): rows `Name` and `Tag`, in the registry's order, all of them
//! unless `--limit` says otherwise.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use stencil_reference::Reference;
use stencil_registry::SearchResult;

use crate::engine::Engine;
use crate::render::{Column, Format};

/// Docker Hub, where a TERM without a registry is searched.
const DOCKER_HUB: &str = "docker.io";

/// Descriptions are cut to this many characters unless `--no-trunc`, as docker does.
const DESCRIPTION_WIDTH: usize = 45;

/// Arguments of `stencil search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// At most this many results (1 to 100; default 25, or every tag with --list-tags).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// List the tags of the repository TERM names instead of searching.
    #[arg(long)]
    pub list_tags: bool,
    /// Filter: stars=N (at least N stars), is-official=true|false, is-automated=true|false.
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Do not truncate descriptions.
    #[arg(long)]
    pub no_trunc: bool,
    /// `table`, `json`, or a template such as `{{.Name}}: {{.StarCount}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// What to look for, optionally behind a registry: `busybox`, `localhost:5000/app`.
    #[arg(value_name = "TERM")]
    pub term: String,
}

const COLUMNS: [Column; 5] = [
    Column {
        field: "Name",
        header: "NAME",
    },
    Column {
        field: "Description",
        header: "DESCRIPTION",
    },
    Column {
        field: "StarCount",
        header: "STARS",
    },
    Column {
        field: "IsOfficial",
        header: "OFFICIAL",
    },
    Column {
        field: "IsAutomated",
        header: "AUTOMATED",
    },
];

/// One `--filter` of `search`.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Stars(u64),
    Official(bool),
    Automated(bool),
}

fn parse_filter(text: &str) -> Result<Filter> {
    let known = "stars=N, is-official=true|false, is-automated=true|false";
    let Some((key, value)) = text.split_once('=') else {
        bail!("invalid filter {text:?}: expected KEY=VALUE ({known})");
    };
    let boolean = |value: &str| match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid filter {text:?}: {key} takes true or false"),
    };
    Ok(match key {
        "stars" => Filter::Stars(
            value
                .parse()
                .with_context(|| format!("invalid filter {text:?}: stars takes a number"))?,
        ),
        "is-official" => Filter::Official(boolean(value)?),
        "is-automated" => Filter::Automated(boolean(value)?),
        _ => bail!("invalid filter {text:?}: unknown key {key:?} ({known})"),
    })
}

/// Splits TERM into the registry to ask and the words to look for.
fn split_term(term: &str) -> (String, String) {
    if let Some((first, rest)) = term.split_once('/') {
        let is_registry = first.contains('.') || first.contains(':') || first == "localhost";
        if is_registry && !rest.is_empty() {
            let registry = match first {
                "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
                other => other.to_owned(),
            };
            return (registry, rest.to_owned());
        }
    }
    (DOCKER_HUB.to_owned(), term.to_owned())
}

const TAG_COLUMNS: [Column; 2] = [
    Column {
        field: "Name",
        header: "NAME",
    },
    Column {
        field: "Tag",
        header: "TAG",
    },
];

/// Runs `stencil search --list-tags`.
async fn list_tags(engine: &Engine, args: &SearchArgs) -> Result<String> {
    if !args.filter.is_empty() {
        bail!("--filter does not apply to --list-tags");
    }
    let last = args.term.rsplit('/').next().unwrap_or(&args.term);
    if last.contains(':') || last.contains('@') {
        bail!(
            "--list-tags takes a repository without tag or digest: {:?}",
            args.term
        );
    }
    let repository = Reference::parse(&args.term)?;
    let format = match &args.format {
        Some(text) => Format::parse(text)?,
        None => Format::Table,
    };
    let tags = engine
        .registry_client()?
        .tags(&repository, None)
        .await
        .with_context(|| format!("cannot list the tags of {}", repository.name()))?;
    let rows: Vec<Value> = tags
        .iter()
        .take(args.limit.unwrap_or(usize::MAX))
        .map(|tag| json!({"Name": repository.name(), "Tag": tag}))
        .collect();
    Ok(format.render(&TAG_COLUMNS, &rows)?)
}

/// Runs `stencil search`, returning the text to print.
pub async fn run(engine: &Engine, args: &SearchArgs) -> Result<String> {
    if let Some(limit) = args.limit
        && !(1..=100).contains(&limit)
    {
        bail!("--limit {limit} is outside the range of [1, 100]");
    }
    if args.list_tags {
        return list_tags(engine, args).await;
    }
    let limit = args.limit.unwrap_or(25);
    let filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    let format = match &args.format {
        Some(text) => Format::parse(text)?,
        None => Format::Table,
    };
    let (registry, query) = split_term(&args.term);
    if query.trim().is_empty() {
        bail!(
            "nothing to search for in {:?}: give a word, like `stencil search busybox`",
            args.term
        );
    }
    let client = engine.registry_client()?;
    let results = client
        .search(&registry, &query, limit)
        .await
        .with_context(|| format!("cannot search {registry} for {query:?}"))?;
    render(&registry, &results, &filters, args.no_trunc, &format)
}

/// The output for `results` from `registry`, filtered and formatted.
fn render(
    registry: &str,
    results: &[SearchResult],
    filters: &[Filter],
    no_trunc: bool,
    format: &Format,
) -> Result<String> {
    let rows: Vec<Value> = results
        .iter()
        .filter(|r| filters.iter().all(|f| keep(r, f)))
        .map(|r| row(registry, r, no_trunc))
        .collect();
    Ok(format.render(&COLUMNS, &rows)?)
}

fn keep(result: &SearchResult, filter: &Filter) -> bool {
    match filter {
        Filter::Stars(at_least) => result.star_count >= *at_least,
        Filter::Official(wanted) => result.is_official == *wanted,
        Filter::Automated(wanted) => result.is_automated == *wanted,
    }
}

fn row(registry: &str, result: &SearchResult, no_trunc: bool) -> Value {
    let ok = |flag: bool| if flag { "[OK]" } else { "" };
    // Names from another registry are shown pullable: with that registry in front.
    let name = if registry == DOCKER_HUB || result.name.starts_with(&format!("{registry}/")) {
        result.name.clone()
    } else {
        format!("{registry}/{}", result.name)
    };
    let mut description = result.description.replace(['\n', '\r', '\t'], " ");
    if !no_trunc && description.chars().count() > DESCRIPTION_WIDTH {
        description = description
            .chars()
            .take(DESCRIPTION_WIDTH - 1)
            .collect::<String>()
            + "…";
    }
    json!({
        "Name": name,
        "Description": description,
        "StarCount": result.star_count.to_string(),
        "IsOfficial": ok(result.is_official),
        "IsAutomated": ok(result.is_automated),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Vec<SearchResult> {
        let hit = |name: &str, description: &str, stars: u64, official: bool| SearchResult {
            name: name.into(),
            description: description.into(),
            star_count: stars,
            is_official: official,
            is_automated: false,
        };
        vec![
            hit(
                "busybox",
                "Busybox base image.\nSmall and complete, with everything one needs.",
                3400,
                true,
            ),
            hit("jpetazzo/clock", "", 12, false),
        ]
    }

    #[track_caller]
    fn check(filters: &[&str], no_trunc: bool, format: &str, expected: &str) {
        let filters: Vec<Filter> = filters
            .iter()
            .map(|f| parse_filter(f).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let format = Format::parse(format).unwrap_or_else(|e| panic!("{e}"));
        let got = render(DOCKER_HUB, &results(), &filters, no_trunc, &format)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, expected);
    }

    #[test]
    fn rows_print_like_dockers() {
        check(
            &[],
            false,
            "table",
            "NAME             DESCRIPTION                                     STARS     OFFICIAL   AUTOMATED\n\
             busybox          Busybox base image. Small and complete, with…   3400      [OK]\n\
             jpetazzo/clock                                                   12\n",
        );
        check(
            &["is-official=true"],
            true,
            "{{.Name}}|{{.Description}}|{{.IsOfficial}}",
            "busybox|Busybox base image. Small and complete, with everything one needs.|[OK]\n",
        );
        check(&["stars=13"], false, "{{.Name}}", "busybox\n");
        check(
            &["stars=12", "is-official=false"],
            false,
            "{{.Name}}",
            "jpetazzo/clock\n",
        );
        check(
            &[],
            false,
            "table {{.Name}}\t{{.StarCount}}",
            "NAME             STARS\nbusybox          3400\njpetazzo/clock   12\n",
        );
    }

    #[test]
    fn other_registries_prefix_the_names_and_terms_name_them() {
        let format = Format::parse("{{.Name}}").unwrap_or_else(|e| panic!("{e}"));
        let got = render("localhost:5000", &results()[1..], &[], false, &format)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, "localhost:5000/jpetazzo/clock\n");
        let table = [
            ("busybox", ("docker.io", "busybox")),
            ("jpetazzo/clock", ("docker.io", "jpetazzo/clock")),
            ("localhost:5000/word", ("localhost:5000", "word")),
            (
                "registry.example.com/team/app",
                ("registry.example.com", "team/app"),
            ),
            ("index.docker.io/ubuntu", ("docker.io", "ubuntu")),
        ];
        for (term, (registry, query)) in table {
            assert_eq!(
                split_term(term),
                (registry.to_owned(), query.to_owned()),
                "{term}"
            );
        }
    }

    #[test]
    fn bad_filters_name_themselves() {
        for bad in ["stars=many", "is-official=yes", "color=red", "stars"] {
            let error = parse_filter(bad).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
