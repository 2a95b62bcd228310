//! The pools' bookkeeping: slots, idle lists and FIFO wait queues, changed only under one lock.
//!
//! Everything here is synchronous and runs inside short critical sections of the registry's
//! mutex. Connections that must be closed are pushed to a `closing` list that the caller closes
//! after releasing the lock. Waiters receive a [`Grant`] through a oneshot channel; a grant is
//! sent only while the waiter is still in its queue, under the lock, so it either reaches a live
//! receiver or comes back to us (`send` returns it) and goes to the next waiter.
//!
//! One lock for all pools keeps the per-server limit (which spans pools) simple and exact.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Conn, PoolKey, PoolSettings, PoolStats};

/// What a waiting checkout is given.
#[derive(Debug)]
pub(crate) enum Grant<C> {
    /// A connection released by another holder, already counted as busy.
    Conn(C),
    /// A slot already counted against both limits: the waiter opens the connection.
    Slot,
}

/// What [`State::acquire`] decided for a checkout.
#[derive(Debug)]
pub(crate) enum Acquired<C> {
    /// An idle, healthy connection, now busy.
    Conn(C),
    /// A slot reserved for a new connection (counted as connecting).
    Open,
    /// No capacity: wait for a grant. The ticket identifies the waiter in its queue.
    Wait(u64, oneshot::Receiver<Grant<C>>),
}

/// All pools and servers.
#[derive(Debug)]
pub(crate) struct State<C> {
    /// Pools by key; created at first checkout and kept (with their stats) afterwards.
    pools: HashMap<PoolKey, Pool<C>>,
    /// Per-server totals, keyed by server name.
    servers: HashMap<Arc<str>, ServerSlots>,
    /// Next waiter ticket; tickets grow monotonically, so they order waiters across pools.
    next_ticket: u64,
    /// Waiters queued in all pools together: while none waits, releases skip the scan of a
    /// server's pools for the oldest waiter.
    waiting: usize,
}

/// The connections counted against one server's limit.
#[derive(Debug)]
struct ServerSlots {
    /// Open connections to this server across its pools (idle, busy and connecting).
    open: usize,
    /// The latest `server_max_connections` seen for this server.
    max: usize,
}

/// One pool.
#[derive(Debug)]
struct Pool<C> {
    /// The latest settings passed to a checkout.
    settings: PoolSettings,
    /// Idle connections, oldest first; checkouts take the newest (back) so that the oldest age out.
    idle: VecDeque<Idle<C>>,
    /// Connections counted against `size`: idle, busy and connecting.
    open: usize,
    /// Of `open`, how many are being opened.
    connecting: usize,
    /// Checkouts waiting for a connection, in arrival order.
    waiters: VecDeque<Waiter<C>>,
    /// Its server left the config: connections close as they come back, none are kept idle
    /// or opened for `min_idle`, and the pool is forgotten once it holds nothing.
    retired: bool,
}

/// An idle connection and since when it is idle.
#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// A waiting checkout.
#[derive(Debug)]
struct Waiter<C> {
    ticket: u64,
    tx: oneshot::Sender<Grant<C>>,
}

impl<C> Pool<C> {
    fn new(settings: PoolSettings) -> Self {
        Pool {
            settings,
            idle: VecDeque::new(),
            open: 0,
            connecting: 0,
            waiters: VecDeque::new(),
            retired: false,
        }
    }
}

/// Whether `conn` has outlived `lifetime` at `now`.
fn expired<C: Conn>(conn: &C, lifetime: std::time::Duration, now: Instant) -> bool {
    now.saturating_duration_since(conn.created_at()) >= lifetime
}

impl<C: Conn> State<C> {
    pub(crate) fn new() -> Self {
        State {
            pools: HashMap::new(),
            servers: HashMap::new(),
            next_ticket: 0,
            waiting: 0,
        }
    }

    /// Decides a checkout of `key`: an idle connection, a new slot, or a place in the queue.
    pub(crate) fn acquire(
        &mut self,
        key: &PoolKey,
        settings: &PoolSettings,
        now: Instant,
        closing: &mut Vec<C>,
    ) -> Acquired<C> {
        self.apply_settings(key, settings, closing);
        let Some(pool) = self.pools.get_mut(key) else {
            unreachable!("apply_settings creates the pool");
        };
        // Someone queued first: FIFO says they are served first, so do not take idle or free
        // capacity ahead of them.
        if pool.waiters.is_empty() {
            // First the newest idle connection whose socket this thread's event loop watches,
            // then the newest idle one of another loop (the checkout moves its socket to this
            // loop), and only then a new one: a loop that opened its own while others had
            // idle ones would multiply the server backends in use by the number of loops.
            let here = crate::home::home();
            if let Some(conn) = self.take_idle(key, now, Some(here), closing) {
                return Acquired::Conn(conn);
            }
            if let Some(conn) = self.take_idle(key, now, None, closing) {
                return Acquired::Conn(conn);
            }
            // Older waiters of other pools of this server get freed capacity first.
            self.dispatch(&key.server, closing);
            if self.pools[key].waiters.is_empty() && self.reserve(key, true, closing) {
                return Acquired::Open;
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (tx, rx) = oneshot::channel();
        if let Some(pool) = self.pools.get_mut(key) {
            pool.waiters.push_back(Waiter { ticket, tx });
            self.waiting += 1;
        }
        Acquired::Wait(ticket, rx)
    }

    /// The newest healthy idle connection of `key`'s pool opened on event loop `home` (any
    /// loop with `None`), now busy. Expired or dead ones met on the way are closed and their
    /// slots freed (and offered to waiters).
    fn take_idle(
        &mut self,
        key: &PoolKey,
        now: Instant,
        home: Option<usize>,
        closing: &mut Vec<C>,
    ) -> Option<C> {
        let pool = self.pools.get_mut(key)?;
        let lifetime = pool.settings.server_lifetime;
        let mut found = None;
        let mut freed = 0;
        while let Some(at) = pool
            .idle
            .iter()
            .rposition(|idle| home.is_none_or(|h| idle.conn.home() == h))
        {
            let Some(Idle { mut conn, .. }) = pool.idle.remove(at) else {
                break;
            };
            if !expired(&conn, lifetime, now) && conn.is_alive() {
                found = Some(conn);
                break;
            }
            closing.push(conn);
            freed += 1;
        }
        self.release_slots(key, freed);
        if freed > 0 && found.is_some() {
            self.dispatch(&key.server, closing);
        }
        found
    }

    /// Creates the pool if new and records the latest settings; a new address or password
    /// retires the idle connections.
    fn apply_settings(&mut self, key: &PoolKey, settings: &PoolSettings, closing: &mut Vec<C>) {
        // The common case, settings unchanged since the last checkout: two lookups, no change.
        if let Some(pool) = self.pools.get_mut(key)
            && pool.settings == *settings
            && self
                .servers
                .get(&key.server)
                .is_some_and(|s| s.max == settings.server_max_connections)
        {
            pool.retired = false;
            return;
        }
        // A lookup first: `entry` would clone the key's `Arc` on every checkout.
        if !self.servers.contains_key(&key.server) {
            self.servers.insert(
                key.server.clone(),
                ServerSlots {
                    open: 0,
                    max: settings.server_max_connections,
                },
            );
        }
        let Some(server) = self.servers.get_mut(&key.server) else {
            unreachable!("inserted above");
        };
        let mut changed = server.max != settings.server_max_connections;
        server.max = settings.server_max_connections;
        let mut retired = 0;
        if let Some(pool) = self.pools.get_mut(key) {
            // A checkout means its server is configured (again).
            pool.retired = false;
        }
        match self.pools.get_mut(key) {
            None => {
                self.pools.insert(key.clone(), Pool::new(settings.clone()));
            }
            Some(pool) if pool.settings != *settings => {
                let moved = pool.settings.addr != settings.addr
                    || pool.settings.password != settings.password
                    || pool.settings.tls != settings.tls;
                pool.settings = settings.clone();
                changed = true;
                if moved {
                    retired = pool.idle.len();
                    closing.extend(pool.idle.drain(..).map(|i| i.conn));
                }
            }
            Some(_) => {}
        }
        self.release_slots(key, retired);
        if changed {
            self.trim_idle(&key.server, closing);
            self.dispatch(&key.server, closing);
        }
    }

    /// Takes up `n` slots off the counts of `key`'s pool and server (connections closed).
    fn release_slots(&mut self, key: &PoolKey, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(pool) = self.pools.get_mut(key) {
            pool.open -= n;
        }
        if let Some(server) = self.servers.get_mut(&key.server) {
            server.open -= n;
        }
    }

    /// Reserves a slot for a new connection of `key`'s pool if both limits allow; with `evict`,
    /// a full server makes room by closing the oldest idle connection of another of its pools.
    fn reserve(&mut self, key: &PoolKey, evict: bool, closing: &mut Vec<C>) -> bool {
        let Some(pool) = self.pools.get(key) else {
            return false;
        };
        if pool.open >= pool.settings.size {
            return false;
        }
        while self.server_full(&key.server) {
            if !evict || !self.evict_idle(&key.server, closing) {
                return false;
            }
        }
        if let Some(pool) = self.pools.get_mut(key) {
            pool.open += 1;
            pool.connecting += 1;
        }
        if let Some(server) = self.servers.get_mut(&key.server) {
            server.open += 1;
        }
        true
    }

    fn server_full(&self, server: &str) -> bool {
        self.servers.get(server).is_none_or(|s| s.open >= s.max)
    }

    /// Closes the oldest idle connection among the pools of `server`; false if there is none.
    fn evict_idle(&mut self, server: &str, closing: &mut Vec<C>) -> bool {
        let victim = self
            .pools
            .iter()
            .filter(|(k, _)| &*k.server == server)
            .filter_map(|(k, p)| p.idle.front().map(|i| (i.since, k)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, k)| k.clone());
        let Some(key) = victim else {
            return false;
        };
        if let Some(idle) = self.pools.get_mut(&key).and_then(|p| p.idle.pop_front()) {
            closing.push(idle.conn);
            self.release_slots(&key, 1);
        }
        true
    }

    /// Closes idle connections while a pool or its server is over its limit (after a reload
    /// lowered it), so that the limits hold again as soon as possible.
    fn trim_idle(&mut self, server: &str, closing: &mut Vec<C>) {
        let keys: Vec<PoolKey> = self
            .pools
            .keys()
            .filter(|k| &*k.server == server)
            .cloned()
            .collect();
        for key in &keys {
            while let Some(pool) = self.pools.get_mut(key) {
                if pool.open <= pool.settings.size {
                    break;
                }
                let Some(idle) = pool.idle.pop_front() else {
                    break;
                };
                closing.push(idle.conn);
                self.release_slots(key, 1);
            }
        }
        while self.servers.get(server).is_some_and(|s| s.open > s.max) {
            if !self.evict_idle(server, closing) {
                break;
            }
        }
    }

    /// Hands free capacity of `server` to its waiters, oldest ticket first across its pools.
    ///
    /// A waiter is eligible when its pool is under `size`; a full server makes room by evicting
    /// the oldest idle connection of its pools.
    pub(crate) fn dispatch(&mut self, server: &str, closing: &mut Vec<C>) {
        loop {
            let Some((_, key)) = self.oldest_eligible(server) else {
                return;
            };
            if !self.reserve(&key, true, closing) {
                return;
            }
            let Some(waiter) = self.pools.get_mut(&key).and_then(|p| p.waiters.pop_front()) else {
                return;
            };
            self.waiting -= 1;
            if waiter.tx.send(Grant::Slot).is_err() {
                // The waiter is gone (it cannot be, as waiters leave their queue under the lock
                // before dropping the receiver, but a lost slot would be permanent).
                self.abandon_open(&key, closing);
                return;
            }
        }
    }

    /// The oldest waiter among the pools of `server` that are under their `size`, i.e. that
    /// wait for server capacity rather than for their own connections.
    fn oldest_eligible(&self, server: &str) -> Option<(u64, PoolKey)> {
        if self.waiting == 0 {
            return None;
        }
        self.pools
            .iter()
            .filter(|(k, p)| &*k.server == server && p.open < p.settings.size)
            .filter_map(|(k, p)| p.waiters.front().map(|w| (w.ticket, k)))
            .min_by_key(|(ticket, _)| *ticket)
            .map(|(ticket, k)| (ticket, k.clone()))
    }

    /// Whether a waiter of another pool of `key`'s full server arrived before `ticket`: then a
    /// released connection of `key` must make room for it rather than serve `key`'s own queue,
    /// or a busy pool could starve the other pools of its server.
    fn older_waiter_elsewhere(&self, key: &PoolKey, ticket: u64) -> bool {
        self.server_full(&key.server)
            && self
                .oldest_eligible(&key.server)
                .is_some_and(|(t, k)| t < ticket && k != *key)
    }

    /// A connection of `key` comes back healthy: give it to the pool's first waiter, else keep
    /// it idle. Closed instead when it expired, the server moved, a limit was lowered, or an
    /// older waiter of another pool needs the server slot.
    pub(crate) fn put_back(&mut self, key: &PoolKey, conn: C, now: Instant, closing: &mut Vec<C>) {
        let over_server = self.servers.get(&key.server).is_none_or(|s| s.open > s.max);
        // (No waiter anywhere, the common case: no lookups for them.)
        let own_front = (self.waiting > 0)
            .then(|| {
                self.pools
                    .get(key)
                    .and_then(|p| p.waiters.front().map(|w| w.ticket))
            })
            .flatten();
        let yield_slot = own_front.is_some_and(|t| self.older_waiter_elsewhere(key, t));
        let Some(pool) = self.pools.get_mut(key) else {
            closing.push(conn);
            return;
        };
        if yield_slot
            || pool.retired
            || over_server
            || pool.open > pool.settings.size
            || !conn.fits(&pool.settings)
            || expired(&conn, pool.settings.server_lifetime, now)
        {
            closing.push(conn);
            self.free(key, closing);
            return;
        }
        let mut conn = conn;
        while let Some(waiter) = pool.waiters.pop_front() {
            self.waiting -= 1;
            match waiter.tx.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(back)) => conn = back,
                Err(Grant::Slot) => unreachable!("send returns what it was given"),
            }
        }
        pool.idle.push_back(Idle { conn, since: now });
        // Waiters of other pools of a full server may need this slot: dispatch evicts for them.
        self.dispatch(&key.server, closing);
    }

    /// A busy slot of `key` is gone (its connection closed): free it and serve the waiters.
    pub(crate) fn free(&mut self, key: &PoolKey, closing: &mut Vec<C>) {
        self.release_slots(key, 1);
        self.dispatch(&key.server, closing);
        if self.pools.get(key).is_some_and(|p| p.retired) {
            self.forget_retired();
        }
    }

    /// A connect for `key` succeeded: the slot is now busy.
    pub(crate) fn opened(&mut self, key: &PoolKey) {
        if let Some(pool) = self.pools.get_mut(key) {
            pool.connecting -= 1;
        }
    }

    /// A connect for `key` failed or was cancelled: free its slot and serve the waiters.
    pub(crate) fn abandon_open(&mut self, key: &PoolKey, closing: &mut Vec<C>) {
        if let Some(pool) = self.pools.get_mut(key) {
            pool.connecting -= 1;
        }
        self.free(key, closing);
    }

    /// A busy slot whose connection was found dead is reused to open a new one.
    pub(crate) fn reopen(&mut self, key: &PoolKey) {
        if let Some(pool) = self.pools.get_mut(key) {
            pool.connecting += 1;
        }
    }

    /// Removes waiter `ticket` from `key`'s queue; false if it is no longer there (it was
    /// granted something, which is then in its channel).
    pub(crate) fn cancel_wait(&mut self, key: &PoolKey, ticket: u64) -> bool {
        let Some(pool) = self.pools.get_mut(key) else {
            return false;
        };
        match pool.waiters.iter().position(|w| w.ticket == ticket) {
            Some(i) => {
                pool.waiters.remove(i);
                self.waiting -= 1;
                true
            }
            None => false,
        }
    }

    /// Drains every pool of a server for which `keep` is false (it left the config): its idle
    /// connections close now, busy ones when they come back, and it is forgotten once empty.
    pub(crate) fn retire(&mut self, keep: &dyn Fn(&str) -> bool, closing: &mut Vec<C>) {
        let keys: Vec<PoolKey> = self
            .pools
            .keys()
            .filter(|k| !keep(&k.server))
            .cloned()
            .collect();
        for key in &keys {
            let Some(pool) = self.pools.get_mut(key) else {
                continue;
            };
            pool.retired = true;
            let n = pool.idle.len();
            closing.extend(pool.idle.drain(..).map(|i| i.conn));
            self.release_slots(key, n);
        }
        self.forget_retired();
    }

    /// Forgets retired pools that hold no connection and have no waiter.
    fn forget_retired(&mut self) {
        self.pools
            .retain(|_, p| !(p.retired && p.open == 0 && p.waiters.is_empty()));
    }

    /// Periodic upkeep: closes expired, timed-out (above `min_idle`) and dead idle connections,
    /// then reserves slots to top every pool up to `min_idle`. Returns the reservations, which
    /// the caller must open (and then [`State::put_back`] or [`State::abandon_open`]).
    pub(crate) fn sweep(
        &mut self,
        now: Instant,
        closing: &mut Vec<C>,
    ) -> Vec<(PoolKey, PoolSettings)> {
        let keys: Vec<PoolKey> = self.pools.keys().cloned().collect();
        let mut servers: Vec<Arc<str>> = Vec::new();
        for key in &keys {
            let Some(pool) = self.pools.get_mut(key) else {
                continue;
            };
            let s = &pool.settings;
            let (lifetime, idle_timeout, min_idle) =
                (s.server_lifetime, s.server_idle_timeout, s.min_idle);
            let before = pool.idle.len();
            let mut kept = VecDeque::with_capacity(before);
            // Newest first, so that the connections kept for `min_idle` are the youngest.
            while let Some(mut idle) = pool.idle.pop_back() {
                let timed_out = now.saturating_duration_since(idle.since) >= idle_timeout
                    && kept.len() >= min_idle;
                if timed_out || expired(&idle.conn, lifetime, now) || !idle.conn.is_alive() {
                    closing.push(idle.conn);
                } else {
                    kept.push_front(idle);
                }
            }
            let closed = before - kept.len();
            pool.idle = kept;
            self.release_slots(key, closed);
            if !servers.contains(&key.server) {
                servers.push(key.server.clone());
            }
        }
        for server in &servers {
            self.trim_idle(server, closing);
            self.dispatch(server, closing);
        }
        self.forget_retired();
        let mut top_ups = Vec::new();
        for key in &keys {
            while let Some(pool) = self.pools.get(key) {
                let wanted = if pool.retired {
                    0
                } else {
                    pool.settings.min_idle
                };
                if !pool.waiters.is_empty() || pool.idle.len() + pool.connecting >= wanted {
                    break;
                }
                let settings = pool.settings.clone();
                // Top-ups never evict: an idle connection of another pool is as useful.
                if !self.reserve(key, false, closing) {
                    break;
                }
                top_ups.push((key.clone(), settings));
            }
        }
        top_ups
    }

    /// A snapshot of every pool, sorted by key.
    pub(crate) fn stats(&self) -> Vec<PoolStats> {
        debug_assert_eq!(
            self.waiting,
            self.pools.values().map(|p| p.waiters.len()).sum::<usize>(),
            "the waiter count follows the queues"
        );
        let mut out: Vec<PoolStats> = self
            .pools
            .iter()
            .map(|(key, p)| {
                let server = self.servers.get(&key.server);
                PoolStats {
                    key: key.clone(),
                    open: p.open,
                    idle: p.idle.len(),
                    busy: p.open.saturating_sub(p.idle.len() + p.connecting),
                    connecting: p.connecting,
                    waiting: p.waiters.len(),
                    size: p.settings.size,
                    server_open: server.map_or(0, |s| s.open),
                    server_max: server.map_or(0, |s| s.max),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.key.server, &a.key.user, &a.key.database).cmp(&(
                &b.key.server,
                &b.key.user,
                &b.key.database,
            ))
        });
        out
    }
}
