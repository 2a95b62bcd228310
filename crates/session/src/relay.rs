//! The relay loop: client messages go to the server, server messages to the client, both
//! directions at once, forwarding the original bytes and scanning only message headers.
//!
//! One task drives both directions with `select!` over four cancel-safe operations (read from
//! each side into its buffer, vectored write of each side's outbox). Reading stops on a side
//! whose peer has more than [`HIGH_WATER`] bytes queued, which gives back-pressure without the
//! deadlock a "write then read" loop has when both peers write at once (large pipelines, COPY).

use bytes::{Bytes, BytesMut};
use pgsplit_backend::ServerConn;
use pgsplit_wire::frame::HEADER_LEN;
use pgsplit_wire::{ErrorFields, WireError, backend::tags as be, frontend::tags as fe, sqlstate};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::SessionError;
use crate::client_io::ClientConn;
use crate::outbox::Outbox;

/// Stop reading from one side while the other side has this many bytes waiting.
const HIGH_WATER: usize = 1024 * 1024;

/// How a relay ended without error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// The client sent Terminate.
    Terminated,
    /// The proxy is draining and the client was idle; it was told so.
    Drained,
}

/// Where the conversation stands, from the headers seen so far.
#[derive(Debug)]
pub(crate) struct RelayState {
    /// Query / Sync / FunctionCall messages sent whose ReadyForQuery has not come back yet.
    pub(crate) pending: usize,
    /// Transaction status from the last ReadyForQuery.
    pub(crate) txn_status: u8,
    /// Whether the server sent a FATAL error (then its closing the socket is expected).
    pub(crate) server_fatal: bool,
}

impl RelayState {
    pub(crate) fn new(txn_status: u8) -> Self {
        RelayState {
            pending: 0,
            txn_status,
            server_fatal: false,
        }
    }

    /// Idle: nothing in flight and no transaction open.
    pub(crate) fn idle(&self) -> bool {
        self.pending == 0 && self.txn_status == b'I'
    }
}

/// Relays until the client terminates, the proxy drains an idle session, or a side fails.
pub(crate) async fn relay(
    client: &mut ClientConn,
    server: &mut ServerConn,
    state: &mut RelayState,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<RelayEnd, SessionError> {
    let max_server = server.max_message();
    let max_client = client.max_message;
    let addr = server.addr().to_owned();
    let (srd, sbuf, swr) = server.io();
    let mut to_server = Outbox::default();
    let mut draining = *shutdown.borrow();
    let mut terminated = false;
    loop {
        if terminated && to_server.is_empty() {
            client.flush().await?;
            return Ok(RelayEnd::Terminated);
        }
        if draining && state.idle() && to_server.is_empty() && client.rbuf.is_empty() {
            client.queue_error(&ErrorFields::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because pgsplit is shutting down",
            ));
            client.flush().await?;
            return Ok(RelayEnd::Drained);
        }
        tokio::select! {
            res = client.out.write_some(&mut client.wr), if !client.out.is_empty() => {
                res.map_err(SessionError::ClientIo)?;
            }
            res = to_server.write_some(swr), if !to_server.is_empty() => {
                res.map_err(|source| server_io(&addr, source))?;
            }
            res = srd.read_buf(sbuf), if client.out.len() < HIGH_WATER => {
                if res.map_err(|source| server_io(&addr, source))? == 0 {
                    return Err(server_closed(client, &addr, state).await);
                }
                if let Some(chunk) = scan_server(sbuf, max_server, state)
                    .map_err(|source| pgsplit_backend::BackendError::Protocol { addr: addr.clone(), source })?
                {
                    client.out.push(chunk);
                }
            }
            res = client.rd.read_buf(&mut client.rbuf),
                if !terminated && to_server.len() < HIGH_WATER =>
            {
                if res.map_err(SessionError::ClientIo)? == 0 {
                    return Err(SessionError::ClientGone);
                }
                let scan = scan_client(&mut client.rbuf, max_client, state)?;
                if let Some(chunk) = scan.chunk {
                    to_server.push(chunk);
                }
                terminated = scan.terminate;
            }
            res = shutdown.changed(), if !draining => {
                // A dropped sender also means "stop".
                draining = res.is_err() || *shutdown.borrow();
            }
        }
    }
}

fn server_io(addr: &str, source: std::io::Error) -> SessionError {
    SessionError::Server(pgsplit_backend::BackendError::Io {
        addr: addr.to_owned(),
        source,
    })
}

/// The server closed its socket: relay what it said, and explain if it said nothing.
async fn server_closed(client: &mut ClientConn, addr: &str, state: &RelayState) -> SessionError {
    if !state.server_fatal {
        client.queue_error(&ErrorFields::fatal(
            sqlstate::CONNECTION_FAILURE,
            "server closed the connection unexpectedly",
        ));
    }
    let _ = client.flush().await;
    SessionError::ServerGone(addr.to_owned())
}

/// Walks the complete messages at the front of `buf`, updating `state` from their headers,
/// and splits them off as one chunk to forward unchanged.
fn scan_server(
    buf: &mut BytesMut,
    max: usize,
    state: &mut RelayState,
) -> Result<Option<Bytes>, WireError> {
    let mut off = 0;
    while let Some(len) = whole_frame(&buf[off..], max)? {
        let tag = buf[off];
        match tag {
            be::READY_FOR_QUERY => {
                state.pending = state.pending.saturating_sub(1);
                state.txn_status = buf.get(off + HEADER_LEN).copied().unwrap_or(b'I');
            }
            be::ERROR if is_fatal(&buf[off + HEADER_LEN..off + len]) => state.server_fatal = true,
            _ => {}
        }
        off += len;
    }
    Ok((off > 0).then(|| buf.split_to(off).freeze()))
}

/// Result of scanning client input.
struct ClientScan {
    /// Messages to forward.
    chunk: Option<Bytes>,
    /// The client sent Terminate (not forwarded: pgsplit owns the server connection).
    terminate: bool,
}

fn scan_client(
    buf: &mut BytesMut,
    max: usize,
    state: &mut RelayState,
) -> Result<ClientScan, WireError> {
    let mut off = 0;
    let mut terminate = false;
    while let Some(len) = whole_frame(&buf[off..], max)? {
        match buf[off] {
            fe::QUERY | fe::SYNC | fe::FUNCTION_CALL => state.pending += 1,
            fe::TERMINATE => {
                terminate = true;
                break;
            }
            _ => {}
        }
        off += len;
    }
    let chunk = (off > 0).then(|| buf.split_to(off).freeze());
    if terminate {
        buf.clear();
    }
    Ok(ClientScan { chunk, terminate })
}

/// Length of the whole message at the front of `buf`, if it has fully arrived.
fn whole_frame(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(WireError::BadLength {
            tag: buf[0],
            len: declared,
        });
    }
    let len = declared as usize + 1;
    if len > max {
        return Err(WireError::MessageTooLarge {
            tag: buf[0],
            len,
            max,
        });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Whether an ErrorResponse body has severity FATAL or PANIC.
fn is_fatal(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = &tail[..end];
        if field == b'V' || field == b'S' {
            return value == b"FATAL" || value == b"PANIC";
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgsplit_wire::encode;

    #[test]
    fn server_scan_forwards_whole_messages_and_tracks_status() {
        let mut buf = BytesMut::new();
        encode::command_complete(&mut buf, "SELECT 1");
        encode::ready_for_query(&mut buf, b'T');
        let whole = buf.len();
        encode::command_complete(&mut buf, "SELECT 2");
        buf.truncate(buf.len() - 2); // the last message is incomplete
        let mut st = RelayState::new(b'I');
        st.pending = 1;
        let chunk = scan_server(&mut buf, 1 << 20, &mut st).unwrap().unwrap();
        assert_eq!(chunk.len(), whole);
        assert_eq!((st.pending, st.txn_status), (0, b'T'));
        assert!(scan_server(&mut buf, 1 << 20, &mut st).unwrap().is_none());
    }

    #[test]
    fn client_scan_counts_syncs_and_stops_at_terminate() {
        let mut buf = BytesMut::new();
        encode::parse(&mut buf, "", "select 1", &[]);
        encode::sync(&mut buf);
        encode::query(&mut buf, "select 2");
        let before_terminate = buf.len();
        encode::terminate(&mut buf);
        encode::query(&mut buf, "never sent");
        let mut st = RelayState::new(b'I');
        let scan = scan_client(&mut buf, 1 << 20, &mut st).unwrap();
        assert!(scan.terminate);
        assert_eq!(scan.chunk.unwrap().len(), before_terminate);
        assert_eq!(st.pending, 2);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_undersized_lengths_are_errors() {
        let mut st = RelayState::new(b'I');
        let mut huge = BytesMut::from(&[b'D', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            scan_server(&mut huge, 1 << 20, &mut st),
            Err(WireError::MessageTooLarge { .. })
        ));
        let mut tiny = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(
            scan_client(&mut tiny, 1 << 20, &mut st),
            Err(WireError::BadLength { .. })
        ));
    }

    #[test]
    fn fatal_detection() {
        let mut buf = BytesMut::new();
        encode::error_response(
            &mut buf,
            &ErrorFields::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection"),
        );
        assert!(is_fatal(&buf[HEADER_LEN..]));
        buf.clear();
        encode::error_response(
            &mut buf,
            &ErrorFields::error(sqlstate::SYNTAX_ERROR, "oops"),
        );
        assert!(!is_fatal(&buf[HEADER_LEN..]));
    }
}
