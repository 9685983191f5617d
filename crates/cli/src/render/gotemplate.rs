//! The subset of Go's `text/template` that people write in docker's `--format`, over JSON
//! values: fields (`.A.B`, `.`, `$`, `$.A`, `$var`), string, number and boolean literals,
//! pipelines (`.A | json`) and parenthesised sub-pipelines, `if`/`else if`/`else`, `range`
//! (with `$v :=` or `$i, $v :=`), `with`, `end`, the trim markers `{{-` and `-}}`, and the
//! functions `json`, `upper`, `lower`, `title`, `len`, `index`, `join`, `split`, `print`,
//! `printf` (`%s %d %v %q %f %%`), `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`,
//! `and`, `or`.
//!
//! Values print as Go prints them: lists as `[a b]`, objects as `map[k:v]` (keys sorted),
//! integers without a fraction. A missing field prints nothing (Go's `<no value>` is not
//! kept: docker users filter on empty output).
//!
//! ```
//! use serde_json::json;
//! use stencil::render::gotemplate::Template;
//!
//! let t = Template::parse("{{index .Tags 0}} {{range .Tags}}[{{.}}]{{end}} {{.Tags}}").unwrap();
//! let row = json!({"Tags": ["a:1", "b:2"]});
//! assert_eq!(t.execute(&row).unwrap(), "a:1 [a:1][b:2] [a:1 b:2]");
//! ```

use serde_json::{Number, Value};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        variables: Vec<String>,
        over: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        value: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// Commands separated by `|`: each result is the last argument of the next.
#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    commands: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `.A.B` (empty path: `.`).
    Field(Vec<String>),
    /// `$`, `$.A`, `$name`, `$name.A`.
    Variable(String, Vec<String>),
    Literal(Value),
    Function(String),
    /// `(PIPELINE)`, or `(PIPELINE).A.B`: fields of its value.
    Nested(Pipeline, Vec<String>),
}

/// Deepest nesting of blocks or parentheses a template may have (bounded so that no
/// `--format` can exhaust the stack).
const MAX_DEPTH: usize = 64;

const FUNCTIONS: &[&str] = &[
    "json", "upper", "lower", "title", "len", "index", "join", "split", "print", "printf",
    "println", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or",
];

/// Why a template cannot be parsed or run; the caller adds the whole template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without `}}`.
    Unclosed,
    /// An action that does not parse (the text inside the braces, and why).
    Syntax(String, String),
    /// Running it failed (why).
    Execute(String),
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let tokens = split(text)?;
        let mut position = 0;
        let (nodes, stop) = parse_nodes(&tokens, &mut position, 0)?;
        if let Some(stop) = stop {
            return Err(TemplateError::Syntax(
                stop,
                "there is no {{if}}, {{range}} or {{with}} for it".to_owned(),
            ));
        }
        Ok(Template { nodes })
    }

    /// Runs the template on `dot`.
    pub fn execute(&self, dot: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut scope = Scope {
            root: dot,
            variables: Vec::new(),
        };
        run(&self.nodes, dot, &mut scope, &mut out)?;
        Ok(out)
    }

    /// The field paths of simple actions (`{{.A.B}}`, `{{json .A}}`, …) at the top level,
    /// where `.` is the row: for checking names and for table headers.
    pub fn top_fields(&self) -> Vec<Vec<String>> {
        let mut fields = Vec::new();
        for node in &self.nodes {
            let pipelines: Vec<&Pipeline> = match node {
                Node::Text(_) => Vec::new(),
                Node::Action(pipeline) => vec![pipeline],
                Node::If { branches, .. } => branches.iter().map(|(p, _)| p).collect(),
                Node::Range { over, .. } => vec![over],
                Node::With { value, .. } => vec![value],
            };
            for pipeline in pipelines {
                collect_fields(pipeline, &mut fields);
            }
        }
        fields
    }

    /// The header of each top-level action for `table` templates, with the literal text
    /// between them: `name(path)` gives a field's header.
    pub fn header(&self, name: &dyn Fn(&[String]) -> String) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(pipeline) => {
                    let mut fields = Vec::new();
                    collect_fields(pipeline, &mut fields);
                    if let Some(first) = fields.first() {
                        out.push_str(&name(first));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn collect_fields(pipeline: &Pipeline, fields: &mut Vec<Vec<String>>) {
    for command in &pipeline.commands {
        for operand in command {
            match operand {
                Operand::Field(path) if !path.is_empty() => fields.push(path.clone()),
                Operand::Nested(inner, _) => collect_fields(inner, fields),
                _ => {}
            }
        }
    }
}

/// A piece of the source: text, or the inside of an action (trim markers applied).
enum Token {
    Text(String),
    Action(String),
}

fn split(text: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let mut literal = rest[..start].to_owned();
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let mut inside = &after[..end];
        if let Some(trimmed) = inside.strip_prefix('-')
            && (trimmed.is_empty() || trimmed.starts_with(char::is_whitespace))
        {
            literal = literal.trim_end().to_owned();
            inside = trimmed;
        }
        let mut trim_after = false;
        if let Some(trimmed) = inside.strip_suffix('-')
            && (trimmed.is_empty() || trimmed.ends_with(char::is_whitespace))
        {
            trim_after = true;
            inside = trimmed;
        }
        if !literal.is_empty() {
            tokens.push(Token::Text(literal));
        }
        tokens.push(Token::Action(inside.trim().to_owned()));
        rest = &after[end + 2..];
        if trim_after {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        tokens.push(Token::Text(rest.to_owned()));
    }
    Ok(tokens)
}

/// Parses nodes until `{{end}}`, `{{else…}}` or the end; returns the stopping action.
fn parse_nodes(
    tokens: &[Token],
    position: &mut usize,
    depth: usize,
) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    if depth > MAX_DEPTH {
        return Err(TemplateError::Syntax(
            String::new(),
            format!("blocks are nested more than {MAX_DEPTH} deep"),
        ));
    }
    let mut nodes = Vec::new();
    while let Some(token) = tokens.get(*position) {
        *position += 1;
        let action = match token {
            Token::Text(text) => {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            Token::Action(action) => action,
        };
        let (keyword, rest) = match action.split_once(char::is_whitespace) {
            Some((keyword, rest)) => (keyword, rest.trim()),
            None => (action.as_str(), ""),
        };
        match keyword {
            "end" | "else" => return Ok((nodes, Some(action.clone()))),
            "if" => {
                let mut branches = vec![(pipeline_of(action, rest)?, Vec::new())];
                let mut otherwise = Vec::new();
                loop {
                    let (body, stop) = parse_nodes(tokens, position, depth + 1)?;
                    let stop = stop.ok_or_else(|| unclosed(action))?;
                    match stop.as_str() {
                        "end" => {
                            set_body(&mut branches, &mut otherwise, body);
                            break;
                        }
                        "else" => {
                            set_body(&mut branches, &mut otherwise, body);
                            let (body, stop) = parse_nodes(tokens, position, depth + 1)?;
                            if stop.as_deref() != Some("end") {
                                return Err(unclosed(action));
                            }
                            otherwise = body;
                            break;
                        }
                        other => match other.strip_prefix("else if ") {
                            Some(condition) => {
                                set_body(&mut branches, &mut otherwise, body);
                                branches.push((pipeline_of(other, condition.trim())?, Vec::new()));
                            }
                            None => return Err(unclosed(action)),
                        },
                    }
                }
                nodes.push(Node::If {
                    branches,
                    otherwise,
                });
            }
            "range" | "with" => {
                let (variables, source) = declared(rest);
                let over = pipeline_of(action, source)?;
                let (body, stop) = parse_nodes(tokens, position, depth + 1)?;
                let otherwise = match stop.as_deref() {
                    Some("end") => Vec::new(),
                    Some("else") => {
                        let (otherwise, stop) = parse_nodes(tokens, position, depth + 1)?;
                        if stop.as_deref() != Some("end") {
                            return Err(unclosed(action));
                        }
                        otherwise
                    }
                    _ => return Err(unclosed(action)),
                };
                if keyword == "range" {
                    if variables.len() > 2 {
                        return Err(TemplateError::Syntax(
                            action.clone(),
                            "range declares at most two variables".to_owned(),
                        ));
                    }
                    nodes.push(Node::Range {
                        variables,
                        over,
                        body,
                        otherwise,
                    });
                } else {
                    nodes.push(Node::With {
                        value: over,
                        body,
                        otherwise,
                    });
                }
            }
            _ => nodes.push(Node::Action(pipeline_of(action, action)?)),
        }
    }
    Ok((nodes, None))
}

/// The body just parsed goes to the last `if`/`else if` branch.
fn set_body(branches: &mut [(Pipeline, Vec<Node>)], _otherwise: &mut [Node], body: Vec<Node>) {
    if let Some(last) = branches.last_mut() {
        last.1 = body;
    }
}

fn unclosed(action: &str) -> TemplateError {
    TemplateError::Syntax(action.to_owned(), "it has no {{end}}".to_owned())
}

/// `$i, $v := PIPELINE` → (["$i", "$v"], "PIPELINE"); no declaration → ([], rest).
fn declared(rest: &str) -> (Vec<String>, &str) {
    match rest.split_once(":=") {
        Some((names, source))
            if names
                .split(',')
                .all(|n| n.trim().starts_with('$') && n.trim().len() > 1) =>
        {
            let names = names.split(',').map(|n| n.trim().to_owned()).collect();
            (names, source.trim())
        }
        _ => (Vec::new(), rest),
    }
}

fn pipeline_of(action: &str, text: &str) -> Result<Pipeline, TemplateError> {
    let words = lex(text).map_err(|why| TemplateError::Syntax(action.to_owned(), why))?;
    let mut position = 0;
    let pipeline = parse_pipeline(&words, &mut position, 0)
        .map_err(|why| TemplateError::Syntax(action.to_owned(), why))?;
    if position != words.len() {
        return Err(TemplateError::Syntax(
            action.to_owned(),
            "unexpected \")\"".to_owned(),
        ));
    }
    Ok(pipeline)
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
    Text(String),
    Literal(Value),
    Pipe,
    Open,
    /// `)`, with the fields right after it (`).A.B`), if any.
    Close(Vec<String>),
}

fn lex(text: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '|' => {
                words.push(Word::Pipe);
                i += 1;
            }
            '(' => {
                words.push(Word::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                let mut path = Vec::new();
                if chars.get(i) == Some(&'.') {
                    let start = i;
                    while i < chars.len() && !chars[i].is_whitespace() && !"|()".contains(chars[i])
                    {
                        i += 1;
                    }
                    let text: String = chars[start + 1..i].iter().collect();
                    path = text.split('.').map(str::to_owned).collect();
                    if path.iter().any(String::is_empty) {
                        return Err(format!("bad field \")).{text}\""));
                    }
                }
                words.push(Word::Close(path));
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".to_owned()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => value.push('\n'),
                                Some('t') => value.push('\t'),
                                Some(other) => value.push(*other),
                                None => return Err("unterminated string".to_owned()),
                            }
                        }
                        Some(other) => value.push(*other),
                    }
                    i += 1;
                }
                i += 1;
                words.push(Word::Literal(Value::String(value)));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|c| *c == '`')
                    .ok_or("unterminated raw string")?;
                words.push(Word::Literal(Value::String(
                    chars[start..start + end].iter().collect(),
                )));
                i = start + end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"|()".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                words.push(match word.as_str() {
                    "true" => Word::Literal(Value::Bool(true)),
                    "false" => Word::Literal(Value::Bool(false)),
                    "nil" => Word::Literal(Value::Null),
                    _ => match word.parse::<i64>() {
                        Ok(n) => Word::Literal(Value::from(n)),
                        Err(_) => match word.parse::<f64>() {
                            Ok(f) if word.contains(['.', 'e']) && !word.starts_with('.') => {
                                Word::Literal(
                                    Number::from_f64(f).map_or(Value::Null, Value::Number),
                                )
                            }
                            _ => Word::Text(word),
                        },
                    },
                });
            }
        }
    }
    Ok(words)
}

fn parse_pipeline(words: &[Word], position: &mut usize, depth: usize) -> Result<Pipeline, String> {
    if depth > MAX_DEPTH {
        return Err(format!("parentheses are nested more than {MAX_DEPTH} deep"));
    }
    let mut commands = vec![Vec::new()];
    while let Some(word) = words.get(*position) {
        match word {
            Word::Close(_) => break,
            Word::Pipe => {
                *position += 1;
                if commands.last().is_none_or(Vec::is_empty) {
                    return Err("a \"|\" with nothing before it".to_owned());
                }
                commands.push(Vec::new());
            }
            Word::Open => {
                *position += 1;
                let inner = parse_pipeline(words, position, depth + 1)?;
                let Some(Word::Close(path)) = words.get(*position) else {
                    return Err("a \"(\" without its \")\"".to_owned());
                };
                *position += 1;
                push(&mut commands, Operand::Nested(inner, path.clone()));
            }
            Word::Literal(value) => {
                *position += 1;
                push(&mut commands, Operand::Literal(value.clone()));
            }
            Word::Text(text) => {
                *position += 1;
                push(&mut commands, operand(text)?);
            }
        }
    }
    if commands.iter().any(Vec::is_empty) {
        return Err("an empty command".to_owned());
    }
    for command in &commands {
        if command.len() > 1 && !matches!(command[0], Operand::Function(_)) {
            return Err("only a function takes arguments".to_owned());
        }
    }
    Ok(Pipeline { commands })
}

fn push(commands: &mut [Vec<Operand>], operand: Operand) {
    if let Some(last) = commands.last_mut() {
        last.push(operand);
    }
}

fn operand(word: &str) -> Result<Operand, String> {
    let path = |text: &str| -> Result<Vec<String>, String> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
        let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        if parts.iter().all(|p| valid(p)) {
            Ok(parts)
        } else {
            Err(format!("{word:?} is not a field"))
        }
    };
    if let Some(rest) = word.strip_prefix('.') {
        return Ok(Operand::Field(path(rest)?));
    }
    if let Some(rest) = word.strip_prefix('$') {
        let (name, fields) = match rest.split_once('.') {
            Some((name, fields)) => (name, fields),
            None => (rest, ""),
        };
        return Ok(Operand::Variable(format!("${name}"), path(fields)?));
    }
    if FUNCTIONS.contains(&word) {
        return Ok(Operand::Function(word.to_owned()));
    }
    Err(format!("{word:?} is not a field (.Name) or a function"))
}

struct Scope<'a> {
    root: &'a Value,
    variables: Vec<(String, Value)>,
}

fn run(
    nodes: &[Node],
    dot: &Value,
    scope: &mut Scope<'_>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => out.push_str(&text_of(&evaluate(pipeline, dot, scope)?)),
            Node::If {
                branches,
                otherwise,
            } => {
                let mut taken = false;
                for (condition, body) in branches {
                    if truthy(&evaluate(condition, dot, scope)?) {
                        run(body, dot, scope, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    run(otherwise, dot, scope, out)?;
                }
            }
            Node::With {
                value,
                body,
                otherwise,
            } => {
                let value = evaluate(value, dot, scope)?;
                if truthy(&value) {
                    run(body, &value, scope, out)?;
                } else {
                    run(otherwise, dot, scope, out)?;
                }
            }
            Node::Range {
                variables,
                over,
                body,
                otherwise,
            } => {
                let value = evaluate(over, dot, scope)?;
                let items: Vec<(Value, Value)> = match &value {
                    Value::Array(list) => list
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v.clone()))
                        .collect(),
                    // Go ranges over a map in key order.
                    Value::Object(map) => {
                        let mut keys: Vec<&String> = map.keys().collect();
                        keys.sort();
                        keys.into_iter()
                            .map(|k| (Value::String(k.clone()), map[k].clone()))
                            .collect()
                    }
                    Value::Null => Vec::new(),
                    Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i)))
                        .collect(),
                    other => {
                        return Err(TemplateError::Execute(format!(
                            "range over {}, which is not a list or a map",
                            text_of(other)
                        )));
                    }
                };
                if items.is_empty() {
                    run(otherwise, dot, scope, out)?;
                }
                for (key, item) in items {
                    let saved = scope.variables.len();
                    match variables.as_slice() {
                        [value] => scope.variables.push((value.clone(), item.clone())),
                        [index, value] => {
                            scope.variables.push((index.clone(), key));
                            scope.variables.push((value.clone(), item.clone()));
                        }
                        _ => {}
                    }
                    let ran = run(body, &item, scope, out);
                    scope.variables.truncate(saved);
                    ran?;
                }
            }
        }
    }
    Ok(())
}

fn field(value: &Value, path: &[String]) -> Value {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

fn evaluate(pipeline: &Pipeline, dot: &Value, scope: &Scope<'_>) -> Result<Value, TemplateError> {
    let mut piped: Option<Value> = None;
    for command in &pipeline.commands {
        let mut values = Vec::new();
        let mut function = None;
        for (index, operand) in command.iter().enumerate() {
            match operand {
                Operand::Function(name) if index == 0 => function = Some(name.as_str()),
                Operand::Function(name) => {
                    // A function as an argument is called with no arguments, as in Go.
                    values.push(call(name, Vec::new())?);
                }
                Operand::Field(path) => values.push(field(dot, path)),
                Operand::Variable(name, path) => {
                    let base = if name == "$" {
                        scope.root.clone()
                    } else {
                        scope
                            .variables
                            .iter()
                            .rev()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                            .ok_or_else(|| {
                                TemplateError::Execute(format!("undefined variable {name}"))
                            })?
                    };
                    values.push(field(&base, path));
                }
                Operand::Literal(value) => values.push(value.clone()),
                Operand::Nested(inner, path) => {
                    let value = evaluate(inner, dot, scope)?;
                    values.push(if path.is_empty() {
                        value
                    } else {
                        field(&value, path)
                    });
                }
            }
        }
        if let Some(value) = piped.take() {
            values.push(value);
        }
        piped = Some(match function {
            Some(name) => call(name, values)?,
            None => match <[Value; 1]>::try_from(values) {
                Ok([value]) => value,
                Err(_) => {
                    return Err(TemplateError::Execute(
                        "a value cannot take arguments or a piped value".to_owned(),
                    ));
                }
            },
        });
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(list) => !list.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// A value as Go's `fmt` prints it with `%v` (null as nothing).
pub fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::Array(list) => format!(
            "[{}]",
            list.iter().map(text_of).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let entries: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", text_of(&map[k])))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}

fn arity(
    name: &str,
    values: &[Value],
    wanted: std::ops::RangeInclusive<usize>,
) -> Result<(), TemplateError> {
    if wanted.contains(&values.len()) {
        Ok(())
    } else {
        Err(TemplateError::Execute(format!(
            "{name} takes {} argument(s), not {}",
            if wanted.start() == wanted.end() {
                wanted.start().to_string()
            } else if *wanted.end() == usize::MAX {
                format!("{} or more", wanted.start())
            } else {
                format!("{} to {}", wanted.start(), wanted.end())
            },
            values.len()
        )))
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn call(name: &str, values: Vec<Value>) -> Result<Value, TemplateError> {
    let text = |values: &[Value]| values.iter().map(text_of).collect::<Vec<_>>();
    Ok(match name {
        "json" => {
            arity(name, &values, 1..=1)?;
            Value::String(values[0].to_string())
        }
        "upper" | "lower" | "title" => {
            arity(name, &values, 1..=1)?;
            let s = text_of(&values[0]);
            Value::String(match name {
                "upper" => s.to_uppercase(),
                "lower" => s.to_lowercase(),
                _ => title(&s),
            })
        }
        "len" => {
            arity(name, &values, 1..=1)?;
            Value::from(match &values[0] {
                Value::Array(list) => list.len(),
                Value::Object(map) => map.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => {
                    return Err(TemplateError::Execute(format!(
                        "len of {}, which has no length",
                        text_of(other)
                    )));
                }
            })
        }
        "index" => {
            arity(name, &values, 1..=usize::MAX)?;
            let mut current = values[0].clone();
            for key in &values[1..] {
                current = match (&current, key) {
                    (Value::Array(list), key) => {
                        let i = number(key).filter(|f| *f >= 0.0 && f.fract() == 0.0);
                        match i.and_then(|i| list.get(i as usize)) {
                            Some(item) => item.clone(),
                            None => {
                                return Err(TemplateError::Execute(format!(
                                    "index {} out of range for a list of {}",
                                    text_of(key),
                                    list.len()
                                )));
                            }
                        }
                    }
                    (Value::Object(map), key) => {
                        map.get(&text_of(key)).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Null, _) => Value::Null,
                    (other, _) => {
                        return Err(TemplateError::Execute(format!(
                            "cannot index {}",
                            text_of(other)
                        )));
                    }
                };
            }
            current
        }
        "join" => {
            arity(name, &values, 2..=2)?;
            let items = match &values[0] {
                Value::Array(list) => text(list),
                Value::Null => Vec::new(),
                other => vec![text_of(other)],
            };
            Value::String(items.join(&text_of(&values[1])))
        }
        "split" => {
            arity(name, &values, 2..=2)?;
            let s = text_of(&values[0]);
            let separator = text_of(&values[1]);
            Value::Array(
                s.split(separator.as_str())
                    .map(|part| Value::String(part.to_owned()))
                    .collect(),
            )
        }
        "print" => Value::String(text(&values).concat()),
        "println" => Value::String(text(&values).join(" ") + "\n"),
        "printf" => {
            arity(name, &values, 1..=usize::MAX)?;
            Value::String(printf(&text_of(&values[0]), &values[1..])?)
        }
        "eq" | "ne" => {
            arity(name, &values, 2..=usize::MAX)?;
            let same = |a: &Value, b: &Value| match (number(a), number(b)) {
                (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
                _ => a == b,
            };
            let equal = values[1..].iter().any(|other| same(&values[0], other));
            Value::Bool(if name == "eq" { equal } else { !equal })
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, &values, 2..=2)?;
            let ordering = match (number(&values[0]), number(&values[1])) {
                (Some(a), Some(b)) if values[0].is_number() || values[1].is_number() => {
                    a.partial_cmp(&b)
                }
                _ => Some(text_of(&values[0]).cmp(&text_of(&values[1]))),
            };
            let ordering = ordering
                .ok_or_else(|| TemplateError::Execute(format!("cannot compare with {name}")))?;
            Value::Bool(match name {
                "lt" => ordering.is_lt(),
                "le" => ordering.is_le(),
                "gt" => ordering.is_gt(),
                _ => ordering.is_ge(),
            })
        }
        "not" => {
            arity(name, &values, 1..=1)?;
            Value::Bool(!truthy(&values[0]))
        }
        "and" => {
            arity(name, &values, 1..=usize::MAX)?;
            values
                .iter()
                .find(|v| !truthy(v))
                .or(values.last())
                .cloned()
                .unwrap_or(Value::Null)
        }
        "or" => {
            arity(name, &values, 1..=usize::MAX)?;
            values
                .iter()
                .find(|v| truthy(v))
                .or(values.last())
                .cloned()
                .unwrap_or(Value::Null)
        }
        other => {
            return Err(TemplateError::Execute(format!("unknown function {other}")));
        }
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn printf(format: &str, values: &[Value]) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut args = values.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push('%');
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        match verb {
            's' | 'v' => out.push_str(&text_of(arg)),
            'q' => out.push_str(&Value::String(text_of(arg)).to_string()),
            'd' => match number(arg) {
                Some(n) => out.push_str(&(n as i64).to_string()),
                None => out.push_str(&format!("%!d({})", text_of(arg))),
            },
            'f' => match number(arg) {
                Some(n) => out.push_str(&format!("{n:.6}")),
                None => out.push_str(&format!("%!f({})", text_of(arg))),
            },
            other => {
                return Err(TemplateError::Execute(format!(
                    "printf verb %{other} is not supported (use %s, %d, %v, %q or %f)"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(template: &str, dot: &Value, expected: &str) {
        let parsed = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e:?}"));
        assert_eq!(
            parsed
                .execute(dot)
                .unwrap_or_else(|e| panic!("{template}: {e:?}")),
            expected,
            "{template}"
        );
    }

    fn image() -> Value {
        json!({
            "Id": "sha256:abc",
            "RepoTags": ["web:1", "web:latest"],
            "RepoDigests": ["web@sha256:def"],
            "Size": 2048,
            "Config": {"Labels": {"org.opencontainers.image.version": "1.2", "tier": "web"},
                       "Cmd": ["/bin/sh", "-c", "run"], "Env": null},
            "State": {"Running": false, "Status": "exited", "ExitCode": 3},
            "RootFS": {"Layers": ["sha256:a", "sha256:b"]},
        })
    }

    #[test]
    fn fields_of_a_parenthesized_pipeline() {
        let dot =
            json!({"Health": {"Log": [{"Output": "first", "ExitCode": 1}, {"Output": "second"}]}});
        check("{{(index .Health.Log 0).Output}}", &dot, "first");
        check("{{(index .Health.Log 1).Output | upper}}", &dot, "SECOND");
        check("{{(index .Health.Log 0).Missing}}", &dot, "");
        // With a space, `.Output` is a field of dot, given to the pipeline as an argument.
        assert!(Template::parse("{{(index .Health.Log 0) .Output}}").is_err());
        assert!(Template::parse("{{(index .Health.Log 0).}}").is_err());
        assert!(Template::parse("{{(index .Health.Log 0)..A}}").is_err());
    }

    #[test]
    fn dockers_common_forms_work() {
        let dot = image();
        check("{{index .RepoDigests 0}}", &dot, "web@sha256:def");
        check(
            r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#,
            &dot,
            "1.2",
        );
        check(
            "{{range .RepoTags}}{{.}} {{end}}",
            &dot,
            "web:1 web:latest ",
        );
        check(
            "{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}",
            &dot,
            "0=web:1;1=web:latest;",
        );
        check(
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}",
            &dot,
            "org.opencontainers.image.version=1.2,tier=web,",
        );
        check("{{if .State.Running}}up{{else}}down{{end}}", &dot, "down");
        check(
            r#"{{if eq .State.Status "exited"}}gone ({{.State.ExitCode}}){{end}}"#,
            &dot,
            "gone (3)",
        );
        check(
            r#"{{if not .State.Running}}x{{else if .Id}}y{{end}}"#,
            &dot,
            "x",
        );
        check(
            r#"{{if .State.Running}}a{{else if eq .Size 2048}}b{{else}}c{{end}}"#,
            &dot,
            "b",
        );
        check("{{println .Id}}", &dot, "sha256:abc\n");
        check(
            r#"{{printf "%s:%d %q %%" .Id .Size "x"}}"#,
            &dot,
            "sha256:abc:2048 \"x\" %",
        );
        check(r#"{{join .RepoTags ","}}"#, &dot, "web:1,web:latest");
        check("{{len .RepoTags}} {{len .Config.Labels}}", &dot, "2 2");
        check("{{.RootFS.Layers}}", &dot, "[sha256:a sha256:b]");
        check(
            "{{.Config.Labels}}",
            &dot,
            "map[org.opencontainers.image.version:1.2 tier:web]",
        );
        check(
            "{{json .RootFS.Layers}}",
            &dot,
            "[\"sha256:a\",\"sha256:b\"]",
        );
        check("{{.RepoTags | json}}", &dot, "[\"web:1\",\"web:latest\"]");
        check(
            "{{.Id | upper}} {{title \"hello world\"}}",
            &dot,
            "SHA256:ABC Hello World",
        );
        check("{{with .State}}{{.Status}}{{end}}", &dot, "exited");
        check("{{with .Config.Env}}x{{else}}none{{end}}", &dot, "none");
        check("{{range .Nope}}x{{else}}empty{{end}}", &dot, "empty");
        check("{{if and .Id (eq (len .RepoTags) 2)}}ok{{end}}", &dot, "ok");
        check("{{.Missing}}|{{.Config.Nope.Deeper}}|", &dot, "||");
        check("a {{- .Size -}} b", &dot, "a2048b");
        check(
            "{{$.Id}} {{range .RepoTags}}{{$.Size}}{{end}}",
            &dot,
            "sha256:abc 20482048",
        );
        check("{{.State.Running}} {{.Size}}", &dot, "false 2048");
        check(r#"{{index (split "a/b/c" "/") 1}}"#, &dot, "b");
        check("{{if gt .Size 1000}}big{{end}}", &dot, "big");
    }

    #[test]
    fn bad_templates_say_why() {
        let syntax = |t: &str| match Template::parse(t) {
            Err(TemplateError::Syntax(action, why)) => format!("{action}: {why}"),
            other => panic!("{t}: {other:?}"),
        };
        assert!(syntax("{{end}}").contains("no {{if}}"));
        assert!(syntax("{{if .A}}x").contains("no {{end}}"));
        assert!(syntax("{{range .A}}x{{else}}y").contains("no {{end}}"));
        assert!(syntax("{{frobnicate .A}}").contains("not a field"));
        assert!(syntax("{{.A .B}}").contains("only a function"));
        assert!(syntax("{{(.A}}").contains("without its"));
        assert!(syntax("{{\"x}}").contains("unterminated"));
        assert_eq!(Template::parse("{{.A"), Err(TemplateError::Unclosed));
        // Deep nesting is refused, not a stack overflow.
        assert!(
            syntax(&format!(
                "{{{{{}.A{}}}}}",
                "(".repeat(5000),
                ")".repeat(5000)
            ))
            .contains("nested")
        );
        assert!(syntax(&"{{if .A}}".repeat(5000)).contains("nested"));
        let execute = |t: &str| {
            Template::parse(t)
                .unwrap_or_else(|e| panic!("{t}: {e:?}"))
                .execute(&image())
        };
        assert!(
            matches!(execute("{{index .RepoTags 5}}"), Err(TemplateError::Execute(why)) if why.contains("out of range"))
        );
        assert!(matches!(
            execute("{{len .Size}}"),
            Err(TemplateError::Execute(_))
        ));
        assert!(
            matches!(execute("{{$x}}"), Err(TemplateError::Execute(why)) if why.contains("undefined"))
        );
        assert!(matches!(
            execute("{{printf \"%z\" 1}}"),
            Err(TemplateError::Execute(_))
        ));
    }

    #[test]
    fn no_input_panics() {
        let samples = [
            "{{index .RepoTags 0}}",
            "{{range $i, $v := .Config.Labels}}{{$i}}{{end}}",
            "{{if eq .State.Status \"exited\"}}a{{else if .Id}}b{{else}}c{{end}}",
            "{{printf \"%s %d\" .Id .Size}}",
            "{{- with .State -}}{{.Status | upper}}{{- end -}}",
            "{{(len .RepoTags) | printf \"%d\"}}",
        ];
        let dot = image();
        for sample in samples {
            let chars: Vec<char> = sample.chars().collect();
            for cut in 0..=chars.len() {
                for skip in 0..chars.len() {
                    let text: String = chars[..cut]
                        .iter()
                        .chain(chars[cut..].iter().skip(skip % 3))
                        .collect();
                    if let Ok(template) = Template::parse(&text) {
                        let _ = template.execute(&dot);
                        let _ = template.execute(&Value::Null);
                        let _ = template.execute(&json!([1, "x", null]));
                    }
                }
            }
        }
    }
}
