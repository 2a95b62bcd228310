//! Everything pgsplit does towards PostgreSQL servers: connect, authenticate as a client,
//! read the server's startup state, and send cancel requests.
//!
//! What it does not do: it knows no SQL semantics (no classification, no routing) and does not
//! talk to clients. Sessions receive a [`ServerConn`] and relay bytes through it; pools, health
//! checks and lag probes arrive with their issues and live here too.
//!
//! # Cancel safety
//! [`ServerConn::read_frame`] keeps every received byte in the connection's own buffer, so
//! dropping its future (e.g. in a `tokio::select!`) loses nothing. [`connect`] is not cancel
//! safe: a dropped connect leaves nothing behind but must be retried from scratch.
#![warn(missing_docs)]

mod auth;
mod conn;
mod connect;
mod error;

pub use conn::ServerConn;
pub use connect::{ConnectParams, cancel, connect};
pub use error::BackendError;
