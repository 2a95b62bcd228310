//! The differential test: every corpus statement that pg_query classes as a read or a
//! write (not transaction, session or cursor commands) is also judged by sqlparser, an
//! independent parser, with its own tree walk but the same function lists. A disagreement
//! on read versus write fails the test unless `tests/sqlparser_differences.txt` lists the
//! statement with a reason; a listed statement that no longer disagrees fails it too, so
//! the list stays honest. sqlparser fails closed here: a statement it cannot parse is a
//! write in its opinion.

use crate::corpus::{corpus_classifier, load, parse_entries};
use pgsplit_classify::{Class, Classifier, FnClass, UnknownFunctions};
use sqlparser::ast::{
    CopySource, CopyTarget, Expr, Query, Select, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// sqlparser's opinion: `Ok(true)` for a write, `Ok(false)` for a read, `Err` when it
/// cannot parse the text.
fn sqlparser_is_write(sql: &str, c: &Classifier) -> Result<bool, String> {
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    Ok(stmts.iter().any(|s| statement_writes(s, c)))
}

fn statement_writes(s: &Statement, c: &Classifier) -> bool {
    match s {
        Statement::Query(q) => query_writes(q, c),
        Statement::Explain { statement, .. } => statement_writes(statement, c),
        Statement::Copy {
            source, to, target, ..
        } => {
            if !*to || !matches!(target, CopyTarget::Stdout) {
                return true;
            }
            match source {
                CopySource::Table { .. } => false,
                CopySource::Query(q) => query_writes(q, c),
            }
        }
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => false,
        Statement::Declare { stmts } => stmts.iter().any(|d| {
            d.hold == Some(true) || d.for_query.as_ref().is_none_or(|q| query_writes(q, c))
        }),
        _ => true,
    }
}

const SQL_KEYWORD_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "row",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_catalog",
    "current_schema",
];

struct Walk<'a> {
    c: &'a Classifier,
    write: bool,
}

impl Walk<'_> {
    fn function(&mut self, name: &str) {
        let name = name.replace('"', "").to_lowercase();
        // SQL-standard expressions that sqlparser models as function calls but PostgreSQL
        // parses as their own node types (COALESCE, CURRENT_TIMESTAMP, ROW, ...).
        if SQL_KEYWORD_FUNCTIONS.contains(&name.as_str()) {
            return;
        }
        match self.c.function_class(&name) {
            FnClass::Write => self.write = true,
            FnClass::Unknown => {
                if self.c.unknown_functions() == UnknownFunctions::Primary {
                    self.write = true;
                }
            }
            FnClass::Read => {}
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.write = true;
        }
        if matches!(
            *q.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            self.write = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            self.write = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.function(&name.to_string()),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.function(&f.name.to_string());
        }
        ControlFlow::Continue(())
    }
}

fn query_writes(q: &Query, c: &Classifier) -> bool {
    let mut w = Walk { c, write: false };
    let _ = q.visit(&mut w);
    w.write
}

#[test]
fn sqlparser_agrees_on_read_write() {
    let classifier = corpus_classifier(UnknownFunctions::Primary);
    let allowed_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sqlparser_differences.txt"
    );
    let allowed_text = std::fs::read_to_string(allowed_path).expect("read allow-list");
    let mut allowed: HashMap<String, (usize, String)> = parse_entries(&allowed_text)
        .into_iter()
        .map(|e| {
            let why = format!("{} {}", e.class, e.reason);
            (e.sql, (e.line, why))
        })
        .collect();
    for (sql, (line, why)) in &allowed {
        assert!(
            why.split_whitespace().count() >= 2,
            "sqlparser_differences.txt:{line}: give a reason ({sql})"
        );
    }
    let mut unexpected = Vec::new();
    let mut compared = 0;
    for e in load() {
        let ours = classifier.classify(&e.sql);
        let ours_write = match ours.class {
            Class::Read => false,
            Class::Write | Class::Unknown => true,
            _ => continue,
        };
        compared += 1;
        let theirs = sqlparser_is_write(&e.sql, &classifier);
        let theirs_write = *theirs.as_ref().unwrap_or(&true);
        if ours_write == theirs_write {
            continue;
        }
        if allowed.remove(&e.sql).is_none() {
            unexpected.push(format!(
                "corpus.txt:{}: pg_query says {} ({}), sqlparser says {}\n    {}",
                e.line,
                if ours_write { "write" } else { "read" },
                ours.reason,
                match &theirs {
                    Ok(true) => "write".to_owned(),
                    Ok(false) => "read".to_owned(),
                    Err(err) => format!("unparsable: {err}"),
                },
                e.sql.replace('\n', "\n    ")
            ));
        }
    }
    let stale: Vec<String> = allowed
        .iter()
        .map(|(sql, (line, _))| {
            format!(
                "sqlparser_differences.txt:{line}: no longer differs (or not in the corpus): {sql}"
            )
        })
        .collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} unexpected disagreements (of {compared} compared), {} stale allow-list entries:\n{}\n{}",
        unexpected.len(),
        stale.len(),
        unexpected.join("\n"),
        stale.join("\n")
    );
}
