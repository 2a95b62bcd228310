//! Query fingerprints: pg_query's hash of a statement's shape, for `rules[].match.fingerprint`.
//!
//! Two statements that differ only in constants, whitespace or comments have the same
//! fingerprint, so a rule can name "this query" without matching its text.

/// pg_query's fingerprint of `sql`: 16 lower-case hexadecimal digits, or `None` when the
/// text does not parse (or contains a NUL byte). A multi-statement string has one
/// fingerprint for the whole string.
///
/// This parses the text again, so it costs about as much as an uncached classification:
/// call it only when a rule needs it (the router's `Routing::needs_fingerprint`).
///
/// ```
/// let a = pgsplit_classify::fingerprint("SELECT * FROM t WHERE id = 1").unwrap();
/// let b = pgsplit_classify::fingerprint("select *  from t where id = 42 -- hi").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.len(), 16);
/// assert_eq!(pgsplit_classify::fingerprint("SELEC 1"), None);
/// ```
pub fn fingerprint(sql: &str) -> Option<String> {
    if sql.contains('\0') {
        return None;
    }
    // pg_query reports parse errors as `Err`; the unwind guard is a second line, as in
    // classification, so that no input can take a session down.
    std::panic::catch_unwind(|| pg_query::fingerprint(sql).ok())
        .ok()
        .flatten()
        .map(|f| f.hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn same_shape_same_fingerprint() {
        let a = fingerprint("SELECT a FROM t WHERE id = 1").unwrap();
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            fingerprint("/* c */ select a from t where id = $1").as_deref(),
            Some(a.as_str())
        );
        assert_ne!(fingerprint("SELECT b FROM t WHERE id = 1"), Some(a.clone()));
        assert_ne!(fingerprint("SELECT a FROM u WHERE id = 1"), Some(a));
    }

    #[test]
    fn unparsable_text_has_none() {
        assert_eq!(fingerprint("SELEC 1"), None);
        assert_eq!(fingerprint("SELECT 1\0"), None);
    }
}
