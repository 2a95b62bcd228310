//! The HTTP admin endpoint as `pgsplit::start` wires it: bound from `admin.listen`, serving
//! the proxy's metrics, and `/readyz` turning 503 as soon as a drain starts.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const YAML: &str = "listen: 127.0.0.1:0\n\
    shutdown_timeout: 3s\n\
    admin: { listen: 127.0.0.1:0 }\n\
    users:\n  - name: app\n    password: app\n\
    servers:\n  - name: primary\n    host: 127.0.0.1\n    port: 1\n    role: primary\n";

/// `GET path` over a fresh connection; returns the status code and the whole response text.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut raw))
        .await
        .expect("response within 5s")
        .unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, raw)
}

#[tokio::test]
async fn admin_serves_metrics_and_readyz_flips_on_shutdown() {
    let config = pgsplit_config::parse(YAML, "test.yaml").expect("valid config");
    let handle = pgsplit::start(config).await.unwrap();
    let admin = handle.admin_addr();
    assert_ne!(admin.port(), 0);
    assert_ne!(admin, handle.client_addr());

    let (status, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("pgsplit_client_connections"), "{body}");
    let (status, body) = get(admin, "/status").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(get(admin, "/readyz").await.0, 200);

    // A client stuck in authentication keeps the drain going (until shutdown_timeout), so the
    // endpoint is still up, and must say 503, after shutdown is requested. (A client that has
    // not even sent its startup packet is turned away at once and would not hold the drain.)
    let mut client = TcpStream::connect(handle.client_addr()).await.unwrap();
    let mut startup = bytes::BytesMut::new();
    pgsplit_wire::encode::startup(&mut startup, &[("user", "app"), ("database", "app")]);
    client.write_all(&startup).await.unwrap();
    let mut auth_request = [0u8; 1];
    client.read_exact(&mut auth_request).await.unwrap();
    assert_eq!(
        auth_request[0], b'R',
        "the proxy asks the client to authenticate"
    );
    handle.shutdown();
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(admin, "/healthz").await.0, 200);
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("proxy stops")
        .unwrap();
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin still listening"
    );
}
