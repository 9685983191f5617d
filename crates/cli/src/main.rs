//! The `stencil` command line: argument parsing and output, nothing else.
//!
//! Every verb is implemented in the library (`stencil::cmd`); this file maps arguments to
//! those functions and results to exit codes as docker does: 125 for an error of stencil
//! itself (including bad usage), otherwise the command's own status.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use stencil::cmd;
use stencil::cmd::reference::{Described, RefOutcome, describe};
use stencil::engine::Engine;
use stencil::options::{Environment, LogLevel, resolve_root};

/// Exit status for an error of stencil itself, as docker uses it.
const EXIT_STENCIL_ERROR: u8 = 125;

/// Daemonless container images: pull, store, run, commit, build and push.
#[derive(Debug, Parser)]
#[command(name = "stencil", version, propagate_version = true)]
struct Cli {
    /// Store root (default: $STENCIL_ROOT, /var/lib/stencil as root, else $XDG_DATA_HOME/stencil).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// How much to log on standard error (default: warn; info for `registry serve`, which
    /// logs one line per request).
    #[arg(long, global = true, value_enum, env = "STENCIL_LOG")]
    log_level: Option<LogLevel>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and normalise image references (one line per input, in order).
    #[command(name = "ref")]
    Ref {
        /// Print one JSON object per input instead of the canonical form.
        #[arg(long)]
        json: bool,
        /// References such as `ubuntu`, `jpetazzo/clock:v1`, `localhost:5000/wordpress@sha256:…`.
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
    /// Show the stencil version.
    Version,
    /// Download an image from a registry and unpack it.
    Pull(cmd::pull::PullArgs),
    /// List images.
    Images(cmd::images::ImagesArgs),
    /// Upload an image to a registry.
    Push(cmd::push::PushArgs),
    /// Write images to a docker-archive.
    Save(cmd::archive::SaveArgs),
    /// Load images from a docker-archive or oci-archive.
    Load(cmd::archive::LoadArgs),
    /// Check the store (and repair it).
    Fsck(cmd::fsck::FsckArgs),
    /// Give an image another name.
    Tag(cmd::tag::TagArgs),
    /// Remove images (untag; delete when no tag is left).
    Rmi(cmd::tag::RmiArgs),
    /// Show containers or images as docker-compatible JSON.
    Inspect(cmd::inspect::InspectArgs),
    /// Show the history of an image.
    History(cmd::inspect::HistoryArgs),
    /// Create a one-layer image from a root filesystem tarball.
    Import(cmd::import::ImportArgs),
    /// Log in to a registry (credentials kept in the docker config.json).
    Login(cmd::login::LoginArgs),
    /// Log out from a registry.
    Logout(cmd::login::LogoutArgs),
    /// Search a registry (Docker Hub by default) for images, or list a repository's tags.
    Search(cmd::search::SearchArgs),
    /// Show what a registry serves for an image (`stencil manifest inspect`).
    #[command(subcommand)]
    Manifest(cmd::manifest::ManifestCommand),
    /// Show how stencil is set up: store, driver, counts, kernel, registries.
    Info(cmd::system::InfoArgs),
    /// Manage the store as a whole (`stencil system df`, `system prune`).
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// The built-in registry (`stencil registry serve`).
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    /// Build an image from a Dockerfile.
    Build(cmd::build::BuildArgs),
    /// Manage images (`stencil image ls`, …).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers (`stencil container ls`, `container prune`, …).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes (`stencil volume create`, `volume ls`, `volume rm`, …).
    #[command(subcommand)]
    Volume(cmd::volumes::VolumeCommand),
    /// Create a container (prints its ID).
    Create(cmd::containers::CreateArgs),
    /// Create and start a container.
    Run(cmd::containers::RunArgs),
    /// Start stopped containers.
    Start(cmd::containers::StartArgs),
    /// List containers.
    Ps(cmd::containers::PsArgs),
    /// Show the output of a container.
    Logs(cmd::containers::LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL).
    Stop(cmd::containers::StopArgs),
    /// Send a signal to running containers.
    Kill(cmd::containers::KillArgs),
    /// Stop and start containers again.
    Restart(cmd::containers::RestartArgs),
    /// Give a container another name.
    Rename(cmd::containers::RenameArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(cmd::containers::WaitArgs),
    /// Remove containers.
    Rm(cmd::containers::RmArgs),
    /// Run a command in a running container.
    Exec(cmd::containers::ExecArgs),
    /// Show the files a container added (A), changed (C) and deleted (D).
    Diff(cmd::containers::DiffArgs),
    /// Create a new image from a container's changes.
    Commit(cmd::containers::CommitArgs),
    /// Write a container's filesystem as a tar archive.
    Export(cmd::containers::ExportArgs),
    /// Copy files between a container and the host.
    Cp(cmd::cp::CpArgs),
    /// Show the processes of a running container.
    Top(cmd::containers::TopArgs),
    /// Attach to a running container's output (and input, with -i), until it stops.
    Attach(cmd::containers::AttachArgs),
    /// Show containers' CPU, memory, I/O and process counts.
    Stats(cmd::resources::StatsArgs),
    /// Change the memory, CPU and process limits of containers.
    Update(cmd::resources::UpdateArgs),
    /// Freeze every process of containers.
    Pause(cmd::resources::PauseArgs),
    /// Let paused containers run again.
    Unpause(cmd::resources::PauseArgs),
    /// Internal: the container side of `cp`, chrooted into its root filesystem.
    #[command(name = "__cp", hide = true)]
    CpChroot(cmd::cp::ChrootArgs),
    /// Internal: watch a detached container (started by `run -d` and `start`).
    #[command(name = "__monitor", hide = true)]
    ContainerMonitor {
        /// The container's full ID.
        id: String,
        /// Take over a restarting container and start it after this many milliseconds.
        #[arg(long = stencil::container::monitor::RESTART_AFTER_FLAG, value_name = "MS")]
        restart_after_ms: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List images (same as `stencil images`).
    #[command(alias = "list")]
    Ls(cmd::images::ImagesArgs),
    /// Remove images (same as `stencil rmi`).
    Rm(cmd::tag::RmiArgs),
    /// Tag an image (same as `stencil tag`).
    Tag(cmd::tag::TagArgs),
    /// Show images as JSON (same as `stencil inspect`).
    Inspect(cmd::inspect::InspectArgs),
    /// Show the history of an image (same as `stencil history`).
    History(cmd::inspect::HistoryArgs),
    /// Pull an image (same as `stencil pull`).
    Pull(cmd::pull::PullArgs),
    /// Push an image (same as `stencil push`).
    Push(cmd::push::PushArgs),
    /// Save images (same as `stencil save`).
    Save(cmd::archive::SaveArgs),
    /// Load images (same as `stencil load`).
    Load(cmd::archive::LoadArgs),
    /// Mount an image's root filesystem read-only and print its path.
    Mount(cmd::mount::MountArgs),
    /// Unmount what `image mount` mounted.
    #[command(alias = "umount")]
    Unmount(cmd::mount::MountArgs),
    /// Remove dangling images (with -a, every image no container uses).
    Prune(cmd::system::PruneArgs),
    /// Create an image from a tarball (same as `stencil import`).
    Import(cmd::import::ImportArgs),
    /// Build an image from a Dockerfile (same as `stencil build`).
    Build(cmd::build::BuildArgs),
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// List containers (same as `stencil ps`).
    #[command(alias = "list", alias = "ps")]
    Ls(cmd::containers::PsArgs),
    /// Create a container (same as `stencil create`).
    Create(cmd::containers::CreateArgs),
    /// Create and start a container (same as `stencil run`).
    Run(cmd::containers::RunArgs),
    /// Start stopped containers (same as `stencil start`).
    Start(cmd::containers::StartArgs),
    /// Stop running containers (same as `stencil stop`).
    Stop(cmd::containers::StopArgs),
    /// Send a signal to running containers (same as `stencil kill`).
    Kill(cmd::containers::KillArgs),
    /// Stop and start containers again (same as `stencil restart`).
    Restart(cmd::containers::RestartArgs),
    /// Give a container another name (same as `stencil rename`).
    Rename(cmd::containers::RenameArgs),
    /// Wait for containers to stop (same as `stencil wait`).
    Wait(cmd::containers::WaitArgs),
    /// Remove containers (same as `stencil rm`).
    #[command(alias = "remove")]
    Rm(cmd::containers::RmArgs),
    /// Run a command in a running container (same as `stencil exec`).
    Exec(cmd::containers::ExecArgs),
    /// Show the output of a container (same as `stencil logs`).
    Logs(cmd::containers::LogsArgs),
    /// Show what a container changed (same as `stencil diff`).
    Diff(cmd::containers::DiffArgs),
    /// Create an image from a container's changes (same as `stencil commit`).
    Commit(cmd::containers::CommitArgs),
    /// Write a container's filesystem as a tar (same as `stencil export`).
    Export(cmd::containers::ExportArgs),
    /// Copy files between a container and the host (same as `stencil cp`).
    Cp(cmd::cp::CpArgs),
    /// Show the processes of a running container (same as `stencil top`).
    Top(cmd::containers::TopArgs),
    /// Attach to a running container (same as `stencil attach`).
    Attach(cmd::containers::AttachArgs),
    /// Show resource usage (same as `stencil stats`).
    Stats(cmd::resources::StatsArgs),
    /// Change containers' limits (same as `stencil update`).
    Update(cmd::resources::UpdateArgs),
    /// Freeze containers (same as `stencil pause`).
    Pause(cmd::resources::PauseArgs),
    /// Thaw paused containers (same as `stencil unpause`).
    Unpause(cmd::resources::PauseArgs),
    /// Show containers as docker-compatible JSON.
    Inspect(cmd::containers::ContainerInspectArgs),
    /// Remove every stopped container.
    Prune(cmd::containers::ContainerPruneArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let status = if error.use_stderr() {
                EXIT_STENCIL_ERROR
            } else {
                0
            };
            // Help and version requests go to stdout; usage errors to stderr.
            let _ = error.print();
            return ExitCode::from(status);
        }
    };
    let default_level = match cli.command {
        Command::Registry(_) => LogLevel::Info,
        _ => LogLevel::Warn,
    };
    init_logging(cli.log_level.unwrap_or(default_level));
    let root = cli.root.clone();
    let result = match cli.command {
        Command::Ref { json, references } => return run_ref(json, &references),
        Command::Version => {
            println!("stencil version {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => {
            with_engine(root, |engine| {
                runtime()?.block_on(cmd::push::run(engine, &args))
            })
        }
        Command::Save(args) | Command::Image(ImageCommand::Save(args)) => {
            with_engine(root, |engine| cmd::archive::save(engine, &args))
        }
        Command::Load(args) | Command::Image(ImageCommand::Load(args)) => {
            with_engine(root, |engine| cmd::archive::load(engine, &args))
        }
        Command::Registry(cmd::registry::RegistryCommand::Serve(args)) => {
            with_engine(root, |engine| {
                cmd::registry::validate(&args)?;
                runtime()?.block_on(cmd::registry::serve(engine, &args))
            })
        }
        Command::Build(args) | Command::Image(ImageCommand::Build(args)) => {
            with_engine(root, |engine| cmd::build::run(engine, &args))
        }
        Command::Fsck(args) => with_engine(root, |engine| cmd::fsck::run(engine, &args)),
        Command::Image(ImageCommand::Mount(args)) => {
            with_engine(root, |engine| cmd::mount::mount(engine, &args))
        }
        Command::Image(ImageCommand::Unmount(args)) => {
            with_engine(root, |engine| cmd::mount::unmount(engine, &args))
        }
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => {
            with_engine(root, |engine| cmd::tag::tag(engine, &args))
        }
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => {
            with_engine(root, |engine| cmd::tag::rmi(engine, &args))
        }
        Command::Inspect(args) => with_engine(root, |engine| cmd::inspect::inspect(engine, &args)),
        Command::Image(ImageCommand::Inspect(mut args)) => {
            args.kind = Some(cmd::inspect::ObjectType::Image);
            with_engine(root, |engine| cmd::inspect::inspect(engine, &args))
        }
        Command::Container(ContainerCommand::Inspect(args)) => with_engine(root, |engine| {
            cmd::containers::container_inspect(engine, &args)
        }),
        Command::Container(ContainerCommand::Prune(args)) => with_engine(root, |engine| {
            cmd::containers::container_prune(engine, &args)
        }),
        Command::Info(args) => with_engine(root, |engine| print(cmd::system::info(engine, &args)?)),
        Command::Import(args) | Command::Image(ImageCommand::Import(args)) => {
            with_engine(root, |engine| cmd::import::run(engine, &args))
        }
        Command::Login(args) => with_engine(root, |engine| {
            runtime()?.block_on(cmd::login::login(engine, &args))
        }),
        Command::Logout(args) => with_engine(root, |engine| cmd::login::logout(engine, &args)),
        Command::System(command) => with_engine(root, |engine| cmd::system::run(engine, &command)),
        Command::Image(ImageCommand::Prune(args)) => {
            with_engine(root, |engine| cmd::system::prune(engine, &args))
        }
        Command::Manifest(cmd::manifest::ManifestCommand::Inspect(args)) => {
            with_engine(root, |engine| {
                let bytes = runtime()?.block_on(cmd::manifest::inspect(engine, &args))?;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .context("cannot write to standard output")
            })
        }
        Command::Search(args) => with_engine(root, |engine| {
            print(runtime()?.block_on(cmd::search::run(engine, &args))?)
        }),
        Command::History(args) | Command::Image(ImageCommand::History(args)) => {
            with_engine(root, |engine| print(cmd::inspect::history(engine, &args)?))
        }
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => {
            with_engine(root, |engine| {
                runtime()?.block_on(cmd::pull::run(engine, &args))
            })
        }
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => {
            with_engine(root, |engine| print(cmd::images::run(engine, &args)?))
        }
        Command::Ps(args) | Command::Container(ContainerCommand::Ls(args)) => {
            with_engine(root, |engine| print(cmd::containers::ps(engine, &args)?))
        }
        Command::Diff(args) | Command::Container(ContainerCommand::Diff(args)) => {
            with_engine(root, |engine| print(cmd::containers::diff(engine, &args)?))
        }
        Command::Commit(args) | Command::Container(ContainerCommand::Commit(args)) => {
            with_engine(root, |engine| {
                print(cmd::containers::commit(engine, &args)?)
            })
        }
        Command::Create(args) | Command::Container(ContainerCommand::Create(args)) => {
            return with_status(root, |e| cmd::containers::create(e, &args));
        }
        Command::Run(args) | Command::Container(ContainerCommand::Run(args)) => {
            return with_status(root, |e| cmd::containers::run(e, &args));
        }
        Command::Start(args) | Command::Container(ContainerCommand::Start(args)) => {
            return with_status(root, |e| cmd::containers::start(e, &args));
        }
        Command::Attach(args) | Command::Container(ContainerCommand::Attach(args)) => {
            return with_status(root, |e| cmd::containers::attach(e, &args));
        }
        Command::Logs(args) | Command::Container(ContainerCommand::Logs(args)) => {
            return with_status(root, |e| cmd::containers::logs(e, &args));
        }
        Command::Stop(args) | Command::Container(ContainerCommand::Stop(args)) => {
            return with_status(root, |e| cmd::containers::stop(e, &args));
        }
        Command::Kill(args) | Command::Container(ContainerCommand::Kill(args)) => {
            return with_status(root, |e| cmd::containers::kill(e, &args));
        }
        Command::Restart(args) | Command::Container(ContainerCommand::Restart(args)) => {
            return with_status(root, |e| cmd::containers::restart(e, &args));
        }
        Command::Rename(args) | Command::Container(ContainerCommand::Rename(args)) => {
            with_engine(root, |engine| cmd::containers::rename(engine, &args))
        }
        Command::Wait(args) | Command::Container(ContainerCommand::Wait(args)) => {
            return with_status(root, |e| cmd::containers::wait(e, &args));
        }
        Command::Rm(args) | Command::Container(ContainerCommand::Rm(args)) => {
            return with_status(root, |e| cmd::containers::rm(e, &args));
        }
        Command::Exec(args) | Command::Container(ContainerCommand::Exec(args)) => {
            return with_status(root, |e| cmd::containers::exec(e, &args));
        }
        Command::Export(args) | Command::Container(ContainerCommand::Export(args)) => {
            return with_status(root, |e| cmd::containers::export(e, &args));
        }
        Command::Cp(args) | Command::Container(ContainerCommand::Cp(args)) => {
            with_engine(root, |engine| cmd::cp::run(engine, &args))
        }
        Command::CpChroot(args) => cmd::cp::chroot_main(&args),
        Command::Top(args) | Command::Container(ContainerCommand::Top(args)) => {
            with_engine(root, |engine| print(cmd::containers::top(engine, &args)?))
        }
        Command::Stats(args) | Command::Container(ContainerCommand::Stats(args)) => {
            return with_status(root, |e| cmd::resources::stats(e, &args));
        }
        Command::Update(args) | Command::Container(ContainerCommand::Update(args)) => {
            return with_status(root, |e| cmd::resources::update(e, &args));
        }
        Command::Pause(args) | Command::Container(ContainerCommand::Pause(args)) => {
            return with_status(root, |e| cmd::resources::pause(e, &args));
        }
        Command::Unpause(args) | Command::Container(ContainerCommand::Unpause(args)) => {
            return with_status(root, |e| cmd::resources::unpause(e, &args));
        }
        Command::Volume(command) => {
            return with_status(root, |e| cmd::volumes::run(e, &command));
        }
        Command::ContainerMonitor {
            id,
            restart_after_ms,
        } => {
            let delay = restart_after_ms.map(std::time::Duration::from_millis);
            return with_status(root, |e| {
                Ok(stencil::container::monitor::monitor(e, &id, delay))
            });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {}", stencil::render::error::message(&error));
            ExitCode::from(EXIT_STENCIL_ERROR)
        }
    }
}

/// Like [`with_engine`] for verbs whose status is a process's: `body`'s code is the exit
/// status; a container that could not start exits with docker's 125, 126 or 127.
fn with_status(flag: Option<PathBuf>, body: impl FnOnce(&Engine) -> Result<i32>) -> ExitCode {
    let mut code = 0;
    let result = with_engine(flag, |engine| {
        code = body(engine)?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_STENCIL_ERROR)),
        Err(error) => {
            eprintln!("Error: {}", stencil::render::error::message(&error));
            let status = error
                .downcast_ref::<stencil::container::monitor::StartFailure>()
                .map_or(i32::from(EXIT_STENCIL_ERROR), |failure| failure.code);
            ExitCode::from(u8::try_from(status).unwrap_or(EXIT_STENCIL_ERROR))
        }
    }
}

/// Opens the store chosen by `--root` and the environment, and runs `body` on it.
fn with_engine(flag: Option<PathBuf>, body: impl FnOnce(&Engine) -> Result<()>) -> Result<()> {
    let root = resolve_root(flag, &Environment::from_process())
        .context("no store root: pass --root DIR or set STENCIL_ROOT")?;
    tracing::debug!(root = %root.display(), "store root");
    let engine = Engine::open(&root)?;
    body(&engine)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn print(text: String) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the output quietly, as with other tools.
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

fn init_logging(level: LogLevel) {
    // Colours only for a person at a terminal; logs captured to files stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(level.as_filter())
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .init();
}

fn run_ref(json: bool, references: &[String]) -> ExitCode {
    let described: Vec<Described> = references.iter().map(|r| describe(r)).collect();
    let mut out = std::io::stdout().lock();
    let mut all_valid = true;
    for item in &described {
        all_valid &= item.is_valid();
        let written = if json {
            writeln!(out, "{}", item.to_json())
        } else {
            match &item.outcome {
                RefOutcome::Parsed(r) => writeln!(out, "{}", r.canonical()),
                RefOutcome::Invalid(e) => {
                    // Keep stdout and stderr lines in input order when both reach a terminal.
                    let _ = out.flush();
                    eprintln!("stencil: {e}");
                    Ok(())
                }
            }
        };
        if written.is_err() {
            // A closed pipe (e.g. `| head`) is not an error worth reporting.
            return ExitCode::SUCCESS;
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
