//! `stencil build`: Dockerfile builds with a layer cache, as docker's classic builder does
//! them, daemonless.
//!
//! The pieces: [`parse`] (text to instructions, with their lines), [`words`] (variable
//! substitution), [`plan`] (stages and `--target`), [`ignore`] (`.dockerignore`), [`copy`]
//! (`COPY`/`ADD` sources and semantics), [`config`] (what metadata instructions do to the
//! image config), [`cache`] (step results by key) and [`Builder`] here, which runs the
//! steps on an [`Engine`]: every step makes an image on top of the previous one, through
//! [`Engine::commit_snapshot`] (a new layer: `RUN`, `COPY`, `ADD`, `WORKDIR`) or
//! [`Engine::commit_config`] (metadata only, a history entry with `empty_layer`), and is
//! looked up in the cache first. Those intermediate images stay untagged; the last one is
//! tagged with each `-t`.
//!
//! Reproducibility: with [`BuildOptions::timestamp`] (`SOURCE_DATE_EPOCH` or
//! `--timestamp`) every created date and every file time in new layers is that instant,
//! and layers are written sorted, so the same context gives the same image digest.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use stencil::build::{BuildOptions, build};
//! use stencil::engine::Engine;
//!
//! let engine = Engine::open("/var/lib/stencil".as_ref())?;
//! let options = BuildOptions {
//!     dockerfile: "FROM scratch\nCOPY hello /\nCMD [\"/hello\"]\n".to_owned(),
//!     context: Some("./ctx".into()),
//!     ..BuildOptions::default()
//! };
//! let built = build(&engine, &options, &mut std::io::stdout())?;
//! println!("{}", built.image.config_digest);
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod copy;
pub mod ignore;
pub mod parse;
pub mod plan;
mod run;
mod steps;
pub mod words;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use stencil_layerstore::ImageRecord;
use stencil_reference::Reference;

use crate::engine::Engine;
use cache::BuildCache;
use ignore::Ignore;
use parse::{Args, Dockerfile, Instruction, Keyword};
use plan::Plan;

/// Build arguments docker passes to `RUN` without an `ARG` declaring them, and keeps out
/// of the image's history and the cache key.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Choices for [`build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's name in messages (`Dockerfile` unless `-f`).
    pub dockerfile_name: String,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The context directory; `None` when the Dockerfile came alone on standard input.
    pub context: Option<PathBuf>,
    /// Names for the result (`-t`, several allowed).
    pub tags: Vec<Reference>,
    /// `--build-arg NAME=VALUE` (a value of `None` means the variable is unset).
    pub build_args: Vec<(String, Option<String>)>,
    /// Ignore the cache (`--no-cache`); results are still recorded in it.
    pub no_cache: bool,
    /// Build up to this stage (`--target`).
    pub target: Option<String>,
    /// `--label KEY=VALUE`, applied to the final image.
    pub labels: Vec<(String, String)>,
    /// Print only the image ID (`-q`), and hide `RUN` output.
    pub quiet: bool,
    /// `--platform`: only the host's is possible.
    pub platform: Option<String>,
    /// `--network host` for `RUN` (default: none, an isolated network namespace).
    pub network_host: bool,
    /// Fixed creation time and file times, seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`, `--timestamp`).
    pub timestamp: Option<i64>,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The final image.
    pub image: ImageRecord,
    /// Steps taken from the cache and steps run.
    pub cached_steps: usize,
    /// Steps that ran (not from the cache).
    pub executed_steps: usize,
}

/// The state of a stage after its last step.
#[derive(Debug, Clone, Default)]
struct StageState {
    /// The image so far (`None`: `scratch` with no step yet).
    image: Option<ImageRecord>,
    /// The container config so far (`Cmd`, `Env`, …).
    config: Map<String, Value>,
    /// `MAINTAINER`.
    author: Option<String>,
    /// `ARG`s declared in this stage, with their values.
    args: BTreeMap<String, Option<String>>,
    /// Whether this stage set `CMD` (an `ENTRYPOINT` after one keeps it).
    cmd_set: bool,
}

impl StageState {
    fn id(&self) -> String {
        self.image
            .as_ref()
            .map_or_else(String::new, |i| short_id(i.config_digest.as_str()))
    }
}

/// The 12-digit form of an image ID.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Runs the build `options` describe on `engine`, writing docker's classic progress lines
/// to `out` (only the image ID with `quiet`).
pub fn build(engine: &Engine, options: &BuildOptions, out: &mut dyn Write) -> Result<Built> {
    let name = if options.dockerfile_name.is_empty() {
        "Dockerfile"
    } else {
        options.dockerfile_name.as_str()
    };
    if let Some(platform) = &options.platform {
        check_platform(platform)?;
    }
    let file = parse::parse(name, &options.dockerfile)?;
    // Step snapshots and mounts that killed builds left behind go first.
    engine.remove_stale_extractions();
    let mut plan = plan::plan(name, &file, options.target.as_deref())?;
    if !options.labels.is_empty()
        && let Some(last) = plan.stages.last_mut()
    {
        last.instructions
            .push(label_instruction(&options.labels, last));
    }
    let ignore = match &options.context {
        Some(dir) => {
            if !dir.is_dir() {
                bail!(
                    "the build context {} is not a directory: give a directory (or - for a Dockerfile on standard input)",
                    dir.display()
                );
            }
            match std::fs::read_to_string(dir.join(".dockerignore")) {
                Ok(text) => Ignore::parse(&text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
                Err(error) => {
                    return Err(error).context(format!(
                        "cannot read {}",
                        dir.join(".dockerignore").display()
                    ));
                }
            }
        }
        None => Ignore::default(),
    };
    let created =
        match options.timestamp {
            Some(seconds) => Some(DateTime::<Utc>::from_timestamp(seconds, 0).with_context(
                || format!("the timestamp {seconds} is out of range: give seconds since 1970"),
            )?),
            None => None,
        };
    let mut builder = Builder {
        engine,
        options,
        out,
        name: name.to_owned(),
        file,
        total: plan.steps(),
        plan,
        cache: BuildCache::open(engine.root())?,
        ignore,
        step: 0,
        stages: Vec::new(),
        created,
        used_args: BTreeSet::new(),
        cached_steps: 0,
        executed_steps: 0,
        counter: 0,
    };
    let state = builder.run()?;
    let image = match state.image {
        Some(image) => image,
        // `FROM scratch` alone: an image with no layer and an empty config.
        None => builder.commit_empty()?,
    };
    builder.cache.mark_final(&image.manifest_digest)?;
    for reference in &options.tags {
        engine
            .store()
            .tag(reference, &image.manifest_digest)
            .with_context(|| format!("cannot tag the image as {}", reference.familiar()))?;
    }
    let unused: Vec<&str> = options
        .build_args
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !builder.used_args.contains(*name) && !PROXY_ARGS.contains(name))
        .collect();
    if options.quiet {
        writeln!(builder.out, "{}", image.config_digest)?;
    } else {
        if !unused.is_empty() {
            writeln!(
                builder.out,
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            )?;
        }
        writeln!(
            builder.out,
            "Successfully built {}",
            short_id(image.config_digest.as_str())
        )?;
        for reference in &options.tags {
            writeln!(builder.out, "Successfully tagged {}", reference.familiar())?;
        }
    }
    Ok(Built {
        image,
        cached_steps: builder.cached_steps,
        executed_steps: builder.executed_steps,
    })
}

/// Refuses a `--platform` other than the host's.
fn check_platform(text: &str) -> Result<()> {
    use stencil_layerstore::image::Platform;
    let host = Platform::host().normalized();
    let wanted = Platform::parse(text)
        .with_context(|| format!("invalid --platform {text:?}: write os/arch[/variant]"))?
        .normalized();
    if wanted.os != host.os || wanted.architecture != host.architecture {
        bail!(
            "--platform {text} is not supported: stencil build runs steps on this machine and builds for its own platform only ({}/{})",
            host.os,
            host.architecture
        );
    }
    Ok(())
}

/// `--label` flags as one `LABEL` instruction at the end of the last stage.
fn label_instruction(labels: &[(String, String)], stage: &plan::Stage) -> Instruction {
    let quote = |text: &str| {
        let mut quoted = String::from("\"");
        for c in text.chars() {
            if matches!(c, '"' | '\\' | '$') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    };
    let text = labels
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect::<Vec<_>>()
        .join(" ");
    let line = stage
        .instructions
        .last()
        .map_or(stage.from.line, |i| i.line);
    Instruction {
        line,
        keyword: Keyword::Label,
        flags: Vec::new(),
        original: format!("LABEL {text}"),
        args: Args::Text(text),
    }
}

/// Runs the stages of a plan.
struct Builder<'a> {
    engine: &'a Engine,
    options: &'a BuildOptions,
    out: &'a mut dyn Write,
    /// The Dockerfile's name, for messages.
    name: String,
    file: Dockerfile,
    plan: Plan,
    total: usize,
    cache: BuildCache,
    ignore: Ignore,
    step: usize,
    /// The finished stages' states, by index.
    stages: Vec<StageState>,
    created: Option<DateTime<Utc>>,
    /// Build arguments some `ARG` declared.
    used_args: BTreeSet<String>,
    cached_steps: usize,
    executed_steps: usize,
    /// Numbers this build's snapshot keys and mount points.
    counter: u64,
}

impl Builder<'_> {
    fn run(&mut self) -> Result<StageState> {
        let mut global = BTreeMap::new();
        for instruction in self.plan.global_args.clone() {
            self.announce(&instruction)?;
            let known = global.clone();
            let lookup = move |name: &str| known.get(name).cloned().flatten();
            let declared = self
                .declare_args(&instruction, &global, &lookup)
                .with_context(|| self.at(&instruction))?;
            global.extend(declared);
        }
        let stages = self.plan.stages.clone();
        let mut last = StageState::default();
        for stage in &stages {
            let mut state = self
                .base_step(stage, &global)
                .with_context(|| self.at(&stage.from))?;
            for instruction in &stage.instructions {
                self.announce(instruction)?;
                self.step(&mut state, instruction, &global)
                    .with_context(|| self.at(instruction))?;
            }
            self.stages.push(state.clone());
            last = state;
        }
        Ok(last)
    }

    /// `Dockerfile:LINE: INSTRUCTION` for error context.
    fn at(&self, instruction: &Instruction) -> String {
        let mut text = instruction.original.clone();
        if text.chars().count() > 80 {
            text = text.chars().take(77).collect::<String>() + "...";
        }
        format!("{}:{}: {text}", self.name, instruction.line)
    }

    fn announce(&mut self, instruction: &Instruction) -> Result<()> {
        self.step += 1;
        if !self.options.quiet {
            writeln!(
                self.out,
                "Step {}/{} : {}",
                self.step, self.total, instruction.original
            )?;
        }
        Ok(())
    }

    fn say(&mut self, line: &str) -> Result<()> {
        if !self.options.quiet {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// The value a `--build-arg` gives `name`, if any.
    fn build_arg(&self, name: &str) -> Option<Option<String>> {
        self.options
            .build_args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The `NAME[=default]` words of an `ARG`, with their values (a `--build-arg` wins
    /// over the default; a global `ARG` of that name gives its value when there is no
    /// default).
    fn declare_args(
        &mut self,
        instruction: &Instruction,
        global: &BTreeMap<String, Option<String>>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, Option<String>)>> {
        let text = instruction.args_text();
        let raw = words::split_raw(&text, self.file.escape).map_err(anyhow::Error::msg)?;
        let lexer = words::Lexer::new(self.file.escape, lookup);
        let mut declared = Vec::new();
        for word in raw {
            let (name, default) = match word.split_once('=') {
                Some((name, value)) => (
                    name.to_owned(),
                    Some(lexer.word(value).map_err(anyhow::Error::msg)?),
                ),
                None => (word.clone(), None),
            };
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !valid {
                bail!("invalid ARG name {name:?}");
            }
            self.used_args.insert(name.clone());
            let value = match self.build_arg(&name) {
                Some(value) => value,
                None => default.or_else(|| global.get(&name).cloned().flatten()),
            };
            declared.push((name, value));
        }
        Ok(declared)
    }
}
