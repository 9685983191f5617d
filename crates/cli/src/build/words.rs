//! Variable substitution and word splitting in Dockerfile arguments, as docker's shell
//! lexer does them for `FROM`, `COPY`, `ADD`, `ENV`, `ARG`, `LABEL`, `EXPOSE`, `USER`,
//! `WORKDIR`, `VOLUME` and `STOPSIGNAL`.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?message}`, `${VAR?message}`; single quotes (literal), double
//! quotes (substitution inside; the escape character escapes `"`, `$` and itself), and the
//! escape character (`\` or `` ` ``) outside quotes. An unset variable is empty. `RUN`,
//! `CMD` and `ENTRYPOINT` are not substituted here: their shell does it.
//!
//! ```
//! use stencil::build::words::Lexer;
//!
//! let lookup = |name: &str| (name == "V").then(|| "1.2".to_owned());
//! let lexer = Lexer::new('\\', &lookup);
//! assert_eq!(lexer.word("app-${V}-${X:-none}").unwrap(), "app-1.2-none");
//! assert_eq!(lexer.words("a 'b c' \"$V d\" \\$V").unwrap(), ["a", "b c", "1.2 d", "$V"]);
//! ```

/// Expands variables in Dockerfile arguments.
pub struct Lexer<'a> {
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lexer<'a> {
    /// A lexer with escape character `escape` and variables from `lookup`.
    pub fn new(escape: char, lookup: &'a dyn Fn(&str) -> Option<String>) -> Lexer<'a> {
        Lexer { escape, lookup }
    }

    /// The whole of `text` as one word: variables expanded, quotes and escapes removed.
    pub fn word(&self, text: &str) -> Result<String, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut words = self.process(&chars, false)?;
        Ok(words.pop().unwrap_or_default())
    }

    /// `text` split into words on blanks outside quotes, variables expanded (an unquoted
    /// expansion is split too), quotes and escapes removed.
    pub fn words(&self, text: &str) -> Result<Vec<String>, String> {
        let chars: Vec<char> = text.chars().collect();
        self.process(&chars, true)
    }

    fn process(&self, chars: &[char], split: bool) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut pos = 0;
        while pos < chars.len() {
            let c = chars[pos];
            if c == self.escape {
                match chars.get(pos + 1) {
                    Some(next) => word.push(*next),
                    None => word.push(c),
                }
                pos += 2;
                in_word = true;
                continue;
            }
            match c {
                c if split && c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                    pos += 1;
                }
                '\'' => {
                    pos += 1;
                    loop {
                        match chars.get(pos) {
                            Some('\'') => break,
                            Some(c) => word.push(*c),
                            None => {
                                return Err(
                                    "unexpected end of text while looking for the matching single quote (')"
                                        .to_owned(),
                                );
                            }
                        }
                        pos += 1;
                    }
                    pos += 1;
                    in_word = true;
                }
                '"' => {
                    pos += 1;
                    loop {
                        match chars.get(pos) {
                            Some('"') => break,
                            Some(&c) if c == self.escape => {
                                match chars.get(pos + 1) {
                                    Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                        word.push(n);
                                        pos += 1;
                                    }
                                    _ => word.push(c),
                                }
                                pos += 1;
                            }
                            Some('$') => word.push_str(&self.dollar(chars, &mut pos)?),
                            Some(c) => {
                                word.push(*c);
                                pos += 1;
                            }
                            None => {
                                return Err(
                                    "unexpected end of text while looking for the matching double quote (\")"
                                        .to_owned(),
                                );
                            }
                        }
                    }
                    pos += 1;
                    in_word = true;
                }
                '$' => {
                    let value = self.dollar(chars, &mut pos)?;
                    if split {
                        // Blanks in an unquoted expansion separate words, as in a shell.
                        let mut parts = value.split(char::is_whitespace).peekable();
                        while let Some(part) = parts.next() {
                            word.push_str(part);
                            if !part.is_empty() {
                                in_word = true;
                            }
                            if parts.peek().is_some() && in_word {
                                words.push(std::mem::take(&mut word));
                                in_word = false;
                            }
                        }
                    } else {
                        word.push_str(&value);
                        in_word = true;
                    }
                }
                c => {
                    word.push(c);
                    in_word = true;
                    pos += 1;
                }
            }
        }
        if in_word || !split {
            words.push(word);
        }
        Ok(words)
    }

    /// Expands the `$…` at `chars[*pos]`, leaving `pos` after it.
    fn dollar(&self, chars: &[char], pos: &mut usize) -> Result<String, String> {
        let name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
        let start = *pos + 1;
        match chars.get(start) {
            Some('{') => {
                let mut end = start + 1;
                while chars.get(end).is_some_and(name_char) {
                    end += 1;
                }
                let name: String = chars[start + 1..end].iter().collect();
                if name.is_empty() {
                    return Err("bad substitution: ${…} needs a variable name".to_owned());
                }
                let value = (self.lookup)(&name);
                match chars.get(end) {
                    Some('}') => {
                        *pos = end + 1;
                        return Ok(value.unwrap_or_default());
                    }
                    None => return Err(format!("missing '}}' after ${{{name}")),
                    _ => {}
                }
                let colon = chars.get(end) == Some(&':');
                let op_at = if colon { end + 1 } else { end };
                let Some(&op) = chars.get(op_at).filter(|c| matches!(c, '-' | '+' | '?')) else {
                    return Err(format!(
                        "unsupported substitution in ${{{name}…}}: use ${{{name}}}, ${{{name}:-default}}, ${{{name}:+alternative}} or ${{{name}:?message}}"
                    ));
                };
                // The operand runs to the matching brace.
                let mut depth = 1;
                let mut end = op_at + 1;
                while end < chars.len() {
                    match chars[end] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        c if c == self.escape => end += 1,
                        _ => {}
                    }
                    end += 1;
                }
                if end >= chars.len() {
                    return Err(format!("missing '}}' after ${{{name}"));
                }
                let operand = &chars[op_at + 1..end];
                *pos = end + 1;
                let set = value.is_some();
                let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                let present = if colon { non_empty } else { set };
                let expand = |operand: &[char]| -> Result<String, String> {
                    Ok(self.process(operand, false)?.pop().unwrap_or_default())
                };
                match op {
                    '-' if present => Ok(value.unwrap_or_default()),
                    '-' => expand(operand),
                    '+' if present => expand(operand),
                    '+' => Ok(String::new()),
                    _ if present => Ok(value.unwrap_or_default()),
                    _ => {
                        let message = expand(operand)?;
                        Err(if message.is_empty() {
                            format!("{name}: parameter not set")
                        } else {
                            format!("{name}: {message}")
                        })
                    }
                }
            }
            Some(c) if name_char(c) => {
                let mut end = start;
                while chars.get(end).is_some_and(name_char) {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                *pos = end;
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => {
                *pos = start;
                Ok("$".to_owned())
            }
        }
    }
}

/// Splits `text` on blanks outside quotes, keeping quotes and escapes as they are (for
/// `ENV` and `LABEL`, whose `KEY=VALUE` words are expanded one by one afterwards).
pub fn split_raw(text: &str, escape: char) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            word.push(c);
            if let Some(next) = chars.next() {
                word.push(next);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.push(c);
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => word.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed quote {q}"));
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "SPACED" => Some("x  y".into()),
            _ => None,
        }
    }

    #[track_caller]
    fn check_word(text: &str, expected: Result<&str, &str>) {
        let lexer = Lexer::new('\\', &lookup);
        match (lexer.word(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
            (Err(got), Err(needle)) => assert!(got.contains(needle), "{text:?}: {got}"),
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn substitution_like_docker() {
        check_word("$A", Ok("a"));
        check_word("${A}b", Ok("ab"));
        check_word("$Ab", Ok(""));
        check_word("${UNSET}", Ok(""));
        check_word("${UNSET:-d}", Ok("d"));
        check_word("${EMPTY:-d}", Ok("d"));
        check_word("${EMPTY-d}", Ok(""));
        check_word("${UNSET-d}", Ok("d"));
        check_word("${A:-d}", Ok("a"));
        check_word("${A:+x}", Ok("x"));
        check_word("${EMPTY:+x}", Ok(""));
        check_word("${EMPTY+x}", Ok("x"));
        check_word("${UNSET:+x}", Ok(""));
        check_word("${UNSET:-${A}-nested}", Ok("a-nested"));
        check_word("${UNSET:-'q z'}", Ok("q z"));
        check_word("\\$A", Ok("$A"));
        check_word("'$A'", Ok("$A"));
        check_word("\"$A \\\" \\x\"", Ok("a \" \\x"));
        check_word("$", Ok("$"));
        check_word("a$ b", Ok("a$ b"));
        check_word("${UNSET:?must be set}", Err("UNSET: must be set"));
        check_word("${A:?x}", Ok("a"));
        check_word("${A", Err("missing '}'"));
        check_word("${A:-x", Err("missing '}'"));
        check_word("${}", Err("bad substitution"));
        check_word("${A/x/y}", Err("unsupported substitution"));
        check_word("'open", Err("single quote"));
        check_word("\"open", Err("double quote"));
    }

    #[test]
    fn splitting_words() {
        let lexer = Lexer::new('\\', &lookup);
        assert_eq!(
            lexer
                .words(" a  $SPACED \"$SPACED\" b\\ c ")
                .unwrap_or_default(),
            ["a", "x", "y", "x  y", "b c"]
        );
        assert_eq!(
            lexer.words("$EMPTY").unwrap_or_default(),
            Vec::<String>::new()
        );
        assert_eq!(lexer.words("''").unwrap_or_default(), [""]);
        let backtick = Lexer::new('`', &lookup);
        assert_eq!(backtick.word("c:\\dir`$A").unwrap_or_default(), "c:\\dir$A");
        assert_eq!(
            split_raw("A=1 B=\"x y\" C='$z w' D=e\\ f", '\\').unwrap_or_default(),
            ["A=1", "B=\"x y\"", "C='$z w'", "D=e\\ f"]
        );
        assert!(split_raw("A=\"x", '\\').is_err());
    }

    proptest::proptest! {
        #[test]
        fn expansion_never_panics(text in "(?s).{0,200}") {
            let lexer = Lexer::new('\\', &lookup);
            let _ = lexer.word(&text);
            let _ = lexer.words(&text);
            let _ = split_raw(&text, '`');
        }
    }
}
