//! Admin console commands: the text an operator types, parsed into a [`Command`].
//!
//! Keywords are case-insensitive, words may be separated by any whitespace, and trailing
//! semicolons are ignored. `EXPLAIN ROUTE` takes the rest of the text verbatim as the SQL to
//! explain. Anything else is a syntax error that lists what is available.

/// What an operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `SHOW <what>`.
    Show(Show),
    /// `RELOAD`: re-read the config file.
    Reload,
    /// `PAUSE`: hold back new server connections until every busy one is released.
    Pause,
    /// `RESUME`: lift a pause.
    Resume,
    /// `EXPLAIN ROUTE <sql>`: how pgsplit would classify and route `<sql>`.
    ExplainRoute(&'a str),
    /// An empty query string (only whitespace and semicolons).
    Empty,
}

/// The `SHOW` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    Pools,
    Servers,
    Clients,
    Stats,
    Config,
    Version,
}

/// Every command, for the syntax error and the docs.
pub(crate) const AVAILABLE: &str = "SHOW POOLS, SHOW SERVERS, SHOW CLIENTS, SHOW STATS, \
    SHOW CONFIG, SHOW VERSION, RELOAD, PAUSE, RESUME, EXPLAIN ROUTE <sql>";

/// Parses one query string; the error is the message of a 42601 syntax error.
pub(crate) fn parse(text: &str) -> Result<Command<'_>, String> {
    let text = text.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let text = text.trim_start();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    if let Some(rest) = strip_keyword(text, "explain")
        && let Some(sql) = strip_keyword(rest, "route")
    {
        let sql = sql.trim();
        if sql.is_empty() {
            return Err(
                "EXPLAIN ROUTE needs the SQL to explain, e.g. EXPLAIN ROUTE SELECT 1".into(),
            );
        }
        return Ok(Command::ExplainRoute(sql));
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words.as_slice() {
        ["show", what] => match *what {
            "pools" => Command::Show(Show::Pools),
            "servers" => Command::Show(Show::Servers),
            "clients" => Command::Show(Show::Clients),
            "stats" => Command::Show(Show::Stats),
            "config" => Command::Show(Show::Config),
            "version" => Command::Show(Show::Version),
            _ => return Err(unknown(text)),
        },
        ["reload"] => Command::Reload,
        ["pause"] => Command::Pause,
        ["resume"] => Command::Resume,
        _ => return Err(unknown(text)),
    };
    Ok(command)
}

/// `text` without its first word when that word is `keyword` (any case) followed by
/// whitespace or the end.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.chars().next().is_none_or(char::is_whitespace))
        .then(|| rest.trim_start())
}

fn unknown(text: &str) -> String {
    const SHOWN: usize = 60;
    let shown: String = text.chars().take(SHOWN).collect();
    let more = if text.chars().count() > SHOWN {
        "..."
    } else {
        ""
    };
    format!("unknown admin console command \"{shown}{more}\"; available commands: {AVAILABLE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_any_case_with_optional_semicolons() {
        let cases: &[(&str, Command<'_>)] = &[
            ("SHOW POOLS", Command::Show(Show::Pools)),
            ("show pools;", Command::Show(Show::Pools)),
            ("  Show\t Servers ;; ", Command::Show(Show::Servers)),
            ("SHOW clients", Command::Show(Show::Clients)),
            ("show STATS", Command::Show(Show::Stats)),
            ("show config", Command::Show(Show::Config)),
            ("SHOW VERSION;", Command::Show(Show::Version)),
            ("reload", Command::Reload),
            ("PAUSE;", Command::Pause),
            ("Resume", Command::Resume),
            ("", Command::Empty),
            (" ; ", Command::Empty),
            (
                "explain route UPDATE t SET a = 1;",
                Command::ExplainRoute("UPDATE t SET a = 1"),
            ),
            (
                "EXPLAIN\nROUTE   select ';' ;",
                Command::ExplainRoute("select ';'"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).as_ref(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_a_syntax_error_listing_the_commands() {
        for text in [
            "SHOW",
            "SHOW POOLS EXTRA",
            "SHOW DATABASES",
            "SELECT 1",
            "SHOWPOOLS",
            "reloadx",
            "EXPLAIN SELECT 1",
            "EXPLAINROUTE SELECT 1",
            "SHOW POOLS; SHOW SERVERS",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("available commands: SHOW POOLS"),
                "{text:?}: {err}"
            );
            assert!(err.contains("EXPLAIN ROUTE <sql>"), "{text:?}: {err}");
        }
        let err = parse("EXPLAIN ROUTE ;").unwrap_err();
        assert!(err.contains("needs the SQL"), "{err}");
    }

    #[test]
    fn long_unknown_text_is_shortened_in_the_message() {
        let text = format!("SELECT {}", "x".repeat(500));
        let err = parse(&text).unwrap_err();
        assert!(err.len() < 300, "{err}");
        assert!(err.contains("...\""), "{err}");
    }
}
