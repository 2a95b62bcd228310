//! Unit tests of the pool queue with fake connections and paused time: no sockets, exact clocks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::time::{Duration, Instant, sleep, timeout};

use super::lease::{Lease, Shared, checkout, maintain};
use super::{Conn, Connector, PoolError, PoolKey, PoolSettings, PoolStats};
use crate::BackendError;

/// A connection that only counts: its id, its birth, and a switch to make it look dead.
#[derive(Debug)]
struct FakeConn {
    id: usize,
    created: Instant,
    addr: String,
    alive: Arc<AtomicBool>,
    live: Arc<AtomicUsize>,
    /// The event loop watching it: the opening thread's ([`crate::home`]), then the last
    /// adopter's.
    home: usize,
    /// Whether it can move to another event loop (a real socket fails to only on errors).
    movable: Arc<AtomicBool>,
}

impl Conn for FakeConn {
    fn created_at(&self) -> Instant {
        self.created
    }

    fn is_alive(&mut self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn home(&self) -> usize {
        self.home
    }

    fn fits(&self, settings: &PoolSettings) -> bool {
        self.addr == settings.addr
    }

    fn adopt(mut self) -> Result<Self, BackendError> {
        // As a real connection: one this loop already watches is not moved.
        if self.home == crate::home::home() {
            return Ok(self);
        }
        if self.movable.load(Ordering::SeqCst) {
            self.home = crate::home::home();
            return Ok(self);
        }
        // Gone, as a socket that failed to move is closed.
        self.live.fetch_sub(1, Ordering::SeqCst);
        Err(BackendError::Closed { addr: self.addr })
    }

    fn close(self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the next connect does.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Fail,
}

/// Opens [`FakeConn`]s after `delay`, checking that live connections (including those being
/// opened) never exceed `max_live`.
#[derive(Debug)]
struct FakeConnector {
    delay: Duration,
    max_live: usize,
    next_id: AtomicUsize,
    /// Connections open or being opened.
    live: Arc<AtomicUsize>,
    /// The most `live` ever was.
    peak: AtomicUsize,
    script: Mutex<VecDeque<Outcome>>,
    /// Liveness switch of every connection, by id.
    switches: Mutex<Vec<Arc<AtomicBool>>>,
    /// Whether each connection can move to another event loop, by id.
    movable: Mutex<Vec<Arc<AtomicBool>>>,
}

impl FakeConnector {
    fn new(delay: Duration, max_live: usize) -> Self {
        FakeConnector {
            delay,
            max_live,
            next_id: AtomicUsize::new(0),
            live: Arc::new(AtomicUsize::new(0)),
            peak: AtomicUsize::new(0),
            script: Mutex::new(VecDeque::new()),
            switches: Mutex::new(Vec::new()),
            movable: Mutex::new(Vec::new()),
        }
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn kill(&self, id: usize) {
        self.switches.lock()[id].store(false, Ordering::SeqCst);
    }

    /// Makes connection `id` fail to move to another event loop.
    fn stick(&self, id: usize) {
        self.movable.lock()[id].store(false, Ordering::SeqCst);
    }
}

impl Connector for FakeConnector {
    type Conn = FakeConn;

    async fn open(
        &self,
        _key: &PoolKey,
        settings: &PoolSettings,
    ) -> Result<FakeConn, BackendError> {
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(live, Ordering::SeqCst);
        assert!(
            live <= self.max_live,
            "{live} live connections, limit {}",
            self.max_live
        );
        // If this future is dropped while sleeping, the socket would be gone: count it closed.
        let mut guard = LiveGuard(Some(self.live.clone()));
        sleep(self.delay).await;
        let outcome = self.script.lock().pop_front().unwrap_or(Outcome::Ok);
        match outcome {
            Outcome::Fail => Err(BackendError::Closed {
                addr: settings.addr.clone(),
            }),
            Outcome::Ok => {
                guard.0 = None;
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                let alive = Arc::new(AtomicBool::new(true));
                self.switches.lock().push(alive.clone());
                let movable = Arc::new(AtomicBool::new(true));
                self.movable.lock().push(movable.clone());
                Ok(FakeConn {
                    id,
                    created: Instant::now(),
                    addr: settings.addr.clone(),
                    alive,
                    live: self.live.clone(),
                    home: crate::home::home(),
                    movable,
                })
            }
        }
    }
}

/// Decrements the live count unless disarmed (set to `None`).
struct LiveGuard(Option<Arc<AtomicUsize>>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Some(live) = &self.0 {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn settings(size: usize, server_max: usize) -> PoolSettings {
    PoolSettings {
        addr: "fake:5432".into(),
        password: None,
        size,
        min_idle: 0,
        checkout_timeout: Duration::from_secs(5),
        server_lifetime: Duration::from_secs(3600),
        server_idle_timeout: Duration::from_secs(600),
        connect_timeout: Duration::from_secs(5),
        max_message: 1 << 20,
        server_max_connections: server_max,
        tls: crate::tls::ServerTls::disabled(),
    }
}

fn registry(delay_ms: u64, max_live: usize) -> Arc<Shared<FakeConnector>> {
    Arc::new(Shared::new(FakeConnector::new(
        Duration::from_millis(delay_ms),
        max_live,
    )))
}

fn key(db: &str) -> PoolKey {
    PoolKey::new("primary", "app", db)
}

fn stats_of(shared: &Shared<FakeConnector>, k: &PoolKey) -> PoolStats {
    shared
        .stats()
        .into_iter()
        .find(|s| &s.key == k)
        .unwrap_or_else(|| PoolStats {
            key: k.clone(),
            open: 0,
            idle: 0,
            busy: 0,
            connecting: 0,
            waiting: 0,
            size: 0,
            server_open: 0,
            server_max: 0,
        })
}

/// Yields until `cond` holds (the spawned tasks on the paused, single-threaded runtime progress).
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never became true");
}

type Fake = Lease<FakeConnector>;

async fn get(shared: &Arc<Shared<FakeConnector>>, k: &PoolKey, s: &PoolSettings) -> Fake {
    checkout(shared, k, s, Instant::now())
        .await
        .expect("checkout")
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_reused_newest_first() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(5, 10));
    let a = get(&shared, &k, &s).await;
    let b = get(&shared, &k, &s).await;
    let (a_id, b_id) = (a.conn().id, b.conn().id);
    a.put_back(Instant::now());
    b.put_back(Instant::now());
    assert_eq!(stats_of(&shared, &k).idle, 2);
    let c = get(&shared, &k, &s).await;
    assert_eq!(c.conn().id, b_id, "newest idle first");
    let d = get(&shared, &k, &s).await;
    assert_eq!(d.conn().id, a_id);
    assert_eq!(shared.connector().live(), 2);
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.busy, st.idle), (2, 2, 0));
}

/// A checkout made as if from event loop `home` (the test thread says it runs that loop).
async fn get_on(
    home: usize,
    shared: &Arc<Shared<FakeConnector>>,
    k: &PoolKey,
    s: &PoolSettings,
) -> Fake {
    crate::home::set_home(home);
    get(shared, k, s).await
}

/// A pool of `size` whose one connection, opened on event loop 1, is idle.
async fn one_idle_on_loop_1(
    size: usize,
) -> (Arc<Shared<FakeConnector>>, PoolKey, PoolSettings, usize) {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(size, 10));
    let a = get_on(1, &shared, &k, &s).await;
    let id = a.conn().id;
    a.put_back(Instant::now());
    (shared, k, s, id)
}

/// With several event loops, a checkout prefers the newest idle connection its own loop watches;
/// with none of its own it takes the newest of another loop and moves it to its own loop.
#[tokio::test(start_paused = true)]
async fn idle_connections_watched_by_the_same_event_loop_come_first() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(3, 10));
    let a = get_on(1, &shared, &k, &s).await;
    let a2 = get_on(1, &shared, &k, &s).await;
    let b = get_on(2, &shared, &k, &s).await;
    let (a_id, a2_id, b_id) = (a.conn().id, a2.conn().id, b.conn().id);
    // Idle, oldest first: a2, a, b; the pool is full.
    for lease in [a2, a, b] {
        lease.put_back(Instant::now());
    }
    let first = get_on(1, &shared, &k, &s).await;
    assert_eq!(first.conn().id, a_id, "the newest of loop 1, not b");
    let second = get_on(3, &shared, &k, &s).await;
    assert_eq!(second.conn().id, b_id, "none of loop 3: the newest");
    assert_eq!(second.conn().home, 3, "moved to loop 3");
    shared.connector().kill(a2_id);
    let third = get_on(1, &shared, &k, &s).await;
    assert!(
        ![a_id, a2_id, b_id].contains(&third.conn().id),
        "loop 1's last idle one is dead: closed and replaced"
    );
    assert_eq!(shared.connector().live(), 3);
    crate::home::set_home(0);
}

/// A loop with no idle connection of its own takes another loop's idle one, even while the
/// pool has room: the server backends in use do not grow with the number of loops.
#[tokio::test(start_paused = true)]
async fn a_loop_takes_another_loops_idle_connection_before_opening_one() {
    let (shared, k, s, a_id) = one_idle_on_loop_1(2).await;
    let b = get_on(2, &shared, &k, &s).await;
    assert_eq!(b.conn().id, a_id, "loop 1's idle connection");
    assert_eq!(b.conn().home, 2, "now watched by loop 2");
    assert_eq!(shared.connector().live(), 1, "nothing opened");
    b.put_back(Instant::now());
    let c = get_on(2, &shared, &k, &s).await;
    assert_eq!((c.conn().id, c.conn().home), (a_id, 2), "loop 2's own now");
    crate::home::set_home(0);
}

/// A connection that cannot move to the checking-out loop is closed and its slot reused for a
/// new connection, which the checkout gets.
#[tokio::test(start_paused = true)]
async fn a_connection_that_cannot_move_is_replaced() {
    let (shared, k, s, a_id) = one_idle_on_loop_1(2).await;
    shared.connector().stick(a_id);
    let b = get_on(2, &shared, &k, &s).await;
    assert_ne!(b.conn().id, a_id, "a new connection");
    assert_eq!(b.conn().home, 2);
    assert_eq!(shared.connector().live(), 1, "the stuck one is closed");
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.busy, st.idle), (1, 1, 0));
    crate::home::set_home(0);
}

/// A connection released to a waiter of another loop moves to that loop; one that cannot move
/// is closed and the waiter gets a new connection in its slot.
#[tokio::test(start_paused = true)]
async fn a_waiter_of_another_loop_gets_the_released_connection_moved_or_replaced() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    for stuck in [false, true] {
        crate::home::set_home(1);
        let held = get(&shared, &k, &s).await;
        let held_id = held.conn().id;
        if stuck {
            shared.connector().stick(held_id);
        }
        // The waiter runs on this same thread, as "loop 2" from now on.
        crate::home::set_home(2);
        let (shared2, k2, s2) = (shared.clone(), k.clone(), s.clone());
        let waiter = tokio::spawn(async move { get(&shared2, &k2, &s2).await });
        until(|| stats_of(&shared, &k).waiting == 1).await;
        held.put_back(Instant::now());
        let got = waiter.await.expect("waiter");
        assert_eq!(got.conn().home, 2, "watched by the waiter's loop");
        assert_eq!(
            got.conn().id == held_id,
            !stuck,
            "moved, or replaced when stuck"
        );
        assert_eq!(shared.connector().live(), 1);
        let st = stats_of(&shared, &k);
        assert_eq!((st.open, st.busy, st.waiting), (1, 1, 0));
        got.put_back(Instant::now());
        // Start the next round from an empty pool.
        let idle = get(&shared, &k, &s).await;
        drop(idle);
    }
    crate::home::set_home(0);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (shared2, k2, s2, order2) = (shared.clone(), k.clone(), s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let lease = get(&shared2, &k2, &s2).await;
            order2.lock().push(i);
            sleep(Duration::from_millis(3)).await;
            lease.put_back(Instant::now());
        }));
        // Enqueue strictly one after the other.
        until(|| stats_of(&shared, &k).waiting == i + 1).await;
    }
    holder.put_back(Instant::now());
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(
        shared.connector().live(),
        1,
        "one connection served everyone"
    );
}

#[tokio::test(start_paused = true)]
async fn checkout_times_out_after_exactly_checkout_timeout() {
    let shared = registry(1, 10);
    let k = key("app");
    let mut s = settings(1, 10);
    s.checkout_timeout = Duration::from_millis(300);
    let _holder = get(&shared, &k, &s).await;
    let start = Instant::now();
    let err = checkout(&shared, &k, &s, Instant::now())
        .await
        .expect_err("must time out");
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    assert!(matches!(err, PoolError::Timeout { .. }));
    assert_eq!(err.code(), "53300");
    assert_eq!(
        err.to_string(),
        "server primary, user app, database app: no server connection available within 300ms"
    );
    assert_eq!(err.to_client_error().code, "53300");
    assert_eq!(
        stats_of(&shared, &k).waiting,
        0,
        "the waiter left the queue"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_passes_a_granted_connection_on() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let holder_id = holder.conn().id;
    let mut first = Box::pin(checkout(&shared, &k, &s, Instant::now()));
    // One poll puts it in the queue.
    assert!(timeout(Duration::ZERO, &mut first).await.is_err());
    let (shared2, k2, s2) = (shared.clone(), k.clone(), s.clone());
    let second = tokio::spawn(async move { get(&shared2, &k2, &s2).await.conn().id });
    until(|| stats_of(&shared, &k).waiting == 2).await;
    // The connection is handed to `first`, which is dropped before it looks.
    holder.put_back(Instant::now());
    drop(first);
    assert_eq!(second.await.expect("task"), holder_id);
    // `second` dropped its lease, which closed the one connection there ever was.
    assert_eq!(shared.connector().peak.load(Ordering::SeqCst), 1);
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle, st.waiting), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_returns_a_granted_connection_to_idle() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let mut first = Box::pin(checkout(&shared, &k, &s, Instant::now()));
    assert!(timeout(Duration::ZERO, &mut first).await.is_err());
    holder.put_back(Instant::now());
    drop(first);
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle, st.busy, st.waiting), (1, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_gives_a_granted_slot_back() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let mut first = Box::pin(checkout(&shared, &k, &s, Instant::now()));
    assert!(timeout(Duration::ZERO, &mut first).await.is_err());
    // Dropping the holder closes its connection and grants the slot to `first`.
    drop(holder);
    assert_eq!(stats_of(&shared, &k).connecting, 1);
    drop(first);
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.connecting, st.waiting), (0, 0, 0));
    assert_eq!(shared.connector().live(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_checkout_during_connect_frees_the_slot() {
    let shared = registry(1000, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let res = timeout(
        Duration::from_millis(10),
        checkout(&shared, &k, &s, Instant::now()),
    )
    .await;
    assert!(res.is_err(), "still connecting");
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.connecting), (0, 0));
    assert_eq!(shared.connector().live(), 0);
    // The slot is really free: the next checkout opens at once (well, after the connect delay).
    let lease = get(&shared, &k, &s).await;
    assert_eq!(lease.conn().id, 0);
}

#[tokio::test(start_paused = true)]
async fn failed_connect_reports_to_its_caller_and_wakes_the_next_waiter() {
    let shared = registry(50, 10);
    let (k, s) = (key("app"), settings(1, 10));
    shared.connector().script.lock().push_back(Outcome::Fail);
    let (shared2, k2, s2) = (shared.clone(), k.clone(), s.clone());
    let first = tokio::spawn(async move {
        checkout(&shared2, &k2, &s2, Instant::now())
            .await
            .map(|l| l.conn().id)
    });
    until(|| stats_of(&shared, &k).connecting == 1).await;
    let (shared3, k3, s3) = (shared.clone(), k.clone(), s.clone());
    let second = tokio::spawn(async move {
        checkout(&shared3, &k3, &s3, Instant::now())
            .await
            .map(|l| l.conn().id)
    });
    until(|| stats_of(&shared, &k).waiting == 1).await;
    let err = first
        .await
        .expect("task")
        .expect_err("the first connect fails");
    assert!(matches!(err, PoolError::Connect { .. }), "{err}");
    assert_eq!(err.code(), "08006");
    assert!(err.retryable());
    assert_eq!(second.await.expect("task").expect("the second succeeds"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_idle_connection_is_replaced_silently() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(2, 10));
    let lease = get(&shared, &k, &s).await;
    let id = lease.conn().id;
    lease.put_back(Instant::now());
    shared.connector().kill(id);
    let lease = get(&shared, &k, &s).await;
    assert_ne!(lease.conn().id, id);
    assert_eq!(shared.connector().live(), 1, "the dead one was closed");
    assert_eq!(stats_of(&shared, &k).open, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_handed_over_connection_is_replaced_in_its_slot() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let id = holder.conn().id;
    let (shared2, k2, s2) = (shared.clone(), k.clone(), s.clone());
    let waiter = tokio::spawn(async move { get(&shared2, &k2, &s2).await.conn().id });
    until(|| stats_of(&shared, &k).waiting == 1).await;
    shared.connector().kill(id);
    holder.put_back(Instant::now());
    assert_ne!(waiter.await.expect("task"), id);
    assert_eq!(shared.connector().peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_lease_closes_it_and_wakes_a_waiter() {
    let shared = registry(1, 10);
    let (k, s) = (key("app"), settings(1, 10));
    let holder = get(&shared, &k, &s).await;
    let id = holder.conn().id;
    let (shared2, k2, s2) = (shared.clone(), k.clone(), s.clone());
    let waiter = tokio::spawn(async move { get(&shared2, &k2, &s2).await.conn().id });
    until(|| stats_of(&shared, &k).waiting == 1).await;
    drop(holder);
    assert_ne!(
        waiter.await.expect("task"),
        id,
        "a new connection, not the dropped one"
    );
    assert_eq!(shared.connector().peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn server_limit_spans_pools_and_idle_connections_make_room() {
    let shared = registry(1, 2);
    let (a, b) = (key("a"), key("b"));
    let s = settings(2, 2);
    let a1 = get(&shared, &a, &s).await;
    let a2 = get(&shared, &a, &s).await;
    a1.put_back(Instant::now());
    a2.put_back(Instant::now());
    // Pool b takes the server's slots from a's idle connections, oldest first.
    let b1 = get(&shared, &b, &s).await;
    assert_eq!(
        (stats_of(&shared, &a).open, stats_of(&shared, &b).open),
        (1, 1)
    );
    let b2 = get(&shared, &b, &s).await;
    assert_eq!(
        (stats_of(&shared, &a).open, stats_of(&shared, &b).open),
        (0, 2)
    );
    // Pool a must now wait for b: the server is full and nothing is idle.
    let (shared2, a2k, s2) = (shared.clone(), a.clone(), s.clone());
    let waiter = tokio::spawn(async move { get(&shared2, &a2k, &s2).await });
    until(|| stats_of(&shared, &a).waiting == 1).await;
    b1.put_back(Instant::now());
    let _a3 = waiter.await.expect("task");
    assert_eq!(
        (stats_of(&shared, &a).open, stats_of(&shared, &b).open),
        (1, 1)
    );
    assert_eq!(stats_of(&shared, &a).server_open, 2);
    drop(b2);
    assert_eq!(shared.connector().peak.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_across_pools_of_a_server_are_served_oldest_first() {
    let shared = registry(1, 1);
    let (a, b) = (key("a"), key("b"));
    let s = settings(1, 1);
    let holder = get(&shared, &a, &s).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, k) in [&b, &a, &b].into_iter().enumerate() {
        let (shared2, k2, s2, order2) = (shared.clone(), k.clone(), s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let lease = get(&shared2, &k2, &s2).await;
            order2.lock().push(i);
            lease.put_back(Instant::now());
        }));
        until(|| shared.stats().iter().map(|p| p.waiting).sum::<usize>() == i + 1).await;
    }
    drop(holder);
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock(), vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn expired_connections_are_closed_on_put_back() {
    let shared = registry(1, 10);
    let k = key("app");
    let mut s = settings(2, 10);
    s.server_lifetime = Duration::from_secs(60);
    let lease = get(&shared, &k, &s).await;
    sleep(Duration::from_secs(61)).await;
    lease.put_back(Instant::now());
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle), (0, 0));
    assert_eq!(shared.connector().live(), 0);
}

#[tokio::test(start_paused = true)]
async fn maintain_closes_timed_out_idle_down_to_min_idle_and_tops_up() {
    let shared = registry(1, 10);
    let k = key("app");
    let mut s = settings(5, 10);
    s.min_idle = 1;
    s.server_idle_timeout = Duration::from_secs(10);
    let leases = [
        get(&shared, &k, &s).await,
        get(&shared, &k, &s).await,
        get(&shared, &k, &s).await,
    ];
    let newest = leases[2].conn().id;
    for l in leases {
        l.put_back(Instant::now());
    }
    sleep(Duration::from_secs(5)).await;
    maintain(&shared).await;
    assert_eq!(stats_of(&shared, &k).idle, 3, "not timed out yet");
    sleep(Duration::from_secs(6)).await;
    maintain(&shared).await;
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle), (1, 1));
    assert_eq!(
        get(&shared, &k, &s).await.conn().id,
        newest,
        "the newest is kept"
    );

    // The lease above was dropped (closed): maintain opens one to get back to min_idle.
    s.min_idle = 3;
    get(&shared, &k, &s).await.put_back(Instant::now());
    maintain(&shared).await;
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle, st.connecting), (3, 3, 0));
    assert_eq!(shared.connector().live(), 3);
}

#[tokio::test(start_paused = true)]
async fn maintain_top_ups_respect_the_server_limit() {
    let shared = registry(1, 3);
    let (a, b) = (key("a"), key("b"));
    let mut s = settings(5, 3);
    s.min_idle = 2;
    get(&shared, &a, &s).await.put_back(Instant::now());
    get(&shared, &b, &s).await.put_back(Instant::now());
    maintain(&shared).await;
    let total: usize = shared.stats().iter().map(|p| p.open).sum();
    assert_eq!(total, 3);
    assert!(shared.connector().peak.load(Ordering::SeqCst) <= 3);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_size_closes_surplus_connections() {
    let shared = registry(1, 10);
    let k = key("app");
    let mut s = settings(3, 10);
    let leases = [
        get(&shared, &k, &s).await,
        get(&shared, &k, &s).await,
        get(&shared, &k, &s).await,
    ];
    let [l1, l2, l3] = leases;
    l1.put_back(Instant::now());
    s.size = 1;
    // The new settings arrive with the next checkout: the idle surplus is closed, and the busy
    // surplus is closed as it comes back.
    let l4 = timeout(
        Duration::from_millis(100),
        checkout(&shared, &k, &s, Instant::now()),
    )
    .await;
    assert!(l4.is_err(), "still over the new size: waits");
    assert_eq!(stats_of(&shared, &k).open, 2);
    l2.put_back(Instant::now());
    assert_eq!(stats_of(&shared, &k).open, 1);
    l3.put_back(Instant::now());
    let st = stats_of(&shared, &k);
    assert_eq!((st.open, st.idle), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_moved_server_retires_its_connections() {
    let shared = registry(1, 10);
    let k = key("app");
    let mut s = settings(3, 10);
    let busy = get(&shared, &k, &s).await;
    get(&shared, &k, &s).await.put_back(Instant::now());
    s.addr = "elsewhere:5432".into();
    let fresh = get(&shared, &k, &s).await;
    assert_eq!(fresh.conn().addr, "elsewhere:5432");
    busy.put_back(Instant::now());
    let st = stats_of(&shared, &k);
    assert_eq!(
        (st.open, st.idle),
        (1, 0),
        "old connections closed, not pooled"
    );
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_checkouts_never_exceed_either_limit() {
    let shared = registry(3, 5);
    let keys = [key("a"), key("b"), PoolKey::new("primary", "other", "a")];
    let s = settings(3, 5);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (shared2, k2, s2) = (shared.clone(), keys[i % 3].clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let lease = get(&shared2, &k2, &s2).await;
                sleep(Duration::from_millis(((i + round) % 4) as u64)).await;
                if (i + round) % 3 == 0 {
                    drop(lease);
                } else {
                    lease.put_back(Instant::now());
                }
            }
        }));
    }
    let monitor = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let stats = shared.stats();
                let total: usize = stats.iter().map(|p| p.open).sum();
                assert!(total <= 5, "server limit exceeded: {stats:?}");
                assert!(
                    stats.iter().all(|p| p.open <= 3),
                    "pool size exceeded: {stats:?}"
                );
                sleep(Duration::from_micros(100)).await;
            }
        })
    };
    for t in tasks {
        t.await.expect("task");
    }
    monitor.abort();
    assert_eq!(
        shared.connector().peak.load(Ordering::SeqCst),
        5,
        "the server limit was reached, never exceeded"
    );
    let stats = shared.stats();
    assert!(
        stats
            .iter()
            .all(|p| p.waiting == 0 && p.busy == 0 && p.connecting == 0)
    );
    let open: usize = stats.iter().map(|p| p.open).sum();
    assert_eq!(open, shared.connector().live());
}

#[tokio::test(start_paused = true)]
async fn retired_pools_close_idle_now_busy_on_return_and_disappear() {
    let shared = registry(1, 10);
    let kept = key("app");
    let gone = PoolKey::new("old_replica", "app", "app");
    let mut s = settings(5, 10);
    s.min_idle = 2;
    let k1 = get(&shared, &kept, &s).await;
    k1.put_back(Instant::now());
    let busy = get(&shared, &gone, &s).await;
    let idle = get(&shared, &gone, &s).await;
    idle.put_back(Instant::now());
    assert_eq!(shared.connector().live(), 3);
    shared.retire(&|server| server != "old_replica");
    assert_eq!(
        shared.connector().live(),
        2,
        "the idle connection closed at once"
    );
    assert_eq!(
        stats_of(&shared, &gone).busy,
        1,
        "the busy one is still in use"
    );
    busy.put_back(Instant::now());
    assert_eq!(shared.connector().live(), 1, "closed when given back");
    assert!(
        shared.stats().iter().all(|st| st.key != gone),
        "an empty retired pool is forgotten"
    );
    // Upkeep tops up the kept pool only.
    maintain(&shared).await;
    assert!(shared.stats().iter().all(|st| st.key != gone));
    assert_eq!(stats_of(&shared, &kept).idle, 2);
    // The server comes back in a later config: its pool works again.
    let again = get(&shared, &gone, &s).await;
    again.put_back(Instant::now());
    assert_eq!(stats_of(&shared, &gone).idle, 1);
}

#[test]
fn keys_are_equal_by_their_parts_and_hash_alike() {
    use std::hash::BuildHasher;
    let hash = |k: &PoolKey| foldhash::fast::FixedState::with_seed(1).hash_one(k);
    let (a, b) = (PoolKey::new("s", "u", "d"), PoolKey::new("s", "u", "d"));
    assert_eq!(a, b, "separately built keys with the same parts");
    assert_eq!(hash(&a), hash(&b));
    assert_eq!(a, a.clone());
    assert_ne!(a, PoolKey::new("s", "u", "e"));
    assert_ne!(a, PoolKey::new("t", "u", "d"));
    // The parts are hashed and compared one by one, not as one concatenated string.
    let (x, y) = (PoolKey::new("ab", "c", "d"), PoolKey::new("a", "bc", "d"));
    assert_ne!(x, y);
    assert_ne!(hash(&x), hash(&y));
    assert_eq!((a.server(), a.user(), a.database()), ("s", "u", "d"));
}
