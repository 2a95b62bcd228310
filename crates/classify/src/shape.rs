//! A cheap cache key for SQL text with its integer and string constants blanked, for the common shapes only.
//!
//! `... WHERE id = 42` and `... WHERE id = 43` are the same statement for routing. PostgreSQL's
//! own normalization (`pg_query::normalize`) knows that for any text but costs a raw parse;
//! this key costs one pass over the bytes and answers only when the text alone settles where
//! every constant is: no dollar signs (dollar quotes, parameters); outside string literals and
//! quoted identifiers, no comments and no backslash; no prefixed strings (`E''`, `B''`, `X''`,
//! `N''`), no numbers other than plain integers.
//! Anything else gives `None` and the caller falls back to the exact normalization.
//!
//! Within those limits the text is lexed exactly as PostgreSQL does: a string is `'...'`
//! with `''` inside, a quoted identifier `"..."` with `""` inside (kept as is), an identifier
//! or keyword is a run of letters, digits, `_`, `$` and non-ASCII bytes (kept as is), and an
//! integer is a run of digits between non-identifier characters. Only the insides of strings
//! and the integers are blanked, so two texts share a key only if they differ in nothing but
//! those constants.

/// Marks a shape key; no SQL text PostgreSQL accepts contains this byte, so a shape key never
/// equals a text cached under its exact self.
const MARK: u8 = 0x01;

/// Writes the shape key of `sql` into `out` (cleared first) and says whether there is one:
/// `false` when the text has no constant to blank or is outside the shapes this lexer settles.
/// The key is bytes: only ASCII is replaced and whole non-ASCII runs are copied, so it is as
/// much UTF-8 as the text, and nothing needs to check it again.
pub(crate) fn shape_key_into(sql: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    let b = sql.as_bytes();
    // Texts with parameters (`$1`: extended protocol, prepared statements) are cached under
    // their exact text, which does not vary: answer before building anything.
    if b.contains(&b'$') {
        return false;
    }
    out.reserve(b.len() + 1);
    out.push(MARK);
    let mut changed = false;
    // Bytes from `copied` to `i` go to the key unchanged, in one copy when a constant (or the
    // end) is reached: identifiers, keywords, quoted identifiers, operators, spaces.
    let mut copied = 0;
    let mut i = 0;
    // One pass: what the lexer cannot settle (see the module comment) is noticed where it is
    // met outside literals; inside a literal it is only text.
    loop {
        // Most bytes are plain: skip them in a tight loop, without bounds checks.
        i += b[i..]
            .iter()
            .take_while(|&&c| CLASS[usize::from(c)] == PLAIN)
            .count();
        let Some(&c) = b.get(i) else {
            break;
        };
        match CLASS[usize::from(c)] {
            DIGIT if i > 0 && is_ident(b[i - 1]) => i += 1, // inside an identifier (`t1`)
            DIGIT => {
                let end = i + b[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                if b.get(end).is_some_and(|&n| is_ident(n) || n == b'.')
                    || (i > 0 && b[i - 1] == b'.')
                {
                    return false; // 1.5, 1e5, 0x1F, 1_000, .5: not a plain integer
                }
                out.extend_from_slice(&b[copied..i]);
                out.push(b'?');
                changed = true;
                i = end;
                copied = end;
            }
            QUOTE => {
                if i > 0 && is_ident(b[i - 1]) {
                    return false; // E'..', B'..', X'..', N'..', or a typed literal glued to a name
                }
                let Some(end) = closing(b, i, b'\'') else {
                    return false;
                };
                out.extend_from_slice(&b[copied..i]);
                out.extend_from_slice(b"'?'");
                changed = true;
                i = end + 1;
                copied = i;
            }
            DQUOTE => match closing(b, i, b'"') {
                Some(end) => i = end + 1,
                None => return false,
            },
            // Escapes, and bytes no SQL text holds.
            REJECT => return false,
            // Comments.
            DASH if b.get(i + 1) == Some(&b'-') => return false,
            SLASH if b.get(i + 1) == Some(&b'*') => return false,
            _ => i += 1,
        }
    }
    if !changed {
        return false;
    }
    out.extend_from_slice(&b[copied..]);
    true
}

/// What [`shape_key_into`] does at a byte: most bytes are copied (`PLAIN`), the others start a
/// constant, a quoted identifier, a comment, or end the attempt.
const PLAIN: u8 = 0;
const DIGIT: u8 = 1;
const QUOTE: u8 = 2;
const DQUOTE: u8 = 3;
const REJECT: u8 = 4;
const DASH: u8 = 5;
const SLASH: u8 = 6;

/// [`shape_key_into`]'s byte classes, by byte value.
static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t[b'\'' as usize] = QUOTE;
    t[b'"' as usize] = DQUOTE;
    t[b'\\' as usize] = REJECT;
    t[0] = REJECT;
    t[MARK as usize] = REJECT;
    t[b'-' as usize] = DASH;
    t[b'/' as usize] = SLASH;
    t
};

/// A byte that continues an identifier or keyword in PostgreSQL's lexer.
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The index of the quote closing the one at `open`, skipping doubled quotes.
fn closing(b: &[u8], open: usize, quote: u8) -> Option<usize> {
    let mut i = open + 1;
    loop {
        let at = i + b.get(i..)?.iter().position(|&c| c == quote)?;
        if b.get(at + 1) == Some(&quote) {
            i = at + 2;
        } else {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shape_key_into;

    fn shape_key(sql: &str) -> Option<String> {
        let mut out = vec![b'x'];
        if !shape_key_into(sql, &mut out) {
            assert!(out.is_empty() || out[0] == super::MARK, "cleared first");
            return None;
        }
        Some(String::from_utf8(out).expect("a shape key of UTF-8 text is UTF-8"))
    }

    fn key(sql: &str) -> Option<String> {
        shape_key(sql).map(|k| k[1..].to_owned())
    }

    #[test]
    fn blanks_integers_and_strings_only() {
        assert_eq!(
            key("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = ?;")
        );
        assert_eq!(
            key(r#"SELECT "t1"."c2" FROM "my""t" t3 WHERE x = 'it''s' AND y IN (1,2)"#).as_deref(),
            Some(r#"SELECT "t1"."c2" FROM "my""t" t3 WHERE x = '?' AND y IN (?,?)"#)
        );
        assert_eq!(
            key("SELECT 'a;DELETE FROM t;' , 2").as_deref(),
            Some("SELECT '?' , ?")
        );
        assert_eq!(
            key("SELECT é1 FROM t WHERE a=1").as_deref(),
            Some("SELECT é1 FROM t WHERE a=?")
        );
        // Inside literals, comment starts and backslashes are only text.
        assert_eq!(
            key(r#"SELECT "a--b/*", 'x -- \ /*' FROM t WHERE c = 1"#).as_deref(),
            Some(r#"SELECT "a--b/*", '?' FROM t WHERE c = ?"#)
        );
    }

    #[test]
    fn gives_up_where_the_text_alone_does_not_settle_it() {
        for sql in [
            "SELECT a FROM t",     // nothing to blank
            "SELECT 1 -- comment", // comments
            "SELECT /* x */ 1",
            "SELECT $1", // parameters and dollar quotes
            "SELECT $$x$$, 1",
            "SELECT E'a\\'b', 1", // escapes
            "SELECT e'a', 1",
            "SELECT X'ff', 1",
            "SELECT 1.5", // not plain integers
            "SELECT 1e5",
            "SELECT .5",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT \u{1}1",
        ] {
            assert_eq!(key(sql), None, "{sql}");
        }
    }

    #[test]
    fn different_structure_never_shares_a_key() {
        let pairs = [
            ("SELECT 1 FROM t", "SELECT 1 FROM t FOR UPDATE"),
            ("SELECT 'x'", "SELECT 'x'; DELETE FROM t"),
            ("SELECT \"a'\", 1", "SELECT \"a\", 1"),
            ("SELECT t1 FROM t", "SELECT t2 FROM t"),
        ];
        for (a, b) in pairs {
            let (ka, kb) = (shape_key(a), shape_key(b));
            assert!(ka.is_none() || ka != kb, "{a} / {b}");
        }
    }
}
