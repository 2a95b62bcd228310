//! The life of one client connection, read top to bottom: startup, authenticate, attach a
//! server connection, greet, relay, clean up.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgsplit_backend::{PoolError, PooledConn};
use pgsplit_config::PoolMode;
use pgsplit_router::{NodeRole, Snapshot};
use pgsplit_wire::{ErrorFields, encode, frontend, sqlstate};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout, timeout_at};
use tracing::{Instrument, debug, info_span, warn};

use crate::client_io::ClientConn;
use crate::clients::{Activity, ClientGuard};
use crate::ctx::WeakParams;
use crate::drain::DrainWatch;
use crate::extended::{self, ClientStatements};
use crate::relay::{RelayEnd, RelayState, idle_sleep, relay, tell_idle_timeout};
use crate::routing::{ServerTarget, SessionRouter};
use crate::startup::{Hello, authenticate, read_hello};
use crate::state::ClientState;
use crate::{CancelSlot, Ctx, ServerEvent, SessionError, replay};

mod greeting;
mod home;
mod unit;

use greeting::{greet, set_view, show_changed_params};
use unit::{note_read_only, server_unavailable};

/// Databases that name the admin console rather than a server database.
const ADMIN_DATABASES: [&str; 2] = ["pgsplit", "pgbouncer"];

/// How long forwarding a cancel request may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one client connection until it ends. Never panics on client or server input; every
/// failure the client can still hear about is sent to it as an ErrorResponse.
pub async fn run(stream: TcpStream, peer: SocketAddr, ctx: Ctx) {
    let id = ctx.new_conn_id();
    let span = info_span!(
        "client",
        conn_id = id,
        peer = %peer,
        user = tracing::field::Empty,
        database = tracing::field::Empty
    );
    serve(stream, id, ctx).instrument(span).await;
}

async fn serve(stream: TcpStream, id: u32, ctx: Ctx) {
    ctx.metrics.client_connections_total.inc();
    ctx.metrics.client_connections.inc();
    let _open = GaugeGuard(ctx.metrics.client_connections.clone());
    let snapshot = ctx.snapshot.load_full();
    let config = &snapshot.config;
    let mut client = ClientConn::new(stream, config.limits.max_message_size);
    let tls = ctx.tls.load_full();
    // One deadline for the startup packet and the authentication together, as documented.
    let limit = config.limits.startup_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    // A client that has not even said hello does not hold up a drain.
    let drain = ctx.drain.watch();
    let hello = tokio::select! {
        res = timeout_at(deadline, read_hello(&mut client, tls.as_deref())) => res,
        () = drain.wait() => {
            let fields = ErrorFields::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                "pgsplit is shutting down",
            );
            return client.fail(&fields).await;
        }
    };
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => return end(client, e).await,
        Err(_) => return end(client, SessionError::StartupTimeout).await,
    };
    let startup = match hello {
        Hello::Cancel { pid, secret } => return forward_cancel(&ctx, pid, secret).await,
        Hello::Session(s) => s,
    };
    let span = tracing::Span::current();
    span.record("user", startup.user.as_str());
    span.record("database", startup.database.as_str());
    let user = config.user(&startup.user);
    let auth = authenticate(&mut client, &startup.user, user, &ctx.secrets);
    match timeout_at(deadline, auth).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return end(client, e).await,
        Err(_) => return end(client, SessionError::StartupTimeout).await,
    }
    let registered = crate::clients::register(&ctx, id, &startup, &client);
    if ADMIN_DATABASES.contains(&startup.database.as_str()) {
        let admin = user.is_some_and(|u| u.admin);
        return crate::console::serve(client, &ctx, id, &startup, admin, registered).await;
    }
    let login_user = user.map_or(startup.user.as_str(), |u| u.server_user.as_str());
    let mut router = SessionRouter::new(&startup.user, &startup.database, login_user, id);
    // The startup checkout (which validates the client's settings) goes to the primary.
    let primary =
        startup_server(&snapshot).and_then(|i| router.target(&snapshot, &ctx.route_kit, i));
    let Some(target) = primary else {
        let msg = "no primary server is configured";
        return end(client, refused(sqlstate::CANNOT_CONNECT_NOW, msg)).await;
    };
    let mut relay_state = RelayState::new(ClientStatements::new(ctx.statement_ids.clone()));
    relay_state.idle_timeout = config.pool.client_idle_timeout;
    relay_state.work_sink = Some(registered.work_sink());
    let state = ClientState::from_startup(&startup.params);
    router.note_settings(state.desired());
    let mut session = Session {
        ctx: ctx.clone(),
        state,
        view: Arc::default(),
        view_synced: None,
        scs: None,
        login_user: login_user.to_owned(),
        target,
        router,
        current: None,
        capture: false,
        failed_server: None,
        cancel: Arc::new(CancelSlot::default()),
        retry_avoid: None,
        conn: None,
        home: None,
        // Session pooling routes units (reads to replicas) only where there is more than one
        // server; with the primary alone, the session is one unbroken relay.
        routes: config.pool.mode == PoolMode::Transaction || config.servers.len() > 1,
        relay: relay_state,
        mode: config.pool.mode,
        registered,
    };
    // The first checkout (the greeting, and the check of the startup settings) goes to the
    // primary. Transaction pooling greets from a replica while no primary is usable (down,
    // unknown, or two servers claim the role), so that clients connecting during a failover
    // can read; session pooling keeps the primary, as that connection becomes the client's own.
    // The snapshot is read again: authentication may have taken a while.
    let latest = ctx.snapshot.load_full();
    let replica = (session.mode == PoolMode::Transaction
        && latest.topology.usable_primary().is_none())
    .then(|| session.router.greeting_replica(&latest, &ctx.route_kit))
    .flatten();
    let greeter = replica
        .and_then(|i| session.router.target(&latest, &ctx.route_kit, i))
        .unwrap_or_else(|| Arc::clone(&session.target));
    let cached = ctx.greetings.get(&greeter.key, session.state.tag());
    let encoded = match cached {
        // Transaction pooling, and a client with these very settings was greeted recently:
        // its parameters are known, so no server connection is needed until the first query
        // (connection storms cost no server round trip, and a client connecting while every
        // pooled connection is busy is not held at startup).
        Some((params, encoded)) if session.mode == PoolMode::Transaction => {
            session.view = params;
            encoded
        }
        _ => {
            // The first checkout also validates the startup settings, as PostgreSQL does.
            if let Err(e) = session
                .attach(&mut client, true, Arc::clone(&greeter))
                .await
            {
                return end(client, e).await;
            }
            ctx.greetings
                .put(&greeter.key, session.state.tag(), &session.view)
        }
    };
    let _key = greet(&mut client, &mut session, id, &ctx, &encoded);
    if session.releases_at_boundary() {
        // An idle client holds no server connection in transaction pooling; in session
        // pooling it keeps its own primary connection, set aside while units are routed.
        session.let_go().await;
    }
    let res = match client.flush().await {
        Ok(()) => session.serve(&mut client, &drain).await,
        Err(e) => Err(e),
    };
    session.relay.report_work(&client);
    session.finish(res.is_ok()).await;
    match res {
        Ok(RelayEnd::Drained) => debug!("closed idle client while draining"),
        Ok(RelayEnd::IdleTimeout) => debug!("closed a client idle past client_idle_timeout"),
        Ok(_) => debug!("client terminated"),
        Err(e) => return end(client, e).await,
    }
    client.close();
}

/// The server a new client's first checkout goes to: the known primary, else the configured
/// one.
fn startup_server(snapshot: &Snapshot) -> Option<usize> {
    snapshot.topology.primary.or_else(|| {
        let primary = snapshot.config.primary()?;
        snapshot.server_index(&primary.name)
    })
}

/// One client's session: its state, its pool, and the server connection it holds (if any).
struct Session {
    ctx: Ctx,
    /// Settings and pins that follow the client across server connections.
    state: ClientState,
    /// ParameterStatus values the client has been shown (name, value).
    view: Arc<Vec<(String, String)>>,
    /// `params_hash` of a server connection whose every parameter `view` shows as is: a
    /// connection with the same hash needs no comparison.
    view_synced: Option<u64>,
    /// Whether `view` says `standard_conforming_strings` is on, which the lexer must know, for
    /// the list it was read from: a weak reference keeps that address from being reused, and
    /// a view changed with `Arc::make_mut` moves to a new address even when unshared.
    scs: Option<(WeakParams, bool)>,
    /// The role pgsplit logs in as on servers.
    login_user: String,
    /// The primary's pool at startup (the first checkout); in session mode, the pool of the
    /// client's own primary connection.
    target: Arc<ServerTarget>,
    /// Routes units and remembers what routing needs about this session.
    router: SessionRouter,
    /// Where the held connection (if any) is from.
    current: Option<Arc<ServerTarget>>,
    /// The held connection ran a write: capture the primary's WAL position when its
    /// transaction ends (read-your-writes).
    capture: bool,
    /// The server whose connect failed in the last checkout, if any.
    failed_server: Option<usize>,
    /// Where this client's cancel key leads (the registry holds it once greeted).
    cancel: Arc<CancelSlot>,
    /// The server a retried unit must avoid.
    retry_avoid: Option<usize>,
    /// The server connection running the client's unit: held for a transaction (transaction
    /// mode, or a read on a replica in session mode), for the session (session mode without
    /// replicas), or while pinned.
    conn: Option<PooledConn>,
    /// Session mode: the client's own primary connection, set aside (still checked out, never
    /// given to another client) while no unit runs on it or while a read runs on a replica.
    /// Boxed: only session-mode clients have one, and every client's future carries the field.
    home: Option<Box<(PooledConn, Arc<ServerTarget>)>>,
    /// Whether units are routed one by one (transaction mode, and session mode with more than
    /// one server), so that the connection is let go at each boundary.
    routes: bool,
    /// Relay bookkeeping that outlives one unit: prepared statements, response plan.
    relay: RelayState,
    mode: PoolMode,
    /// This client's entry in `SHOW CLIENTS`.
    registered: ClientGuard,
}

impl Session {
    /// Serves units until the client leaves or the proxy drains.
    async fn serve(
        &mut self,
        client: &mut ClientConn,
        drain: &DrainWatch,
    ) -> Result<RelayEnd, SessionError> {
        loop {
            if self.conn.is_none() {
                match wait_for_work(client, drain, self.relay.idle_timeout).await? {
                    Work::Unit if answer_prepare_locally(client, &mut self.relay)? => continue,
                    Work::Unit => {
                        if !self.route_and_attach(client).await? {
                            continue;
                        }
                    }
                    Work::Terminate => return Ok(RelayEnd::Terminated),
                    Work::Drain => {
                        tell_draining(client).await?;
                        return Ok(RelayEnd::Drained);
                    }
                    Work::IdleTimeout => {
                        tell_idle_timeout(client).await?;
                        return Ok(RelayEnd::IdleTimeout);
                    }
                }
            }
            // A pinned client stops at boundaries too, so pgsplit notices when its pin ends.
            self.relay.stop_at_boundary = self.releases_at_boundary() || self.state.pinned;
            let conn = self.conn.as_mut().expect("attached above");
            let res = relay(client, conn, &mut self.relay, drain).await;
            if !self.relay.param_updates.is_empty() {
                for (name, value) in self.relay.param_updates.drain(..) {
                    conn.note_param(&name, &value);
                    set_view(&mut self.view, &name, &value);
                }
                // The connection and the view took the same values.
                if self.view_synced.is_some() {
                    self.view_synced = Some(conn.params_hash());
                }
            }
            if std::mem::take(&mut self.relay.read_only_error) {
                note_read_only(&self.ctx, self.current.as_deref());
            }
            match res {
                Ok(RelayEnd::Boundary) => {
                    self.relay.retry_armed = false;
                    self.relay.retry_frames.clear();
                    let effects = std::mem::take(&mut self.relay.effects);
                    if effects.statements {
                        // DISCARD / DEALLOCATE dropped statements on the server, the client's
                        // protocol-level ones included.
                        self.relay.statements.clear();
                        conn.statements_mut().clear();
                    }
                    let was_pinned = self.state.pinned;
                    if effects.settings || effects.state || (effects.unpins && self.state.pinned) {
                        self.read_back(client).await?;
                    }
                    if was_pinned && !self.state.pinned {
                        // Units of a pinned session are not routed (nor classified): assume
                        // they wrote.
                        self.capture = true;
                    }
                    if self.capture && self.relay.txn_status == b'I' {
                        self.capture_write_position().await?;
                    }
                    if self.releases_at_boundary() {
                        // Notifications that came during the housekeeping queries above are
                        // the client's: delivered before the connection goes back.
                        let notifications = self
                            .conn
                            .as_mut()
                            .map(|c| c.take_notifications())
                            .unwrap_or_default();
                        if !notifications.is_empty() {
                            for notification in notifications {
                                client.out.push(notification);
                            }
                            client.flush().await?;
                        }
                        self.let_go().await;
                    }
                }
                Ok(end) => return Ok(end),
                Err(e) => {
                    conn.mark_broken();
                    self.relay.plan.abandon(&mut self.relay.statements);
                    let retry = std::mem::take(&mut self.relay.retry_failed);
                    let frames = std::mem::take(&mut self.relay.retry_frames);
                    if retry && !frames.is_empty() {
                        // The replica failed before any of the answer reached the client:
                        // put the unit back in front of the client's input and route it again.
                        debug!(error = %e, "retrying a read on another server");
                        let len = frames.iter().map(Bytes::len).sum::<usize>();
                        let mut input = BytesMut::with_capacity(len + client.rbuf.len());
                        for frame in &frames {
                            input.extend_from_slice(frame);
                        }
                        input.extend_from_slice(&client.rbuf);
                        client.rbuf = input;
                        if let Some(target) = &self.current {
                            self.retry_avoid = Some(target.index);
                            let server = target.key.server().to_string();
                            let _ = self.ctx.server_events.send(ServerEvent::Failed { server });
                        }
                        self.ctx.metrics.read_retries_total.inc();
                        self.detach(None).await;
                        continue;
                    }
                    if matches!(e, SessionError::Server(_) | SessionError::ServerGone(_)) {
                        self.note_failed();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Whether the connection is let go at the next boundary ([`Session::let_go`]).
    fn releases_at_boundary(&self) -> bool {
        self.routes && !self.state.is_pinned()
    }

    /// Checks out a server connection and makes it carry the client's settings. At startup
    /// (`first`), a refused setting is FATAL, as in PostgreSQL.
    async fn attach(
        &mut self,
        client: &mut ClientConn,
        first: bool,
        target: Arc<ServerTarget>,
    ) -> Result<(), SessionError> {
        let pools = &self.ctx.pools;
        self.registered.set_activity(Activity::Waiting);
        // The unit's clock reading (taken when it was routed, just before) serves as the
        // checkout's start, unless this is the startup checkout or a PAUSE held the unit.
        let paused = self.ctx.control.wait_resumed().await;
        let start = if !first && !paused {
            self.router.routed_at()
        } else {
            self.relay.sent_at = None;
            tokio::time::Instant::now()
        };
        let mut waiting_since = None;
        let checkout = {
            let mut pending = pin!(pools.checkout_at(&target.key, &target.settings, start));
            poll_fn(|cx| {
                let poll = pending.as_mut().poll(cx);
                if poll.is_pending() {
                    waiting_since.get_or_insert_with(tokio::time::Instant::now);
                }
                poll
            })
            .await
        };
        let waited = waiting_since.map_or(Duration::ZERO, |since| since.elapsed());
        if waiting_since.is_some() {
            self.relay.sent_at = None;
        }
        self.registered.after_checkout(&checkout, waited);
        if checkout.is_err() && self.home.is_some() {
            // A session-mode client still holds its own connection.
            self.registered.set_activity(Activity::Active);
        }
        let metrics = &self.ctx.metrics;
        metrics.checkout_wait_seconds.observe(waited.as_secs_f64());
        let mut conn = match checkout {
            Ok(conn) => conn,
            Err(e) => {
                match &e {
                    PoolError::Timeout { .. } => metrics.checkout_timeouts_total.inc(),
                    PoolError::Connect { source, .. } if server_unavailable(source) => {
                        self.failed_server = Some(target.index);
                        let server = target.key.server().to_string();
                        let _ = self.ctx.server_events.send(ServerEvent::Failed { server });
                    }
                    // The server answered and refused this login (wrong server password, no
                    // such database): the server is fine, the unit fails with its error.
                    PoolError::Connect { .. } => {}
                }
                let fields = fatal_or_error(e.to_client_error(), first);
                return Err(SessionError::Refused(Box::new(fields)));
            }
        };
        if conn.state_tag() != self.state.tag() {
            // Replaying settings takes a round trip before the unit is sent.
            self.relay.sent_at = None;
        }
        match replay::apply(&mut conn, &self.state).await {
            Ok(None) => {}
            Ok(Some(fields)) => {
                conn.release(None).await;
                return Err(SessionError::Refused(Box::new(fatal_or_error(
                    fields, true,
                ))));
            }
            Err(e) => {
                conn.mark_broken();
                return Err(e.into());
            }
        }
        if first {
            self.view = Arc::clone(conn.params_shared());
        } else if self.view_synced != Some(conn.params_hash()) {
            // Also brings `view` up to date with the connection.
            show_changed_params(client, &mut self.view, &conn);
        }
        self.view_synced = Some(conn.params_hash());
        self.cancel.attach(conn.addr(), conn.cancel_key());
        debug!(first, server = %target.key.server(), "checked out a server connection");
        self.registered.set_activity(Activity::Active);
        target.checked_out();
        self.relay.one_unit = target.role == NodeRole::Replica;
        self.relay.query_duration = Some(target.duration.clone());
        self.current = Some(target);
        self.conn = Some(conn);
        Ok(())
    }

    /// Reads back the session state the client may have changed, keeps the connection if
    /// state that cannot be replayed exists, and re-applies startup settings a RESET removed.
    async fn read_back(&mut self, client: &mut ClientConn) -> Result<(), SessionError> {
        let conn = self.conn.as_mut().expect("read_back with a connection");
        let found = match replay::read_back(conn, &self.login_user).await? {
            Ok(found) => found,
            Err(fields) => {
                // The read-back should never fail; if it does, keep the client on this
                // connection rather than risk replaying a wrong state elsewhere.
                warn!(error = %fields.message, "reading back session state failed; pinning");
                self.set_pinned(true);
                return Ok(());
            }
        };
        self.set_pinned(found.pins > 0);
        let conn = self.conn.as_mut().expect("read_back with a connection");
        self.state.set_captured(found.settings);
        self.router.note_settings(self.state.desired());
        // The connection carries what was read back; startup settings a RESET dropped are
        // missing from it, so re-apply when they differ.
        conn.set_state_tag(u64::MAX);
        if let Some(fields) = replay::apply(conn, &self.state).await? {
            warn!(error = %fields.message, "re-applying session settings failed");
        }
        show_changed_params(client, &mut self.view, conn);
        self.view_synced = Some(conn.params_hash());
        Ok(())
    }

    /// Records whether the client is pinned, keeping the pin metrics true.
    fn set_pinned(&mut self, pinned: bool) {
        if pinned == self.state.pinned {
            return;
        }
        if pinned
            && self
                .current
                .as_ref()
                .is_some_and(|t| t.role == NodeRole::Replica)
        {
            // Pins come from writes, which never run on a replica; a session must never be
            // held on a replica connection, where its later writes would stay.
            warn!("unexpected unreplayable state on a replica connection; not pinning");
            return;
        }
        debug!(pinned, "pin state changed");
        self.state.pinned = pinned;
        self.registered.set_pinned(pinned);
        if pinned {
            self.ctx.metrics.pins_total.inc();
            self.ctx.metrics.pinned_clients.inc();
        } else {
            self.ctx.metrics.pinned_clients.dec();
        }
    }

    /// Gives the server connection running the unit back to its pool.
    async fn detach(&mut self, reset_query: Option<&str>) {
        if let Some(mut conn) = self.conn.take() {
            if let Some(target) = self.current.take() {
                target.released();
            }
            // A session-mode client keeps its own connection: still active.
            let activity = if self.home.is_some() {
                Activity::Active
            } else {
                Activity::Idle
            };
            self.registered.set_activity(activity);
            self.cancel.detach();
            if self.relay.out_of_step {
                conn.mark_broken();
                self.relay.out_of_step = false;
            }
            if reset_query.is_some() {
                // The reset (DISCARD ALL) drops settings and every prepared statement.
                conn.set_state_tag(0);
                conn.statements_mut().clear();
            }
            debug!(reset = reset_query.is_some(), txn = %(conn.txn_status() as char), "releasing the server connection");
            let at = self
                .relay
                .answered_at
                .unwrap_or_else(tokio::time::Instant::now);
            conn.release_at(reset_query, at).await;
        }
    }

    /// Ends the session: a connection still held is reset (session mode or pinned) or simply
    /// returned; after an error it was marked broken and is closed.
    async fn finish(&mut self, clean: bool) {
        let needs_reset = self.mode == PoolMode::Session || self.state.is_pinned();
        if !clean && let Some(conn) = self.conn.as_mut() {
            conn.mark_broken();
        }
        // The reset query of the current config (a reload may have changed it).
        let snapshot = self.ctx.snapshot.load_full();
        let reset = needs_reset.then_some(snapshot.config.pool.reset_query.as_str());
        // A replica's connection (session mode) ran only reads: it goes back as is.
        let on_replica = self
            .current
            .as_ref()
            .is_some_and(|t| t.role == NodeRole::Replica);
        self.detach(if on_replica { None } else { reset }).await;
        if let Some((conn, target)) = self.home.take().map(|home| *home) {
            self.conn = Some(conn);
            self.current = Some(target);
            self.detach(reset).await;
        }
        self.set_pinned(false);
    }
}

/// What the client wants while it holds no server connection.
enum Work {
    /// A message that starts a unit has arrived.
    Unit,
    /// The client sent Terminate.
    Terminate,
    /// The proxy is draining.
    Drain,
    /// The client stayed idle longer than `pool.client_idle_timeout`.
    IdleTimeout,
}

/// Waits, holding no server connection, until the client sends a whole message (or leaves,
/// or the proxy drains), writing out anything still queued for the client meanwhile.
async fn wait_for_work(
    client: &mut ClientConn,
    drain: &DrainWatch,
    idle_timeout: Option<Duration>,
) -> Result<Work, SessionError> {
    loop {
        if let Some(tag) = client.peek_frame()? {
            return Ok(if tag == frontend::tags::TERMINATE {
                Work::Terminate
            } else {
                Work::Unit
            });
        }
        if drain.draining() && client.out.is_empty() {
            return Ok(Work::Drain);
        }
        let nothing_pending = client.rbuf.is_empty() && client.out.is_empty();
        let ClientConn {
            rd,
            wr,
            rbuf,
            out,
            received,
            ..
        } = client;
        // `biased`: no random start per wake-up; the client's writes come first.
        tokio::select! {
            biased;
            res = out.write_some(wr), if !out.is_empty() => {
                res.map_err(SessionError::ClientIo)?;
            }
            res = rd.read_buf(rbuf) => {
                let n = res.map_err(SessionError::ClientIo)?;
                if n == 0 {
                    return Err(SessionError::ClientGone);
                }
                *received += n as u64;
            }
            () = drain.wait(), if !drain.draining() => {}
            _ = idle_sleep(idle_timeout), if nothing_pending => {
                return Ok(Work::IdleTimeout);
            }
        }
    }
}

/// If the buffered unit is only named Parses and a Sync (what `PQprepare` sends), registers
/// the statements and answers ParseComplete per Parse and ReadyForQuery, with no server
/// connection; see `extended::prepare_locally` for why and what it costs. Returns whether it
/// did. A unit that is not complete yet is left for the normal path.
fn answer_prepare_locally(
    client: &mut ClientConn,
    relay: &mut RelayState,
) -> Result<bool, SessionError> {
    if !relay.plan.is_empty() || relay.plan.awaiting_sync() {
        return Ok(false);
    }
    // Look ahead at headers only (no copy): whole named Parses, then a Sync.
    let Some(parses) = named_parses_then_sync(&client.rbuf, client.max_message) else {
        return Ok(false);
    };
    for _ in 0..parses {
        let frame = client.read_buffered()?;
        extended::prepare_locally(&frame, &mut relay.statements)?;
        client.queue(encode::parse_complete);
    }
    client.read_buffered()?; // the Sync
    client.queue(|b| encode::ready_for_query(b, b'I'));
    Ok(true)
}

/// How many named Parse messages start `buf`, if they are all whole and a whole Sync follows
/// them. Anything else (including a malformed length, left for the framer to report) is `None`.
fn named_parses_then_sync(buf: &[u8], max: usize) -> Option<usize> {
    let (mut off, mut parses) = (0, 0);
    loop {
        let header = buf.get(off..off + pgsplit_wire::frame::HEADER_LEN)?;
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let len = declared + 1;
        if declared < 4 || len > max || buf.len() - off < len {
            return None;
        }
        match header[0] {
            frontend::tags::SYNC if parses > 0 => return Some(parses),
            // A named Parse: its name (right after the header) is not empty.
            frontend::tags::PARSE if declared > 4 && buf[off + 5] != 0 => parses += 1,
            _ => return None,
        }
        off += len;
    }
}

/// Answers the client's next unit with `fields` without a server: consumes its messages up to
/// and including the Query or Sync that ends it, then sends the error and ReadyForQuery.
async fn fail_unit(client: &mut ClientConn, fields: &ErrorFields) -> Result<(), SessionError> {
    loop {
        let frame = client.read_frame().await?;
        match frame.tag() {
            frontend::tags::QUERY | frontend::tags::SYNC | frontend::tags::FUNCTION_CALL => break,
            frontend::tags::TERMINATE => return Err(SessionError::ClientGone),
            _ => {}
        }
    }
    client.queue_error(fields);
    client.queue(|b| encode::ready_for_query(b, b'I'));
    client.flush().await
}

async fn tell_draining(client: &mut ClientConn) -> Result<(), SessionError> {
    client.queue_error(&ErrorFields::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection because pgsplit is shutting down",
    ));
    client.flush().await
}

/// At startup every error is FATAL (the client has no session yet); later, a failed checkout
/// fails only the unit that needed it.
fn fatal_or_error(mut fields: ErrorFields, first: bool) -> ErrorFields {
    let severity = if first { "FATAL" } else { "ERROR" };
    fields.severity = severity.into();
    for (tag, value) in &mut fields.other {
        if *tag == b'V' {
            *value = severity.into();
        }
    }
    fields
}

/// Decrements a gauge when dropped, so every exit path counts.
struct GaugeGuard(pgsplit_telemetry::IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn forward_cancel(ctx: &Ctx, pid: u32, secret: u32) {
    let Some(target) = ctx.cancels.lookup(pid, secret) else {
        debug!(pid, "cancel request with an unknown key ignored");
        return;
    };
    if let Err(e) = pgsplit_backend::cancel(&target.addr, target.key, CANCEL_TIMEOUT).await {
        warn!(error = %e, "forwarding a cancel request failed");
    }
}

/// Ends a session that failed: tell the client why (if it can still hear) and log.
async fn end(client: ClientConn, e: SessionError) {
    if e.is_quiet() {
        debug!("client disconnected");
    } else {
        warn!(error = %e, "session ended");
    }
    match e.client_error() {
        Some(fields) => client.fail(&fields).await,
        None => drop(client),
    }
}

fn refused(code: pgsplit_wire::SqlState, message: &str) -> SessionError {
    SessionError::Refused(Box::new(ErrorFields::fatal(code, message)))
}

/// Refuses a connection the proxy cannot take (e.g. over `max_client_connections`): reads the
/// startup packet so the client is listening (after TLS, when the config has `tls:` and the
/// client asks for it), then sends `fields` as a FATAL error and closes. A startup that would
/// itself be refused (plain text under `tls.mode: require`, an unsupported protocol) hears the
/// same error: for the first, as PostgreSQL reports a full server before it checks how the
/// client connected; for the others the client is told the proxy is full rather than nothing.
/// A cancel request is still forwarded, as PostgreSQL honours one when full: a surge that
/// fills the proxy must not keep clients from cancelling their queries.
pub async fn reject(stream: TcpStream, fields: ErrorFields, ctx: Ctx) {
    // A startup packet is small; a rejected client gets no more room than it needs.
    const MAX_MESSAGE: usize = 64 * 1024;
    let limit = ctx.snapshot.load().config.limits.startup_timeout;
    let tls = ctx.tls.load_full();
    let mut client = ClientConn::new(stream, MAX_MESSAGE);
    match timeout(limit, read_hello(&mut client, tls.as_deref())).await {
        Ok(Ok(Hello::Session(_)) | Err(SessionError::Refused(_))) => client.fail(&fields).await,
        Ok(Ok(Hello::Cancel { pid, secret })) => forward_cancel(&ctx, pid, secret).await,
        // Gone or silent: nobody to tell.
        Ok(Err(_)) | Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
