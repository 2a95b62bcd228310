//! The background health checker: probes every configured server and feeds the results to the routing topology.
//!
//! One probe task per server (by config name) runs a [`Prober`] every `health.interval` and
//! sends each result to one supervisor task, which turns it into a [`HealthReport`] and applies
//! it to the current [`Snapshot`] with read-copy-update (so it never undoes a concurrent config
//! reload), then updates the server metrics and logs what changed. The supervisor also:
//!
//! - follows config reloads: on every tick it compares the probe tasks with the current
//!   snapshot's servers and starts, restarts (address or credentials changed) or stops tasks;
//! - acts on what sessions saw on real traffic ([`ServerEvent`]): a failure marks the server
//!   down at once and probes it again at once; a write refused as read-only (25006) makes every
//!   server be probed at once, so a failover is followed without waiting for the interval;
//!   so does any change that loses the usable primary (at most once per interval, so a primary
//!   that flaps between up and down does not keep every server probed back to back);
//! - stops, with every probe task, when the proxy starts draining.
//!
//! Reports carry the time since the checker started (the topology's clock), and are tagged
//! with the generation of the probe task that made them, so a late report from a replaced task
//! is ignored.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pgsplit_backend::{ProbeError, ProbeSettings, Prober, ServerStatus};
use pgsplit_config::Config;
use pgsplit_router::{Changes, HealthReport, Lsn, NodeRole, Probe, Snapshot, Topology};
use pgsplit_session::{Ctx, ServerEvent};
use pgsplit_telemetry::{Metrics, ServerHandles, ServerRole};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tracing::Instrument as _;

/// How often the supervisor compares its probe tasks with the current config.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// How the checker probes: the `health.*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HealthSettings {
    /// Time between two probes of one server.
    pub(crate) interval: Duration,
    /// Limit for one probe, connect included.
    pub(crate) timeout: Duration,
    /// Role the probes log in as.
    pub(crate) user: String,
    /// Its password.
    pub(crate) password: Option<String>,
    /// Database the probes connect to.
    pub(crate) database: String,
}

impl HealthSettings {
    /// The settings of `config` (its `health.*` keys).
    pub(crate) fn from_config(config: &Config) -> HealthSettings {
        let health = &config.health;
        HealthSettings {
            interval: health.interval,
            timeout: health.timeout,
            user: health.user.clone(),
            password: health.password.clone(),
            database: health.database.clone(),
        }
    }

    /// How to probe `server`.
    fn probe_settings(&self, server: &pgsplit_config::Server) -> ProbeSettings {
        ProbeSettings {
            addr: server.addr(),
            user: self.user.clone(),
            password: self.password.clone(),
            database: self.database.clone(),
            timeout: self.timeout,
            tls: pgsplit_backend::tls::ServerTls::of(server),
        }
    }
}

/// Starts the checker; it runs until `ctx.shutdown` turns `true`.
pub(crate) fn spawn(ctx: &Ctx, events: mpsc::UnboundedReceiver<ServerEvent>) -> JoinHandle<()> {
    spawn_with(ctx, events, HealthSettings::from_config)
}

/// [`spawn`] with the settings derived from each config by `settings_of` (tests use other
/// intervals than the defaults).
fn spawn_with(
    ctx: &Ctx,
    events: mpsc::UnboundedReceiver<ServerEvent>,
    settings_of: fn(&Config) -> HealthSettings,
) -> JoinHandle<()> {
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let checker = Checker {
        settings_of,
        snapshot: ctx.snapshot.clone(),
        metrics: ctx.metrics.clone(),
        shutdown: ctx.shutdown.clone(),
        start: Instant::now(),
        workers: HashMap::new(),
        next_epoch: 1,
        reports_tx,
        last_primary: None,
        rechecked_all_at: None,
        split_brain: false,
    };
    tokio::spawn(
        checker
            .run(reports, events)
            .instrument(tracing::info_span!("health")),
    )
}

/// One probe result on its way to the supervisor.
struct Report {
    /// The server's config name.
    server: Arc<str>,
    /// Which probe task made it ([`Worker::epoch`]).
    epoch: u64,
    /// When the probe finished, on the checker's clock.
    at: Duration,
    /// What the probe found.
    outcome: Result<ServerStatus, ProbeError>,
}

/// The supervisor's handle on one probe task.
struct Worker {
    /// Distinguishes this task from an earlier one for the same server name.
    epoch: u64,
    /// What the task was started with; a change restarts it.
    settings: ProbeSettings,
    /// Its probe interval; a change restarts it.
    interval: Duration,
    /// Wakes the task for a probe now.
    probe_now: Arc<Notify>,
    /// Dropping it stops the task.
    _stop: oneshot::Sender<()>,
    /// The server's metric series.
    metrics: ServerHandles,
}

/// The supervisor's state.
struct Checker {
    /// The health settings of a config.
    settings_of: fn(&Config) -> HealthSettings,
    /// The proxy's snapshot, read to follow reloads and updated with every report.
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where the server families live.
    metrics: Arc<Metrics>,
    /// `true` once the proxy drains.
    shutdown: watch::Receiver<bool>,
    /// Zero of the topology's clock.
    start: Instant,
    /// Probe tasks by server name.
    workers: HashMap<Arc<str>, Worker>,
    /// Epoch of the next probe task.
    next_epoch: u64,
    /// Handed to every probe task.
    reports_tx: mpsc::UnboundedSender<Report>,
    /// The last server detected as primary, to count failovers.
    last_primary: Option<String>,
    /// When losing the primary last made every server be probed (the topology's clock).
    rechecked_all_at: Option<Duration>,
    /// Whether the last topology published had a split brain, to count each one once.
    split_brain: bool,
}

impl Checker {
    async fn run(
        mut self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut events: mpsc::UnboundedReceiver<ServerEvent>,
    ) {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown = self.shutdown.clone();
        let mut events_open = true;
        loop {
            tokio::select! {
                _ = tick.tick() => self.reconcile(),
                Some(report) = reports.recv() => self.on_report(report),
                event = events.recv(), if events_open => match event {
                    Some(event) => self.on_event(event),
                    None => events_open = false,
                },
                () = async { drop(shutdown.wait_for(|s| *s).await) } => break,
            }
        }
        // Dropping the workers' stop senders ends every probe task (they also watch shutdown).
        self.workers.clear();
        tracing::debug!("health checker stopped");
    }

    /// Starts, restarts and stops probe tasks to match the current snapshot's servers.
    fn reconcile(&mut self) {
        let snapshot = self.snapshot.load_full();
        let settings = (self.settings_of)(&snapshot.config);
        let servers = &snapshot.config.servers;
        let metrics = &self.metrics;
        self.workers.retain(|name, _| {
            let keep = servers.iter().any(|s| *s.name == **name);
            if !keep {
                tracing::info!(server = %name, "server left the config: no longer probed");
                metrics.servers.remove(name);
            }
            keep
        });
        for server in servers {
            let probe = settings.probe_settings(server);
            let current = self.workers.get(server.name.as_str());
            if current.is_some_and(|w| w.settings == probe && w.interval == settings.interval) {
                continue;
            }
            let name: Arc<str> = Arc::from(server.name.as_str());
            let worker = self.start_worker(name.clone(), probe, settings.interval);
            self.workers.insert(name, worker);
        }
        if !self.split_brain && snapshot.topology.split_brain {
            tracing::error!(
                "split brain after a reload: more than one server claims to be the primary; writes are refused"
            );
        }
        self.count_split_brain(&snapshot.topology);
        self.refresh_metrics(&snapshot.topology);
    }

    /// Counts a split brain that `topology` begins (a probe or a reload may begin one).
    fn count_split_brain(&mut self, topology: &Topology) {
        if topology.split_brain && !self.split_brain {
            self.metrics.servers.split_brains_total.inc();
        }
        self.split_brain = topology.split_brain;
    }

    /// Spawns the probe task of one server.
    fn start_worker(&mut self, server: Arc<str>, probe: ProbeSettings, every: Duration) -> Worker {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let probe_now = Arc::new(Notify::new());
        let (stop_tx, stop) = oneshot::channel();
        tracing::debug!(server = %server, addr = %probe.addr, "probing server");
        let task = ProbeTask {
            server: server.clone(),
            epoch,
            prober: Prober::new(probe.clone()),
            every,
            probe_now: probe_now.clone(),
            stop,
            shutdown: self.shutdown.clone(),
            start: self.start,
            reports: self.reports_tx.clone(),
        };
        let span = tracing::info_span!("probe", server = %server);
        tokio::spawn(task.run().instrument(span));
        Worker {
            epoch,
            settings: probe,
            interval: every,
            probe_now,
            _stop: stop_tx,
            metrics: self.metrics.servers.server(&server),
        }
    }

    fn on_report(&mut self, report: Report) {
        let Some(worker) = self.workers.get(&report.server) else {
            return;
        };
        if worker.epoch != report.epoch {
            return;
        }
        let (probe, why) = match report.outcome {
            Ok(status) => {
                worker.metrics.checks_ok.inc();
                let probe = Probe::Ok {
                    in_recovery: status.in_recovery,
                    lsn: status.position.map(Lsn),
                };
                (probe, None)
            }
            Err(e) => {
                worker.metrics.checks_failed.inc();
                tracing::debug!(server = %report.server, error = %e, "health probe failed");
                (Probe::Failed, Some(e.to_string()))
            }
        };
        let at = report.at;
        let node_report = |node| HealthReport { node, at, probe };
        self.apply(&report.server, why.as_deref(), |t, i| {
            t.apply_health(node_report(i))
        });
    }

    fn on_event(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Failed { server } => {
                let at = self.now();
                let everyone = self.apply(
                    &server,
                    Some("a connection on real traffic failed"),
                    |t, i| t.mark_down(i, at),
                );
                // Probed again at once (with every other server when it was the primary).
                if !everyone && let Some(w) = self.workers.get(server.as_str()) {
                    w.probe_now.notify_one();
                }
            }
            ServerEvent::Suspect { server } => {
                if let Some(w) = self.workers.get(server.as_str()) {
                    w.probe_now.notify_one();
                }
            }
            ServerEvent::ReadOnly { server } => {
                tracing::info!(
                    server = %server,
                    "a write was refused as read-only: re-checking every server's role"
                );
                self.probe_everyone();
            }
        }
    }

    /// Time on the topology's clock.
    fn now(&self) -> Duration {
        Instant::now().duration_since(self.start)
    }

    /// Applies `change` to the node named `server` in the current snapshot (looked up by name
    /// in the snapshot being replaced, since a reload may reorder servers), publishes the
    /// result, then logs the changes and updates the metrics. Returns whether it lost the usable
    /// primary, and so asked every server to be probed again at once.
    fn apply(
        &mut self,
        server: &str,
        why: Option<&str>,
        change: impl Fn(&mut Topology, usize) -> Changes,
    ) -> bool {
        let mut outcome = None;
        self.snapshot.rcu(|current| {
            let Some(i) = current.server_index(server) else {
                outcome = None;
                return Arc::clone(current);
            };
            let mut topology = Topology::clone(&current.topology);
            let changes = change(&mut topology, i);
            let next = Arc::new(current.with_topology(topology));
            outcome = Some((i, changes, current.topology.clone(), next.topology.clone()));
            next
        });
        let Some((i, changes, before, after)) = outcome else {
            return false;
        };
        log_changes(i, &changes, &before, &after, why);
        self.count_split_brain(&after);
        self.count_failover(&after);
        self.refresh_metrics(&after);
        // The usable primary is lost (down, in recovery, or another elected): every server's
        // role is checked again at once, so a promoted replica is found without waiting out
        // an interval. Only on the change, so a primary that stays down is not re-probed
        // everywhere at every failed probe, and at most once per interval, so one that flaps
        // (probes fine, refuses new connections) does not keep every server probed.
        let Some(lost) = before.usable_primary() else {
            return false;
        };
        if after.usable_primary() == Some(lost) {
            return false;
        }
        let now = self.now();
        let gap = self.workers.values().map(|w| w.interval).min();
        if let (Some(at), Some(gap)) = (self.rechecked_all_at, gap)
            && now.saturating_sub(at) < gap
        {
            return false;
        }
        self.rechecked_all_at = Some(now);
        tracing::info!(
            server = %before.nodes[lost].name,
            "the primary is lost: re-checking every server's role"
        );
        self.probe_everyone();
        true
    }

    /// Wakes every probe task for a probe now.
    fn probe_everyone(&self) {
        for w in self.workers.values() {
            w.probe_now.notify_one();
        }
    }

    /// Counts a failover when the detected primary is another server than the last one.
    fn count_failover(&mut self, topology: &Topology) {
        let Some(node) = topology.primary.map(|i| &topology.nodes[i]) else {
            return;
        };
        if node.detected_role != Some(NodeRole::Primary) {
            return;
        }
        if let Some(last) = &self.last_primary
            && *last != node.name
        {
            tracing::info!(from = %last, to = %node.name, "failover: the primary changed");
            self.metrics.servers.failovers_total.inc();
        }
        if self.last_primary.as_deref() != Some(&node.name) {
            self.last_primary = Some(node.name.clone());
        }
    }

    /// Sets every server's gauges from `topology`.
    fn refresh_metrics(&self, topology: &Topology) {
        for node in &topology.nodes {
            let Some(worker) = self.workers.get(node.name.as_str()) else {
                continue;
            };
            let m = &worker.metrics;
            m.up.set(i64::from(node.is_up()));
            m.set_role(match node.detected_role {
                Some(NodeRole::Primary) => ServerRole::Primary,
                Some(NodeRole::Replica) => ServerRole::Replica,
                None => ServerRole::Unknown,
            });
            let lag = node.lag.unwrap_or_default();
            m.lag_bytes
                .set(i64::try_from(lag.bytes).unwrap_or(i64::MAX));
            m.lag_seconds.set(lag.delay.as_secs_f64());
            m.lag_excluded.set(i64::from(node.lag_excluded));
        }
        self.metrics
            .servers
            .split_brain
            .set(i64::from(topology.split_brain));
    }
}

/// Logs what one report changed. `i` is the reported node's index in both topologies.
fn log_changes(
    i: usize,
    changes: &Changes,
    before: &Topology,
    after: &Topology,
    why: Option<&str>,
) {
    let node = &after.nodes[i];
    let server = node.name.as_str();
    if changes.went_down {
        tracing::info!(server, error = why.unwrap_or(""), "server is down");
    }
    if changes.came_up {
        tracing::info!(server, "server is up again");
    }
    if changes.role_changed {
        tracing::info!(server, role = ?node.detected_role, "server changed role");
    }
    if changes.primary_changed {
        match after.primary.map(|p| &after.nodes[p]) {
            Some(p) if p.is_up() => tracing::info!(primary = %p.name, "primary is now {}", p.name),
            Some(p) => tracing::info!(primary = %p.name, "primary {} is down", p.name),
            None => tracing::info!("no primary is known"),
        }
    }
    if changes.split_brain_changed {
        if after.split_brain {
            let claimants: Vec<&str> = after
                .nodes
                .iter()
                .filter(|n| n.is_up() && n.role() == Some(NodeRole::Primary))
                .map(|n| n.name.as_str())
                .collect();
            tracing::error!(
                servers = ?claimants,
                "split brain: more than one server claims to be the primary; writes are refused"
            );
        } else {
            tracing::info!("split brain resolved");
        }
    }
    if changes.lag_excluded > 0 || changes.lag_readmitted > 0 {
        for (old, new) in before.nodes.iter().zip(&after.nodes) {
            if old.lag_excluded == new.lag_excluded {
                continue;
            }
            let lag = new.lag.unwrap_or_default();
            let (bytes, seconds) = (lag.bytes, lag.delay.as_secs_f64());
            if new.lag_excluded {
                tracing::info!(server = %new.name, lag_bytes = bytes, lag_seconds = seconds,
                    "replica over the lag limit: excluded from reads");
            } else {
                tracing::info!(server = %new.name, lag_bytes = bytes, lag_seconds = seconds,
                    "replica caught up: readmitted for reads");
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// One server's probe loop.
struct ProbeTask {
    server: Arc<str>,
    epoch: u64,
    prober: Prober,
    every: Duration,
    probe_now: Arc<Notify>,
    stop: oneshot::Receiver<()>,
    shutdown: watch::Receiver<bool>,
    start: Instant,
    reports: mpsc::UnboundedSender<Report>,
}

impl ProbeTask {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.probe_now.notified() => tick.reset(),
                _ = &mut self.stop => break,
                () = async { drop(shutdown.wait_for(|s| *s).await) } => break,
            }
            // A probe is bounded by its timeout, but stopping need not wait for it: dropping it
            // drops its connection.
            let outcome = tokio::select! {
                res = self.prober.probe() => res,
                _ = &mut self.stop => return,
                () = async { drop(shutdown.wait_for(|s| *s).await) } => return,
            };
            let report = Report {
                server: self.server.clone(),
                epoch: self.epoch,
                at: Instant::now().duration_since(self.start),
                outcome,
            };
            if self.reports.send(report).is_err() {
                break;
            }
        }
        self.prober.close().await;
    }
}
