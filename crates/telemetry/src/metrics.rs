//! The Prometheus metric families pgsplit exports, registered once in one registry.
//!
//! Families grow with the features that feed them; the HTTP `/metrics` endpoint renders
//! [`Metrics::render`]. Names follow Prometheus conventions: `pgsplit_` prefix, `_total`
//! counters, `_seconds` histograms.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

use crate::connections::ConnectionMetrics;
use crate::families::Families;
use crate::servers::ServerMetrics;

/// The `role` label values of `pgsplit_query_duration_seconds`.
pub const QUERY_ROLES: [&str; 2] = ["primary", "replica"];

/// Every metric family, registered in its own registry (no process-wide default registry).
#[derive(Clone, Debug)]
pub struct Metrics {
    families: Families,
    /// Client connections currently open (authenticated or not).
    pub client_connections: IntGauge,
    /// Client connections accepted since start.
    pub client_connections_total: IntCounter,
    /// Client connections each event loop serves now, by `event_loop` (0 to `workers` - 1).
    /// Each loop resolves its own handle when it starts serving; the kernel spreads new
    /// clients over the loops' sockets.
    pub event_loop_clients: IntGaugeVec,
    /// Clients pinned to one server connection by state that cannot be replayed (temporary
    /// tables, LISTEN, SQL-level PREPARE, WITH HOLD cursors, session advisory locks).
    pub pinned_clients: IntGauge,
    /// Times a client became pinned.
    pub pins_total: IntCounter,
    /// Time spent waiting for a server connection from a pool.
    pub checkout_wait_seconds: Histogram,
    /// Checkouts that gave up after `pool.checkout_timeout` (53300).
    pub checkout_timeouts_total: IntCounter,
    /// Routing decisions by `target` (primary, replica, stay, wait, refuse) and `reason`.
    /// Resolve label handles once (`with_label_values`) and keep them; do not look them up
    /// per query.
    pub route_decisions_total: IntCounterVec,
    /// Units of SQL sent to a server, by `server`, its `role` and the statement `kind`
    /// (the classifier's class name). Resolve handles once per server, as above.
    pub queries_total: IntCounterVec,
    /// Units routed to the primary because no replica was eligible, or reads waited for a
    /// replica, by `reason` (a subset of the route reasons).
    pub route_fallbacks_total: IntCounterVec,
    /// Reads retried on another server after a replica failed before answering.
    pub read_retries_total: IntCounter,
    /// Classification cache lookups by `result` (hit, miss). Fed at scrape time from the
    /// classifier's counters through [`ConnectionMetrics::set_parse_cache_totals`].
    pub parse_cache_total: IntCounterVec,
    /// Time from sending a unit of SQL to a server until its ReadyForQuery, by the server's
    /// `role` (primary, replica). Resolve the handles once ([`Metrics::query_duration`]).
    pub query_duration_seconds: HistogramVec,
    /// Families set at scrape time: clients by state, server connections by server and
    /// state, clients queued per server, and the parse cache totals.
    pub connections: ConnectionMetrics,
    /// Server health, role and lag as the health checker sees them.
    pub servers: ServerMetrics,
    /// Config reloads (file watch, SIGHUP, console `RELOAD`) by `result`: `ok` (a new
    /// generation is served) or `failed` (the file was refused; the old config stays). Both
    /// series exist from the start, at 0.
    pub config_reloads_total: IntCounterVec,
    /// The generation of the config being served: 1 at start, one more per successful reload.
    pub config_generation: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let families = Families::default();
        let gauge = |name: &str, help: &str| {
            families.register(IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            families.register(IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"))
        };
        let client_connections = gauge("pgsplit_client_connections", "Client connections open.");
        let client_connections_total = counter(
            "pgsplit_client_connections_total",
            "Client connections accepted.",
        );
        let event_loop_clients = families.register(
            IntGaugeVec::new(
                Opts::new(
                    "pgsplit_event_loop_clients",
                    "Client connections each event loop serves now.",
                ),
                &["event_loop"],
            )
            .expect("valid metric"),
        );
        let pinned_clients = gauge(
            "pgsplit_pinned_clients",
            "Clients pinned to one server connection by session state that cannot be replayed.",
        );
        let pins_total = counter("pgsplit_pins_total", "Times a client became pinned.");
        let checkout_timeouts_total = counter(
            "pgsplit_checkout_timeouts_total",
            "Server connection checkouts that timed out (SQLSTATE 53300).",
        );
        let checkout_wait_seconds = families.register(
            Histogram::with_opts(
                HistogramOpts::new(
                    "pgsplit_checkout_wait_seconds",
                    "Time waiting for a server connection from a pool.",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
                ]),
            )
            .expect("valid metric"),
        );
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            families
                .register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let route_decisions_total = counter_vec(
            "pgsplit_route_decisions_total",
            "Routing decisions by target and reason.",
            &["target", "reason"],
        );
        let queries_total = counter_vec(
            "pgsplit_queries_total",
            "Units of SQL sent to a server, by server, role and statement kind.",
            &["server", "role", "kind"],
        );
        let route_fallbacks_total = counter_vec(
            "pgsplit_route_fallbacks_total",
            "Reads that could not go to a replica as usual, by reason.",
            &["reason"],
        );
        let read_retries_total = counter(
            "pgsplit_read_retries_total",
            "Reads retried on another server after a replica failed before answering.",
        );
        let parse_cache_total = counter_vec(
            "pgsplit_parse_cache_total",
            "Classification cache lookups by result (hit, miss).",
            &["result"],
        );
        let query_duration_seconds = families.register(HistogramVec::new(
            HistogramOpts::new(
                "pgsplit_query_duration_seconds",
                "Time from sending a unit of SQL to a server until its ReadyForQuery, by server role.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["role"],
        )
        .expect("valid metric"));
        for role in QUERY_ROLES {
            query_duration_seconds.with_label_values(&[role]);
        }
        let connections = ConnectionMetrics::new(&families, &parse_cache_total);
        let servers = ServerMetrics::new(&families);
        let config_reloads_total = counter_vec(
            "pgsplit_config_reloads_total",
            "Config reloads by result (ok: applied; failed: refused, the old config stays).",
            &["result"],
        );
        for result in ["ok", "failed"] {
            config_reloads_total.with_label_values(&[result]);
        }
        let config_generation = gauge(
            "pgsplit_config_generation",
            "Generation of the config being served (1 at start, +1 per successful reload).",
        );
        config_generation.set(1);
        Metrics {
            servers,
            families,
            config_reloads_total,
            config_generation,
            route_decisions_total,
            queries_total,
            route_fallbacks_total,
            read_retries_total,
            parse_cache_total,
            query_duration_seconds,
            connections,
            client_connections,
            client_connections_total,
            event_loop_clients,
            pinned_clients,
            pins_total,
            checkout_wait_seconds,
            checkout_timeouts_total,
        }
    }

    /// The names of every family pgsplit exports, sorted (including families with labels
    /// that have no series yet and so are not in a scrape).
    pub fn family_names(&self) -> Vec<String> {
        self.families.names()
    }

    /// The `pgsplit_query_duration_seconds` series of `role` (`primary` or `replica`).
    /// Resolve it once and keep it: this looks the label up.
    pub fn query_duration(&self, role: &str) -> Histogram {
        self.query_duration_seconds.with_label_values(&[role])
    }

    /// Every family in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.families.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = Metrics::new();
        m.pinned_clients.inc();
        m.checkout_wait_seconds.observe(0.002);
        let text = m.render();
        assert!(text.contains("# TYPE pgsplit_pinned_clients gauge"));
        assert!(text.contains("pgsplit_pinned_clients 1"));
        assert!(text.contains("# TYPE pgsplit_checkout_wait_seconds histogram"));
        assert!(text.contains("pgsplit_checkout_wait_seconds_count 1"));
        assert!(text.contains("# HELP pgsplit_client_connections_total"));
    }

    #[test]
    fn family_names_include_families_without_series() {
        let m = Metrics::new();
        let names = m.family_names();
        // Labelled families with no series yet are not rendered, but are named.
        assert!(!m.render().contains("pgsplit_queries_total"));
        for name in [
            "pgsplit_queries_total",
            "pgsplit_server_up",
            "pgsplit_clients",
            "pgsplit_client_connections",
            "pgsplit_query_duration_seconds",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing in {names:?}"
            );
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, each once");
    }

    #[test]
    fn query_duration_has_both_roles_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("# TYPE pgsplit_query_duration_seconds histogram"));
        for role in QUERY_ROLES {
            let line = format!("pgsplit_query_duration_seconds_count{{role=\"{role}\"}} 0");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        let replica = m.query_duration("replica");
        replica.observe(0.003);
        replica.observe(0.2);
        let text = m.render();
        assert!(
            text.contains("pgsplit_query_duration_seconds_count{role=\"replica\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pgsplit_query_duration_seconds_bucket{role=\"replica\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pgsplit_query_duration_seconds_count{role=\"primary\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn reload_families_exist_before_any_reload() {
        let m = Metrics::new();
        let text = m.render();
        assert!(
            text.contains("pgsplit_config_reloads_total{result=\"ok\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("pgsplit_config_reloads_total{result=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("pgsplit_config_generation 1"), "{text}");
        m.config_reloads_total.with_label_values(&["failed"]).inc();
        assert!(
            m.render()
                .contains("pgsplit_config_reloads_total{result=\"failed\"} 1")
        );
    }

    #[test]
    fn two_instances_do_not_share_values() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.pins_total.inc();
        assert_eq!(b.pins_total.get(), 0);
    }
}
