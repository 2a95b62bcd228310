//! Health probes against the real cluster: roles and WAL positions of the primary and the
//! replicas, connection reuse, failures that drop the connection, and the timeout.

use pgsplit_backend::{ProbeError, ProbeSettings, Prober};
use pgsplit_testkit::ClusterEnv;
use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER, Node};
use tokio::net::TcpListener;
use tokio::time::{Duration, Instant};

fn settings(node: &Node, password: &str) -> ProbeSettings {
    ProbeSettings {
        addr: node.to_string(),
        user: APP_USER.to_owned(),
        password: Some(password.to_owned()),
        database: "postgres".to_owned(),
        timeout: Duration::from_secs(2),
        tls: pgsplit_backend::tls::ServerTls::disabled(),
    }
}

#[tokio::test]
async fn primary_reports_its_write_position() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    let mut prober = Prober::new(settings(&env.primary, APP_PASSWORD));
    let first = prober.probe().await.expect("probe the primary");
    assert!(!first.in_recovery);
    let first_pos = first
        .position
        .expect("a primary has a current WAL position");
    assert_eq!(first.received, None, "a primary receives no WAL");
    assert!(prober.is_connected());
    // Write some WAL from another connection (a transaction with an xid writes a commit
    // record); the next probe, on the same connection, sees the position move forward.
    let client = env.superuser_client("postgres").await;
    client
        .batch_execute("SELECT txid_current()")
        .await
        .expect("write WAL");
    // With `synchronous_commit = off` (as in the test cluster) the commit record reaches the
    // write position only when the WAL writer runs (every 200 ms by default): poll.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let second = prober.probe().await.expect("probe again");
        if second.position.unwrap() > first_pos {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{second:?} after {first_pos:X}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    prober.close().await;
}

#[tokio::test]
async fn replicas_report_recovery_and_replay_position() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    for node in &env.replicas {
        let mut prober = Prober::new(settings(node, APP_PASSWORD));
        let status = prober.probe().await.expect("probe a replica");
        assert!(status.in_recovery, "{node}: {status:?}");
        assert!(
            status.position.is_some(),
            "{node} has replayed WAL: {status:?}"
        );
        assert!(status.received.is_some(), "{node} streams WAL: {status:?}");
    }
}

#[tokio::test]
async fn wrong_password_fails_and_leaves_no_connection() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    let mut prober = Prober::new(settings(&env.primary, "not-the-password"));
    let err = prober.probe().await.expect_err("bad password");
    assert!(matches!(err, ProbeError::Backend(_)), "{err:?}");
    assert!(!prober.is_connected());
}

#[tokio::test]
async fn refused_connection_fails() {
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = Node {
        host: "127.0.0.1".into(),
        port,
    };
    let mut prober = Prober::new(settings(&node, "x"));
    assert!(matches!(prober.probe().await, Err(ProbeError::Backend(_))));
    assert!(!prober.is_connected());
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts TCP and never answers the startup packet.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut s = settings(
        &Node {
            host: addr.ip().to_string(),
            port: addr.port(),
        },
        "x",
    );
    s.timeout = Duration::from_millis(200);
    let mut prober = Prober::new(s);
    let at = Instant::now();
    let err = prober.probe().await.expect_err("no answer");
    let took = Instant::now() - at;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // connect's own timeout and the probe's are the same limit; either may fire first.
    assert!(
        matches!(
            err,
            ProbeError::Timeout { .. }
                | ProbeError::Backend(pgsplit_backend::BackendError::ConnectTimeout { .. })
        ),
        "{err:?}"
    );
    assert!(!prober.is_connected());
}
