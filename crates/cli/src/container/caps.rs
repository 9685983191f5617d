//! Docker's default capability set: what a container's root keeps, and nothing more.
//!
//! The same list feeds the built-in runtime (a bit mask for `capset` and the bounding set)
//! and the OCI bundle (names such as `CAP_CHOWN`). `--cap-add`, `--cap-drop` and
//! `--privileged` change it as docker's do ([`container_mask`]).
//!
//! ```
//! use stencil::container::caps::{DEFAULT_CAPABILITIES, container_mask, default_mask};
//! assert_eq!(DEFAULT_CAPABILITIES.len(), 14);
//! assert_eq!(default_mask(), 0xa80425fb); // docker's CapEff for a root container
//! let mask = container_mask(&["net_admin".into()], &["CAP_CHOWN".into()], false).unwrap();
//! assert_eq!(mask, (default_mask() | 1 << 12) & !1);
//! assert_eq!(container_mask(&["NET_RAW".into()], &["ALL".into()], false), Ok(1 << 13));
//! ```

/// Docker's default capabilities: name and number.
pub const DEFAULT_CAPABILITIES: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// The default set as a bit mask (bit N = capability N).
pub fn default_mask() -> u64 {
    DEFAULT_CAPABILITIES
        .iter()
        .fold(0, |mask, (_, number)| mask | (1u64 << number))
}

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`),
/// 40 when it cannot be read.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

/// Every capability Linux defines, by number (`CAP_` left out).
const ALL_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Every capability the running kernel knows and we hold (`CapPrm` of
/// `/proc/self/status`: a sandbox may have taken some from us), as a mask.
pub fn all_mask() -> u64 {
    let last = last_capability().min(63);
    let known = if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let held = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapPrm:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(known);
    known & held
}

/// The number of capability `name` as docker spells it: `NET_ADMIN`, `CAP_NET_ADMIN`, any
/// case.
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_NAMES
        .iter()
        .position(|known| *known == bare)
        .map(|index| index as u32)
}

/// The names (`CAP_…`) of the capabilities in `mask`, lowest number first.
pub fn mask_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match ALL_NAMES.get(bit as usize) {
            Some(name) => format!("CAP_{name}"),
            None => format!("CAP_{bit}"),
        })
        .collect()
}

/// A container's capabilities as docker computes them: every one with `privileged` or
/// `--cap-add ALL` (less the drops); only the added ones with `--cap-drop ALL`; otherwise
/// the default set less the drops plus the adds. A name no kernel knows is an error that
/// names it.
pub fn container_mask(add: &[String], drop: &[String], privileged: bool) -> Result<u64, String> {
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    let mask_of = |names: &[String], flag: &str| -> Result<u64, String> {
        names
            .iter()
            .filter(|name| !is_all(name))
            .try_fold(0u64, |mask, name| match capability_number(name) {
                Some(number) => Ok(mask | (1u64 << number)),
                None => Err(format!(
                    "invalid {flag} {name:?}: no such capability (write NET_ADMIN, SYS_PTRACE, … or ALL)"
                )),
            })
    };
    let added = mask_of(add, "--cap-add")?;
    let dropped = mask_of(drop, "--cap-drop")?;
    let mask = if privileged || add.iter().any(is_all) {
        if drop.iter().any(is_all) {
            added
        } else {
            all_mask() & !dropped
        }
    } else if drop.iter().any(is_all) {
        added
    } else {
        (default_mask() & !dropped) | added
    };
    Ok(mask & all_mask())
}
