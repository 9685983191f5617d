//! `--format`: docker's output formats over rows of named fields.
//!
//! Accepted forms, as with docker: `table` (the command's default columns), `json` (one
//! JSON object per row), `table TEMPLATE` (a table whose columns come from the template)
//! and a free `TEMPLATE`, one line per row. Templates are the subset of Go templates that
//! people use with docker (see [`super::gotemplate`]): `{{.Field}}`, `{{index .List 0}}`,
//! `{{range}}`, `{{if}}`, `{{json .X}}`, `{{.Tag | upper}}`, `\t` and `\n` escapes, …
//!
//! ```
//! use serde_json::json;
//! use stencil::render::{Column, Format};
//!
//! let columns = [Column { field: "Repository", header: "REPOSITORY" },
//!                Column { field: "Tag", header: "TAG" }];
//! let rows = vec![json!({"Repository": "busybox", "Tag": "latest"})];
//! let format = Format::parse("{{.Repository}}:{{.Tag}}").unwrap();
//! assert_eq!(format.render(&columns, &rows).unwrap(), "busybox:latest\n");
//! let format = Format::parse("table {{.Tag}}").unwrap();
//! assert_eq!(format.render(&columns, &rows).unwrap(), "TAG\nlatest\n");
//! ```

use serde_json::Value;

use super::gotemplate::{Template, TemplateError};
use super::table::{Column, render_table};

/// A parsed `--format` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// The command's default table.
    Table,
    /// One JSON object per row.
    Json,
    /// A template, rendered once per row; as a table when it began with `table `.
    Template {
        /// Whether the rows form an aligned table with a header line.
        table: bool,
        /// The parsed template.
        template: Template,
    },
}

/// Why a `--format` value cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// A `{{` without its `}}`.
    #[error("invalid --format {format:?}: unclosed action (missing \"}}}}\")")]
    Unclosed {
        /// The whole format value.
        format: String,
    },
    /// An action that does not parse.
    #[error("invalid --format {format:?}: cannot understand {{{{{action}}}}}: {reason}")]
    BadAction {
        /// The whole format value.
        format: String,
        /// The text inside the braces.
        action: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field the rows do not have.
    #[error("invalid --format: there is no field {field:?}; fields are: {known}")]
    UnknownField {
        /// The field asked for.
        field: String,
        /// The fields that exist, comma separated.
        known: String,
    },
    /// The template failed on a row (an index out of range, say).
    #[error("--format failed: {reason}")]
    Execute {
        /// What went wrong.
        reason: String,
    },
}

impl Format {
    /// Parses a `--format` value.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let trimmed = text.trim();
        match trimmed {
            "" | "table" => return Ok(Format::Table),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        let (table, body) = match trimmed.strip_prefix("table ") {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let template = Template::parse(&body).map_err(|error| match error {
            TemplateError::Unclosed => FormatError::Unclosed {
                format: text.to_owned(),
            },
            TemplateError::Syntax(action, reason) => FormatError::BadAction {
                format: text.to_owned(),
                action,
                reason,
            },
            TemplateError::Execute(reason) => FormatError::Execute { reason },
        })?;
        Ok(Format::Template { table, template })
    }

    /// Renders rows (JSON objects keyed by field name) into the text to print.
    pub fn render(&self, columns: &[Column], rows: &[Value]) -> Result<String, FormatError> {
        match self {
            Format::Table => {
                let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
                let cells = rows
                    .iter()
                    .map(|row| columns.iter().map(|c| plain(&row[c.field])).collect())
                    .collect::<Vec<Vec<String>>>();
                Ok(render_table(&headers, &cells))
            }
            Format::Json => Ok(rows.iter().map(|row| format!("{row}\n")).collect()),
            Format::Template { table, template } => {
                check_fields(template, columns, rows)?;
                let lines = rows
                    .iter()
                    .map(|row| {
                        template.execute(row).map_err(|error| FormatError::Execute {
                            reason: match error {
                                TemplateError::Execute(reason) => reason,
                                other => format!("{other:?}"),
                            },
                        })
                    })
                    .collect::<Result<Vec<String>, FormatError>>()?;
                if !*table {
                    return Ok(lines.into_iter().map(|l| l + "\n").collect());
                }
                let header = template.header(&|path: &[String]| {
                    let name = path.join(".");
                    match columns.iter().find(|c| c.field == name) {
                        Some(column) => column.header.to_owned(),
                        None => path
                            .last()
                            .map_or(String::new(), |last| last.to_uppercase()),
                    }
                });
                let headers: Vec<&str> = header.split('\t').collect();
                let cells: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split('\t').map(str::to_owned).collect())
                    .collect();
                Ok(render_table(&headers, &cells))
            }
        }
    }
}

fn check_fields(
    template: &Template,
    columns: &[Column],
    rows: &[Value],
) -> Result<(), FormatError> {
    for path in template.top_fields() {
        let Some(top) = path.first() else {
            continue;
        };
        let in_rows = rows.first().is_some_and(|r| r.get(top).is_some());
        let in_columns = columns.iter().any(|c| c.field == top);
        if !in_rows && !in_columns {
            let known = match rows.first().and_then(Value::as_object) {
                Some(object) => object.keys().cloned().collect::<Vec<_>>().join(", "),
                None => columns
                    .iter()
                    .map(|c| c.field)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            return Err(FormatError::UnknownField {
                field: path.join("."),
                known,
            });
        }
    }
    Ok(())
}

/// A value as docker prints it in a table cell: strings bare, null as nothing, the rest
/// as JSON.
pub fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLUMNS: [Column; 3] = [
        Column {
            field: "Repository",
            header: "REPOSITORY",
        },
        Column {
            field: "Tag",
            header: "TAG",
        },
        Column {
            field: "ID",
            header: "IMAGE ID",
        },
    ];

    fn rows() -> Vec<Value> {
        vec![
            json!({"Repository": "busybox", "Tag": "latest", "ID": "0123456789ab", "Labels": {"a": "b"},
                   "Config": {"Cmd": ["/bin/sh"]}}),
            json!({"Repository": "localhost:5000/wordpress", "Tag": "6", "ID": "ba9876543210", "Labels": null}),
        ]
    }

    #[track_caller]
    fn check(format: &str, expected: Result<&str, FormatError>) {
        let result = Format::parse(format).and_then(|f| f.render(&COLUMNS, &rows()));
        assert_eq!(
            result.as_deref().map_err(Clone::clone),
            expected,
            "format {format:?}"
        );
    }

    #[test]
    fn formats_render_like_dockers() {
        check(
            "table",
            Ok("REPOSITORY                 TAG       IMAGE ID\n\
                busybox                    latest    0123456789ab\n\
                localhost:5000/wordpress   6         ba9876543210\n"),
        );
        check(
            "{{.Repository}}:{{.Tag}}",
            Ok("busybox:latest\nlocalhost:5000/wordpress:6\n"),
        );
        check(
            "table {{.ID}}\\t{{.Tag}}",
            Ok("IMAGE ID       TAG\n0123456789ab   latest\nba9876543210   6\n"),
        );
        check(
            "{{json .Labels}} {{.Tag | upper}} {{upper .Repository}}",
            Ok("{\"a\":\"b\"} LATEST BUSYBOX\nnull 6 LOCALHOST:5000/WORDPRESS\n"),
        );
        check("json", Ok(&format!("{}\n{}\n", rows()[0], rows()[1])));
        // Dotted fields walk into objects; a missing one prints nothing.
        check(
            "{{json .Config.Cmd}}|{{.Labels.a}}",
            Ok("[\"/bin/sh\"]|b\nnull|\n"),
        );
        // Lists and maps print as Go prints them; templates index, range and branch.
        check(
            "{{.Config.Cmd}} {{index .Repository 0 | len}}",
            Err(FormatError::Execute {
                reason: "cannot index busybox".into(),
            }),
        );
        check(
            "{{.Config.Cmd}}{{range .Labels}}={{.}}{{end}}{{if eq .Tag \"6\"}}six{{end}}",
            Ok("[/bin/sh]=b\nsix\n"),
        );
        check(
            "table {{.Repository}}\t{{if .Labels}}labelled{{end}}",
            Ok("REPOSITORY\nbusybox                    labelled\nlocalhost:5000/wordpress\n"),
        );
    }

    #[test]
    fn bad_formats_are_refused_with_the_reason() {
        check(
            "{{.Tag",
            Err(FormatError::Unclosed {
                format: "{{.Tag".into(),
            }),
        );
        check(
            "{{frob .Tag 1}}",
            Err(FormatError::BadAction {
                format: "{{frob .Tag 1}}".into(),
                action: "frob .Tag 1".into(),
                reason: "\"frob\" is not a field (.Name) or a function".into(),
            }),
        );
        check(
            "{{index .Tag 1}}",
            Err(FormatError::Execute {
                reason: "cannot index latest".into(),
            }),
        );
        let unknown = Format::parse("{{.Nope}}").and_then(|f| f.render(&COLUMNS, &rows()));
        assert!(
            matches!(unknown, Err(FormatError::UnknownField { ref field, .. }) if field == "Nope"),
            "{unknown:?}"
        );
    }
}
