//! Who is connected: one entry per authenticated client, and per-database counters, for the
//! admin console's `SHOW CLIENTS` and `SHOW STATS`.
//!
//! A session registers once after authentication and gets a [`ClientGuard`] that removes
//! the entry on every exit path. What changes during the session (activity, pin) lives in
//! atomics shared by the guard and the registry, so the hot path never takes the registry's
//! lock; only registering, leaving and listing do.

// Seeded per map, and several times faster than SipHash on short keys (names, ids).
use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use pgsplit_backend::PoolError;

/// Most distinct databases that get their own counters; clients of any further database are
/// counted under [`OTHER_DATABASES`] (an authenticated client may name any database, and the
/// registry must not grow without bound).
const MAX_DATABASES: usize = 1000;

/// The counters' name for databases past [`MAX_DATABASES`].
pub const OTHER_DATABASES: &str = "(other)";

/// What a client is doing, as `SHOW CLIENTS` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Activity {
    /// Holds no server connection and waits for none.
    Idle = 0,
    /// Holds a server connection.
    Active = 1,
    /// Waits for a server connection (pool queue, or a PAUSE).
    Waiting = 2,
}

impl Activity {
    /// `idle`, `active` or `waiting`.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Active => "active",
            Activity::Waiting => "waiting",
        }
    }

    fn from_u8(v: u8) -> Activity {
        match v {
            1 => Activity::Active,
            2 => Activity::Waiting,
            _ => Activity::Idle,
        }
    }
}

/// Cumulative counters of one database (the name clients connect to).
#[derive(Debug, Default)]
struct DbCounters {
    connections: AtomicU64,
    checkouts: AtomicU64,
    wait_us: AtomicU64,
    timeouts: AtomicU64,
    xacts: AtomicU64,
    queries: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    xact_us: AtomicU64,
    query_us: AtomicU64,
}

/// What a session did since it last reported: transactions and queries with their time, and
/// bytes from and to its client. Kept in the session and added to its database's counters
/// once per transaction, so the counters cost a few atomic additions per transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Transactions ended (explicit ones, and single statements outside one).
    pub xacts: u64,
    /// Units answered by a server (a Query, or an extended-protocol batch up to Sync).
    pub queries: u64,
    /// Bytes received from the client.
    pub received: u64,
    /// Bytes sent to the client.
    pub sent: u64,
    /// Time from each transaction's first unit being sent to its end, in µs.
    pub xact_us: u64,
    /// Time from each unit being sent to its answer, in µs.
    pub query_us: u64,
}

impl Work {
    /// Whether there is nothing to report.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Work::default()
    }
}

/// A duration in whole microseconds, saturating (how the counters keep time).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Where a session adds its [`Work`]: its database's counters.
#[derive(Clone, Debug)]
pub(crate) struct WorkSink(Arc<DbCounters>);

impl WorkSink {
    /// Adds `work` to the database's totals and clears it.
    pub(crate) fn add(&self, work: &mut Work) {
        let c = &self.0;
        for (counter, value) in [
            (&c.xacts, work.xacts),
            (&c.queries, work.queries),
            (&c.received, work.received),
            (&c.sent, work.sent),
            (&c.xact_us, work.xact_us),
            (&c.query_us, work.query_us),
        ] {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
        *work = Work::default();
    }
}

/// What a new client is, as registered after authentication.
#[derive(Clone, Debug)]
pub struct NewClient {
    /// The connection id (also the pid of its cancel key).
    pub id: u32,
    /// Login name.
    pub user: String,
    /// Database asked for at startup.
    pub database: String,
    /// `application_name` from the startup packet (empty when not given).
    pub application_name: String,
    /// The client's address, when the socket still knows it.
    pub addr: Option<SocketAddr>,
}

#[derive(Debug)]
struct Entry {
    client: NewClient,
    connected_at: SystemTime,
    activity: AtomicU8,
    pinned: AtomicBool,
    counters: Arc<DbCounters>,
}

/// One row of `SHOW CLIENTS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    /// What the client registered as.
    pub id: u32,
    /// Login name.
    pub user: String,
    /// Database asked for at startup.
    pub database: String,
    /// `application_name` from the startup packet.
    pub application_name: String,
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// When it finished authenticating.
    pub connected_at: SystemTime,
    /// What it is doing now.
    pub activity: Activity,
    /// Pinned to one server connection.
    pub pinned: bool,
}

/// One row of `SHOW STATS`: totals of one database since the proxy started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbTotals {
    /// The database clients asked for ([`OTHER_DATABASES`] for the overflow).
    pub database: String,
    /// Authenticated client connections, ever.
    pub client_connections: u64,
    /// Clients connected now.
    pub current_clients: u64,
    /// Server connections handed to clients (successful checkouts).
    pub checkouts: u64,
    /// Time spent waiting for those checkouts and for the ones that failed, in µs.
    pub wait_us: u64,
    /// Checkouts that gave up after `pool.checkout_timeout`.
    pub checkout_timeouts: u64,
    /// Transactions, queries, their time and the clients' bytes.
    pub work: Work,
}

/// Every connected client, keyed by connection id.
#[derive(Debug)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u32, Arc<Entry>>>,
    databases: Mutex<HashMap<String, Arc<DbCounters>>>,
    /// When counting began (the `avg_*` rates of `SHOW STATS` are per second since then).
    started: tokio::time::Instant,
}

impl Default for ClientRegistry {
    fn default() -> Self {
        ClientRegistry {
            clients: Mutex::default(),
            databases: Mutex::default(),
            started: tokio::time::Instant::now(),
        }
    }
}

impl ClientRegistry {
    /// Registers a client; the entry lives as long as the returned guard.
    pub fn register(self: &Arc<Self>, client: NewClient) -> ClientGuard {
        let counters = {
            let mut dbs = self.databases.lock();
            let name = if dbs.len() >= MAX_DATABASES && !dbs.contains_key(&client.database) {
                OTHER_DATABASES
            } else {
                client.database.as_str()
            };
            // A lookup first: `entry` would allocate the name at every connection.
            match dbs.get(name) {
                Some(counters) => counters.clone(),
                None => dbs.entry(name.to_owned()).or_default().clone(),
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            client,
            connected_at: SystemTime::now(),
            activity: AtomicU8::new(Activity::Idle as u8),
            pinned: AtomicBool::new(false),
            counters,
        });
        self.clients.lock().insert(entry.client.id, entry.clone());
        ClientGuard {
            registry: self.clone(),
            entry,
        }
    }

    /// Every connected client, by id.
    pub fn list(&self) -> Vec<ClientRow> {
        let entries: Vec<Arc<Entry>> = self.clients.lock().values().cloned().collect();
        let mut rows: Vec<ClientRow> = entries
            .iter()
            .map(|e| ClientRow {
                id: e.client.id,
                user: e.client.user.clone(),
                database: e.client.database.clone(),
                application_name: e.client.application_name.clone(),
                addr: e.client.addr,
                connected_at: e.connected_at,
                activity: Activity::from_u8(e.activity.load(Ordering::Relaxed)),
                pinned: e.pinned.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// How many clients are active, idle and waiting (`pgsplit_clients{state}`); cheaper
    /// than [`ClientRegistry::list`] (no row is copied).
    pub fn counts(&self) -> pgsplit_telemetry::ClientCounts {
        let mut counts = pgsplit_telemetry::ClientCounts::default();
        for e in self.clients.lock().values() {
            match Activity::from_u8(e.activity.load(Ordering::Relaxed)) {
                Activity::Active => counts.active += 1,
                Activity::Idle => counts.idle += 1,
                Activity::Waiting => counts.waiting += 1,
            }
        }
        counts
    }

    /// How long the counters have been counting.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Totals per database that has ever had a client, by name.
    pub fn totals(&self) -> Vec<DbTotals> {
        let mut current: HashMap<String, u64> = HashMap::new();
        let dbs: Vec<(String, Arc<DbCounters>)> = self
            .databases
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for e in self.clients.lock().values() {
            // Count by the counters the entry records into (the overflow shares one).
            if let Some((name, _)) = dbs.iter().find(|(_, c)| Arc::ptr_eq(c, &e.counters)) {
                *current.entry(name.clone()).or_default() += 1;
            }
        }
        let mut rows: Vec<DbTotals> = dbs
            .into_iter()
            .map(|(database, c)| DbTotals {
                current_clients: current.get(&database).copied().unwrap_or(0),
                client_connections: c.connections.load(Ordering::Relaxed),
                checkouts: c.checkouts.load(Ordering::Relaxed),
                wait_us: c.wait_us.load(Ordering::Relaxed),
                checkout_timeouts: c.timeouts.load(Ordering::Relaxed),
                work: Work {
                    xacts: c.xacts.load(Ordering::Relaxed),
                    queries: c.queries.load(Ordering::Relaxed),
                    received: c.received.load(Ordering::Relaxed),
                    sent: c.sent.load(Ordering::Relaxed),
                    xact_us: c.xact_us.load(Ordering::Relaxed),
                    query_us: c.query_us.load(Ordering::Relaxed),
                },
                database,
            })
            .collect();
        rows.sort_by(|a, b| a.database.cmp(&b.database));
        rows
    }
}

/// A client's registration: updates its entry and removes it when dropped.
#[derive(Debug)]
pub struct ClientGuard {
    registry: Arc<ClientRegistry>,
    entry: Arc<Entry>,
}

impl ClientGuard {
    /// Records what the client is doing now.
    pub fn set_activity(&self, activity: Activity) {
        self.entry.activity.store(activity as u8, Ordering::Relaxed);
    }

    /// Where the session adds what it did (see [`Work`]).
    pub(crate) fn work_sink(&self) -> WorkSink {
        WorkSink(Arc::clone(&self.entry.counters))
    }

    /// Records whether the client is pinned.
    pub fn set_pinned(&self, pinned: bool) {
        self.entry.pinned.store(pinned, Ordering::Relaxed);
    }

    /// Records a finished checkout attempt (its wait, and whether it succeeded or timed
    /// out) and marks the client idle; the caller marks it active once it holds the
    /// connection.
    pub fn after_checkout<T>(&self, outcome: &Result<T, PoolError>, waited: Duration) {
        let c = &self.entry.counters;
        let us = micros(waited);
        c.wait_us.fetch_add(us, Ordering::Relaxed);
        match outcome {
            Ok(_) => c.checkouts.fetch_add(1, Ordering::Relaxed),
            Err(PoolError::Timeout { .. }) => c.timeouts.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        self.set_activity(Activity::Idle);
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.entry.client.id);
    }
}

/// Registers a client that has just authenticated.
pub(crate) fn register(
    ctx: &crate::Ctx,
    id: u32,
    startup: &crate::startup::ClientStartup,
    client: &crate::client_io::ClientConn,
) -> ClientGuard {
    let application_name = startup
        .params
        .iter()
        .find(|(k, _)| k == "application_name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    ctx.clients.register(NewClient {
        id,
        user: startup.user.clone(),
        database: startup.database.clone(),
        application_name,
        addr: client.peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: u32, database: &str) -> NewClient {
        NewClient {
            id,
            user: "u".into(),
            database: database.into(),
            application_name: format!("app{id}"),
            addr: Some("127.0.0.1:5000".parse().unwrap()),
        }
    }

    #[test]
    fn entries_live_as_long_as_their_guard() {
        let reg = Arc::new(ClientRegistry::default());
        let a = reg.register(client(2, "db1"));
        let b = reg.register(client(1, "db2"));
        a.set_activity(Activity::Active);
        b.set_pinned(true);
        let rows = reg.list();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rows[1].activity, Activity::Active);
        assert_eq!(rows[1].application_name, "app2");
        assert!(rows[0].pinned && !rows[1].pinned);
        b.set_activity(Activity::Waiting);
        let c = reg.register(client(3, "db1"));
        let counts = reg.counts();
        assert_eq!((counts.active, counts.idle, counts.waiting), (1, 1, 1));
        drop(a);
        assert_eq!(reg.counts().active, 0);
        drop(c);
        assert_eq!(reg.list().len(), 1);
        drop(b);
        assert!(reg.list().is_empty());
    }

    #[test]
    fn totals_count_connections_checkouts_and_timeouts_per_database() {
        let reg = Arc::new(ClientRegistry::default());
        let a = reg.register(client(1, "db1"));
        drop(reg.register(client(2, "db1")));
        let _c = reg.register(client(3, "db2"));
        a.set_activity(Activity::Waiting);
        a.after_checkout(&Ok::<(), PoolError>(()), Duration::from_micros(250));
        assert_eq!(reg.list()[0].activity, Activity::Idle);
        let timeout: Result<(), PoolError> = Err(PoolError::Timeout {
            key: pgsplit_backend::PoolKey::new("s", "u", "db1"),
            timeout: Duration::from_millis(5),
        });
        a.after_checkout(&timeout, Duration::from_millis(5));
        let work_done = Work {
            xacts: 1,
            queries: 3,
            received: 37,
            sent: 120,
            xact_us: 900,
            query_us: 600,
        };
        let mut work = work_done;
        a.work_sink().add(&mut work);
        assert!(work.is_empty(), "added work is cleared");
        a.work_sink().add(&mut Work {
            queries: 1,
            ..Work::default()
        });
        let totals = reg.totals();
        assert_eq!(
            totals[0],
            DbTotals {
                database: "db1".into(),
                client_connections: 2,
                current_clients: 1,
                checkouts: 1,
                wait_us: 5250,
                checkout_timeouts: 1,
                work: Work {
                    queries: 4,
                    ..work_done
                },
            }
        );
        assert_eq!(totals[1].database, "db2");
        assert_eq!(totals[1].current_clients, 1);
    }

    #[test]
    fn databases_past_the_cap_share_one_row() {
        let reg = Arc::new(ClientRegistry::default());
        for i in 0..MAX_DATABASES as u32 + 5 {
            drop(reg.register(client(i, &format!("db{i}"))));
        }
        let totals = reg.totals();
        assert_eq!(totals.len(), MAX_DATABASES + 1);
        let other = totals
            .iter()
            .find(|t| t.database == OTHER_DATABASES)
            .unwrap();
        assert_eq!(other.client_connections, 5);
    }
}
