//! Routing under faults, on clusters of the tests' own (see `own_cluster.rs`): read-your-writes
//! with replay paused, lag exclusion, a replica restarted under `pgbench -S`, per-server
//! connection limits, a primary lost (new clients still read) and replaced by a promoted
//! replica, and the old primary back beside it (a split brain).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgsplit_testkit::cluster::{APP_DATABASE, APP_PASSWORD, APP_USER, connect_direct};
use pgsplit_testkit::{ClusterEnv, ProxyYaml};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

use crate::harness::{bounded, bypass_proxy};
use crate::own_cluster::{OwnCluster, metric, metric_until};
use crate::tools::{assert_pgbench_clean, describe, require_tool, run};

/// Base port of the read-your-writes and lag cluster.
const RYW_PORT: u16 = 29432;
/// Base port of the availability cluster (replica restart, limits, failover).
const FAILOVER_PORT: u16 = 30432;

/// A proxy in front of an own cluster's primary and replicas, with fast health checks.
fn proxy_yaml(env: &ClusterEnv) -> ProxyYaml {
    ProxyYaml::for_primary(env)
        .with_replicas(env)
        .set("health", "{ interval: 100ms, timeout: 1s }")
}

async fn start_proxy(yaml: &ProxyYaml) -> pgsplit::ProxyHandle {
    pgsplit::start(yaml.config())
        .await
        .unwrap_or_else(|e| panic!("proxy failed to start: {e:#}\n{}", yaml.build()))
}

/// Waits until the health checker has found both replicas up (`health.rise` good probes
/// each; the first probe of each server also logs in, so they do not come up together).
async fn replicas_up(handle: &pgsplit::ProxyHandle) {
    for server in ["replica1", "replica2"] {
        let series = format!("pgsplit_server_up{{server=\"{server}\"}}");
        metric_until(handle, &series, Duration::from_secs(5), |v| v == 1.0).await;
    }
}

async fn stop_proxy(handle: pgsplit::ProxyHandle) {
    handle.shutdown();
    bounded(Duration::from_secs(15), "proxy stop", handle.wait())
        .await
        .expect("proxy stops cleanly");
}

/// Connects as `app` to database `app` through the proxy.
async fn through(handle: &pgsplit::ProxyHandle) -> Result<Client, tokio_postgres::Error> {
    through_addr(handle.client_addr()).await
}

/// Waits until `table` exists on every replica of `env`.
async fn replicated(env: &ClusterEnv, table: &str) {
    for node in &env.replicas {
        let c = connect_direct(node, APP_USER, APP_PASSWORD, APP_DATABASE).await;
        let sql = format!("SELECT to_regclass('{table}') IS NOT NULL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0) {
            assert!(Instant::now() < deadline, "{table} never reached {node}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `clients` clients each insert a fresh key and at once read it back, `pairs` times; returns
/// how many reads did not see the client's own write.
async fn write_read_pairs(handle: &pgsplit::ProxyHandle, clients: u64, pairs: u64) -> u64 {
    let stale = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for id in 0..clients {
        let client = through(handle).await.expect("connect through pgsplit");
        let stale = stale.clone();
        let base = (u64::from(std::process::id()) % 1000) * 1_000_000_000 + id * 10_000_000;
        tasks.spawn(async move {
            let insert = client
                .prepare("INSERT INTO ryw (k) VALUES ($1)")
                .await
                .unwrap();
            let read = client
                .prepare("SELECT count(*) FROM ryw WHERE k = $1")
                .await
                .unwrap();
            let offset = rand_offset();
            for i in 0..pairs {
                let k = i64::try_from(base + offset + i).unwrap();
                client.execute(&insert, &[&k]).await.unwrap();
                let seen: i64 = client.query_one(&read, &[&k]).await.unwrap().get(0);
                if seen == 0 {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("a write/read client failed");
    }
    stale.load(Ordering::Relaxed)
}

/// Keys of separate phases must not collide: a per-call offset from the clock.
fn rand_offset() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos % 1000) * 10_000
}

/// The port of the server that ran `SELECT inet_server_port()`.
async fn server_port(client: &Client) -> u16 {
    let port: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("read")
        .get(0);
    u16::try_from(port).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_with_replay_paused_and_lagging_replicas_excluded() {
    if bypass_proxy() {
        eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        return;
    }
    bounded(Duration::from_secs(400), "read-your-writes test", async {
        let Some(cluster) = OwnCluster::start(RYW_PORT).await else {
            return;
        };
        let env = cluster.env();
        let (replica1, replica2) = (cluster.replica_port(1), cluster.replica_port(2));
        let primary = connect_direct(&env.primary, APP_USER, APP_PASSWORD, APP_DATABASE).await;
        primary
            .batch_execute("CREATE TABLE ryw (k bigint PRIMARY KEY)")
            .await
            .unwrap();
        replicated(&env, "ryw").await;
        cluster
            .run(&["pause-replay", &replica1.to_string()], Duration::from_secs(30))
            .await;

        // Lag limits far away: only consistency decides whether the paused replica reads.
        let unlimited = "{ max_bytes: 1GiB, max_delay: 1h }";

        // eventual: reads go to any replica, the paused one included, so some are stale
        // (the test can fail). Round robin, so that each client's reads reach both replicas.
        let yaml = proxy_yaml(&env)
            .set("lag", unlimited)
            .set("consistency", "eventual")
            .set("balance", "round_robin");
        let handle = start_proxy(&yaml).await;
        replicas_up(&handle).await;
        let stale = write_read_pairs(&handle, 2, 500).await;
        eprintln!("consistency eventual: {stale} stale reads of 1000");
        assert!(stale > 0, "eventual consistency never read the paused replica");
        stop_proxy(handle).await;

        // session (the default): 10,000 pairs, not one stale read.
        let yaml = proxy_yaml(&env).set("lag", unlimited);
        let handle = start_proxy(&yaml).await;
        let started = Instant::now();
        let stale = write_read_pairs(&handle, 4, 2_500).await;
        let replica_reads = handle
            .metrics()
            .render()
            .lines()
            .filter(|l| l.starts_with("pgsplit_queries_total{kind=\"read\",role=\"replica\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
        eprintln!(
            "consistency session: {stale} stale reads of 10000 in {:?} ({replica_reads} reads on replicas)",
            started.elapsed()
        );
        assert_eq!(stale, 0, "read-your-writes broken under consistency: session");
        stop_proxy(handle).await;

        // Lag exclusion: replica 1 (still paused, far behind) takes no reads; once resumed
        // and caught up, it takes reads again (round robin: one client's reads alternate).
        let yaml = proxy_yaml(&env)
            .set("lag", "{ max_bytes: 64KiB, max_delay: 1h }")
            .set("consistency", "eventual")
            .set("balance", "round_robin");
        let handle = start_proxy(&yaml).await;
        let excluded = "pgsplit_replica_lag_excluded{server=\"replica1\"}";
        metric_until(&handle, excluded, Duration::from_secs(3), |v| v == 1.0).await;
        // replica2 must be up and within the limit too, else reads fall back to the primary
        // (`primary_reads: fallback`): replica1 can be excluded before replica2's second
        // probe, and replica2 may still be replaying the writes of the phases above.
        replicas_up(&handle).await;
        let included = "pgsplit_replica_lag_excluded{server=\"replica2\"}";
        metric_until(&handle, included, Duration::from_secs(10), |v| v == 0.0).await;
        let c = through(&handle).await.unwrap();
        let mut ports = BTreeSet::new();
        for _ in 0..200 {
            ports.insert(server_port(&c).await);
        }
        assert_eq!(
            ports,
            BTreeSet::from([replica2]),
            "a replica over its lag limit took reads"
        );
        let lag = metric(&handle, "pgsplit_replica_lag_bytes{server=\"replica1\"}");
        assert!(lag.is_some_and(|b| b > 65_536.0), "lag metric {lag:?}");
        cluster
            .run(&["resume-replay", &replica1.to_string()], Duration::from_secs(30))
            .await;
        metric_until(&handle, excluded, Duration::from_secs(5), |v| v == 0.0).await;
        let back = Instant::now();
        while server_port(&c).await != replica1 {
            assert!(
                back.elapsed() < Duration::from_secs(2),
                "the caught-up replica took no reads within 2 s"
            );
        }
        stop_proxy(handle).await;
        drop(cluster);
    })
    .await;
}

/// `pgbench` straight at the own cluster's primary (for `-i`).
fn pgbench_direct(pgbench: &std::path::Path, env: &ClusterEnv) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .args(["-h", &env.primary.host, "-p", &env.primary.port.to_string()])
        .args(["-U", APP_USER])
        .kill_on_drop(true);
    cmd
}

/// Connections of `app` on the server at `port`, pgsplit's health probes excluded.
async fn app_connections(superuser: &Client) -> i64 {
    superuser
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' \
             AND application_name <> 'pgsplit-health' AND backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_restart_limits_hold_and_writes_follow_a_promotion() {
    if bypass_proxy() {
        eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        return;
    }
    let Some(pgbench) = require_tool("pgbench") else {
        return;
    };
    let secs: u64 = std::env::var("PGSPLIT_E2E_PGBENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(6);
    bounded(Duration::from_secs(400 + secs), "availability test", async {
        let Some(cluster) = OwnCluster::start(FAILOVER_PORT).await else {
            return;
        };
        let env = cluster.env();
        let (replica1, replica2) = (cluster.replica_port(1), cluster.replica_port(2));

        // 1. pgbench -S through pgsplit while replica 2 is stopped at 1/3 of the run and
        //    started again at 2/3: no failed transaction, and replica 2 takes reads again
        //    within 2 s of coming back.
        let mut init = pgbench_direct(&pgbench, &env);
        init.args(["-i", "-s", "1", "-q", APP_DATABASE]);
        let out = run(init, Duration::from_secs(120)).await;
        assert!(out.status.success(), "pgbench -i\n{}", describe(&out));
        let yaml = proxy_yaml(&env);
        let handle = start_proxy(&yaml).await;
        let addr = handle.client_addr();
        let mut bench = tokio::process::Command::new(&pgbench);
        bench
            .env("PGPASSWORD", APP_PASSWORD)
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(["-U", APP_USER, "-S", "-c", "16", "-j", "2", "-M", "simple"])
            .args(["-T", &secs.to_string(), APP_DATABASE])
            .kill_on_drop(true);
        let bench = tokio::spawn(run(bench, Duration::from_secs(secs + 60)));
        tokio::time::sleep(Duration::from_secs(secs / 3)).await;
        cluster
            .run(&["stop", &replica2.to_string()], Duration::from_secs(60))
            .await;
        tokio::time::sleep(Duration::from_secs(secs / 3)).await;
        cluster
            .run(&["start", &replica2.to_string()], Duration::from_secs(90))
            .await;
        let reads2 = "pgsplit_queries_total{kind=\"read\",role=\"replica\",server=\"replica2\"}";
        let before = metric(&handle, reads2).unwrap_or(0.0);
        let took =
            metric_until(&handle, reads2, Duration::from_secs(2), |v| v > before).await;
        eprintln!("replica 2 took reads again {took:?} after it started");
        let out = bench.await.expect("pgbench task");
        let stdout = assert_pgbench_clean(&out, "simple (replica restarted)");
        eprintln!("{}", stdout.lines().filter(|l| l.contains("tps") || l.contains("failed")).collect::<Vec<_>>().join("\n"));
        stop_proxy(handle).await;

        // 2. max_connections 5 on each replica and 50 reading clients: never more than 5
        //    pgsplit connections on a replica, and no client fails.
        let yaml = proxy_yaml(&env)
            .server_option("replica1", "max_connections", "5")
            .server_option("replica2", "max_connections", "5");
        let handle = start_proxy(&yaml).await;
        let mut watchers = Vec::new();
        for node in &env.replicas {
            watchers.push(connect_direct(node, "postgres", "postgres", "postgres").await);
        }
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut readers = JoinSet::new();
        for _ in 0..50 {
            let client = through(&handle).await.expect("connect through pgsplit");
            readers.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    client
                        .query_one("SELECT pg_sleep(0.005), inet_server_port()", &[])
                        .await
                        .expect("a read failed under max_connections");
                    n += 1;
                }
                n
            });
        }
        let mut most = [0i64; 2];
        while Instant::now() < deadline {
            for (i, w) in watchers.iter().enumerate() {
                most[i] = most[i].max(app_connections(w).await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut reads = 0;
        while let Some(n) = readers.join_next().await {
            reads += n.expect("reader");
        }
        eprintln!("max_connections 5: {reads} reads, most connections seen {most:?}");
        assert!(most.iter().all(|&m| m <= 5), "more than 5 connections: {most:?}");
        assert!(most.iter().all(|&m| m > 0), "a replica took no reads: {most:?}");
        stop_proxy(handle).await;

        // 3. The primary stops; replica 1 is promoted: writes succeed again within 2 s of
        //    the promotion, and every write acknowledged before the stop is there after it.
        let primary = connect_direct(&env.primary, APP_USER, APP_PASSWORD, APP_DATABASE).await;
        primary
            .batch_execute("CREATE TABLE acked (k bigint PRIMARY KEY)")
            .await
            .unwrap();
        replicated(&env, "acked").await;
        drop(primary);
        let yaml = proxy_yaml(&env).set("failover", "{ write_wait: 20s }");
        let handle = start_proxy(&yaml).await;
        // Beside it, a session-pooling proxy and one client of it, which keeps its own
        // connection to the old primary through the failover.
        let session_handle = start_proxy(&yaml.clone().pool("mode", "session")).await;
        let session_client = through(&session_handle).await.expect("session-mode client");
        session_client
            .execute("INSERT INTO acked VALUES (-1)", &[])
            .await
            .expect("a session-mode write before the failover");
        let acked = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
        let stop_writer = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let acked = acked.clone();
            let stop = stop_writer.clone();
            let addr = handle.client_addr();
            tokio::spawn(async move {
                let mut client: Option<Client> = None;
                let mut k = 0i64;
                let mut last_ok = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if client.as_ref().is_none_or(Client::is_closed) {
                        client = through_addr(addr).await.ok();
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                    k += 1;
                    let c = client.as_ref().unwrap();
                    if c.execute("INSERT INTO acked VALUES ($1)", &[&k]).await.is_ok() {
                        acked.lock().push(k);
                        last_ok.push(Instant::now());
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                last_ok
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster
            .run(&["stop", &env.primary.port.to_string()], Duration::from_secs(60))
            .await;
        let before_stop = acked.lock().len();
        // A client that connects while there is no primary can still read (it is greeted
        // from a replica): within 5 s of the stop (the proxy must first see the primary
        // fail), a new connection answers a read from a replica.
        let stopped = Instant::now();
        let read_from = loop {
            let attempt = async {
                // Settings of its own: no recently greeted client's greeting can be reused.
                let c = through_named(handle.client_addr(), "new-during-outage").await.ok()?;
                let row = c.query_one("SELECT inet_server_port()", &[]).await.ok()?;
                Some(row.get::<_, i32>(0))
            };
            // Each attempt is bounded, so a read that waits shows as this test's failure.
            if let Ok(Some(port)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                break port;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(5),
                "no new client could read within 5 s of the primary stopping"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("a new client read from port {read_from} {:?} after the primary stopped", stopped.elapsed());
        assert!(
            [replica1, replica2].contains(&u16::try_from(read_from).unwrap()),
            "read from {read_from}, not a replica"
        );
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(stopped.elapsed())).await;
        cluster
            .run(&["promote", &replica1.to_string()], Duration::from_secs(60))
            .await;
        let promoted = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop_writer.store(true, Ordering::Relaxed);
        let oks = writer.await.expect("writer");
        let first_after = oks.iter().find(|t| **t > promoted).copied();
        let Some(first_after) = first_after else {
            panic!("no write succeeded within 3 s of the promotion");
        };
        let took = first_after - promoted;
        eprintln!("writes resumed {took:?} after the promotion ({before_stop} acknowledged before the stop)");
        assert!(took <= Duration::from_secs(2), "writes resumed only after {took:?}");
        // The session-mode client did not notice: same connection, its next write runs on
        // the promoted primary (on a new server connection of its own).
        let port: i32 = session_client
            .query_one("INSERT INTO acked VALUES (-2) RETURNING inet_server_port()", &[])
            .await
            .expect("a session-mode write after the failover")
            .get(0);
        assert_eq!(port, i32::from(replica1), "the session-mode write missed the new primary");
        drop(session_client);
        stop_proxy(session_handle).await;
        assert!(metric(&handle, "pgsplit_failovers_total").is_some_and(|v| v >= 1.0));
        let new_primary = connect_direct(
            &pgsplit_testkit::cluster::Node {
                host: "127.0.0.1".into(),
                port: replica1,
            },
            APP_USER,
            APP_PASSWORD,
            APP_DATABASE,
        )
        .await;
        let present: BTreeSet<i64> = new_primary
            .query("SELECT k FROM acked", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let missing: Vec<i64> = acked
            .lock()
            .iter()
            .copied()
            .filter(|k| !present.contains(k))
            .collect();
        assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

        // 4. The old primary comes back as a primary beside the promoted one: a split brain,
        //    shown by the gauge and counted once.
        assert_eq!(metric(&handle, "pgsplit_split_brains_total"), Some(0.0));
        cluster
            .run(&["start", &env.primary.port.to_string()], Duration::from_secs(90))
            .await;
        let took = metric_until(&handle, "pgsplit_split_brain", Duration::from_secs(5), |v| v == 1.0).await;
        eprintln!("split brain seen {took:?} after the old primary started");
        assert_eq!(metric(&handle, "pgsplit_split_brains_total"), Some(1.0));
        stop_proxy(handle).await;
        drop(cluster);
    })
    .await;
}

/// [`through`] by the proxy's client address (for tasks that do not hold the handle).
async fn through_addr(addr: std::net::SocketAddr) -> Result<Client, tokio_postgres::Error> {
    through_named(addr, "").await
}

/// [`through_addr`] with an `application_name` (none when empty).
async fn through_named(
    addr: std::net::SocketAddr,
    application_name: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    if !application_name.is_empty() {
        config.application_name(application_name);
    }
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(APP_USER)
        .password(APP_PASSWORD)
        .dbname(APP_DATABASE)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}
