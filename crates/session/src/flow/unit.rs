//! Routing the client's next unit: classify it, pick its server, retry or wait when the server cannot be reached, refuse it, and record the WAL position a write left for read-your-writes.

use std::sync::Arc;

use pgsplit_classify::{Class, Classification, Effects, SetKind};
use pgsplit_config::PoolMode;
use pgsplit_router::{
    Consistency, LastWrite, Lsn, NodeRole, Policy, Refusal, RouteOverride, Snapshot, Target,
};
use pgsplit_wire::frontend::tags as fe;
use pgsplit_wire::{ErrorFields, encode, sqlstate};
use tokio::time::Duration;
use tracing::debug;

use super::{Session, fail_unit};
use crate::client_io::ClientConn;
use crate::relay::CAPTURE_SQL;
use crate::routing::{Scan, ServerTarget, route_setting, scan_unit};
use crate::{Ctx, ServerEvent, SessionError, internal};

/// How often a unit waiting for a server (a failover, a replica catching up) routes again.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// A routed unit.
struct RoutedUnit {
    target: Arc<ServerTarget>,
    class: Arc<Classification>,
    /// Capture the primary's WAL position after it commits.
    capture: bool,
    /// It may be retried on another server.
    retryable: bool,
    /// Bytes at the front of the client's input that the unit takes (0: not known), and what
    /// their SQL may do to the session, so that the relay does not lex them again.
    scanned: (usize, Effects),
}

/// How many times a unit is routed again after connecting to its server failed.
const MAX_CONNECT_RETRIES: usize = 8;

/// Units larger than this are not kept for a retry (a read that big is rare; it fails instead).
const RETRY_LIMIT: usize = 64 * 1024;

/// Servers a unit must not be routed to again, while the topology still thinks they are up.
#[derive(Debug, Default)]
struct Avoid {
    /// Node indexes.
    nodes: Vec<usize>,
    /// The topology the failures were seen against; a newer one (the health checker acted)
    /// replaces this list.
    seen: Option<Arc<pgsplit_router::Topology>>,
}

impl Avoid {
    fn add(&mut self, node: usize, topology: &Arc<pgsplit_router::Topology>) {
        self.refresh(topology);
        self.seen = Some(Arc::clone(topology));
        self.nodes.push(node);
    }

    /// Forgets the list once the topology changed since the failures.
    fn refresh(&mut self, topology: &Arc<pgsplit_router::Topology>) {
        if self
            .seen
            .as_ref()
            .is_some_and(|t| !Arc::ptr_eq(t, topology))
        {
            self.nodes.clear();
            self.seen = None;
        }
    }
}

impl Session {
    /// Routes the client's next unit and checks out a connection for it. Returns `false`
    /// when the unit was answered without a server (a refusal, `SET pgsplit.route`, or a
    /// failed checkout reported to the client).
    pub(super) async fn route_and_attach(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<bool, SessionError> {
        // Servers whose connect failed for this unit (rare, so no allocation otherwise).
        let mut avoid = Avoid::default();
        if let Some(index) = self.retry_avoid.take() {
            // The unit failed on this server before its answer began: it is being retried.
            avoid.add(index, &self.ctx.snapshot.load().topology);
        }
        let mut attempts = 0;
        loop {
            let Some(RoutedUnit {
                target,
                class,
                capture,
                retryable,
                scanned,
            }) = self.route_next(client, &mut avoid).await?
            else {
                return Ok(false);
            };
            // Session mode: a unit for the primary runs on the client's own connection.
            let attached = if self.mode == PoolMode::Session && target.role == NodeRole::Primary {
                self.use_home(client, Arc::clone(&target)).await
            } else {
                if self.home.is_some() {
                    self.drop_moved_home().await;
                }
                self.attach(client, false, Arc::clone(&target)).await
            };
            match attached {
                Ok(()) => {
                    target.count_query(class.class);
                    self.capture = capture;
                    self.relay.capture_armed = capture;
                    self.relay.retry_armed = retryable;
                    self.relay.retry_frames.clear();
                    self.relay.prescan(scanned.0, scanned.1);
                    return Ok(true);
                }
                Err(SessionError::Refused(fields)) if fields.severity == "ERROR" => {
                    let failed = self.failed_server.take() == Some(target.index);
                    attempts += 1;
                    if failed && attempts <= MAX_CONNECT_RETRIES {
                        // The server cannot be reached and nothing was sent yet: route the
                        // unit again without it (a read goes to another eligible server, a
                        // write waits for the failover up to `failover.write_wait`).
                        avoid.add(target.index, &self.ctx.snapshot.load().topology);
                        if target.role == NodeRole::Replica {
                            self.ctx.metrics.read_retries_total.inc();
                        }
                        continue;
                    }
                    // No connection for this unit (pool timeout, server down): fail the
                    // unit, keep the session.
                    fail_unit(client, &fields).await?;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Classifies and routes the unit at the front of the client's input: the target, the
    /// unit's classification, and whether its commit must be followed by capturing the
    /// primary's WAL position. `None` when the unit was answered here.
    async fn route_next(
        &mut self,
        client: &mut ClientConn,
        avoid: &mut Avoid,
    ) -> Result<Option<RoutedUnit>, SessionError> {
        loop {
            let snapshot = self.ctx.snapshot.load_full();
            avoid.refresh(&snapshot.topology);
            let scs = self.standard_conforming_strings();
            let kit = &self.ctx.route_kit;
            let routing = &snapshot.routing;
            let classify = |sql: &str| routing.classifier.classify_with(sql, scs);
            let scan = scan_unit(
                &client.rbuf,
                client.max_message,
                &self.relay.statements,
                snapshot.generation,
                kit,
                &classify,
            );
            let (class, route, executes, end, effects) = match scan {
                Scan::Incomplete => {
                    client.fill().await?;
                    continue;
                }
                Scan::Unit {
                    class,
                    sql,
                    executes,
                    end,
                    effects,
                } => {
                    if client.rbuf.first() == Some(&fe::QUERY)
                        && let Some(setting) = route_setting(&class, sql)
                    {
                        client.read_buffered()?;
                        self.answer_route_setting(client, setting, &class).await?;
                        return Ok(None);
                    }
                    let modified = (!avoid.nodes.is_empty()).then(|| {
                        let mut topology = (*snapshot.topology).clone();
                        let now = self.router.now();
                        for &i in &avoid.nodes {
                            topology.mark_down(i, now);
                        }
                        topology
                    });
                    let route = self.router.route(&snapshot, modified, kit, &class, sql);
                    self.relay.sent_at = Some(self.router.routed_at());
                    (class, route, executes, end, effects)
                }
            };
            let index = match route.target {
                Target::Primary(i) | Target::Replica(i) => i,
                Target::Stay => self.target.index,
                Target::Wait { deadline } => {
                    let now = self.router.now();
                    self.router.view.waiting_since.get_or_insert(now);
                    let pause = deadline
                        .saturating_sub(now)
                        .clamp(Duration::from_millis(1), WAIT_POLL);
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Target::Refuse(refusal) => {
                    self.router.view.waiting_since = None;
                    fail_unit(client, &refusal_error(&refusal, &snapshot)).await?;
                    return Ok(None);
                }
            };
            self.router.view.waiting_since = None;
            let Some(target) = self.router.target(&snapshot, kit, index) else {
                let fields = ErrorFields::error(sqlstate::CANNOT_CONNECT_NOW, "no such server");
                fail_unit(client, &fields).await?;
                return Ok(None);
            };
            // Without replicas there is nothing to be consistent with: no capture round trip.
            let has_replicas = snapshot
                .topology
                .nodes
                .iter()
                .any(|n| n.role() == Some(NodeRole::Replica));
            let capture = target.role == NodeRole::Primary
                && executes
                && writes_wal(class.class)
                && has_replicas
                && tracks_writes(&snapshot.routing.policy);
            // A unit on a replica keeps (references to) its messages until its answer begins,
            // so that it can be retried elsewhere if the replica fails first.
            let retryable = target.role == NodeRole::Replica && end > 0 && end <= RETRY_LIMIT;
            return Ok(Some(RoutedUnit {
                target,
                class,
                capture,
                retryable,
                scanned: (end, effects),
            }));
        }
    }

    /// Whether the client's `standard_conforming_strings` is on (the default), looked up once
    /// per view: a view that changes moves to a new address (see `Session::scs`).
    fn standard_conforming_strings(&mut self) -> bool {
        match &self.scs {
            Some((view, on)) if view.as_ptr() == Arc::as_ptr(&self.view) => *on,
            _ => {
                let on = param(&self.view, "standard_conforming_strings") != Some("off");
                self.scs = Some((Arc::downgrade(&self.view), on));
                on
            }
        }
    }

    /// Answers `SET pgsplit.route = ...` / `RESET pgsplit.route` (already consumed).
    async fn answer_route_setting(
        &mut self,
        client: &mut ClientConn,
        setting: Result<RouteOverride, String>,
        class: &Classification,
    ) -> Result<(), SessionError> {
        match setting {
            Ok(value) => {
                self.router.view.route_override = value;
                let tag = match class.class {
                    Class::SessionSet(SetKind::Reset) => "RESET",
                    _ => "SET",
                };
                client.queue(|b| encode::command_complete(b, tag));
            }
            Err(message) => client.queue_error(&ErrorFields::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                message,
            )),
        }
        client.queue(|b| encode::ready_for_query(b, b'I'));
        client.flush().await
    }

    /// Records the primary's WAL position after the client's write committed, on the same
    /// connection, after the client already has its answer: later reads of this client go only
    /// to replicas that have replayed this far (`consistency: session`).
    ///
    /// The insert position, not `pg_current_wal_lsn()` (the write position): with
    /// `synchronous_commit = off` a commit returns before its WAL is written out, so the
    /// write position can still be before the commit record.
    ///
    /// Usually the relay already sent this query behind the client's commit and kept its answer
    /// (`RelayState::take_capture`): then no round trip is needed here.
    pub(super) async fn capture_write_position(&mut self) -> Result<(), SessionError> {
        self.capture = false;
        self.relay.capture_armed = false;
        let lsn = if let Some(lsn) = self.relay.take_capture() {
            if lsn.is_none() {
                debug!("capturing the WAL position failed; reads go to the primary");
            }
            lsn
        } else {
            let conn = self.conn.as_mut().expect("capture with a connection");
            let out = internal::run(conn, CAPTURE_SQL).await?;
            match out.error {
                None => out
                    .rows
                    .first()
                    .and_then(|row| row.first().cloned().flatten())
                    .and_then(|text| Lsn::parse(&text)),
                Some(e) => {
                    debug!(error = %e.message, "capturing the WAL position failed; reads go to the primary");
                    None
                }
            }
        };
        self.router.view.last_write = Some(LastWrite {
            at: self.router.now(),
            lsn,
        });
        Ok(())
    }

    /// The held connection broke mid-unit: have the health checker probe its server now.
    pub(super) fn note_failed(&self) {
        if let Some(target) = &self.current {
            let server = target.key.server().to_string();
            let _ = self.ctx.server_events.send(ServerEvent::Suspect { server });
        }
    }
}

/// A write failed with 25006 on the server believed to be the primary: it may have been
/// demoted; have every role re-checked now.
pub(super) fn note_read_only(ctx: &Ctx, current: Option<&ServerTarget>) {
    if let Some(target) = current.filter(|t| t.role == NodeRole::Primary) {
        let server = target.key.server().to_string();
        let _ = ctx.server_events.send(ServerEvent::ReadOnly { server });
    }
}

/// Whether a failed connect means the server itself cannot take connections (unreachable,
/// timed out, closed, shutting down or starting up), as opposed to refusing this login.
pub(super) fn server_unavailable(e: &pgsplit_backend::BackendError) -> bool {
    match e {
        pgsplit_backend::BackendError::Server { fields, .. } => fields.code.starts_with("57P"),
        other => other.retryable(),
    }
}

/// Whether a unit of this class may write WAL that the client will want to read back (reads
/// and session settings do not).
pub(super) fn writes_wal(class: Class) -> bool {
    !matches!(class, Class::Read | Class::SessionSet(_))
}

/// Whether any consistency in force needs the WAL position of the client's writes.
pub(super) fn tracks_writes(policy: &Policy) -> bool {
    policy.consistency != Consistency::Eventual
        || policy.rules.iter().any(|r| {
            r.then
                .consistency
                .is_some_and(|c| c != Consistency::Eventual)
        })
}

/// The error a refused unit gets.
pub(super) fn refusal_error(refusal: &Refusal, snapshot: &Snapshot) -> ErrorFields {
    let wait = snapshot.routing.policy.write_wait;
    match refusal {
        Refusal::Blocked(message) => ErrorFields::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("pgsplit: statement blocked by a routing rule: {message}"),
        ),
        Refusal::NoPrimary => ErrorFields::error(
            sqlstate::CANNOT_CONNECT_NOW,
            format!(
                "pgsplit: no primary server is available (waited {} ms for a failover); retry later",
                wait.as_millis()
            ),
        ),
        Refusal::SplitBrain => ErrorFields::error(
            sqlstate::CANNOT_CONNECT_NOW,
            "pgsplit: more than one server claims to be the primary; writes are refused until \
             this is resolved",
        ),
        Refusal::NoReplica => ErrorFields::error(
            sqlstate::CANNOT_CONNECT_NOW,
            "pgsplit: no replica is available for this read and primary_reads is never",
        ),
    }
}

/// The value of a reported parameter the client was shown.
pub(super) fn param<'a>(view: &'a [(String, String)], name: &str) -> Option<&'a str> {
    view.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
