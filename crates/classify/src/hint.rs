//! The leading-comment routing hint: `/* pgsplit: route=primary */` or `route=replica`.
//!
//! Only comments before the first token count (block comments, and `--` line comments for
//! tools that cannot emit block comments). Matching is case-insensitive and tolerates
//! spaces around `:` and `=`. Other leading comments (sqlcommenter, marginalia) are skipped,
//! so a hint may come after them.

use crate::class::Target;

/// The hint in the leading comments of `sql`, if any (the first one wins).
pub fn leading_hint(sql: &str) -> Option<Target> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        let body = if let Some(after) = rest.strip_prefix("/*") {
            let (body, tail) = match after.find("*/") {
                Some(end) => (&after[..end], &after[end + 2..]),
                None => (after, ""),
            };
            rest = tail;
            body
        } else if let Some(after) = rest.strip_prefix("--") {
            let end = after.find('\n').unwrap_or(after.len());
            rest = &after[end..];
            &after[..end]
        } else {
            return None;
        };
        if let Some(t) = parse_hint(body) {
            return Some(t);
        }
    }
}

fn parse_hint(body: &str) -> Option<Target> {
    let body = body.trim();
    let prefix = body.get(..7)?;
    if !prefix.eq_ignore_ascii_case("pgsplit") {
        return None;
    }
    let body = body[7..].trim_start().strip_prefix(':')?.trim_start();
    let key = body.get(..5)?;
    if !key.eq_ignore_ascii_case("route") {
        return None;
    }
    let value = body[5..].trim_start().strip_prefix('=')?.trim();
    let value = value.trim_end_matches([';', ',']).trim();
    if value.eq_ignore_ascii_case("primary") {
        Some(Target::Primary)
    } else if value.eq_ignore_ascii_case("replica") {
        Some(Target::Replica)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        let cases: &[(&str, Option<Target>)] = &[
            (
                "/* pgsplit: route=primary */ SELECT 1",
                Some(Target::Primary),
            ),
            ("/*pgsplit:route=replica*/SELECT 1", Some(Target::Replica)),
            (
                "  /* PgSplit : Route = REPLICA */ SELECT 1",
                Some(Target::Replica),
            ),
            (
                "/* app=web */ /* pgsplit: route=replica */ SELECT 1",
                Some(Target::Replica),
            ),
            ("-- pgsplit: route=primary\nSELECT 1", Some(Target::Primary)),
            ("SELECT 1 /* pgsplit: route=replica */", None),
            ("/* pgsplit: route=elsewhere */ SELECT 1", None),
            ("/* pgsplit: route=replica", Some(Target::Replica)),
            ("/* é */ SELECT 1", None),
            ("", None),
        ];
        for (sql, want) in cases {
            assert_eq!(leading_hint(sql), *want, "{sql:?}");
        }
    }
}
