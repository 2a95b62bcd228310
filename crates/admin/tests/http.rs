//! The admin endpoint over a real socket, driven by a minimal hand-written HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pgsplit_router::Snapshot;
use std::time::Duration;

use pgsplit_admin::{AdminState, serve};
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
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, draining) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let state = AdminState {
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
