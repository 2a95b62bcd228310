//! Session state across pooled connections: replay a client's settings onto the server
//! connection it is given, and read them back after the client may have changed them.

use std::fmt::Write as _;

use pgsplit_backend::{BackendError, ServerConn};
use pgsplit_wire::ErrorFields;

use crate::internal;
use crate::state::ClientState;

/// Makes `conn` carry exactly the client's settings, unless it already does (same tag).
///
/// Resets whatever the connection's previous client left (session authorization, settings,
/// role), then applies the client's settings with `set_config`, all in one round trip.
/// `Ok(Some(error))` is the server refusing a setting (e.g. an invalid startup parameter).
pub(crate) async fn apply(
    conn: &mut ServerConn,
    state: &ClientState,
) -> Result<Option<ErrorFields>, BackendError> {
    if conn.state_tag() == state.tag() {
        return Ok(None);
    }
    let mut sql = String::from(
        "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; RESET ROLE; SELECT pg_catalog.now()",
    );
    // `session_authorization` must come before `role`, which it would reset.
    let ordered = state
        .desired()
        .iter()
        .filter(|(n, _)| n == "session_authorization")
        .chain(
            state
                .desired()
                .iter()
                .filter(|(n, _)| n != "session_authorization"),
        );
    for (name, value) in ordered {
        let _ = write!(
            sql,
            ", pg_catalog.set_config({}, {}, false)",
            literal(name),
            literal(value)
        );
    }
    let out = internal::run(conn, &sql).await?;
    if out.error.is_some() {
        conn.set_state_tag(u64::MAX);
        return Ok(out.error);
    }
    conn.set_state_tag(state.tag());
    Ok(None)
}

/// What [`read_back`] found on the server.
#[derive(Debug)]
pub(crate) struct ReadBack {
    /// Session-level settings (plus `role` and `session_authorization` when changed).
    pub(crate) settings: Vec<(String, String)>,
    /// Count of things that cannot be replayed: listened channels, SQL-level prepared
    /// statements, holdable cursors, temporary tables, session advisory locks.
    pub(crate) pins: u64,
}

/// Reads the session state the client left on `conn`, in one round trip.
pub(crate) async fn read_back(
    conn: &mut ServerConn,
    login_user: &str,
) -> Result<Result<ReadBack, ErrorFields>, BackendError> {
    let sql = format!(
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' \
         UNION ALL SELECT 'role', pg_catalog.current_setting('role') \
           WHERE pg_catalog.current_setting('role') <> 'none' \
         UNION ALL SELECT 'session_authorization', pg_catalog.current_setting('session_authorization') \
           WHERE pg_catalog.current_setting('session_authorization') <> {user}; \
         SELECT '~pins', ((SELECT count(*) FROM pg_catalog.pg_listening_channels()) \
           + (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql) \
           + (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable) \
           + (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) \
           + (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' \
                AND pid = pg_catalog.pg_backend_pid()))::text",
        user = literal(login_user)
    );
    let out = internal::run(conn, &sql).await?;
    if let Some(e) = out.error {
        return Ok(Err(e));
    }
    let mut settings = Vec::new();
    let mut pins = 0;
    for row in out.rows {
        match (
            row.first().cloned().flatten(),
            row.get(1).cloned().flatten(),
        ) {
            (Some(name), Some(value)) if name == "~pins" => pins = value.parse().unwrap_or(1),
            (Some(name), Some(value)) => settings.push((name, value)),
            _ => {}
        }
    }
    Ok(Ok(ReadBack { settings, pins }))
}

/// A string literal that means the same whatever `standard_conforming_strings` is.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("plain"), "E'plain'");
        assert_eq!(literal(r"it's a\b"), r"E'it''s a\\b'");
        assert_eq!(literal(r#""$user", public"#), r#"E'"$user", public'"#);
    }
}
