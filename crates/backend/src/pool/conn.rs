//! [`PooledConn`]: a checked-out server connection that goes back to its pool only when clean.

use std::ops::{Deref, DerefMut};

use bytes::BytesMut;
use pgsplit_wire::backend::{ready_status, tags};
use tokio::time::{Duration, Instant, timeout};

use super::lease::Lease;
use super::{PoolKey, TcpConnector};
use crate::{BackendError, ServerConn};

/// A checked-out connection; dereferences to [`ServerConn`].
///
/// Give it back with [`PooledConn::release`]. Dropped without `release`, the connection is
/// closed and its slot freed (a waiter is woken): a connection in an unknown state is never
/// pooled.
#[derive(Debug)]
pub struct PooledConn {
    /// The connection and its slot.
    lease: Lease<TcpConnector>,
    /// Set by [`PooledConn::mark_broken`]; a broken connection is closed, never pooled.
    broken: bool,
    /// Limit for the reset query on release (the pool's `connect_timeout`).
    reset_timeout: Duration,
}

impl PooledConn {
    pub(crate) fn new(lease: Lease<TcpConnector>, reset_timeout: Duration) -> Self {
        PooledConn {
            lease,
            broken: false,
            reset_timeout,
        }
    }

    /// The pool this connection belongs to.
    pub fn key(&self) -> &PoolKey {
        self.lease.key()
    }

    /// Marks the connection unusable (IO error, protocol desync): dropping or releasing it then
    /// closes it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether [`PooledConn::mark_broken`] was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Returns the connection to its pool.
    ///
    /// If `reset_query` is given, it runs first as a simple Query, its output discarded; if it
    /// fails (an error, a transaction left open, IO, or longer than `connect_timeout`), the
    /// connection is closed. A connection that is broken, not idle (`txn_status != b'I'`),
    /// past `server_lifetime`, or over a limit lowered meanwhile is closed instead of pooled.
    ///
    /// Cancel safe: if this future is dropped, the connection is closed and its slot freed.
    pub async fn release(self, reset_query: Option<&str>) {
        self.release_at(reset_query, Instant::now()).await;
    }

    /// [`PooledConn::release`] with the time the connection became free, read by the caller
    /// (e.g. when the server's last answer arrived); the pool's idle timeout counts from it.
    pub async fn release_at(mut self, reset_query: Option<&str>, now: Instant) {
        if self.broken || self.txn_status() != b'I' {
            return;
        }
        if let Some(sql) = reset_query {
            let limit = self.reset_timeout;
            match timeout(limit, reset(&mut self, sql)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(pool = %self.key(), error = %e, "reset query failed; closing");
                    return;
                }
                Err(_) => {
                    tracing::debug!(pool = %self.key(), "reset query timed out; closing");
                    return;
                }
            }
        }
        self.lease.put_back(now);
    }
}

/// Runs `sql` and reads up to ReadyForQuery; Ok only if no error came back and the connection
/// ended idle.
async fn reset(conn: &mut ServerConn, sql: &str) -> Result<(), BackendError> {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    pgsplit_wire::encode::query(&mut buf, sql);
    conn.write_all(&buf).await?;
    let mut failed = None;
    loop {
        let frame = conn.read_frame().await?;
        match frame.tag() {
            tags::READY_FOR_QUERY => {
                let status = ready_status(&frame).unwrap_or(0);
                conn.note_ready(status);
                if let Some(tag) = failed {
                    return Err(unexpected(conn, tag));
                }
                if status != b'I' {
                    return Err(unexpected(conn, status));
                }
                return Ok(());
            }
            tags::ERROR => failed = Some(tags::ERROR),
            // A reset query must not start a COPY: the connection cannot be trusted after that.
            tags::COPY_IN | tags::COPY_BOTH => return Err(unexpected(conn, frame.tag())),
            _ => {}
        }
    }
}

fn unexpected(conn: &ServerConn, tag: u8) -> BackendError {
    BackendError::Unexpected {
        addr: conn.addr().to_owned(),
        tag: tag as char,
        phase: "reset query",
    }
}

impl Deref for PooledConn {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        self.lease.conn()
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.lease.conn_mut()
    }
}
