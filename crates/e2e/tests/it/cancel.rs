//! Query cancellation through pgsplit: it cancels the right query, fast, and only that one.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::NoTls;

use crate::harness::{Case, assert_usable, expect_sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_pg_sleep_within_1s() {
    Case::new("cancel")
        .run(async |px| {
            let c = px.client().await;
            let token = c.cancel_token();
            let sleeper = tokio::spawn(async move {
                let r = c.simple_query("SELECT pg_sleep(30)").await;
                (r, Instant::now(), c)
            });
            // Let the query reach the server before cancelling it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cancelled_at = Instant::now();
            token
                .cancel_query(NoTls)
                .await
                .expect("sending the cancel request");
            let (result, finished_at, c) = sleeper.await.unwrap();
            let took = finished_at - cancelled_at;
            expect_sqlstate(result, "57014");
            assert!(took < Duration::from_secs(1), "cancel took {took:?}");
            assert_usable(&c).await;
        })
        .await;
}

/// The same with the extended protocol and inside a transaction, which then needs a ROLLBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_inside_transaction() {
    Case::new("cancel_txn")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("BEGIN").await.unwrap();
            let token = c.cancel_token();
            let sleeper = tokio::spawn(async move {
                let r = c.query("SELECT pg_sleep(30)", &[]).await;
                (r, c)
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cancelled_at = Instant::now();
            token.cancel_query(NoTls).await.unwrap();
            let (result, c) = sleeper.await.unwrap();
            assert!(cancelled_at.elapsed() < Duration::from_secs(1));
            expect_sqlstate(result, "57014");
            expect_sqlstate(c.query("SELECT 1", &[]).await, "25P02");
            c.batch_execute("ROLLBACK").await.unwrap();
            assert_usable(&c).await;
        })
        .await;
}

/// A cancel request from an idle client must not cancel another client's query, even when the two
/// have used the same server connection (pool size 1 makes sure they have).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_from_idle_client_hits_nobody_else() {
    Case::new("cancel_isolated")
        .yaml(|y| y.pool("size", "1"))
        .run(async |px| {
            let idle = px.client().await;
            assert_usable(&idle).await;
            let busy = px.client().await;
            let worker = tokio::spawn(async move {
                let r = busy.simple_query("SELECT pg_sleep(1.5)").await;
                (r, busy)
            });
            tokio::time::sleep(Duration::from_millis(400)).await;
            idle.cancel_token().cancel_query(NoTls).await.unwrap();
            let (result, busy) = worker.await.unwrap();
            result.expect("another client's cancel request cancelled this query");
            assert_usable(&busy).await;
            assert_usable(&idle).await;
        })
        .await;
}
