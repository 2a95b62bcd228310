//! Everything pgsplit does towards PostgreSQL servers: connect, authenticate as a client, read
//! the server's startup state, send cancel requests, and pool server connections.
//!
//! [`Pools`] holds one pool per [`PoolKey`] (server name, server user, database). A checkout
//! takes the newest idle healthy connection, else opens one if the pool's `size` and the
//! server's `server_max_connections` (shared by all pools of that server) allow, else waits in
//! a FIFO queue for up to `checkout_timeout` and fails with SQLSTATE 53300 naming the pool.
//! A [`PooledConn`] goes back with [`PooledConn::release`] (optionally after a reset query) only
//! when it is idle (`txn_status` `I`), young enough and not marked broken; dropped without
//! release, it is closed. [`Pools::maintain`] closes idle connections past their idle timeout
//! or lifetime and tops pools up to `min_idle`; [`Pools::stats`] feeds `SHOW POOLS` and metrics.
//!
//! What it does not do: it knows no SQL semantics (no classification, no routing), does not
//! talk to clients, and does not replay client session state: pooled connections are opened
//! with only `user` and `database`, and sessions replay their settings themselves (using
//! [`ServerConn::state_tag`] to skip a replay that is already in place). It spawns no
//! background task of its own: the proxy calls [`Pools::maintain`] on its own schedule.
//! [`Prober`] runs health probes: one kept-open connection per server and one query per probe
//! that reads the server's role and WAL position; what a result means for routing is decided
//! by the caller.
//!
//! # Cancel safety
//! [`ServerConn::read_frame`] keeps every received byte in the connection's own buffer, so
//! dropping its future (e.g. in a `tokio::select!`) loses nothing. [`connect`] is not cancel
//! safe: a dropped connect leaves nothing behind but must be retried from scratch.
//!
//! [`Pools::checkout`] is cancel safe: a dropped checkout future never leaks a slot. Waiting, it
//! leaves the queue; if a connection or a slot was handed to it in the meantime, the connection
//! goes to the next waiter (or back to idle) and the slot to the next waiter (or is freed);
//! connecting, the half-open connection is dropped and its slot freed. [`PooledConn::release`]
//! dropped halfway (e.g. during the reset query) closes the connection and frees its slot.
//! [`Pools::maintain`] dropped halfway aborts its connects and frees their slots.
//!
//! [`Prober::probe`] dropped halfway leaves the prober without a connection (never with one
//! that is out of step); the next probe reconnects.
#![warn(missing_docs)]

mod auth;
mod conn;
mod connect;
mod error;
mod health;
mod home;
mod pool;
mod query;
mod statements;
pub mod tls;

pub use auth::ScramKeyCache;
pub use conn::ServerConn;
pub use connect::{ConnectParams, cancel, connect};
pub use error::BackendError;
pub use health::{
    PROBE_APPLICATION_NAME, PROBE_SQL, ProbeError, ProbeSettings, Prober, ServerStatus, parse_lsn,
    parse_status,
};
pub use home::{home, set_home};
pub use pool::{PoolError, PoolKey, PoolSettings, PoolStats, PooledConn, Pools};
pub use query::TextRows;
pub use statements::{DEFAULT_STATEMENT_CAPACITY, StatementCache};
