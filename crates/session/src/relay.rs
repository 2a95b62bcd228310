//! The relay loop: client messages go to the server, server messages to the client, both
//! directions at once, forwarding the original bytes unless statement names must be mapped.
//!
//! One task drives both directions with `select!` over four cancel-safe operations (read from
//! each side into its buffer, vectored write of each side's outbox). Reading stops on a side
//! whose peer has more than [`HIGH_WATER`] bytes queued, which gives back-pressure without the
//! deadlock a "write then read" loop has when both peers write at once (large pipelines, COPY).
//!
//! Every client message passes through [`rewrite_client`] and every server message through
//! [`filter_server`] (see `extended.rs`), which map protocol-level statement names so that a
//! client's prepared statements work on whichever pooled connection it is given. The response
//! plan they keep also tells when the connection is free: no response due, no batch open.

use crate::cstr::{cbytes, cstr};
use bytes::{Bytes, BytesMut};
use pgsplit_backend::{BackendError, ServerConn, StatementCache};
use pgsplit_classify::{Effects, session_effects};

use pgsplit_router::Lsn;
use pgsplit_telemetry::Histogram;
use pgsplit_wire::{
    ErrorFields, Frame, backend::tags as be, frontend::tags as fe, next_frame, sqlstate,
};
use tokio::io::AsyncReadExt;
use tokio::time::{Duration, Instant};
use tracing::warn;

use crate::SessionError;
use crate::client_io::ClientConn;
use crate::clients::{Work, WorkSink, micros};
use crate::drain::DrainWatch;
use crate::extended::{ClientStatements, ResponsePlan, filter_server, rewrite_client};
use crate::outbox::Outbox;

/// Stop reading from one side while the other side has this many bytes waiting.
const HIGH_WATER: usize = 1024 * 1024;

/// Client output below this size, queued before a unit, waits to go out with its answer.
const HOLD: usize = 4096;

/// How a relay ended without error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// A unit of work finished (nothing in flight, no transaction open) and the session asked
    /// to stop there, to release the connection or check session state.
    Boundary,
    /// The client sent Terminate.
    Terminated,
    /// The proxy is draining and the client was idle; it was told so.
    Drained,
    /// The client stayed idle longer than `pool.client_idle_timeout`; it was told so.
    IdleTimeout,
}

/// Where the conversation stands; lives as long as the client's session.
#[derive(Debug)]
pub(crate) struct RelayState {
    /// Transaction status from the last ReadyForQuery.
    pub(crate) txn_status: u8,
    /// Whether the server sent a FATAL error (then its closing the socket is expected).
    pub(crate) server_fatal: bool,
    /// What the SQL sent since the last check may have done to session state.
    pub(crate) effects: Effects,
    /// Bytes at the front of the client's input whose effects are already in `effects`
    /// (see [`RelayState::prescan`]).
    prescanned: usize,
    /// Stop at every unit boundary (transaction pooling), not only when `effects` says so.
    pub(crate) stop_at_boundary: bool,
    /// ParameterStatus values the server reported (and the client was shown) during the relay.
    pub(crate) param_updates: Vec<(String, String)>,
    /// A server message did not fit the response plan: the connection must not be reused.
    pub(crate) out_of_step: bool,
    /// The client's protocol-level prepared statements.
    pub(crate) statements: ClientStatements,
    /// Responses due from the server, in request order.
    pub(crate) plan: ResponsePlan,
    /// Reused buffer for the messages one read produces, so relaying allocates no vector.
    parts: Vec<Bytes>,
    /// Where a batch of small parts is copied into one chunk (see [`flush_parts`]); its
    /// allocation is reused from batch to batch once the chunk before has been written.
    joined: BytesMut,
    /// Disconnect a client idle (outside a transaction) this long; `None` = never.
    pub(crate) idle_timeout: Option<Duration>,
    /// Forward one unit at a time: the connection was routed for the unit at the front of
    /// the client's input only (a replica), so what follows must wait for its answer and,
    /// outside a transaction, be routed on its own.
    pub(crate) one_unit: bool,
    /// With `one_unit`: a whole unit was forwarded and its answer is not complete yet.
    held: bool,
    /// The server answered SQLSTATE 25006 (read-only transaction) during this relay.
    pub(crate) read_only_error: bool,
    /// The unit in flight may be retried elsewhere if the server fails before answering.
    pub(crate) retry_armed: bool,
    /// With `retry_armed`: the client's original messages forwarded so far (zero-copy
    /// references), to put back in front of its input for a retry.
    pub(crate) retry_frames: Vec<Bytes>,
    /// Something reached the client's outbox during this relay: a retry is no longer possible.
    forwarded: bool,
    /// The server failed before any of the answer was forwarded, with a retry armed: the
    /// relay ended with an error and the client was told nothing.
    pub(crate) retry_failed: bool,
    /// `pgsplit_query_duration_seconds` of the held connection's server role (set at each
    /// checkout).
    pub(crate) query_duration: Option<Histogram>,
    /// Units sent (their Query, Sync or FunctionCall forwarded) and not answered yet.
    units_in_flight: u32,
    /// When the oldest of them was sent, or the one before it answered if later.
    unit_started: Option<Instant>,
    /// A clock reading the session took just before this unit (when it routed it, with no
    /// wait since): the unit's send time, so the relay need not read the clock again.
    pub(crate) sent_at: Option<Instant>,
    /// When the server last answered a unit: the time the connection went back to the pool.
    pub(crate) answered_at: Option<Instant>,
    /// The queue of bytes towards the server, empty between relays (kept for its memory).
    to_server: Outbox,
    /// What the session did since it last reported to its database's counters.
    pub(crate) work: Work,
    /// Where the session reports it (`None` until the session registered).
    pub(crate) work_sink: Option<WorkSink>,
    /// When the first unit of the transaction in progress was sent.
    txn_began: Option<Instant>,
    /// The client's byte counts already in `work` or reported: received, sent.
    bytes_seen: (u64, u64),
    /// The routed unit may write (`consistency: session`): send pgsplit's write-position query
    /// behind the client's message that ends its transaction, so that the position costs no
    /// round trip of its own (see [`RelayState::take_capture`]).
    pub(crate) capture_armed: bool,
    /// Units sent over the session's life (wrapping).
    units_sent: u32,
    /// `units_sent` when the write-position query was sent behind the last of them; `None`
    /// when it was not.
    capture_after: Option<u32>,
}

impl RelayState {
    pub(crate) fn new(statements: ClientStatements) -> Self {
        RelayState {
            prescanned: 0,
            txn_status: b'I',
            server_fatal: false,
            effects: Effects::default(),
            stop_at_boundary: false,
            param_updates: Vec::new(),
            out_of_step: false,
            statements,
            plan: ResponsePlan::default(),
            parts: Vec::new(),
            joined: BytesMut::new(),
            idle_timeout: None,
            one_unit: false,
            held: false,
            read_only_error: false,
            retry_armed: false,
            retry_frames: Vec::new(),
            forwarded: false,
            retry_failed: false,
            query_duration: None,
            units_in_flight: 0,
            unit_started: None,
            sent_at: None,
            to_server: Outbox::default(),
            answered_at: None,
            work: Work::default(),
            work_sink: None,
            txn_began: None,
            bytes_seen: (0, 0),
            capture_armed: false,
            units_sent: 0,
            capture_after: None,
        }
    }

    /// Queues pgsplit's write-position query behind the unit just sent, in the same write: its
    /// answer follows the client's and is kept from it (see [`RelayState::take_capture`]).
    fn send_capture(&mut self, to_server: &mut Vec<Bytes>) {
        self.capture_armed = false;
        self.capture_after = Some(self.units_sent);
        to_server.push(Bytes::from_static(CAPTURE_QUERY));
        self.plan.push_capture();
    }

    /// The write position read by the query sent behind the client's last unit, when it tells
    /// the position after that unit: the query ran outside a transaction (so after the commit)
    /// and no client unit was sent after it. `Some(None)`: it ran but failed.
    pub(crate) fn take_capture(&mut self) -> Option<Option<Lsn>> {
        let after = self.capture_after.take();
        let (lsn, status) = self.plan.take_captured()?;
        (after == Some(self.units_sent) && status == b'I').then_some(lsn)
    }

    /// Adds what the session did since its last report (units, transactions, the client's
    /// bytes) to its database's counters.
    pub(crate) fn report_work(&mut self, client: &ClientConn) {
        let (received, sent) = (client.received, client.out.written());
        self.work.received += received.saturating_sub(self.bytes_seen.0);
        self.work.sent += sent.saturating_sub(self.bytes_seen.1);
        self.bytes_seen = (received, sent);
        if let Some(sink) = &self.work_sink
            && !self.work.is_empty()
        {
            sink.add(&mut self.work);
        }
    }

    /// A unit's last message (Query, Sync, FunctionCall) was queued for the server.
    fn unit_sent(&mut self) {
        self.units_sent = self.units_sent.wrapping_add(1);
        self.units_in_flight = self.units_in_flight.saturating_add(1);
        let fresh = self.sent_at.take();
        let started = *self
            .unit_started
            .get_or_insert_with(|| fresh.unwrap_or_else(Instant::now));
        self.txn_began.get_or_insert(started);
    }

    /// The server sent ReadyForQuery (already passed to the plan): the oldest unit in flight
    /// is answered. Its time counts from when it was sent, or from the previous answer when
    /// units were pipelined (the server runs them one after the other).
    fn unit_answered(&mut self) {
        let now = Instant::now();
        let mut took = None;
        if let Some(started) = self.unit_started {
            let t = now.saturating_duration_since(started);
            if let Some(h) = &self.query_duration {
                h.observe(t.as_secs_f64());
            }
            self.work.query_us += micros(t);
            took = Some((started, t));
        }
        // A stray ReadyForQuery (nothing in flight) answers no unit.
        self.work.queries += u64::from(took.is_some());
        let ended = took.is_some() && self.txn_status == b'I';
        if ended {
            // The transaction (or the statement outside one) ended with this answer; a lone
            // statement's transaction is the unit itself.
            let t = match (self.txn_began.take(), took) {
                (Some(began), Some((started, t))) if started == began => t,
                (Some(began), _) => now.saturating_duration_since(began),
                (None, _) => Duration::ZERO,
            };
            self.work.xacts += 1;
            self.work.xact_us += micros(t);
        }
        self.units_in_flight = self.units_in_flight.saturating_sub(1);
        if self.plan.is_empty() {
            // Nothing is due any more (a Query the server skipped after an error is never
            // answered): the count starts over.
            self.units_in_flight = 0;
        }
        self.unit_started = (self.units_in_flight > 0).then_some(now);
        if ended && self.units_in_flight > 0 {
            // A pipelined unit is next: its transaction starts when the server turns to it.
            self.txn_began = Some(now);
        }
        self.answered_at = Some(now);
    }

    /// Idle: no response due, no extended-protocol batch open, no transaction open.
    pub(crate) fn idle(&self) -> bool {
        self.plan.is_empty() && !self.plan.awaiting_sync() && self.txn_status == b'I'
    }

    /// Whether a server failure now can still be retried elsewhere unseen by the client.
    fn retryable(&self) -> bool {
        self.retry_armed && !self.forwarded
    }

    /// Whether the relay should hand the connection back to the session now.
    fn at_boundary(&self) -> bool {
        self.idle() && (self.stop_at_boundary || self.effects.any())
    }

    /// The unit at the front of the client's input, `len` bytes, was just classified and
    /// its SQL may do `effects`: the relay counts them now and does not lex those bytes again.
    pub(crate) fn prescan(&mut self, len: usize, effects: Effects) {
        if len > 0 {
            self.effects = self.effects.union(effects);
        }
        self.prescanned = len;
    }
}

/// Relays until a unit boundary the session asked for, the client terminates, the proxy
/// drains an idle session, or a side fails.
pub(crate) async fn relay(
    client: &mut ClientConn,
    server: &mut ServerConn,
    state: &mut RelayState,
    drain: &DrainWatch,
) -> Result<RelayEnd, SessionError> {
    state.txn_status = server.txn_status();
    state.server_fatal = false;
    state.held = false;
    state.forwarded = false;
    state.retry_failed = false;
    state.units_in_flight = 0;
    state.unit_started = None;
    state.answered_at = None;
    if state.txn_status == b'I' {
        // Whatever a failed relay left open was not a transaction on this connection.
        state.txn_began = None;
    }
    // Notifications that came while pgsplit ran its own queries on the connection go first.
    for notification in server.take_notifications() {
        client.out.push(notification);
    }
    // The statement cache travels with the connection; it is taken out for the relay because
    // the socket halves stay borrowed for the whole loop.
    let mut cache = std::mem::take(server.statements_mut());
    // The queue towards the server is the state's, reused from unit to unit; whatever a
    // failed relay left in it is dropped with the connection's unit.
    let mut to_server = std::mem::take(&mut state.to_server);
    let res = relay_inner(client, server, state, &mut cache, &mut to_server, drain).await;
    to_server.clear();
    state.to_server = to_server;
    // A prescan, and the session's clock reading, describe only the unit at the front when
    // the relay starts.
    state.prescanned = 0;
    state.sent_at = None;
    *server.statements_mut() = cache;
    server.note_ready(state.txn_status);
    res
}

async fn relay_inner(
    client: &mut ClientConn,
    server: &mut ServerConn,
    state: &mut RelayState,
    cache: &mut StatementCache,
    to_server: &mut Outbox,
    drain: &DrainWatch,
) -> Result<RelayEnd, SessionError> {
    let max_server = server.max_message();
    let (addr, srd, sbuf, swr) = server.io();
    let mut draining = drain.draining();
    // Messages may already be buffered (read while no server was attached, or pipelined
    // behind the startup packet): forward them before waiting for more.
    let mut terminated = from_client(client, state, cache, to_server)?;
    // A little output queued before the unit (ParameterStatus for this server's values, say,
    // when a read moved to a replica) waits for the start of the unit's answer: one write to
    // the client instead of two. Only while a unit is sent, which the server always answers.
    let mut hold = state.units_in_flight > 0 && !client.out.is_empty() && client.out.len() < HOLD;
    // The unit goes out at once, without a round of the loop below (which builds and polls
    // every branch); whatever the socket does not take now is written there.
    if !to_server.is_empty()
        && let Some(Err(source)) = poll_once(to_server.write_some(swr)).await
    {
        state.retry_failed = state.retryable();
        return Err(server_io(addr, source));
    }
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
        // `biased`: branches are polled in this order, without drawing a random start on
        // every wake-up. Nothing starves: a side stops being read while the other side has
        // HIGH_WATER bytes queued, so the branches below get their turn.
        tokio::select! {
            biased;
            res = client.out.write_some(&mut client.wr), if !client.out.is_empty() && !hold => {
                res.map_err(SessionError::ClientIo)?;
            }
            res = to_server.write_some(swr), if !to_server.is_empty() => {
                if let Err(source) = res {
                    state.retry_failed = state.retryable();
                    return Err(server_io(addr, source));
                }
            }
            res = srd.read_buf(sbuf), if client.out.len() < HIGH_WATER => {
                match res {
                    Ok(0) if state.retryable() => {
                        state.retry_failed = true;
                        return Err(SessionError::ServerGone(addr.to_owned()));
                    }
                    Ok(0) => return Err(server_closed(client, addr, state).await),
                    Ok(_) => hold = false,
                    Err(source) => {
                        state.retry_failed = state.retryable();
                        return Err(server_io(addr, source));
                    }
                }
                from_server(sbuf, max_server, state, cache, &mut client.out)
                    .map_err(|source| BackendError::Protocol { addr: addr.to_owned(), source })?;
                if state.retry_failed {
                    return Err(SessionError::ServerGone(addr.to_owned()));
                }
                if state.work.xacts > 0 {
                    // Once per transaction: the database's counters for SHOW STATS.
                    state.report_work(client);
                }
                if state.at_boundary() && to_server.is_empty() {
                    client.flush().await?;
                    return Ok(RelayEnd::Boundary);
                }
                if state.held && state.plan.is_empty() && !state.plan.awaiting_sync() {
                    // The unit is answered and a transaction is open on this server: its next
                    // unit belongs here too.
                    state.held = false;
                    terminated = from_client(client, state, cache, to_server)?;
                }
                tracing::trace!(
                    txn = %(state.txn_status as char),
                    plan_empty = state.plan.is_empty(),
                    awaiting_sync = state.plan.awaiting_sync(),
                    queued = to_server.len(),
                    "not at a boundary"
                );
            }
            res = client.rd.read_buf(&mut client.rbuf),
                if !terminated
                    && to_server.len() < HIGH_WATER
                    && !(state.held && client.rbuf.len() >= HIGH_WATER) =>
            {
                let n = res.map_err(SessionError::ClientIo)?;
                if n == 0 {
                    return Err(SessionError::ClientGone);
                }
                client.received += n as u64;
                terminated = from_client(client, state, cache, to_server)?;
            }
            () = drain.wait(), if !draining => {
                draining = true;
            }
            _ = idle_sleep(state.idle_timeout),
                if state.idle() && to_server.is_empty() && client.out.is_empty() =>
            {
                tell_idle_timeout(client).await?;
                return Ok(RelayEnd::IdleTimeout);
            }
        }
    }
}

/// Polls `fut` once: its output if it is ready, `None` if not (then it is dropped, so it must
/// be cancel safe).
async fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Sleeps for the idle timeout, or forever when there is none.
pub(crate) async fn idle_sleep(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Tells an idle client it is being disconnected, as PostgreSQL's idle_session_timeout does.
pub(crate) async fn tell_idle_timeout(client: &mut ClientConn) -> Result<(), SessionError> {
    client.queue_error(&ErrorFields::fatal(
        sqlstate::IDLE_SESSION_TIMEOUT,
        "terminating connection due to idle-session timeout (pool.client_idle_timeout)",
    ));
    client.flush().await
}

/// Takes every complete client message from the buffer, notes what its SQL may do to the
/// session, maps statement names, and queues the result for the server. Returns whether the
/// client sent Terminate (which is not forwarded: pgsplit owns the server connection).
fn from_client(
    client: &mut ClientConn,
    state: &mut RelayState,
    cache: &mut StatementCache,
    to_server: &mut Outbox,
) -> Result<bool, SessionError> {
    if state.held {
        return Ok(false);
    }
    let mut out = std::mem::take(&mut state.parts);
    let mut synthetic = Vec::new();
    while let Some(frame) = next_frame(&mut client.rbuf, client.max_message)? {
        let tag = frame.tag();
        // Inside the unit the session classified just before this relay, the effects of the
        // SQL are known already (see `RelayState::prescan`).
        let known = state.prescanned >= frame.as_bytes().len();
        state.prescanned = if known {
            state.prescanned - frame.as_bytes().len()
        } else {
            0
        };
        if state.retryable() {
            state.retry_frames.push(frame.as_bytes().clone());
        }
        match tag {
            fe::TERMINATE => {
                client.rbuf.clear();
                flush_parts(&mut out, &mut state.joined, to_server);
                state.parts = out;
                return Ok(true);
            }
            fe::QUERY | fe::PARSE if known => {}
            fe::QUERY => note_sql(state, cstr(frame.body()).map(|(sql, _)| sql)),
            fe::PARSE => {
                let sql = cstr(frame.body())
                    .and_then(|(_, rest)| cstr(rest))
                    .map(|(s, _)| s);
                note_sql(state, sql);
            }
            fe::BIND => {
                // A named statement may have been prepared in an earlier unit.
                let name = cbytes(frame.body())
                    .and_then(|(_portal, rest)| cbytes(rest))
                    .map(|(name, _)| name);
                if let Some(name) = name.filter(|n| !n.is_empty())
                    && let Some(statement) = state.statements.get(name)
                {
                    state.effects = state.effects.union(statement.effects);
                }
            }
            _ => {}
        }
        // Only behind a simple Query: after an extended-protocol unit's Sync the server may
        // be in COPY FROM STDIN (it ignores that Sync), where a Query would break the copy.
        // Not while an extended-protocol batch is open: a server skipping to the next Sync
        // would skip this query too.
        let capture_here = state.capture_armed
            && state.stop_at_boundary
            && tag == fe::QUERY
            && !state.plan.awaiting_sync()
            && ends_transaction(cstr(frame.body()).map(|(sql, _)| sql), state.txn_status);
        rewrite_client(
            frame,
            &mut state.statements,
            cache,
            &mut state.plan,
            &mut out,
        )?;
        state
            .plan
            .emit_synthetic(&mut state.statements, &mut synthetic);
        let ends_unit = matches!(tag, fe::QUERY | fe::SYNC | fe::FUNCTION_CALL);
        if ends_unit {
            state.unit_sent();
            if capture_here {
                state.send_capture(&mut out);
                // What the client sent next waits in its input: the session routes it after
                // the boundary this answer brings (the relay stops there, `stop_at_boundary`).
                state.held = true;
                break;
            }
        }
        if state.one_unit && ends_unit {
            // The rest waits for this unit's answer (see `one_unit`).
            state.held = true;
            break;
        }
    }
    flush_parts(&mut out, &mut state.joined, to_server);
    state.parts = out;
    if !synthetic.is_empty() {
        state.forwarded = true;
    }
    flush_parts(&mut synthetic, &mut state.joined, &mut client.out);
    Ok(false)
}

/// pgsplit's write-position query (see `Session::capture_write_position`).
pub(crate) const CAPTURE_SQL: &str = "SELECT pg_catalog.pg_current_wal_insert_lsn()";

/// [`CAPTURE_SQL`] as a simple Query message.
const CAPTURE_QUERY: &[u8] = b"Q\0\0\0\x32SELECT pg_catalog.pg_current_wal_insert_lsn()\0";

/// Whether a simple Query of `sql`, sent while the server's transaction status is `status`,
/// leaves no transaction open when it succeeds, so that pgsplit's write-position query may
/// follow it: a statement outside a transaction that does not start one, or the COMMIT (END) of
/// one. A guess from the first word: the status the write-position query reports after it is
/// what decides whether its answer is used. Never where the text mentions COPY: during COPY FROM
/// STDIN the server takes only copy messages from the client.
fn ends_transaction(sql: Option<&str>, status: u8) -> bool {
    let Some(sql) = sql else {
        return false;
    };
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    let ends = if status == b'I' {
        !(is("begin") || is("start"))
    } else {
        is("commit") || is("end")
    };
    ends && !sql
        .as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"copy"))
}

fn note_sql(state: &mut RelayState, sql: Option<&str>) {
    if let Some(sql) = sql {
        state.effects = state.effects.union(session_effects(sql));
    }
}

/// Parts of at most this many bytes in all, and at least [`JOIN_MIN_PARTS`] of them, are
/// copied into one chunk: an extended-protocol batch (Parse, Bind, Describe, Execute, Sync and
/// their answers) is a handful of tiny messages, and each chunk costs more to queue and write
/// (one slice of a vectored write) than copying its few bytes.
const JOIN_MAX_BYTES: usize = 1024;

/// See [`JOIN_MAX_BYTES`].
const JOIN_MIN_PARTS: usize = 3;

/// Queues `parts` (emptied) on `to`: as they are, or, when they are several and small, copied
/// into one chunk through `joined`.
fn flush_parts(parts: &mut Vec<Bytes>, joined: &mut BytesMut, to: &mut Outbox) {
    if parts.len() >= JOIN_MIN_PARTS {
        let total: usize = parts.iter().map(Bytes::len).sum();
        if total <= JOIN_MAX_BYTES {
            joined.reserve(total);
            for part in parts.drain(..) {
                joined.extend_from_slice(&part);
            }
            to.push(joined.split().freeze());
            return;
        }
    }
    for part in parts.drain(..) {
        to.push(part);
    }
}

/// Takes every complete server message from the buffer, notes ReadyForQuery, FATAL errors and
/// ParameterStatus, and queues what the client must see.
pub(crate) fn from_server(
    buf: &mut BytesMut,
    max: usize,
    state: &mut RelayState,
    cache: &mut StatementCache,
    to_client: &mut Outbox,
) -> Result<(), pgsplit_wire::WireError> {
    let mut out = std::mem::take(&mut state.parts);
    loop {
        // Most of what servers send is only forwarded (rows, row descriptions, command tags,
        // ParseComplete and BindComplete of the client's own requests): a run of such whole
        // messages goes out as one zero-copy chunk, the plan advanced past it.
        let run = state
            .plan
            .forward_run(buf, max, &mut state.statements, cache)?;
        if run.len > 0 {
            out.push(buf.split_to(run.len).freeze());
        }
        if let Some(status) = run.ready {
            // The run ended with the answer to a unit (what `note_server` and `filter_server`
            // do for a ReadyForQuery, the plan already settled).
            state.txn_status = status;
            state.plan.emit_synthetic(&mut state.statements, &mut out);
            state.unit_answered();
            if buf.is_empty() {
                break;
            }
            continue;
        }
        let Some(frame) = next_frame(buf, max)? else {
            break;
        };
        if frame.tag() == be::ERROR && state.retryable() && is_fatal(frame.body()) {
            // The server is going away before the client saw any of the answer (a fast
            // shutdown ends a query that already queued its RowDescription, which then comes
            // in the same read as the FATAL): nothing of this answer is sent, and the unit is
            // retried elsewhere.
            out.clear();
            state.param_updates.clear();
            state.server_fatal = true;
            state.retry_failed = true;
            state.parts = out;
            return Ok(());
        }
        note_server(&frame, state);
        let ready = frame.tag() == be::READY_FOR_QUERY;
        if let Err(e) = filter_server(
            frame,
            &mut state.statements,
            cache,
            &mut state.plan,
            &mut out,
        ) {
            if !state.out_of_step {
                warn!(error = %e, "server response out of step with the request plan");
            }
            state.out_of_step = true;
        }
        if ready && !state.plan.take_internal_ready() {
            state.unit_answered();
        }
    }
    if !out.is_empty() {
        state.forwarded = true;
    }
    flush_parts(&mut out, &mut state.joined, to_client);
    state.parts = out;
    Ok(())
}

fn note_server(frame: &Frame, state: &mut RelayState) {
    let body = frame.body();
    match frame.tag() {
        be::READY_FOR_QUERY => state.txn_status = body.first().copied().unwrap_or(b'I'),
        be::ERROR => {
            if is_fatal(body) {
                state.server_fatal = true;
            }
            if pgsplit_wire::backend::error_code(frame) == Some(sqlstate::READ_ONLY_SQL_TRANSACTION)
            {
                state.read_only_error = true;
            }
        }
        be::PARAMETER_STATUS => {
            if let Some((name, rest)) = cstr(body)
                && let Some((value, _)) = cstr(rest)
            {
                state
                    .param_updates
                    .push((name.to_owned(), value.to_owned()));
            }
        }
        _ => {}
    }
}

fn server_io(addr: &str, source: std::io::Error) -> SessionError {
    SessionError::Server(BackendError::Io {
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
mod tests;
