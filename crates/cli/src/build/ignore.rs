//! `.dockerignore`: which paths of the build context `COPY` and `ADD` may not see.
//!
//! The rules are docker's: one pattern a line, `#` comments and blank lines skipped, a
//! leading `!` re-includes, a leading `/` and `./` are dropped; `*` matches within one path
//! segment, `?` one character, `[a-z]` a class (`[^a]` negated), `\` escapes, and `**`
//! matches any number of segments. A pattern that matches a directory excludes everything
//! below it; the last pattern that matches a path decides.
//!
//! ```
//! use stencil::build::ignore::Ignore;
//!
//! let ignore = Ignore::parse("# build output\ntarget\n*.log\n!keep.log\n**/secret*\n");
//! assert!(ignore.excludes("target/debug/app"));
//! assert!(ignore.excludes("debug.log"));
//! assert!(!ignore.excludes("keep.log"));
//! assert!(ignore.excludes("a/b/secret.txt"));
//! assert!(!ignore.excludes("src/main.rs"));
//! ```

/// The parsed patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    include: bool,
}

impl Ignore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segments: Vec<String> = body
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_owned)
                .collect();
            if segments.is_empty() {
                continue;
            }
            patterns.push(Pattern { segments, include });
        }
        Ignore { patterns }
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // The path itself or one of its parent directories.
            let matched =
                (1..=segments.len()).any(|n| match_segments(&pattern.segments, &segments[..n], 0));
            if matched {
                excluded = !pattern.include;
            }
        }
        excluded
    }

    /// Whether some pattern re-includes paths, so an excluded directory must still be
    /// walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.include)
    }
}

/// The recursion depth of `**` matching is bounded by the number of segments; this caps
/// pathological patterns (`**/**/**/…`) all the same.
const MAX_DEPTH: usize = 64;

fn match_segments(pattern: &[String], path: &[&str], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match pattern.first() {
        None => path.is_empty(),
        Some(first) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(&pattern[1..], &path[skip..], depth + 1))
        }
        Some(first) => {
            !path.is_empty()
                && glob_match(first, path[0])
                && match_segments(&pattern[1..], &path[1..], depth + 1)
        }
    }
}

/// Go's `filepath.Match` for one segment: `*`, `?`, `[…]`, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class_match(&p, pi, n[ni]),
            Some('\\') => match p.get(pi + 1) {
                Some(c) if *c == n[ni] => Some(pi + 2),
                _ => None,
            },
            Some(c) if *c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((star_p, star_n)) => {
                    pi = star_p + 1;
                    ni = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns the index after
/// the class when it matches.
fn class_match(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some('^' | '!'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut low = *p.get(i)?;
        if low == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        if low == '\\' {
            i += 1;
            low = *p.get(i)?;
        }
        let mut high = low;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            high = *p.get(i + 2)?;
            i += 2;
        }
        if low <= c && c <= high {
            matched = true;
        }
        i += 1;
    }
    (matched != negated).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_go_filepath_match() {
        for (pattern, name, want) in [
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abd", false),
            ("a?c", "abc", true),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a]x", "bx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*.rs", "main.rs", true),
            ("[", "[", false),
            ("", "", true),
        ] {
            assert_eq!(glob_match(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn ignore_rules_like_docker() {
        let ignore = Ignore::parse("/build\n./tmp/*.o\n**/*.md\n!docs/README.md\ndir\n!dir/keep\n");
        for (path, want) in [
            ("build", true),
            ("build/x", true),
            ("src/build", false),
            ("tmp/a.o", true),
            ("tmp/a.c", false),
            ("README.md", true),
            ("a/b/c.md", true),
            ("docs/README.md", false),
            ("dir/other", true),
            ("dir/keep", false),
            ("dir/keep/below", false),
        ] {
            assert_eq!(ignore.excludes(path), want, "{path}");
        }
        assert!(ignore.has_exceptions());
        assert!(!Ignore::parse("# only\n\n").excludes("x"));
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(pattern in "[*?\\[\\]\\\\!^a-c/-]{0,20}", path in "[a-c/.]{0,20}") {
            let ignore = Ignore::parse(&pattern);
            let _ = ignore.excludes(&path);
            let _ = glob_match(&pattern, &path);
        }
    }
}
