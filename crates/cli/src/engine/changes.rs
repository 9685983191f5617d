//! Dockerfile-style changes (`-c 'CMD ["/bin/sh"]'`) applied to an image config, as
//! `docker import --change` and `docker commit --change` apply them.
//!
//! The config is the `config` object of an image config, with docker's key names (`Cmd`,
//! `Entrypoint`, `Env`, `WorkingDir`, `User`, `Labels`, `ExposedPorts`, `Volumes`,
//! `StopSignal`, `OnBuild`). This module parses one instruction at a time; it does not run anything
//! and knows nothing of layers (so `RUN`, `COPY` and friends are refused).
//!
//! ```
//! use stencil::engine::changes::apply_change;
//!
//! let mut config = serde_json::Map::new();
//! apply_change(&mut config, "CMD echo hi").unwrap();
//! apply_change(&mut config, "ENV A=1 B=\"two words\"").unwrap();
//! assert_eq!(config["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
//! assert_eq!(config["Env"], serde_json::json!(["A=1", "B=two words"]));
//! ```

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

/// The instructions a change may use.
const ACCEPTED: &str =
    "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Applies one change such as `ENV PATH=/bin` or `EXPOSE 80/tcp` to `config`.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let trimmed = change.trim();
    let (instruction, rest) = trimmed
        .split_once(char::is_whitespace)
        .map_or((trimmed, ""), |(i, r)| (i, r.trim()));
    let instruction = instruction.to_ascii_uppercase();
    if instruction.is_empty() {
        bail!("empty --change: give an instruction such as 'CMD [\"/bin/sh\"]'");
    }
    let known = ACCEPTED.split(", ").any(|a| a == instruction);
    if !known {
        bail!("unsupported --change {change:?}: the instructions allowed are {ACCEPTED}");
    }
    if rest.is_empty() {
        bail!("invalid --change {change:?}: {instruction} needs an argument");
    }
    match instruction.as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command_form(rest, change)?));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command_form(rest, change)?));
        }
        "ENV" => set_env(config, rest, change)?,
        "LABEL" => {
            let labels = object_entry(config, "Labels")?;
            for (key, value) in pairs(rest, change)? {
                labels.insert(key, json!(value));
            }
        }
        "WORKDIR" => {
            let dir = unquote_single(rest, change)?;
            let current = config
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
            config.insert("WorkingDir".into(), json!(joined));
        }
        "USER" => {
            config.insert("User".into(), json!(unquote_single(rest, change)?));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(unquote_single(rest, change)?));
        }
        "EXPOSE" => {
            let ports = object_entry(config, "ExposedPorts")?;
            for word in words(rest, change)? {
                for port in exposed_ports(&word, change)? {
                    ports.insert(port, json!({}));
                }
            }
        }
        "VOLUME" => {
            let paths = match json_array(rest) {
                Some(list) => list,
                None => words(rest, change)?,
            };
            let volumes = object_entry(config, "Volumes")?;
            for path in paths {
                volumes.insert(path, json!({}));
            }
        }
        "ONBUILD" => {
            // Kept as text for the builds FROM this image, as docker keeps it.
            let trigger = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(trigger.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                bail!("invalid --change {change:?}: {trigger} isn't allowed as an ONBUILD trigger");
            }
            let triggers = config.entry("OnBuild").or_insert_with(|| json!([]));
            if !triggers.is_array() {
                *triggers = json!([]);
            }
            if let Some(list) = triggers.as_array_mut() {
                list.push(json!(rest));
            }
        }
        _ => bail!("unsupported --change {change:?}: the instructions allowed are {ACCEPTED}"),
    }
    Ok(())
}

/// Exec form (`["a", "b"]`) as it is, shell form wrapped in `/bin/sh -c`, as docker does.
fn command_form(rest: &str, change: &str) -> Result<Vec<String>> {
    if rest.starts_with('[') {
        if let Some(list) = json_array(rest) {
            return Ok(list);
        }
        // Docker falls back to the shell form when the JSON does not parse; a leading
        // bracket that is not JSON is almost always a typo, so say so instead.
        bail!(
            "invalid --change {change:?}: the exec form must be a JSON array of strings, like [\"/bin/sh\", \"-c\", \"echo hi\"]"
        );
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_owned()])
}

fn json_array(text: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(text).ok()
}

/// `ENV KEY=VALUE …`, or the legacy `ENV KEY the rest is the value`.
fn set_env(config: &mut Map<String, Value>, rest: &str, change: &str) -> Result<()> {
    let first = rest.split_whitespace().next().unwrap_or("");
    let assignments = if first.contains('=') {
        pairs(rest, change)?
    } else {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .map_or((rest, ""), |(k, v)| (k, v.trim()));
        vec![(key.to_owned(), value.to_owned())]
    };
    let env = config
        .entry("Env")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    let Some(env) = env else {
        bail!("cannot apply {change:?}: the config's Env is not a list");
    };
    for (key, value) in assignments {
        if key.is_empty() {
            bail!("invalid --change {change:?}: an environment variable needs a name");
        }
        let prefix = format!("{key}=");
        env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
        env.push(json!(format!("{key}={value}")));
    }
    Ok(())
}

fn object_entry<'a>(
    config: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>> {
    match config
        .entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        Some(map) => Ok(map),
        None => bail!("cannot apply the change: the config's {key} is not an object"),
    }
}

/// `KEY=VALUE` words, quotes removed.
fn pairs(rest: &str, change: &str) -> Result<Vec<(String, String)>> {
    words(rest, change)?
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => bail!("invalid --change {change:?}: {word:?} is not KEY=VALUE"),
        })
        .collect()
}

/// One argument, quotes removed (`WORKDIR "/my dir"`).
fn unquote_single(rest: &str, change: &str) -> Result<String> {
    let mut all = words(rest, change)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        _ => bail!(
            "invalid --change {change:?}: expected one argument, got {}",
            all.len()
        ),
    }
}

/// Splits on white space outside quotes; `"…"` and `'…'` group, a backslash escapes the
/// next character outside single quotes.
fn words(text: &str, change: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        bail!("invalid --change {change:?}: unclosed quote {q}");
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002/tcp` → `80/tcp`, … (ranges expanded as docker does).
fn exposed_ports(word: &str, change: &str) -> Result<Vec<String>> {
    let (ports, protocol) = word.split_once('/').unwrap_or((word, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let bad = || {
        anyhow::anyhow!(
            "invalid --change {change:?}: {word:?} is not a port (PORT[-PORT][/tcp|udp|sctp], 1-65535)"
        )
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(changes: &[&str], expected: Result<Value, &str>) {
        let mut config = Map::new();
        let result = changes
            .iter()
            .try_for_each(|change| apply_change(&mut config, change));
        match (result, expected) {
            (Ok(()), Ok(want)) => assert_eq!(Value::Object(config), want, "{changes:?}"),
            (Err(error), Err(needle)) => {
                let text = format!("{error:#}");
                assert!(text.contains(needle), "{changes:?}: {text}");
            }
            (got, want) => panic!("{changes:?}: got {got:?} ({config:?}), want {want:?}"),
        }
    }

    #[test]
    fn changes_set_the_config_like_docker() {
        check(
            &[r#"CMD ["/bin/echo", "hi"]"#],
            Ok(json!({"Cmd": ["/bin/echo", "hi"]})),
        );
        check(
            &["cmd echo $HOME"],
            Ok(json!({"Cmd": ["/bin/sh", "-c", "echo $HOME"]})),
        );
        check(
            &["ENTRYPOINT [\"/app\"]", "ENTRYPOINT /run it"],
            Ok(json!({"Entrypoint": ["/bin/sh", "-c", "/run it"]})),
        );
        check(
            &[
                "ENV A=1 B=\"two words\" C='x y'",
                "ENV A=2",
                "ENV LEGACY some value",
            ],
            Ok(json!({"Env": ["B=two words", "C=x y", "A=2", "LEGACY=some value"]})),
        );
        check(
            &["WORKDIR /srv", "WORKDIR app", "USER nobody:nogroup"],
            Ok(json!({"WorkingDir": "/srv/app", "User": "nobody:nogroup"})),
        );
        check(&["WORKDIR rel"], Ok(json!({"WorkingDir": "/rel"})));
        check(
            &["LABEL a=b \"c d\"=\"e f\"", "LABEL a=z"],
            Ok(json!({"Labels": {"a": "z", "c d": "e f"}})),
        );
        check(
            &["EXPOSE 80 53/udp 8000-8001/TCP"],
            Ok(
                json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}}),
            ),
        );
        check(
            &["VOLUME [\"/data\"]", "VOLUME /a /b", "STOPSIGNAL SIGTERM"],
            Ok(json!({"Volumes": {"/data": {}, "/a": {}, "/b": {}}, "StopSignal": "SIGTERM"})),
        );
        check(
            &["ONBUILD RUN make", "onbuild COPY . /src"],
            Ok(json!({"OnBuild": ["RUN make", "COPY . /src"]})),
        );
        check(
            &["ONBUILD FROM x"],
            Err("isn't allowed as an ONBUILD trigger"),
        );
        check(&["ONBUILD ONBUILD RUN x"], Err("isn't allowed"));
    }

    #[test]
    fn bad_changes_name_the_change_and_the_remedy() {
        check(&["RUN make"], Err("allowed are CMD"));
        check(&["CMD"], Err("needs an argument"));
        check(&[""], Err("empty --change"));
        check(&["CMD [\"unclosed\""], Err("JSON array of strings"));
        check(&["EXPOSE 70000"], Err("\"70000\" is not a port"));
        check(&["EXPOSE 80/icmp"], Err("is not a port"));
        check(&["EXPOSE 90-80"], Err("is not a port"));
        check(&["LABEL novalue"], Err("\"novalue\" is not KEY=VALUE"));
        check(&["ENV A=\"open"], Err("unclosed quote"));
        check(&["USER a b"], Err("expected one argument"));
    }
}
