//! Checkout and upkeep: waiting for a grant, opening connections, and the guards that give
//! slots back when a future is dropped halfway.
//!
//! Every `.await` here happens with the lock released and with a guard alive that undoes the
//! bookkeeping on drop ([`WaitGuard`] for a queued checkout, [`OpenGuard`] for a connect,
//! [`Lease`] for a connection in hand), which is what makes checkout cancel safe.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, timeout_at};
use tracing::{Instrument, debug, debug_span, warn};

use super::state::{Acquired, Grant, State};
use crate::BackendError;

use super::{Conn, Connector, PoolError, PoolKey, PoolSettings, PoolStats};

/// The registry behind [`super::Pools`]: the connector and the locked bookkeeping.
#[derive(Debug)]
pub(crate) struct Shared<K: Connector> {
    connector: K,
    state: Mutex<State<K::Conn>>,
}

impl<K: Connector> Shared<K> {
    pub(crate) fn new(connector: K) -> Self {
        Shared {
            connector,
            state: Mutex::new(State::new()),
        }
    }

    /// Runs `f` under the lock, then closes the connections it retired, outside the lock.
    pub(crate) fn with_state<R>(
        &self,
        f: impl FnOnce(&mut State<K::Conn>, &mut Vec<K::Conn>) -> R,
    ) -> R {
        let mut closing = Vec::new();
        let out = {
            let mut state = self.state.lock();
            f(&mut state, &mut closing)
        };
        if !closing.is_empty() {
            debug!(count = closing.len(), "closing server connections");
        }
        for conn in closing {
            conn.close();
        }
        out
    }

    /// See [`super::Pools::retire`].
    pub(crate) fn retire(&self, keep: &dyn Fn(&str) -> bool) {
        self.with_state(|s, closing| s.retire(keep, closing));
    }

    pub(crate) fn stats(&self) -> Vec<PoolStats> {
        self.state.lock().stats()
    }

    #[cfg(test)]
    pub(crate) fn connector(&self) -> &K {
        &self.connector
    }
}

/// A checked-out connection and its slot. Dropped without [`Lease::put_back`], it closes the
/// connection and frees the slot.
#[derive(Debug)]
pub(crate) struct Lease<K: Connector> {
    shared: Arc<Shared<K>>,
    key: PoolKey,
    /// `Some` until `put_back` or drop.
    conn: Option<K::Conn>,
}

impl<K: Connector> Lease<K> {
    fn new(shared: &Arc<Shared<K>>, key: &PoolKey, conn: K::Conn) -> Self {
        Lease {
            shared: shared.clone(),
            key: key.clone(),
            conn: Some(conn),
        }
    }

    pub(crate) fn key(&self) -> &PoolKey {
        &self.key
    }

    pub(crate) fn conn(&self) -> &K::Conn {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until consumed")
    }

    pub(crate) fn conn_mut(&mut self) -> &mut K::Conn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until consumed")
    }

    /// Returns the connection to its pool at `now` (to a waiter or the idle list); the pool may still
    /// close it if it expired or a limit was lowered meanwhile.
    pub(crate) fn put_back(mut self, now: Instant) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .with_state(|s, closing| s.put_back(&self.key, conn, now, closing));
        }
    }
}

impl<K: Connector> Drop for Lease<K> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
            self.shared
                .with_state(|s, closing| s.free(&self.key, closing));
        }
    }
}

/// A queued checkout. Dropped before it has taken its grant, it leaves the queue, or passes on
/// what it was granted (a connection to the next waiter or idle, a slot to the next waiter).
struct WaitGuard<'a, K: Connector> {
    shared: &'a Arc<Shared<K>>,
    key: &'a PoolKey,
    ticket: u64,
    rx: oneshot::Receiver<Grant<K::Conn>>,
    done: bool,
}

impl<K: Connector> WaitGuard<'_, K> {
    /// Waits for a grant until `deadline`. A grant that races with the deadline is taken.
    async fn wait(
        &mut self,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Grant<K::Conn>, PoolError> {
        let res = timeout_at(deadline, &mut self.rx).await;
        self.done = true;
        match res {
            Ok(Ok(grant)) => Ok(grant),
            // Unreachable in practice: a waiter only leaves its queue with a grant or by itself.
            Ok(Err(_)) => Err(self.timeout(limit)),
            Err(_) => {
                let (key, ticket) = (self.key, self.ticket);
                let left = self.shared.with_state(|s, _| s.cancel_wait(key, ticket));
                if left {
                    return Err(self.timeout(limit));
                }
                // Granted just before we left: the grant is already in the channel.
                self.rx.try_recv().map_err(|_| self.timeout(limit))
            }
        }
    }

    fn timeout(&self, limit: Duration) -> PoolError {
        PoolError::Timeout {
            key: self.key.clone(),
            timeout: limit,
        }
    }
}

impl<K: Connector> Drop for WaitGuard<'_, K> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (key, ticket, rx) = (self.key, self.ticket, &mut self.rx);
        self.shared.with_state(|s, closing| {
            if s.cancel_wait(key, ticket) {
                return;
            }
            match rx.try_recv() {
                Ok(Grant::Conn(conn)) => s.put_back(key, conn, Instant::now(), closing),
                Ok(Grant::Slot) => s.abandon_open(key, closing),
                Err(_) => {}
            }
        });
    }
}

/// A reserved slot whose connection is being opened. Dropped while armed (the connect failed
/// or its future was dropped), it frees the slot for the next waiter.
struct OpenGuard<'a, K: Connector> {
    shared: &'a Arc<Shared<K>>,
    key: &'a PoolKey,
    armed: bool,
}

impl<K: Connector> Drop for OpenGuard<'_, K> {
    fn drop(&mut self) {
        if self.armed {
            let key = self.key;
            self.shared
                .with_state(|s, closing| s.abandon_open(key, closing));
        }
    }
}

/// See [`super::Pools::checkout`].
pub(crate) async fn checkout<K: Connector>(
    shared: &Arc<Shared<K>>,
    key: &PoolKey,
    settings: &PoolSettings,
    now: Instant,
) -> Result<Lease<K>, PoolError> {
    let limit = settings.checkout_timeout;
    // A limit too large for the clock (e.g. `Duration::MAX` meaning "forever") waits a year.
    let deadline = now
        .checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
    let acquired = shared.with_state(|s, closing| s.acquire(key, settings, now, closing));
    let grant = match acquired {
        Acquired::Conn(conn) => match adopted(shared, key, conn) {
            Some(conn) => return Ok(Lease::new(shared, key, conn)),
            None => Grant::Slot,
        },
        Acquired::Open => Grant::Slot,
        Acquired::Wait(ticket, rx) => {
            let mut guard = WaitGuard {
                shared,
                key,
                ticket,
                rx,
                done: false,
            };
            guard.wait(deadline, limit).await?
        }
    };
    if let Grant::Conn(mut conn) = grant {
        if conn.is_alive() {
            if let Some(conn) = adopted(shared, key, conn) {
                return Ok(Lease::new(shared, key, conn));
            }
        } else {
            // It died between release and now: reuse its slot for a fresh connection.
            conn.close();
            shared.with_state(|s, _| s.reopen(key));
        }
    }
    match open_slot(shared, key, settings).await {
        Ok(conn) => Ok(Lease::new(shared, key, conn)),
        Err(source) => Err(PoolError::Connect {
            key: key.clone(),
            source,
        }),
    }
}

/// `conn`, now watched by this thread's event loop (an idle connection of another loop moves
/// here, see `State::acquire`); `None` when it could not move, its slot then counted as
/// connecting for a fresh connection.
fn adopted<K: Connector>(shared: &Arc<Shared<K>>, key: &PoolKey, conn: K::Conn) -> Option<K::Conn> {
    match conn.adopt() {
        Ok(conn) => Some(conn),
        Err(e) => {
            warn!(pool = %key, error = %e, "cannot move a server connection to this event loop");
            shared.with_state(|s, _| s.reopen(key));
            None
        }
    }
}

/// Opens a connection in a slot already counted as connecting; on failure or cancellation the
/// slot is freed and the next waiter served.
async fn open_slot<K: Connector>(
    shared: &Arc<Shared<K>>,
    key: &PoolKey,
    settings: &PoolSettings,
) -> Result<K::Conn, BackendError> {
    let mut guard = OpenGuard {
        shared,
        key,
        armed: true,
    };
    let conn = shared.connector.open(key, settings).await?;
    guard.armed = false;
    shared.with_state(|s, _| s.opened(key));
    debug!(pool = %key, "opened a server connection");
    Ok(conn)
}

/// See [`super::Pools::maintain`].
pub(crate) async fn maintain<K: Connector>(shared: &Arc<Shared<K>>) {
    let now = Instant::now();
    let top_ups = shared.with_state(|s, closing| s.sweep(now, closing));
    if top_ups.is_empty() {
        return;
    }
    // The set owns the connects: dropping `maintain` aborts them, and each one's guard frees
    // its slot.
    let mut tasks = JoinSet::new();
    for (key, settings) in top_ups {
        let shared = shared.clone();
        let span = debug_span!("pool_top_up", pool = %key);
        let task = async move {
            match open_slot(&shared, &key, &settings).await {
                Ok(conn) => {
                    let now = Instant::now();
                    shared.with_state(|s, closing| s.put_back(&key, conn, now, closing));
                }
                Err(e) => warn!(error = %e, "cannot open a connection to keep min_idle"),
            }
        };
        tasks.spawn(task.instrument(span));
    }
    while tasks.join_next().await.is_some() {}
}
