//! `limits.max_client_connections`: a client over the limit hears 53300 and is closed, the
//! slot frees when a client leaves, and a cancel request still gets through when pgsplit is
//! full (as PostgreSQL honours one when it is full), so a surge cannot keep clients from
//! stopping their own queries.

use std::time::Duration;

use pgsplit_testkit::cluster::APP_USER;
use tokio::time::Instant;
use tokio_postgres::NoTls;

use crate::harness::{Case, Conn, assert_usable, expect_sqlstate};

/// Opens a client that must be refused for being over the limit.
pub(crate) async fn expect_too_many(config: &tokio_postgres::Config) {
    let err = match Conn::open(config).await {
        Ok(_) => panic!("a client over max_client_connections was served"),
        Err(e) => e,
    };
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db.code().code(), "53300", "{}", db.message());
    assert!(
        db.message().contains("too many clients"),
        "{}",
        db.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_client_limit_a_client_hears_53300_until_a_slot_frees() {
    Case::new("limit_clients")
        .yaml(|y| y.set("limits", "{ max_client_connections: 1 }"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let config = px.pg_config(APP_USER, Some("app"));
            let first = Conn::open(&config).await.expect("the first client");
            expect_too_many(&config).await;
            assert_usable(&first.client).await;
            drop(first);
            // The slot frees once the session has ended, which takes a moment after the
            // client's Terminate.
            let deadline = Instant::now() + Duration::from_secs(5);
            let second = loop {
                match Conn::open(&config).await {
                    Ok(c) => break c,
                    Err(e) if Instant::now() < deadline => {
                        let code = e.as_db_error().map(|d| d.code().code().to_owned());
                        assert_eq!(code.as_deref(), Some("53300"), "{e:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("the slot never freed: {e:?}"),
                }
            };
            assert_usable(&second.client).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_request_gets_through_when_pgsplit_is_full() {
    Case::new("limit_cancel")
        .yaml(|y| y.set("limits", "{ max_client_connections: 1 }"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let config = px.pg_config(APP_USER, Some("app"));
            let conn = Conn::open(&config).await.expect("the only client");
            let token = conn.client.cancel_token();
            let mut sleeper = tokio::spawn(async move {
                let r = conn.client.simple_query("SELECT pg_sleep(30)").await;
                (r, conn)
            });
            // Let the query reach the server before cancelling it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            expect_too_many(&config).await;
            // A cancel that arrives before the query has a server connection is ignored (as
            // PostgreSQL ignores one for an idle backend): send again until it lands, within
            // a bound far below the 30 s sleep.
            let started = Instant::now();
            let (result, conn) = loop {
                token
                    .cancel_query(NoTls)
                    .await
                    .expect("sending the cancel request");
                match tokio::time::timeout(Duration::from_secs(1), &mut sleeper).await {
                    Ok(done) => break done.unwrap(),
                    Err(_) => assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "no cancel request got through while pgsplit was full"
                    ),
                }
            };
            expect_sqlstate(result, "57014");
            assert_usable(&conn.client).await;
        })
        .await;
}
