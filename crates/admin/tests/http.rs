//! The admin endpoint over a real socket, driven by a minimal hand-written HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pgsplit_router::Snapshot;
use std::time::Duration;

use pgsplit_admin::{AdminState, LastReload, serve};
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

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, draining) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let last_reload = Arc::new(ArcSwapOption::empty());
    let state = AdminState {
        last_reload: last_reload.clone(),
        metrics: Arc::new(Metrics::new()),
        pools: Pools::new(),
        snapshot: Arc::new(ArcSwap::from_pointee({
            let config = pgsplit_config::parse(
                "users:\n  - name: app\n    password: app\nservers:\n  - host: 127.0.0.1\n    role: primary\n",
                "test.yaml",
            )
            .expect("a minimal config");
            let mut snapshot = Snapshot::new(config);
            snapshot.generation = 7;
            snapshot
        })),
        draining,
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

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let s = start().await;
    let r = request(s.addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(r.body.contains("pgsplit_client_connections"), "{}", r.body);
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
