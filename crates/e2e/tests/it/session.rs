//! Session behaviour: reported parameters, SET tracking and isolation, clean close.

use std::time::Duration;

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER};

use crate::harness::{Case, Conn, assert_usable, bounded};

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    c.query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parameter_status_reported() {
    Case::new("param_status")
        .run(async |px| {
            let mut config = px.pg_config(APP_USER, Some(APP_PASSWORD));
            config.application_name("from-startup");
            let c = Conn::open(&config).await.unwrap();

            // What the server reports at startup arrives at the client, spelled as the server spells it.
            let version = c
                .parameter("server_version")
                .expect("server_version not reported");
            assert_eq!(version, show(&c, "server_version").await);
            assert_eq!(c.parameter("client_encoding").as_deref(), Some("UTF8"));
            assert_eq!(c.parameter("integer_datetimes").as_deref(), Some("on"));
            assert_eq!(
                c.parameter("standard_conforming_strings").as_deref(),
                Some("on")
            );
            assert!(c.parameter("DateStyle").is_some() && c.parameter("TimeZone").is_some());
            assert_eq!(
                c.parameter("application_name").as_deref(),
                Some("from-startup")
            );
            assert_eq!(show(&c, "application_name").await, "from-startup");

            // SET of a reported parameter is reported.
            c.batch_execute("SET application_name = 'renamed'")
                .await
                .unwrap();
            let v = c
                .parameter_until("application_name", |v| v == "renamed")
                .await;
            assert_eq!(v.as_deref(), Some("renamed"));
            // It sticks across transactions, whichever server connection serves them.
            for _ in 0..10 {
                assert_eq!(show(&c, "application_name").await, "renamed");
            }
            // RESET goes back to the startup value, not the server default.
            c.batch_execute("RESET application_name").await.unwrap();
            let v = c
                .parameter_until("application_name", |v| v == "from-startup")
                .await;
            assert_eq!(v.as_deref(), Some("from-startup"));
            assert_eq!(show(&c, "application_name").await, "from-startup");
        })
        .await;
}

/// `options=-c name=value` at startup applies to the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn startup_options_apply() {
    Case::new("startup_opts")
        .run(async |px| {
            let mut config = px.pg_config(APP_USER, Some(APP_PASSWORD));
            config.options("-c statement_timeout=4321 -c search_path=public");
            let c = Conn::open(&config).await.unwrap();
            for _ in 0..3 {
                assert_eq!(show(&c, "statement_timeout").await, "4321ms");
                assert_eq!(show(&c, "search_path").await, "public");
            }
        })
        .await;
}

/// What one client SETs never reaches another, even on a pool of one server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_settings_do_not_leak() {
    Case::new("set_isolation")
        .yaml(|y| y.pool("size", "1"))
        .run(async |px| {
            let a = px.client().await;
            let b = px.client().await;
            let default_timeout = show(&b, "statement_timeout").await;
            a.batch_execute("SET statement_timeout = '1234ms'; SET application_name = 'client-a'")
                .await
                .unwrap();
            for _ in 0..5 {
                assert_eq!(show(&b, "statement_timeout").await, default_timeout);
                assert_ne!(show(&b, "application_name").await, "client-a");
                assert_eq!(show(&a, "statement_timeout").await, "1234ms");
                assert_eq!(show(&a, "application_name").await, "client-a");
            }
            // A client that disconnects leaves nothing behind either.
            drop(a);
            let c = px.client().await;
            assert_eq!(show(&c, "statement_timeout").await, default_timeout);
            // SET LOCAL ends with its transaction.
            c.batch_execute("BEGIN; SET LOCAL statement_timeout = '999ms'")
                .await
                .unwrap();
            assert_eq!(show(&c, "statement_timeout").await, "999ms");
            c.batch_execute("COMMIT").await.unwrap();
            assert_eq!(show(&c, "statement_timeout").await, default_timeout);
            assert_eq!(show(&b, "statement_timeout").await, default_timeout);
        })
        .await;
}

/// Closing a client is clean on both sides, and a transaction it abandons is rolled back
/// with its locks released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_is_clean() {
    Case::new("terminate")
        .run(async |px| {
            let setup = px.client().await;
            setup
                .batch_execute("CREATE TABLE t (v int4)")
                .await
                .unwrap();

            // A plain close: the connection driver ends without an error.
            let c = px.connect().await;
            assert_usable(&c).await;
            let Conn { client, driver, .. } = c;
            drop(client);
            bounded(Duration::from_secs(5), "connection close", driver)
                .await
                .unwrap()
                .expect("the connection ended with an error");

            // A client that leaves in the middle of a transaction holding a lock.
            let c = px.client().await;
            c.batch_execute(
                "BEGIN; INSERT INTO t VALUES (1); LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
            )
            .await
            .unwrap();
            drop(c);
            let other = px.client().await;
            other
                .batch_execute("SET lock_timeout = '5s'")
                .await
                .unwrap();
            let n: i64 = other
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "the abandoned transaction was committed");
        })
        .await;
}

/// Many short-lived clients do not pile up server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_connections_are_pooled() {
    Case::new("pooled")
        .yaml(|y| y.pool("size", "3"))
        .run(async |px| {
            for _ in 0..50 {
                let c = px.client().await;
                assert_usable(&c).await;
            }
            let admin = px.env.superuser_client("postgres").await;
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                    &[&px.db, &APP_USER],
                )
                .await
                .unwrap()
                .get(0);
            if !crate::harness::bypass_proxy() {
                assert!(n <= 3, "{n} server connections for a pool of 3");
            }
        })
        .await;
}

/// Ten connected clients share a pool of three server connections: transaction pooling, the
/// default mode, gives a server connection to a client only for the length of a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_share_a_small_pool() {
    Case::new("shared_pool")
        .yaml(|y| y.pool("size", "3"))
        .run(async |px| {
            let mut clients = Vec::new();
            for _ in 0..10 {
                let c = px.client().await;
                assert_usable(&c).await;
                clients.push(c);
            }
            // All of them at once: they queue for the three connections and all get served.
            let sleeps = clients
                .iter()
                .map(|c| c.simple_query("SELECT pg_sleep(0.2)"));
            for r in futures_util::future::join_all(sleeps).await {
                r.expect("a client sharing the pool failed");
            }
            let admin = px.env.superuser_client("postgres").await;
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                    &[&px.db, &APP_USER],
                )
                .await
                .unwrap()
                .get(0);
            if !crate::harness::bypass_proxy() {
                assert!(
                    n <= 3,
                    "{n} server connections for 10 clients and a pool of 3"
                );
            }
        })
        .await;
}

/// `pool.client_idle_timeout` disconnects an idle client with 57P05, in both pool modes, and
/// leaves a busy client alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_disconnected() {
    for mode in ["transaction", "session"] {
        Case::new("idle_timeout")
            .yaml(move |y| y.pool("client_idle_timeout", "1s").pool("mode", mode))
            .run(async |px| {
                if px.skip_without_proxy() {
                    return;
                }
                let conn = px.connect().await;
                // Busy for longer than the timeout: not idle, not disconnected.
                conn.client
                    .simple_query("SELECT pg_sleep(1.5)")
                    .await
                    .unwrap();
                let start = tokio::time::Instant::now();
                let ended = bounded(Duration::from_secs(5), "the idle timeout", conn.driver).await;
                let waited = start.elapsed();
                assert!(
                    waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
                    "{mode}: disconnected after {waited:?}"
                );
                let err = ended
                    .unwrap()
                    .expect_err("the connection should end with an error");
                let code = err.as_db_error().map(|e| e.code().code().to_owned());
                assert_eq!(code.as_deref(), Some("57P05"), "{mode}: {err}");
            })
            .await;
    }
}

/// A temporary table pins its client to one server connection: the pin metric shows it while
/// the client is connected and drops when it leaves; the table follows the client across
/// transactions even on a pool shared with others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_table_pins_and_the_metric_follows() {
    Case::new("pin_metric")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            let Some(metrics) = px.metrics() else { return };
            let holder = px.client().await;
            holder
                .batch_execute("CREATE TEMP TABLE mine (a int); INSERT INTO mine VALUES (1)")
                .await
                .unwrap();
            // The client hears ReadyForQuery before pgsplit checks the session's state.
            eventually(
                || metrics.pinned_clients.get() == 1,
                "pinned after CREATE TEMP",
            )
            .await;
            assert_eq!(metrics.pins_total.get(), 1);
            let other = px.client().await;
            for _ in 0..5 {
                other.simple_query("SELECT 1").await.unwrap();
                let n: i64 = holder
                    .query_one("SELECT count(*) FROM mine", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, 1);
            }
            holder.batch_execute("DROP TABLE mine").await.unwrap();
            eventually(
                || metrics.pinned_clients.get() == 0,
                "dropping the table unpins",
            )
            .await;
            holder
                .batch_execute("CREATE TEMP TABLE again (a int)")
                .await
                .unwrap();
            eventually(|| metrics.pinned_clients.get() == 1, "pinned again").await;
            drop(holder);
            eventually(
                || metrics.pinned_clients.get() == 0,
                "the pin ends with the client",
            )
            .await;
            let leftover: i64 = other
                .query_one(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                leftover, 0,
                "another client sees no leftover temporary table"
            );
        })
        .await;
}

/// Waits up to 5 s for `cond`, failing with `what`.
async fn eventually(cond: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
