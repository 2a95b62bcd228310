//! SQL text → what the statement does, as far as pgsplit cares.
//!
//! Today this crate holds the guarded lexer and the session-effect scan that pooling needs:
//! whether a unit of SQL may change session settings (SET, RESET, DISCARD, `set_config`, DO,
//! CALL) or may create or drop state that cannot be replayed on another server connection
//! (temporary tables, LISTEN, SQL-level PREPARE, WITH HOLD cursors, session advisory locks).
//! The scan is deliberately conservative: a false positive costs one round trip to check the
//! server's real state; a false negative could leak one client's settings to another.
//!
//! What it does not do (yet): read/write classification with PostgreSQL's grammar (pg_query)
//! arrives with the routing issue. It never does IO and never fails: any input has an answer.
#![warn(missing_docs)]

mod effects;
mod lexer;

pub use effects::{Effects, session_effects};
pub use lexer::{Token, Tokens};
