//! The classification corpus (`tests/corpus.txt`) as data, shared by this crate's corpus test
//! and the e2e safety proof that executes its reads on real replicas. Test support only:
//! hidden from the documentation and not part of the classifier's API.
//!
//! Format (also at the top of the file): a header `== <class> <reason> [key=value ...]`,
//! then the SQL (any number of lines) up to the next header; `##` lines are comments.

use crate::{Classifier, Options, UnknownFunctions};

/// The corpus text, compiled in so a change to the file rebuilds its users.
pub const TEXT: &str = include_str!("../tests/corpus.txt");

/// One corpus entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Line of the `==` header in `corpus.txt` (1-based).
    pub line: usize,
    /// Expected class name ([`crate::Class::as_str`]).
    pub class: String,
    /// Expected reason name ([`crate::Reason`]'s `as_str`).
    pub reason: String,
    /// Extra expectations: `key=value`.
    pub extras: Vec<(String, String)>,
    /// The SQL text (lines joined with `\n`, surrounding blank lines trimmed).
    pub sql: String,
}

/// Parses a file of `== header` + body entries; `##` lines are comments.
pub fn parse_entries(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let flush = |out: &mut Vec<Entry>, body: &mut Vec<&str>| {
        if let Some(e) = out.last_mut() {
            e.sql = body.join("\n").trim().to_owned();
        }
        body.clear();
    };
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("##") {
            continue;
        }
        if let Some(header) = line.strip_prefix("== ") {
            flush(&mut out, &mut body);
            let mut words = header.split_whitespace();
            let class = words.next().unwrap_or_default().to_owned();
            let reason = words.next().unwrap_or_default().to_owned();
            let extras = words
                .map(|w| {
                    let (k, v) = w.split_once('=').unwrap_or((w, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            out.push(Entry {
                line: i + 1,
                class,
                reason,
                extras,
                sql: String::new(),
            });
        } else if !out.is_empty() {
            body.push(line);
        }
    }
    flush(&mut out, &mut body);
    out
}

/// Every entry of [`TEXT`].
pub fn entries() -> Vec<Entry> {
    parse_entries(TEXT)
}

/// The corpus's classifier: default options plus user functions of each kind (write
/// `app.bump_counter`, `audit_*`; read `app.price_of`, `slugify`), so the corpus can show
/// user lists at work.
pub fn classifier(unknown: UnknownFunctions) -> Classifier {
    Classifier::new(Options {
        write_functions: vec!["app.bump_counter".into(), "audit_*".into()],
        read_functions: vec!["app.price_of".into(), "slugify".into()],
        unknown_functions: unknown,
        ..Options::default()
    })
}
