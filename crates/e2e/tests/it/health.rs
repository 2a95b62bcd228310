//! The health checker against real servers: roles on `/status`, replica lag in the metrics while
//! replay is paused, and a stopped replica going down and coming back.
//!
//! The fault test runs on a cluster of its own (base port 28432), brought up and down through
//! `$PGSPLIT_TEST_XTASK cluster --base-port 28432 ...` (which `cargo xtask test` sets), so the
//! shared test cluster is never paused or stopped. Without `PGSPLIT_TEST_XTASK` it skips, unless
//! `PGSPLIT_REQUIRE_CLUSTER=1` makes that a failure.

use std::time::Duration;

use pgsplit_testkit::cluster::{APP_DATABASE, APP_PASSWORD, APP_USER, cluster_required};
use pgsplit_testkit::{ClusterEnv, ProxyYaml};
use tokio::time::Instant;

use crate::harness::{bounded, bypass_proxy};
use crate::own_cluster::{OwnCluster, http_get, metric, metric_until};

/// Whether the `/status` document shows `name` up with `role` detected.
fn shows(doc: &serde_json::Value, name: &str, role: &str) -> bool {
    doc["servers"].as_array().is_some_and(|servers| {
        servers
            .iter()
            .any(|s| s["name"] == name && s["detected_role"] == role && s["health"] == "up")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_primary_and_the_replicas_up() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    if bypass_proxy() {
        eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        return;
    }
    if cluster_required() {
        assert!(!env.replicas.is_empty(), "the test cluster has replicas");
    }
    bounded(Duration::from_secs(30), "health status", async {
        let config = ProxyYaml::for_primary(&env).with_replicas(&env).config();
        let handle = pgsplit::start(config).await.expect("proxy starts");
        let admin = handle.admin_addr();
        let start = Instant::now();
        let replicas: Vec<String> = (1..=env.replicas.len())
            .map(|i| format!("replica{i}"))
            .collect();
        let doc = loop {
            let (status, body) = http_get(admin, "/status").await;
            assert_eq!(status, 200, "{body}");
            let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let all = shows(&doc, "primary", "primary")
                && replicas.iter().all(|r| shows(&doc, r, "replica"));
            if all {
                break doc;
            }
            assert!(
                Instant::now() - start < Duration::from_secs(2),
                "roles not detected within 2 s: {doc:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(doc["primary"], "primary", "{doc:#}");
        assert_eq!(doc["split_brain"], false);
        for (server, node) in doc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .zip(&env.replicas)
        {
            assert_eq!(server["addr"], node.to_string());
            assert_eq!(server["configured_role"], "replica");
            assert!(
                server["lag_bytes"].is_u64(),
                "replica lag is known: {server}"
            );
        }
        let (status, body) = http_get(admin, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        assert_eq!(
            metric(&handle, "pgsplit_server_up{server=\"primary\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &handle,
                "pgsplit_server_role{role=\"primary\",server=\"primary\"}"
            ),
            Some(1.0)
        );
        handle.shutdown();
        bounded(Duration::from_secs(15), "proxy stop", handle.wait())
            .await
            .expect("proxy stops cleanly");
    })
    .await;
}

/// The base port of this file's own cluster (primary 28432, replicas 28433 and 28434).
const BASE_PORT: u16 = 28432;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_replay_is_paused_and_a_stopped_replica_goes_down() {
    if bypass_proxy() {
        eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        return;
    }
    bounded(Duration::from_secs(300), "health fault test", async {
        let Some(cluster) = OwnCluster::start(BASE_PORT).await else {
            return;
        };
        let env = cluster.env();
        let (replica1, replica2) = (BASE_PORT + 1, BASE_PORT + 2);
        let config = ProxyYaml::for_primary(&env).with_replicas(&env).config();
        let handle = pgsplit::start(config).await.expect("proxy starts");
        let lag = "pgsplit_replica_lag_bytes{server=\"replica1\"}";
        let up2 = "pgsplit_server_up{server=\"replica2\"}";
        metric_until(&handle, "pgsplit_server_role{role=\"replica\",server=\"replica1\"}", Duration::from_secs(5), |v| v == 1.0).await;
        metric_until(&handle, lag, Duration::from_secs(5), |v| v == 0.0).await;

        // Lag: replay paused on replica 1, about 1 MB written on the primary.
        cluster
            .run(&["pause-replay", &replica1.to_string()], Duration::from_secs(30))
            .await;
        let primary = pgsplit_testkit::cluster::connect_direct(
            &env.primary,
            APP_USER,
            APP_PASSWORD,
            APP_DATABASE,
        )
        .await;
        primary
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS health_lag (x text); \
                 INSERT INTO health_lag SELECT repeat(md5(i::text), 32) FROM generate_series(1, 1000) i",
            )
            .await
            .expect("write about 1 MB");
        // A probe of the primary during the INSERT may show part of it first; the whole
        // megabyte shows once the primary is probed again.
        let took = metric_until(&handle, lag, Duration::from_secs(2), |v| v > 0.0).await;
        metric_until(&handle, lag, Duration::from_secs(2), |v| v >= 500_000.0).await;
        eprintln!(
            "lag above 0 after {took:?}, now {:?} bytes",
            metric(&handle, lag)
        );
        cluster
            .run(&["resume-replay", &replica1.to_string()], Duration::from_secs(30))
            .await;
        metric_until(&handle, lag, Duration::from_secs(5), |v| v == 0.0).await;
        primary
            .batch_execute("DROP TABLE health_lag")
            .await
            .expect("drop the table");

        // A stopped replica goes down, and comes back once started.
        metric_until(&handle, up2, Duration::from_secs(2), |v| v == 1.0).await;
        cluster
            .run(&["stop", &replica2.to_string()], Duration::from_secs(60))
            .await;
        metric_until(&handle, up2, Duration::from_secs(2), |v| v == 0.0).await;
        let (_, body) = http_get(handle.admin_addr(), "/status").await;
        assert!(body.contains("\"health\":\"down\""), "{body}");
        cluster
            .run(&["start", &replica2.to_string()], Duration::from_secs(90))
            .await;
        metric_until(&handle, up2, Duration::from_secs(3), |v| v == 1.0).await;
        assert_eq!(metric(&handle, "pgsplit_server_up{server=\"primary\"}"), Some(1.0));
        assert_eq!(metric(&handle, "pgsplit_failovers_total"), Some(0.0));

        handle.shutdown();
        bounded(Duration::from_secs(15), "proxy stop", handle.wait())
            .await
            .expect("proxy stops cleanly");
        drop(cluster);
    })
    .await;
}
