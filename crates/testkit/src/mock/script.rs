//! What a mock server answers: an ordered list of (SQL matcher, replies), with PostgreSQL-like
//! defaults for the statements a proxy sends on its own (BEGIN, SET, DISCARD ALL, health probes).

use std::time::Duration;

use bytes::Bytes;
use pgsplit_wire::{ErrorFields, SqlState};

/// How a rule recognises a query's SQL (compared after trimming whitespace and trailing `;`).
#[derive(Clone, Debug)]
pub enum Match {
    /// The whole text, exactly.
    Exact(String),
    /// The text starts with this, ignoring ASCII case.
    Prefix(String),
    /// The text contains this.
    Contains(String),
    /// Any text.
    Any,
}

impl Match {
    /// A case-insensitive prefix matcher.
    pub fn prefix(p: &str) -> Match {
        Match::Prefix(p.to_owned())
    }

    /// A substring matcher.
    pub fn contains(p: &str) -> Match {
        Match::Contains(p.to_owned())
    }

    fn matches(&self, sql: &str) -> bool {
        match self {
            Match::Exact(s) => sql == s,
            Match::Prefix(p) => sql
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p)),
            Match::Contains(p) => sql.contains(p.as_str()),
            Match::Any => true,
        }
    }
}

impl From<&str> for Match {
    fn from(s: &str) -> Match {
        Match::Exact(s.to_owned())
    }
}

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// RowDescription (simple protocol or Describe), DataRows and `SELECT n`; all columns text.
    Rows {
        /// Column names.
        columns: Vec<String>,
        /// Row values; `None` is NULL.
        rows: Vec<Vec<Option<String>>>,
    },
    /// CommandComplete with this tag.
    Command(String),
    /// EmptyQueryResponse.
    EmptyQuery,
    /// ErrorResponse; the rest of the answer is skipped, as a server does.
    Error(ErrorFields),
    /// NoticeResponse.
    Notice(ErrorFields),
    /// NotificationResponse from the session's own pid.
    Notification {
        /// Channel name.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// ParameterStatus.
    ParameterStatus(String, String),
    /// Bytes written as they are (for malformed or unusual messages).
    Raw(Bytes),
    /// Flushes what is buffered so far, then waits; a cancel request for this session ends
    /// the wait with ErrorResponse 57014, like `pg_sleep`.
    Sleep(Duration),
    /// CopyOutResponse, one CopyData per chunk, CopyDone and `COPY n` (n = chunk count).
    CopyOut(Vec<Bytes>),
    /// CopyInResponse, then reads CopyData until CopyDone (`COPY n`, n = newline count) or
    /// CopyFail (ErrorResponse 57014).
    CopyIn,
    /// Sets the transaction status of the next ReadyForQuery (`I`, `T` or `E`).
    Status(u8),
    /// Flushes and closes the connection at once, like a crashed backend.
    Close,
}

impl Reply {
    /// Text rows from string slices.
    pub fn rows(columns: &[&str], rows: &[&[&str]]) -> Reply {
        Reply::Rows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Some((*v).to_owned())).collect())
                .collect(),
        }
    }

    /// A CommandComplete tag.
    pub fn command(tag: &str) -> Reply {
        Reply::Command(tag.to_owned())
    }

    /// An `ERROR` with a code and message.
    pub fn error(code: SqlState, message: &str) -> Reply {
        Reply::Error(ErrorFields::error(code, message))
    }
}

/// The mock's whole repertoire: the test's rules first, then the defaults.
#[derive(Clone, Debug, Default)]
pub struct Script {
    rules: Vec<(Match, Vec<Reply>)>,
}

impl Script {
    /// A script with only the defaults.
    pub fn new() -> Script {
        Script::default()
    }

    /// Adds a rule; earlier rules win over later ones and over the defaults.
    pub fn on(mut self, sql: impl Into<Match>, replies: impl IntoIterator<Item = Reply>) -> Script {
        self.rules.push((sql.into(), replies.into_iter().collect()));
        self
    }

    /// The replies for `sql`: the first matching rule, else a default, else an error.
    pub fn answer(&self, sql: &str) -> Vec<Reply> {
        let sql = normalise(sql);
        if let Some((_, replies)) = self.rules.iter().find(|(m, _)| m.matches(sql)) {
            return replies.clone();
        }
        default_answer(sql)
    }
}

fn normalise(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// What PostgreSQL would say to the statements a proxy sends by itself.
fn default_answer(sql: &str) -> Vec<Reply> {
    let starts = |p: &str| Match::prefix(p).matches(sql);
    if sql.is_empty() {
        vec![Reply::EmptyQuery]
    } else if starts("BEGIN") || starts("START TRANSACTION") {
        vec![Reply::command("BEGIN"), Reply::Status(b'T')]
    } else if starts("COMMIT") || starts("END") {
        vec![Reply::command("COMMIT"), Reply::Status(b'I')]
    } else if starts("ROLLBACK") || starts("ABORT") {
        vec![Reply::command("ROLLBACK"), Reply::Status(b'I')]
    } else if starts("SET ") {
        vec![Reply::command("SET")]
    } else if starts("RESET") {
        vec![Reply::command("RESET")]
    } else if starts("DISCARD ALL") {
        vec![Reply::command("DISCARD ALL")]
    } else if starts("DEALLOCATE") {
        vec![Reply::command("DEALLOCATE ALL")]
    } else if starts("UNLISTEN") {
        vec![Reply::command("UNLISTEN")]
    } else if sql.contains("pg_is_in_recovery()") {
        vec![Reply::rows(&["pg_is_in_recovery"], &[&["f"]])]
    } else if sql.eq_ignore_ascii_case("SELECT 1") {
        vec![Reply::rows(&["?column?"], &[&["1"]])]
    } else {
        vec![Reply::error(
            pgsplit_wire::sqlstate::FEATURE_NOT_SUPPORTED,
            &format!("mock server has no script for: {sql}"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_win_over_defaults_in_order() {
        let s = Script::new()
            .on("SELECT 1", [Reply::command("FIRST")])
            .on(Match::prefix("select"), [Reply::command("SECOND")]);
        assert!(matches!(&s.answer(" SELECT 1 ;")[..], [Reply::Command(t)] if t == "FIRST"));
        assert!(matches!(&s.answer("select 2")[..], [Reply::Command(t)] if t == "SECOND"));
        assert!(
            matches!(&s.answer("begin")[..], [Reply::Command(t), Reply::Status(b'T')] if t == "BEGIN")
        );
        assert!(matches!(&s.answer("")[..], [Reply::EmptyQuery]));
        assert!(matches!(&s.answer("VACUUM")[..], [Reply::Error(e)] if e.code == "0A000"));
    }
}
