//! SQL text → what the statement does, as far as pgsplit cares.
//!
//! The [`Classifier`] answers, for one unit of SQL (a Simple Query string or a prepared
//! statement), a [`Classification`]: its [`Class`] (read, write, transaction control,
//! session state, cursor, unknown), a stable [`Reason`] for metrics, the functions and
//! tables it names, and a leading `/* pgsplit: route=... */` hint if there is one.
//! The hot path is: a bounded cache keyed by the exact text → a guarded lexer that answers
//! only trivial statements (bare BEGIN/COMMIT/ROLLBACK, SHOW) → pg_query, PostgreSQL's own
//! grammar, with a walk of every statement's whole tree → into the cache.
//!
//! Decisions worth knowing:
//! - **Fail closed.** Anything pg_query rejects (syntax errors, its nesting limit of about
//!   20 subqueries or a 50-term `a || a || ...`, NUL bytes) is [`Class::Unknown`] with
//!   reason `unparsed`, which routes to the primary. The nesting limit is not lifted, so no
//!   big-stack thread is needed and classification is safe on a 2 MiB tokio worker stack.
//! - **Functions.** A built-in list of writing or session-bound functions (sequences,
//!   advisory locks of every kind, `set_config`, large objects, WAL and replication
//!   functions, ...), a built-in list of read-safe built-ins, the user's lists, and
//!   `functions.unknown` for the rest (see [`functions`]).
//! - **SQL-level PREPARE / EXECUTE / DEALLOCATE** are writes: a prepared statement lives
//!   on one server and pins the client to a primary connection, so EXECUTE of a read goes
//!   there too. **DECLARE** of a read without HOLD is a read (it lives and dies in its
//!   transaction, whose server it follows); `WITH HOLD` pins, so it is a write.
//! - **EXPLAIN** is a read when its statement is a read; EXPLAIN of a write is a write,
//!   with reason `explain_analyze_write` when ANALYZE executes it.
//! - **Multi-statement strings** are a read only if every statement is; with any write the
//!   reason is `multi_statement_write`, with transaction or session commands mixed in it is
//!   `multi_statement` (both go to the primary).
//! - **Prepared statements.** The session classifies a protocol-level statement once, at
//!   Parse, and keeps the returned `Arc<Classification>` with the statement; the text
//!   cache serves the Simple Query path and repeated Parses of the same text.
//! - **`standard_conforming_strings = off`**: backslashes change how literals end, which
//!   pg_query cannot follow, so such text fails closed ([`Classifier::classify_with`]).
//!
//! [`fingerprint`] gives pg_query's fingerprint of a text, for rules that match on one.
//!
//! Alongside, the guarded [`Tokens`] lexer and the [`session_effects`] scan that pooling
//! uses: whether a unit may change session settings (SET, RESET, DISCARD, `set_config`,
//! DO, CALL) or create or drop state that cannot be replayed on another server connection
//! (temporary tables, LISTEN, SQL-level PREPARE, WITH HOLD cursors, advisory locks).
//! That scan is deliberately conservative: a false positive costs one round trip.
//!
//! **Invariant:** a cache hit takes one short shard lock and clones an `Arc`; it does not
//! allocate. Parser types (pg_query, and sqlparser in tests) never leave this crate.
//!
//! What it does not do: choose a server (that is `pgsplit-router`, which takes a
//! [`Classification`]), read configuration files, do IO, or expose parser types — pg_query
//! and sqlparser types never leave this crate. It cannot see inside user-defined
//! functions or operators: that is what the function lists and `functions.unknown` are for.
#![warn(missing_docs)]

mod cache;
mod class;
mod classifier;
#[doc(hidden)]
pub mod corpus;
mod effects;
mod fast;
mod fingerprint;
pub mod functions;
mod hint;
mod lexer;
mod parse;
mod shape;
mod walk;

pub use class::{Class, Classification, Isolation, Reason, SetKind, Setting, Target, TxnMode};
pub use classifier::{CacheCounters, Classifier, Options};
pub use effects::{Effects, session_effects};
pub use fingerprint::fingerprint;
pub use functions::{FnClass, UnknownFunctions};
pub use hint::leading_hint;
pub use lexer::{Token, Tokens};
