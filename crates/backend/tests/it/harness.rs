//! Helpers: the cluster from the environment, throwaway databases, pool settings, and a tiny
//! simple-query client over a [`ServerConn`].

use bytes::BytesMut;
use pgsplit_backend::{PoolKey, PoolSettings, ServerConn};
use pgsplit_testkit::ClusterEnv;
use pgsplit_testkit::cluster::{APP_DATABASE, APP_PASSWORD, APP_USER, connect_direct};
use pgsplit_wire::backend::{self, BackendMessage, ready_status, tags};
use tokio::time::{Duration, Instant, sleep};
use tokio_postgres::Client;

/// A test's own database on the real primary, and a monitoring connection (to database `app`,
/// so it never counts itself).
pub(crate) struct TestDb {
    pub(crate) env: ClusterEnv,
    pub(crate) names: Vec<String>,
    pub(crate) admin: Client,
}

impl TestDb {
    /// `None` (the test skips) when there is no cluster; `count` fresh databases owned by `app`.
    pub(crate) async fn new(prefix: &str, count: usize) -> Option<TestDb> {
        let env = ClusterEnv::require()?;
        let admin = connect_direct(&env.primary, APP_USER, APP_PASSWORD, APP_DATABASE).await;
        let mut names = Vec::new();
        for _ in 0..count {
            let name = pgsplit_testkit::cluster::unique_database_name(prefix);
            admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            names.push(name);
        }
        Some(TestDb { env, names, admin })
    }

    /// `host:port` of the primary.
    pub(crate) fn addr(&self) -> String {
        self.env.primary.to_string()
    }

    /// The pool key of database number `i`.
    pub(crate) fn key(&self, i: usize) -> PoolKey {
        PoolKey::new("primary", APP_USER, &self.names[i])
    }

    /// Client backends connected to this test's databases.
    pub(crate) async fn backends(&self) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = ANY($1) AND backend_type = 'client backend'",
                &[&self.names],
            )
            .await
            .expect("count backends");
        row.get(0)
    }

    /// Whether backend `pid` still exists.
    pub(crate) async fn pid_exists(&self, pid: u32) -> bool {
        let row = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&(pid as i32)],
            )
            .await
            .expect("look up pid");
        row.get::<_, i64>(0) > 0
    }

    /// Waits up to 5 s for the number of backends to become `n`.
    pub(crate) async fn wait_backends(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.backends().await;
            if now == n {
                return;
            }
            assert!(Instant::now() < deadline, "{now} backends, expected {n}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to 5 s for backend `pid` to be gone.
    pub(crate) async fn wait_pid_gone(&self, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pid_exists(pid).await {
            assert!(Instant::now() < deadline, "backend {pid} is still there");
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops the databases, disconnecting whatever still uses them.
    pub(crate) async fn cleanup(self) {
        for name in &self.names {
            self.admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
        }
    }
}

/// Pool settings for the test cluster as `app`.
pub(crate) fn settings(addr: &str, size: usize, server_max: usize) -> PoolSettings {
    PoolSettings {
        addr: addr.to_owned(),
        password: Some(APP_PASSWORD.to_owned()),
        size,
        min_idle: 0,
        checkout_timeout: Duration::from_secs(30),
        server_lifetime: Duration::from_secs(3600),
        server_idle_timeout: Duration::from_secs(600),
        connect_timeout: Duration::from_secs(10),
        max_message: 1 << 20,
        server_max_connections: server_max,
        tls: pgsplit_backend::tls::ServerTls::disabled(),
    }
}

/// Result of a simple query: text values of every row, or the SQLSTATE of the error.
pub(crate) type Rows = Result<Vec<Vec<Option<String>>>, String>;

/// Runs `sql` as a simple Query, reads up to ReadyForQuery and records its status on `conn`.
pub(crate) async fn query(conn: &mut ServerConn, sql: &str) -> Rows {
    let mut buf = BytesMut::new();
    pgsplit_wire::encode::query(&mut buf, sql);
    conn.write_all(&buf).await.expect("write query");
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = conn.read_frame().await.expect("read reply");
        match frame.tag() {
            tags::DATA_ROW => {
                let values = backend::parse_data_row(frame.body()).expect("DataRow");
                rows.push(
                    values
                        .into_iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                );
            }
            tags::ERROR => {
                if let Ok(BackendMessage::ErrorResponse(fields)) = backend::parse(&frame) {
                    error = Some(fields.code);
                }
            }
            tags::READY_FOR_QUERY => {
                conn.note_ready(ready_status(&frame).expect("status"));
                return match error {
                    Some(code) => Err(code),
                    None => Ok(rows),
                };
            }
            _ => {}
        }
    }
}

/// The single value of a one-row, one-column query.
pub(crate) async fn scalar(conn: &mut ServerConn, sql: &str) -> String {
    let rows = query(conn, sql).await.expect("query");
    rows[0][0].clone().expect("not null")
}
