//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` of a container, as docker and
//! podman provide them: written into a directory of the caller's on the host and
//! bind-mounted over the image's own, so that names resolve (`localhost`, the container's
//! hostname, and DNS through the host's resolvers) in images that ship none of them,
//! which is most images on a registry.
//!
//! With the host's network, `hosts` and `resolv.conf` are the host's (with the
//! container's hostname added to `hosts`); with no network, `hosts` holds the loopback
//! names only. A target the user bind-mounts with `-v`, or that the image makes a
//! symlink or a directory, is left alone. The runtime creates a missing target as an
//! empty file to mount on; diff and commit leave such placeholders out
//! ([`NETWORK_FILES`]), as docker's init layer does.
//!
//! ```
//! use stencil::container::netfiles::network_files;
//! use stencil::container::runtime::Network;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let rootfs = tempfile::tempdir().unwrap();
//! let extra = ["db:10.0.0.5".to_owned()];
//! let volumes =
//!     network_files(dir.path(), rootfs.path(), "web1", Network::None, &[], &extra).unwrap();
//! assert_eq!(volumes.len(), 3);
//! let hosts = std::fs::read_to_string(dir.path().join("hosts")).unwrap();
//! assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
//! assert!(hosts.contains("\tweb1\n"));
//! assert!(hosts.ends_with("10.0.0.5\tdb\n"));
//! ```

use std::io;
use std::path::Path;

use super::runtime::{Network, Volume};

/// The files a container gets, as paths inside it.
pub const NETWORK_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// What `/etc/hosts` holds without the host's network (docker's default entries).
const LOOPBACK_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Writes the files for a container named `hostname` into `dir` and returns the bind
/// mounts that put them in place in `rootfs`, skipping the targets in `taken` (the
/// user's own volumes) and those the image makes something other than a file.
/// `extra_hosts` (`NAME:IP`, from `--add-host`) are added to `hosts`, last.
pub fn network_files(
    dir: &Path,
    rootfs: &Path,
    hostname: &str,
    network: Network,
    taken: &[Volume],
    extra_hosts: &[String],
) -> io::Result<Vec<Volume>> {
    let hostname = if hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        hostname.to_owned()
    };
    let hosts = match network {
        Network::Host => {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| LOOPBACK_HOSTS.to_owned())
        }
        Network::None => LOOPBACK_HOSTS.to_owned(),
    };
    let mut hosts = with_hostname(hosts, &hostname);
    for entry in extra_hosts {
        // The address may be IPv6, with colons of its own: the name ends at the first.
        if let Some((name, address)) = entry.split_once(':') {
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&format!("{address}\t{name}\n"));
        }
    }
    // Without the host's resolver configuration there is nothing sensible to give.
    let resolv = std::fs::read("/etc/resolv.conf").ok();
    let etc_usable = match std::fs::symlink_metadata(rootfs.join("etc")) {
        Ok(meta) => meta.is_dir(),
        Err(error) => error.kind() == io::ErrorKind::NotFound,
    };
    let mut volumes = Vec::new();
    if !etc_usable {
        return Ok(volumes);
    }
    std::fs::create_dir_all(dir)?;
    let contents: [(&str, Option<Vec<u8>>); 3] = [
        ("hostname", Some(format!("{hostname}\n").into_bytes())),
        ("hosts", Some(hosts.into_bytes())),
        ("resolv.conf", resolv),
    ];
    for (target, (name, content)) in NETWORK_FILES.iter().zip(contents) {
        let Some(content) = content else {
            continue;
        };
        if taken.iter().any(|v| same_target(&v.container, target)) {
            continue;
        }
        let inside = rootfs.join(target.trim_start_matches('/'));
        let usable = match std::fs::symlink_metadata(&inside) {
            Ok(meta) => meta.is_file(),
            Err(error) => error.kind() == io::ErrorKind::NotFound,
        };
        if !usable {
            continue;
        }
        let host = dir.join(name);
        std::fs::write(&host, content)?;
        volumes.push(Volume {
            host,
            container: (*target).to_owned(),
            read_only: false,
        });
    }
    Ok(volumes)
}

/// `hosts` with a line naming `hostname` on the loopback address when no line has it.
fn with_hostname(mut hosts: String, hostname: &str) -> String {
    if hostname.is_empty() {
        return hosts;
    }
    let listed = hosts.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        line.split_whitespace().skip(1).any(|name| name == hostname)
    });
    if !listed {
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    hosts
}

/// Whether two absolute paths inside a container name the same place (`/etc//hosts/`).
fn same_target(a: &str, b: &str) -> bool {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    parts(a) == parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hostname_is_added_once() {
        assert_eq!(
            with_hostname("127.0.0.1 localhost\n".into(), "box"),
            "127.0.0.1 localhost\n127.0.0.1\tbox\n"
        );
        assert_eq!(
            with_hostname("127.0.0.1 localhost box\n".into(), "box"),
            "127.0.0.1 localhost box\n"
        );
        // A comment naming it does not count; a missing final newline is mended.
        assert_eq!(
            with_hostname("127.0.0.1 localhost # box".into(), "box"),
            "127.0.0.1 localhost # box\n127.0.0.1\tbox\n"
        );
    }

    #[test]
    fn targets_the_image_or_the_user_owns_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/run/resolv.conf", rootfs.path().join("etc/resolv.conf"))
            .unwrap();
        std::fs::write(rootfs.path().join("etc/hostname"), "old\n").unwrap();
        let taken = [Volume {
            host: "/srv/hosts".into(),
            container: "/etc//hosts/".into(),
            read_only: true,
        }];
        let volumes =
            network_files(dir.path(), rootfs.path(), "c1", Network::Host, &taken, &[]).unwrap();
        let targets: Vec<&str> = volumes.iter().map(|v| v.container.as_str()).collect();
        assert_eq!(targets, ["/etc/hostname"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "c1\n"
        );

        // An image whose /etc is not a directory gets none.
        let odd = tempfile::tempdir().unwrap();
        std::fs::write(odd.path().join("etc"), "").unwrap();
        let none = network_files(dir.path(), odd.path(), "c1", Network::None, &[], &[]).unwrap();
        assert!(none.is_empty());
    }
}
