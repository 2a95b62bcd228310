//! The real PostgreSQL cluster that `cargo xtask test` starts, as seen through environment variables.
//!
//! `cargo xtask test` starts a primary and streaming replicas and sets:
//!
//! - `PGSPLIT_TEST_PRIMARY=host:port`
//! - `PGSPLIT_TEST_REPLICAS=host:port,host:port` (may be empty)
//! - `PGSPLIT_TEST_SUPERUSER=user:password`
//! - `PGSPLIT_REQUIRE_CLUSTER=1`, which turns a missing cluster from a skip into a failure,
//!   so CI can never pass by skipping every real-cluster test.
//!
//! The cluster has a role `app` (password `app`, SCRAM, CREATEDB) owning a database `app`.
//! Tests run in parallel, so each one creates its own database with [`ClusterEnv::fresh_database`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

/// The application role of the test cluster.
pub const APP_USER: &str = "app";
/// The password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app";
/// The database owned by [`APP_USER`].
pub const APP_DATABASE: &str = "app";

/// Environment variable naming the primary, `host:port`.
pub const ENV_PRIMARY: &str = "PGSPLIT_TEST_PRIMARY";
/// Environment variable naming the replicas, `host:port,host:port`.
pub const ENV_REPLICAS: &str = "PGSPLIT_TEST_REPLICAS";
/// Environment variable holding the superuser credentials, `user:password`.
pub const ENV_SUPERUSER: &str = "PGSPLIT_TEST_SUPERUSER";
/// Environment variable that, when `1`, makes a missing cluster a failure instead of a skip.
pub const ENV_REQUIRE: &str = "PGSPLIT_REQUIRE_CLUSTER";

/// A `host:port` pair of one PostgreSQL server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Node {
    /// Parses `host:port`; the port is what follows the last colon.
    pub fn parse(text: &str) -> Option<Node> {
        let (host, port) = text.trim().rsplit_once(':')?;
        let port = port.parse().ok()?;
        if host.is_empty() {
            return None;
        }
        Some(Node {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where the test cluster is and how to administer it.
#[derive(Clone, Debug)]
pub struct ClusterEnv {
    /// The primary.
    pub primary: Node,
    /// The streaming replicas, possibly none.
    pub replicas: Vec<Node>,
    /// Superuser name, used to create and drop test databases.
    pub superuser: String,
    /// Superuser password.
    pub superuser_password: String,
}

/// Whether `PGSPLIT_REQUIRE_CLUSTER=1` is set, i.e. whether skipping a real-cluster test is a failure.
pub fn cluster_required() -> bool {
    std::env::var(ENV_REQUIRE).is_ok_and(|v| v.trim() == "1")
}

impl ClusterEnv {
    /// Reads the cluster from the environment; `None` when `PGSPLIT_TEST_PRIMARY` is unset or empty.
    ///
    /// # Panics
    ///
    /// When a variable is set but malformed: that is a broken test setup, not a missing cluster.
    pub fn from_env() -> Option<ClusterEnv> {
        let primary = std::env::var(ENV_PRIMARY)
            .ok()
            .filter(|v| !v.trim().is_empty())?;
        Some(Self::from_vars(
            &primary,
            std::env::var(ENV_REPLICAS).ok().as_deref(),
            std::env::var(ENV_SUPERUSER).ok().as_deref(),
        ))
    }

    /// Builds the cluster description from the variables' values; `from_env` without the environment.
    ///
    /// # Panics
    ///
    /// When a value is malformed.
    pub fn from_vars(primary: &str, replicas: Option<&str>, superuser: Option<&str>) -> ClusterEnv {
        let primary = Node::parse(primary)
            .unwrap_or_else(|| panic!("{ENV_PRIMARY}={primary:?} is not host:port"));
        let replicas = replicas
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Node::parse(s).unwrap_or_else(|| panic!("{ENV_REPLICAS}: {s:?} is not host:port"))
            })
            .collect();
        let superuser = superuser.unwrap_or("postgres:postgres");
        let (user, password) = superuser
            .split_once(':')
            .unwrap_or_else(|| panic!("{ENV_SUPERUSER} must be user:password"));
        ClusterEnv {
            primary,
            replicas,
            superuser: user.to_owned(),
            superuser_password: password.to_owned(),
        }
    }

    /// The cluster, or `None` after printing a skip notice.
    ///
    /// # Panics
    ///
    /// When the cluster is missing but `PGSPLIT_REQUIRE_CLUSTER=1` says it must be there.
    pub fn require() -> Option<ClusterEnv> {
        if let Some(env) = Self::from_env() {
            return Some(env);
        }
        if cluster_required() {
            panic!(
                "{ENV_REQUIRE}=1 but {ENV_PRIMARY} is not set: the real-cluster tests cannot run. \
                 Start the cluster with `cargo xtask test` (or `cargo xtask cluster up` and export \
                 {ENV_PRIMARY}, {ENV_REPLICAS} and {ENV_SUPERUSER})."
            );
        }
        eprintln!("skipping: no cluster (run `cargo xtask test`)");
        None
    }

    /// Connects straight to the primary (no proxy) as the superuser.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn superuser_client(&self, database: &str) -> Client {
        let (user, password) = (self.superuser.clone(), self.superuser_password.clone());
        connect_direct(&self.primary, &user, &password, database).await
    }

    /// Connects straight to the primary (no proxy) as `app` to `database`.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn app_client(&self, database: &str) -> Client {
        connect_direct(&self.primary, APP_USER, APP_PASSWORD, database).await
    }

    /// Creates a new, empty database owned by `app` on the primary and returns its name.
    ///
    /// The name starts with `t_` and a sanitised `prefix`, and is unique across parallel tests
    /// and across runs, so tests never see each other's tables.
    ///
    /// # Panics
    ///
    /// When the database cannot be created.
    pub async fn fresh_database(&self, prefix: &str) -> String {
        let name = unique_database_name(prefix);
        let admin = self.superuser_client("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" OWNER \"{APP_USER}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        name
    }

    /// Drops a database made by [`ClusterEnv::fresh_database`], disconnecting whatever still uses it.
    ///
    /// # Panics
    ///
    /// When the database cannot be dropped.
    pub async fn drop_database(&self, name: &str) {
        let admin = self.superuser_client("postgres").await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    }
}

/// Connects to `node` with tokio-postgres (no TLS) and drives the connection on a spawned task.
///
/// # Panics
///
/// When the connection fails.
pub async fn connect_direct(node: &Node, user: &str, password: &str, database: &str) -> Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&node.host)
        .port(node.port)
        .user(user)
        .password(password)
        .dbname(database)
        .application_name("pgsplit-testkit");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {node} as {user} (db {database}): {e}"));
    tokio::spawn(async move {
        // Errors after the client is gone are of no interest to a test helper.
        let _ = connection.await;
    });
    client
}

/// A database name that no other test, in this run or another, uses: `t_<prefix>_<pid>_<n>_<time>`.
pub fn unique_database_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("t_{clean}_{}_{n}_{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vars() {
        let env = ClusterEnv::from_vars(
            "127.0.0.1:25432",
            Some("127.0.0.1:25433, 127.0.0.1:25434"),
            Some("postgres:secret:with:colons"),
        );
        assert_eq!(
            env.primary,
            Node {
                host: "127.0.0.1".into(),
                port: 25432
            }
        );
        assert_eq!(env.replicas.len(), 2);
        assert_eq!(env.replicas[1].port, 25434);
        assert_eq!(env.superuser, "postgres");
        assert_eq!(env.superuser_password, "secret:with:colons");
    }

    #[test]
    fn empty_replicas_and_default_superuser() {
        let env = ClusterEnv::from_vars("localhost:5432", Some(""), None);
        assert!(env.replicas.is_empty());
        assert_eq!(env.superuser, "postgres");
    }

    #[test]
    #[should_panic(expected = "is not host:port")]
    fn malformed_primary_panics() {
        ClusterEnv::from_vars("localhost", None, None);
    }

    #[test]
    fn database_names_are_unique_and_valid() {
        let a = unique_database_name("Copy-In 10MB");
        let b = unique_database_name("Copy-In 10MB");
        assert_ne!(a, b);
        assert!(a.starts_with("t_copy_in_10mb_"));
        assert!(
            a.len() <= 63,
            "{a} is longer than PostgreSQL's identifier limit"
        );
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
