//! Read/write splitting on the real cluster: every statement reports where it ran
//! (`pg_is_in_recovery()`, `inet_server_port()`), so each test proves on which server pgsplit
//! executed it — reads on replicas, writes and anything unsure on the primary.

use std::collections::BTreeSet;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{Case, TestProxy, expect_sqlstate};

/// Runs `sql` (simple protocol) and returns the first column of its first row, which the
/// statements below make `pg_is_in_recovery()`, and the second, the server's port.
async fn ran_on(client: &Client, sql: &str) -> (bool, u16) {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    let in_recovery = row.get(0) == Some("t");
    let port = row.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    (in_recovery, port)
}

/// `true` when the test must be skipped: no replicas in this cluster (a failure when the
/// cluster is required, as under `cargo xtask test`).
fn no_replicas(px: &TestProxy) -> bool {
    if px.skip_without_proxy() {
        return true;
    }
    if px.env.replicas.is_empty() {
        assert!(
            !pgsplit_testkit::cluster::cluster_required(),
            "routing tests need replicas"
        );
        eprintln!("skipping: no replicas in PGSPLIT_TEST_REPLICAS");
        return true;
    }
    false
}

const WHERE: &str = "pg_is_in_recovery(), inet_server_port()";

#[tokio::test]
async fn reads_run_on_replicas_and_writes_on_the_primary() {
    Case::new("route_split")
        .replicas()
        // Round robin: one client's reads alternate (least_connections keeps them on one).
        .yaml(|y| y.set("balance", "round_robin"))
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let c = px.client().await;
            let replica_ports: BTreeSet<u16> = px.env.replicas.iter().map(|n| n.port).collect();
            let mut seen = BTreeSet::new();
            for _ in 0..20 {
                let (replica, port) = ran_on(&c, &format!("SELECT {WHERE}")).await;
                assert!(replica, "a plain SELECT ran on the primary");
                assert!(replica_ports.contains(&port), "unknown port {port}");
                seen.insert(port);
            }
            assert_eq!(seen, replica_ports, "round robin reaches every replica");

            c.batch_execute("CREATE TABLE t (a int); CREATE SEQUENCE s")
                .await
                .unwrap();
            let primary = px.env.primary.port;
            let writes = [
                format!("INSERT INTO t VALUES (1) RETURNING {WHERE}"),
                format!("SELECT {WHERE}, nextval('s')"),
                format!("WITH x AS (INSERT INTO t VALUES (2) RETURNING a) SELECT {WHERE} FROM x"),
                format!("SELECT {WHERE} FROM t FOR UPDATE"),
                format!("SELECT {WHERE}; INSERT INTO t VALUES (3)"),
                format!("SELECT {WHERE}, pg_advisory_xact_lock(1)"),
                format!("/* pgsplit: route=replica */ INSERT INTO t VALUES (4) RETURNING {WHERE}"),
                format!("SELECT {WHERE} FROM t WHERE a = ("),
            ];
            for sql in &writes[..writes.len() - 1] {
                assert_eq!(ran_on(&c, sql).await, (false, primary), "{sql}");
            }
            // Unparseable text goes to the primary, whose error the client gets.
            let err = c.simple_query(&writes[writes.len() - 1]).await.unwrap_err();
            assert_eq!(err.code().map(|c| c.code()), Some("42601"));

            // A hint forces a read to the primary.
            let hinted = format!("/* pgsplit: route=primary */ SELECT {WHERE}");
            assert_eq!(ran_on(&c, &hinted).await, (false, primary));
        })
        .await;
}

#[tokio::test]
async fn read_only_transactions_run_on_a_replica_and_others_on_the_primary() {
    Case::new("route_txn")
        .replicas()
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let c = px.client().await;
            c.simple_query("BEGIN READ ONLY").await.unwrap();
            let (replica, port) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(replica, "BEGIN READ ONLY ran on the primary");
            // The whole transaction stays on its server.
            for _ in 0..5 {
                assert_eq!(ran_on(&c, &format!("SELECT {WHERE}")).await, (true, port));
            }
            // A write inside a read-only transaction fails as PostgreSQL says.
            let err = c
                .simple_query("CREATE TEMP TABLE x (a int)")
                .await
                .unwrap_err();
            assert_eq!(err.code().map(|c| c.code()), Some("25006"));
            c.simple_query("ROLLBACK").await.unwrap();

            c.simple_query("BEGIN").await.unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(!replica, "a read-write transaction runs on the primary");
            c.simple_query("COMMIT").await.unwrap();

            // SERIALIZABLE read-only transactions are refused by hot standbys: primary.
            c.simple_query("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY")
                .await
                .unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(!replica, "a serializable transaction ran on a replica");
            c.simple_query("COMMIT").await.unwrap();

            // default_transaction_read_only makes a bare BEGIN read-only (a new client: this
            // one has written, so its reads now go to the primary until replicas catch up).
            let c = px.client().await;
            c.simple_query("SET default_transaction_read_only = on")
                .await
                .unwrap();
            c.simple_query("BEGIN").await.unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(
                replica,
                "default_transaction_read_only BEGIN ran on the primary"
            );
            c.simple_query("COMMIT").await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn pgsplit_route_setting_forces_reads() {
    Case::new("route_setting")
        .replicas()
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let c = px.client().await;
            let read = format!("SELECT {WHERE}");
            c.simple_query("SET pgsplit.route = primary").await.unwrap();
            assert!(!ran_on(&c, &read).await.0);
            c.simple_query("SET pgsplit.route TO 'replica'")
                .await
                .unwrap();
            assert!(ran_on(&c, &read).await.0);
            c.simple_query("RESET pgsplit.route").await.unwrap();
            assert!(ran_on(&c, &read).await.0);
            c.simple_query("SET pgsplit.route = primary").await.unwrap();
            assert!(!ran_on(&c, &read).await.0);
            c.simple_query("SET SESSION pgsplit.route TO auto")
                .await
                .unwrap();
            assert!(ran_on(&c, &read).await.0);
            // Writes still go to the primary.
            c.simple_query("SET pgsplit.route = replica").await.unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}, txid_current()")).await;
            assert!(!replica);
            let err = c
                .simple_query("SET pgsplit.route = sideways")
                .await
                .unwrap_err();
            expect_sqlstate(Err::<(), _>(err), "22023");
        })
        .await;
}

#[tokio::test]
async fn extended_protocol_statements_are_routed_by_their_sql() {
    Case::new("route_extended")
        .replicas()
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let c = px.client().await;
            // Unnamed statements with parameters (Parse/Bind/Execute/Sync).
            for _ in 0..4 {
                let row = c
                    .query_one("SELECT pg_is_in_recovery() WHERE $1::int = 1", &[&1i32])
                    .await
                    .unwrap();
                assert!(row.get::<_, bool>(0), "extended read ran on the primary");
            }
            // Named statements prepared once, executed many times (the verdict is kept with
            // the statement). Preparing a write executes nothing, so this client's reads still
            // go to replicas afterwards.
            let c2 = px.client().await;
            c2.batch_execute("CREATE TABLE t (a int); CREATE SEQUENCE s")
                .await
                .unwrap();
            let read = c.prepare("SELECT pg_is_in_recovery()").await.unwrap();
            let next = c
                .prepare("SELECT pg_is_in_recovery(), nextval('s')")
                .await
                .unwrap();
            for _ in 0..5 {
                assert!(c.query_one(&read, &[]).await.unwrap().get::<_, bool>(0));
            }
            for _ in 0..3 {
                let row = c.query_one(&next, &[]).await.unwrap();
                assert!(!row.get::<_, bool>(0), "nextval ran on a replica");
            }
            let write = c2
                .prepare("INSERT INTO t VALUES ($1) RETURNING pg_is_in_recovery()")
                .await
                .unwrap();
            for i in 0..5i32 {
                let w = c2.query_one(&write, &[&i]).await.unwrap();
                assert!(!w.get::<_, bool>(0), "a prepared INSERT ran on a replica");
            }
            let c = c2;
            // Read-your-writes: the client's own rows are visible right after each write.
            let count = c
                .prepare("SELECT count(*) FROM t WHERE a = $1")
                .await
                .unwrap();
            for i in 100..150i32 {
                c.execute(&write, &[&i]).await.unwrap();
                let n: i64 = c.query_one(&count, &[&i]).await.unwrap().get(0);
                assert_eq!(n, 1, "row {i} not visible right after its insert");
            }
        })
        .await;
}

#[tokio::test]
async fn routing_decisions_are_counted() {
    Case::new("route_metrics")
        .replicas()
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let metrics = px.metrics().expect("metrics");
            let c = px.client().await;
            for _ in 0..6 {
                c.simple_query("SELECT 1").await.unwrap();
            }
            c.simple_query("CREATE TABLE t (a int)").await.unwrap();
            let text = metrics.render();
            let value = |needle: &str| -> u64 {
                text.lines()
                    .filter(|l| l.starts_with(needle))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            assert!(
                value(r#"pgsplit_route_decisions_total{reason="read_replica",target="replica"}"#)
                    >= 6,
                "{text}"
            );
            assert!(
                value(r#"pgsplit_route_decisions_total{reason="write",target="primary"}"#) >= 1,
                "{text}"
            );
            let replica_reads: u64 = value(r#"pgsplit_queries_total{kind="read",role="replica""#);
            assert!(replica_reads >= 6, "{text}");
            assert!(
                value(r#"pgsplit_queries_total{kind="write",role="primary",server="primary"}"#)
                    >= 1,
                "{text}"
            );
        })
        .await;
}

/// A proxy started from a config file (so that it can be rewritten and reloaded) in front of
/// the cluster's primary and replicas, with a client connected to a fresh database.
struct FileProxy {
    env: pgsplit_testkit::ClusterEnv,
    db: String,
    dir: std::path::PathBuf,
    handle: pgsplit::ProxyHandle,
    client: Client,
}

impl FileProxy {
    /// `None` (after a skip notice, or a failure when the cluster is required) without
    /// `replicas` replicas or when bypassing the proxy.
    async fn start(name: &str, replicas: usize, yaml: &str) -> Option<FileProxy> {
        let env = pgsplit_testkit::ClusterEnv::require()?;
        if crate::harness::bypass_proxy() || env.replicas.len() < replicas {
            assert!(
                crate::harness::bypass_proxy() || !pgsplit_testkit::cluster::cluster_required(),
                "this test needs {replicas} replicas"
            );
            return None;
        }
        let db = env.fresh_database(name).await;
        for node in &env.replicas {
            crate::cluster::connect_when_replayed(node, &db).await;
        }
        let dir = std::env::temp_dir().join(format!("pgsplit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgsplit.yaml");
        std::fs::write(&path, yaml).unwrap();
        let handle = pgsplit::start(pgsplit_config::load(&path).expect("config"))
            .await
            .expect("proxy starts");
        let addr = handle.client_addr();
        let (client, conn) = tokio_postgres::Config::new()
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(pgsplit_testkit::cluster::APP_USER)
            .password(pgsplit_testkit::cluster::APP_PASSWORD)
            .dbname(&db)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        Some(FileProxy {
            env,
            db,
            dir,
            handle,
            client,
        })
    }

    /// Replaces the config file by atomic rename and reloads.
    async fn rewrite(&self, yaml: &str) {
        let tmp = self.dir.join("pgsplit.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.dir.join("pgsplit.yaml")).unwrap();
        self.handle.reload().await.expect("reload");
    }

    async fn stop(self) {
        self.handle.shutdown();
        let _ = self.handle.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        self.env.drop_database(&self.db).await;
    }
}

/// The YAML of a proxy in front of the test cluster's primary and replicas.
fn cluster_yaml() -> Option<pgsplit_testkit::ProxyYaml> {
    let env = pgsplit_testkit::ClusterEnv::from_env()?;
    Some(pgsplit_testkit::ProxyYaml::for_primary(&env).with_replicas(&env))
}

#[tokio::test]
async fn a_hot_reloaded_rule_takes_effect() {
    let Some(base) = cluster_yaml() else {
        // Without the cluster: skip, or fail when it is required.
        let _ = pgsplit_testkit::ClusterEnv::require();
        return;
    };
    crate::harness::bounded(std::time::Duration::from_secs(60), "rule reload", async {
        let Some(px) = FileProxy::start("route_rule", 1, &base.build()).await else {
            return;
        };
        let setup = px.env.app_client(&px.db).await;
        setup
            .batch_execute("CREATE TABLE hot (a int); CREATE TABLE cold (a int)")
            .await
            .unwrap();
        for table in ["hot", "cold"] {
            for node in &px.env.replicas {
                let c = crate::cluster::connect_when_replayed(node, &px.db).await;
                let sql = format!("SELECT to_regclass('{table}') IS NOT NULL");
                while !c.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        let c = &px.client;
        let hot = format!("SELECT {WHERE} FROM (SELECT 1) x LEFT JOIN hot ON true");
        let cold = format!("SELECT {WHERE} FROM (SELECT 1) x LEFT JOIN cold ON true");
        assert!(
            ran_on(c, &hot).await.0,
            "before the rule, reads of hot go to replicas"
        );

        // The rule arrives by rewriting the file and reloading.
        let rule = "[{ name: hot_on_primary, match: { tables: [hot] }, target: primary }]";
        px.rewrite(&base.clone().set("rules", rule).build()).await;
        for _ in 0..10 {
            assert!(
                !ran_on(c, &hot).await.0,
                "the reloaded rule sends hot to the primary"
            );
            assert!(ran_on(c, &cold).await.0, "other reads still go to replicas");
        }
        // A rule that blocks.
        let block = "[{ match: { tables: [cold] }, block: no cold reads here }]";
        px.rewrite(&base.clone().set("rules", block).build()).await;
        let err = c.simple_query(&cold).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
        let message = err.as_db_error().map(|e| e.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("no cold reads here")),
            "{message:?}"
        );
        assert!(ran_on(c, &hot).await.0, "the first rule is gone");
        px.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_removed_by_a_reload_drains() {
    let Some(both) = cluster_yaml() else {
        // Without the cluster: skip, or fail when it is required.
        let _ = pgsplit_testkit::ClusterEnv::require();
        return;
    };
    crate::harness::bounded(std::time::Duration::from_secs(60), "drain", async {
        // Round robin: the one client's reads reach replica2 before the reload (least
        // connections would keep them all on the first replica).
        let both = both.set("balance", "round_robin");
        let Some(px) = FileProxy::start("route_drain", 2, &both.build()).await else {
            return;
        };
        let c = &px.client;
        let replica2 = px.env.replicas[1].port;
        let mut seen = BTreeSet::new();
        for _ in 0..10 {
            seen.insert(ran_on(c, &format!("SELECT {WHERE}")).await.1);
        }
        assert!(seen.contains(&replica2), "{seen:?}");
        let has_pool = |body: &str| body.contains("\"server\":\"replica2\"");
        let (_, status) = crate::own_cluster::http_get(px.handle.admin_addr(), "/status").await;
        assert!(has_pool(&status), "replica2 has a pool before the reload");

        // The same config without replica2.
        let without: String = both
            .build()
            .lines()
            .filter(|l| !l.contains("name: replica2"))
            .map(|l| format!("{l}\n"))
            .collect();
        px.rewrite(&without).await;
        for _ in 0..10 {
            let (_, port) = ran_on(c, &format!("SELECT {WHERE}")).await;
            assert_ne!(port, replica2, "a removed server took a read");
        }
        let (_, status) = crate::own_cluster::http_get(px.handle.admin_addr(), "/status").await;
        assert!(!has_pool(&status), "replica2's pool drained: {status}");
        px.stop().await;
    })
    .await;
}

/// Runs `sql` and returns its first row's first column as text.
async fn value(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Session pooling splits reads too: the client keeps its own primary connection for the
/// whole session (every write, transaction and pinned unit runs there, same backend), while
/// its reads run on replicas, with its settings replayed and its own writes visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reads_run_on_replicas_and_the_rest_on_its_own_connection() {
    Case::new("route_session_mode")
        .replicas()
        // A read after the client's write waits for a replica to replay it (probed every
        // 100 ms) rather than going to the primary, so that the reads below are on replicas.
        .yaml(|y| {
            y.pool("mode", "session")
                .set("causal_wait", "5s")
                .set("health", "{ interval: 100ms }")
        })
        .run(async |px| {
            if no_replicas(px) {
                return;
            }
            let c = px.client().await;
            let own = "/* pgsplit: route=primary */ SELECT pg_backend_pid()";
            let home = value(&c, own).await;
            c.batch_execute("CREATE TABLE t (a int)").await.unwrap();
            for _ in 0..10 {
                let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
                assert!(replica, "a session-mode read ran on the primary");
            }
            let pid = value(&c, "INSERT INTO t VALUES (0) RETURNING pg_backend_pid()").await;
            assert_eq!(pid, home, "a write left the client's own connection");

            // Read-your-writes: every read sees the client's previous insert.
            for i in 1..=10 {
                c.batch_execute(&format!("INSERT INTO t VALUES ({i})"))
                    .await
                    .unwrap();
                let count = value(&c, "SELECT count(*) FROM t").await;
                assert_eq!(
                    count,
                    (i + 1).to_string(),
                    "a read missed the client's write"
                );
            }

            // Settings follow the client to the replicas.
            c.batch_execute("SET application_name = 'sess_routed'")
                .await
                .unwrap();
            let (replica, _) = ran_on(
                &c,
                "SELECT pg_is_in_recovery(), current_setting('application_name') = 'sess_routed'",
            )
            .await;
            assert!(replica);
            let set = value(
                &c,
                "SELECT current_setting('application_name') = 'sess_routed', pg_is_in_recovery()",
            )
            .await;
            assert_eq!(set, "t", "the setting was not replayed on the replica");

            // A transaction runs on the client's own connection.
            c.batch_execute("BEGIN").await.unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(
                !replica,
                "a read inside a read/write transaction left the primary"
            );
            assert_eq!(value(&c, "SELECT pg_backend_pid()").await, home);
            c.batch_execute("COMMIT").await.unwrap();

            // A temporary table pins the client to its own connection; dropping it unpins.
            c.batch_execute("CREATE TEMP TABLE tt (a int)")
                .await
                .unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(!replica, "a pinned session-mode client read on a replica");
            assert_eq!(value(&c, "SELECT pg_backend_pid()").await, home);
            c.batch_execute("DROP TABLE tt").await.unwrap();
            let (replica, _) = ran_on(&c, &format!("SELECT {WHERE}")).await;
            assert!(
                replica,
                "reads did not return to the replicas after the unpin"
            );

            // Protocol-level prepared statements, alternating between the two kinds of server.
            let read = c.prepare("SELECT pg_is_in_recovery()").await.unwrap();
            let write = c
                .prepare("INSERT INTO t VALUES (-1) RETURNING pg_backend_pid()::text")
                .await
                .unwrap();
            for _ in 0..10 {
                let on_replica: bool = c.query_one(&read, &[]).await.unwrap().get(0);
                assert!(on_replica, "a prepared read ran on the primary");
                let pid: String = c.query_one(&write, &[]).await.unwrap().get(0);
                assert_eq!(
                    pid, home,
                    "a prepared write left the client's own connection"
                );
            }

            // Cancelling a read on a replica, then a query on the client's own connection.
            for sql in [
                "SELECT pg_sleep(30), pg_is_in_recovery()",
                "/* pgsplit: route=primary */ SELECT pg_sleep(30)",
            ] {
                let token = c.cancel_token();
                let cancel = tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
                });
                let started = tokio::time::Instant::now();
                let result = c.simple_query(sql).await;
                cancel.await.unwrap();
                expect_sqlstate(result, "57014");
                assert!(started.elapsed() < std::time::Duration::from_secs(5));
            }
            assert_eq!(
                value(&c, own).await,
                home,
                "the client lost its own connection"
            );

            // Its own connection ended by the server while set aside: the next write takes a
            // new one, without an error.
            let other = px.client().await;
            let killed = value(&other, &format!("SELECT pg_terminate_backend({home})")).await;
            assert_eq!(killed, "t");
            // Until the backend has exited (its goodbye is then on the connection).
            let gone = format!(
                "/* pgsplit: route=primary */ SELECT count(*) FROM pg_stat_activity WHERE pid = {home}"
            );
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while value(&other, &gone).await != "0" {
                assert!(tokio::time::Instant::now() < deadline, "backend {home} still there");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let pid = value(&c, "INSERT INTO t VALUES (-2) RETURNING pg_backend_pid()").await;
            assert_ne!(pid, home, "the write ran on a terminated backend");
            assert_eq!(
                value(&c, own).await,
                pid,
                "the new connection is not the client's own"
            );
        })
        .await;
}
