//! `stencil login [-u USER] [-p PASS | --password-stdin] [SERVER]` and
//! `stencil logout [SERVER]`, with docker's messages.
//!
//! Without `-u` or a password, and with a terminal on standard input, the missing ones are
//! asked for (the password without echo); without a terminal they must be given.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};

use crate::engine::{Engine, docker_config_path, login_server, server_key};

/// Arguments of `stencil login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The user name.
    #[arg(short, long, value_name = "USER")]
    pub username: Option<String>,
    /// The password (visible to other users in the process list: prefer --password-stdin).
    #[arg(
        short,
        long,
        value_name = "PASSWORD",
        conflicts_with = "password_stdin"
    )]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry (default: Docker Hub).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// Arguments of `stencil logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// Runs `stencil login`.
pub async fn login(engine: &Engine, args: &LoginArgs) -> Result<()> {
    let server = login_server(args.server.as_deref())?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            bail!("login to {server}: --password-stdin needs --username (-u)");
        }
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        Some(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
    } else {
        args.password.clone()
    };
    let username = match &args.username {
        Some(user) => user.clone(),
        None if interactive => prompt("Username: ")?,
        None => bail!(
            "login to {server}: no user name; give -u USER (standard input is not a terminal to ask on)"
        ),
    };
    let password = match password {
        Some(password) => password,
        None if interactive => prompt_hidden("Password: ")?,
        None => bail!(
            "login to {server}: no password; give --password-stdin or -p (standard input is not a terminal to ask on)"
        ),
    };
    engine.login(&server, &username, &password).await?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {} unless a credential helper is configured.",
        docker_config_path().display()
    );
    println!("Login Succeeded");
    Ok(())
}

/// Runs `stencil logout`.
pub fn logout(engine: &Engine, args: &LogoutArgs) -> Result<()> {
    let server = login_server(args.server.as_deref())?;
    let key = server_key(&server);
    if engine.logout(&server)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on the terminal with echo off, restoring the terminal afterwards.
fn prompt_hidden(label: &str) -> Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain old data; tcgetattr fills it and reports failure by -1.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is standard input and `saved` is a valid termios to write into.
    let have_terminal = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_terminal {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios derived from the terminal's own settings.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let answer = prompt(label);
    if have_terminal {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    answer
}
