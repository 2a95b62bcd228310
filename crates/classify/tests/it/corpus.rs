//! Data-driven checks: `tests/corpus.txt` holds statements with their expected class and
//! reason (see the file's header for the format). Every entry is checked; a failure lists
//! every mismatching entry with its line number, what was expected and what came out.

use pgsplit_classify::{Class, Classification, Classifier, SetKind, UnknownFunctions};
use std::fmt::Write as _;

pub(crate) use pgsplit_classify::corpus::{Entry, parse_entries};

fn opt_bool(v: Option<bool>) -> String {
    v.map_or("-".to_owned(), |b| b.to_string())
}

/// The value of an extra key for a classification, for comparison with the corpus.
fn extra(c: &Classification, key: &str) -> String {
    let mode = match c.class {
        Class::TxnBegin(m) => Some(m),
        Class::SessionSet(SetKind::Transaction(m) | SetKind::SessionDefaults(m)) => Some(m),
        _ => None,
    };
    match key {
        "hint" => c.hint.map_or("-".into(), |t| t.as_str().into()),
        "functions" => c.functions.join(","),
        "tables" => c.tables.join(","),
        "statements" => c.statements.to_string(),
        "setting" => c.setting.as_ref().map_or("-".into(), |s| s.name.clone()),
        "value" => c
            .setting
            .as_ref()
            .and_then(|s| s.value.clone())
            .unwrap_or_else(|| "-".into()),
        "read_only" => opt_bool(mode.and_then(|m| m.read_only)),
        "deferrable" => opt_bool(mode.and_then(|m| m.deferrable)),
        "isolation" => mode
            .and_then(|m| m.isolation)
            .map_or("-".into(), |i| i.as_str().into()),
        "local" => match c.class {
            Class::SessionSet(SetKind::Set { local }) => local.to_string(),
            _ => "-".into(),
        },
        other => format!("<unknown key {other}>"),
    }
}

/// The corpus's classifier (user function lists of each kind, see the corpus header).
pub(crate) fn corpus_classifier(unknown: UnknownFunctions) -> Classifier {
    pgsplit_classify::corpus::classifier(unknown)
}

/// Every corpus entry.
pub(crate) fn load() -> Vec<Entry> {
    pgsplit_classify::corpus::entries()
}

#[test]
fn corpus() {
    let entries = load();
    let classifier = corpus_classifier(UnknownFunctions::Primary);
    let mut failures = String::new();
    let mut failed = 0;
    for e in &entries {
        let got = classifier.classify(&e.sql);
        let mut diffs = Vec::new();
        if got.class.as_str() != e.class || got.reason.as_str() != e.reason {
            diffs.push(format!(
                "expected {} {}, got {} {}",
                e.class, e.reason, got.class, got.reason
            ));
        }
        for (k, v) in &e.extras {
            let actual = extra(&got, k);
            if &actual != v {
                diffs.push(format!("{k}: expected {v}, got {actual}"));
            }
        }
        if !diffs.is_empty() {
            failed += 1;
            let _ = writeln!(failures, "corpus.txt:{}: {}", e.line, diffs.join("; "));
            let _ = writeln!(failures, "    == {} {}", got.class, got.reason);
            for l in e.sql.lines() {
                let _ = writeln!(failures, "    {l}");
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} corpus entries differ:\n{failures}",
        entries.len()
    );
    assert!(
        entries.len() >= 400,
        "corpus has only {} entries",
        entries.len()
    );
}

/// Every entry the lexer fast path answers must get the same answer from pg_query.
#[test]
fn fast_path_agrees_with_parser() {
    let classifier = corpus_classifier(UnknownFunctions::Primary);
    let mut answered = 0;
    for e in load() {
        let quick = classifier.classify_uncached(&e.sql);
        let full = classifier.classify_parsed(&e.sql);
        if quick != full {
            panic!(
                "corpus.txt:{}: fast path {:?} vs parser {:?}\n{}",
                e.line, quick, full, e.sql
            );
        }
        answered += 1;
    }
    assert!(answered > 0);
}

/// With `functions.unknown: replica`, no entry whose only blocker is an unknown function
/// stays a write, and nothing else changes.
#[test]
fn unknown_functions_replica() {
    let primary = corpus_classifier(UnknownFunctions::Primary);
    let replica = corpus_classifier(UnknownFunctions::Replica);
    for e in load() {
        let a = primary.classify(&e.sql);
        let b = replica.classify(&e.sql);
        if a.reason.as_str().starts_with("multi_statement") {
            continue;
        }
        if a.reason.as_str() == "unknown_function" {
            assert_ne!(b.reason.as_str(), "unknown_function", "line {}", e.line);
        } else {
            assert_eq!(a.class, b.class, "corpus.txt:{}", e.line);
        }
    }
}

/// Texts that differ only in constants share one cached verdict (keyed by PostgreSQL's
/// normalization). Priming the cache with a variant of every entry (each digit bumped) must
/// never change what the entry itself gets.
#[test]
fn verdicts_shared_across_constants_match_each_texts_own() {
    let classifier = corpus_classifier(UnknownFunctions::Primary);
    let bump = |sql: &str| -> String {
        sql.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_digit((d + 1) % 10, 10).unwrap_or(c),
                None => c,
            })
            .collect()
    };
    let mut checked = 0;
    for e in load() {
        let variant = bump(&e.sql);
        if variant == e.sql {
            continue;
        }
        classifier.classify(&variant);
        let shared = classifier.classify(&e.sql);
        let own = classifier.classify_uncached(&e.sql);
        assert_eq!(
            (shared.class, shared.reason, shared.hint, &shared.setting),
            (own.class, own.reason, own.hint, &own.setting),
            "corpus.txt:{}: the verdict cached for\n{variant}\ndiffers from the text's own\n{}",
            e.line,
            e.sql
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} entries have constants");
}

#[test]
fn one_cache_entry_for_many_constants() {
    let classifier = corpus_classifier(UnknownFunctions::Primary);
    for aid in 0..500 {
        let c = classifier.classify(&format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
        ));
        assert_eq!(c.class, Class::Read);
    }
    assert_eq!(classifier.cached(), 1);
    for value in ["primary", "replica"] {
        let c = classifier.classify(&format!("SET pgsplit.route = '{value}'"));
        let setting = c.setting.as_ref().and_then(|s| s.value.as_deref());
        assert_eq!(setting, Some(value), "SET values are never shared");
    }
    let read = classifier.classify("SELECT nextval('a') FROM t WHERE x = 1");
    assert_eq!(read.class, Class::Write);
}
