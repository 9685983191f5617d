//! Aligned text tables as docker prints them (columns padded by three spaces, ten wide at
//! least).
//!
//! ```
//! use stencil::render::table::render_table;
//!
//! let rows = vec![vec!["busybox".to_string(), "latest".to_string(), "5MB".to_string()]];
//! let text = render_table(&["REPOSITORY", "TAG", "SIZE"], &rows);
//! assert_eq!(text, "REPOSITORY   TAG       SIZE\nbusybox      latest    5MB\n");
//! ```

/// One column of a command's default table: the template field and its header.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The field name used in templates, e.g. `ID`.
    pub field: &'static str,
    /// The header docker prints for it, e.g. `IMAGE ID`.
    pub header: &'static str,
}

/// Docker's tabwriter settings (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`): cells are
/// padded with three spaces, a padded cell is ten wide at least, and the last column is
/// left as it is.
const PADDING: usize = 3;
const MIN_WIDTH: usize = 10;

/// Renders a header line and rows, each column as wide as its widest cell plus padding.
pub fn render_table<S: AsRef<str>>(headers: &[S], rows: &[Vec<String>]) -> String {
    render_table_wide(headers, rows, MIN_WIDTH)
}

/// [`render_table`] with padded cells `min_width` wide at least (`docker top` uses 20).
pub fn render_table_wide<S: AsRef<str>>(
    headers: &[S],
    rows: &[Vec<String>],
    min_width: usize,
) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h.as_ref())).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            text.push_str(cell);
            if i + 1 < columns {
                let pad = (widths[i] + PADDING).max(min_width) - width(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().map(AsRef::as_ref));
    for row in rows {
        line(&mut row.iter().map(String::as_str).take(columns));
    }
    out
}

fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(headers: &[&str], rows: &[&[&str]], expected: &str) {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        assert_eq!(render_table(headers, &rows), expected);
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three_and_ten_at_least() {
        check(&["A", "B"], &[], "A         B\n");
        check(
            &["REPOSITORY", "TAG", "SIZE"],
            &[&["docker.io/x", "1", "5MB"], &["y", "latest", "10kB"]],
            "REPOSITORY    TAG       SIZE\ndocker.io/x   1         5MB\ny             latest    10kB\n",
        );
        // As `docker ps`: a 12-digit ID column is 15 wide.
        check(
            &["CONTAINER ID", "IMAGE"],
            &[&["0123456789ab", "busybox"]],
            "CONTAINER ID   IMAGE\n0123456789ab   busybox\n",
        );
        // Wide characters count once each, and the last column is never padded.
        check(&["N", "Z"], &[&["é", ""]], "N         Z\né\n");
    }
}
