//! Graceful shutdown: in-flight transactions finish, new connections are refused, the proxy stops.

use std::time::Duration;

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER};
use tokio::time::Instant;

use crate::harness::{Case, Proxy, bounded};

/// Tries to connect until an attempt is refused; the accept loop may let one racing attempt in.
async fn assert_refuses_new_connections(px: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let config = px.pg_config(APP_USER, Some(APP_PASSWORD));
        let attempt = config.connect(tokio_postgres::NoTls);
        match bounded(Duration::from_secs(5), "connect during shutdown", attempt).await {
            Err(_) => return,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => panic!("new connections are still accepted 1 s after shutdown()"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_lets_a_transaction_finish() {
    Case::new("shutdown")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let c = px.client().await;
            c.batch_execute("CREATE TABLE t (v int4)").await.unwrap();
            c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
                .await
                .unwrap();

            px.shutdown();
            assert_refuses_new_connections(px).await;

            // The transaction that was in flight goes on to its end.
            c.execute("INSERT INTO t VALUES ($1)", &[&2_i32])
                .await
                .unwrap();
            c.batch_execute("COMMIT").await.unwrap();

            let started = Instant::now();
            drop(c);
            px.stop().await;
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "stopping took {took:?} with no client left"
            );

            let direct = px.env.app_client(&px.db).await;
            let n: i64 = direct
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                n, 2,
                "the transaction in flight at shutdown was not committed"
            );
        })
        .await;
}

/// A transaction that never ends is cut off at `shutdown_timeout`, and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_timeout_bounds_a_stuck_transaction() {
    Case::new("shutdown_stuck")
        .yaml(|y| y.set("shutdown_timeout", "2s"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let c = px.client().await;
            c.batch_execute("CREATE TABLE t (v int4)").await.unwrap();
            c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
                .await
                .unwrap();

            let started = Instant::now();
            px.shutdown();
            px.stop().await;
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(1500),
                "gave the transaction only {took:?}"
            );
            assert!(
                took < Duration::from_secs(6),
                "shutdown_timeout 2s, stopping took {took:?}"
            );

            assert!(
                c.simple_query("COMMIT").await.is_err(),
                "COMMIT succeeded after shutdown"
            );
            let direct = px.env.app_client(&px.db).await;
            // The server may take a moment to notice the closed connection and roll back.
            let n: i64 = bounded(Duration::from_secs(10), "lock release", async {
                direct
                    .batch_execute("SET lock_timeout = '9s'")
                    .await
                    .unwrap();
                direct
                    .query_one("SELECT count(*) FROM t", &[])
                    .await
                    .unwrap()
                    .get(0)
            })
            .await;
            assert_eq!(n, 0);
        })
        .await;
}
