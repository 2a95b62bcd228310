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
    /// TLS towards clients (`tls:`); `None`: SSLRequest is declined, clients talk in plain text.
    pub tls: Option<TlsConfig>,
    /// Logging settings.
    pub log: LogConfig,
    /// Resource limits on the client side.
    pub limits: Limits,
    /// How long in-flight transactions may run after SIGTERM. Default 30 s.
    pub shutdown_timeout: Duration,
    /// Event loops that run client sessions, each a single-threaded runtime on its own thread:
    /// `Some(n)` runs `n`, `None` (`auto`, the default) one per CPU core. Read at start only.
    pub workers: Option<usize>,
    /// Users that may connect to pgsplit. Invariant: names are unique and non-empty.
    pub users: Vec<User>,
    /// Pool settings shared by every (server, user, database) pool.
    pub pool: PoolConfig,
    /// PostgreSQL servers. Invariant: non-empty, names unique, at most one `role: primary`.
    pub servers: Vec<Server>,
    /// How statements are routed: `primary_reads`, `balance`, `consistency`, `causal_wait`,
    /// `functions` and `rules` (all top-level keys in the file).
    pub routing: RoutingConfig,
    /// The background health checker (`health:`).
    pub health: HealthConfig,
    /// Replica lag limits (`lag:`).
    pub lag: LagConfig,
    /// Failover behaviour (`failover:`).
    pub failover: FailoverConfig,
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

/// TLS towards clients: the certificate pgsplit presents and whether plain text is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first. Read at start, reload, and `pgsplit
    /// check`; a relative path is relative to the working directory.
    pub cert: std::path::PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// Whether clients may still connect without TLS. Default `prefer`.
    pub mode: TlsMode,
}

/// Whether a client must use TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS is offered (SSLRequest is accepted); plain-text clients are served too.
    Prefer,
    /// Plain-text clients are refused after their startup packet (FATAL 28000), as a
    /// PostgreSQL server with only `hostssl` lines does. Cancel requests are still taken.
    Require,
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
    /// Whether and how pgsplit's connections to this server use TLS. Default `prefer`.
    pub sslmode: SslMode,
    /// PEM file with the CA certificates that `verify-ca` and `verify-full` check the
    /// server's certificate against (required for those modes, unused by the others).
    pub sslrootcert: Option<std::path::PathBuf>,
}

/// TLS towards a server, as libpq's `sslmode` (without `allow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, else plain text; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with a certificate signed by `sslrootcert`, whatever name it carries.
    VerifyCa,
    /// TLS with a certificate signed by `sslrootcert` and made out to the server's `host`.
    VerifyFull,
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

/// Routing settings: the top-level keys `primary_reads`, `balance`, `consistency`,
/// `causal_wait`, `functions` and `rules`.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingConfig {
    /// Whether the primary takes reads. Default `fallback`.
    pub primary_reads: PrimaryReads,
    /// How reads are spread among eligible servers. Default `round_robin`.
    pub balance: Balance,
    /// Read-after-write consistency when no rule says otherwise. Default `session`.
    pub consistency: Consistency,
    /// Under `session` consistency, how long a read waits for a replica to catch up before
    /// it goes to the primary. Default 0 (go at once).
    pub causal_wait: Duration,
    /// User function lists for the classifier.
    pub functions: FunctionsConfig,
    /// `rules`, in file order; the first match wins.
    pub rules: Vec<RuleConfig>,
}

/// `primary_reads:` whether the primary takes reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryReads {
    /// Never.
    Never,
    /// Only when no replica is eligible (the default).
    Fallback,
    /// Always: the primary is one more candidate.
    Always,
}

/// `balance:` how reads are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest busy server connections (the default); a tie goes to the server the session
    /// used last.
    LeastConnections,
    /// Fewest busy server connections per unit of weight.
    WeightedLeastConnections,
}

/// `consistency:` read-after-write consistency, globally or per rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Any eligible replica.
    Eventual,
    /// After a write, only replicas that replayed it (the default).
    Session,
    /// `{ primary_after_write: DURATION }`: for this long after a write, reads go to the
    /// primary. Invariant: greater than zero.
    PrimaryAfterWrite(Duration),
}

/// `functions:` what the classifier is told about functions.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionsConfig {
    /// `functions.write`: calls route to the primary. Invariant: each entry is a lower-case
    /// name, optionally `schema.`-qualified, optionally ending in `*` (a prefix).
    pub write: Vec<String>,
    /// `functions.read`: known read-only. Same form as `write`.
    pub read: Vec<String>,
    /// `functions.unknown`: functions in no list. Default `primary`.
    pub unknown: UnknownFunctions,
}

/// `functions.unknown:` where a statement calling an unlisted function goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownFunctions {
    /// It may write: the primary (the default).
    Primary,
    /// Trust it to be read-only.
    Replica,
}

/// One entry of `rules`.
///
/// Invariant: at least one of `target`, `consistency` and `block` is set, and `block` is
/// set alone.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    /// `name`, default `rules[N]` (N = index). Invariant: unique among rules, non-empty.
    pub name: String,
    /// `match`: the conditions (all absent: matches every statement).
    pub when: RuleMatch,
    /// `target`: force the primary or a replica (a replica only for reads).
    pub target: Option<RuleTarget>,
    /// `consistency`: for matching reads.
    pub consistency: Option<Consistency>,
    /// `block`: refuse matching statements with this message. Invariant: non-empty.
    pub block: Option<String>,
}

/// `rules[N].match`: every condition set must hold; a list holds when any entry does; an
/// empty list matches anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleMatch {
    /// `user`: client user names.
    pub users: Vec<String>,
    /// `database`: database names.
    pub databases: Vec<String>,
    /// `application_name`: values of the client's `application_name`.
    pub application_names: Vec<String>,
    /// `kind`: statement kinds.
    pub kinds: Vec<StatementKind>,
    /// `tables`: tables named anywhere in the statement (`users` or `public.users`).
    pub tables: Vec<String>,
    /// `functions`: functions called anywhere in the statement.
    pub functions: Vec<String>,
    /// `fingerprint`: pg_query fingerprints. Invariant: 16 lower-case hex digits each.
    pub fingerprints: Vec<String>,
    /// `regex`: searched in the SQL text. Invariant: compiles with `regex::Regex::new`.
    pub regex: Option<String>,
}

/// `rules[N].match.kind:` a statement's class, spelled as the classifier spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// A read (SELECT without locking or writing functions, SHOW, ...).
    Read,
    /// A write (DML, DDL, ...).
    Write,
    /// BEGIN / START TRANSACTION.
    TxnBegin,
    /// COMMIT / ROLLBACK / END / ABORT and friends.
    TxnEnd,
    /// SAVEPOINT / RELEASE / ROLLBACK TO.
    Savepoint,
    /// SET / RESET / DISCARD and other session settings.
    SessionSet,
    /// FETCH / MOVE / CLOSE.
    Cursor,
    /// Could not be classified (routes to the primary).
    Unknown,
}

/// `rules[N].target:` where a rule sends matching statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// The primary.
    Primary,
    /// A replica (reads only; anything else still goes to the primary).
    Replica,
}

/// `health:` the background health checker.
#[derive(Clone, PartialEq)]
pub struct HealthConfig {
    /// Time between probes of one server. Default 500 ms; invariant: at least 100 ms.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed. Default 1 s; invariant:
    /// greater than zero.
    pub timeout: Duration,
    /// Consecutive good probes a down server needs to come back. Default 2; invariant: >= 1.
    pub rise: u32,
    /// Role the checker logs in as. Default: `server_user` of the first configured user.
    pub user: String,
    /// Its password. Default: the `server_password` of the first user whose `server_user`
    /// is `user` (so, by default, the first user's); `None` = no password (trust).
    pub password: Option<String>,
    /// Database the checker connects to. Default `postgres`.
    pub database: String,
}

impl fmt::Debug for HealthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthConfig")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rise", &self.rise)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

/// `lag:` replica lag limits. A replica over either stops taking reads until it is back
/// under half of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagConfig {
    /// `lag.max_bytes`. Default 16 MiB; invariant: greater than zero.
    pub max_bytes: u64,
    /// `lag.max_delay`. Default 5 s; invariant: greater than zero.
    pub max_delay: Duration,
}

/// `failover:` what happens while the primary is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// How long a statement that needs the primary waits for one before it fails.
    /// Default 10 s.
    pub write_wait: Duration,
}
