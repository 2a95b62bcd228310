//! The health checker against real servers: roles on `/status`, replica lag in the metrics while
//! replay is paused, and a stopped replica going down and coming back.
//!
//! The fault test runs on a cluster of its own (base port 28432), brought up and down through
//! `$PGSPLIT_TEST_XTASK cluster --base-port 28432 ...` (which `cargo xtask test` sets), so the
//! shared test cluster is never paused or stopped. Without `PGSPLIT_TEST_XTASK` it skips, unless
//! `PGSPLIT_REQUIRE_CLUSTER=1` makes that a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pgsplit_testkit::cluster::{APP_DATABASE, APP_PASSWORD, APP_USER, cluster_required};
use pgsplit_testkit::{ClusterEnv, ProxyYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::{bounded, bypass_proxy};

/// `GET path` on the admin endpoint; the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    bounded(
        Duration::from_secs(5),
        "admin response",
        stream.read_to_string(&mut raw),
    )
    .await
    .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// The value of one sample line, e.g. `pgsplit_server_up{server="replica1"}`.
fn metric(handle: &pgsplit::ProxyHandle, series: &str) -> Option<f64> {
    handle.metrics().render().lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')
            .and_then(|v| v.parse().ok())
    })
}

/// Polls `metric` until `want` holds, failing after `limit`; returns how long it took.
async fn metric_until(
    handle: &pgsplit::ProxyHandle,
    series: &str,
    limit: Duration,
    want: impl Fn(f64) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let value = metric(handle, series);
        if value.is_some_and(&want) {
            return Instant::now() - start;
        }
        assert!(
            Instant::now() - start < limit,
            "{series} is {value:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

/// This test's own cluster, driven through xtask; brought down when dropped, even on panic.
struct OwnCluster {
    xtask: PathBuf,
}

impl OwnCluster {
    /// The xtask binary from `PGSPLIT_TEST_XTASK`, or `None` (after a skip notice).
    ///
    /// # Panics
    ///
    /// When it is missing but `PGSPLIT_REQUIRE_CLUSTER=1`.
    fn xtask() -> Option<PathBuf> {
        match std::env::var_os("PGSPLIT_TEST_XTASK").filter(|v| !v.is_empty()) {
            Some(path) => Some(PathBuf::from(path)),
            None if cluster_required() => panic!(
                "PGSPLIT_REQUIRE_CLUSTER=1 but PGSPLIT_TEST_XTASK is not set: the health fault test \
                 cannot start its own cluster (run `cargo xtask test`, or build xtask and export \
                 PGSPLIT_TEST_XTASK=target/debug/xtask)"
            ),
            None => {
                eprintln!(
                    "skipping: PGSPLIT_TEST_XTASK is not set, so the health fault test cannot \
                     start its own cluster (run `cargo xtask test`)"
                );
                None
            }
        }
    }

    /// `xtask cluster --base-port 28432 ARGS...`, aimed at this cluster's own directory even
    /// when the environment names the shared test cluster's.
    fn command(xtask: &PathBuf, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(xtask);
        c.arg("cluster")
            .args(["--base-port", &BASE_PORT.to_string()])
            .args(args)
            .env(
                "PGSPLIT_CLUSTER_DIR",
                format!("/tmp/pgsplit-cluster-{BASE_PORT}"),
            )
            .env_remove("PGSPLIT_CLUSTER_BASE_PORT")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs a cluster command to completion, failing the test if it fails or takes over
    /// `limit`.
    async fn run(&self, args: &[&str], limit: Duration) {
        let mut cmd = tokio::process::Command::from(Self::command(&self.xtask, args));
        cmd.kill_on_drop(true);
        let what = format!("xtask cluster {}", args.join(" "));
        let out = bounded(limit, &what, cmd.output())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The cluster as the testkit describes one.
    fn env() -> ClusterEnv {
        ClusterEnv::from_vars(
            &format!("127.0.0.1:{BASE_PORT}"),
            Some(&format!(
                "127.0.0.1:{},127.0.0.1:{}",
                BASE_PORT + 1,
                BASE_PORT + 2
            )),
            Some("postgres:postgres"),
        )
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // Blocking here is fine: the test is over either way, and the cluster must not outlive it.
        let out = Self::command(&self.xtask, &["down"]).output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!(
                "xtask cluster down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_replay_is_paused_and_a_stopped_replica_goes_down() {
    if bypass_proxy() {
        eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        return;
    }
    let Some(xtask) = OwnCluster::xtask() else {
        return;
    };
    bounded(Duration::from_secs(300), "health fault test", async {
        let cluster = OwnCluster { xtask };
        cluster.run(&["up"], Duration::from_secs(180)).await;
        let env = OwnCluster::env();
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
