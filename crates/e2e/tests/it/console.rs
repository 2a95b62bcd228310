//! The admin console (database `pgsplit` / `pgbouncer`): every command through tokio-postgres
//! and through psql, admin-only access, PAUSE/RESUME holding real queries, and RELOAD of a
//! rewritten config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgsplit_testkit::cluster::APP_USER;
use pgsplit_testkit::proxy_config::{ADMIN_PASSWORD, ADMIN_USER};
use pgsplit_testkit::{Node, ProxyYaml};
use tokio::process::Command;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{Case, Conn, Proxy, bounded, expect_sqlstate};
use crate::tools::{describe, require_tool, run};

/// A result set as text: column names and rows.
#[derive(Debug)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The value of `column` in the first row whose `key` column is `value`.
    fn lookup(&self, key: &str, value: &str, column: &str) -> Option<&str> {
        let (k, c) = (self.col(key), self.col(column));
        let row = self
            .rows
            .iter()
            .find(|r| r[k].as_deref() == Some(value))
            .unwrap_or_else(|| panic!("no row with {key} = {value:?} in {self:#?}"));
        row[c].as_deref()
    }

    fn num(&self, key: &str, value: &str, column: &str) -> i64 {
        let v = self.lookup(key, value, column);
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{column} of {key} = {value}: {v:?} is not a number"))
    }

    fn single(&self, column: &str) -> &str {
        assert_eq!(self.rows.len(), 1, "{self:#?}");
        self.rows[0][self.col(column)].as_deref().unwrap_or("")
    }
}

/// Runs one console command with the simple protocol.
async fn console(c: &Client, sql: &str) -> Rows {
    let messages = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out = Rows {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                out.columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                out.rows
                    .push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
            }
            _ => {}
        }
    }
    out
}

/// tokio-postgres settings for `user` to the console database `database` of `addr`.
fn console_config(
    addr: &Node,
    user: &str,
    password: &str,
    database: &str,
) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(&addr.host)
        .port(addr.port)
        .user(user)
        .password(password)
        .dbname(database)
        .application_name("console-test")
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn admin(px: &Proxy) -> Conn {
    Conn::open(&console_config(
        &px.addr,
        ADMIN_USER,
        ADMIN_PASSWORD,
        "pgsplit",
    ))
    .await
    .unwrap_or_else(|e| panic!("admin console connect: {e:?}"))
}

/// Columns every command documents (docs/admin.md).
const POOLS: &[&str] = &[
    "database",
    "user",
    "server",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_login",
    "pool_size",
    "pool_mode",
];
const SERVERS: &[&str] = &[
    "name",
    "host",
    "port",
    "role",
    "state",
    "weight",
    "max_connections",
    "open",
    "active",
    "lag_bytes",
    "lag_seconds",
    "lag_excluded",
];
const CLIENTS: &[&str] = &[
    "id",
    "user",
    "database",
    "application_name",
    "addr",
    "state",
    "connect_time",
    "pinned",
];
const STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "total_client_connections",
    "current_clients",
    "total_checkout_timeouts",
];
const EXPLAIN: &[&str] = &[
    "class",
    "classify_reason",
    "target",
    "route_reason",
    "rule",
    "tables",
    "functions",
    "hint",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn show_commands_describe_pools_servers_clients_and_routes() {
    Case::new("console_show")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            // A client that just ran a query owns a pool with one idle connection.
            let mut app = px.pg_config(APP_USER, Some(pgsplit_testkit::cluster::APP_PASSWORD));
            app.application_name("console-app");
            let app = Conn::open(&app).await.unwrap();
            crate::harness::assert_usable(&app).await;

            let a = admin(px).await;
            let version = a.parameter("server_version").unwrap_or_default();
            assert!(version.starts_with("16.0 (pgsplit "), "{version}");

            // The session gives its connection back just after the client saw ReadyForQuery.
            bounded(
                Duration::from_secs(5),
                "the app's connection back in its pool",
                async {
                    while console(&a, "SHOW POOLS")
                        .await
                        .num("database", &px.db, "sv_idle")
                        != 1
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            )
            .await;
            let pools = console(&a, "SHOW POOLS").await;
            assert_eq!(pools.columns, POOLS);
            assert_eq!(pools.lookup("database", &px.db, "user"), Some(APP_USER));
            assert_eq!(pools.lookup("database", &px.db, "server"), Some("primary"));
            assert_eq!(pools.num("database", &px.db, "pool_size"), 20);
            assert_eq!(pools.num("database", &px.db, "sv_active"), 0);
            assert_eq!(pools.num("database", &px.db, "sv_idle"), 1);
            assert_eq!(pools.num("database", &px.db, "cl_waiting"), 0);
            assert_eq!(
                pools.lookup("database", &px.db, "pool_mode"),
                Some("transaction")
            );

            let servers = console(&a, "show servers;").await;
            assert_eq!(servers.columns, SERVERS);
            assert_eq!(servers.rows.len(), 1, "{servers:#?}");
            let port = px.env.primary.port.to_string();
            assert_eq!(
                servers.lookup("name", "primary", "port"),
                Some(port.as_str())
            );
            assert_eq!(servers.lookup("name", "primary", "role"), Some("primary"));
            assert_eq!(servers.lookup("name", "primary", "state"), Some("up"));
            assert!(servers.num("name", "primary", "open") >= 1, "{servers:#?}");
            assert_eq!(servers.lookup("name", "primary", "lag_excluded"), Some("f"));

            let clients = console(&a, "SHOW CLIENTS").await;
            assert_eq!(clients.columns, CLIENTS);
            assert_eq!(
                clients.lookup("application_name", "console-app", "database"),
                Some(px.db.as_str())
            );
            assert_eq!(
                clients.lookup("application_name", "console-app", "state"),
                Some("idle")
            );
            assert_eq!(
                clients.lookup("application_name", "console-app", "pinned"),
                Some("f")
            );
            assert_eq!(
                clients.lookup("application_name", "console-test", "user"),
                Some(ADMIN_USER)
            );
            let addr = clients
                .lookup("application_name", "console-app", "addr")
                .unwrap();
            assert!(addr.starts_with("127.0.0.1:"), "{addr}");
            let since = clients
                .lookup("application_name", "console-app", "connect_time")
                .unwrap();
            assert!(since.ends_with(" UTC") && since.len() == 23, "{since}");

            let stats = console(&a, "SHOW STATS").await;
            assert_eq!(stats.columns, STATS);
            assert_eq!(stats.num("database", &px.db, "total_client_connections"), 1);
            assert_eq!(stats.num("database", &px.db, "current_clients"), 1);
            assert!(stats.num("database", &px.db, "total_server_assignment_count") >= 1);
            assert_eq!(stats.num("database", &px.db, "total_checkout_timeouts"), 0);
            assert_eq!(stats.num("database", "pgsplit", "current_clients"), 1);
            let db = |stats: &Rows, column: &str| stats.num("database", &px.db, column);
            assert!(db(&stats, "total_xact_count") >= 1, "{stats:#?}");
            assert!(db(&stats, "total_query_count") >= db(&stats, "total_xact_count"));
            assert!(db(&stats, "total_received") > 0 && db(&stats, "total_sent") > 0);
            assert!(db(&stats, "total_query_time") > 0);
            // One explicit transaction of three simple queries: one transaction, three
            // queries, and exactly the bytes of three Query messages from the client.
            for sql in ["BEGIN", "SELECT 1", "COMMIT"] {
                app.simple_query(sql).await.unwrap();
            }
            let after = console(&a, "SHOW STATS").await;
            let grew = |column: &str| db(&after, column) - db(&stats, column);
            assert_eq!(grew("total_xact_count"), 1, "{after:#?}");
            assert_eq!(grew("total_query_count"), 3, "{after:#?}");
            let query_bytes: i64 = ["BEGIN", "SELECT 1", "COMMIT"]
                .iter()
                .map(|sql| 1 + 4 + sql.len() as i64 + 1)
                .sum();
            assert_eq!(grew("total_received"), query_bytes, "{after:#?}");
            assert!(grew("total_sent") > 0, "{after:#?}");
            assert!(
                grew("total_xact_time") >= grew("total_query_time"),
                "{after:#?}"
            );

            let config = console(&a, "SHOW CONFIG").await;
            assert_eq!(config.columns, ["key", "value"]);
            assert_eq!(config.lookup("key", "pool.size", "value"), Some("20"));
            assert_eq!(
                config.lookup("key", "pool.mode", "value"),
                Some("transaction")
            );
            assert_eq!(config.lookup("key", "servers", "value"), Some("1"));
            assert_eq!(config.lookup("key", "generation", "value"), Some("1"));

            let version = console(&a, "SHOW VERSION").await;
            assert_eq!(version.columns, ["version"]);
            assert!(
                version.single("version").starts_with("pgsplit "),
                "{version:#?}"
            );

            let write = console(&a, "EXPLAIN ROUTE UPDATE t SET a = 1").await;
            assert_eq!(write.columns, EXPLAIN);
            assert_eq!(write.single("class"), "write");
            assert_eq!(write.single("target"), "primary:primary");
            assert_eq!(write.single("route_reason"), "write");
            assert_eq!(write.single("tables"), "t");
            let read = console(&a, "explain route SELECT 1;").await;
            assert_eq!(read.single("class"), "read");

            // Errors keep the session usable.
            let err = expect_sqlstate(a.simple_query("SHOW DATABASES").await, "42601");
            assert!(
                err.message().contains("available commands"),
                "{}",
                err.message()
            );
            expect_sqlstate(a.query("SHOW POOLS", &[]).await, "0A000");
            // This proxy's config came from text, not a file: nothing to reload.
            let err = expect_sqlstate(a.simple_query("RELOAD").await, "F0000");
            assert!(
                err.message().contains("not read from a file"),
                "{}",
                err.message()
            );
            assert_eq!(console(&a, "SHOW VERSION").await.rows.len(), 1);

            // A client that leaves leaves the list.
            drop(app);
            bounded(
                Duration::from_secs(5),
                "the client leaving SHOW CLIENTS",
                async {
                    loop {
                        let clients = console(&a, "SHOW CLIENTS").await;
                        let c = clients.col("application_name");
                        if !clients
                            .rows
                            .iter()
                            .any(|r| r[c].as_deref() == Some("console-app"))
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            )
            .await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admin_users_get_the_console() {
    Case::new("console_nonadmin")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            for database in ["pgsplit", "pgbouncer"] {
                let config = console_config(
                    &px.addr,
                    APP_USER,
                    pgsplit_testkit::cluster::APP_PASSWORD,
                    database,
                );
                let err = expect_sqlstate(Conn::open(&config).await.map(|_| ()), "42501");
                assert!(err.message().contains("admin console"), "{}", err.message());
            }
            // A wrong password is still a plain authentication failure.
            let config = console_config(&px.addr, ADMIN_USER, "wrong", "pgsplit");
            expect_sqlstate(Conn::open(&config).await.map(|_| ()), "28P01");
            // The alias works for an admin.
            let c = Conn::open(&console_config(
                &px.addr,
                ADMIN_USER,
                ADMIN_PASSWORD,
                "pgbouncer",
            ))
            .await
            .unwrap();
            assert_eq!(console(&c, "SHOW VERSION").await.rows.len(), 1);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_holds_new_work_until_resume() {
    Case::new("console_pause")
        .yaml(|y| y.set("shutdown_timeout", "1s"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let mut app = px.pg_config(APP_USER, Some(pgsplit_testkit::cluster::APP_PASSWORD));
            app.application_name("console-app");
            let app = Conn::open(&app).await.unwrap();
            crate::harness::assert_usable(&app).await;
            let a = admin(px).await;

            // No connection is busy: PAUSE answers at once.
            let paused = bounded(Duration::from_secs(2), "PAUSE", a.simple_query("PAUSE")).await;
            paused.expect("PAUSE");
            let query = tokio::spawn(async move {
                let rows = app.client.simple_query("SELECT 42").await;
                (app, rows)
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!query.is_finished(), "a query ran while paused");
            let clients = console(&a, "SHOW CLIENTS").await;
            assert_eq!(
                clients.lookup("application_name", "console-app", "state"),
                Some("waiting")
            );
            console(&a, "RESUME").await;
            let (app, rows) = bounded(Duration::from_secs(5), "the query after RESUME", query)
                .await
                .unwrap();
            let answer = rows.unwrap().into_iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            });
            assert_eq!(answer.as_deref(), Some("42"));

            // A transaction holding its connection keeps PAUSE from completing: after
            // shutdown_timeout (1 s) it reports the busy connection, and the pause stays.
            app.batch_execute("BEGIN; SELECT 1").await.unwrap();
            let started = tokio::time::Instant::now();
            let err = expect_sqlstate(a.simple_query("PAUSE").await, "55000");
            assert!(started.elapsed() >= Duration::from_millis(900));
            assert!(
                err.message().contains("1 server connection"),
                "{}",
                err.message()
            );
            // The open transaction keeps its connection and can finish.
            app.batch_execute("COMMIT").await.unwrap();
            console(&a, "RESUME").await;
            crate::harness::assert_usable(&app).await;
        })
        .await;
}

/// A file next to the test binary's temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let unique = format!(
            "pgsplit-{name}-{}-{}.yaml",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        TempFile(std::env::temp_dir().join(unique))
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap_or_else(|e| panic!("{}: {e}", self.0.display()));
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Needs no PostgreSQL: the console answers without any server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_rewritten_config_file_and_rejects_a_broken_one() {
    bounded(Duration::from_secs(30), "reload test", async {
        // Nothing listens on port 1; no server connection is ever made.
        let yaml = |size: &str| {
            ProxyYaml::new(Node {
                host: "127.0.0.1".into(),
                port: 1,
            })
            .pool("size", size)
            .build()
        };
        let file = TempFile::new("reload");
        file.write(&yaml("3"));
        let config = pgsplit_config::load(file.path()).unwrap();
        let handle = pgsplit::start(config).await.unwrap();
        let a = handle.client_addr();
        let addr = Node {
            host: a.ip().to_string(),
            port: a.port(),
        };
        let c = Conn::open(&console_config(
            &addr,
            ADMIN_USER,
            ADMIN_PASSWORD,
            "pgsplit",
        ))
        .await
        .unwrap();
        let size = async |c: &Client| {
            let config = console(c, "SHOW CONFIG").await;
            let size = config
                .lookup("key", "pool.size", "value")
                .map(str::to_owned);
            let generation = config
                .lookup("key", "generation", "value")
                .map(str::to_owned);
            (size.unwrap(), generation.unwrap())
        };
        assert_eq!(size(&c).await, ("3".to_owned(), "1".to_owned()));
        let source = console(&c, "SHOW CONFIG").await;
        let shown = file.path().display().to_string();
        assert_eq!(
            source.lookup("key", "source", "value"),
            Some(shown.as_str())
        );

        // A broken file is rejected with its error; the old config stays.
        file.write(&yaml("0"));
        let err = expect_sqlstate(c.simple_query("RELOAD").await, "F0000");
        assert!(err.message().contains("pool.size"), "{}", err.message());
        assert_eq!(size(&c).await, ("3".to_owned(), "1".to_owned()));

        file.write(&yaml("7"));
        console(&c, "RELOAD").await;
        assert_eq!(size(&c).await, ("7".to_owned(), "2".to_owned()));
        file.write(&yaml("9"));
        console(&c, "reload;").await;
        assert_eq!(size(&c).await, ("9".to_owned(), "3".to_owned()));

        drop(c);
        handle.shutdown();
        bounded(Duration::from_secs(15), "proxy shutdown", handle.wait())
            .await
            .unwrap();
    })
    .await;
}

/// psql against the console: `psql -d pgsplit -c '<command>'` in unaligned mode, parsed
/// into a header and rows.
async fn psql(psql: &Path, px: &Proxy, command: &str) -> std::process::Output {
    let mut cmd = Command::new(psql);
    cmd.env("PGPASSWORD", ADMIN_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .args(["-h", &px.addr.host, "-p", &px.addr.port.to_string()])
        .args(["-U", ADMIN_USER, "-d", "pgsplit", "-X", "-A", "-F", "|"])
        .args(["-P", "footer=off", "-v", "ON_ERROR_STOP=1", "-c", command])
        .kill_on_drop(true);
    run(cmd, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_runs_every_console_command() {
    let Some(psql_bin) = require_tool("psql") else {
        return;
    };
    Case::new("console_psql")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            crate::harness::assert_usable(&px.client().await).await;
            let tables: &[(&str, &[&str])] = &[
                ("SHOW POOLS", POOLS),
                ("SHOW SERVERS", SERVERS),
                ("SHOW CLIENTS", CLIENTS),
                ("SHOW STATS", STATS),
                ("SHOW CONFIG", &["key", "value"]),
                ("SHOW VERSION", &["version"]),
                ("EXPLAIN ROUTE UPDATE t SET a = 1", EXPLAIN),
            ];
            for (command, columns) in tables {
                let out = psql(&psql_bin, px, command).await;
                assert!(out.status.success(), "{command}\n{}", describe(&out));
                let stdout = String::from_utf8_lossy(&out.stdout);
                let mut lines = stdout.lines();
                let header: Vec<&str> = lines.next().unwrap_or("").split('|').collect();
                assert_eq!(&header, columns, "{command}\n{}", describe(&out));
                let rows: Vec<Vec<&str>> = lines.map(|l| l.split('|').collect()).collect();
                assert!(!rows.is_empty(), "{command}: no rows\n{}", describe(&out));
                match *command {
                    "SHOW POOLS" => assert!(rows.iter().any(|r| r[0] == px.db), "{stdout}"),
                    "SHOW SERVERS" => assert_eq!(
                        &rows[0][..5],
                        [
                            "primary",
                            &px.env.primary.host,
                            &px.env.primary.port.to_string(),
                            "primary",
                            "up"
                        ]
                    ),
                    "SHOW CLIENTS" => assert!(
                        rows.iter().any(|r| r[1] == ADMIN_USER && r[5] == "idle"),
                        "{stdout}"
                    ),
                    "SHOW VERSION" => assert!(rows[0][0].starts_with("pgsplit "), "{stdout}"),
                    "EXPLAIN ROUTE UPDATE t SET a = 1" => {
                        assert_eq!(
                            &rows[0][..4],
                            ["write", rows[0][1], "primary:primary", "write"]
                        );
                    }
                    _ => {}
                }
            }
            for (command, tag) in [("PAUSE", "PAUSE"), ("RESUME", "RESUME")] {
                let out = psql(&psql_bin, px, command).await;
                assert!(out.status.success(), "{command}\n{}", describe(&out));
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    tag,
                    "{}",
                    describe(&out)
                );
            }
            // Errors reach psql's stderr with a non-zero exit.
            let out = psql(&psql_bin, px, "RELOAD").await;
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("not read from a file"),
                "{}",
                describe(&out)
            );
            let out = psql(&psql_bin, px, "SHOW NOTHING").await;
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("available commands"),
                "{}",
                describe(&out)
            );
        })
        .await;
}
