//! Connection pooling acceptance: isolation of many clients on a small pool, pool limits under
//! pgbench, pins for state that cannot be replayed, dead idle connections, checkout timeouts,
//! session mode, prepared statements, and SET/RESET semantics across pooled connections.
//!
//! Pool limits are checked from outside: a superuser session straight to the primary samples
//! `pg_stat_activity` for the test's database while the test runs ([`Sampler`]).
//! `PGSPLIT_E2E_PGBENCH_SECS` shortens the long pgbench run (default 30 s).

use std::collections::BTreeSet;
use std::time::Duration;

use pgsplit_testkit::ClusterEnv;
use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, Row, SimpleQueryMessage, Statement};

use crate::harness::{Case, Conn, assert_usable, bounded, bypass_proxy, expect_sqlstate};
use crate::tools::{assert_pgbench_clean, describe, libpq_command, require_tool, run};

/// Server connections of one database, as `pg_stat_activity` shows them (client backends only,
/// so autovacuum and parallel workers do not count; the sampler itself is in another database
/// and excluded anyway).
const COUNT_BACKENDS: &str = "SELECT count(*), coalesce(string_agg(pid || ' ' || coalesce(state, '?') \
     || ' [' || application_name || ']', '; '), '') FROM pg_catalog.pg_stat_activity \
     WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// Samples the number of server connections to a database in a background task.
struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Peak>,
}

/// What a [`Sampler`] saw.
#[derive(Debug, Default)]
struct Peak {
    /// The highest count.
    max: i64,
    /// How many samples were taken.
    samples: u64,
    /// The backends when the count was highest: `pid state [application_name]`.
    at_max: String,
}

impl Sampler {
    /// Starts sampling `db` every `every`, from a superuser connection straight to the primary.
    async fn start(env: &ClusterEnv, db: &str, every: Duration) -> Sampler {
        let admin = env.superuser_client("postgres").await;
        let count = admin.prepare(COUNT_BACKENDS).await.unwrap();
        let db = db.to_owned();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = Peak::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let done = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stopped.changed() => true,
                };
                let row = admin
                    .query_one(&count, &[&db])
                    .await
                    .expect("sampling pg_stat_activity");
                let n: i64 = row.get(0);
                peak.samples += 1;
                if n > peak.max {
                    peak.max = n;
                    peak.at_max = row.get(1);
                }
                if done {
                    return peak;
                }
            }
        });
        Sampler { stop, task }
    }

    /// Stops sampling (after one last sample) and returns what was seen.
    async fn finish(self) -> Peak {
        let _ = self.stop.send(true);
        bounded(Duration::from_secs(10), "stopping the sampler", self.task)
            .await
            .expect("the sampler panicked")
    }
}

/// Asserts that the sampler never saw more than `limit` server connections (not when bypassing
/// the proxy, where every client has its own).
#[track_caller]
fn assert_within_pool(peak: &Peak, limit: i64) {
    eprintln!(
        "pg_stat_activity: at most {} server connections in {} samples",
        peak.max, peak.samples
    );
    assert!(peak.samples > 0, "the sampler took no sample");
    if bypass_proxy() {
        return;
    }
    assert!(
        peak.max >= 1,
        "the sampler never saw a server connection: is it looking at the right database?"
    );
    assert!(
        peak.max <= limit,
        "{} server connections for a pool of {limit}: {}",
        peak.max,
        peak.at_max
    );
}

/// The first row of a simple query's answer, as text.
fn first_row(msgs: &[SimpleQueryMessage]) -> Option<Vec<Option<String>>> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => {
            Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
        }
        _ => None,
    })
}

/// The first column of the first row of `sql`, run with the simple protocol.
async fn simple_value(c: &Client, sql: &str) -> Option<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    first_row(&msgs)
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .into_iter()
        .next()
        .flatten()
}

async fn show(c: &Client, name: &str) -> String {
    simple_value(c, &format!("SHOW {name}"))
        .await
        .unwrap_or_default()
}

async fn backend_pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Ends a client and waits until its connection is closed, so the proxy has seen it leave.
async fn disconnect(c: Conn) {
    let Conn { client, driver, .. } = c;
    drop(client);
    bounded(Duration::from_secs(5), "client disconnect", driver)
        .await
        .unwrap()
        .expect("the connection ended with an error");
}

/// Holds one connection per client at once (each client opens a transaction, so each holds its
/// own connection; with as many clients as the pool size, that is every connection of the pool)
/// and returns, per connection, its pid and `probe` as text; then commits. A connection still
/// being reset is waited for by the checkout.
async fn probe_every_connection(clients: &[Client], probe: &str) -> Vec<(i32, String)> {
    let mut seen = Vec::new();
    for c in clients {
        c.batch_execute("BEGIN").await.unwrap();
        // The first statement after BEGIN is what takes the connection if BEGIN is held back.
        let row = first_row(
            &c.simple_query(&format!("SELECT pg_backend_pid(), ({probe})::text"))
                .await
                .unwrap_or_else(|e| panic!("{probe}: {e}")),
        )
        .unwrap();
        let pid = row[0].as_deref().unwrap().parse().unwrap();
        seen.push((pid, row[1].clone().unwrap_or_default()));
    }
    for c in clients {
        c.batch_execute("COMMIT").await.unwrap();
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// 1. Many clients, a small pool: everyone sees only their own settings.

const ISOLATION_CLIENTS: usize = 200;
/// Without the proxy every client is a server connection: fewer, to stay under the test
/// cluster's `max_connections`.
const ISOLATION_CLIENTS_BYPASSED: usize = 50;
const ISOLATION_POOL: i64 = 10;
const ISOLATION_ROUNDS: i32 = 4;

/// What a client's session looks like from inside a query: search_path resolves `t` to the
/// client's own schema, whose one row holds the client's number.
const WHO_AM_I: &str = "SELECT current_schema()::text, current_setting('application_name'), \
                        current_setting('statement_timeout'), (SELECT owner FROM t)";

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    schema: Option<String>,
    application_name: String,
    statement_timeout: String,
    owner: Option<String>,
}

impl Seen {
    fn expected(i: usize) -> Seen {
        Seen {
            schema: Some(format!("s{i}")),
            application_name: format!("client-{i}"),
            statement_timeout: format!("{}ms", timeout_ms(i)),
            owner: Some(i.to_string()),
        }
    }

    fn from_row(row: &Row) -> Seen {
        Seen {
            schema: row.get(0),
            application_name: row.get(1),
            statement_timeout: row.get(2),
            owner: row.get::<_, Option<i32>>(3).map(|v| v.to_string()),
        }
    }

    fn from_simple(msgs: &[SimpleQueryMessage]) -> Option<Seen> {
        let row = first_row(msgs)?;
        Some(Seen {
            schema: row[0].clone(),
            application_name: row[1].clone().unwrap_or_default(),
            statement_timeout: row[2].clone().unwrap_or_default(),
            owner: row[3].clone(),
        })
    }
}

/// Client `i`'s statement_timeout in ms; never a whole number of seconds, so it shows as `…ms`.
fn timeout_ms(i: usize) -> usize {
    20_001 + i
}

/// Connects client `i` and gives it its settings: even clients with SET, odd ones at startup.
async fn connect_isolated(mut config: tokio_postgres::Config, i: usize) -> Result<Conn, String> {
    let by_startup = !i.is_multiple_of(2);
    if by_startup {
        config
            .application_name(format!("client-{i}"))
            .options(format!(
                "-c search_path=s{i} -c statement_timeout={}",
                timeout_ms(i)
            ));
    }
    let c = Conn::open(&config)
        .await
        .map_err(|e| format!("client {i}: connect: {e}"))?;
    if !by_startup {
        c.batch_execute(&format!(
            "SET search_path = s{i}; SET application_name = 'client-{i}'; \
             SET statement_timeout = '{}ms'",
            timeout_ms(i)
        ))
        .await
        .map_err(|e| format!("client {i}: SET: {e}"))?;
    }
    Ok(c)
}

/// Client `i`'s queries, each checked against its own settings: simple and extended protocol,
/// one-off and reused prepared statements, and multi-message transactions with a write.
async fn run_isolated(i: usize, mut c: Conn) -> Result<(), String> {
    let want = Seen::expected(i);
    let fail = |what: &str, r: i32, e: &dyn std::fmt::Display| {
        format!("client {i}, round {r}, {what}: {e}")
    };
    let check = |what: &str, r: i32, got: Seen| {
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "client {i}, round {r}, {what}: saw {got:?}, expected {want:?}"
            ))
        }
    };
    let prepared = c
        .prepare(WHO_AM_I)
        .await
        .map_err(|e| fail("prepare", -1, &e))?;
    for r in 0..ISOLATION_ROUNDS {
        // Simple protocol, its own transaction.
        let msgs = c
            .simple_query(WHO_AM_I)
            .await
            .map_err(|e| fail("simple", r, &e))?;
        check("simple", r, Seen::from_simple(&msgs).ok_or("no row")?)?;

        // Extended protocol, a statement prepared for this query only.
        let row = c
            .query_one(WHO_AM_I, &[])
            .await
            .map_err(|e| fail("extended", r, &e))?;
        check("extended", r, Seen::from_row(&row))?;

        // Extended protocol, a statement prepared once and reused.
        let row = c
            .query_one(&prepared, &[])
            .await
            .map_err(|e| fail("prepared", r, &e))?;
        check("prepared", r, Seen::from_row(&row))?;

        // BEGIN ... COMMIT as separate simple messages, with a write in between.
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| fail("BEGIN", r, &e))?;
        let msgs = c
            .simple_query(WHO_AM_I)
            .await
            .map_err(|e| fail("simple in transaction", r, &e))?;
        check(
            "simple in transaction",
            r,
            Seen::from_simple(&msgs).ok_or("no row")?,
        )?;
        c.execute("INSERT INTO hits VALUES ($1)", &[&r])
            .await
            .map_err(|e| fail("INSERT in transaction", r, &e))?;
        c.batch_execute("SELECT pg_sleep(0.002); COMMIT")
            .await
            .map_err(|e| fail("COMMIT", r, &e))?;

        // A driver transaction (extended protocol inside), with a write.
        let tx = c
            .client
            .transaction()
            .await
            .map_err(|e| fail("transaction", r, &e))?;
        tx.execute("INSERT INTO hits VALUES ($1)", &[&(r + 100)])
            .await
            .map_err(|e| fail("INSERT in driver transaction", r, &e))?;
        let row = tx
            .query_one(&prepared, &[])
            .await
            .map_err(|e| fail("prepared in transaction", r, &e))?;
        check("prepared in transaction", r, Seen::from_row(&row))?;
        tx.commit()
            .await
            .map_err(|e| fail("driver COMMIT", r, &e))?;
    }
    // Every write landed in the client's own schema.
    let n: i64 = c
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .map_err(|e| fail("count", ISOLATION_ROUNDS, &e))?
        .get(0);
    let want_rows = 2 * i64::from(ISOLATION_ROUNDS);
    if n != want_rows {
        return Err(format!(
            "client {i}: {n} rows in its own hits table, expected {want_rows}"
        ));
    }
    Ok(())
}

/// 200 concurrent clients over a pool of 10, each with its own search_path, application_name and
/// statement_timeout: every query sees its own client's settings, and the database never has
/// more than 10 server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_keep_their_own_settings() {
    Case::new("pool_isolation")
        .limit(Duration::from_secs(240))
        .yaml(|y| y.pool("size", &ISOLATION_POOL.to_string()))
        .run(async |px| {
            let count = if bypass_proxy() {
                ISOLATION_CLIENTS_BYPASSED
            } else {
                ISOLATION_CLIENTS
            };
            let setup = px.client().await;
            let mut ddl = String::new();
            for i in 0..count {
                ddl.push_str(&format!(
                    "CREATE SCHEMA s{i}; CREATE TABLE s{i}.t (owner int4); \
                     INSERT INTO s{i}.t VALUES ({i}); CREATE TABLE s{i}.hits (r int4);"
                ));
            }
            setup.batch_execute(&ddl).await.unwrap();
            drop(setup);

            let sampler = Sampler::start(&px.env, &px.db, Duration::from_millis(20)).await;
            let config = px.pg_config(APP_USER, Some(APP_PASSWORD));
            let started = Instant::now();
            let mut connecting = JoinSet::new();
            for i in 0..count {
                let config = config.clone();
                connecting.spawn(async move { (i, connect_isolated(config, i).await) });
            }
            let mut clients = Vec::new();
            let mut errors = Vec::new();
            while let Some(res) = connecting.join_next().await {
                match res.expect("a connecting task panicked") {
                    (i, Ok(c)) => clients.push((i, c)),
                    (_, Err(e)) => errors.push(e),
                }
            }
            let connected = started.elapsed();
            assert!(
                errors.is_empty(),
                "{} of {count} clients failed to connect and set up; first: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );

            let mut running = JoinSet::new();
            for (i, c) in clients {
                running.spawn(run_isolated(i, c));
            }
            while let Some(res) = running.join_next().await {
                if let Err(e) = res.expect("a client task panicked") {
                    errors.push(e);
                }
            }
            let total = started.elapsed();
            let peak = sampler.finish().await;
            eprintln!(
                "{count} clients: connected and set up in {connected:?}, \
                 all queries done in {total:?}"
            );
            errors.sort();
            assert!(
                errors.is_empty(),
                "{} of {count} clients saw a wrong session or failed; first: {:#?}",
                errors.len(),
                &errors[..errors.len().min(10)]
            );
            assert_within_pool(&peak, ISOLATION_POOL);
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 2. pgbench through a small pool.

/// Seconds of the long pgbench run: `PGSPLIT_E2E_PGBENCH_SECS`, default 30.
fn pgbench_secs() -> u64 {
    match std::env::var("PGSPLIT_E2E_PGBENCH_SECS") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            panic!("PGSPLIT_E2E_PGBENCH_SECS={v:?} is not a number of seconds")
        }),
        _ => 30,
    }
}

const PGBENCH_POOL: i64 = 8;

/// `pgbench -i -s 1`, then `pgbench -M <mode> -c 64 -j 4 -T <secs>` through a pool of 8:
/// exit 0, no failed transaction, and never more than 8 server connections.
async fn pgbench_on_small_pool(name: &'static str, mode: &'static str, secs: u64) {
    let Some(pgbench) = require_tool("pgbench") else {
        return;
    };
    Case::new(name)
        .limit(Duration::from_secs(secs + 180))
        .yaml(|y| y.pool("size", &PGBENCH_POOL.to_string()))
        .run(async |px| {
            let mut init = libpq_command(&pgbench, px);
            init.args(["-i", "-s", "1", "-q", &px.db]);
            let out = run(init, Duration::from_secs(90)).await;
            assert!(
                out.status.success(),
                "pgbench -i failed\n{}",
                describe(&out)
            );

            let sampler = Sampler::start(&px.env, &px.db, Duration::from_millis(100)).await;
            let mut bench = libpq_command(&pgbench, px);
            let secs_arg = secs.to_string();
            bench.args(["-M", mode, "-c", "64", "-j", "4", "-T", &secs_arg, &px.db]);
            let started = Instant::now();
            let out = run(bench, Duration::from_secs(secs + 120)).await;
            let took = started.elapsed();
            let peak = sampler.finish().await;
            let stdout = assert_pgbench_clean(&out, mode);
            let line = |prefix: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .unwrap_or("?")
                    .trim()
                    .to_owned()
            };
            let processed = line("number of transactions actually processed: ");
            assert!(
                processed
                    .split('/')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0),
                "no transactions processed\n{}",
                describe(&out)
            );
            eprintln!(
                "pgbench -M {mode} -c 64 -j 4 -T {secs}: {processed} transactions, \
                 latency average {}, tps {}, wall {took:?}",
                line("latency average = "),
                line("tps = ")
            );
            assert_within_pool(&peak, PGBENCH_POOL);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_prepared_64_clients_pool_8() {
    pgbench_on_small_pool("pool_pgbench_prepared", "prepared", pgbench_secs()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_extended_64_clients_pool_8() {
    pgbench_on_small_pool("pool_pgbench_extended", "extended", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_simple_64_clients_pool_8() {
    pgbench_on_small_pool("pool_pgbench_simple", "simple", 5).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Pins: state that cannot be replayed keeps its client on one connection, and leaves with it.

const TEMP_OBJECTS: &str = "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()";
const ADVISORY_LOCKS: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                              AND pid = pg_backend_pid()";
const LISTENING: &str = "SELECT count(*) FROM pg_listening_channels()";

/// Other clients keep the pool busy: each runs a few short transactions, concurrently; none of
/// them is given the pinned client's backend (`pinned`) or sees its state (`probe` counts it and
/// must be 0).
async fn others_work(others: &[Client], probe: &str, pinned: i32) {
    let work = others.iter().map(|o| async move {
        for _ in 0..3 {
            let sql = format!("SELECT ({probe}), pg_backend_pid(), pg_sleep(0.005)");
            let row = o.query_one(sql.as_str(), &[]).await.unwrap();
            let (n, pid): (i64, i32) = (row.get(0), row.get(1));
            assert_eq!(n, 0, "another client sees pinned state ({probe})");
            assert_ne!(pid, pinned, "another client was given the pinned backend");
        }
    });
    futures_util::future::join_all(work).await;
}

/// After a pinned client left: every connection of the pool (two) is clean, and the pinned
/// client's old connection is among them (it was reset and reused, not just dropped).
async fn assert_pool_clean(px: &crate::harness::TestProxy, probe: &str, old_pid: i32) {
    let checkers = [px.client().await, px.client().await];
    for _ in 0..3 {
        let seen = probe_every_connection(&checkers, probe).await;
        for (pid, n) in &seen {
            assert_eq!(n, "0", "backend {pid} still has state ({probe})");
        }
        if !bypass_proxy() {
            assert!(
                seen.iter().any(|(pid, _)| *pid == old_pid),
                "the pinned client's connection (pid {old_pid}) was not reused: {seen:?}"
            );
        }
    }
}

/// A temporary table pins its client: it sees the table in every transaction, on the same
/// backend, while others share the rest of the pool; after it leaves, no connection has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temp_table_pins_its_client() {
    Case::new("pin_temp")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            let a = px.connect().await;
            let others = [px.client().await, px.client().await, px.client().await];
            a.batch_execute("CREATE TEMP TABLE scratch (v int4); INSERT INTO scratch VALUES (0)")
                .await
                .unwrap();
            let pid = backend_pid(&a).await;
            for round in 1..=5 {
                others_work(&others, TEMP_OBJECTS, pid).await;
                // Separate transactions, both protocols.
                a.execute("INSERT INTO scratch VALUES ($1)", &[&round])
                    .await
                    .unwrap();
                let n = simple_value(&a, "SELECT count(*) FROM scratch").await;
                assert_eq!(n, Some((round + 1).to_string()));
                let tx_count = {
                    a.batch_execute("BEGIN").await.unwrap();
                    let n: i64 = a
                        .query_one("SELECT count(*) FROM scratch", &[])
                        .await
                        .unwrap()
                        .get(0);
                    a.batch_execute("COMMIT").await.unwrap();
                    n
                };
                assert_eq!(tx_count, i64::from(round) + 1);
                assert_eq!(backend_pid(&a).await, pid, "the pinned client moved");
            }
            disconnect(a).await;
            assert_pool_clean(px, TEMP_OBJECTS, pid).await;
        })
        .await;
}

/// A session advisory lock pins its client until unlocked; leaving releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn advisory_lock_pins_its_client() {
    Case::new("pin_advisory")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            let a = px.connect().await;
            let others = [px.client().await, px.client().await];
            let b = px.client().await;
            a.batch_execute("SELECT pg_advisory_lock(4242)")
                .await
                .unwrap();
            let pid = backend_pid(&a).await;
            for _ in 0..5 {
                others_work(&others, ADVISORY_LOCKS, pid).await;
                let got: bool = b
                    .query_one("SELECT pg_try_advisory_lock(4242)", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert!(!got, "another client got a lock the pinned client holds");
                assert_eq!(simple_value(&a, ADVISORY_LOCKS).await.as_deref(), Some("1"));
                assert_eq!(backend_pid(&a).await, pid, "the pinned client moved");
            }
            // Unlocking works, so the lock is still on the client's connection.
            let unlocked: bool = a
                .query_one("SELECT pg_advisory_unlock(4242)", &[])
                .await
                .unwrap()
                .get(0);
            assert!(
                unlocked,
                "the lock was no longer held by the client's session"
            );
            let got: bool = b
                .query_one("SELECT pg_try_advisory_lock(4242)", &[])
                .await
                .unwrap()
                .get(0);
            assert!(got, "the lock is still held after unlock");
            b.batch_execute("SELECT pg_advisory_unlock(4242)")
                .await
                .unwrap();

            // Leaving while holding a lock releases it.
            a.batch_execute("SELECT pg_advisory_lock(4243)")
                .await
                .unwrap();
            let pid = backend_pid(&a).await;
            disconnect(a).await;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let got: bool = b
                    .query_one("SELECT pg_try_advisory_lock(4243)", &[])
                    .await
                    .unwrap()
                    .get(0);
                if got {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the lock of a client that left is still held after 5 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            b.batch_execute("SELECT pg_advisory_unlock(4243)")
                .await
                .unwrap();
            drop(b);
            assert_pool_clean(px, ADVISORY_LOCKS, pid).await;
        })
        .await;
}

/// LISTEN pins its client: notifications keep arriving between its transactions and it stays
/// on one backend; after it leaves, no connection is listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listen_pins_its_client() {
    Case::new("pin_listen")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            let mut a = px.connect().await;
            let others = [px.client().await, px.client().await];
            let sender = px.client().await;
            a.batch_execute("LISTEN pinned_channel").await.unwrap();
            let pid = backend_pid(&a).await;
            for round in 0..5 {
                others_work(&others, LISTENING, pid).await;
                let payload = format!("round {round}");
                sender
                    .query_one("SELECT pg_notify('pinned_channel', $1)", &[&payload])
                    .await
                    .unwrap();
                let n = loop {
                    match a.next_message(Duration::from_secs(5)).await {
                        AsyncMessage::Notification(n) => break n,
                        AsyncMessage::Notice(_) => {}
                        other => panic!("unexpected message {other:?}"),
                    }
                };
                assert_eq!(
                    (n.channel(), n.payload()),
                    ("pinned_channel", payload.as_str())
                );
                assert_eq!(simple_value(&a, LISTENING).await.as_deref(), Some("1"));
                assert_eq!(backend_pid(&a).await, pid, "the pinned client moved");
            }
            disconnect(a).await;
            assert_pool_clean(px, LISTENING, pid).await;
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 4. A pooled connection killed while idle.

/// Terminates every server connection of `db` (straight to the primary, as superuser) and waits
/// until they are gone; returns their pids.
async fn terminate_all(admin: &Client, db: &str) -> Vec<i32> {
    let rows = admin
        .query(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await
        .unwrap();
    let pids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            return pids;
        }
        assert!(Instant::now() < deadline, "terminated backends still exist");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The backend pid through the simple protocol: it leaves nothing in flight behind it (an
/// extended-protocol `query` with a text statement makes tokio-postgres send Close + Sync in
/// the background when the statement is dropped, which would keep the connection busy).
async fn simple_pid(c: &Client) -> i32 {
    simple_value(c, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// `pg_terminate_backend` on an idle pooled connection: the next query of the client succeeds,
/// on a new backend, in both protocols and with a statement prepared before the kill.
///
/// Before each kill the client's last request is a simple query, so the connection is idle in
/// the pool, not in the middle of a unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_idle_connection_is_replaced() {
    Case::new("pool_terminated")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let admin = px.env.superuser_client("postgres").await;
            let c = px.client().await;
            let stmt = c.prepare("SELECT $1::int4 + 1").await.unwrap();
            let v: i32 = c.query_one(&stmt, &[&1]).await.unwrap().get(0);
            assert_eq!(v, 2);
            let mut dead = BTreeSet::new();
            let mut kill = async |last_pid: i32| {
                let killed = terminate_all(&admin, &px.db).await;
                assert!(
                    killed.contains(&last_pid),
                    "pid {last_pid} not among the database's backends {killed:?}"
                );
                dead.extend(killed);
                dead.clone()
            };

            // The next query is a simple one.
            let dead_now = kill(simple_pid(&c).await).await;
            let new_pid = simple_pid(&c).await;
            assert!(
                !dead_now.contains(&new_pid),
                "served by a killed backend {new_pid}"
            );

            // The next query uses a statement prepared before the kill.
            let dead_now = kill(new_pid).await;
            let v: i32 = c.query_one(&stmt, &[&41]).await.unwrap().get(0);
            assert_eq!(v, 42);
            let new_pid = simple_pid(&c).await;
            assert!(
                !dead_now.contains(&new_pid),
                "served by a killed backend {new_pid}"
            );

            // The next query is an extended one with a new statement.
            let dead_now = kill(new_pid).await;
            let pid: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            assert!(!dead_now.contains(&pid), "served by a killed backend {pid}");

            // The next unit opens a transaction.
            let dead_now = kill(simple_pid(&c).await).await;
            c.batch_execute("BEGIN").await.unwrap();
            let in_tx = simple_pid(&c).await;
            c.batch_execute("COMMIT").await.unwrap();
            assert!(
                !dead_now.contains(&in_tx),
                "served by a killed backend {in_tx}"
            );

            // A new client, too.
            let dead_now = kill(simple_pid(&c).await).await;
            let d = px.client().await;
            let new_pid = simple_pid(&d).await;
            assert!(
                !dead_now.contains(&new_pid),
                "served by a killed backend {new_pid}"
            );
            assert_usable(&c).await;
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 5. checkout_timeout.

const CHECKOUT_TIMEOUT_MS: u128 = 500;
/// 10 % of the timeout.
const CHECKOUT_SLACK_MS: u128 = 50;
/// No single attempt may take longer than this: scheduling on a loaded machine (the whole e2e
/// suite in one process on two CPUs) has delayed single answers by up to ~180 ms, so the
/// 10 % bound applies to the median of the attempts, and this bound only catches a timeout
/// that is plainly wrong.
const CHECKOUT_WORST_MS: u128 = 1000;

/// Pool of one, checkout_timeout 500ms: while client A holds the connection in a transaction,
/// client B's queries fail with 53300 naming the pool, never before 500 ms and (median of five
/// attempts) within 10 % of it; B's session stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_timeout_fails_the_query_not_the_session() {
    Case::new("pool_checkout_timeout")
        .yaml(|y| y.pool("size", "1").pool("checkout_timeout", "500ms"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let a = px.client().await;
            let b = px.client().await;
            a.batch_execute("BEGIN; SELECT 1").await.unwrap();

            let mut timings = Vec::new();
            for protocol in ["simple", "extended", "simple", "extended", "simple"] {
                let started = Instant::now();
                let res = match protocol {
                    "simple" => b.simple_query("SELECT 1").await.map(drop),
                    _ => b.query("SELECT $1::int4", &[&1]).await.map(drop),
                };
                let took = started.elapsed();
                let err = expect_sqlstate(res, "53300");
                let message = err.message();
                for part in ["primary", APP_USER, px.db.as_str()] {
                    assert!(
                        message.contains(part),
                        "the error does not name the pool ({part}): {message}"
                    );
                }
                eprintln!("checkout timeout ({protocol}) after {took:?}: {message}");
                timings.push(took);
            }
            for took in &timings {
                let ms = took.as_millis();
                assert!(
                    (CHECKOUT_TIMEOUT_MS..=CHECKOUT_WORST_MS).contains(&ms),
                    "53300 after {took:?}, expected {CHECKOUT_TIMEOUT_MS} ms: {timings:?}"
                );
            }
            let mut sorted = timings.clone();
            sorted.sort();
            let median = sorted[sorted.len() / 2];
            assert!(
                median.as_millis() <= CHECKOUT_TIMEOUT_MS + CHECKOUT_SLACK_MS,
                "53300 after a median {median:?}, expected {CHECKOUT_TIMEOUT_MS} ms + at most 10 %: \
                 {timings:?}"
            );

            a.batch_execute("COMMIT").await.unwrap();
            assert_usable(&b).await;
            let v: i32 = b
                .query_one("SELECT $1::int4", &[&7])
                .await
                .unwrap()
                .get(0);
            assert_eq!(v, 7);
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Session mode.

/// In session mode a client keeps one backend for its whole session; the next client on that
/// connection finds no leftover settings, prepared statements or temporary tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_mode_keeps_a_backend_and_resets_it() {
    Case::new("pool_session_mode")
        .yaml(|y| y.pool("mode", "session").pool("size", "2"))
        .run(async |px| {
            let a = px.connect().await;
            let c = px.connect().await;
            let default_timeout = show(&a, "statement_timeout").await;
            let default_app = show(&a, "application_name").await;
            let (pid_a, pid_c) = (backend_pid(&a).await, backend_pid(&c).await);
            assert_ne!(pid_a, pid_c);
            for round in 0..10 {
                for (client, pid) in [(&a.client, pid_a), (&c.client, pid_c)] {
                    let got = match round % 3 {
                        0 => backend_pid(client).await,
                        1 => simple_value(client, "SELECT pg_backend_pid()")
                            .await
                            .unwrap()
                            .parse()
                            .unwrap(),
                        _ => {
                            client.batch_execute("BEGIN").await.unwrap();
                            let p = backend_pid(client).await;
                            client.batch_execute("COMMIT").await.unwrap();
                            p
                        }
                    };
                    if !bypass_proxy() {
                        assert_eq!(got, pid, "a session-mode client changed backend");
                    }
                }
            }

            // Both leave things behind: settings, an SQL-level and a protocol-level prepared
            // statement (still prepared when they leave), a temporary table.
            let mut statements = Vec::new();
            for client in [&a.client, &c.client] {
                client
                    .batch_execute(
                        "SET statement_timeout = '4321ms'; SET application_name = 'leftover'; \
                         SET myapp.flag = 'on'; PREPARE leftover_sql AS SELECT 42; \
                         CREATE TEMP TABLE leftover_tmp (v int4)",
                    )
                    .await
                    .unwrap();
                let stmt = client.prepare("SELECT 'leftover'::text").await.unwrap();
                client.query_one(&stmt, &[]).await.unwrap();
                statements.push(stmt);
            }
            disconnect(a).await;
            disconnect(c).await;
            drop(statements);

            // The next two clients take both connections (waiting for their reset if need be).
            // What they find is read with the simple protocol before they do anything else, so
            // no statement of their own is on the connection yet.
            let b1 = px.client().await;
            let b2 = px.client().await;
            let mut pids = BTreeSet::new();
            for b in [&b1, &b2] {
                let row = first_row(
                    &b.simple_query(
                        "SELECT pg_backend_pid(), current_setting('statement_timeout'), \
                         current_setting('application_name'), \
                         current_setting('myapp.flag', true), \
                         (SELECT count(*) FROM pg_prepared_statements), \
                         (SELECT string_agg(name || ': ' || statement, '; ') \
                            FROM pg_prepared_statements), \
                         (SELECT count(*) FROM pg_class \
                            WHERE relnamespace = pg_my_temp_schema())",
                    )
                    .await
                    .unwrap(),
                )
                .unwrap();
                pids.insert(row[0].clone().unwrap().parse::<i32>().unwrap());
                assert_eq!(row[1].as_deref(), Some(default_timeout.as_str()));
                assert_eq!(row[2].as_deref(), Some(default_app.as_str()));
                assert!(
                    row[3].as_deref().is_none_or(str::is_empty),
                    "leftover custom setting: {:?}",
                    row[3]
                );
                assert_eq!(
                    row[4].as_deref(),
                    Some("0"),
                    "leftover prepared statements: {:?}",
                    row[5]
                );
                assert_eq!(row[6].as_deref(), Some("0"), "leftover temporary table");
            }
            if !bypass_proxy() {
                assert_eq!(
                    pids,
                    BTreeSet::from([pid_a, pid_c]),
                    "the next clients did not get the released connections"
                );
            }
            // They keep their own backends too.
            for _ in 0..3 {
                let now: BTreeSet<i32> = [backend_pid(&b1).await, backend_pid(&b2).await].into();
                assert_eq!(now, pids);
            }
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Prepared statements in transaction mode.

const PREPARED_CLIENTS: usize = 20;
const PREPARED_ROUNDS: i32 = 50;
const SHARED_SQL: &str = "SELECT $1::int4 + 1000";

fn own_sql(i: usize) -> String {
    format!("SELECT $1::int4 * {}, {i}::int4", i + 2)
}

/// Client `i`'s two statements: the shared one and its own, prepared in an order that gives
/// the same driver-side names (`s0`, `s1`) to different statements across clients.
async fn prepare_pair(i: usize, c: &Client) -> Result<(Statement, Statement), String> {
    let own = own_sql(i);
    let (shared, own) = if i.is_multiple_of(2) {
        let shared = c.prepare(SHARED_SQL).await;
        (shared, c.prepare(&own).await)
    } else {
        let own = c.prepare(&own).await;
        (c.prepare(SHARED_SQL).await, own)
    };
    match (shared, own) {
        (Ok(s), Ok(o)) => Ok((s, o)),
        (Err(e), _) | (_, Err(e)) => Err(format!("client {i}, prepare: {e}")),
    }
}

/// Runs both statements `rounds` times, interleaved, every tenth round inside a transaction.
async fn exercise_pair(
    i: usize,
    c: &Client,
    (shared, own): &(Statement, Statement),
    rounds: i32,
) -> Result<(), String> {
    let fail = |what: &str, k: i32, e: tokio_postgres::Error| {
        format!("client {i}, round {k}, {what}: {e}")
    };
    let factor = i32::try_from(i + 2).unwrap();
    let who = i32::try_from(i).unwrap();
    for k in 0..rounds {
        let in_tx = k % 10 == 9;
        if in_tx {
            c.batch_execute("BEGIN")
                .await
                .map_err(|e| fail("BEGIN", k, e))?;
        }
        let v: i32 = c
            .query_one(shared, &[&k])
            .await
            .map_err(|e| fail("shared", k, e))?
            .get(0);
        if v != k + 1000 {
            return Err(format!("client {i}: shared({k}) = {v}"));
        }
        let row = c
            .query_one(own, &[&k])
            .await
            .map_err(|e| fail("own", k, e))?;
        let (v, w): (i32, i32) = (row.get(0), row.get(1));
        if (v, w) != (k * factor, who) {
            return Err(format!(
                "client {i}: own({k}) = ({v}, {w}), expected ({}, {who})",
                k * factor
            ));
        }
        if in_tx {
            c.batch_execute("COMMIT")
                .await
                .map_err(|e| fail("COMMIT", k, e))?;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Client `i`: its statements interleaved, then DEALLOCATE ALL and DISCARD ALL, each followed by
/// preparing again.
async fn prepared_client(i: usize, c: Client) -> Result<(), String> {
    let pair = prepare_pair(i, &c).await?;
    exercise_pair(i, &c, &pair, PREPARED_ROUNDS).await?;
    let mut old = pair;
    for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
        c.simple_query(reset)
            .await
            .map_err(|e| format!("client {i}, {reset}: {e}"))?;
        // As in PostgreSQL, the old statements are gone ...
        match c.query_one(&old.0, &[&1]).await {
            Err(e) if e.code().map(|s| s.code()) == Some("26000") => {}
            other => {
                return Err(format!(
                    "client {i}: a statement deallocated by {reset} answered {other:?}"
                ));
            }
        }
        // ... and preparing again works.
        let pair = prepare_pair(i, &c).await?;
        exercise_pair(i, &c, &pair, 5).await?;
        old = pair;
    }
    Ok(())
}

/// 20 clients prepare the same and different statements and run them interleaved over a pool of
/// three; DEALLOCATE ALL and DISCARD ALL by a client, then preparing again, work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_across_a_small_pool() {
    Case::new("pool_prepared")
        .limit(Duration::from_secs(120))
        .yaml(|y| y.pool("size", "3"))
        .run(async |px| {
            let mut clients = Vec::new();
            for _ in 0..PREPARED_CLIENTS {
                clients.push(px.client().await);
            }
            let started = Instant::now();
            let mut tasks = JoinSet::new();
            for (i, c) in clients.into_iter().enumerate() {
                tasks.spawn(prepared_client(i, c));
            }
            let mut errors = Vec::new();
            while let Some(res) = tasks.join_next().await {
                if let Err(e) = res.expect("a client task panicked") {
                    errors.push(e);
                }
            }
            eprintln!(
                "{PREPARED_CLIENTS} clients with prepared statements: {:?}",
                started.elapsed()
            );
            assert!(
                errors.is_empty(),
                "{} of {PREPARED_CLIENTS} clients failed; first: {:#?}",
                errors.len(),
                &errors[..errors.len().min(10)]
            );
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 8. SET in a rolled-back transaction.

/// A SET inside a transaction that is rolled back does not stick, as in PostgreSQL; one inside a
/// committed transaction does; ROLLBACK TO SAVEPOINT undoes the SETs after the savepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_in_rolled_back_transaction_does_not_stick() {
    Case::new("pool_set_rollback")
        .yaml(|y| y.pool("size", "2"))
        .run(async |px| {
            let mut c = px.connect().await;
            let other = px.client().await;
            let churn = async || {
                // Another client moves through the pool meanwhile, with its own setting.
                other
                    .batch_execute("SET statement_timeout = '9999ms'; SELECT 1")
                    .await
                    .unwrap();
            };
            let original_app = show(&c, "application_name").await;
            let original_path = show(&c, "search_path").await;
            c.batch_execute("SET statement_timeout = '1111ms'")
                .await
                .unwrap();

            // Separate simple messages.
            c.batch_execute("BEGIN").await.unwrap();
            c.batch_execute("SET statement_timeout = '2222ms'")
                .await
                .unwrap();
            assert_eq!(show(&c, "statement_timeout").await, "2222ms");
            c.batch_execute("ROLLBACK").await.unwrap();
            for _ in 0..3 {
                churn().await;
                assert_eq!(show(&c, "statement_timeout").await, "1111ms");
            }

            // A driver transaction, SET through the extended protocol.
            let tx = c.client.transaction().await.unwrap();
            tx.execute("SET application_name = 'rolled-back'", &[])
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            churn().await;
            assert_eq!(show(&c, "application_name").await, original_app);
            assert_eq!(
                c.parameter_until("application_name", |v| v == original_app)
                    .await
                    .as_deref(),
                Some(original_app.as_str()),
                "the client was left believing the rolled-back application_name"
            );

            // A transaction that failed, then rolled back.
            c.batch_execute("BEGIN; SET search_path = nowhere")
                .await
                .unwrap();
            c.batch_execute("SELECT 1/0").await.unwrap_err();
            c.batch_execute("ROLLBACK").await.unwrap();
            churn().await;
            assert_eq!(show(&c, "search_path").await, original_path);

            // Savepoints.
            c.batch_execute(
                "BEGIN; SET statement_timeout = '3333ms'; SAVEPOINT s; \
                 SET statement_timeout = '4444ms'; ROLLBACK TO SAVEPOINT s; COMMIT",
            )
            .await
            .unwrap();
            churn().await;
            assert_eq!(show(&c, "statement_timeout").await, "3333ms");

            // A committed SET does stick.
            c.batch_execute("BEGIN").await.unwrap();
            c.batch_execute("SET statement_timeout = '5555ms'")
                .await
                .unwrap();
            c.batch_execute("COMMIT").await.unwrap();
            for _ in 0..3 {
                churn().await;
                assert_eq!(show(&c, "statement_timeout").await, "5555ms");
            }
            assert_eq!(show(&other, "statement_timeout").await, "9999ms");
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 9. RESET ALL returns to the startup values.

/// `RESET ALL` (and `RESET x`, and `DISCARD ALL`) return to what the client sent at startup
/// (`options=-c ...`, application_name), not to the server's defaults, on a pool that another
/// client with other settings shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_all_returns_to_startup_values() {
    Case::new("pool_reset_all")
        .yaml(|y| y.pool("size", "1"))
        .run(async |px| {
            let other = px.client().await;
            let default_timeout = show(&other, "statement_timeout").await;
            other
                .batch_execute("CREATE SCHEMA s_start; SET work_mem = '5MB'")
                .await
                .unwrap();
            let mut config = px.pg_config(APP_USER, Some(APP_PASSWORD));
            config
                .application_name("startup-app")
                .options("-c search_path=s_start,public -c statement_timeout=3333");
            let c = Conn::open(&config).await.unwrap();
            let server_work_mem = show(&c, "work_mem").await;
            let snapshot = async |c: &Client| {
                (
                    show(c, "search_path").await,
                    show(c, "statement_timeout").await,
                    show(c, "application_name").await,
                    simple_value(c, "SELECT current_schema()").await,
                    show(c, "work_mem").await,
                )
            };
            let startup = snapshot(&c).await;
            assert_eq!(
                startup,
                (
                    "s_start,public".to_owned(),
                    "3333ms".to_owned(),
                    "startup-app".to_owned(),
                    Some("s_start".to_owned()),
                    server_work_mem.clone()
                )
            );
            assert_eq!(show(&other, "work_mem").await, "5MB");

            let change = "SET search_path = public; SET statement_timeout = '1s'; \
                          SET application_name = 'changed'; SET work_mem = '7MB'";
            for reset in ["RESET ALL", "DISCARD ALL"] {
                c.batch_execute(change).await.unwrap();
                other.batch_execute("SELECT 1").await.unwrap();
                let changed = snapshot(&c).await;
                assert_eq!(
                    changed,
                    (
                        "public".to_owned(),
                        "1s".to_owned(),
                        "changed".to_owned(),
                        Some("public".to_owned()),
                        "7MB".to_owned()
                    )
                );
                c.batch_execute(reset).await.unwrap();
                for _ in 0..3 {
                    other.batch_execute("SELECT 1").await.unwrap();
                    assert_eq!(snapshot(&c).await, startup, "after {reset}");
                }
                assert_eq!(
                    c.parameter_until("application_name", |v| v == "startup-app")
                        .await
                        .as_deref(),
                    Some("startup-app"),
                    "application_name reported after {reset}"
                );
            }

            // RESET of one setting, too.
            c.batch_execute("SET statement_timeout = '1s'; SET search_path = public")
                .await
                .unwrap();
            c.batch_execute("RESET statement_timeout").await.unwrap();
            other.batch_execute("SELECT 1").await.unwrap();
            assert_eq!(show(&c, "statement_timeout").await, "3333ms");
            assert_eq!(show(&c, "search_path").await, "public");
            assert_eq!(show(&other, "work_mem").await, "5MB");
            assert_eq!(show(&other, "statement_timeout").await, default_timeout);
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 10. Several event loops share the pools.

/// `workers: 3`: clients land on all three event loops (the kernel spreads connections over
/// the loops' sockets; `pgsplit_event_loop_clients` counts each loop's), and with a pool of one
/// server connection all of them run on the same server backend, one after another and then
/// all at once: a connection opened on one loop serves sessions on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_loops_share_one_pool() {
    Case::new("pool_event_loops")
        .yaml(|y| y.set("workers", "3").pool("size", "1"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let metrics = px.metrics().expect("the proxy runs in this process");
            let per_loop = || {
                (0..3)
                    .map(|i| {
                        metrics
                            .event_loop_clients
                            .with_label_values(&[&i.to_string()])
                            .get()
                    })
                    .collect::<Vec<_>>()
            };
            // Connect until every loop has a client (the chance that 40 connections miss a
            // loop is below 1e-6).
            let mut clients = Vec::new();
            while per_loop().contains(&0) {
                assert!(clients.len() < 40, "a loop got no client: {:?}", per_loop());
                clients.push(px.client().await);
            }
            assert_eq!(
                per_loop().iter().sum::<i64>(),
                clients.len() as i64,
                "every client counted once: {:?}",
                per_loop()
            );
            let pid = |row: tokio_postgres::Row| row.get::<_, i32>(0);
            let mut pids = BTreeSet::new();
            for c in &clients {
                pids.insert(pid(c
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()));
            }
            let mut all = JoinSet::new();
            for c in clients {
                all.spawn(async move {
                    let mut seen = BTreeSet::new();
                    for i in 0..20 {
                        let row = c
                            .query_one("SELECT pg_backend_pid(), $1::int4", &[&i])
                            .await
                            .unwrap();
                        assert_eq!(row.get::<_, i32>(1), i);
                        seen.insert(row.get::<_, i32>(0));
                    }
                    seen
                });
            }
            while let Some(seen) = all.join_next().await {
                pids.extend(seen.unwrap());
            }
            assert_eq!(
                pids.len(),
                1,
                "one server connection served all loops: {pids:?}"
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while per_loop() != [0, 0, 0] {
                assert!(
                    Instant::now() < deadline,
                    "clients still counted: {:?}",
                    per_loop()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
}
