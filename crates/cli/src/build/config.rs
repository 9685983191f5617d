//! What the metadata instructions (`ENV`, `LABEL`, `ARG`, `EXPOSE`, `VOLUME`, `CMD`,
//! `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, …) do to an image's container config, with
//! docker's key names (`Env`, `Labels`, `ExposedPorts`, `Volumes`, `Cmd`, `Entrypoint`,
//! `Shell`, `Healthcheck`, `OnBuild`, `StopSignal`, `User`, `WorkingDir`).
//!
//! Pure functions on already-substituted text: the caller expands variables first
//! ([`super::words`]). Errors are plain messages; the caller adds the Dockerfile line.
//!
//! ```
//! use stencil::build::config::{exposed_ports, parse_duration};
//!
//! assert_eq!(exposed_ports("8000-8001/udp").unwrap(), ["8000/udp", "8001/udp"]);
//! assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
//! ```

use serde_json::{Map, Value, json};

use super::parse::{Args, Flag};
use super::words::{Lexer, split_raw};

/// The default shell of `RUN`, `CMD` and `ENTRYPOINT` in the shell form.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned()]
}

/// The shell a config names (`SHELL`), else the default.
pub fn shell_of(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("Shell")
        .and_then(|s| serde_json::from_value::<Vec<String>>(s.clone()).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_shell)
}

/// The command of `RUN`/`CMD`/`ENTRYPOINT`: the exec form as it is, the shell form run by
/// `shell`.
pub fn command(args: &Args, shell: &[String]) -> Vec<String> {
    match args {
        Args::Json(list) => list.clone(),
        Args::Text(text) => {
            let mut command = shell.to_vec();
            command.push(text.clone());
            command
        }
    }
}

/// `KEY=VALUE …` pairs (expanded one by one, quotes removed), or with `legacy` the old
/// `KEY the rest is the value` form when the first word has no `=`.
pub fn pairs(
    text: &str,
    lexer: &Lexer<'_>,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, String> {
    let words = split_raw(text, escape)?;
    let first_has_equals = words.first().is_some_and(|w| w.contains('='));
    if legacy && !first_has_equals {
        let trimmed = text.trim();
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(k, v)| (k, v.trim()));
        if value.is_empty() {
            return Err(format!(
                "{key:?} needs a value: write {key}=VALUE (or {key} VALUE)"
            ));
        }
        return Ok(vec![(lexer.word(key)?, lexer.word(value)?)]);
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((lexer.word(key)?, lexer.word(value)?)),
            _ => Err(format!("{word:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Sets `KEY=VALUE` in the config's `Env`, replacing an earlier value of `KEY`.
pub fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let env = config.entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    if let Some(list) = env.as_array_mut() {
        let prefix = format!("{key}=");
        match list
            .iter_mut()
            .find(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
        {
            Some(slot) => *slot = json!(format!("{key}={value}")),
            None => list.push(json!(format!("{key}={value}"))),
        }
    }
}

/// The value of `key` in the config's `Env`.
pub fn env_value(config: &Map<String, Value>, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    config
        .get("Env")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
}

/// Sets `name` to `value` in an object-valued entry of the config (`Labels`,
/// `ExposedPorts`, `Volumes`), created (or replaced, when not an object) as needed.
pub fn insert_into(config: &mut Map<String, Value>, key: &str, name: &str, value: Value) {
    let mut object = match config.remove(key) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    object.insert(name.to_owned(), value);
    config.insert(key.to_owned(), Value::Object(object));
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002` → `80/tcp`, … (ranges expanded, as docker does).
pub fn exposed_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = word.split_once('/').unwrap_or((word, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let bad = || format!("{word:?} is not a port (PORT[-PORT][/tcp|udp|sctp], 1-65535)");
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(bad());
    }
    let number = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (low, high) = match ports.split_once('-') {
        Some((low, high)) => (number(low)?, number(high)?),
        None => {
            let port = number(ports)?;
            (port, port)
        }
    };
    if low > high {
        return Err(bad());
    }
    Ok((low..=high).map(|p| format!("{p}/{protocol}")).collect())
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration: write it like 30s, 1m30s or 500ms");
    if text == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total as i64)
}

/// The config's `Healthcheck` for `HEALTHCHECK [OPTIONS] CMD …` or `HEALTHCHECK NONE`.
pub fn healthcheck(flags: &[Flag], text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let (word, rest) = trimmed
        .split_once(char::is_whitespace)
        .map_or((trimmed, ""), |(w, r)| (w, r.trim()));
    if word.eq_ignore_ascii_case("NONE") {
        if !rest.is_empty() || !flags.is_empty() {
            return Err("HEALTHCHECK NONE takes no other argument".to_owned());
        }
        return Ok(json!({"Test": ["NONE"]}));
    }
    if !word.eq_ignore_ascii_case("CMD") || rest.is_empty() {
        return Err("write HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE".to_owned());
    }
    let test: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(list) if rest.starts_with('[') => {
            std::iter::once("CMD".to_owned()).chain(list).collect()
        }
        _ => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
    };
    let mut check = Map::new();
    check.insert("Test".into(), json!(test));
    for flag in flags {
        let value = flag.value.as_deref().unwrap_or("");
        let key = match flag.name.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let retries: i64 = value
                    .parse()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| format!("--retries={value}: give a whole number"))?;
                check.insert("Retries".into(), json!(retries));
                continue;
            }
            other => {
                return Err(format!(
                    "unknown flag --{other} for HEALTHCHECK (known: --interval, --timeout, --start-period, --start-interval, --retries)"
                ));
            }
        };
        let nanos = parse_duration(value).map_err(|e| format!("--{}: {e}", flag.name))?;
        check.insert(key.into(), json!(nanos));
    }
    Ok(Value::Object(check))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "V").then(|| "1".to_owned())
    }

    #[test]
    fn pairs_expand_each_value() {
        let lexer = Lexer::new('\\', &lookup);
        let got = pairs("A=$V B=\"x y\" C='$V'", &lexer, '\\', true);
        assert_eq!(
            got,
            Ok(vec![
                ("A".into(), "1".into()),
                ("B".into(), "x y".into()),
                ("C".into(), "$V".into())
            ])
        );
        assert_eq!(
            pairs("LEGACY some $V value", &lexer, '\\', true),
            Ok(vec![("LEGACY".into(), "some 1 value".into())])
        );
        assert!(pairs("novalue", &lexer, '\\', false).is_err());
        assert!(pairs("LONELY", &lexer, '\\', true).is_err());
    }

    #[test]
    fn env_replaces_in_place() {
        let mut config = Map::new();
        set_env(&mut config, "A", "1");
        set_env(&mut config, "B", "2");
        set_env(&mut config, "A", "3");
        assert_eq!(config["Env"], json!(["A=3", "B=2"]));
        assert_eq!(env_value(&config, "B").as_deref(), Some("2"));
        assert_eq!(env_value(&config, "C"), None);
    }

    #[test]
    fn healthcheck_and_durations() {
        let flags = vec![
            Flag {
                name: "interval".into(),
                value: Some("5s".into()),
            },
            Flag {
                name: "retries".into(),
                value: Some("3".into()),
            },
        ];
        assert_eq!(
            healthcheck(&flags, "CMD wget -q localhost"),
            Ok(
                json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000i64, "Retries": 3})
            )
        );
        assert_eq!(
            healthcheck(&[], "CMD [\"true\"]"),
            Ok(json!({"Test": ["CMD", "true"]}))
        );
        assert_eq!(healthcheck(&[], "none"), Ok(json!({"Test": ["NONE"]})));
        assert!(healthcheck(&[], "RUN x").is_err());
        assert_eq!(parse_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(exposed_ports("80"), Ok(vec!["80/tcp".to_owned()]));
        assert!(exposed_ports("0").is_err());
        assert!(exposed_ports("80/icmp").is_err());
    }

    #[test]
    fn commands_use_the_shell() {
        let shell = vec!["/bin/bash".to_owned(), "-ec".to_owned()];
        assert_eq!(
            command(&Args::Text("make".into()), &shell),
            ["/bin/bash", "-ec", "make"]
        );
        assert_eq!(command(&Args::Json(vec!["a".into()]), &shell), ["a"]);
        let mut config = Map::new();
        assert_eq!(shell_of(&config), default_shell());
        config.insert("Shell".into(), json!(shell));
        assert_eq!(shell_of(&config), shell);
    }
}
