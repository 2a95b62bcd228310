//! The topology snapshot: every server's role, health, lag and load, and how a health report changes it.
//!
//! The health checker (in `backend`) probes servers and the proxy feeds each result to
//! [`Topology::apply_health`] on a copy of the current snapshot, then publishes the copy.
//! This module only decides what a report means: down at once on failure, up after `rise`
//! consecutive successes, lag exclusion with hysteresis, and who the primary is.

use std::time::Duration;

use pgsplit_config::{Config, Role};

use crate::lag::{Lag, Lsn, WalHistory};

/// A server's health as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Takes traffic.
    Up,
    /// A probe or a real connection failed; back after `rise` consecutive good probes.
    Down,
}

/// The role a server reported (`pg_is_in_recovery()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Not in recovery: takes writes.
    Primary,
    /// In recovery: a hot standby that may take reads.
    Replica,
}

/// Replica lag limits. A replica over either limit stops taking reads and is re-admitted
/// only once it is under half of every limit (hysteresis, so it does not flap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagLimits {
    /// `lag.max_bytes`; `None` = no byte limit.
    pub max_bytes: Option<u64>,
    /// `lag.max_delay`; `None` = no time limit.
    pub max_delay: Option<Duration>,
}

impl LagLimits {
    /// Whether `lag` is over a limit (the node must be excluded).
    pub fn over(&self, lag: Lag) -> bool {
        self.max_bytes.is_some_and(|max| lag.bytes > max)
            || self.max_delay.is_some_and(|max| lag.delay > max)
    }

    /// Whether a node with this `lag` is excluded, given whether it `was`: a node gets
    /// excluded over a limit and re-admitted only under half of every limit.
    pub fn excludes(&self, was: bool, lag: Lag) -> bool {
        if was {
            !self.under_half(lag)
        } else {
            self.over(lag)
        }
    }

    /// Whether `lag` is under half of every limit (an excluded node may come back).
    pub fn under_half(&self, lag: Lag) -> bool {
        let bytes_ok = self
            .max_bytes
            .is_none_or(|max| lag.bytes == 0 || u128::from(lag.bytes) * 2 < u128::from(max));
        let delay_ok = self
            .max_delay
            .is_none_or(|max| lag.delay.is_zero() || lag.delay * 2 < max);
        bytes_ok && delay_ok
    }
}

/// How health reports are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthParams {
    /// Consecutive successful probes a down server needs to come back (`health.rise`, at
    /// least 1).
    pub rise: u32,
    /// Lag limits for replicas.
    pub lag: LagLimits,
}

impl HealthParams {
    /// `health.rise` and the `lag` limits of `config`.
    pub fn from_config(config: &Config) -> Self {
        HealthParams {
            rise: config.health.rise.max(1),
            lag: LagLimits {
                max_bytes: Some(config.lag.max_bytes),
                max_delay: Some(config.lag.max_delay),
            },
        }
    }
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams {
            rise: 2,
            lag: LagLimits::default(),
        }
    }
}

/// One server and everything routing knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The configured name (metrics, logs).
    pub name: String,
    /// The role written in the config.
    pub configured_role: Role,
    /// The role the server last reported; `None` until the first good probe.
    pub detected_role: Option<NodeRole>,
    /// Up or down.
    pub health: Health,
    /// Consecutive successful probes since the last failure.
    pub successes: u32,
    /// Balancing weight (at least 1).
    pub weight: u32,
    /// The most connections pgsplit may have open to this server.
    pub max_connections: usize,
    /// Server connections currently checked out (kept current by the caller).
    pub busy: usize,
    /// The last WAL position reported: the replay position of a replica, the current
    /// write position of the primary.
    pub lsn: Option<Lsn>,
    /// Replica lag, when both its position and the primary's are known.
    pub lag: Option<Lag>,
    /// Over a lag limit and not yet back under half of it: takes no reads.
    pub lag_excluded: bool,
    /// The routing session's own pool on this server (its user and database) has every one
    /// of its `pool.size` connections checked out (kept current by the caller, like `busy`).
    pub pool_full: bool,
}

impl Node {
    /// A node from its config entry, up, with no detected role and no load.
    pub fn from_server(server: &pgsplit_config::Server) -> Self {
        Node {
            name: server.name.clone(),
            configured_role: server.role,
            detected_role: None,
            health: Health::Up,
            successes: 0,
            weight: server.weight.max(1),
            max_connections: server.max_connections,
            busy: 0,
            lsn: None,
            lag: None,
            lag_excluded: false,
            pool_full: false,
        }
    }

    /// The role routing uses: the detected one, else the configured one (`auto` is unknown
    /// until detected).
    pub fn role(&self) -> Option<NodeRole> {
        self.detected_role.or(match self.configured_role {
            Role::Primary => Some(NodeRole::Primary),
            Role::Replica => Some(NodeRole::Replica),
            Role::Auto => None,
        })
    }

    /// Whether the node is up.
    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }

    /// Whether it can take no more work now: every connection pgsplit may open to it is in
    /// use, or the routing session's pool on it is.
    pub fn is_full(&self) -> bool {
        self.pool_full || self.server_full()
    }

    /// Whether every connection pgsplit may open to it is in use.
    pub fn server_full(&self) -> bool {
        self.busy >= self.max_connections
    }
}

/// A health probe result for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// Index into [`Topology::nodes`].
    pub node: usize,
    /// When the probe finished, on the caller's clock.
    pub at: Duration,
    /// What the probe found.
    pub probe: Probe,
}

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The server answered.
    Ok {
        /// `pg_is_in_recovery()`.
        in_recovery: bool,
        /// `pg_last_wal_replay_lsn()` on a replica, `pg_current_wal_lsn()` on a primary.
        lsn: Option<Lsn>,
    },
    /// Connect error, timeout, or an error on real traffic: down at once.
    Failed,
}

/// What a report changed, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The node went down.
    pub went_down: bool,
    /// The node came back up.
    pub came_up: bool,
    /// The node reported a different role.
    pub role_changed: bool,
    /// [`Topology::primary`] changed (a failover, or the primary became known or unknown).
    pub primary_changed: bool,
    /// [`Topology::split_brain`] changed.
    pub split_brain_changed: bool,
    /// Nodes newly excluded for lag.
    pub lag_excluded: usize,
    /// Nodes re-admitted after lag exclusion.
    pub lag_readmitted: usize,
}

/// A consistent view of all servers, as routing sees it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The servers, in config order; indexes are stable for the snapshot's lifetime.
    pub nodes: Vec<Node>,
    /// The one up server claiming primary (or, while none is up, the one down server with
    /// the primary role); `None` when unknown or during split brain.
    pub primary: Option<usize>,
    /// More than one up server claims to be the primary: writes are refused.
    pub split_brain: bool,
    /// How reports are interpreted.
    pub params: HealthParams,
    /// Recent positions of the current primary, for time lag.
    history: WalHistory,
    /// The node whose positions `history` holds.
    history_node: Option<usize>,
    /// `host:port` of each node when built from a config (empty otherwise), so a reload
    /// can tell a server that moved from one that stayed.
    addrs: Vec<String>,
}

impl Topology {
    /// The topology of a config before any probe: every server up, with its configured
    /// role, no load and no lag known; `health.rise` and the `lag` limits from the config.
    pub fn from_config(config: &Config) -> Self {
        let mut topology = Topology::new(
            config.servers.iter().map(Node::from_server).collect(),
            HealthParams::from_config(config),
        );
        topology.addrs = config.servers.iter().map(|s| s.addr()).collect();
        topology
    }

    /// The topology of a reloaded `config`, keeping what `old` learned about servers that
    /// stayed.
    ///
    /// A server stayed when the new config has one with the same name and the same
    /// `host:port` (when `old` was not built from a config, the same name is enough). It
    /// keeps its detected role, health, run of good probes, WAL position, lag, lag
    /// exclusion and busy count; its weight, `max_connections` and configured role come
    /// from the new config. Other servers start as in [`Topology::from_config`]. The
    /// primary's WAL history is kept when the server it belongs to stayed. The primary is
    /// elected again, and lag exclusions are re-checked against the new limits (with the
    /// usual hysteresis).
    pub fn carry_over(config: &Config, old: &Topology) -> Topology {
        let mut new = Topology::from_config(config);
        let mut old_index_of = vec![None; new.nodes.len()];
        for (i, node) in new.nodes.iter_mut().enumerate() {
            let stayed = old.nodes.iter().enumerate().find(|(j, before)| {
                before.name == node.name && old.addrs.get(*j).is_none_or(|a| *a == new.addrs[i])
            });
            let Some((j, before)) = stayed else { continue };
            old_index_of[i] = Some(j);
            node.detected_role = before.detected_role;
            node.health = before.health;
            node.successes = before.successes;
            node.busy = before.busy;
            node.lsn = before.lsn;
            node.lag = before.lag;
            node.lag_excluded = before.lag_excluded;
        }
        if let Some(old_node) = old.history_node
            && let Some(i) = old_index_of.iter().position(|j| *j == Some(old_node))
        {
            new.history = old.history.clone();
            new.history_node = Some(i);
        }
        new.elect();
        let limits = new.params.lag;
        for node in &mut new.nodes {
            if node.role() == Some(NodeRole::Replica)
                && let Some(lag) = node.lag
            {
                node.lag_excluded = limits.excludes(node.lag_excluded, lag);
            }
        }
        new
    }

    /// A topology of these nodes; the primary is derived from their roles and health.
    pub fn new(nodes: Vec<Node>, params: HealthParams) -> Self {
        let mut topology = Topology {
            nodes,
            primary: None,
            split_brain: false,
            params,
            history: WalHistory::default(),
            history_node: None,
            addrs: Vec::new(),
        };
        topology.elect();
        topology
    }

    /// The primary, if it is known and up (and there is no split brain).
    pub fn usable_primary(&self) -> Option<usize> {
        self.primary.filter(|&i| self.nodes[i].is_up())
    }

    /// Marks a node down at once (a connect error or failure on real traffic).
    pub fn mark_down(&mut self, node: usize, at: Duration) -> Changes {
        self.apply_health(HealthReport {
            node,
            at,
            probe: Probe::Failed,
        })
    }

    /// Applies one probe result and returns what changed. A report for an unknown node
    /// index changes nothing.
    pub fn apply_health(&mut self, report: HealthReport) -> Changes {
        let mut changes = Changes::default();
        let rise = self.params.rise.max(1);
        let Some(node) = self.nodes.get_mut(report.node) else {
            return changes;
        };
        let mut primary_sample = None;
        match report.probe {
            Probe::Failed => {
                node.successes = 0;
                if node.health == Health::Up {
                    node.health = Health::Down;
                    changes.went_down = true;
                }
            }
            Probe::Ok { in_recovery, lsn } => {
                node.successes = node.successes.saturating_add(1);
                if node.health == Health::Down && node.successes >= rise {
                    node.health = Health::Up;
                    changes.came_up = true;
                }
                let role = if in_recovery {
                    NodeRole::Replica
                } else {
                    NodeRole::Primary
                };
                if node.detected_role != Some(role) {
                    changes.role_changed = node.detected_role.is_some();
                    node.detected_role = Some(role);
                }
                node.lsn = lsn;
                if role == NodeRole::Primary {
                    node.lag = None;
                    node.lag_excluded = false;
                    primary_sample = lsn;
                }
            }
        }
        let before = (self.primary, self.split_brain);
        self.elect();
        changes.primary_changed = before.0 != self.primary;
        changes.split_brain_changed = before.1 != self.split_brain;
        if let Some(lsn) = primary_sample.filter(|_| self.primary == Some(report.node)) {
            // Positions of different servers are not comparable in time: a new primary
            // starts a new history.
            if self.history_node != Some(report.node) {
                self.history.clear();
                self.history_node = Some(report.node);
            }
            self.history.record(report.at, lsn);
        }
        self.update_lag(report.at, &mut changes);
        changes
    }

    /// Recomputes [`Topology::primary`] and [`Topology::split_brain`] from roles and health.
    fn elect(&mut self) {
        let claims = |up: bool| {
            self.nodes
                .iter()
                .enumerate()
                .filter(move |(_, n)| n.is_up() == up && n.role() == Some(NodeRole::Primary))
                .map(|(i, _)| i)
        };
        let mut up = claims(true);
        match (up.next(), up.next()) {
            (Some(i), None) => {
                self.primary = Some(i);
                self.split_brain = false;
            }
            (Some(_), Some(_)) => {
                self.primary = None;
                self.split_brain = true;
            }
            (None, _) => {
                let mut down = claims(false);
                self.primary = match (down.next(), down.next()) {
                    (Some(i), None) => Some(i),
                    _ => None,
                };
                self.split_brain = false;
            }
        }
    }

    /// Recomputes every replica's lag and lag exclusion at time `now`.
    fn update_lag(&mut self, now: Duration, changes: &mut Changes) {
        let limits = self.params.lag;
        for node in &mut self.nodes {
            if node.role() != Some(NodeRole::Replica) {
                continue;
            }
            node.lag = node.lsn.and_then(|lsn| self.history.lag(lsn, now));
            // Unknown lag changes nothing: a replica is neither excluded nor re-admitted
            // on missing data.
            let Some(lag) = node.lag else { continue };
            let excluded = limits.excludes(node.lag_excluded, lag);
            match (node.lag_excluded, excluded) {
                (false, true) => changes.lag_excluded += 1,
                (true, false) => changes.lag_readmitted += 1,
                _ => {}
            }
            node.lag_excluded = excluded;
        }
    }
}
