//! Human units as docker prints them: `72.8MB` sizes and `2 weeks ago` durations.
//!
//! ```
//! use stencil::render::units::{binary_size, human_size, human_duration};
//!
//! assert_eq!(human_size(72_800_000), "72.8MB");
//! assert_eq!(human_duration(3 * 24 * 3600), "3 days");
//! assert_eq!(binary_size(64 << 20), "64MiB");
//! ```

/// A byte count in decimal units with three significant digits, as `docker images` does.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", three_significant(value), UNITS[unit])
}

/// Formats like Go's `%.3g`: three significant digits, no trailing zeros.
fn three_significant(value: f64) -> String {
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A byte count in binary units with four significant digits (`64MiB`, `1.5GiB`), as
/// `docker stats` shows memory.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = if value >= 1000.0 {
        0
    } else if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

/// A duration in seconds in words, as docker's `CREATED` column shows it before "ago".
pub fn human_duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    match seconds {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours < 2 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{days} days"),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", days / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", days / 30),
        _ => format!("{} years", days / 365),
    }
}

/// A duration as Go prints one (`500ms`, `30s`, `1m30s`, `1h0m0s`), as docker's messages
/// quote timeouts.
pub fn go_duration(duration: std::time::Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = match nanos {
            n if n < 1_000 => (n as f64, "ns"),
            n if n < 1_000_000 => (n as f64 / 1e3, "µs"),
            n => (n as f64 / 1e6, "ms"),
        };
        return format!("{}{unit}", trim_fraction(value));
    }
    let seconds = duration.as_secs();
    let fraction = f64::from(duration.subsec_nanos()) / 1e9;
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let secs = trim_fraction(secs as f64 + fraction);
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_gos() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(500)), "500ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(30_000)), "30s");
        assert_eq!(go_duration(ms(90_000)), "1m30s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    }

    #[test]
    fn sizes_use_decimal_units_and_three_significant_digits() {
        let table: &[(u64, &str)] = &[
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1_234, "1.23kB"),
            (72_800_000, "72.8MB"),
            (123_456_789, "123MB"),
            (5_000_000_000, "5GB"),
        ];
        for (bytes, expected) in table {
            assert_eq!(human_size(*bytes), *expected, "{bytes} bytes");
        }
    }

    #[test]
    fn durations_read_like_dockers() {
        let table: &[(u64, &str)] = &[
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (90, "About a minute"),
            (600, "10 minutes"),
            (3600, "About an hour"),
            (5 * 3600, "5 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (seconds, expected) in table {
            assert_eq!(human_duration(*seconds), *expected, "{seconds} s");
        }
    }
}
