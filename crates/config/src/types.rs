//! The validated configuration types that the rest of pgsplit consumes.
//!
//! These are produced only by [`crate::parse`] / [`crate::load`] after validation,
//! so every consumer may rely on the invariants documented on each field.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated pgsplit configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this config was read from, if any (used in messages).
    pub source: Option<PathBuf>,
    /// `host:port` clients connect to. Default `127.0.0.1:6432`.
    pub listen: String,
    /// HTTP admin settings.
    pub admin: AdminConfig,
    /// Logging settings.
    pub log: LogConfig,
    /// Resource limits on the client side.
    pub limits: Limits,
    /// How long in-flight transactions may run after SIGTERM. Default 30 s.
    pub shutdown_timeout: Duration,
    /// Users that may connect to pgsplit. Invariant: names are unique and non-empty.
    pub users: Vec<User>,
    /// Pool settings shared by every (server, user, database) pool.
    pub pool: PoolConfig,
    /// PostgreSQL servers. Invariant: non-empty, names unique, at most one `role: primary`.
    pub servers: Vec<Server>,
}

impl Config {
    /// The user with this name, if configured.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The server configured with `role: primary`, else the first `auto` server.
    pub fn primary(&self) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| s.role == Role::Primary)
            .or_else(|| self.servers.iter().find(|s| s.role == Role::Auto))
    }
}

/// HTTP admin endpoint settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    /// `host:port` of the HTTP admin server (`/metrics`, `/healthz`, ...). Default `127.0.0.1:9930`.
    pub listen: String,
}

/// Log output settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Text or JSON lines. Default text.
    pub format: LogFormat,
    /// A `tracing` env-filter directive such as `info` or `pgsplit=debug`. Default `info`.
    pub level: String,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Client-side resource limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Maximum concurrent client connections; more are refused with 53300. Default 10000.
    pub max_client_connections: usize,
    /// Largest protocol message accepted from a client or a server, in bytes. Default 256 MiB.
    pub max_message_size: usize,
    /// Time a client has to finish startup and authentication. Default 15 s.
    pub startup_timeout: Duration,
}

/// A user allowed to connect to pgsplit.
#[derive(Clone, PartialEq)]
pub struct User {
    /// Login name clients use.
    pub name: String,
    /// Secret used to authenticate the client: plain text, a `SCRAM-SHA-256$...` verifier
    /// or an `md5...` hash (as found in `pg_authid.rolpassword`).
    pub password: String,
    /// How pgsplit authenticates this client.
    pub auth: AuthMethod,
    /// Role name pgsplit uses on the servers. Defaults to `name`.
    pub server_user: String,
    /// Password pgsplit uses on the servers. Defaults to `password` when that is plain text.
    pub server_password: Option<String>,
    /// Whether this user may use the admin console (database `pgsplit` / `pgbouncer`).
    pub admin: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("auth", &self.auth)
            .field("server_user", &self.server_user)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| "<redacted>"),
            )
            .field("admin", &self.admin)
            .finish()
    }
}

/// Client authentication methods pgsplit offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (the default).
    ScramSha256,
    /// MD5 challenge-response.
    Md5,
    /// No password (for local use only).
    Trust,
}

/// Pool settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Transaction (default) or session pooling.
    pub mode: PoolMode,
    /// Server connections per (server, user, database) pool. Default 20.
    pub size: usize,
    /// Idle connections kept open per pool. Default 0.
    pub min_idle: usize,
    /// How long a client waits for a server connection before 53300. Default 5 s.
    pub checkout_timeout: Duration,
    /// Server connections older than this are closed when released. Default 1 h.
    pub server_lifetime: Duration,
    /// Idle server connections older than this are closed. Default 10 min.
    pub server_idle_timeout: Duration,
    /// Idle clients are disconnected after this; `None` = never. Default never.
    pub client_idle_timeout: Option<Duration>,
    /// Connect timeout towards servers. Default 5 s.
    pub connect_timeout: Duration,
    /// Query run on a server connection released by a session-mode client. Default `DISCARD ALL`.
    pub reset_query: String,
}

/// Pooling mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection is held for one transaction.
    Transaction,
    /// A server connection is held for the whole client session.
    Session,
}

/// A PostgreSQL server behind pgsplit.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// Unique name used in metrics and logs. Defaults to `host:port`.
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port. Default 5432.
    pub port: u16,
    /// Configured role.
    pub role: Role,
    /// Balancing weight (>= 1). Default 1.
    pub weight: u32,
    /// The most connections pgsplit opens to this server across all pools. Default 100.
    pub max_connections: usize,
}

impl Server {
    /// `host:port` for connecting.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A server's configured role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes writes.
    Primary,
    /// Streaming replica: takes reads.
    Replica,
    /// Discovered from `pg_is_in_recovery()`.
    Auto,
}
