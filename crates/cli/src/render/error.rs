//! Error messages as the user reads them: the context chain joined with `: `, as anyhow's
//! `{:#}` joins it, but without saying a cause twice. Several error types of the store and
//! filesystem crates include their source's text in their own message (so that a plain
//! `to_string()` explains itself) and also expose it as their source; the chain then
//! repeats it, as in `… No such file or directory (os error 2): No such file or directory
//! (os error 2)`.
//!
//! ```
//! use stencil::render::error::message;
//!
//! let io = std::io::Error::from(std::io::ErrorKind::NotFound);
//! let error = anyhow::Error::new(io).context("cannot open /x: entity not found");
//! assert_eq!(message(&error), "cannot open /x: entity not found");
//! ```

/// `error` and its causes, each said once.
pub fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        // A cause its wrapper already quotes (`cannot reach URL: CAUSE; check …`) is said once.
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::message;

    #[derive(Debug, thiserror::Error)]
    #[error("i/o error on /store: {source}")]
    struct Wrapped {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let error = anyhow::Error::new(Wrapped { source: io }).context("cannot load x.tar");
        assert_eq!(
            message(&error),
            "cannot load x.tar: i/o error on /store: disk on fire"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach http://x/: {source}; check the network")]
    struct Quoted {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_quoted_inside_the_message_is_not_repeated() {
        let io = std::io::Error::other("connection refused");
        let error = anyhow::Error::new(Quoted { source: io }).context("cannot pull x");
        assert_eq!(
            message(&error),
            "cannot pull x: cannot reach http://x/: connection refused; check the network"
        );
    }

    #[test]
    fn distinct_causes_are_all_said() {
        let error = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(message(&error), "outer: middle: inner");
    }
}
