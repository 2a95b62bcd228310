//! The connection pool against a real server: limits, FIFO, timeouts, dead connections, release.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use pgsplit_backend::{PoolError, PoolKey, PoolStats, Pools};
use tokio::time::{Duration, Instant, sleep};

use crate::harness::{TestDb, query, scalar, settings};

fn stats_of(pools: &Pools, key: &PoolKey) -> Option<PoolStats> {
    pools.stats().into_iter().find(|s| &s.key == key)
}

fn waiting(pools: &Pools, key: &PoolKey) -> usize {
    stats_of(pools, key).map_or(0, |s| s.waiting)
}

/// Waits up to 5 s for `cond`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(2)).await;
    }
}

/// Samples the pool's and the server's view of the connection count until `stop`, returning
/// the largest of each seen.
fn monitor(
    db: Arc<TestDb>,
    pools: Pools,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, i64)> {
    tokio::spawn(async move {
        let (mut pool_max, mut pg_max) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            let open: usize = pools.stats().iter().map(|s| s.open).sum();
            pool_max = pool_max.max(open);
            pg_max = pg_max.max(db.backends().await);
            sleep(Duration::from_millis(3)).await;
        }
        (pool_max, pg_max)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_is_never_exceeded_by_50_concurrent_checkouts() {
    let Some(db) = TestDb::new("pool_size", 1).await else {
        return;
    };
    let db = Arc::new(db);
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 5, 100));
    let stop = Arc::new(AtomicBool::new(false));
    let mon = monitor(db.clone(), pools.clone(), stop.clone());
    let held = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (pools, key, s, held, peak) = (
            pools.clone(),
            key.clone(),
            s.clone(),
            held.clone(),
            peak.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = pools.checkout(&key, &s).await.expect("checkout");
            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            query(&mut conn, "SELECT pg_sleep(0.02)")
                .await
                .expect("query");
            held.fetch_sub(1, Ordering::SeqCst);
            conn.release(None).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    stop.store(true, Ordering::SeqCst);
    let (pool_max, pg_max) = mon.await.expect("monitor");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        5,
        "all five slots were used, never more"
    );
    assert!(pool_max <= 5, "pool stats showed {pool_max} open");
    assert!(pg_max <= 5, "pg_stat_activity showed {pg_max} backends");
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.idle, st.busy, st.waiting), (5, 5, 0, 0));
    assert_eq!(db.backends().await, 5);
    drop(pools);
    Arc::into_inner(db).expect("monitor done").cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_max_connections_is_shared_by_the_pools_of_a_server() {
    let Some(db) = TestDb::new("pool_server_max", 2).await else {
        return;
    };
    let db = Arc::new(db);
    let pools = Pools::new();
    let s = settings(&db.addr(), 4, 5);
    let stop = Arc::new(AtomicBool::new(false));
    let mon = monitor(db.clone(), pools.clone(), stop.clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (pools, key, s) = (pools.clone(), db.key(i % 2), s.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let mut conn = pools.checkout(&key, &s).await.expect("checkout");
                query(&mut conn, "SELECT pg_sleep(0.01)")
                    .await
                    .expect("query");
                conn.release(None).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    stop.store(true, Ordering::SeqCst);
    let (pool_max, pg_max) = mon.await.expect("monitor");
    assert!(
        pool_max <= 5,
        "pool stats showed {pool_max} open on the server"
    );
    assert!(pg_max <= 5, "pg_stat_activity showed {pg_max} backends");
    for st in pools.stats() {
        assert!(st.open <= 4, "{st:?}");
        assert!(st.server_open <= 5, "{st:?}");
        assert_eq!(st.server_max, 5);
    }
    drop(pools);
    Arc::into_inner(db).expect("monitor done").cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let Some(db) = TestDb::new("pool_fifo", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 1, 100));
    let holder = pools.checkout(&key, &s).await.expect("checkout");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (pools2, key2, s2, order2) = (pools.clone(), key.clone(), s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pools2.checkout(&key2, &s2).await.expect("checkout");
            order2.lock().push(i);
            query(&mut conn, "SELECT 1").await.expect("query");
            conn.release(None).await;
        }));
        until("the waiter to queue", || waiting(&pools, &key) == i + 1).await;
    }
    holder.release(None).await;
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    assert_eq!(stats_of(&pools, &key).expect("stats").open, 1);
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_times_out_with_53300_naming_the_pool() {
    let Some(db) = TestDb::new("pool_timeout", 1).await else {
        return;
    };
    let pools = Pools::new();
    let key = db.key(0);
    let mut s = settings(&db.addr(), 1, 100);
    let configured = Duration::from_millis(300);
    s.checkout_timeout = configured;
    let _holder = pools.checkout(&key, &s).await.expect("checkout");
    let start = Instant::now();
    let err = pools
        .checkout(&key, &s)
        .await
        .expect_err("the pool is full");
    let waited = Instant::now() - start;
    assert!(waited >= configured, "gave up after {waited:?}");
    assert!(waited < configured * 3 / 2, "gave up only after {waited:?}");
    assert!(matches!(err, PoolError::Timeout { .. }), "{err}");
    assert_eq!(err.code(), "53300");
    let expected = format!(
        "server primary, user app, database {}: no server connection available within 300ms",
        db.names[0]
    );
    assert_eq!(err.to_string(), expected);
    let fields = err.to_client_error();
    assert_eq!(
        (fields.code.as_str(), fields.message.as_str()),
        ("53300", expected.as_str())
    );
    assert_eq!(waiting(&pools, &key), 0);
    drop((pools, _holder));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_idle_connection_is_replaced_at_checkout() {
    let Some(db) = TestDb::new("pool_terminate", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 2, 100));
    let conn = pools.checkout(&key, &s).await.expect("checkout");
    let old_pid = conn.cancel_key().0;
    conn.release(None).await;
    let killed: bool = db
        .admin
        .query_one("SELECT pg_terminate_backend($1)", &[&(old_pid as i32)])
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    db.wait_pid_gone(old_pid).await;
    // Give the runtime a moment to see the socket turn readable (FATAL 57P01, then EOF).
    sleep(Duration::from_millis(50)).await;
    let mut conn = pools
        .checkout(&key, &s)
        .await
        .expect("no error for the caller");
    assert_ne!(conn.cancel_key().0, old_pid, "a fresh connection");
    assert_eq!(scalar(&mut conn, "SELECT 40 + 2").await, "42");
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.busy, st.idle), (1, 1, 0));
    conn.release(None).await;
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_inside_a_transaction_closes_the_connection() {
    let Some(db) = TestDb::new("pool_txn", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 2, 100));
    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    let pid = conn.cancel_key().0;
    query(&mut conn, "BEGIN").await.expect("begin");
    assert_eq!(conn.txn_status(), b'T');
    conn.release(None).await;
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.idle), (0, 0));
    db.wait_pid_gone(pid).await;

    // A broken connection is closed too, even when idle.
    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    let pid = conn.cancel_key().0;
    conn.mark_broken();
    conn.release(None).await;
    assert_eq!(stats_of(&pools, &key).expect("stats").open, 0);
    db.wait_pid_gone(pid).await;
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_query_runs_on_release() {
    let Some(db) = TestDb::new("pool_reset", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 2, 100));
    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    assert_eq!(conn.state_tag(), 0, "new connections carry tag 0");
    conn.set_state_tag(7);
    let pid = conn.cancel_key().0;
    query(&mut conn, "SET application_name = 'dirty'")
        .await
        .expect("set");
    conn.release(Some("DISCARD ALL")).await;

    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    assert_eq!(conn.cancel_key().0, pid, "the same connection came back");
    assert_eq!(conn.state_tag(), 7, "the tag stays with the connection");
    assert_eq!(scalar(&mut conn, "SHOW application_name").await, "");

    // Without a reset query, settings survive (sessions then replay their own state).
    query(&mut conn, "SET application_name = 'kept'")
        .await
        .expect("set");
    conn.release(None).await;
    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    assert_eq!(scalar(&mut conn, "SHOW application_name").await, "kept");

    // A failing reset query closes the connection.
    conn.release(Some("SELECT 1/0")).await;
    assert_eq!(stats_of(&pools, &key).expect("stats").open, 0);
    db.wait_pid_gone(pid).await;
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_applies_idle_timeout_and_min_idle() {
    let Some(db) = TestDb::new("pool_maintain", 1).await else {
        return;
    };
    let pools = Pools::new();
    let key = db.key(0);
    let mut s = settings(&db.addr(), 5, 100);
    s.min_idle = 1;
    s.server_idle_timeout = Duration::from_millis(200);
    let a = pools.checkout(&key, &s).await.expect("checkout");
    let b = pools.checkout(&key, &s).await.expect("checkout");
    let c = pools.checkout(&key, &s).await.expect("checkout");
    for conn in [a, b, c] {
        conn.release(None).await;
    }
    pools.maintain().await;
    assert_eq!(
        stats_of(&pools, &key).expect("stats").idle,
        3,
        "not idle long enough yet"
    );
    sleep(Duration::from_millis(300)).await;
    pools.maintain().await;
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.idle), (1, 1), "closed down to min_idle");
    db.wait_backends(1).await;

    // Raise min_idle: the next checkout brings the new settings, maintain opens the rest.
    s.min_idle = 3;
    s.server_idle_timeout = Duration::from_secs(600);
    pools
        .checkout(&key, &s)
        .await
        .expect("checkout")
        .release(None)
        .await;
    pools.maintain().await;
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.idle, st.connecting), (3, 3, 0));
    db.wait_backends(3).await;
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_connections_are_closed_on_release() {
    let Some(db) = TestDb::new("pool_lifetime", 1).await else {
        return;
    };
    let pools = Pools::new();
    let key = db.key(0);
    let mut s = settings(&db.addr(), 2, 100);
    s.server_lifetime = Duration::from_millis(200);
    let conn = pools.checkout(&key, &s).await.expect("checkout");
    let pid = conn.cancel_key().0;
    sleep(Duration::from_millis(250)).await;
    conn.release(None).await;
    assert_eq!(stats_of(&pools, &key).expect("stats").open, 0);
    db.wait_pid_gone(pid).await;
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_without_release_closes_and_frees_the_slot() {
    let Some(db) = TestDb::new("pool_drop", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 1, 100));
    let mut conn = pools.checkout(&key, &s).await.expect("checkout");
    let pid = conn.cancel_key().0;
    // Dirty state that must never reach another client.
    query(&mut conn, "SET application_name = 'secret'")
        .await
        .expect("set");
    let (pools2, key2, s2) = (pools.clone(), key.clone(), s.clone());
    let waiter = tokio::spawn(async move {
        let mut conn = pools2.checkout(&key2, &s2).await.expect("checkout");
        let name = scalar(&mut conn, "SHOW application_name").await;
        (conn.cancel_key().0, name)
    });
    until("the waiter to queue", || waiting(&pools, &key) == 1).await;
    drop(conn);
    let (new_pid, name) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was woken")
        .expect("task");
    assert_ne!(new_pid, pid);
    assert_eq!(name, "");
    db.wait_pid_gone(pid).await;
    assert_eq!(
        stats_of(&pools, &key).expect("stats").open,
        0,
        "the waiter dropped it too"
    );
    drop(pools);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_reports_the_server_error_and_frees_the_slot() {
    let Some(db) = TestDb::new("pool_connect_error", 1).await else {
        return;
    };
    let pools = Pools::new();
    let key = PoolKey::new("primary", "app", "no_such_database_here");
    let s = settings(&db.addr(), 1, 100);
    let err = pools.checkout(&key, &s).await.expect_err("no database");
    assert!(matches!(err, PoolError::Connect { .. }), "{err}");
    assert_eq!(err.code(), "3D000");
    assert_eq!(err.to_client_error().code, "3D000");
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.connecting), (0, 0));
    drop(pools);
    db.cleanup().await;
}

/// A NOTIFY that reaches a LISTENing connection while pgsplit runs its own query on it is
/// kept for the client, not dropped with the query's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_during_an_internal_query_is_kept() {
    let Some(db) = TestDb::new("pool_notify", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 2, 100));
    let mut listener = pools.checkout(&key, &s).await.expect("checkout");
    let mut sender = pools.checkout(&key, &s).await.expect("checkout");
    listener.simple_query("LISTEN events").await.unwrap();
    sender.simple_query("NOTIFY events, 'kept'").await.unwrap();
    // The notification is on the listener's socket before its next query's answer.
    sleep(Duration::from_millis(300)).await;
    let rows = listener.simple_query("SELECT 1").await.unwrap();
    assert_eq!(rows, vec![vec![Some("1".to_owned())]]);
    let kept = listener.take_notifications();
    assert_eq!(kept.len(), 1, "the notification was dropped");
    let frame = &kept[0];
    assert_eq!(frame[0], b'A');
    assert!(frame.windows(4).any(|w| w == b"kept"), "{frame:?}");
    assert!(listener.take_notifications().is_empty(), "taken once");
    listener.simple_query("UNLISTEN *").await.unwrap();
    drop((listener, sender));
    db.cleanup().await;
}

/// An idle connection another event loop opened is taken by a checkout on this loop, and its
/// socket moves here: it keeps working after the loop that opened it is gone, and no second
/// server backend is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_loops_idle_connection_moves_to_the_checking_out_loop() {
    let Some(db) = TestDb::new("pool_adopt", 1).await else {
        return;
    };
    let pools = Pools::new();
    let (key, s) = (db.key(0), settings(&db.addr(), 4, 100));
    // Loop 1: its own thread and runtime, which opens the connection and gives it back.
    let (pools1, key1, s1) = (pools.clone(), key.clone(), s.clone());
    let pid = std::thread::spawn(move || {
        pgsplit_backend::set_home(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = pools1
                .checkout(&key1, &s1)
                .await
                .expect("checkout on loop 1");
            assert_eq!(scalar(&mut conn, "SELECT 1").await, "1");
            let pid = conn.cancel_key().0;
            conn.release(None).await;
            pid
        })
        // The runtime, and the reactor that watched the socket, end with the thread.
    })
    .join()
    .expect("loop 1 thread");
    let mut conn = pools.checkout(&key, &s).await.expect("checkout here");
    assert_eq!(
        conn.cancel_key().0,
        pid,
        "loop 1's idle connection, no new one"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT 2").await,
        "2",
        "works from this loop"
    );
    conn.release(None).await;
    let st = stats_of(&pools, &key).expect("stats");
    assert_eq!((st.open, st.idle), (1, 1));
    drop(pools);
    db.cleanup().await;
}
