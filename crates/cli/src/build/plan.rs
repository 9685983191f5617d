//! From a parsed Dockerfile to build stages: the global `ARG`s before the first `FROM`, then
//! one [`Stage`] per `FROM` with its name (`AS name`) and instructions, cut at `--target`.
//!
//! Checks that need no build state happen here, so that a Dockerfile with a misplaced
//! instruction, a duplicated stage name or an unknown target fails before anything runs.
//!
//! ```
//! use stencil::build::parse::parse;
//! use stencil::build::plan::plan;
//!
//! let file = parse("Dockerfile", "ARG V=1\nFROM busybox AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /\n").unwrap();
//! let plan = plan("Dockerfile", &file, Some("build")).unwrap();
//! assert_eq!(plan.global_args.len(), 1);
//! assert_eq!(plan.stages.len(), 1);
//! assert_eq!(plan.stages[0].name.as_deref(), Some("build"));
//! assert_eq!(plan.steps(), 3);
//! ```

use super::parse::{Dockerfile, Instruction, Keyword, ParseError};

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Its position, counted from 0 (`COPY --from=0`).
    pub index: usize,
    /// The `AS name`, lower-cased.
    pub name: Option<String>,
    /// The `FROM` instruction.
    pub from: Instruction,
    /// The base image or stage as written (unexpanded), without `AS name`.
    pub base: String,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

/// The stages to build, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `ARG`s before the first `FROM`, usable in `FROM` lines.
    pub global_args: Vec<Instruction>,
    /// The stages up to and including the target.
    pub stages: Vec<Stage>,
}

impl Plan {
    /// The number of `Step N/TOTAL` lines: the global `ARG`s, each `FROM` and each
    /// instruction.
    pub fn steps(&self) -> usize {
        self.global_args.len()
            + self
                .stages
                .iter()
                .map(|s| 1 + s.instructions.len())
                .sum::<usize>()
    }

    /// The stage named `name` (a name or an index) among those before `before`.
    pub fn stage(&self, name: &str, before: usize) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages[..before.min(self.stages.len())]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < before)
                    .and_then(|i| self.stages.get(i))
            })
    }
}

/// Splits `file` into stages, up to the stage named `target` when given.
pub fn plan(name: &str, file: &Dockerfile, target: Option<&str>) -> Result<Plan, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: name.to_owned(),
        line,
        message,
    };
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in &file.instructions {
        match (instruction.keyword, stages.last_mut()) {
            (Keyword::From, _) => {
                let text = instruction.args_text();
                let words: Vec<&str> = text.split_whitespace().collect();
                let (base, stage_name) = match words.as_slice() {
                    [base] => (*base, None),
                    [base, as_word, stage] if as_word.eq_ignore_ascii_case("as") => {
                        (*base, Some(stage.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err(error(
                            instruction.line,
                            format!("FROM takes IMAGE [AS NAME], got {text:?}"),
                        ));
                    }
                };
                if let Some(stage_name) = &stage_name {
                    let valid = stage_name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase())
                        && stage_name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(error(
                            instruction.line,
                            format!(
                                "invalid stage name {stage_name:?}: it must start with a letter and hold only letters, digits, '-', '_' and '.'"
                            ),
                        ));
                    }
                    if stages.iter().any(|s| s.name.as_ref() == Some(stage_name)) {
                        return Err(error(
                            instruction.line,
                            format!(
                                "duplicate stage name {stage_name:?}: give each stage its own name"
                            ),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: stage_name,
                    from: instruction.clone(),
                    base: base.to_owned(),
                    instructions: Vec::new(),
                });
            }
            (Keyword::Arg, None) => global_args.push(instruction.clone()),
            (_, None) => {
                return Err(error(
                    instruction.line,
                    format!(
                        "{} before the first FROM: only ARG may come before FROM",
                        instruction.keyword.as_str()
                    ),
                ));
            }
            (_, Some(stage)) => stage.instructions.push(instruction.clone()),
        }
    }
    if stages.is_empty() {
        return Err(error(
            file.instructions.last().map_or(1, |i| i.line),
            "no FROM instruction: a Dockerfile starts with FROM IMAGE (or FROM scratch)".to_owned(),
        ));
    }
    if let Some(target) = target {
        let lower = target.to_ascii_lowercase();
        let Some(position) = stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        else {
            let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            return Err(ParseError {
                file: name.to_owned(),
                line: stages[0].from.line,
                message: format!(
                    "target stage {target:?} could not be found (stages named: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            });
        };
        stages.truncate(position + 1);
    }
    Ok(Plan {
        global_args,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::parse::parse;

    /// The name, base and instruction count expected of each stage.
    type Expected<'a> = Vec<(Option<&'a str>, &'a str, usize)>;

    #[track_caller]
    fn check(text: &str, target: Option<&str>, expected: Result<Expected<'_>, &str>) {
        let file = parse("Dockerfile", text).unwrap_or_else(|e| panic!("{e}"));
        match (plan("Dockerfile", &file, target), expected) {
            (Ok(plan), Ok(want)) => {
                let got: Vec<(Option<&str>, &str, usize)> = plan
                    .stages
                    .iter()
                    .map(|s| (s.name.as_deref(), s.base.as_str(), s.instructions.len()))
                    .collect();
                assert_eq!(got, want);
            }
            (Err(error), Err(needle)) => {
                let text = error.to_string();
                assert!(text.contains(needle), "{text}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn stages_and_targets() {
        let text = "ARG B=busybox\nFROM $B AS Build\nRUN a\nRUN b\nFROM scratch as final\nCOPY --from=build /a /\n";
        check(
            text,
            None,
            Ok(vec![
                (Some("build"), "$B", 2),
                (Some("final"), "scratch", 1),
            ]),
        );
        check(text, Some("build"), Ok(vec![(Some("build"), "$B", 2)]));
        check(
            text,
            Some("nope"),
            Err("target stage \"nope\" could not be found (stages named: build, final)"),
        );
        check(
            "RUN x\nFROM a",
            None,
            Err("Dockerfile:1: RUN before the first FROM"),
        );
        check("ARG x", None, Err("no FROM instruction"));
        check(
            "FROM a AS x\nFROM b AS x",
            None,
            Err("Dockerfile:2: duplicate stage name"),
        );
        check("FROM a AS 1x", None, Err("invalid stage name"));
        check(
            "FROM a b c d",
            None,
            Err("Dockerfile:1: FROM takes IMAGE [AS NAME]"),
        );
        let file = parse("Dockerfile", text).unwrap_or_else(|e| panic!("{e}"));
        let plan = plan("Dockerfile", &file, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.steps(), 6);
        assert_eq!(plan.stage("BUILD", 1).map(|s| s.index), Some(0));
        assert_eq!(plan.stage("0", 1).map(|s| s.index), Some(0));
        assert!(plan.stage("final", 1).is_none());
    }
}
