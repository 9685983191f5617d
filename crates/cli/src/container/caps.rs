//! Docker's default capability set: what a container's root keeps, and nothing more.
//!
//! The same list feeds the built-in runtime (a bit mask for `capset` and the bounding set)
//! and the OCI bundle (names such as `CAP_CHOWN`). It is docker's default; there is no
//! `--cap-add` yet.
//!
//! ```
//! use stencil::container::caps::{DEFAULT_CAPABILITIES, default_mask};
//! assert_eq!(DEFAULT_CAPABILITIES.len(), 14);
//! assert_eq!(default_mask(), 0xa80425fb); // docker's CapEff for a root container
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
