//! Server errors reach the client unchanged (SQLSTATE and fields) and leave the session usable.

use tokio_postgres::SimpleQueryMessage;

use crate::harness::{Case, assert_usable, expect_sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_keep_sqlstate_and_session_stays_usable() {
    Case::new("errors")
        .run(async |px| {
            let c = px.client().await;

            // 42P01 undefined_table, extended and simple protocol.
            let e = expect_sqlstate(c.query("SELECT * FROM no_such_table", &[]).await, "42P01");
            assert!(e.message().contains("no_such_table"), "{}", e.message());
            assert_usable(&c).await;
            expect_sqlstate(c.simple_query("SELECT * FROM no_such_table").await, "42P01");
            assert_usable(&c).await;

            // 23505 unique_violation, with its detail, table and constraint fields intact.
            c.batch_execute("CREATE TABLE u (id int4 PRIMARY KEY)")
                .await
                .unwrap();
            c.execute("INSERT INTO u VALUES ($1)", &[&1_i32])
                .await
                .unwrap();
            let e = expect_sqlstate(
                c.execute("INSERT INTO u VALUES ($1)", &[&1_i32]).await,
                "23505",
            );
            assert_eq!(e.constraint(), Some("u_pkey"));
            assert_eq!(e.table(), Some("u"));
            assert_eq!(e.detail(), Some("Key (id)=(1) already exists."));
            assert_eq!(e.severity(), "ERROR");
            assert_usable(&c).await;

            // 22012 division_by_zero, simple and extended.
            expect_sqlstate(c.simple_query("SELECT 1/0").await, "22012");
            assert_usable(&c).await;
            expect_sqlstate(c.query_one("SELECT 1 / $1::int4", &[&0_i32]).await, "22012");
            assert_usable(&c).await;

            // 42601 syntax_error keeps its cursor position.
            let e = expect_sqlstate(c.simple_query("SELEC 1").await, "42601");
            assert!(e.position().is_some(), "syntax error lost its position");
            assert_usable(&c).await;

            // A failing Parse (prepare) is reported and the session goes on.
            expect_sqlstate(c.prepare("SELECT nope FROM u").await, "42703");
            assert_usable(&c).await;
        })
        .await;
}

/// An error in the middle of a multi-statement simple query stops it there; earlier statements of
/// the implicit transaction roll back, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_in_multi_statement_query() {
    Case::new("errors_multi")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE m (v int4)").await.unwrap();
            expect_sqlstate(
                c.simple_query("INSERT INTO m VALUES (1); SELECT 1/0; INSERT INTO m VALUES (2)")
                    .await,
                "22012",
            );
            let n: i64 = c
                .query_one("SELECT count(*) FROM m", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "the implicit transaction must roll back as a whole");
            let msgs = c.simple_query("SELECT 1; SELECT 2").await.unwrap();
            let values: Vec<&str> = msgs
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0),
                    _ => None,
                })
                .collect();
            assert_eq!(values, ["1", "2"]);
        })
        .await;
}

/// After an error inside a transaction, statements fail with 25P02 until ROLLBACK; then all is well.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_inside_transaction() {
    Case::new("errors_txn")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE e (v int4)").await.unwrap();
            c.batch_execute("BEGIN; INSERT INTO e VALUES (1)")
                .await
                .unwrap();
            expect_sqlstate(c.simple_query("SELECT 1/0").await, "22012");
            expect_sqlstate(c.query("SELECT 1", &[]).await, "25P02");
            expect_sqlstate(c.simple_query("SELECT 1").await, "25P02");
            c.batch_execute("ROLLBACK").await.unwrap();
            assert_usable(&c).await;
            let n: i64 = c
                .query_one("SELECT count(*) FROM e", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0);

            // A savepoint recovers from an error without losing the transaction.
            c.batch_execute("BEGIN; INSERT INTO e VALUES (1); SAVEPOINT s")
                .await
                .unwrap();
            expect_sqlstate(c.simple_query("INSERT INTO e VALUES ('x')").await, "22P02");
            c.batch_execute("ROLLBACK TO SAVEPOINT s; INSERT INTO e VALUES (2); COMMIT")
                .await
                .unwrap();
            let n: i64 = c
                .query_one("SELECT count(*) FROM e", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 2);
        })
        .await;
}

/// A server backend terminated by an administrator in the middle of a query: the client gets
/// the server's FATAL 57P01, and the proxy goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_backend_reaches_the_client() {
    Case::new("errors_terminated")
        .run(async |px| {
            let c = px.client().await;
            let victim = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(20)").await });
            let admin = px.env.superuser_client("postgres").await;
            let sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                       WHERE datname = $1 AND query = 'SELECT pg_sleep(20)' AND state = 'active'";
            let mut terminated = false;
            for _ in 0..50 {
                if !admin.query(sql, &[&px.db]).await.unwrap().is_empty() {
                    terminated = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(
                terminated,
                "the sleeping query never showed up in pg_stat_activity"
            );
            expect_sqlstate(victim.await.unwrap(), "57P01");
            let again = px.client().await;
            assert_usable(&again).await;
        })
        .await;
}
