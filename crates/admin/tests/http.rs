//! The admin endpoint over a real socket, driven by a minimal hand-written HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pgsplit_router::{HealthReport, Lsn, Probe, Snapshot, Topology};
use std::time::Duration;

use pgsplit_admin::{AdminState, LastReload, MetricsRefresh, serve};
use pgsplit_backend::Pools;
use pgsplit_telemetry::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A parsed response: status code, lower-cased headers and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("response within 5s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct Server {
    addr: SocketAddr,
    drain: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    last_reload: Arc<ArcSwapOption<LastReload>>,
}

/// A primary `primary` on port 5432 and replicas `replica1`, `replica2` on 5433 and 5434.
const THREE_SERVERS: &str = "users:\n  - name: app\n    password: app\nservers:\n  \
    - { name: primary, host: 127.0.0.1, port: 5432, role: primary }\n  \
    - { name: replica1, host: 127.0.0.1, port: 5433, role: replica }\n  \
    - { name: replica2, host: 127.0.0.1, port: 5434, role: auto }\n";

/// A snapshot of `yaml` at generation 7.
fn snapshot_of(yaml: &str) -> Snapshot {
    let config = pgsplit_config::parse(yaml, "test.yaml").expect("a valid config");
    let mut snapshot = Snapshot::new(config);
    snapshot.generation = 7;
    snapshot
}

async fn start() -> Server {
    start_with(snapshot_of(
        "users:\n  - name: app\n    password: app\nservers:\n  - host: 127.0.0.1\n    role: primary\n",
    ))
    .await
}

async fn start_with(snapshot: Snapshot) -> Server {
    start_shared(Arc::new(ArcSwap::from_pointee(snapshot))).await
}

async fn start_shared(snapshot: Arc<ArcSwap<Snapshot>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, draining) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let last_reload = Arc::new(ArcSwapOption::empty());
    let state = AdminState {
        last_reload: last_reload.clone(),
        metrics: Arc::new(Metrics::new()),
        pools: Pools::new(),
        snapshot,
        draining,
        refresh: None,
    };
    let task = tokio::spawn(serve(listener, state, stop_rx));
    Server {
        addr,
        drain,
        stop,
        task,
        last_reload,
    }
}

/// Applies one probe result to the node named `name`.
fn report(snapshot: &Snapshot, name: &str, at_ms: u64, probe: Probe) -> Snapshot {
    let mut topology = Topology::clone(&snapshot.topology);
    let node = snapshot.server_index(name).expect("a configured server");
    topology.apply_health(HealthReport {
        node,
        at: Duration::from_millis(at_ms),
        probe,
    });
    snapshot.with_topology(topology)
}

fn ok(in_recovery: bool, lsn: u64) -> Probe {
    Probe::Ok {
        in_recovery,
        lsn: Some(Lsn(lsn)),
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let s = start().await;
    let r = request(s.addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(r.body.contains("pgsplit_client_connections"), "{}", r.body);
}

#[tokio::test]
async fn metrics_run_the_refresh_hook_before_every_render() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_drain, draining) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refresh = {
        let (metrics, calls) = (metrics.clone(), calls.clone());
        MetricsRefresh::new(move || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            metrics
                .connections
                .set_clients(pgsplit_telemetry::ClientCounts {
                    active: n,
                    idle: 0,
                    waiting: 0,
                });
        })
    };
    let state = AdminState {
        last_reload: Arc::new(ArcSwapOption::empty()),
        metrics,
        pools: Pools::new(),
        snapshot: Arc::new(ArcSwap::from_pointee(snapshot_of(THREE_SERVERS))),
        draining,
        refresh: Some(refresh),
    };
    let task = tokio::spawn(serve(listener, state, stop_rx));
    for n in 1..=2 {
        let r = request(addr, "GET", "/metrics").await;
        let line = format!("pgsplit_clients{{state=\"active\"}} {n}");
        assert!(r.body.contains(&line), "{line} missing in\n{}", r.body);
    }
    // Other paths do not run it.
    assert_eq!(request(addr, "GET", "/status").await.status, 200);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn healthz_says_ok() {
    let s = start().await;
    let r = request(s.addr, "GET", "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");
}

#[tokio::test]
async fn readyz_turns_503_when_draining() {
    let s = start().await;
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    s.drain.send(true).unwrap();
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "draining\n"));
    // Health is about the process, not readiness.
    assert_eq!(request(s.addr, "GET", "/healthz").await.status, 200);
}

#[tokio::test]
async fn status_is_json_with_generation_and_pools() {
    let s = start().await;
    let r = request(s.addr, "GET", "/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["generation"], 7);
    assert_eq!(doc["draining"], false);
    assert_eq!(doc["pools"], serde_json::json!([]));
    let server = &doc["config"]["servers"][0];
    assert_eq!(server["role"], "primary", "{doc}");
    assert_eq!(server["port"], 5432, "{doc}");
    assert_eq!(server["weight"], 1, "{doc}");
    assert!(doc["config"]["pool"]["size"].as_u64().is_some(), "{doc}");
    // No reload has happened yet.
    assert_eq!(
        doc["reload"],
        serde_json::json!({"generation": 7, "last_result": null, "last_error": null, "at": null})
    );
}

#[tokio::test]
async fn status_shows_the_latest_reload() {
    let s = start().await;
    s.last_reload.store(Some(Arc::new(LastReload {
        error: Some("a.yaml:3:5: pool.size: must be at least 1".to_owned()),
        generation: 7,
        at_unix: 1_700_000_000,
    })));
    let r = request(s.addr, "GET", "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["reload"]["last_result"], "failed", "{doc}");
    assert_eq!(
        doc["reload"]["last_error"],
        "a.yaml:3:5: pool.size: must be at least 1"
    );
    assert_eq!(doc["reload"]["at"], 1_700_000_000u64);
    assert_eq!(doc["reload"]["generation"], 7);
    s.last_reload.store(Some(Arc::new(LastReload {
        error: None,
        generation: 8,
        at_unix: 1_700_000_001,
    })));
    let r = request(s.addr, "GET", "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["reload"]["last_result"], "ok", "{doc}");
    assert_eq!(doc["reload"]["last_error"], serde_json::Value::Null);
    assert_eq!(doc["reload"]["generation"], 8);
}

#[tokio::test]
async fn unknown_paths_404_and_other_methods_405() {
    let s = start().await;
    assert_eq!(request(s.addr, "GET", "/nope").await.status, 404);
    assert_eq!(request(s.addr, "GET", "/").await.status, 404);
    let r = request(s.addr, "POST", "/metrics").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(request(s.addr, "DELETE", "/readyz").await.status, 405);
}

#[tokio::test]
async fn stop_ends_serve_and_closes_the_listener() {
    let s = start().await;
    assert_eq!(request(s.addr, "GET", "/healthz").await.status, 200);
    s.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("serve returns after stop")
        .unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn status_lists_servers_with_roles_health_and_lag() {
    let mut snap = snapshot_of(THREE_SERVERS);
    snap = report(&snap, "primary", 0, ok(false, 1000));
    snap = report(&snap, "replica1", 10, ok(true, 400));
    snap = report(&snap, "replica2", 20, ok(true, 1000));
    let s = start_with(snap).await;
    let r = request(s.addr, "GET", "/status").await;
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["primary"], "primary");
    assert_eq!(doc["split_brain"], false);
    assert_eq!(doc["ready"], true);
    let servers = doc["servers"].as_array().expect("a servers array");
    assert_eq!(servers.len(), 3, "{doc}");
    let by_name = |n: &str| {
        servers
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing: {doc}"))
    };
    let p = by_name("primary");
    assert_eq!(p["addr"], "127.0.0.1:5432");
    assert_eq!(p["configured_role"], "primary");
    assert_eq!(p["detected_role"], "primary");
    assert_eq!(p["health"], "up");
    assert_eq!(p["lag_bytes"], serde_json::Value::Null);
    assert_eq!(
        (p["busy"].as_u64(), p["idle"].as_u64(), p["open"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    let r1 = by_name("replica1");
    assert_eq!(r1["configured_role"], "replica");
    assert_eq!(r1["detected_role"], "replica");
    assert_eq!(r1["lag_bytes"], 600);
    assert_eq!(r1["lag_excluded"], false);
    assert!(r1["lag_seconds"].as_f64().is_some(), "{r1}");
    let r2 = by_name("replica2");
    assert_eq!(r2["configured_role"], "auto");
    assert_eq!(r2["detected_role"], "replica");
    assert_eq!(r2["lag_bytes"], 0);
}

#[tokio::test]
async fn status_shows_a_down_server_and_unknown_roles() {
    let mut snap = snapshot_of(THREE_SERVERS);
    snap = report(&snap, "replica1", 0, Probe::Failed);
    let s = start_with(snap).await;
    let doc: serde_json::Value =
        serde_json::from_str(&request(s.addr, "GET", "/status").await.body).unwrap();
    let servers = doc["servers"].as_array().unwrap();
    assert_eq!(servers[1]["name"], "replica1");
    assert_eq!(servers[1]["health"], "down");
    assert_eq!(servers[1]["detected_role"], "unknown");
    assert_eq!(servers[0]["health"], "up");
}

#[tokio::test]
async fn readyz_is_503_without_a_primary() {
    // Only `auto` and replica servers: no primary until one is detected.
    let snap = snapshot_of(
        "users:\n  - name: app\n    password: app\nservers:\n  \
         - { name: a, host: 127.0.0.1, port: 5432, role: auto }\n  \
         - { name: b, host: 127.0.0.1, port: 5433, role: replica }\n",
    );
    let shared = Arc::new(ArcSwap::from_pointee(snap));
    let s = start_shared(shared.clone()).await;
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("no primary"), "{}", r.body);
    let doc: serde_json::Value =
        serde_json::from_str(&request(s.addr, "GET", "/status").await.body).unwrap();
    assert_eq!(doc["primary"], serde_json::Value::Null);
    assert_eq!(doc["ready"], false);

    // `a` is detected as the primary: ready.
    let next = report(&shared.load(), "a", 0, ok(false, 100));
    shared.store(Arc::new(next));
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    // The primary goes down: 503 naming it.
    let next = report(&shared.load(), "a", 10, Probe::Failed);
    shared.store(Arc::new(next));
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("primary a is down"), "{}", r.body);
}

#[tokio::test]
async fn readyz_and_status_report_split_brain() {
    let mut snap = snapshot_of(THREE_SERVERS);
    snap = report(&snap, "primary", 0, ok(false, 1000));
    snap = report(&snap, "replica1", 10, ok(false, 2000));
    assert!(snap.topology.split_brain);
    let s = start_with(snap).await;
    let r = request(s.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("split brain"), "{}", r.body);
    let doc: serde_json::Value =
        serde_json::from_str(&request(s.addr, "GET", "/status").await.body).unwrap();
    assert_eq!(doc["split_brain"], true);
    assert_eq!(doc["primary"], serde_json::Value::Null);
}
