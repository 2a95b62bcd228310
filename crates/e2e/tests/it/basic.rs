//! Queries through pgsplit: parameters, prepared statements, pipelining, big results, big values.

use futures_util::future::join_all;
use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::types::ToSql;

use crate::harness::{Case, expect_sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parameterised_queries() {
    Case::new("params")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute(
                "CREATE TABLE item (id int8 PRIMARY KEY, name text, price float8, \
                 active bool, tag bytea, note text)",
            )
            .await
            .unwrap();
            let insert = "INSERT INTO item VALUES ($1, $2, $3, $4, $5, $6)";
            let name = "naïve 'quoted' \\ name";
            let tag: &[u8] = &[0, 1, 2, 255];
            let none: Option<&str> = None;
            let n = c
                .execute(insert, &[&1_i64, &name, &9.5_f64, &true, &tag, &none])
                .await
                .unwrap();
            assert_eq!(n, 1);
            c.execute(
                insert,
                &[&2_i64, &"second", &0.25_f64, &false, &tag, &Some("n")],
            )
            .await
            .unwrap();

            let row = c
                .query_one("SELECT * FROM item WHERE id = $1", &[&1_i64])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>("id"), 1);
            assert_eq!(row.get::<_, &str>("name"), name);
            assert_eq!(row.get::<_, f64>("price"), 9.5);
            assert!(row.get::<_, bool>("active"));
            assert_eq!(row.get::<_, &[u8]>("tag"), tag);
            assert_eq!(row.get::<_, Option<&str>>("note"), None);

            // Parameters of inferred types, a NULL comparison and text in/out.
            let rows = c
                .query(
                    "SELECT id FROM item WHERE price > $1 AND note IS DISTINCT FROM $2 ORDER BY id",
                    &[&0.1_f64, &none],
                )
                .await
                .unwrap();
            let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(ids, vec![2]);
            let echoed: String = c
                .query_one("SELECT $1::text || '!'", &[&name])
                .await
                .unwrap()
                .get(0);
            assert_eq!(echoed, format!("{name}!"));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statement_reused_1000_times() {
    Case::new("prepared_1000")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE counter (n int8 PRIMARY KEY)")
                .await
                .unwrap();
            let select = c.prepare("SELECT $1::int8 * 2, $2::text").await.unwrap();
            let insert = c.prepare("INSERT INTO counter VALUES ($1)").await.unwrap();
            for i in 0..1000_i64 {
                let row = c.query_one(&select, &[&i, &i.to_string()]).await.unwrap();
                assert_eq!(row.get::<_, i64>(0), i * 2);
                assert_eq!(row.get::<_, String>(1), i.to_string());
                assert_eq!(c.execute(&insert, &[&i]).await.unwrap(), 1);
            }
            let row = c
                .query_one("SELECT count(*), sum(n)::int8 FROM counter", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), 1000);
            assert_eq!(row.get::<_, i64>(1), 999 * 1000 / 2);
        })
        .await;
}

/// A prepared statement keeps working when the client is given a server connection that has not seen it.
///
/// Other clients hold transactions open on the pool's connections until one of them holds the
/// connection the statement was prepared on; the next execution must then run elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statement_survives_server_connection_change() {
    Case::new("prepared_moves")
        .yaml(|y| y.pool("size", "4"))
        .run(async |px| {
            let a = px.client().await;
            let stmt = a
                .prepare("SELECT $1::int4 + 1, pg_backend_pid()")
                .await
                .unwrap();
            let first = a.query_one(&stmt, &[&1_i32]).await.unwrap();
            let prepared_on: i32 = first.get(1);

            // Each holder opens a transaction with a plain BEGIN and keeps it open while it lives.
            let mut holders = Vec::new();
            let mut moved = false;
            for _ in 0..3 {
                let h = px.client().await;
                h.batch_execute("BEGIN").await.unwrap();
                let pid: i32 = h
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                holders.push(h);
                if pid == prepared_on {
                    moved = true;
                    break;
                }
            }
            for i in 0..20_i32 {
                let row = a.query_one(&stmt, &[&i]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), i + 1);
            }
            if !moved {
                eprintln!("note: the pool never handed the preparing connection to another client");
            }
            drop(holders);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_of_100_queries() {
    Case::new("pipeline")
        .run(async |px| {
            let c = px.client().await;
            let stmt = c
                .prepare("SELECT $1::int4 * 10, repeat('x', $1::int4)")
                .await
                .unwrap();
            let futures = (0..100_i32).map(|i| {
                let (c, stmt) = (&c, &stmt);
                async move { c.query_one(stmt, &[&i]).await }
            });
            let results = join_all(futures).await;
            for (i, r) in results.into_iter().enumerate() {
                let row = r.unwrap_or_else(|e| panic!("pipelined query {i}: {e}"));
                let i = i32::try_from(i).unwrap();
                assert_eq!(row.get::<_, i32>(0), i * 10);
                assert_eq!(row.get::<_, String>(1).len(), usize::try_from(i).unwrap());
            }
        })
        .await;
}

/// One failing statement in a pipeline fails alone: each tokio-postgres query is its own Sync batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_with_a_failing_query() {
    Case::new("pipeline_err")
        .run(async |px| {
            let c = px.client().await;
            let stmt = c.prepare("SELECT 100 / $1::int4").await.unwrap();
            let futures = (0..100_i32).map(|i| {
                let (c, stmt) = (&c, &stmt);
                let divisor = if i == 50 { 0 } else { i + 1 };
                async move { c.query_one(stmt, &[&divisor]).await }
            });
            let results = join_all(futures).await;
            for (i, r) in results.into_iter().enumerate() {
                if i == 50 {
                    expect_sqlstate(r, "22012");
                } else {
                    let want = 100 / (i32::try_from(i).unwrap() + 1);
                    assert_eq!(r.unwrap().get::<_, i32>(0), want, "query {i}");
                }
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn result_of_100k_rows() {
    Case::new("rows_100k")
        .run(async |px| {
            let c = px.client().await;
            let sql = "SELECT g, md5(g::text) FROM generate_series(1, 100000) g ORDER BY g";
            // Extended protocol, streamed.
            let params: [&(dyn ToSql + Sync); 0] = [];
            let stream = c.query_raw(sql, params).await.unwrap();
            pin_mut!(stream);
            let (mut count, mut sum) = (0_i64, 0_i64);
            while let Some(row) = stream.try_next().await.unwrap() {
                let g: i32 = row.get(0);
                assert_eq!(row.get::<_, &str>(1).len(), 32);
                count += 1;
                sum += i64::from(g);
                assert_eq!(i64::from(g), count, "rows out of order");
            }
            assert_eq!((count, sum), (100_000, 100_000 * 100_001 / 2));

            // Simple protocol.
            let msgs = c.simple_query(sql).await.unwrap();
            let rows = msgs
                .iter()
                .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
                .count();
            assert_eq!(rows, 100_000);
            assert!(matches!(
                msgs.last(),
                Some(tokio_postgres::SimpleQueryMessage::CommandComplete(100_000))
            ));
        })
        .await;
}

/// Single values far larger than any buffer: a 20 MB result value and a 10 MB parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_values() {
    Case::new("large_values")
        .run(async |px| {
            let c = px.client().await;
            let row = c
                .query_one("SELECT repeat('ab', 10000000)", &[])
                .await
                .unwrap();
            let v: &str = row.get(0);
            assert_eq!(v.len(), 20_000_000);
            assert!(v.starts_with("abab") && v.ends_with("abab"));

            let big = "z".repeat(10_000_000);
            let row = c
                .query_one("SELECT length($1::text), md5($1::text)", &[&big])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), 10_000_000);
            assert_eq!(row.get::<_, String>(1), crate::md5_hex(big.as_bytes()));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_commit_and_roll_back() {
    Case::new("txn")
        .run(async |px| {
            let mut c = px.client().await;
            c.batch_execute("CREATE TABLE t (v int4)").await.unwrap();
            let t = c.transaction().await.unwrap();
            t.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
            t.commit().await.unwrap();
            let t = c.transaction().await.unwrap();
            t.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
            // Inside the transaction its own write is visible...
            let n: i64 = t
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 2);
            t.rollback().await.unwrap();
            // ...and gone after the rollback.
            let n: i64 = c
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1);
            // A multi-statement simple query is one implicit transaction.
            c.batch_execute("INSERT INTO t VALUES (3); INSERT INTO t VALUES (4)")
                .await
                .unwrap();
            let n: i64 = c
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 3);
        })
        .await;
}

/// A portal read 10 rows at a time (Execute with a row limit, PortalSuspended in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_paging() {
    Case::new("portal")
        .run(async |px| {
            let mut c = px.client().await;
            let t = c.transaction().await.unwrap();
            let portal = t
                .bind("SELECT g FROM generate_series(1, 95) g ORDER BY g", &[])
                .await
                .unwrap();
            let mut seen = Vec::new();
            loop {
                let rows = t.query_portal(&portal, 10).await.unwrap();
                if rows.is_empty() {
                    break;
                }
                assert!(rows.len() <= 10);
                seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
            }
            t.commit().await.unwrap();
            assert_eq!(seen, (1..=95).collect::<Vec<i32>>());
        })
        .await;
}

/// An empty query string gets EmptyQueryResponse, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_query() {
    Case::new("empty_query")
        .run(async |px| {
            let c = px.client().await;
            let msgs = c.simple_query("").await.unwrap();
            assert!(
                msgs.iter()
                    .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            );
            c.batch_execute(" ; ").await.unwrap();
            crate::harness::assert_usable(&c).await;
        })
        .await;
}

/// Fifty clients at once, each running its own statements; every answer goes to its asker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_clients() {
    Case::new("concurrent")
        .run(async |px| {
            let clients = join_all((0..50).map(|_| px.client())).await;
            let work = clients.iter().enumerate().map(|(i, c)| async move {
                let i = i32::try_from(i).unwrap();
                for j in 0..20_i32 {
                    let row = c
                        .query_one("SELECT $1::int4, $2::int4", &[&i, &j])
                        .await
                        .unwrap();
                    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (i, j));
                }
            });
            join_all(work).await;
        })
        .await;
}
