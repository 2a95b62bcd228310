//! What `/metrics` reads off live state right before rendering: clients by state from the
//! client registry, server connections and queued checkouts from the pools (summed per
//! server), and the classification cache totals from the classifier.

use std::collections::BTreeMap;

use pgsplit_session::Ctx;
use pgsplit_telemetry::ServerConnections;

/// Sets the scrape-time families of `ctx.metrics` from `ctx`'s registries.
pub(crate) fn refresh(ctx: &Ctx) {
    let connections = &ctx.metrics.connections;
    connections.set_clients(ctx.clients.counts());
    let snapshot = ctx.snapshot.load();
    // Every configured server has series (at 0 before its first pool); a server that left
    // the config keeps them while its pools still hold connections.
    let mut servers: BTreeMap<String, ServerConnections> = snapshot
        .config
        .servers
        .iter()
        .map(|s| (s.name.clone(), ServerConnections::default()))
        .collect();
    for pool in ctx.pools.stats() {
        let held = pool.open + pool.waiting;
        let known = servers.contains_key(pool.key.server());
        if !known && held == 0 {
            continue;
        }
        servers
            .entry(pool.key.server().to_string())
            .or_default()
            .add(ServerConnections {
                active: pool.busy as u64,
                idle: pool.idle as u64,
                connecting: pool.connecting as u64,
                waiting_clients: pool.waiting as u64,
            });
    }
    connections.set_servers(&servers);
    let cache = snapshot.routing.classifier.cache_counters();
    connections.set_parse_cache_totals(cache.hits(), cache.misses());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgsplit_session::{Activity, Ctx, NewClient};
    use pgsplit_telemetry::Metrics;
    use tokio::sync::watch;

    use super::refresh;

    const YAML: &str = "users:\n  - name: app\n    password: app\nservers:\n  \
        - { name: main, host: 127.0.0.1, port: 1, role: primary }\n  \
        - { name: standby, host: 127.0.0.1, port: 2, role: replica }\n";

    fn client(id: u32) -> NewClient {
        NewClient {
            id,
            user: "app".into(),
            database: "app".into(),
            application_name: String::new(),
            addr: None,
        }
    }

    #[tokio::test]
    async fn refresh_reads_clients_servers_and_the_parse_cache() {
        let config = pgsplit_config::parse(YAML, "t.yaml").unwrap();
        let (_tx, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let (ctx, _inbox) = Ctx::new(config, metrics.clone(), rx);
        let a = ctx.clients.register(client(1));
        let b = ctx.clients.register(client(2));
        let _c = ctx.clients.register(client(3));
        a.set_activity(Activity::Active);
        b.set_activity(Activity::Waiting);
        let classifier = &ctx.snapshot.load().routing.classifier;
        for _ in 0..3 {
            classifier.classify("SELECT 1");
        }
        refresh(&ctx);
        let text = metrics.render();
        for line in [
            "pgsplit_clients{state=\"active\"} 1",
            "pgsplit_clients{state=\"idle\"} 1",
            "pgsplit_clients{state=\"waiting\"} 1",
            "pgsplit_server_connections{server=\"main\",state=\"idle\"} 0",
            "pgsplit_server_connections{server=\"standby\",state=\"active\"} 0",
            "pgsplit_pool_waiting_clients{server=\"standby\"} 0",
            "pgsplit_parse_cache_total{result=\"hit\"} 2",
            "pgsplit_parse_cache_total{result=\"miss\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // A reload: a new classifier with an empty cache, the totals carry on.
        let current = ctx.snapshot.load_full();
        let reloaded = current.reload(pgsplit_config::parse(YAML, "t.yaml").unwrap());
        ctx.snapshot.store(Arc::new(reloaded));
        ctx.snapshot.load().routing.classifier.classify("SELECT 1");
        drop((a, b));
        refresh(&ctx);
        let text = metrics.render();
        for line in [
            "pgsplit_clients{state=\"active\"} 0",
            "pgsplit_clients{state=\"idle\"} 1",
            "pgsplit_parse_cache_total{result=\"hit\"} 2",
            "pgsplit_parse_cache_total{result=\"miss\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
