//! Which units of SQL may change session state that pooling must preserve or guard.

/// What a unit of SQL may do to its server connection's session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// May change settings (SET, RESET, DISCARD, `set_config`, or code pgsplit cannot see
    /// into: DO, CALL).
    pub settings: bool,
    /// May create or drop state that cannot be replayed on another connection: temporary
    /// tables, LISTEN, SQL-level PREPARE, WITH HOLD cursors, session advisory locks.
    pub state: bool,
    /// May drop protocol-level prepared statements (DISCARD, DEALLOCATE).
    pub statements: bool,
    /// May end state that pins a client (DROP, transaction end for ON COMMIT DROP tables,
    /// UNLISTEN, CLOSE, DEALLOCATE, DISCARD, advisory unlocks). Only worth a check when the
    /// client is pinned, so [`Effects::any`] ignores it.
    pub unpins: bool,
}

impl Effects {
    /// Whether anything may have changed.
    pub fn any(self) -> bool {
        self.settings || self.state || self.statements
    }

    /// Both sets of effects.
    pub fn union(self, other: Effects) -> Effects {
        Effects {
            settings: self.settings || other.settings,
            state: self.state || other.state,
            statements: self.statements || other.statements,
            unpins: self.unpins || other.unpins,
        }
    }
}

/// Scans `sql` (one or more statements) for anything that may change session state.
///
/// Conservative by design: it answers `true` on any hint (a false positive costs one check of
/// the server's real state). It cannot see into user-defined functions that call
/// `set_config(..., false)` from a plain SELECT; that limitation is documented.
pub fn session_effects(sql: &str) -> Effects {
    use crate::lexer::{Token, Tokens};
    let mut fx = Effects::default();
    let mut first = true;
    for tok in Tokens::new(sql) {
        match tok {
            Token::Semicolon => {
                first = true;
                continue;
            }
            Token::Word(raw) => {
                // Advisory-lock functions come in many spellings (pg_try_advisory_xact_lock, ...).
                if contains_ignore_case(raw, b"advisory") {
                    fx.state = true;
                    fx.unpins = true;
                }
                // Keywords are short: lower-case into a stack buffer, so lexing allocates nothing.
                let mut buf = [0u8; 16];
                if let Some(w) = lowercase(raw, &mut buf) {
                    if first {
                        first_word(w, &mut fx);
                    }
                    match w {
                        "set_config" => fx.settings = true,
                        "temp" | "temporary" | "pg_temp" | "hold" => fx.state = true,
                        _ => {}
                    }
                }
            }
            Token::DollarBody(_) | Token::Other => {}
        }
        first = false;
    }
    fx
}

/// Effects of the first word of a statement.
fn first_word(w: &str, fx: &mut Effects) {
    match w {
        "set" | "reset" => fx.settings = true,
        "discard" => {
            fx.settings = true;
            fx.state = true;
            fx.statements = true;
            fx.unpins = true;
        }
        "do" | "call" => {
            fx.settings = true;
            fx.state = true;
        }
        "deallocate" => {
            fx.state = true;
            fx.statements = true;
            fx.unpins = true;
        }
        "unlisten" | "close" => {
            fx.state = true;
            fx.unpins = true;
        }
        "listen" | "prepare" => fx.state = true,
        "drop" | "commit" | "end" | "rollback" | "abort" => fx.unpins = true,
        _ => {}
    }
}

/// `word` in ASCII lower case, in `buf`; `None` when longer than `buf` (no keyword is).
fn lowercase<'a>(word: &str, buf: &'a mut [u8; 16]) -> Option<&'a str> {
    let bytes = word.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

fn contains_ignore_case(haystack: &str, needle: &[u8]) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, settings: bool, state: bool) {
        let fx = session_effects(sql);
        assert_eq!((fx.settings, fx.state), (settings, state), "{sql:?}");
    }

    #[test]
    fn unpin_hints() {
        for sql in [
            "DROP TABLE t",
            "commit",
            "END",
            "select pg_advisory_unlock_all()",
            "UNLISTEN *",
        ] {
            assert!(session_effects(sql).unpins, "{sql}");
        }
        assert!(!session_effects("SELECT 1").unpins);
        assert!(!session_effects("DROP TABLE t").any());
    }

    #[test]
    fn statement_droppers() {
        assert!(session_effects("DISCARD ALL").statements);
        assert!(session_effects("deallocate prepare all").statements);
        assert!(!session_effects("PREPARE p AS SELECT 1").statements);
        assert!(!session_effects("SELECT 1").statements);
    }

    #[test]
    fn settings() {
        check("SET search_path TO a, b", true, false);
        check("set local statement_timeout = 5", true, false);
        check("  /* c */ Reset ALL", true, false);
        check("select 1; SET x = 1", true, false);
        check("SELECT pg_catalog.set_config('a', 'b', false)", true, false);
        check("DISCARD ALL", true, true);
        check(
            "DO $$ BEGIN PERFORM set_config('a','b',false); END $$",
            true,
            true,
        );
        check("CALL proc()", true, true);
    }

    #[test]
    fn state() {
        check("CREATE TEMP TABLE t (a int)", false, true);
        check("create temporary table t as select 1", false, true);
        check("SELECT * INTO pg_temp.t FROM x", false, true);
        check("LISTEN ch", false, true);
        check("UNLISTEN *", false, true);
        check("PREPARE p AS SELECT 1", false, true);
        check("DEALLOCATE ALL", false, true);
        check("DECLARE c CURSOR WITH HOLD FOR SELECT 1", false, true);
        check("CLOSE c", false, true);
        check("SELECT pg_advisory_lock(1)", false, true);
        check("select pg_try_advisory_lock(1)", false, true);
        check("SELECT PG_TRY_ADVISORY_XACT_LOCK_SHARED(1)", false, true);
        check("Create Temporary Table t (a int)", false, true);
    }

    #[test]
    fn plain_statements_have_no_effects() {
        for sql in [
            "SELECT 1",
            "UPDATE t SET a = 1",
            "INSERT INTO t (settings) VALUES ('set x')",
            "select 'SET search_path' -- reset\n",
            "SELECT \"set\" FROM t",
            "BEGIN",
            "COMMIT",
            "SELECT $1::text",
            "",
        ] {
            check(sql, false, false);
        }
    }
}
