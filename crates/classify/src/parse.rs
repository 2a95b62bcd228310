//! The authoritative path: pg_query (PostgreSQL's own grammar) and a walk of every
//! statement's whole tree.

use crate::class::{Class, Classification, Isolation, Reason, SetKind, Setting, TxnMode};
use crate::functions::{FnClass, FunctionLists, UnknownFunctions};
use crate::walk::Facts;
use pg_query::NodeEnum;
use pg_query::protobuf::{self, a_const, node::Node as N};

/// PostgreSQL's `CURSOR_OPT_HOLD` bit in `DeclareCursorStmt.options`.
const CURSOR_OPT_HOLD: i32 = 0x0020;

/// Policy inputs the statement rules need.
pub(crate) struct Policy<'a> {
    pub(crate) functions: &'a FunctionLists,
    pub(crate) unknown: UnknownFunctions,
}

/// One statement's verdict.
struct Verdict {
    class: Class,
    reason: Reason,
    setting: Option<Setting>,
}

impl Verdict {
    fn of(class: Class, reason: Reason) -> Verdict {
        Verdict {
            class,
            reason,
            setting: None,
        }
    }
    fn write(reason: Reason) -> Verdict {
        Verdict::of(Class::Write, reason)
    }
    fn read(reason: Reason) -> Verdict {
        Verdict::of(Class::Read, reason)
    }
}

/// Parses and classifies `sql`. `None` when pg_query refuses it (the caller fails closed).
pub(crate) fn classify(sql: &str, policy: &Policy<'_>) -> Option<Classification> {
    let parsed = pg_query::parse(sql).ok()?;
    let stmts = &parsed.protobuf.stmts;
    let mut verdicts = Vec::with_capacity(stmts.len());
    let mut functions: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    for raw in stmts {
        let node = raw.stmt.as_ref().and_then(|n| n.node.as_ref())?;
        let mut facts = Facts::default();
        facts.collect(node);
        let v = statement(node, &facts, policy);
        for f in facts.functions {
            if !functions.contains(&f) {
                functions.push(f);
            }
        }
        for t in facts.tables {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        verdicts.push(v);
    }
    let statements = verdicts.len();
    let (class, reason, setting) = match verdicts.len() {
        0 => (Class::Read, Reason::Empty, None),
        1 => {
            let v = verdicts.pop()?;
            (v.class, v.reason, v.setting)
        }
        _ => {
            if verdicts.iter().all(|v| v.class == Class::Read) {
                (Class::Read, verdicts[0].reason, None)
            } else if verdicts.iter().any(|v| v.class.needs_primary()) {
                (Class::Write, Reason::MultiStatementWrite, None)
            } else {
                (Class::Write, Reason::MultiStatement, None)
            }
        }
    };
    Some(Classification {
        class,
        reason,
        functions,
        tables,
        hint: None,
        setting,
        statements,
        // Set by the classifier from the text (one lexing pass per verdict).
        effects: crate::effects::Effects::default(),
    })
}

/// Why a query that would otherwise read must go to the primary, if it must.
fn read_blocker(facts: &Facts, policy: &Policy<'_>) -> Option<Reason> {
    if facts.into {
        return Some(Reason::SelectInto);
    }
    if facts.dml > 0 {
        return Some(Reason::DataModifyingCte);
    }
    if facts.locking {
        return Some(Reason::LockingClause);
    }
    let mut unknown = false;
    for f in &facts.functions {
        match policy.functions.class_of(f) {
            FnClass::Write => return Some(Reason::WritingFunction),
            FnClass::Unknown => unknown = true,
            FnClass::Read => {}
        }
    }
    if unknown && policy.unknown == UnknownFunctions::Primary {
        return Some(Reason::UnknownFunction);
    }
    None
}

/// Classifies a query nested in EXPLAIN, COPY or DECLARE: a read or the reason it is not.
/// `facts` cover the whole outer statement, which adds nothing that could read.
fn inner_query(node: Option<&protobuf::Node>, facts: &Facts, policy: &Policy<'_>) -> Verdict {
    match node.and_then(|n| n.node.as_ref()) {
        Some(inner) => statement(inner, facts, policy),
        None => Verdict::of(Class::Unknown, Reason::Unparsed),
    }
}

fn statement(node: &NodeEnum, facts: &Facts, policy: &Policy<'_>) -> Verdict {
    match node {
        N::SelectStmt(_) => match read_blocker(facts, policy) {
            Some(r) => Verdict::write(r),
            None => Verdict::read(Reason::Select),
        },
        N::InsertStmt(_)
        | N::UpdateStmt(_)
        | N::DeleteStmt(_)
        | N::MergeStmt(_)
        | N::TruncateStmt(_) => Verdict::write(Reason::Dml),
        N::ExplainStmt(e) => {
            let analyze = e.options.iter().any(|o| match &o.node {
                Some(N::DefElem(d)) => d.defname == "analyze" && def_is_true(d),
                _ => false,
            });
            let inner = inner_query(e.query.as_deref(), facts, policy);
            match inner.class {
                Class::Read => Verdict::read(Reason::ExplainRead),
                _ if analyze => Verdict::write(Reason::ExplainAnalyzeWrite),
                _ => Verdict::write(Reason::ExplainWrite),
            }
        }
        N::CopyStmt(c) => {
            if c.is_from {
                Verdict::write(Reason::CopyFrom)
            } else if c.is_program || !c.filename.is_empty() {
                Verdict::write(Reason::CopyToFile)
            } else if c.query.is_some() {
                let inner = inner_query(c.query.as_deref(), facts, policy);
                match inner.class {
                    Class::Read => Verdict::read(Reason::CopyTo),
                    _ => Verdict::write(inner.reason),
                }
            } else {
                Verdict::read(Reason::CopyTo)
            }
        }
        N::TransactionStmt(t) => {
            use protobuf::TransactionStmtKind as K;
            match K::try_from(t.kind).unwrap_or(K::Undefined) {
                K::TransStmtBegin | K::TransStmtStart => {
                    Verdict::of(Class::TxnBegin(txn_mode(&t.options)), Reason::Begin)
                }
                K::TransStmtCommit | K::TransStmtRollback | K::TransStmtPrepare => {
                    Verdict::of(Class::TxnEnd, Reason::TxnEnd)
                }
                K::TransStmtSavepoint | K::TransStmtRelease | K::TransStmtRollbackTo => {
                    Verdict::of(Class::Savepoint, Reason::Savepoint)
                }
                K::TransStmtCommitPrepared | K::TransStmtRollbackPrepared => {
                    Verdict::write(Reason::TwoPhase)
                }
                K::Undefined => Verdict::of(Class::Unknown, Reason::Unparsed),
            }
        }
        N::VariableSetStmt(s) => variable_set(s),
        N::VariableShowStmt(_) => Verdict::read(Reason::Show),
        N::DiscardStmt(_) => Verdict::of(Class::SessionSet(SetKind::Discard), Reason::Discard),
        N::DeclareCursorStmt(d) => {
            let inner = inner_query(d.query.as_deref(), facts, policy);
            if inner.class != Class::Read {
                Verdict::write(inner.reason)
            } else if d.options & CURSOR_OPT_HOLD != 0 {
                Verdict::write(Reason::CursorWithHold)
            } else {
                Verdict::read(Reason::DeclareCursor)
            }
        }
        N::FetchStmt(_) | N::ClosePortalStmt(_) => Verdict::of(Class::Cursor, Reason::Cursor),
        N::ListenStmt(_) | N::UnlistenStmt(_) | N::NotifyStmt(_) => {
            Verdict::write(Reason::ListenNotify)
        }
        N::PrepareStmt(_) | N::ExecuteStmt(_) | N::DeallocateStmt(_) => {
            Verdict::write(Reason::PrepareExecute)
        }
        N::CallStmt(_) | N::DoStmt(_) => Verdict::write(Reason::CallDo),
        N::LockStmt(_) => Verdict::write(Reason::Lock),
        N::VacuumStmt(v) => Verdict::write(if v.is_vacuumcmd {
            Reason::Vacuum
        } else {
            Reason::Analyze
        }),
        N::CheckPointStmt(_)
        | N::LoadStmt(_)
        | N::ReindexStmt(_)
        | N::ClusterStmt(_)
        | N::AlterSystemStmt(_)
        | N::ConstraintsSetStmt(_) => Verdict::write(Reason::Utility),
        _ => Verdict::write(Reason::Ddl),
    }
}

/// `SET`, `RESET`, `SET TRANSACTION`, `SET SESSION CHARACTERISTICS`.
fn variable_set(s: &protobuf::VariableSetStmt) -> Verdict {
    use protobuf::VariableSetKind as K;
    let name = s.name.to_lowercase();
    let kind = K::try_from(s.kind).unwrap_or(K::Undefined);
    let setting = |value: Option<String>| {
        Some(Setting {
            name: name.clone(),
            value,
        })
    };
    match kind {
        K::VarSetMulti if name == "transaction" => Verdict::of(
            Class::SessionSet(SetKind::Transaction(txn_mode(&s.args))),
            Reason::SetTransaction,
        ),
        K::VarSetMulti if name == "session characteristics" => Verdict::of(
            Class::SessionSet(SetKind::SessionDefaults(txn_mode(&s.args))),
            Reason::SetTransaction,
        ),
        K::VarSetValue | K::VarSetDefault | K::VarSetCurrent | K::VarSetMulti => Verdict {
            class: Class::SessionSet(SetKind::Set { local: s.is_local }),
            reason: Reason::Set,
            setting: setting(if kind == K::VarSetValue {
                single_value(&s.args)
            } else {
                None
            }),
        },
        K::VarReset => Verdict {
            class: Class::SessionSet(SetKind::Reset),
            reason: Reason::Reset,
            setting: setting(None),
        },
        K::VarResetAll => Verdict::of(Class::SessionSet(SetKind::ResetAll), Reason::Reset),
        K::Undefined => Verdict::of(Class::Unknown, Reason::Unparsed),
    }
}

/// The text of a single constant argument (`'x'`, `x`, `5`, `on`).
fn single_value(args: &[protobuf::Node]) -> Option<String> {
    let [arg] = args else { return None };
    match arg.node.as_ref()? {
        N::AConst(c) => const_text(c),
        N::String(s) => Some(s.sval.clone()),
        _ => None,
    }
}

fn const_text(c: &protobuf::AConst) -> Option<String> {
    match c.val.as_ref()? {
        a_const::Val::Sval(s) => Some(s.sval.clone()),
        a_const::Val::Ival(i) => Some(i.ival.to_string()),
        a_const::Val::Fval(f) => Some(f.fval.clone()),
        a_const::Val::Boolval(b) => Some(if b.boolval { "on" } else { "off" }.to_owned()),
        a_const::Val::Bsval(_) => None,
    }
}

/// Whether a DefElem option (`ANALYZE`, `ANALYZE true`, `ANALYZE off`) is on.
fn def_is_true(d: &protobuf::DefElem) -> bool {
    let Some(arg) = d.arg.as_ref().and_then(|a| a.node.as_ref()) else {
        return true;
    };
    let text = match arg {
        N::String(s) => s.sval.to_lowercase(),
        N::Boolean(b) => return b.boolval,
        N::Integer(i) => return i.ival != 0,
        N::AConst(c) => match const_text(c) {
            Some(t) => t.to_lowercase(),
            None => return true,
        },
        _ => return true,
    };
    !matches!(text.as_str(), "false" | "off" | "0" | "no")
}

/// Transaction characteristics from BEGIN / START TRANSACTION / SET TRANSACTION options.
fn txn_mode(options: &[protobuf::Node]) -> TxnMode {
    let mut mode = TxnMode::default();
    for o in options {
        let Some(N::DefElem(d)) = o.node.as_ref() else {
            continue;
        };
        match d.defname.as_str() {
            "transaction_isolation" => {
                let level = match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                    Some(N::AConst(c)) => const_text(c),
                    Some(N::String(s)) => Some(s.sval.clone()),
                    _ => None,
                };
                mode.isolation = level.and_then(|l| match l.to_lowercase().as_str() {
                    "serializable" => Some(Isolation::Serializable),
                    "repeatable read" => Some(Isolation::RepeatableRead),
                    "read committed" => Some(Isolation::ReadCommitted),
                    "read uncommitted" => Some(Isolation::ReadUncommitted),
                    _ => None,
                });
            }
            "transaction_read_only" => mode.read_only = Some(def_is_true(d)),
            "transaction_deferrable" => mode.deferrable = Some(def_is_true(d)),
            _ => {}
        }
    }
    mode
}
