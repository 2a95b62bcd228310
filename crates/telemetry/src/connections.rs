//! Metric families computed at scrape time: clients by state, server connections by server and
//! state, clients queued per server, and the classification cache totals.
//!
//! Nothing on the data path records into these. The composition root reads the client
//! registry, the pools and the classifier's counters right before `/metrics` renders, and
//! hands the numbers to [`ConnectionMetrics`]; series of servers that are gone are dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::families::Families;

/// Client states as `pgsplit_clients{state}` labels them.
pub const CLIENT_STATES: [&str; 3] = ["active", "idle", "waiting"];

/// Server connection states as `pgsplit_server_connections{state}` labels them.
pub const SERVER_STATES: [&str; 3] = ["active", "idle", "connecting"];

/// How many authenticated clients are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Holding a server connection.
    pub active: u64,
    /// Holding none and waiting for none.
    pub idle: u64,
    /// Waiting for a server connection (pool queue, or `PAUSE`).
    pub waiting: u64,
}

/// The connections of one server, summed over its pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerConnections {
    /// Checked out by a client.
    pub active: u64,
    /// Open and waiting in a pool.
    pub idle: u64,
    /// Being opened (TCP connect, authentication, startup).
    pub connecting: u64,
    /// Checkouts queued for a connection to this server.
    pub waiting_clients: u64,
}

impl ServerConnections {
    /// Adds `other` to these.
    pub fn add(&mut self, other: ServerConnections) {
        self.active += other.active;
        self.idle += other.idle;
        self.connecting += other.connecting;
        self.waiting_clients += other.waiting_clients;
    }
}

/// The scrape-time families, registered in the [`crate::Metrics`] registry.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    /// `pgsplit_clients{state}`, in [`CLIENT_STATES`] order.
    clients: [IntGauge; 3],
    server_connections: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    /// `pgsplit_parse_cache_total{result="hit"}` and `{result="miss"}`.
    cache: [IntCounter; 2],
    /// Serialises scrapes: counters advance by the difference to the last scrape, which
    /// two concurrent scrapes must not both add.
    scrape: Arc<Mutex<()>>,
}

impl ConnectionMetrics {
    /// Creates the families (the parse cache counter is registered by the caller, which owns
    /// it as a public field) and registers them in `families`.
    pub(crate) fn new(
        families: &Families,
        parse_cache_total: &prometheus::IntCounterVec,
    ) -> ConnectionMetrics {
        let int_vec = |name: &str, help: &str, labels: &[&str]| {
            families
                .register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let clients = int_vec(
            "pgsplit_clients",
            "Authenticated client connections by state (active: holds a server connection; idle; waiting: queued for one).",
            &["state"],
        );
        ConnectionMetrics {
            clients: CLIENT_STATES.map(|s| clients.with_label_values(&[s])),
            server_connections: int_vec(
                "pgsplit_server_connections",
                "Server connections by server and state (active: checked out; idle: pooled; connecting: being opened).",
                &["server", "state"],
            ),
            pool_waiting: int_vec(
                "pgsplit_pool_waiting_clients",
                "Checkouts queued for a connection to the server.",
                &["server"],
            ),
            cache: ["hit", "miss"].map(|r| parse_cache_total.with_label_values(&[r])),
            scrape: Arc::new(Mutex::new(())),
        }
    }

    /// Sets `pgsplit_clients{state}`.
    pub fn set_clients(&self, counts: ClientCounts) {
        let _scrape = self.scrape.lock();
        for (gauge, n) in self
            .clients
            .iter()
            .zip([counts.active, counts.idle, counts.waiting])
        {
            gauge.set(as_i64(n));
        }
    }

    /// Sets `pgsplit_server_connections{server,state}` and `pgsplit_pool_waiting_clients`
    /// for every server in `servers` (configured servers with no pool yet belong in it, at
    /// zero) and drops the series of servers not in it.
    pub fn set_servers(&self, servers: &BTreeMap<String, ServerConnections>) {
        let _scrape = self.scrape.lock();
        for (server, c) in servers {
            for (state, n) in SERVER_STATES.iter().zip([c.active, c.idle, c.connecting]) {
                self.server_connections
                    .with_label_values(&[server.as_str(), state])
                    .set(as_i64(n));
            }
            self.pool_waiting
                .with_label_values(&[server.as_str()])
                .set(as_i64(c.waiting_clients));
        }
        for gone in labelled_servers(&self.pool_waiting)
            .into_iter()
            .chain(labelled_servers(&self.server_connections))
            .filter(|s| !servers.contains_key(s))
        {
            let _ = self.pool_waiting.remove_label_values(&[gone.as_str()]);
            for state in SERVER_STATES {
                let _ = self
                    .server_connections
                    .remove_label_values(&[gone.as_str(), state]);
            }
        }
    }

    /// Advances `pgsplit_parse_cache_total{result}` to the classifier's running totals (they
    /// never decrease; a total below the exported value is ignored).
    pub fn set_parse_cache_totals(&self, hits: u64, misses: u64) {
        let _scrape = self.scrape.lock();
        for (counter, total) in self.cache.iter().zip([hits, misses]) {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}

/// The `server` label values `vec` has series for.
fn labelled_servers(vec: &IntGaugeVec) -> Vec<String> {
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "server")
                .map(|l| l.value().to_owned())
        })
        .collect()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ClientCounts, ServerConnections};
    use crate::Metrics;

    fn conns(active: u64, idle: u64, connecting: u64, waiting: u64) -> ServerConnections {
        ServerConnections {
            active,
            idle,
            connecting,
            waiting_clients: waiting,
        }
    }

    #[test]
    fn client_states_exist_from_the_start_and_follow_the_counts() {
        let m = Metrics::new();
        let text = m.render();
        for state in ["active", "idle", "waiting"] {
            let line = format!("pgsplit_clients{{state=\"{state}\"}} 0");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        m.connections.set_clients(ClientCounts {
            active: 2,
            idle: 5,
            waiting: 1,
        });
        let text = m.render();
        assert!(
            text.contains("pgsplit_clients{state=\"active\"} 2"),
            "{text}"
        );
        assert!(text.contains("pgsplit_clients{state=\"idle\"} 5"), "{text}");
        assert!(
            text.contains("pgsplit_clients{state=\"waiting\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE pgsplit_clients gauge"), "{text}");
    }

    #[test]
    fn server_connections_are_set_per_server_and_dropped_when_gone() {
        let m = Metrics::new();
        let mut servers = BTreeMap::new();
        servers.insert("primary".to_owned(), conns(3, 2, 1, 4));
        servers.insert("replica1".to_owned(), conns(0, 0, 0, 0));
        m.connections.set_servers(&servers);
        let text = m.render();
        for line in [
            "pgsplit_server_connections{server=\"primary\",state=\"active\"} 3",
            "pgsplit_server_connections{server=\"primary\",state=\"idle\"} 2",
            "pgsplit_server_connections{server=\"primary\",state=\"connecting\"} 1",
            "pgsplit_server_connections{server=\"replica1\",state=\"idle\"} 0",
            "pgsplit_pool_waiting_clients{server=\"primary\"} 4",
            "pgsplit_pool_waiting_clients{server=\"replica1\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        servers.remove("replica1");
        servers.insert("primary".to_owned(), conns(0, 5, 0, 0));
        m.connections.set_servers(&servers);
        let text = m.render();
        assert!(!text.contains("replica1"), "{text}");
        assert!(
            text.contains("pgsplit_server_connections{server=\"primary\",state=\"idle\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("pgsplit_server_connections{server=\"primary\",state=\"active\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn parse_cache_counters_follow_totals_and_never_go_down() {
        let m = Metrics::new();
        let text = m.render();
        assert!(
            text.contains("pgsplit_parse_cache_total{result=\"hit\"} 0"),
            "{text}"
        );
        m.connections.set_parse_cache_totals(7, 3);
        m.connections.set_parse_cache_totals(7, 3);
        assert!(
            m.render()
                .contains("pgsplit_parse_cache_total{result=\"hit\"} 7")
        );
        m.connections.set_parse_cache_totals(9, 2);
        let text = m.render();
        assert!(
            text.contains("pgsplit_parse_cache_total{result=\"hit\"} 9"),
            "{text}"
        );
        assert!(
            text.contains("pgsplit_parse_cache_total{result=\"miss\"} 3"),
            "{text}"
        );
    }
}
