//! Resolving a docker `--user` value against a container's `/etc/passwd` and `/etc/group`.
//!
//! The files are opened from a descriptor of the container's root with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlinked `/etc/passwd` (or `/etc`) in an image is
//! resolved as if the rootfs were `/` and never reads a host file. The rules are runc's
//! (which docker uses): a name must exist in `/etc/passwd`; a numeric user absent from it
//! runs with that uid, group 0 and home `/`; an explicit group (name or number) replaces the
//! primary group, otherwise the user also gets every group of `/etc/group` that lists it.
//! This module does not switch users: it only computes the IDs.
//!
//! ```
//! use stencil::container::user::{parse_passwd, Account};
//! let accounts = parse_passwd("root:x:0:0:root:/root:/bin/sh\n");
//! assert_eq!(accounts[0], Account { name: "root".into(), uid: 0, gid: 0, home: "/root".into() });
//! ```

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary group IDs.
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` when the user is not listed), for `HOME`.
    pub home: String,
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Group ID.
    pub gid: u32,
    /// Names of member users.
    pub members: Vec<String>,
}

/// Why a `--user` value could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A user name that `/etc/passwd` does not list.
    #[error(
        "unable to find user {name}: no matching entries in passwd file (use a numeric uid or add the user to the image)"
    )]
    UnknownUser {
        /// The name given.
        name: String,
    },
    /// A group name that `/etc/group` does not list.
    #[error(
        "unable to find group {name}: no matching entries in group file (use a numeric gid or add the group to the image)"
    )]
    UnknownGroup {
        /// The name given.
        name: String,
    },
    /// A file of the rootfs could not be read.
    #[error("cannot read {path} in the container's root filesystem: {source}")]
    Read {
        /// Path inside the container.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses `/etc/passwd` text, skipping malformed lines.
pub fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 6 || line.starts_with('#') {
                return None;
            }
            Some(Account {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text, skipping malformed lines.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 || line.starts_with('#') {
                return None;
            }
            Some(Group {
                name: fields[0].to_owned(),
                gid: fields[2].parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads a file inside `root` without leaving it; a missing file reads as empty.
fn read_in_root(root: BorrowedFd<'_>, path: &str) -> Result<String, UserError> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let read_error = |source| UserError::Read {
        path: format!("/{path}"),
        source,
    };
    let fd = match openat2(root, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {
            return Ok(String::new());
        }
        Err(e) => return Err(read_error(e.into())),
    };
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Resolves `spec` (`""`, `name`, `uid`, `uid:gid`, `name:group`, …) against the files
/// of the container root open as `root`.
pub fn resolve(root: impl AsFd, spec: &str) -> Result<ResolvedUser, UserError> {
    resolve_adding(root, spec, &[])
}

/// As [`resolve`], with the supplementary groups `extra` (docker's `--group-add`: group
/// names of the container's `/etc/group`, or numeric gids) added.
pub fn resolve_adding(
    root: impl AsFd,
    spec: &str,
    extra: &[String],
) -> Result<ResolvedUser, UserError> {
    let root = root.as_fd();
    let passwd = parse_passwd(&read_in_root(root, "etc/passwd")?);
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let groups = parse_group(&read_in_root(root, "etc/group")?);
    let mut resolved = resolve_in(&passwd, &groups, user_part, group_part)?;
    for group in extra {
        let gid = groups
            .iter()
            .find(|g| g.name == *group)
            .map(|g| g.gid)
            .or_else(|| group.parse::<u32>().ok())
            .ok_or_else(|| UserError::UnknownGroup {
                name: group.clone(),
            })?;
        if !resolved.additional_gids.contains(&gid) {
            resolved.additional_gids.push(gid);
        }
    }
    Ok(resolved)
}

/// The rules of [`resolve`] on parsed files.
pub fn resolve_in(
    passwd: &[Account],
    groups: &[Group],
    user_part: &str,
    group_part: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_user = user_part.parse::<u32>().ok();
    let account = passwd
        .iter()
        .find(|a| a.name == user_part)
        .or_else(|| numeric_user.and_then(|uid| passwd.iter().find(|a| a.uid == uid)));
    let mut resolved = match (account, numeric_user) {
        (Some(account), _) => ResolvedUser {
            uid: account.uid,
            gid: account.gid,
            additional_gids: Vec::new(),
            home: account.home.clone(),
        },
        (None, Some(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_owned(),
        },
        (None, None) => {
            return Err(UserError::UnknownUser {
                name: user_part.to_owned(),
            });
        }
    };
    match group_part.filter(|g| !g.is_empty()) {
        Some(group) => {
            let numeric = group.parse::<u32>().ok();
            let found = groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .or(numeric);
            resolved.gid = found.ok_or_else(|| UserError::UnknownGroup {
                name: group.to_owned(),
            })?;
        }
        None => {
            if let Some(account) = account {
                let mut extra: Vec<u32> = groups
                    .iter()
                    .filter(|g| g.members.contains(&account.name))
                    .map(|g| g.gid)
                    .filter(|gid| *gid != resolved.gid)
                    .collect();
                extra.dedup();
                resolved.additional_gids = extra;
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:u:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\naudio:x:29:user\n";

    fn check(spec: &str, expected: Result<(u32, u32, &[u32], &str), &str>) {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let got = resolve_in(&parse_passwd(PASSWD), &parse_group(GROUP), user, group);
        match (got, expected) {
            (Ok(got), Ok((uid, gid, extra, home))) => {
                assert_eq!(
                    (
                        got.uid,
                        got.gid,
                        got.additional_gids.as_slice(),
                        got.home.as_str()
                    ),
                    (uid, gid, extra, home),
                    "{spec}"
                );
            }
            (Err(got), Err(fragment)) => {
                assert!(got.to_string().contains(fragment), "{spec}: {got}");
            }
            (got, expected) => panic!("{spec}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn resolves_docker_user_forms() {
        check("", Ok((0, 0, &[], "/root")));
        check("root", Ok((0, 0, &[], "/root")));
        check("user", Ok((1000, 1000, &[10, 29], "/home/user")));
        check("1000", Ok((1000, 1000, &[10, 29], "/home/user")));
        check("1000:10", Ok((1000, 10, &[], "/home/user")));
        check("user:audio", Ok((1000, 29, &[], "/home/user")));
        check("4242", Ok((4242, 0, &[], "/")));
        check("4242:4343", Ok((4242, 4343, &[], "/")));
        check("nobody", Err("unable to find user nobody"));
        check("user:nogroup", Err("unable to find group nogroup"));
    }
}
