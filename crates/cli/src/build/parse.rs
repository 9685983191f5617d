//! Dockerfile parsing: text in, a list of [`Instruction`]s out, each with its line.
//!
//! The grammar is docker's: parser directives at the very top (`# syntax=…`,
//! `# escape=\`` or `# escape=\\`), comment lines (`#` as the first non-blank character,
//! dropped even inside a continuation), line continuations with the escape character at
//! the end of a line, `INSTRUCTION arguments` with a case-insensitive keyword, leading
//! `--flag=value` options for the instructions that take them, and the JSON (exec) form
//! beside the shell form. Variable substitution is not done here: it needs the build's
//! state (`ARG`, `ENV`), see [`super::words`]. Heredocs (`RUN <<EOF`) are refused with a
//! clear error.
//!
//! This module does no I/O and never panics on any input.
//!
//! ```
//! use stencil::build::parse::{Args, Keyword, parse};
//!
//! let file = parse("Dockerfile", "FROM busybox AS base\n# note\nRUN echo a \\\n  b\nCMD [\"sh\"]\n").unwrap();
//! assert_eq!(file.instructions.len(), 3);
//! assert_eq!(file.instructions[1].keyword, Keyword::Run);
//! assert_eq!(file.instructions[1].line, 3);
//! assert_eq!(file.instructions[1].args, Args::Text("echo a   b".into()));
//! assert_eq!(file.instructions[2].args, Args::Json(vec!["sh".into()]));
//! ```

use std::fmt;

/// A Dockerfile error, with the file name and line it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The Dockerfile's name as the user gave it.
    pub file: String,
    /// The 1-based line of the instruction at fault.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The instructions of a Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `FROM`
    From,
    /// `RUN`
    Run,
    /// `CMD`
    Cmd,
    /// `LABEL`
    Label,
    /// `MAINTAINER` (deprecated; sets the author)
    Maintainer,
    /// `EXPOSE`
    Expose,
    /// `ENV`
    Env,
    /// `ADD`
    Add,
    /// `COPY`
    Copy,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `VOLUME`
    Volume,
    /// `USER`
    User,
    /// `WORKDIR`
    Workdir,
    /// `ARG`
    Arg,
    /// `ONBUILD`
    Onbuild,
    /// `STOPSIGNAL`
    Stopsignal,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `SHELL`
    Shell,
}

impl Keyword {
    const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The keyword as written in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// The keyword for `word`, in any case.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }

    /// Whether the instruction accepts leading `--flag` options.
    fn takes_flags(self) -> bool {
        matches!(
            self,
            Keyword::From | Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::Healthcheck
        )
    }

    /// Whether a JSON array argument is the exec form rather than text.
    fn takes_json(self) -> bool {
        matches!(
            self,
            Keyword::Run
                | Keyword::Cmd
                | Keyword::Entrypoint
                | Keyword::Shell
                | Keyword::Copy
                | Keyword::Add
                | Keyword::Volume
        )
    }
}

/// The arguments of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// The JSON (exec) form: `["a", "b"]`.
    Json(Vec<String>),
    /// The shell form: the text after the keyword and flags, continuations joined.
    Text(String),
}

/// One `--name=value` option (`--name` alone has no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name, without the dashes.
    pub name: String,
    /// The value, unexpanded.
    pub value: Option<String>,
}

/// One instruction of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction.
    pub keyword: Keyword,
    /// Its leading options.
    pub flags: Vec<Flag>,
    /// Its arguments.
    pub args: Args,
    /// The instruction as written (continuations joined), for the `Step` lines.
    pub original: String,
}

impl Instruction {
    /// The value of flag `name`, if given (an empty string for `--name` alone).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value.as_deref().unwrap_or(""))
    }

    /// The text of the shell form, or the JSON form written back as JSON.
    pub fn args_text(&self) -> String {
        match &self.args {
            Args::Text(text) => text.clone(),
            Args::Json(list) => serde_json::to_string(list).unwrap_or_default(),
        }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=\``).
    pub escape: char,
    /// The `# syntax=` directive, recorded but not acted on.
    pub syntax: Option<String>,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

/// Parses Dockerfile `text`; `file` names it in errors (`Dockerfile:7: …`).
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut seen_directives: Vec<String> = Vec::new();
    let mut index = 0;
    // Parser directives: only at the very top, stopped by anything else.
    while index < lines.len() {
        let Some((name, value)) = directive(lines[index]) else {
            break;
        };
        let lower = name.to_ascii_lowercase();
        if !["syntax", "escape", "check"].contains(&lower.as_str()) {
            break;
        }
        if seen_directives.contains(&lower) {
            return Err(error(
                index + 1,
                format!("only one {lower} parser directive can be used"),
            ));
        }
        seen_directives.push(lower.clone());
        match lower.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(error(
                            index + 1,
                            format!("invalid escape token {other:?}: it must be ` or \\"),
                        ));
                    }
                }
            }
            "syntax" => syntax = Some(value),
            _ => {}
        }
        index += 1;
    }

    let mut instructions = Vec::new();
    while index < lines.len() {
        let line = lines[index];
        let start = index + 1;
        index += 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut logical = String::new();
        let mut current = line;
        loop {
            match strip_continuation(current, escape) {
                Some(body) => {
                    logical.push_str(body);
                    // The next line that is neither blank nor a comment continues this one.
                    let mut next = None;
                    while index < lines.len() {
                        let candidate = lines[index];
                        index += 1;
                        let t = candidate.trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            continue;
                        }
                        next = Some(candidate);
                        break;
                    }
                    match next {
                        Some(line) => current = line,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(current);
                    break;
                }
            }
        }
        instructions.push(instruction(start, logical.trim()).map_err(|m| error(start, m))?);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

/// `# name = value` as a directive, if the line is one.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then(|| (name.to_owned(), value.trim().to_owned()))
}

/// The line without its trailing escape character (and the blanks after it), when it
/// continues on the next line.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end_matches([' ', '\t', '\r']);
    let body = trimmed.strip_suffix(escape)?;
    // An escaped escape at the end (`\\`) is a literal, not a continuation.
    let run = body.chars().rev().take_while(|c| *c == escape).count();
    (run % 2 == 0).then_some(body)
}

fn instruction(line: usize, text: &str) -> Result<Instruction, String> {
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(w, r)| (w, r.trim_start()));
    let Some(keyword) = Keyword::from_word(word) else {
        return Err(format!(
            "unknown instruction: {} (known: FROM, RUN, CMD, LABEL, EXPOSE, ENV, ADD, COPY, ENTRYPOINT, VOLUME, USER, WORKDIR, ARG, ONBUILD, STOPSIGNAL, HEALTHCHECK, SHELL)",
            word.to_ascii_uppercase()
        ));
    };
    let mut flags = Vec::new();
    let mut rest = rest;
    if keyword.takes_flags() {
        while let Some(after) = rest.strip_prefix("--") {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            let token = &after[..end];
            if token.is_empty() {
                // `--` alone ends the options.
                rest = after[end..].trim_start();
                break;
            }
            let (name, value) = match token.split_once('=') {
                Some((name, value)) => (name, Some(unquote(value))),
                None => (token, None),
            };
            flags.push(Flag {
                name: name.to_ascii_lowercase(),
                value,
            });
            rest = after[end..].trim_start();
        }
    }
    let rest = rest.trim_end();
    if rest.is_empty() {
        return Err(format!(
            "{} requires at least one argument",
            keyword.as_str()
        ));
    }
    if matches!(keyword, Keyword::Run | Keyword::Copy | Keyword::Add) && has_heredoc(rest) {
        return Err(format!(
            "heredocs ({} <<EOF) are not supported by stencil build: put the text in a file of the build context and COPY it, or write it with printf in RUN",
            keyword.as_str()
        ));
    }
    let args = if keyword.takes_json() && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(list) => Args::Json(list),
            Err(_) if keyword == Keyword::Shell => {
                return Err(
                    "SHELL requires the JSON form, like SHELL [\"/bin/sh\", \"-c\"]".to_owned(),
                );
            }
            // Docker falls back to the shell form when the JSON does not parse.
            Err(_) => Args::Text(rest.to_owned()),
        }
    } else if keyword == Keyword::Shell {
        return Err("SHELL requires the JSON form, like SHELL [\"/bin/sh\", \"-c\"]".to_owned());
    } else {
        Args::Text(rest.to_owned())
    };
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
        original: format!(
            "{} {}",
            keyword.as_str(),
            text.split_once(char::is_whitespace)
                .map_or("", |(_, r)| r.trim())
        ),
    })
}

/// A flag value with one pair of surrounding quotes removed.
fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return value[1..value.len() - 1].to_owned();
        }
    }
    value.to_owned()
}

/// Whether `text` holds a heredoc marker such as `<<EOF`, `<<-EOT` or `<<"END"`.
fn has_heredoc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'<' && bytes.get(i + 1) == Some(&b'<') && bytes.get(i + 2) != Some(&b'<') {
            let mut j = i + 2;
            if bytes.get(j) == Some(&b'-') {
                j += 1;
            }
            if matches!(bytes.get(j), Some(b'"' | b'\'')) {
                j += 1;
            }
            if bytes
                .get(j)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            {
                return true;
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line, keyword, flags and arguments expected of each instruction.
    type Expected<'a> = Vec<(usize, Keyword, Vec<(&'a str, Option<&'a str>)>, Args)>;

    #[track_caller]
    fn check(text: &str, expected: Result<Expected<'_>, &str>) {
        match (parse("Dockerfile", text), expected) {
            (Ok(file), Ok(want)) => {
                let got: Vec<_> = file
                    .instructions
                    .iter()
                    .map(|i| {
                        (
                            i.line,
                            i.keyword,
                            i.flags
                                .iter()
                                .map(|f| (f.name.clone(), f.value.clone()))
                                .collect::<Vec<_>>(),
                            i.args.clone(),
                        )
                    })
                    .collect();
                let want: Vec<_> = want
                    .into_iter()
                    .map(|(l, k, f, a)| {
                        (
                            l,
                            k,
                            f.into_iter()
                                .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)))
                                .collect::<Vec<_>>(),
                            a,
                        )
                    })
                    .collect();
                assert_eq!(got, want, "{text:?}");
            }
            (Err(error), Err(needle)) => {
                let text = error.to_string();
                assert!(text.contains(needle), "{text}");
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }

    fn text(s: &str) -> Args {
        Args::Text(s.to_owned())
    }

    fn json(items: &[&str]) -> Args {
        Args::Json(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn instructions_lines_and_forms() {
        check(
            "FROM busybox\nrun echo hi\nCMD [\"sh\", \"-c\"]\n",
            Ok(vec![
                (1, Keyword::From, vec![], text("busybox")),
                (2, Keyword::Run, vec![], text("echo hi")),
                (3, Keyword::Cmd, vec![], json(&["sh", "-c"])),
            ]),
        );
        // Continuations join; comments and blank lines inside are dropped.
        check(
            "FROM a\n\n# c\nRUN one \\\n# inside\n\n  two \\  \n three\nENV A=1",
            Ok(vec![
                (1, Keyword::From, vec![], text("a")),
                (4, Keyword::Run, vec![], text("one   two  three")),
                (9, Keyword::Env, vec![], text("A=1")),
            ]),
        );
        // Invalid JSON falls back to the shell form, as docker does.
        check(
            "CMD [not json]",
            Ok(vec![(1, Keyword::Cmd, vec![], text("[not json]"))]),
        );
        // ENV does not take the JSON form.
        check(
            "LABEL [\"a\"]",
            Ok(vec![(1, Keyword::Label, vec![], text("[\"a\"]"))]),
        );
    }

    #[test]
    fn flags_are_taken_where_docker_takes_them() {
        check(
            "COPY --from=build --chown=1:2 --chmod=\"755\" a b\nFROM --platform=linux/amd64 x AS y\nRUN --network=none true",
            Ok(vec![
                (
                    1,
                    Keyword::Copy,
                    vec![
                        ("from", Some("build")),
                        ("chown", Some("1:2")),
                        ("chmod", Some("755")),
                    ],
                    text("a b"),
                ),
                (
                    2,
                    Keyword::From,
                    vec![("platform", Some("linux/amd64"))],
                    text("x AS y"),
                ),
                (
                    3,
                    Keyword::Run,
                    vec![("network", Some("none"))],
                    text("true"),
                ),
            ]),
        );
        check(
            "ENV --x=1",
            Ok(vec![(1, Keyword::Env, vec![], text("--x=1"))]),
        );
    }

    #[test]
    fn directives_and_escape() {
        check(
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN dir c:\\ `\n  d",
            Ok(vec![
                (3, Keyword::From, vec![], text("a")),
                (4, Keyword::Run, vec![], text("dir c:\\   d")),
            ]),
        );
        // A directive after an instruction or comment is a comment.
        let file =
            parse("Dockerfile", "# hello\n# escape=`\nFROM a\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.escape, '\\');
        let file = parse("Dockerfile", "# syntax = x/y\nFROM a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.syntax.as_deref(), Some("x/y"));
        check(
            "# escape=x\nFROM a",
            Err("Dockerfile:1: invalid escape token"),
        );
        check(
            "# escape=`\n# escape=`\nFROM a",
            Err("Dockerfile:2: only one escape"),
        );
        // An escaped escape at the end of a line is a literal backslash.
        check(
            "RUN echo \\\\\nCMD x",
            Ok(vec![
                (1, Keyword::Run, vec![], text("echo \\\\")),
                (2, Keyword::Cmd, vec![], text("x")),
            ]),
        );
    }

    #[test]
    fn errors_point_at_the_line() {
        check(
            "FROM a\n\nFOO bar",
            Err("Dockerfile:3: unknown instruction: FOO"),
        );
        check(
            "FROM a\nRUN",
            Err("Dockerfile:2: RUN requires at least one argument"),
        );
        check(
            "FROM a\nRUN cat <<EOF\nhi\nEOF",
            Err("Dockerfile:2: heredocs (RUN <<EOF) are not supported"),
        );
        check("COPY <<-\"X\" /a", Err("heredocs"));
        check(
            "SHELL sh -c",
            Err("Dockerfile:1: SHELL requires the JSON form"),
        );
        // A trailing continuation at the end of the file is accepted.
        check("FROM a \\", Ok(vec![(1, Keyword::From, vec![], text("a"))]));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "(?s).{0,300}") {
            let _ = parse("Dockerfile", &text);
        }

        #[test]
        fn parsing_dockerfile_like_text_never_panics(
            lines in proptest::collection::vec(
                "(FROM|RUN|COPY|ENV|#|--|\\[|\\\\|`| |\"|<<|=|a|\n){0,12}", 0..12)
        ) {
            let _ = parse("Dockerfile", &lines.join("\n"));
        }
    }
}
