//! An authenticated server connection: its socket halves, read buffer and startup state.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgsplit_wire::{Frame, next_frame};
use tokio::io::AsyncRead as _;
use tokio::io::AsyncWrite as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::tls::{ServerRead, ServerTls, ServerWrite, Stream};
use crate::{BackendError, StatementCache};

/// Initial read buffer capacity; the buffer grows only as bytes arrive.
pub(crate) const READ_BUF: usize = 8 * 1024;

/// One authenticated connection to a PostgreSQL server, idle after startup.
#[derive(Debug)]
pub struct ServerConn {
    /// `host:port` of the server, for errors and logs.
    pub(crate) addr: String,
    /// Read half of the socket (plain or TLS).
    pub(crate) rd: ServerRead,
    /// Write half of the socket.
    pub(crate) wr: ServerWrite,
    /// Bytes read from the server and not yet consumed; reused for the connection's life.
    pub(crate) rbuf: BytesMut,
    /// Largest message accepted from the server.
    pub(crate) max_message: usize,
    /// ParameterStatus values the server reported at startup, in order.
    pub(crate) params: Arc<Vec<(String, String)>>,
    /// A hash of `params` (see [`ServerConn::params_hash`]), kept up to date with them.
    pub(crate) params_hash: u64,
    /// The server's cancel key (process id, secret).
    pub(crate) key: (u32, u32),
    /// Transaction status from the last ReadyForQuery (`I`, `T` or `E`).
    pub(crate) txn_status: u8,
    /// When the connection was opened (before the TCP connect), for `server_lifetime`.
    pub(crate) created_at: Instant,
    /// The event loop whose thread opened the socket (see [`crate::home`]); the pool prefers
    /// to hand the connection to sessions on that loop.
    pub(crate) home: usize,
    /// Opaque marker owned by sessions (which client state was last applied); 0 when new.
    pub(crate) state_tag: u64,
    /// Statements prepared on this connection under pgsplit's names; empty when new.
    pub(crate) statements: StatementCache,
    /// The TLS settings it was opened with (`sslmode` and the rest), so that a reload that
    /// tightens them retires it.
    pub(crate) tls_settings: Arc<ServerTls>,
    /// NotificationResponses that arrived while pgsplit ran its own query on this connection
    /// (a LISTENing client's session reading back settings, say): the client's, kept for it.
    pub(crate) notifications: Vec<Bytes>,
}

impl ServerConn {
    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The ParameterStatus values the server reported during startup, in order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// [`ServerConn::params`] as a shared list: a session that shows a client exactly these
    /// values keeps a reference instead of a copy (the connection copies its list on write).
    pub fn params_shared(&self) -> &Arc<Vec<(String, String)>> {
        &self.params
    }

    /// A hash of [`ServerConn::params`], names and values in order: two connections with the
    /// same hash report the same parameters, so a session that showed its client one of them
    /// need not compare the other's parameters one by one.
    pub fn params_hash(&self) -> u64 {
        self.params_hash
    }

    /// Recomputes [`ServerConn::params_hash`] after `params` changed.
    pub(crate) fn rehash_params(&mut self) {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.params.hash(&mut h);
        self.params_hash = h.finish();
    }

    /// The server's backend process id and cancel secret.
    pub fn cancel_key(&self) -> (u32, u32) {
        self.key
    }

    /// Transaction status from the last ReadyForQuery seen by [`ServerConn::note_ready`].
    pub fn txn_status(&self) -> u8 {
        self.txn_status
    }

    /// Records the status of a ReadyForQuery the relay saw.
    pub fn note_ready(&mut self, status: u8) {
        self.txn_status = status;
    }

    /// When the connection was opened; the pool closes it once `server_lifetime` has passed.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// The opaque session-state marker last set with [`ServerConn::set_state_tag`]; 0 on a new
    /// connection.
    ///
    /// The backend gives it no meaning: sessions use it to remember which client settings were
    /// last replayed on this connection, so they can skip replaying them again.
    pub fn state_tag(&self) -> u64 {
        self.state_tag
    }

    /// Sets the opaque session-state marker (see [`ServerConn::state_tag`]).
    pub fn set_state_tag(&mut self, tag: u64) {
        self.state_tag = tag;
    }

    /// The statements this connection holds under pgsplit's names (empty on a new connection).
    pub fn statements(&self) -> &StatementCache {
        &self.statements
    }

    /// The notifications kept while pgsplit ran its own queries (see
    /// [`ServerConn::simple_query`]), oldest first; the session passes them to its client.
    pub fn take_notifications(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.notifications)
    }

    /// The statement cache, for the session that prepares and closes statements on this
    /// connection. Whoever makes the server drop its statements (`DISCARD ALL`,
    /// `DEALLOCATE ALL`) must clear it.
    pub fn statements_mut(&mut self) -> &mut StatementCache {
        &mut self.statements
    }

    /// The connection, its socket now watched by the calling thread's event loop (see
    /// [`crate::home`]) when another loop watched it, so that its reads wake no other thread.
    /// Moving deregisters the socket from the old loop and registers it with this one (two
    /// `epoll_ctl` calls; a TLS connection's socket is duplicated, the copy registered here and
    /// the original closed, its TLS session kept); buffers, statements and state stay as they
    /// are. On failure the socket is closed and the error returned.
    pub(crate) fn adopt(self: Box<Self>) -> Result<Box<Self>, BackendError> {
        let here = crate::home::home();
        if self.home == here {
            return Ok(self);
        }
        // Only the socket changes: its halves move out, and the rest of the connection is
        // written back into the same box with the new halves.
        let mut conn = self;
        let old = *conn;
        let moved = match (old.rd, old.wr) {
            (Stream::Plain(rd), Stream::Plain(wr)) => rd
                .reunite(wr)
                .map_err(|_| std::io::Error::other("socket halves of two connections"))
                .and_then(tokio::net::TcpStream::into_std)
                .and_then(tokio::net::TcpStream::from_std)
                .map(|stream| {
                    let (rd, wr) = stream.into_split();
                    (Stream::Plain(rd), Stream::Plain(wr))
                }),
            (Stream::Tls(rd), Stream::Tls(wr)) => {
                crate::tls::rehome(rd, wr).map(|(rd, wr)| (Stream::Tls(rd), Stream::Tls(wr)))
            }
            _ => Err(std::io::Error::other("a socket taken apart")),
        };
        let (rd, wr) = match moved {
            Ok(halves) => halves,
            Err(source) => {
                return Err(BackendError::Io {
                    addr: old.addr,
                    source,
                });
            }
        };
        tracing::debug!(addr = %old.addr, from = old.home, to = here, tls = matches!(rd, Stream::Tls(_)),
            "moved a server connection to this event loop");
        *conn = ServerConn {
            rd,
            wr,
            home: here,
            ..old
        };
        Ok(conn)
    }

    /// Whether an idle connection still looks usable, without waiting.
    ///
    /// An idle server sends nothing, so a read attempt must find no data (`WouldBlock`).
    /// End of file, an error, or any byte at all (such as the FATAL `57P01` that
    /// `pg_terminate_backend` leaves behind, or leftovers in the read buffer) means the
    /// connection is out of step or gone, and it must be closed.
    /// The check relies on the runtime having seen the socket's readiness, so data that arrived
    /// microseconds ago may still be missed; the next read then fails as it would anyway.
    pub fn is_alive(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 64];
        match &mut self.rd {
            // No reactor involved: this also answers for a socket whose event loop has ended
            // (it is about to move to the caller's loop).
            Stream::Plain(rd) => match rd.try_read(&mut probe) {
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                Ok(_) => false,
            },
            // One read attempt that must not wait: pending (nothing to read) is the healthy
            // answer. (A TLS connection moving from an ended loop reads as dead and is
            // replaced; only shutdown and tests end loops.)
            Stream::Tls(rd) => {
                let mut buf = tokio::io::ReadBuf::new(&mut probe);
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                std::pin::Pin::new(rd)
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
            Stream::Detached => false,
        }
    }

    /// Records a ParameterStatus the server sent after startup, so [`ServerConn::params`] stays
    /// the connection's current reported values (what a client given this connection must see).
    pub fn note_param(&mut self, name: &str, value: &str) {
        // Copied only when a session shares the list and the value is new.
        match self.params.iter().position(|(n, _)| n == name) {
            Some(i) if self.params[i].1 == value => return,
            Some(i) => value.clone_into(&mut Arc::make_mut(&mut self.params)[i].1),
            None => Arc::make_mut(&mut self.params).push((name.to_owned(), value.to_owned())),
        }
        self.rehash_params();
    }

    /// Largest message accepted from this server.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The address, socket halves and read buffer, for a relay that drives both directions
    /// at once (the address is borrowed too, for its errors, so it need not be copied).
    pub fn io(&mut self) -> (&str, &mut ServerRead, &mut BytesMut, &mut ServerWrite) {
        (&self.addr, &mut self.rd, &mut self.rbuf, &mut self.wr)
    }

    /// The error for bytes from this server that are not valid protocol.
    pub fn protocol_error(&self, source: pgsplit_wire::WireError) -> BackendError {
        BackendError::Protocol {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Reads one whole message. Cancel safe: partial input stays in the buffer.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            match next_frame(&mut self.rbuf, self.max_message) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(source) => return Err(self.protocol_error(source)),
            }
            let n = self
                .rd
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| self.io_err(e))?;
            if n == 0 {
                return Err(BackendError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }

    /// Writes all of `bytes` to the server.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let res = self.wr.write_all(bytes).await;
        res.map_err(|e| self.io_err(e))
    }

    /// Sends Terminate and closes the socket, ignoring errors (the connection is being dropped).
    pub async fn close(mut self) {
        let mut buf = BytesMut::with_capacity(5);
        pgsplit_wire::encode::terminate(&mut buf);
        let _ = self.wr.write_all(&buf).await;
        let _ = self.wr.shutdown().await;
    }

    /// Closes without waiting: queues Terminate if the socket takes it at once, then drops the
    /// socket. Used where no `.await` is possible (drop paths, under the pool's bookkeeping).
    pub(crate) fn close_now(self) {
        let mut buf = BytesMut::with_capacity(5);
        pgsplit_wire::encode::terminate(&mut buf);
        // A 5-byte write to an idle socket is accepted whole or not at all in practice; either
        // way, dropping the halves closes the socket and the server ends the backend.
        match self.wr {
            Stream::Plain(wr) => {
                let _ = wr.try_write(&buf);
            }
            Stream::Tls(mut wr) => {
                // Encrypted into the TLS session and written if the socket takes it at once.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = std::pin::Pin::new(&mut wr).poll_write(&mut cx, &buf);
                let _ = std::pin::Pin::new(&mut wr).poll_flush(&mut cx);
            }
            Stream::Detached => {}
        }
    }

    pub(crate) fn io_err(&self, source: std::io::Error) -> BackendError {
        BackendError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}
