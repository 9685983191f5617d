//! The steps of a build: `FROM`, the metadata instructions, `COPY`/`ADD`, `WORKDIR` and
//! `RUN`, each looked up in the cache before it runs and committed as an image after.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use stencil_cow_fs::{Snapshotter, mount_all, unmount_all};
use stencil_layerstore::ImageRecord;
use stencil_reference::Reference;

use super::cache::CacheKey;
use super::config::{self, command, shell_of};
use super::copy::{self, CopyOptions, Source};
use super::parse::{self, Args, Instruction, Keyword};
use super::plan::Stage;
use super::words::Lexer;
use super::{Builder, PROXY_ARGS, StageState};
use crate::engine::{CommitOptions, PullOptions};

/// A snapshot mounted for a step; unmounted and removed when dropped (on errors too).
struct Mounted<'e> {
    engine: &'e crate::engine::Engine,
    key: String,
    dir: PathBuf,
    mounted: bool,
}

impl Mounted<'_> {
    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            unmount_all(&self.dir)
                .with_context(|| format!("cannot unmount {}", self.dir.display()))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = std::fs::remove_dir(&self.dir);
        // Gone already when the commit took it over.
        let _ = self.engine.snapshots().remove(&self.key);
    }
}

impl<'a> Builder<'a> {
    /// A fresh snapshot key and mount point for this build.
    fn scratch_names(&mut self, what: &str) -> Result<(String, PathBuf)> {
        self.counter += 1;
        let key = format!("build-{}-{}-{what}", std::process::id(), self.counter);
        let dir = self.engine.root().join("build-mounts").join(&key);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the mount point {}", dir.display()))?;
        // A key left by a crashed run of this same process id is stale.
        let _ = self.engine.snapshots().remove(&key);
        Ok((key, dir))
    }

    /// A writable snapshot on top of `image` (or empty), mounted.
    fn mount_writable(&mut self, image: Option<&ImageRecord>) -> Result<Mounted<'a>> {
        let (key, dir) = self.scratch_names("rw")?;
        let engine = self.engine;
        let parent = image.and_then(|i| i.layers.last().map(|l| l.chain_id.to_string()));
        if let Some(image) = image {
            engine.unpack_image(image, &|_| {})?;
        }
        let mounts = engine
            .snapshots()
            .prepare(&key, parent.as_deref())
            .with_context(|| format!("cannot prepare snapshot {key}"))?;
        let mut guard = Mounted {
            engine,
            key,
            dir,
            mounted: false,
        };
        mount_all(&mounts, &guard.dir)
            .with_context(|| format!("cannot mount {}", guard.dir.display()))?;
        guard.mounted = true;
        Ok(guard)
    }

    /// A read-only view of `image`'s root filesystem, mounted (an empty directory for an
    /// image with no layer).
    fn mount_view(&mut self, image: &ImageRecord) -> Result<Mounted<'a>> {
        let (key, dir) = self.scratch_names("ro")?;
        let engine = self.engine;
        let mut guard = Mounted {
            engine,
            key,
            dir,
            mounted: false,
        };
        let Some(top) = image.layers.last().map(|l| l.chain_id.to_string()) else {
            return Ok(guard);
        };
        engine.unpack_image(image, &|_| {})?;
        let mounts = engine
            .snapshots()
            .view(&guard.key, Some(&top))
            .with_context(|| format!("cannot view image {}", image.config_digest))?;
        mount_all(&mounts, &guard.dir)
            .with_context(|| format!("cannot mount {}", guard.dir.display()))?;
        guard.mounted = true;
        Ok(guard)
    }

    /// The cache key of a step on `state` described by `summary`, with `extra` parts.
    fn key(&self, state: &StageState, summary: &str, extra: &[(&str, &str)]) -> String {
        let parent = state
            .image
            .as_ref()
            .map_or_else(|| "scratch".to_owned(), |i| i.config_digest.to_string());
        let created = self.created.map(|c| c.timestamp().to_string());
        let mut key = CacheKey::new()
            .part("version", "1")
            .part("parent", &parent)
            .part("created", created.as_deref().unwrap_or("now"))
            .part("author", state.author.as_deref().unwrap_or(""))
            .part(
                "config",
                &serde_json::to_string(&state.config).unwrap_or_default(),
            )
            .part("instruction", summary);
        for (name, value) in extra {
            key = key.part(name, value);
        }
        key.finish()
    }

    /// The image a cached step made, if the cache has it and the image still exists.
    fn cached(&mut self, key: &str) -> Option<ImageRecord> {
        if self.options.no_cache {
            return None;
        }
        let digest = self.cache.get(key)?;
        match self.engine.store().image(&digest) {
            Ok(image) => Some(image),
            Err(_) => {
                // The image was removed (rmi, prune): the entry is stale.
                self.cache.forget(key);
                None
            }
        }
    }

    fn use_cache(&mut self, state: &mut StageState, image: ImageRecord) -> Result<()> {
        self.cached_steps += 1;
        state.image = Some(image);
        self.say(" ---> Using cache")?;
        let id = state.id();
        self.say(&format!(" ---> {id}"))
    }

    fn commit_options(&self, state: &StageState, created_by: String) -> CommitOptions {
        CommitOptions {
            author: state.author.clone(),
            created_by: Some(created_by),
            config: Some(state.config.clone()),
            created: self.created,
            ..CommitOptions::default()
        }
    }

    fn record(&mut self, state: &mut StageState, key: &str, image: ImageRecord) -> Result<()> {
        self.executed_steps += 1;
        self.cache.put(key, &image.manifest_digest)?;
        state.image = Some(image);
        let id = state.id();
        self.say(&format!(" ---> {id}"))
    }

    /// A metadata step: `config` is the new container config, `summary` the resolved
    /// instruction for the history and the cache.
    fn metadata_step(
        &mut self,
        state: &mut StageState,
        summary: String,
        config: Map<String, Value>,
        author: Option<String>,
    ) -> Result<()> {
        let key = self.key(
            state,
            &summary,
            &[("new-config", &serde_json::to_string(&config)?)],
        );
        state.config = config;
        state.author = author;
        if let Some(image) = self.cached(&key) {
            return self.use_cache(state, image);
        }
        let options = self.commit_options(state, format!("/bin/sh -c #(nop)  {summary}"));
        let committed = self.engine.commit_config(state.image.as_ref(), &options)?;
        self.record(state, &key, committed.image)
    }

    /// The image a build with only `FROM scratch` gives.
    pub(super) fn commit_empty(&mut self) -> Result<ImageRecord> {
        let options = CommitOptions {
            created_by: Some("/bin/sh -c #(nop)  FROM scratch".to_owned()),
            created: self.created,
            config: Some(Map::new()),
            ..CommitOptions::default()
        };
        Ok(self.engine.commit_config(None, &options)?.image)
    }

    /// Looks `name` up as a stage before `before`, else as an image (pulled when missing).
    fn stage_or_image(&mut self, name: &str, before: usize) -> Result<Option<StageState>> {
        if let Some(stage) = self.plan.stage(name, before) {
            return Ok(Some(self.stages[stage.index].clone()));
        }
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        let image = self.image(name)?;
        let document = self.engine.image_config(&image)?;
        let config = document
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let author = document
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Some(StageState {
            image: Some(image),
            config,
            author,
            ..StageState::default()
        }))
    }

    /// The local image `name`, pulled when the store lacks it.
    fn image(&mut self, name: &str) -> Result<ImageRecord> {
        let reference = Reference::parse(name).with_context(|| {
            format!("{name:?} is neither a stage of this Dockerfile nor a valid image reference")
        })?;
        if let Ok(image) = self.engine.find_image(name) {
            return Ok(image);
        }
        self.say(&format!("Pulling {}", reference.familiar()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let report = runtime
            .block_on(self.engine.pull(&reference, &PullOptions::default(), &|_| {}))
            .with_context(|| {
                format!(
                    "no stage named {name:?} before this one, and image {} is not in the store and cannot be pulled",
                    reference.familiar()
                )
            })?;
        Ok(report.image)
    }

    pub(super) fn base_step(
        &mut self,
        stage: &Stage,
        global: &BTreeMap<String, Option<String>>,
    ) -> Result<StageState> {
        self.announce(&stage.from)?;
        let lookup = |name: &str| global.get(name).cloned().flatten();
        let lexer = Lexer::new(self.file.escape, &lookup);
        for flag in &stage.from.flags {
            match flag.name.as_str() {
                "platform" => {
                    let value = lexer
                        .word(flag.value.as_deref().unwrap_or(""))
                        .map_err(anyhow::Error::msg)?;
                    super::check_platform(&value)?;
                }
                other => bail!("unknown flag --{other} for FROM (known: --platform)"),
            }
        }
        let base = lexer.word(&stage.base).map_err(anyhow::Error::msg)?;
        if base.is_empty() {
            bail!(
                "FROM {} names no image once its variables are expanded",
                stage.base
            );
        }
        let mut state = match self.stage_or_image(&base, stage.index)? {
            Some(state) => StageState {
                args: BTreeMap::new(),
                cmd_set: false,
                ..state
            },
            None => StageState::default(),
        };
        if state.image.is_some() {
            let id = state.id();
            self.say(&format!(" ---> {id}"))?;
        }
        let triggers: Vec<String> = state
            .config
            .remove("OnBuild")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if !triggers.is_empty() {
            let count = triggers.len();
            self.say(&format!(
                "# Executing {count} build trigger{}",
                if count == 1 { "" } else { "s" }
            ))?;
            for trigger in triggers {
                let parsed = parse::parse("ONBUILD", &trigger)?;
                for instruction in parsed.instructions {
                    let instruction = Instruction {
                        line: stage.from.line,
                        ..instruction
                    };
                    self.step(&mut state, &instruction, global)
                        .with_context(|| format!("the ONBUILD trigger {trigger:?} failed"))?;
                }
            }
        }
        Ok(state)
    }

    /// One instruction after `FROM`.
    pub(super) fn step(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        global: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let flagged = matches!(
            instruction.keyword,
            Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::Healthcheck
        );
        if !flagged && !instruction.flags.is_empty() {
            bail!("{} takes no flags", instruction.keyword.as_str());
        }
        let env_config = state.config.clone();
        let stage_args = state.args.clone();
        let lookup = move |name: &str| {
            config::env_value(&env_config, name).or_else(|| stage_args.get(name).cloned().flatten())
        };
        let escape = self.file.escape;
        let lexer = Lexer::new(escape, &lookup);
        let word = |text: &str| lexer.word(text).map_err(anyhow::Error::msg);
        let words = |text: &str| lexer.words(text).map_err(anyhow::Error::msg);
        let text = instruction.args_text();
        let keyword = instruction.keyword;
        let mut new_config = state.config.clone();
        let mut author = state.author.clone();
        let summary = match keyword {
            Keyword::From => bail!("FROM is handled by the stage"),
            Keyword::Run => return self.run_step(state, instruction),
            Keyword::Copy | Keyword::Add => {
                let arguments = match &instruction.args {
                    Args::Json(list) => list.iter().map(|w| word(w)).collect::<Result<Vec<_>>>()?,
                    Args::Text(text) => words(text)?,
                };
                let flag = |name: &str| -> Result<Option<String>> {
                    instruction.flag(name).map(word).transpose()
                };
                let request = CopyRequest {
                    from: flag("from")?,
                    chown: flag("chown")?,
                    chmod: flag("chmod")?,
                    arguments,
                };
                for flag in &instruction.flags {
                    if !["from", "chown", "chmod", "link"].contains(&flag.name.as_str()) {
                        bail!(
                            "unknown flag --{} for {} (known: --from, --chown, --chmod, --link)",
                            flag.name,
                            keyword.as_str()
                        );
                    }
                }
                return self.copy_step(state, keyword, request);
            }
            Keyword::Workdir => {
                let dir = word(&text)?;
                let current = state
                    .config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .unwrap_or("/")
                    .to_owned();
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", current.trim_end_matches('/'))
                };
                let cleaned = format!(
                    "/{}",
                    joined
                        .split('/')
                        .filter(|p| !p.is_empty() && *p != ".")
                        .collect::<Vec<_>>()
                        .join("/")
                );
                return self.workdir_step(state, cleaned);
            }
            Keyword::Env => {
                let pairs =
                    config::pairs(&text, &lexer, escape, true).map_err(anyhow::Error::msg)?;
                for (key, value) in &pairs {
                    config::set_env(&mut new_config, key, value);
                }
                format!(
                    "ENV {}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
            Keyword::Label => {
                let pairs =
                    config::pairs(&text, &lexer, escape, true).map_err(anyhow::Error::msg)?;
                for (key, value) in &pairs {
                    config::insert_into(&mut new_config, "Labels", key, json!(value));
                }
                format!(
                    "LABEL {}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
            Keyword::Arg => {
                let declared = self.declare_args(instruction, global, &lookup)?;
                for (name, value) in &declared {
                    state.args.insert(name.clone(), value.clone());
                }
                let described = declared
                    .iter()
                    .map(|(name, value)| match value {
                        Some(value) => format!("{name}={value}"),
                        None => name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("ARG {described}")
            }
            Keyword::Maintainer => {
                author = Some(text.clone());
                format!("MAINTAINER {text}")
            }
            Keyword::Expose => {
                let mut ports = Vec::new();
                for item in words(&text)? {
                    for port in config::exposed_ports(&item).map_err(anyhow::Error::msg)? {
                        config::insert_into(&mut new_config, "ExposedPorts", &port, json!({}));
                        ports.push(port);
                    }
                }
                format!("EXPOSE {}", ports.join(" "))
            }
            Keyword::Volume => {
                let paths = match &instruction.args {
                    Args::Json(list) => list.iter().map(|w| word(w)).collect::<Result<Vec<_>>>()?,
                    Args::Text(text) => words(text)?,
                };
                if paths.iter().any(String::is_empty) {
                    bail!("VOLUME paths may not be empty");
                }
                for path in &paths {
                    config::insert_into(&mut new_config, "Volumes", path, json!({}));
                }
                format!("VOLUME {}", serde_json::to_string(&paths)?)
            }
            Keyword::User => {
                let user = word(&text)?;
                new_config.insert("User".into(), json!(user));
                format!("USER {user}")
            }
            Keyword::Stopsignal => {
                let signal = word(&text)?;
                new_config.insert("StopSignal".into(), json!(signal));
                format!("STOPSIGNAL {signal}")
            }
            Keyword::Cmd => {
                let cmd = command(&instruction.args, &shell_of(&state.config));
                new_config.insert("Cmd".into(), json!(cmd));
                state.cmd_set = true;
                format!("CMD {}", serde_json::to_string(&cmd)?)
            }
            Keyword::Entrypoint => {
                let entrypoint = command(&instruction.args, &shell_of(&state.config));
                new_config.insert("Entrypoint".into(), json!(entrypoint));
                if !state.cmd_set {
                    // An ENTRYPOINT resets a CMD inherited from the base image, as docker does.
                    new_config.insert("Cmd".into(), Value::Null);
                }
                format!("ENTRYPOINT {}", serde_json::to_string(&entrypoint)?)
            }
            Keyword::Shell => {
                let Args::Json(shell) = &instruction.args else {
                    bail!("SHELL requires the JSON form, like SHELL [\"/bin/sh\", \"-c\"]");
                };
                if shell.is_empty() {
                    bail!("SHELL needs at least the shell's path");
                }
                new_config.insert("Shell".into(), json!(shell));
                format!("SHELL {}", serde_json::to_string(shell)?)
            }
            Keyword::Healthcheck => {
                let check =
                    config::healthcheck(&instruction.flags, &text).map_err(anyhow::Error::msg)?;
                new_config.insert("Healthcheck".into(), check.clone());
                format!("HEALTHCHECK {}", serde_json::to_string(&check)?)
            }
            Keyword::Onbuild => {
                let (trigger, rest) = text
                    .split_once(char::is_whitespace)
                    .map_or((text.as_str(), ""), |(w, r)| (w, r.trim()));
                let upper = trigger.to_ascii_uppercase();
                if ["ONBUILD", "FROM", "MAINTAINER"].contains(&upper.as_str()) {
                    bail!("{upper} isn't allowed as an ONBUILD trigger");
                }
                if parse::Keyword::from_word(&upper).is_none() {
                    bail!("unknown instruction in ONBUILD: {upper}");
                }
                let trigger = format!("{upper} {rest}");
                let mut list: Vec<Value> = new_config
                    .get("OnBuild")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                list.push(json!(trigger));
                new_config.insert("OnBuild".into(), Value::Array(list));
                format!("ONBUILD {trigger}")
            }
        };
        self.metadata_step(state, summary, new_config, author)
    }

    /// `WORKDIR`: the config's working directory, and the directory made when missing.
    fn workdir_step(&mut self, state: &mut StageState, dir: String) -> Result<()> {
        let mut new_config = state.config.clone();
        new_config.insert("WorkingDir".into(), json!(dir));
        let summary = format!("WORKDIR {dir}");
        let key = self.key(state, &summary, &[]);
        state.config = new_config;
        if let Some(image) = self.cached(&key) {
            return self.use_cache(state, image);
        }
        let parent = state.image.clone();
        let options = CommitOptions {
            omit_empty_layer: true,
            ..self.commit_options(state, format!("/bin/sh -c #(nop) WORKDIR {dir}"))
        };
        let engine = self.engine;
        let committed = {
            let mut mounted = self.mount_writable(parent.as_ref())?;
            let owner = nix::unistd::geteuid().is_root().then_some((0, 0));
            copy::make_dirs(
                &mounted.dir,
                dir.trim_start_matches('/'),
                &CopyOptions {
                    owner,
                    ..CopyOptions::default()
                },
            )?;
            mounted.unmount()?;
            engine.commit_snapshot(&mounted.key, parent.as_ref(), &options)?
        };
        self.record(state, &key, committed.image)
    }

    fn copy_step(
        &mut self,
        state: &mut StageState,
        keyword: Keyword,
        request: CopyRequest,
    ) -> Result<()> {
        let name = keyword.as_str();
        let Some((dest, sources)) = request.arguments.split_last() else {
            bail!("{name} requires at least two arguments: SOURCE... DEST");
        };
        if sources.is_empty() {
            bail!("{name} requires at least two arguments: SOURCE... DEST");
        }
        for source in sources {
            let lower = source.to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("git@")
            {
                if keyword == Keyword::Copy {
                    bail!(
                        "COPY cannot copy from a URL ({source}): use ADD, or download it into the build context"
                    );
                }
                bail!(
                    "cannot fetch {source}: stencil build does not download during builds (this machine is offline); download it into the build context and COPY it"
                );
            }
        }
        let extract_archives = keyword == Keyword::Add;
        let mode = request
            .chmod
            .as_deref()
            .map(copy::parse_chmod)
            .transpose()?;
        let stage_index = self.stages.len();
        // The source: the context, or another stage's or image's root filesystem.
        let (source_image, content) = match &request.from {
            None => (None, None),
            Some(from) => {
                let found = self.stage_or_image(from, stage_index)?;
                match found {
                    Some(found) => {
                        let id = found
                            .image
                            .as_ref()
                            .map_or_else(|| "scratch".to_owned(), |i| i.config_digest.to_string());
                        (found.image, Some(id))
                    }
                    None => (None, Some("scratch".to_owned())),
                }
            }
        };
        // The view (for --from) is unmounted and released whatever happens next.
        let mut _view: Option<Mounted<'a>> = None;
        let source = match (&request.from, &source_image) {
            (None, _) => {
                let Some(context) = &self.options.context else {
                    bail!(
                        "{name} needs a build context, and the Dockerfile came alone on standard input: give a CONTEXT directory"
                    );
                };
                Source {
                    root: context.clone(),
                    ignore: Some(self.ignore.clone()),
                }
            }
            (Some(_), Some(image)) => {
                let mounted = self.mount_view(image)?;
                let root = mounted.dir.clone();
                _view = Some(mounted);
                Source { root, ignore: None }
            }
            (Some(_), None) => {
                let (key, dir) = self.scratch_names("empty")?;
                _view = Some(Mounted {
                    engine: self.engine,
                    key,
                    dir: dir.clone(),
                    mounted: false,
                });
                Source {
                    root: dir,
                    ignore: None,
                }
            }
        };
        let matched = copy::resolve_sources(&source, sources)?;
        let digest = match &content {
            Some(image) => format!("image:{image}"),
            None => copy::content_digest(&source, &matched)?,
        };
        let kind = if matched.len() > 1 {
            "multi"
        } else if matched.first().is_some_and(|m| m.is_dir) {
            "dir"
        } else {
            "file"
        };
        let mut flags = String::new();
        for (flag, value) in [
            ("from", &request.from),
            ("chown", &request.chown),
            ("chmod", &request.chmod),
        ] {
            if let Some(value) = value {
                flags.push_str(&format!("--{flag}={value} "));
            }
        }
        let summary = format!("{name} {flags}{} {dest}", sources.join(" "));
        let key = self.key(state, &summary, &[("content", &digest)]);
        if let Some(image) = self.cached(&key) {
            return self.use_cache(state, image);
        }
        let parent = state.image.clone();
        let short = &digest[digest.len().saturating_sub(64)..];
        let commit_options = self.commit_options(
            state,
            format!("/bin/sh -c #(nop) {name} {flags}{kind}:{short} in {dest} "),
        );
        let workdir = state
            .config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or("/")
            .to_owned();
        let engine = self.engine;
        let committed = {
            let mut mounted = self.mount_writable(parent.as_ref())?;
            let owner = match &request.chown {
                Some(spec) => Some(copy::parse_chown(spec, Some(&mounted.dir))?),
                None => None,
            };
            let copy_options = CopyOptions {
                owner,
                mode,
                extract_archives,
            };
            copy::copy_into(
                &source,
                &mounted.dir,
                &workdir,
                &matched,
                dest,
                &copy_options,
            )?;
            mounted.unmount()?;
            engine.commit_snapshot(&mounted.key, parent.as_ref(), &commit_options)?
        };
        self.record(state, &key, committed.image)
    }

    /// `RUN`: the command in a container of the root filesystem so far.
    fn run_step(&mut self, state: &mut StageState, instruction: &Instruction) -> Result<()> {
        for flag in &instruction.flags {
            match flag.name.as_str() {
                "network" => match flag.value.as_deref() {
                    Some("none" | "default" | "host") => {}
                    other => bail!(
                        "--network={}: RUN takes --network=none, default or host",
                        other.unwrap_or("")
                    ),
                },
                other => bail!("unknown flag --{other} for RUN (known: --network)"),
            }
        }
        let shell = shell_of(&state.config);
        let args = command(&instruction.args, &shell);
        // Build arguments the stage declared reach the command's environment (an ENV of
        // the same name wins); proxy arguments do too, without a declaration.
        let mut env: Vec<String> = state
            .config
            .get("Env")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut arg_env = Vec::new();
        for (name, value) in &state.args {
            if let Some(value) = value
                && config::env_value(&state.config, name).is_none()
            {
                arg_env.push(format!("{name}={value}"));
            }
        }
        let mut proxies = Vec::new();
        for name in PROXY_ARGS {
            if !state.args.contains_key(name)
                && let Some(Some(value)) = self.build_arg(name)
            {
                proxies.push(format!("{name}={value}"));
            }
        }
        env.extend(arg_env.iter().cloned());
        env.extend(proxies);
        let shown = match &instruction.args {
            Args::Text(text) => format!("{} {text}", shell.join(" ")),
            Args::Json(list) => serde_json::to_string(list)?,
        };
        let created_by = if arg_env.is_empty() {
            shown.clone()
        } else {
            format!("|{} {} {shown}", arg_env.len(), arg_env.join(" "))
        };
        let network_host = self.options.network_host || instruction.flag("network") == Some("host");
        let key = self.key(
            state,
            &format!("RUN {created_by}"),
            &[("network", if network_host { "host" } else { "none" })],
        );
        if let Some(image) = self.cached(&key) {
            return self.use_cache(state, image);
        }
        let parent = state.image.clone();
        let options = CommitOptions {
            omit_empty_layer: true,
            ..self.commit_options(state, created_by)
        };
        let user = state
            .config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let cwd = state
            .config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or("/")
            .to_owned();
        let engine = self.engine;
        let quiet = self.options.quiet;
        let committed = {
            let mut mounted = self.mount_writable(parent.as_ref())?;
            // A container ID as docker shows one: the step's key, hashed.
            let id = CacheKey::new()
                .part("container", &mounted.key)
                .part("pid", &std::process::id().to_string())
                .finish();
            let id = id[..12].to_owned();
            if !quiet {
                writeln!(self.out, " ---> Running in {id}")?;
                self.out.flush()?;
            }
            let container = super::run::Container {
                rootfs: mounted.dir.clone(),
                args: args.clone(),
                env,
                cwd,
                user,
                hostname: id.clone(),
                network_host,
                quiet,
            };
            let status = super::run::run(&container)?;
            if status != 0 {
                bail!(
                    "the command '{}' returned a non-zero code: {status}",
                    args.join(" ")
                );
            }
            mounted.unmount()?;
            // The runtime's /proc, /sys and /dev mount points, and the placeholders of the
            // network files, are not the step's change.
            let options = CommitOptions {
                mount_points: crate::engine::RUNTIME_MOUNTPOINTS
                    .iter()
                    .chain(&crate::container::netfiles::NETWORK_FILES)
                    .map(|path| (*path).to_owned())
                    .collect(),
                ..options
            };
            let committed = engine.commit_snapshot(&mounted.key, parent.as_ref(), &options)?;
            if !quiet {
                writeln!(self.out, "Removing intermediate container {id}")?;
            }
            committed
        };
        self.record(state, &key, committed.image)
    }
}

/// The expanded arguments of a `COPY` or `ADD`.
struct CopyRequest {
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<String>,
    arguments: Vec<String>,
}
