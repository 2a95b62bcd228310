//! The client socket (plain TCP, or TLS after an SSLRequest): one reused read buffer, an
//! outbox, and framed reads.

use std::net::SocketAddr;

use bytes::BytesMut;
use pgsplit_wire::{ErrorFields, Frame, StartupPacket, encode, next_frame, next_startup};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::SessionError;
use crate::outbox::Outbox;
use crate::tls::{ClientRead, ClientWrite, TlsServer};
use pgsplit_backend::tls::{Stream, TlsWrite};

/// Initial read buffer capacity; it grows only as bytes arrive.
const READ_BUF: usize = 8 * 1024;

/// A connected client.
#[derive(Debug)]
pub(crate) struct ClientConn {
    /// Read half of the socket.
    pub(crate) rd: ClientRead,
    /// Write half of the socket.
    pub(crate) wr: ClientWrite,
    /// The client's address, when the socket could tell.
    pub(crate) peer: Option<SocketAddr>,
    /// Whether the connection is encrypted (TLS was negotiated).
    pub(crate) tls: bool,
    /// Bytes received and not yet consumed.
    pub(crate) rbuf: BytesMut,
    /// Bytes waiting to be written to the client.
    pub(crate) out: Outbox,
    /// Scratch buffer for messages pgsplit composes itself.
    pub(crate) scratch: BytesMut,
    /// Largest message accepted from the client.
    pub(crate) max_message: usize,
    /// Bytes read from the client so far (`SHOW STATS` `total_received`).
    pub(crate) received: u64,
}

impl ClientConn {
    /// Closes a connection whose output was flushed with one `close`: tokio's drop of a
    /// plain socket's write half would first call `shutdown(SHUT_WR)`, a system call per client
    /// that the close (which sends the same FIN) makes redundant.
    pub(crate) fn close(self) {
        let ClientConn { rd, wr, .. } = self;
        if let Stream::Plain(wr) = wr {
            wr.forget();
        }
        drop(rd);
    }

    /// Wraps an accepted socket.
    pub(crate) fn new(stream: TcpStream, max_message: usize) -> Self {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let (rd, wr) = stream.into_split();
        ClientConn {
            rd: Stream::Plain(rd),
            wr: Stream::Plain(wr),
            peer,
            tls: false,
            rbuf: BytesMut::with_capacity(READ_BUF),
            out: Outbox::default(),
            scratch: BytesMut::with_capacity(256),
            max_message,
            received: 0,
        }
    }

    /// Answers an SSLRequest with `S` and runs the TLS handshake; the connection continues
    /// encrypted. Bytes the client sent after its SSLRequest, before the handshake, are a
    /// protocol violation (they could be injected by a machine in the middle, as
    /// CVE-2021-23214 showed for PostgreSQL) and end the connection.
    pub(crate) async fn start_tls(&mut self, tls: &TlsServer) -> Result<(), SessionError> {
        if !self.rbuf.is_empty() {
            return Err(SessionError::Refused(Box::new(ErrorFields::fatal(
                pgsplit_wire::sqlstate::PROTOCOL_VIOLATION,
                "received unencrypted data after SSL request",
            ))));
        }
        self.queue(|b| encode::ssl_response(b, true));
        self.flush().await?;
        // The halves are put back together for the handshake.
        let rd = std::mem::replace(&mut self.rd, Stream::Detached);
        let wr = std::mem::replace(&mut self.wr, Stream::Detached);
        let (Stream::Plain(rd), Stream::Plain(wr)) = (rd, wr) else {
            return Err(SessionError::Refused(Box::new(ErrorFields::fatal(
                pgsplit_wire::sqlstate::PROTOCOL_VIOLATION,
                "SSL request on a connection that is already encrypted",
            ))));
        };
        let stream = rd
            .reunite(wr)
            .map_err(|e| SessionError::ClientIo(std::io::Error::other(e.to_string())))?;
        let stream = tls.accept(stream).await.map_err(SessionError::ClientIo)?;
        let (rd, wr) = tokio::io::split(stream);
        self.rd = Stream::Tls(rd);
        self.wr = Stream::Tls(TlsWrite::new(wr));
        self.tls = true;
        Ok(())
    }

    /// Reads the untagged startup packet (or SSLRequest / GSSENCRequest / CancelRequest).
    pub(crate) async fn read_startup(&mut self) -> Result<StartupPacket, SessionError> {
        loop {
            if let Some(p) = next_startup(&mut self.rbuf, self.max_message)? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// Reads one whole tagged message. Cancel safe.
    pub(crate) async fn read_frame(&mut self) -> Result<Frame, SessionError> {
        loop {
            if let Some(f) = next_frame(&mut self.rbuf, self.max_message)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Takes a whole message that is known to be buffered already.
    pub(crate) fn read_buffered(&mut self) -> Result<Frame, SessionError> {
        next_frame(&mut self.rbuf, self.max_message)?.ok_or(SessionError::ClientProtocol(
            pgsplit_wire::WireError::Malformed {
                tag: 0,
                what: "a buffered message vanished",
            },
        ))
    }

    /// The tag of the whole message at the front of the buffer, if one has fully arrived.
    pub(crate) fn peek_frame(&self) -> Result<Option<u8>, SessionError> {
        match pgsplit_wire::frame::frame_len(&self.rbuf) {
            None if self.rbuf.len() >= pgsplit_wire::frame::HEADER_LEN => {
                // A length below 4: let the framer name the error.
                let mut copy = self.rbuf.clone();
                next_frame(&mut copy, self.max_message)?;
                Err(SessionError::ClientGone)
            }
            Some(len) if len > self.max_message => {
                let mut copy = self.rbuf.clone();
                next_frame(&mut copy, self.max_message)?;
                Err(SessionError::ClientGone)
            }
            Some(len) if self.rbuf.len() >= len => Ok(Some(self.rbuf[0])),
            _ => Ok(None),
        }
    }

    /// Reads more bytes from the client into the buffer. Cancel safe.
    pub(crate) async fn fill(&mut self) -> Result<(), SessionError> {
        let n = self
            .rd
            .read_buf(&mut self.rbuf)
            .await
            .map_err(SessionError::ClientIo)?;
        if n == 0 {
            return Err(SessionError::ClientGone);
        }
        self.received += n as u64;
        Ok(())
    }

    /// Queues a message composed with `encode` and returns nothing; call [`Self::flush`] at a
    /// protocol boundary.
    pub(crate) fn queue(&mut self, compose: impl FnOnce(&mut BytesMut)) {
        compose(&mut self.scratch);
        let chunk = self.scratch.split().freeze();
        self.out.push(chunk);
    }

    /// Queues an ErrorResponse.
    pub(crate) fn queue_error(&mut self, fields: &ErrorFields) {
        self.queue(|b| encode::error_response(b, fields));
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), SessionError> {
        self.out
            .flush(&mut self.wr)
            .await
            .map_err(SessionError::ClientIo)
    }

    /// Sends an error and closes the connection (used for FATAL errors).
    pub(crate) async fn fail(mut self, fields: &ErrorFields) {
        self.queue_error(fields);
        let _ = self.flush().await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.wr).await;
    }
}
