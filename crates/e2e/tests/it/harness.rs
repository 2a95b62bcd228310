//! The e2e harness: one proxy per test, in-process on 127.0.0.1:0, in front of the real primary
//! (with a fresh database per test) or of a testkit mock server, and a time bound around the
//! whole test.
//!
//! A failed test leaves its database (`t_<case>_...`) behind for inspection; a passed one drops it.
//!
//! `PGSPLIT_E2E_BYPASS_PROXY=1` runs the same test bodies straight against the primary.
//! It exists to tell a wrong test from a proxy bug: a test that fails without the proxy is wrong.
//! Tests of pgsplit-only behaviour (its users, its shutdown) skip themselves in that mode.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use parking_lot::Mutex;
use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER};
use pgsplit_testkit::{ClusterEnv, MockServer, Node, ProxyYaml, Script};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// How long a test body may run unless its case says otherwise.
const DEFAULT_LIMIT: Duration = Duration::from_secs(60);
/// How long the proxy may take to stop once a test is done with it.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// One e2e test case: a name (used for its database), a time bound and proxy config tweaks.
pub(crate) struct Case {
    name: &'static str,
    limit: Duration,
    yaml: Box<dyn FnOnce(ProxyYaml) -> ProxyYaml>,
    replicas: bool,
}

impl Case {
    pub(crate) fn new(name: &'static str) -> Case {
        Case {
            name,
            limit: DEFAULT_LIMIT,
            yaml: Box::new(|y| y),
            replicas: false,
        }
    }

    /// Puts the cluster's replicas behind the proxy too (as `replica1`, `replica2`, ...), and
    /// waits until each has replayed the test database's creation before the body runs.
    pub(crate) fn replicas(mut self) -> Case {
        self.replicas = true;
        self
    }

    /// Bounds the whole test (database creation, proxy start, body, proxy stop).
    pub(crate) fn limit(mut self, limit: Duration) -> Case {
        self.limit = limit;
        self
    }

    /// Adjusts the proxy's YAML before it starts.
    pub(crate) fn yaml(mut self, f: impl FnOnce(ProxyYaml) -> ProxyYaml + 'static) -> Case {
        self.yaml = Box::new(f);
        self
    }

    /// Runs `body` against a fresh proxy and database; skips when there is no cluster.
    pub(crate) async fn run(self, body: impl AsyncFnOnce(&TestProxy)) {
        init_tracing();
        let Some(env) = ClusterEnv::require() else {
            return;
        };
        let name = self.name;
        bounded(self.limit, name, async move {
            let db = env.fresh_database(name).await;
            let mut yaml = ProxyYaml::for_primary(&env);
            if self.replicas {
                yaml = yaml.with_replicas(&env);
                for node in &env.replicas {
                    crate::cluster::connect_when_replayed(node, &db).await;
                }
            }
            let yaml = (self.yaml)(yaml);
            let proxy = Proxy::start(yaml, env.primary.clone(), db.clone()).await;
            let px = TestProxy { env, proxy };
            body(&px).await;
            px.stop().await;
            px.env.drop_database(&db).await;
        })
        .await;
    }

    /// Runs `body` against a fresh proxy in front of a mock server playing `script`.
    /// Needs no cluster, so it always runs.
    pub(crate) async fn run_mock(self, script: Script, body: impl AsyncFnOnce(&MockProxy)) {
        init_tracing();
        bounded(self.limit, self.name, async move {
            let mock = MockServer::start(script).await;
            let yaml = (self.yaml)(ProxyYaml::new(mock.node()));
            let proxy = Proxy::start(yaml, mock.node(), "mockdb".to_owned()).await;
            let px = MockProxy { mock, proxy };
            body(&px).await;
            px.stop().await;
        })
        .await;
    }
}

/// Awaits `fut`, failing the test when it takes longer than `limit`.
pub(crate) async fn bounded<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Whether the tests run without the proxy (see the module docs).
pub(crate) fn bypass_proxy() -> bool {
    std::env::var("PGSPLIT_E2E_BYPASS_PROXY").is_ok_and(|v| v == "1")
}

/// Sends proxy logs to the test's captured output; `RUST_LOG` picks the level (default `warn`).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A proxy under test and the real cluster behind it.
pub(crate) struct TestProxy {
    pub(crate) env: ClusterEnv,
    proxy: Proxy,
}

impl std::ops::Deref for TestProxy {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

/// A proxy under test and the mock server behind it.
pub(crate) struct MockProxy {
    pub(crate) mock: MockServer,
    proxy: Proxy,
}

impl std::ops::Deref for MockProxy {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

/// A running pgsplit (or, when bypassing, the server itself) and the database tests use.
pub(crate) struct Proxy {
    /// The database clients connect to.
    pub(crate) db: String,
    /// Where clients connect.
    pub(crate) addr: Node,
    handle: Mutex<Option<pgsplit::ProxyHandle>>,
}

impl Proxy {
    /// Starts pgsplit with `yaml`; when bypassing, clients go to `server` instead.
    pub(crate) async fn start(yaml: ProxyYaml, server: Node, db: String) -> Proxy {
        if bypass_proxy() {
            return Proxy {
                db,
                addr: server,
                handle: Mutex::new(None),
            };
        }
        let config = yaml.config();
        let handle = pgsplit::start(config)
            .await
            .unwrap_or_else(|e| panic!("proxy failed to start: {e:#}\n---\n{}", yaml.build()));
        let a = handle.client_addr();
        let addr = Node {
            host: a.ip().to_string(),
            port: a.port(),
        };
        Proxy {
            db,
            addr,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Whether this test runs without the proxy; prints a skip notice when so.
    pub(crate) fn skip_without_proxy(&self) -> bool {
        let bypassed = bypass_proxy();
        if bypassed {
            eprintln!("skipping: this test needs the proxy (PGSPLIT_E2E_BYPASS_PROXY=1)");
        }
        bypassed
    }

    /// Begins a graceful shutdown, like SIGTERM; the proxy keeps running until drained.
    /// The proxy's metric families (`None` when the test bypasses the proxy).
    pub(crate) fn metrics(&self) -> Option<std::sync::Arc<pgsplit_telemetry::Metrics>> {
        self.handle.lock().as_ref().map(|h| h.metrics().clone())
    }

    /// The address of the proxy's HTTP admin endpoint (`None` when the test bypasses it).
    pub(crate) fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.handle
            .lock()
            .as_ref()
            .map(pgsplit::ProxyHandle::admin_addr)
    }

    pub(crate) fn shutdown(&self) {
        if let Some(handle) = self.handle.lock().as_ref() {
            handle.shutdown();
        }
    }

    /// Begins a graceful shutdown (if not yet begun) and waits until the proxy has stopped.
    pub(crate) async fn stop(&self) {
        let handle = self.handle.lock().take();
        if let Some(handle) = handle {
            handle.shutdown();
            bounded(STOP_LIMIT, "proxy shutdown", handle.wait())
                .await
                .unwrap_or_else(|e| panic!("proxy stopped with an error: {e:#}"));
        }
    }

    /// tokio-postgres settings for `user` to the test database through the proxy.
    pub(crate) fn pg_config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.addr.host)
            .port(self.addr.port)
            .user(user)
            .dbname(&self.db)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = password {
            c.password(p);
        }
        c
    }

    /// Connects as `app` to the test database.
    pub(crate) async fn connect(&self) -> Conn {
        let config = self.pg_config(APP_USER, Some(APP_PASSWORD));
        Conn::open(&config)
            .await
            .unwrap_or_else(|e| panic!("connect through the proxy: {e}"))
    }

    /// Just the client of [`TestProxy::connect`].
    pub(crate) async fn client(&self) -> Client {
        self.connect().await.client
    }
}

/// A client connection whose driver task keeps the asynchronous messages and reported parameters.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// Notices and notifications, in arrival order.
    pub(crate) messages: mpsc::UnboundedReceiver<AsyncMessage>,
    params: Arc<Mutex<HashMap<String, String>>>,
    /// The connection driver; resolves when the connection ends.
    pub(crate) driver: JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Parameters a PostgreSQL server reports with ParameterStatus; tokio-postgres only answers lookups by name.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

impl Conn {
    pub(crate) async fn open(
        config: &tokio_postgres::Config,
    ) -> Result<Conn, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let params = Arc::new(Mutex::new(HashMap::new()));
        let (tx, messages) = mpsc::unbounded_channel();
        let seen = params.clone();
        let snapshot = move |c: &tokio_postgres::Connection<_, _>| {
            let mut seen = seen.lock();
            for name in REPORTED {
                if let Some(v) = c.parameter(name) {
                    seen.insert((*name).to_owned(), v.to_owned());
                }
            }
        };
        snapshot(&connection);
        let driver = tokio::spawn(async move {
            loop {
                // Parameters are read after every poll: ParameterStatus never surfaces as a message.
                let next = poll_fn(|cx| {
                    let polled = connection.poll_message(cx);
                    snapshot(&connection);
                    polled
                })
                .await;
                match next {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(m)) => {
                        let _ = tx.send(m);
                    }
                }
            }
        });
        Ok(Conn {
            client,
            messages,
            params,
            driver,
        })
    }

    /// The value last reported for a parameter, waiting up to a second for it to satisfy `want`.
    pub(crate) async fn parameter_until(
        &self,
        name: &str,
        want: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let v = self.parameter(name);
            if v.as_deref().is_some_and(&want) || tokio::time::Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The value last reported for a parameter.
    pub(crate) fn parameter(&self, name: &str) -> Option<String> {
        self.params.lock().get(name).cloned()
    }

    /// The next notice or notification, failing the test after `limit`.
    pub(crate) async fn next_message(&mut self, limit: Duration) -> AsyncMessage {
        bounded(
            limit,
            "waiting for an asynchronous message",
            self.messages.recv(),
        )
        .await
        .expect("connection ended before the message arrived")
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Asserts that `result` failed with `code`, and returns the database error for further checks.
#[track_caller]
pub(crate) fn expect_sqlstate<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    code: &str,
) -> tokio_postgres::error::DbError {
    match result {
        Ok(v) => panic!("expected SQLSTATE {code}, but the statement succeeded: {v:?}"),
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == code => db.clone(),
            Some(db) => panic!(
                "expected SQLSTATE {code}, got {}: {}",
                db.code().code(),
                db.message()
            ),
            None => panic!("expected SQLSTATE {code}, got a non-server error: {e:?}"),
        },
    }
}

/// Runs `SELECT 1` (simple protocol, so the mock server can answer it too) and checks the answer:
/// the session is still usable.
pub(crate) async fn assert_usable(client: &Client) {
    let msgs = client
        .simple_query("SELECT 1")
        .await
        .expect("session unusable");
    let value = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("1"), "SELECT 1 answered {msgs:?}");
}
