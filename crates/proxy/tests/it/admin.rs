//! The HTTP admin endpoint as `pgsplit::start` wires it: bound from `admin.listen`, serving
//! the proxy's metrics, `/readyz` turning 503 as soon as a drain starts or when the primary is
//! unreachable, and `/status` showing what the health checker found.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy config with one primary on `port`.
fn yaml(port: u16) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         shutdown_timeout: 3s\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         users:\n  - name: app\n    password: app\n\
         servers:\n  - name: primary\n    host: 127.0.0.1\n    port: {port}\n    role: primary\n"
    )
}

/// Polls `GET path` until `want` holds for the answer, for up to 3 s.
async fn get_until(
    addr: SocketAddr,
    path: &str,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (status, body) = get(addr, path).await;
        if want(status, &body) || tokio::time::Instant::now() >= deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
    // The mock answers the health probe as a primary, so the proxy is ready.
    let mock = pgsplit_testkit::MockServer::start(pgsplit_testkit::Script::new()).await;
    let config =
        pgsplit_config::parse(&yaml(mock.addr().port()), "test.yaml").expect("valid config");
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
    let (status, body) = get_until(admin, "/status", |_, b| {
        b.contains("\"detected_role\":\"primary\"")
    })
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"detected_role\":\"primary\""),
        "the probe found the primary: {body}"
    );
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

#[tokio::test]
async fn readyz_is_503_while_the_primary_is_unreachable() {
    // A port nothing listens on.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = pgsplit_config::parse(&yaml(port), "test.yaml").expect("valid config");
    let handle = pgsplit::start(config).await.unwrap();
    let admin = handle.admin_addr();
    let (status, body) = get_until(admin, "/readyz", |s, _| s == 503).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("no primary: primary primary is down"),
        "{body}"
    );
    let (_, body) = get(admin, "/status").await;
    assert!(body.contains("\"health\":\"down\""), "{body}");
    let (_, body) = get(admin, "/metrics").await;
    assert!(
        body.contains("pgsplit_server_up{server=\"primary\"} 0"),
        "{body}"
    );
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("proxy stops")
        .unwrap();
}
