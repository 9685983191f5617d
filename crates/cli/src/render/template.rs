//! `--format`: docker's output formats over rows of named fields.
//!
//! Accepted forms, as with docker: `table` (the command's default columns), `json` (one
//! JSON object per row), `table TEMPLATE` (a table whose columns come from the template)
//! and a free `TEMPLATE`, one line per row. Templates are the subset of Go templates that
//! people use with docker: literal text, `\t` and `\n` escapes, `{{.Field}}`, `{{.Config.Cmd}}`, `{{.}}`,
//! and the functions `json`, `upper`, `lower` (`{{json .Labels}}`, `{{.Tag | upper}}`).
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
        parts: Vec<Part>,
    },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text copied as it is.
    Literal(String),
    /// `{{ … }}`: a value, possibly passed through functions.
    Action {
        /// The field, or `None` for `.` (the whole row).
        field: Option<String>,
        /// Functions applied in order.
        functions: Vec<Function>,
    },
}

/// Template functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// The value as JSON.
    Json,
    /// Upper case.
    Upper,
    /// Lower case.
    Lower,
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
    /// An action that is not a field, `.` or a known function.
    #[error(
        "invalid --format {format:?}: cannot understand {{{{{action}}}}}; use {{{{.Field}}}} or {{{{json .Field}}}}"
    )]
    BadAction {
        /// The whole format value.
        format: String,
        /// The text inside the braces.
        action: String,
    },
    /// A field the rows do not have.
    #[error("invalid --format: there is no field {field:?}; fields are: {known}")]
    UnknownField {
        /// The field asked for.
        field: String,
        /// The fields that exist, comma separated.
        known: String,
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
        Ok(Format::Template {
            table,
            parts: parse_parts(text, &body)?,
        })
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
            Format::Template { table, parts } => {
                check_fields(parts, columns, rows)?;
                let lines: Vec<String> = rows.iter().map(|row| expand(parts, row)).collect();
                if !*table {
                    return Ok(lines.into_iter().map(|l| l + "\n").collect());
                }
                let header = header_line(parts, columns);
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

fn parse_parts(format: &str, body: &str) -> Result<Vec<Part>, FormatError> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| FormatError::Unclosed {
            format: format.to_owned(),
        })?;
        parts.push(parse_action(format, after[..end].trim())?);
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

fn parse_action(format: &str, action: &str) -> Result<Part, FormatError> {
    let bad = || FormatError::BadAction {
        format: format.to_owned(),
        action: action.to_owned(),
    };
    // `json .X` and `.X | json` are the same pipeline written two ways.
    let mut stages: Vec<&str> = action.split('|').map(str::trim).collect();
    let head = stages.remove(0);
    let mut words: Vec<&str> = head.split_whitespace().collect();
    let value = words.pop().ok_or_else(bad)?;
    let mut functions = Vec::new();
    for name in words.into_iter().rev().chain(stages) {
        functions.push(match name {
            "json" => Function::Json,
            "upper" => Function::Upper,
            "lower" => Function::Lower,
            _ => return Err(bad()),
        });
    }
    let field = match value {
        "." => None,
        v => {
            // `.Config.Cmd` walks into nested objects, as Go templates do.
            let name = v.strip_prefix('.').ok_or_else(bad)?;
            let valid_segment =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name.split('.').all(valid_segment) {
                return Err(bad());
            }
            Some(name.to_owned())
        }
    };
    Ok(Part::Action { field, functions })
}

fn check_fields(parts: &[Part], columns: &[Column], rows: &[Value]) -> Result<(), FormatError> {
    for part in parts {
        if let Part::Action {
            field: Some(field), ..
        } = part
        {
            let top = field.split('.').next().unwrap_or(field);
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
                    field: field.clone(),
                    known,
                });
            }
        }
    }
    Ok(())
}

fn expand(parts: &[Part], row: &Value) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Action { field, functions } => {
                let value = match field {
                    Some(path) => path
                        .split('.')
                        .try_fold(row, |value, key| value.get(key))
                        .unwrap_or(&Value::Null),
                    None => row,
                };
                let mut text = if functions.first() == Some(&Function::Json) {
                    value.to_string()
                } else {
                    plain(value)
                };
                for function in functions {
                    match function {
                        Function::Json => {}
                        Function::Upper => text = text.to_uppercase(),
                        Function::Lower => text = text.to_lowercase(),
                    }
                }
                out.push_str(&text);
            }
        }
    }
    out
}

/// The header docker shows for a custom table: each field's column header (or the field
/// name in capitals), literal text kept.
fn header_line(parts: &[Part], columns: &[Column]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Action { field: None, .. } => {}
            Part::Action {
                field: Some(name), ..
            } => match columns.iter().find(|c| c.field == name) {
                Some(column) => out.push_str(column.header),
                None => out.push_str(&name.rsplit('.').next().unwrap_or(name).to_uppercase()),
            },
        }
    }
    out
}

/// A value as docker prints it in text: strings bare, null as nothing, the rest as JSON.
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
            Ok("REPOSITORY                 TAG      IMAGE ID\n\
                busybox                    latest   0123456789ab\n\
                localhost:5000/wordpress   6        ba9876543210\n"),
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
            "{{index .Tag 1}}",
            Err(FormatError::BadAction {
                format: "{{index .Tag 1}}".into(),
                action: "index .Tag 1".into(),
            }),
        );
        let unknown = Format::parse("{{.Nope}}").and_then(|f| f.render(&COLUMNS, &rows()));
        assert!(
            matches!(unknown, Err(FormatError::UnknownField { ref field, .. }) if field == "Nope"),
            "{unknown:?}"
        );
    }
}
