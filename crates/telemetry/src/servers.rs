//! Metric families about servers as the health checker sees them: up, role, lag, failovers, split brain.
//!
//! The health checker resolves one [`ServerHandles`] per server when it starts probing it and
//! sets values through the handles, so no label lookup happens per probe. When a server leaves
//! the config, [`ServerMetrics::remove`] drops its series.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::families::Families;

/// A server's role as exported in `pgsplit_server_role{role}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRole {
    /// Not in recovery.
    Primary,
    /// In recovery (a hot standby).
    Replica,
    /// Not probed successfully yet.
    Unknown,
}

impl ServerRole {
    /// The `role` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Primary => "primary",
            ServerRole::Replica => "replica",
            ServerRole::Unknown => "unknown",
        }
    }

    const ALL: [ServerRole; 3] = [
        ServerRole::Primary,
        ServerRole::Replica,
        ServerRole::Unknown,
    ];
}

/// The server families, registered in the [`crate::Metrics`] registry.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    up: IntGaugeVec,
    role: IntGaugeVec,
    lag_bytes: IntGaugeVec,
    lag_seconds: GaugeVec,
    lag_excluded: IntGaugeVec,
    checks: IntCounterVec,
    /// Times the primary changed from one known server to another.
    pub failovers_total: IntCounter,
    /// 1 while more than one server claims to be the primary (writes are refused).
    pub split_brain: IntGauge,
    /// Times a split brain began.
    pub split_brains_total: IntCounter,
}

/// The series of one server, resolved once.
#[derive(Clone, Debug)]
pub struct ServerHandles {
    /// `pgsplit_server_up{server}`: 1 up, 0 down.
    pub up: IntGauge,
    /// `pgsplit_server_role{server,role}`, one gauge per role in [`ServerRole`] order.
    roles: [IntGauge; 3],
    /// `pgsplit_replica_lag_bytes{server}`.
    pub lag_bytes: IntGauge,
    /// `pgsplit_replica_lag_seconds{server}`.
    pub lag_seconds: Gauge,
    /// `pgsplit_replica_lag_excluded{server}`: 1 while the replica takes no reads for lag.
    pub lag_excluded: IntGauge,
    /// `pgsplit_health_checks_total{server,result="ok"}`.
    pub checks_ok: IntCounter,
    /// `pgsplit_health_checks_total{server,result="failed"}`.
    pub checks_failed: IntCounter,
}

impl ServerHandles {
    /// Sets the role gauge of `role` to 1 and the others to 0.
    pub fn set_role(&self, role: ServerRole) {
        for (gauge, r) in self.roles.iter().zip(ServerRole::ALL) {
            gauge.set(i64::from(r == role));
        }
    }
}

impl ServerMetrics {
    /// Creates the families and registers them in `families`.
    pub(crate) fn new(families: &Families) -> ServerMetrics {
        let int_vec = |name: &str, help: &str, labels: &[&str]| {
            families
                .register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        ServerMetrics {
            up: int_vec(
                "pgsplit_server_up",
                "Whether the server is up (1) or down (0) as the health checker sees it.",
                &["server"],
            ),
            role: int_vec(
                "pgsplit_server_role",
                "1 for the role the server last reported (primary, replica, or unknown before the first good probe).",
                &["server", "role"],
            ),
            lag_bytes: int_vec(
                "pgsplit_replica_lag_bytes",
                "Bytes of WAL the replica has not replayed yet (0 on the primary and while unknown).",
                &["server"],
            ),
            lag_seconds: families.register(GaugeVec::new(
                    Opts::new(
                        "pgsplit_replica_lag_seconds",
                        "How long ago the primary was at the replica's replay position (0 when caught up or unknown).",
                    ),
                    &["server"],
                )
                .expect("valid metric"),
            ),
            lag_excluded: int_vec(
                "pgsplit_replica_lag_excluded",
                "1 while the replica takes no reads because it is over a lag limit.",
                &["server"],
            ),
            checks: families.register(IntCounterVec::new(
                    Opts::new(
                        "pgsplit_health_checks_total",
                        "Health probes by server and result (ok, failed).",
                    ),
                    &["server", "result"],
                )
                .expect("valid metric"),
            ),
            failovers_total: families.register(IntCounter::with_opts(Opts::new(
                    "pgsplit_failovers_total",
                    "Times the primary changed from one known server to another.",
                ))
                .expect("valid metric"),
            ),
            split_brain: families.register(IntGauge::with_opts(Opts::new(
                    "pgsplit_split_brain",
                    "1 while more than one server claims to be the primary.",
                ))
                .expect("valid metric"),
            ),
            split_brains_total: families.register(IntCounter::with_opts(Opts::new(
                    "pgsplit_split_brains_total",
                    "Times more than one server began to claim to be the primary.",
                ))
                .expect("valid metric"),
            ),
        }
    }

    /// The series of `server`, created if new.
    pub fn server(&self, server: &str) -> ServerHandles {
        ServerHandles {
            up: self.up.with_label_values(&[server]),
            roles: ServerRole::ALL.map(|r| self.role.with_label_values(&[server, r.as_str()])),
            lag_bytes: self.lag_bytes.with_label_values(&[server]),
            lag_seconds: self.lag_seconds.with_label_values(&[server]),
            lag_excluded: self.lag_excluded.with_label_values(&[server]),
            checks_ok: self.checks.with_label_values(&[server, "ok"]),
            checks_failed: self.checks.with_label_values(&[server, "failed"]),
        }
    }

    /// Drops every series of `server` (it left the config).
    pub fn remove(&self, server: &str) {
        let _ = self.up.remove_label_values(&[server]);
        for r in ServerRole::ALL {
            let _ = self.role.remove_label_values(&[server, r.as_str()]);
        }
        let _ = self.lag_bytes.remove_label_values(&[server]);
        let _ = self.lag_seconds.remove_label_values(&[server]);
        let _ = self.lag_excluded.remove_label_values(&[server]);
        let _ = self.checks.remove_label_values(&[server, "ok"]);
        let _ = self.checks.remove_label_values(&[server, "failed"]);
    }
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    use super::ServerRole;

    #[test]
    fn handles_write_labelled_series() {
        let m = Metrics::new();
        let h = m.servers.server("replica1");
        h.up.set(1);
        h.set_role(ServerRole::Replica);
        h.lag_bytes.set(4096);
        h.lag_seconds.set(1.5);
        h.checks_ok.inc();
        h.checks_failed.inc();
        h.checks_failed.inc();
        m.servers.failovers_total.inc();
        let text = m.render();
        for line in [
            "pgsplit_server_up{server=\"replica1\"} 1",
            "pgsplit_server_role{role=\"replica\",server=\"replica1\"} 1",
            "pgsplit_server_role{role=\"primary\",server=\"replica1\"} 0",
            "pgsplit_server_role{role=\"unknown\",server=\"replica1\"} 0",
            "pgsplit_replica_lag_bytes{server=\"replica1\"} 4096",
            "pgsplit_replica_lag_seconds{server=\"replica1\"} 1.5",
            "pgsplit_replica_lag_excluded{server=\"replica1\"} 0",
            "pgsplit_health_checks_total{result=\"ok\",server=\"replica1\"} 1",
            "pgsplit_health_checks_total{result=\"failed\",server=\"replica1\"} 2",
            "pgsplit_failovers_total 1",
            "pgsplit_split_brain 0",
            "pgsplit_split_brains_total 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        h.set_role(ServerRole::Primary);
        let text = m.render();
        assert!(text.contains("pgsplit_server_role{role=\"primary\",server=\"replica1\"} 1"));
        assert!(text.contains("pgsplit_server_role{role=\"replica\",server=\"replica1\"} 0"));
    }

    #[test]
    fn remove_drops_a_servers_series() {
        let m = Metrics::new();
        m.servers.server("a").up.set(1);
        m.servers.server("b").up.set(1);
        m.servers.remove("a");
        let text = m.render();
        assert!(!text.contains("server=\"a\""), "{text}");
        assert!(text.contains("pgsplit_server_up{server=\"b\"} 1"), "{text}");
    }
}
