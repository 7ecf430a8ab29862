//! An error report as operators read it: the message and each cause, once. Errors
//! that put their source into their own message *and* return it from `source()`
//! (`"cannot read key_file k.pem: No such file or directory (os error 2)"` with the
//! io error as source) would otherwise print every cause twice when the chain is
//! joined (`{:#}`), and a TOML error's whole snippet twice. The fix sits here, where
//! each binary prints its error, so no error type can bring the repetition back.

use std::error::Error;

/// `err` and its causes joined with `": "`, leaving out a cause whose text the
/// report already holds.
pub fn report(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key_file {path}: {source}")]
    struct Repeats {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("config agent.toml")]
    struct Context(#[source] Repeats);

    fn missing() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let err = Context(Repeats {
            path: "k.pem",
            source: missing(),
        });
        assert_eq!(
            report(&err),
            "config agent.toml: cannot read key_file k.pem: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_all_kept_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("opening the outbox")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            report(&Outer(missing())),
            "opening the outbox: No such file or directory (os error 2)"
        );
    }
}
