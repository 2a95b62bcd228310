//! The verdict types: what a unit of SQL is, why, and what it touches.

use crate::effects::Effects;
use std::fmt;

/// What a unit of SQL (one Simple Query string, or one prepared statement) is, as far as
/// routing cares. Each variant documents what the router is expected to do with it.
///
/// **Invariant:** only [`Class::Read`] may ever be sent to a replica on the strength of the
/// classification alone; [`Class::TxnBegin`] may go to a replica only when it is read-only
/// and not SERIALIZABLE. Every other variant either goes to the primary or follows a server
/// that was already chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads only: SELECT / VALUES / TABLE with no locking clause, no data-modifying CTE, no
    /// SELECT INTO and no writing or unknown function; SHOW; EXPLAIN of a read; COPY ... TO
    /// STDOUT of a table or read query; DECLARE (without HOLD) of a read query. May go to
    /// any eligible replica (subject to consistency rules).
    Read,
    /// Writes or may write: DML, DDL, CALL, DO, LOCK, VACUUM, LISTEN/NOTIFY, COPY FROM,
    /// SQL-level PREPARE/EXECUTE/DEALLOCATE, writing functions, multi-statement strings with
    /// anything but reads. Routes to the primary.
    Write,
    /// `BEGIN` / `START TRANSACTION`. Routes to the primary, unless the mode (or the
    /// session's `default_transaction_read_only`) is read-only and the isolation level is not
    /// SERIALIZABLE (hot standbys refuse it), in which case a replica may serve the whole
    /// transaction. A bare BEGIN may be held back until the first real statement.
    TxnBegin(TxnMode),
    /// `COMMIT` / `END` / `ROLLBACK` / `ABORT` / `PREPARE TRANSACTION`: follows the open
    /// transaction's server; outside a transaction it is a no-op with a warning anywhere.
    TxnEnd,
    /// `SAVEPOINT` / `RELEASE` / `ROLLBACK TO SAVEPOINT`: follows the open transaction's
    /// server (outside a transaction it fails the same way everywhere).
    Savepoint,
    /// `SET` / `RESET` / `DISCARD` / `SET ROLE` / `SET SESSION AUTHORIZATION` /
    /// `SET TRANSACTION`: session state that the session tracks and replays on every
    /// server connection the client is given; the statement itself may run anywhere (the
    /// current server, or none at all when it can be answered by replay).
    SessionSet(SetKind),
    /// `FETCH` / `MOVE` / `CLOSE`: follows the server that holds the cursor.
    Cursor,
    /// Could not be classified (parse error, pg_query's nesting limit, a NUL byte, a
    /// backslash under `standard_conforming_strings = off`). Routes to the primary.
    Unknown,
}

impl Class {
    /// A stable snake_case name (metrics, the corpus file, `EXPLAIN ROUTE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::TxnBegin(_) => "txn_begin",
            Class::TxnEnd => "txn_end",
            Class::Savepoint => "savepoint",
            Class::SessionSet(_) => "session_set",
            Class::Cursor => "cursor",
            Class::Unknown => "unknown",
        }
    }

    /// Whether this class needs the primary whatever the session state (Write, Unknown).
    pub fn needs_primary(self) -> bool {
        matches!(self, Class::Write | Class::Unknown)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transaction isolation level as written in BEGIN / START TRANSACTION / SET TRANSACTION.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// `READ UNCOMMITTED` (behaves as READ COMMITTED in PostgreSQL).
    ReadUncommitted,
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`: hot standbys refuse it, so it needs the primary.
    Serializable,
}

impl Isolation {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read_uncommitted",
            Isolation::ReadCommitted => "read_committed",
            Isolation::RepeatableRead => "repeatable_read",
            Isolation::Serializable => "serializable",
        }
    }
}

/// Transaction characteristics written in the statement. `None` means "not said", so the
/// session's defaults (`default_transaction_read_only`, `default_transaction_isolation`)
/// apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxnMode {
    /// `READ ONLY` (`Some(true)`) or `READ WRITE` (`Some(false)`).
    pub read_only: Option<bool>,
    /// `ISOLATION LEVEL ...`.
    pub isolation: Option<Isolation>,
    /// `DEFERRABLE` / `NOT DEFERRABLE`.
    pub deferrable: Option<bool>,
}

impl TxnMode {
    /// Whether a transaction in this mode may run on a hot standby, given the session's
    /// `default_transaction_read_only` and whether its default isolation is SERIALIZABLE.
    pub fn replica_eligible(self, default_read_only: bool, default_serializable: bool) -> bool {
        let read_only = self.read_only.unwrap_or(default_read_only);
        let serializable = match self.isolation {
            Some(i) => i == Isolation::Serializable,
            None => default_serializable,
        };
        read_only && !serializable
    }
}

/// Which kind of session-state statement a [`Class::SessionSet`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// `SET name ...` (incl. `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET TIME ZONE`);
    /// `local` for `SET LOCAL`, which lasts until the end of the transaction.
    Set {
        /// `SET LOCAL`.
        local: bool,
    },
    /// `RESET name` (incl. `RESET ROLE`, `RESET SESSION AUTHORIZATION`).
    Reset,
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP`.
    Discard,
    /// `SET TRANSACTION ...`: characteristics of the current transaction only.
    Transaction(TxnMode),
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`: the session's defaults for later
    /// transactions (`default_transaction_read_only` and friends).
    SessionDefaults(TxnMode),
}

/// A setting named by SET / RESET, with its value when it is a single simple constant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Setting {
    /// The setting's name in lower case, as PostgreSQL stores it (`search_path`, `role`,
    /// `session_authorization`, `timezone`, `pgsplit.route`).
    pub name: String,
    /// The value for `SET name = 'constant'` / `TO word`; `None` for DEFAULT, RESET, lists
    /// and anything more complex.
    pub value: Option<String>,
}

/// A forced target from a leading `/* pgsplit: route=... */` comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `route=primary`.
    Primary,
    /// `route=replica`. The router must still refuse it for a write.
    Replica,
}

impl Target {
    /// A stable name: `primary` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
        }
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why a unit got its [`Class`]. The snake_case names from [`Reason::as_str`] are
        /// stable: they are metric label values and appear in the corpus file.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in declaration order (for pre-registering metric labels).
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $name, )* }
            }

            /// The reason with this name, if any.
            pub fn from_name(name: &str) -> Option<Reason> {
                match name { $( $name => Some(Reason::$variant), )* _ => None }
            }
        }
    };
}

reasons! {
    /// A SELECT / VALUES / TABLE that only reads.
    Select => "select",
    /// An empty string or one made only of comments.
    Empty => "empty",
    /// `SHOW`.
    Show => "show",
    /// `EXPLAIN` (without ANALYZE, or ANALYZE of a read) of a read.
    ExplainRead => "explain_read",
    /// `EXPLAIN` without ANALYZE of a write: not executed, but the letter of the design
    /// ("EXPLAIN of a read") sends it to the primary.
    ExplainWrite => "explain_write",
    /// `EXPLAIN ANALYZE` of a write: it executes the write.
    ExplainAnalyzeWrite => "explain_analyze_write",
    /// `COPY ... TO STDOUT` of a table or read query.
    CopyTo => "copy_to",
    /// `COPY ... FROM`.
    CopyFrom => "copy_from",
    /// `COPY ... TO 'file'` or `TO PROGRAM`: side effects on the server's machine.
    CopyToFile => "copy_to_file",
    /// INSERT / UPDATE / DELETE / MERGE.
    Dml => "dml",
    /// CREATE / ALTER / DROP / GRANT / COMMENT / REFRESH MATERIALIZED VIEW / ... .
    Ddl => "ddl",
    /// Another utility statement (CHECKPOINT, LOAD, REINDEX, CLUSTER, ...).
    Utility => "utility",
    /// A locking clause (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE) at any depth.
    LockingClause => "locking_clause",
    /// A data-modifying statement inside a WITH at any depth.
    DataModifyingCte => "data_modifying_cte",
    /// `SELECT ... INTO`.
    SelectInto => "select_into",
    /// A call of a function classed as writing or session-bound.
    WritingFunction => "writing_function",
    /// A call of a function in no list, with `functions.unknown: primary`.
    UnknownFunction => "unknown_function",
    /// Several statements, at least one of them a write.
    MultiStatementWrite => "multi_statement_write",
    /// Several statements mixing reads with transaction, session or cursor commands.
    MultiStatement => "multi_statement",
    /// The text did not parse (syntax error, nesting limit, NUL byte): fail closed.
    Unparsed => "unparsed",
    /// Backslashes with `standard_conforming_strings = off`: pg_query cannot lex it the
    /// way the server will, so fail closed.
    NonstandardStrings => "nonstandard_strings",
    /// Set by the router (never by the classifier) when it honours a hint.
    Hint => "hint",
    /// LISTEN / UNLISTEN / NOTIFY.
    ListenNotify => "listen_notify",
    /// CALL / DO: arbitrary code.
    CallDo => "call_do",
    /// LOCK TABLE.
    Lock => "lock",
    /// VACUUM.
    Vacuum => "vacuum",
    /// ANALYZE.
    Analyze => "analyze",
    /// SQL-level PREPARE / EXECUTE / DEALLOCATE: server-side state that pins to the primary.
    PrepareExecute => "prepare_execute",
    /// DECLARE of a read query without HOLD (lives in its transaction).
    DeclareCursor => "declare_cursor",
    /// DECLARE ... WITH HOLD: outlives the transaction, pins to the primary.
    CursorWithHold => "cursor_with_hold",
    /// FETCH / MOVE / CLOSE.
    Cursor => "cursor",
    /// BEGIN / START TRANSACTION.
    Begin => "begin",
    /// COMMIT / ROLLBACK / END / ABORT / PREPARE TRANSACTION.
    TxnEnd => "txn_end",
    /// SAVEPOINT / RELEASE / ROLLBACK TO.
    Savepoint => "savepoint",
    /// COMMIT PREPARED / ROLLBACK PREPARED: two-phase commit outside a transaction.
    TwoPhase => "two_phase",
    /// SET / SET LOCAL / SET ROLE / SET SESSION AUTHORIZATION.
    Set => "set",
    /// SET TRANSACTION / SET SESSION CHARACTERISTICS.
    SetTransaction => "set_transaction",
    /// RESET / RESET ALL.
    Reset => "reset",
    /// DISCARD.
    Discard => "discard",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict for one unit of SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// What the unit is (see [`Class`] for the routing meaning of each variant).
    pub class: Class,
    /// Why; a stable metric label.
    pub reason: Reason,
    /// Functions called anywhere in the unit, lower-case, schema-qualified as written
    /// (`nextval`, `pg_catalog.set_config`), deduplicated, in order of first appearance.
    pub functions: Vec<String>,
    /// Tables (and views, sequences) named anywhere, as written (`public.users`), lower-case
    /// unless quoted, deduplicated, in order of first appearance. CTE names may appear.
    pub tables: Vec<String>,
    /// A leading `/* pgsplit: route=... */` hint, if any. The classifier never lets it
    /// change `class`; the router decides whether to honour it.
    pub hint: Option<Target>,
    /// For a single SET / RESET: the setting it names.
    pub setting: Option<Setting>,
    /// Number of statements in the unit (0 for an empty string).
    pub statements: usize,
    /// What the text may do to its connection's session ([`crate::session_effects`]),
    /// computed once with the verdict so that a cache hit needs no second lexing pass. Texts
    /// that share a cached verdict differ only in constants, which effects never depend on.
    pub effects: Effects,
}

impl Classification {
    /// A verdict with no functions, tables, hint or setting.
    pub fn new(class: Class, reason: Reason) -> Self {
        Classification {
            class,
            reason,
            functions: Vec::new(),
            tables: Vec::new(),
            hint: None,
            setting: None,
            statements: 1,
            effects: Effects::default(),
        }
    }

    /// The fail-closed verdict: Unknown, routed to the primary.
    pub fn unknown(reason: Reason) -> Self {
        Classification::new(Class::Unknown, reason)
    }
}
