//! `stencil images` (= `stencil image ls`): docker's listing, filters and formats.

use anyhow::{Result, bail};
use stencil_reference::Reference;

use crate::cmd::label_filter::{LabelFilter, image_matches};
use crate::engine::{Engine, ImageRow, image_rows};
use crate::render::{Column, Format};

/// Arguments of `stencil images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Show all images, including the intermediate images of builds.
    #[arg(short, long)]
    pub all: bool,
    /// Only print image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE,
    /// label=KEY[=VALUE].
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// `table`, `json`, or a template such as `{{.Repository}}:{{.Tag}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only images of this repository (and tag).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

/// The columns of docker's image tables, shared by `images`, `system df -v` and friends.
pub const REPOSITORY: Column = Column {
    field: "Repository",
    header: "REPOSITORY",
};
/// The tag column.
pub const TAG: Column = Column {
    field: "Tag",
    header: "TAG",
};
/// The manifest digest column (`--digests`).
pub const DIGEST: Column = Column {
    field: "Digest",
    header: "DIGEST",
};
/// The image ID column.
pub const IMAGE_ID: Column = Column {
    field: "ID",
    header: "IMAGE ID",
};
/// The age column.
pub const CREATED: Column = Column {
    field: "CreatedSince",
    header: "CREATED",
};
/// The size column.
pub const SIZE: Column = Column {
    field: "Size",
    header: "SIZE",
};

const COLUMNS: [Column; 5] = [REPOSITORY, TAG, IMAGE_ID, CREATED, SIZE];
const COLUMNS_WITH_DIGESTS: [Column; 6] = [REPOSITORY, TAG, DIGEST, IMAGE_ID, CREATED, SIZE];

/// One `--filter` of `images`.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Dangling(bool),
    Reference(String),
    Before(String),
    Since(String),
    Label(LabelFilter),
}

fn parse_filter(text: &str) -> Result<Filter> {
    let Some((key, value)) = text.split_once('=') else {
        bail!(
            "invalid filter {text:?}: expected KEY=VALUE (dangling, reference, before, since, label)"
        );
    };
    Ok(match key {
        "dangling" => match value {
            "true" | "1" => Filter::Dangling(true),
            "false" | "0" => Filter::Dangling(false),
            _ => bail!("invalid filter {text:?}: dangling takes true or false"),
        },
        "reference" => Filter::Reference(value.to_owned()),
        "before" => Filter::Before(value.to_owned()),
        "since" => Filter::Since(value.to_owned()),
        "label" if !value.is_empty() => Filter::Label(LabelFilter::parse(value)),
        "label" => bail!("invalid filter {text:?}: label takes KEY or KEY=VALUE"),
        _ => bail!(
            "invalid filter {text:?}: unknown key {key:?} (dangling, reference, before, since, label)"
        ),
    })
}

/// Runs `stencil images`, returning the text to print.
pub fn run(engine: &Engine, args: &ImagesArgs) -> Result<String> {
    let filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    let label_filters: Vec<LabelFilter> = filters
        .iter()
        .filter_map(|f| match f {
            Filter::Label(label) => Some(label.clone()),
            _ => None,
        })
        .collect();
    let format = match &args.format {
        Some(text) => Format::parse(text)?,
        None => Format::Table,
    };
    let all = image_rows(engine, args.no_trunc)?;
    // Untagged images made by build steps are hidden without -a, as docker hides them.
    let intermediate = if args.all {
        Default::default()
    } else {
        crate::build::cache::BuildCache::open(engine.root())?.intermediate_images()
    };
    let mut rows: Vec<ImageRow> = Vec::new();
    for row in &all {
        if row.dangling && intermediate.contains(&row.manifest_digest) {
            continue;
        }
        if let Some(wanted) = &args.repository {
            // With `*` or `?` it is a pattern, as docker's `reference=` filter.
            let matched = if wanted.contains(['*', '?']) {
                keep(row, &Filter::Reference(wanted.clone()), &all)
            } else {
                matches_repository(row, wanted)
            };
            if !matched {
                continue;
            }
        }
        // As docker's, several reference filters allow any of them; others must all hold.
        let references: Vec<&Filter> = filters
            .iter()
            .filter(|f| matches!(f, Filter::Reference(_)))
            .collect();
        let referenced = references.is_empty() || references.iter().any(|f| keep(row, f, &all));
        if referenced
            && filters
                .iter()
                .filter(|f| !matches!(f, Filter::Reference(_)))
                .all(|f| keep(row, f, &all))
            && image_matches(engine, &row.manifest_digest, &label_filters)?
        {
            rows.push(row.clone());
        }
    }
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = String::new();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                out.push_str(&row.id);
                out.push('\n');
            }
        }
        return Ok(out);
    }
    let columns: &[Column] = if args.digests {
        &COLUMNS_WITH_DIGESTS
    } else {
        &COLUMNS
    };
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    Ok(format.render(columns, &values)?)
}

fn matches_repository(row: &ImageRow, wanted: &str) -> bool {
    let Some(reference) = &row.reference else {
        return false;
    };
    // `busybox` matches every tag of busybox; `busybox:1` only that tag.
    let (name, tag) = match wanted.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (wanted, None),
    };
    let Ok(parsed) = Reference::parse(name) else {
        return false;
    };
    parsed.name() == reference.name()
        && tag.is_none_or(|t| reference.tag().is_some_and(|rt| rt.as_str() == t))
}

fn keep(row: &ImageRow, filter: &Filter, all: &[ImageRow]) -> bool {
    let created_of = |image: &str| {
        all.iter()
            .find(|r| {
                r.id.starts_with(image)
                    || r.reference.as_ref().is_some_and(|reference| {
                        Reference::parse(image).is_ok_and(|p| p == *reference)
                    })
            })
            .map(|r| r.created_unix)
    };
    match filter {
        Filter::Dangling(wanted) => row.dangling == *wanted,
        Filter::Reference(pattern) => row.reference.as_ref().is_some_and(|r| {
            let familiar = r.familiar();
            glob_match(pattern, &familiar)
                || glob_match(pattern, &r.familiar_name())
                || glob_match(pattern, &r.canonical())
        }),
        Filter::Before(image) => created_of(image).is_some_and(|t| row.created_unix < t),
        Filter::Since(image) => created_of(image).is_some_and(|t| row.created_unix > t),
        // Labels live in the config, which `run` reads only for the rows left.
        Filter::Label(_) => true,
    }
}

/// Shell-style matching with `*` (not crossing `/`) and `?`, as docker's reference filter.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                go(&p[1..], t) || (t.first().is_some_and(|c| *c != '/') && go(p, &t[1..]))
            }
            (Some('?'), Some(c)) if *c != '/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_name_the_problem() {
        assert_eq!(
            parse_filter("dangling=true").ok(),
            Some(Filter::Dangling(true))
        );
        assert_eq!(
            parse_filter("reference=busy*").ok(),
            Some(Filter::Reference("busy*".into()))
        );
        for bad in ["dangling=maybe", "color=red", "dangling"] {
            let error = parse_filter(bad).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn reference_patterns_match_like_dockers() {
        let table = [
            // `*` stops only at `/`, as Go's path.Match: the tag is matched too.
            ("busy*", "busybox:latest", true),
            ("busy?", "busybox", false),
            ("busy*", "busybox", true),
            ("busybox:*", "busybox:latest", true),
            ("*/clock", "jpetazzo/clock", true),
            ("*", "jpetazzo/clock", false),
            ("localhost:5000/*", "localhost:5000/wordpress", true),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
    }
}
