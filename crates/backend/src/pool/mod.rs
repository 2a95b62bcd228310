//! Server-connection pools: one per (server, user, database), with limits per pool and per server.
//!
//! The bookkeeping (who holds which slot, who waits in which order) is synchronous and lives in
//! [`state`]; the waiting, opening and handing back of connections is in [`lease`]; what a
//! session holds is a [`PooledConn`] ([`conn`]). The bookkeeping is generic over the connection
//! type so that the queue can be tested without sockets (see `tests.rs`).
//!
//! **Invariant:** for every pool, `open` (idle + busy + being opened) never exceeds `size`, and
//! for every server the sum of `open` over its pools never exceeds `server_max_connections`.
//! A slot is counted before the TCP connect starts and is freed only after the socket is closed
//! (or, for a failed connect, after the attempt has ended).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use pgsplit_config::{PoolConfig, Server};
use tokio::time::{Duration, Instant};

use crate::tls::ServerTls;
use crate::{BackendError, ConnectParams, ScramKeyCache, ServerConn, connect};

mod conn;
mod error;
mod lease;
mod state;
#[cfg(test)]
mod tests;

pub use conn::PooledConn;
pub use error::PoolError;

/// Identity of a pool: one per (server name, server user, database).
///
/// Every checkout and release looks its key up, so the key carries its hash (computed once, in
/// [`PoolKey::new`]), and equality first compares that hash and then each part by pointer (the
/// clones of one key share their strings) before comparing text.
#[derive(Clone, Debug)]
pub struct PoolKey {
    server: Arc<str>,
    user: Arc<str>,
    database: Arc<str>,
    /// The hash of the three parts.
    hash: u64,
}

impl PoolKey {
    /// A key from its three parts.
    pub fn new(server: &str, user: &str, database: &str) -> PoolKey {
        use std::hash::BuildHasher;
        let hash =
            foldhash::fast::FixedState::with_seed(0x706f_6f6c).hash_one((server, user, database));
        PoolKey {
            server: server.into(),
            user: user.into(),
            database: database.into(),
            hash,
        }
    }
}

impl PoolKey {
    /// The server's configured name (not its address, so that a moved server keeps its pool).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The role pgsplit logs in as on the server.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The database on the server.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &PoolKey) -> bool {
        fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
            Arc::ptr_eq(a, b) || a == b
        }
        self.hash == other.hash
            && same(&self.server, &other.server)
            && same(&self.user, &other.user)
            && same(&self.database, &other.database)
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Display for PoolKey {
    /// `server primary, user app, database app`, the pool's name in errors and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server {}, user {}, database {}",
            self.server, self.user, self.database
        )
    }
}

/// Everything a pool needs to open and manage connections (built by the caller from `Config`).
///
/// The latest settings passed to [`Pools::checkout`] win: a reload takes effect at the next
/// checkout of each pool. When `addr` or `password` change, idle connections are closed and busy
/// ones are closed when released.
#[derive(Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `host:port` of the server.
    pub addr: String,
    /// Password of the pool's user on the server, if the server asks for one.
    pub password: Option<String>,
    /// Most connections of this pool: idle, busy and being opened.
    pub size: usize,
    /// Idle connections [`Pools::maintain`] keeps open.
    pub min_idle: usize,
    /// How long a checkout waits in the queue before [`PoolError::Timeout`].
    pub checkout_timeout: Duration,
    /// Connections older than this are closed instead of reused.
    pub server_lifetime: Duration,
    /// Idle connections older than this are closed by [`Pools::maintain`] (down to `min_idle`).
    pub server_idle_timeout: Duration,
    /// Limit for connect + authentication + startup, and for a reset query on release.
    pub connect_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// Most connections to this server across all of its pools.
    pub server_max_connections: usize,
    /// Whether and how its connections use TLS.
    pub tls: Arc<ServerTls>,
}

impl PoolSettings {
    /// Settings for a pool of `server` from the validated config; `password` is the user's
    /// `server_password`.
    pub fn new(
        server: &Server,
        pool: &PoolConfig,
        password: Option<String>,
        max_message: usize,
    ) -> PoolSettings {
        PoolSettings {
            addr: server.addr(),
            password,
            size: pool.size,
            min_idle: pool.min_idle,
            checkout_timeout: pool.checkout_timeout,
            server_lifetime: pool.server_lifetime,
            server_idle_timeout: pool.server_idle_timeout,
            connect_timeout: pool.connect_timeout,
            max_message,
            server_max_connections: server.max_connections,
            tls: ServerTls::of(server),
        }
    }
}

impl fmt::Debug for PoolSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolSettings")
            .field("addr", &self.addr)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("size", &self.size)
            .field("min_idle", &self.min_idle)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("server_lifetime", &self.server_lifetime)
            .field("server_idle_timeout", &self.server_idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_message", &self.max_message)
            .field("server_max_connections", &self.server_max_connections)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A snapshot of one pool, for `SHOW POOLS`, `/status` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool.
    pub key: PoolKey,
    /// Connections counted against the limits: `idle + busy + connecting`.
    pub open: usize,
    /// Connections waiting in the pool.
    pub idle: usize,
    /// Connections checked out.
    pub busy: usize,
    /// Connections being opened (TCP connect, authentication, startup).
    pub connecting: usize,
    /// Checkouts waiting in the queue.
    pub waiting: usize,
    /// The pool's current `size` limit.
    pub size: usize,
    /// Connections open to the pool's server across all of its pools.
    pub server_open: usize,
    /// The server's current `server_max_connections` limit.
    pub server_max: usize,
}

/// What the pool needs from a connection; implemented by [`ServerConn`] and by test doubles.
pub(crate) trait Conn: Send + 'static {
    /// When it was opened.
    fn created_at(&self) -> Instant;
    /// Non-blocking health check of an idle connection.
    fn is_alive(&mut self) -> bool;
    /// The event loop that watches its socket (see [`crate::home`]).
    fn home(&self) -> usize;
    /// Whether it was opened as `settings` say (address, TLS), so it may serve their pool;
    /// one opened under settings a reload has since changed is closed when it comes back.
    fn fits(&self, settings: &PoolSettings) -> bool;
    /// The connection, watched from now on by the calling thread's event loop; on failure it
    /// is gone (closed) and its slot must be freed or reused.
    fn adopt(self) -> Result<Self, BackendError>
    where
        Self: Sized;
    /// Closes it without waiting.
    fn close(self);
}

/// Opens connections for the pools.
pub(crate) trait Connector: Send + Sync + 'static {
    /// The connection type.
    type Conn: Conn;
    /// Opens one connection for pool `key`.
    fn open(
        &self,
        key: &PoolKey,
        settings: &PoolSettings,
    ) -> impl Future<Output = Result<Self::Conn, BackendError>> + Send;
}

/// Boxed, so that checkout, release and the idle lists move a pointer, not the whole
/// connection (buffers, parameters, statement cache) several times per unit.
impl Conn for Box<ServerConn> {
    fn created_at(&self) -> Instant {
        ServerConn::created_at(self)
    }

    fn is_alive(&mut self) -> bool {
        ServerConn::is_alive(self)
    }

    fn home(&self) -> usize {
        self.home
    }

    fn fits(&self, settings: &PoolSettings) -> bool {
        self.addr == settings.addr && self.tls_settings == settings.tls
    }

    fn adopt(self) -> Result<Self, BackendError> {
        ServerConn::adopt(self)
    }

    fn close(self) {
        self.close_now();
    }
}

/// Opens real server connections with [`connect`], as the pool's user and database only:
/// sessions replay client settings themselves. SCRAM keys are derived once per password and
/// server salt.
#[derive(Debug, Default)]
pub(crate) struct TcpConnector {
    scram_keys: ScramKeyCache,
}

impl Connector for TcpConnector {
    type Conn = Box<ServerConn>;

    async fn open(
        &self,
        key: &PoolKey,
        settings: &PoolSettings,
    ) -> Result<Box<ServerConn>, BackendError> {
        let params = ConnectParams {
            addr: &settings.addr,
            user: &key.user,
            password: settings.password.as_deref(),
            database: &key.database,
            params: &[],
            connect_timeout: settings.connect_timeout,
            max_message: settings.max_message,
            scram_keys: Some(&self.scram_keys),
            tls: &settings.tls,
        };
        // Boxed: opening a connection (TCP, TLS, authentication, startup) is rare next to the
        // checkouts whose futures would otherwise carry its whole state, a session's among them.
        Box::pin(connect(&params)).await.map(Box::new)
    }
}

/// All pools of the process; cheap to clone and share (an `Arc` inside).
///
/// Enforces each pool's `size` and each server's `server_max_connections` across all pools of
/// that server: connections open, idle, busy or being opened never exceed either.
/// When a server is full, the oldest idle connection of another pool of that server is closed to
/// make room for a waiting checkout, so idle connections never starve a busy pool.
#[derive(Clone)]
pub struct Pools {
    shared: Arc<lease::Shared<TcpConnector>>,
}

impl Default for Pools {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Pools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pools")
            .field("pools", &self.stats().len())
            .finish()
    }
}

impl Pools {
    /// An empty set of pools; each pool is created at its first checkout.
    pub fn new() -> Self {
        Pools {
            shared: Arc::new(lease::Shared::new(TcpConnector::default())),
        }
    }

    /// Checks out a connection of pool `key`.
    ///
    /// In order: an idle, healthy connection (newest first; dead or expired ones are closed on
    /// the way), else a new connection if both the pool's and the server's limits allow, else a
    /// place in the pool's FIFO queue for up to `checkout_timeout`, after which it fails with
    /// [`PoolError::Timeout`] (SQLSTATE 53300). A failed connect fails this checkout with
    /// [`PoolError::Connect`] and frees the slot for the next waiter.
    ///
    /// The timeout bounds the wait in the queue; opening a connection is bounded by
    /// `connect_timeout` on top.
    ///
    /// Cancel safe: dropping the future at any point leaks no slot and loses no connection
    /// (one handed to a dropped waiter goes to the next waiter or back to idle).
    pub async fn checkout(
        &self,
        key: &PoolKey,
        settings: &PoolSettings,
    ) -> Result<PooledConn, PoolError> {
        self.checkout_at(key, settings, Instant::now()).await
    }

    /// [`Pools::checkout`] with the time it starts, read by the caller (who often has just
    /// read the clock): the wait's deadline and the expiry of idle connections count from it.
    pub async fn checkout_at(
        &self,
        key: &PoolKey,
        settings: &PoolSettings,
        now: Instant,
    ) -> Result<PooledConn, PoolError> {
        let lease = lease::checkout(&self.shared, key, settings, now).await?;
        Ok(PooledConn::new(lease, settings.connect_timeout))
    }

    /// Closes idle connections past `server_idle_timeout` (keeping `min_idle`) or past
    /// `server_lifetime`, closes dead idle connections, and opens connections to bring every pool
    /// up to `min_idle` idle connections, within the limits. Called periodically by the proxy.
    ///
    /// Connect failures are logged, not returned: health checks report broken servers.
    /// Cancel safe: a dropped `maintain` aborts its connects and frees their slots.
    pub async fn maintain(&self) {
        lease::maintain(&self.shared).await;
    }

    /// Drains the pools of every server for which `keep(name)` is false (a reload removed it):
    /// idle connections close now, busy ones when their session gives them back, no new ones
    /// are opened for `min_idle`, and the pools disappear from [`Pools::stats`] once empty.
    /// A later checkout of such a pool (the server came back) makes it a normal pool again.
    pub fn retire(&self, keep: impl Fn(&str) -> bool) {
        self.shared.retire(&keep);
    }

    /// A snapshot of every pool, sorted by key.
    pub fn stats(&self) -> Vec<PoolStats> {
        self.shared.stats()
    }
}

/// `5s`, `300ms` or `1.5s`: a duration as an operator writes it in the config.
pub(crate) fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) && d.as_secs() == 0 {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{d:?}")
    }
}
