//! The guarded lexer fast path: answers only when the tokens alone settle the class, and
//! gives up (returns `None`) otherwise, leaving the statement to pg_query.
//!
//! It answers for a bare transaction statement (`BEGIN`, `START TRANSACTION`, `COMMIT`,
//! `END`, `ROLLBACK`, `ABORT`, each with an optional `WORK` / `TRANSACTION`) and for `SHOW`
//! of one setting name or of the few multi-word forms. Anything else — options, literals,
//! punctuation other than one trailing `;`, a second statement — gives up. SET is left to
//! pg_query because its value needs the real grammar; a repeated SET is a cache hit anyway.
//! A test checks that every answer here equals pg_query's answer for the same text.

use crate::class::{Class, Classification, Reason, TxnMode};
use crate::lexer::{Token, Tokens};

/// The most words a statement the fast path understands can have.
const MAX_WORDS: usize = 4;

/// The verdict for `sql` when its tokens alone settle it.
pub(crate) fn classify(sql: &str) -> Option<Classification> {
    let mut words: [&str; MAX_WORDS] = [""; MAX_WORDS];
    let mut n = 0;
    let mut ended = false;
    for tok in Tokens::new(sql) {
        match tok {
            Token::Word(w) if !ended && n < MAX_WORDS => {
                words[n] = w;
                n += 1;
            }
            Token::Semicolon if !ended && n > 0 => ended = true,
            _ => return None,
        }
    }
    let words = &words[..n];
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let first = *words.first()?;
    let verdict = |class, reason| Some(Classification::new(class, reason));
    let txn_noise = |i: usize| n == i || (n == i + 1 && (is(i, "work") || is(i, "transaction")));
    if first.eq_ignore_ascii_case("begin") && txn_noise(1) {
        return verdict(Class::TxnBegin(TxnMode::default()), Reason::Begin);
    }
    if first.eq_ignore_ascii_case("start") && n == 2 && is(1, "transaction") {
        return verdict(Class::TxnBegin(TxnMode::default()), Reason::Begin);
    }
    if ["commit", "end", "rollback", "abort"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k))
        && txn_noise(1)
    {
        return verdict(Class::TxnEnd, Reason::TxnEnd);
    }
    if first.eq_ignore_ascii_case("show") {
        let one_name = n == 2 && !is_reserved_after_show(words[1]);
        let multi = (n == 4 && is(1, "transaction") && is(2, "isolation") && is(3, "level"))
            || (n == 3 && is(1, "time") && is(2, "zone"))
            || (n == 3 && is(1, "session") && is(2, "authorization"));
        if one_name || multi {
            return verdict(Class::Read, Reason::Show);
        }
    }
    None
}

/// Words that begin a multi-word SHOW form, so a lone one is not a setting name.
fn is_reserved_after_show(w: &str) -> bool {
    ["transaction", "time", "session"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_gives_up() {
        let yes = [
            "BEGIN",
            "begin;",
            " Begin Work ; ",
            "START TRANSACTION",
            "COMMIT",
            "end transaction",
            "ROLLBACK",
            "abort;",
            "SHOW search_path",
            "show all;",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "/* c */ SHOW TimeZone -- x",
        ];
        for sql in yes {
            assert!(classify(sql).is_some(), "{sql:?}");
        }
        let no = [
            "BEGIN READ ONLY",
            "BEGIN; DELETE FROM t",
            "COMMIT; SELECT 1",
            "COMMIT AND CHAIN",
            "START TRANSACTION READ ONLY",
            "SHOW",
            "SHOW x; DELETE FROM t",
            "SHOW \"x\"",
            "SHOW a.b",
            "SHOW transaction",
            "SET x = 1",
            "SELECT 1",
            "",
            ";",
            "BEGIN;;",
            "begin $$x$$",
        ];
        for sql in no {
            assert!(classify(sql).is_none(), "{sql:?}");
        }
    }
}
