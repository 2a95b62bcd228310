//! Config hot reload through the file system: rewrites by atomic rename and by a Kubernetes
//! ConfigMap style `..data` symlink swap show in `/status` within a second; an invalid file
//! keeps the old config and `/status` and the failure counter say so; 10 rewrites under
//! `pgbench -S -c 16` fail no transaction and keep every server connection (same backend
//! PIDs); and `/metrics` passes `promtool check metrics` after routed traffic.
//!
//! The proxies here are started from a file (`pgsplit_config::load`), unlike the harness's,
//! because only a file-backed config is watched. `PGSPLIT_E2E_PGBENCH_SECS` sets the length of
//! the load run (default 30 s, at least 10 s here).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER, cluster_required, connect_direct};
use pgsplit_testkit::{ClusterEnv, Node, ProxyYaml};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

use crate::harness::{Case, bounded};
use crate::own_cluster::http_get;
use crate::tools::{assert_pgbench_clean, describe, require_tool, run};

/// How soon a rewritten file must show in `/status` (the acceptance bound).
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Config files as operators and Kubernetes write them.

/// How a config file is replaced.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `config.yaml` is a regular file, replaced by writing a temp file and renaming it over.
    Rename,
    /// `config.yaml -> ..data/config.yaml` and `..data -> ..<version>`; an update writes a new
    /// version directory and renames a new `..data` symlink over the old one, like the kubelet.
    ConfigMap,
}

/// A config file in its own directory (removed on drop).
struct ConfigFile {
    dir: PathBuf,
    layout: Layout,
    version: u32,
}

impl ConfigFile {
    fn new(test: &str, layout: Layout, text: &str) -> ConfigFile {
        let dir =
            std::env::temp_dir().join(format!("pgsplit-reload-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut file = ConfigFile {
            dir,
            layout,
            version: 0,
        };
        if let Layout::ConfigMap = layout {
            std::os::unix::fs::symlink("..data/config.yaml", file.path()).unwrap();
        }
        file.publish(text);
        file
    }

    /// The path pgsplit is given.
    fn path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// Replaces the file's content atomically.
    fn publish(&mut self, text: &str) {
        self.version += 1;
        match self.layout {
            Layout::Rename => {
                let tmp = self.dir.join(format!(".config.yaml.{}", self.version));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, self.path()).unwrap();
            }
            Layout::ConfigMap => {
                let name = format!("..2026_01_01_00_00_{:02}.{}", self.version, self.version);
                let version_dir = self.dir.join(&name);
                std::fs::create_dir(&version_dir).unwrap();
                std::fs::write(version_dir.join("config.yaml"), text).unwrap();
                let link = self.dir.join("..data_tmp");
                std::os::unix::fs::symlink(&name, &link).unwrap();
                let data = self.dir.join("..data");
                let old = std::fs::read_link(&data).ok();
                std::fs::rename(&link, &data).unwrap();
                if let Some(old) = old {
                    std::fs::remove_dir_all(self.dir.join(old)).unwrap();
                }
            }
        }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sets `weight` on the server named `name` in YAML built by [`ProxyYaml`].
fn with_weight(yaml: &str, name: &str, weight: u32) -> String {
    let needle = format!("name: {name}, ");
    yaml.lines()
        .map(|line| {
            if line.contains(&needle) {
                line.replace(" }", &format!(", weight: {weight} }}"))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The knobs the tests turn.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Knobs {
    size: u64,
    checkout_secs: u64,
    weights: (u32, u32),
    /// Whether the config carries a routing rule.
    rule: bool,
}

/// The rule some rewrites add: reads of `pgbench_branches` go to the primary.
const BENCH_RULE: &str =
    "[{ name: bench_rule, match: { tables: [pgbench_branches] }, target: primary }]";

impl Knobs {
    /// The YAML of a proxy in front of `env`'s primary and (up to two) replicas.
    fn yaml(&self, env: &ClusterEnv) -> String {
        let mut yaml = ProxyYaml::for_primary(env)
            .with_replicas(env)
            .pool("size", &self.size.to_string())
            .pool("checkout_timeout", &format!("{}s", self.checkout_secs));
        if self.rule {
            yaml = yaml.set("rules", BENCH_RULE);
        }
        let text = yaml.build();
        let text = with_weight(&text, "replica1", self.weights.0);
        with_weight(&text, "replica2", self.weights.1)
    }

    /// Whether `/status` shows these values.
    fn shown_in(&self, doc: &Value, with_replicas: usize) -> bool {
        let pool = &doc["config"]["pool"];
        let weight = |name: &str| {
            doc["config"]["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name))
                .and_then(|s| s["weight"].as_u64())
        };
        let rules = doc["config"]["rules"].as_array().map_or(0, Vec::len);
        pool["size"].as_u64() == Some(self.size)
            && rules == usize::from(self.rule)
            && pool["checkout_timeout_ms"].as_u64() == Some(self.checkout_secs * 1000)
            && (with_replicas < 1 || weight("replica1") == Some(u64::from(self.weights.0)))
            && (with_replicas < 2 || weight("replica2") == Some(u64::from(self.weights.1)))
    }
}

/// Servers that refuse every connection (nothing listens on ports 1-3); for tests that never
/// send a query.
fn unreachable_env() -> ClusterEnv {
    ClusterEnv::from_vars("127.0.0.1:1", Some("127.0.0.1:2,127.0.0.1:3"), None)
}

// ---------------------------------------------------------------------------------------------
// The admin endpoint.

async fn status(admin: SocketAddr) -> Value {
    let (code, body) = http_get(admin, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// Polls `/status` until `ok` holds, failing when that takes longer than [`VISIBLE_WITHIN`]
/// from `since` (when the file was written). Returns the document and how long it took.
async fn visible_within(
    admin: SocketAddr,
    since: Instant,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    loop {
        let doc = status(admin).await;
        let took = since.elapsed();
        if ok(&doc) {
            return (doc, took);
        }
        assert!(
            took <= VISIBLE_WITHIN,
            "{what}: not in /status within {VISIBLE_WITHIN:?} (after {took:?}): {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of the samples of metric lines starting with `prefix` (name and label text).
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn reloads(admin: SocketAddr, result: &str) -> u64 {
    let (_, text) = http_get(admin, "/metrics").await;
    metric(
        &text,
        &format!("pgsplit_config_reloads_total{{result=\"{result}\"}}"),
    )
}

/// Runs `promtool check metrics` on `text`. `None` when promtool is missing (a failure when
/// the cluster is required, as in CI); otherwise fails the test on any problem promtool
/// reports, lint warnings included.
async fn promtool_check(text: &str) -> Option<()> {
    let promtool = pgsplit_testkit::tools::promtool();
    let Some(promtool) = promtool else {
        assert!(
            !cluster_required(),
            "promtool not found: install Debian's `prometheus` package (`cargo xtask install` does)"
        );
        eprintln!("skipping the promtool check: promtool not found");
        return None;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = bounded(
        Duration::from_secs(30),
        "promtool",
        child.wait_with_output(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems\n{}\n--- metrics\n{text}",
        describe(&out)
    );
    Some(())
}

/// Stops a proxy started by a test here.
async fn stop(handle: pgsplit::ProxyHandle) {
    handle.shutdown();
    bounded(Duration::from_secs(15), "proxy shutdown", handle.wait())
        .await
        .unwrap_or_else(|e| panic!("proxy stopped with an error: {e:#}"));
}

async fn start_from(file: &ConfigFile) -> pgsplit::ProxyHandle {
    let config = pgsplit_config::load(&file.path()).unwrap_or_else(|e| panic!("{e}"));
    pgsplit::start(config).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Rewrites show in /status within a second (no PostgreSQL needed).

async fn rewrites_show_in_status(test: &str, layout: Layout) {
    bounded(Duration::from_secs(30), test, async {
        let env = unreachable_env();
        let mut knobs = Knobs {
            size: 3,
            checkout_secs: 5,
            weights: (1, 1),
            rule: false,
        };
        let mut file = ConfigFile::new(test, layout, &knobs.yaml(&env));
        let handle = start_from(&file).await;
        let admin = handle.admin_addr();
        let doc = status(admin).await;
        assert_eq!(doc["generation"], 1, "{doc:#}");
        assert!(knobs.shown_in(&doc, 2), "{doc:#}");
        assert_eq!(doc["reload"]["last_result"], Value::Null, "{doc:#}");

        let changes: [&dyn Fn(&mut Knobs); 4] = [
            &|k| k.size = 5,
            &|k| k.weights = (4, 2),
            &|k| k.checkout_secs = 7,
            &|k| {
                k.size = 2;
                k.weights = (1, 9);
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            change(&mut knobs);
            let generation = i as u64 + 2;
            let written = Instant::now();
            file.publish(&knobs.yaml(&env));
            let (doc, took) = visible_within(admin, written, "the rewritten config", |d| {
                d["reload"]["generation"] == generation && knobs.shown_in(d, 2)
            })
            .await;
            eprintln!("{layout:?} change {}: visible after {took:?}", i + 1);
            assert_eq!(doc["generation"], generation, "{doc:#}");
            assert_eq!(doc["reload"]["last_result"], "ok", "{doc:#}");
            assert_eq!(doc["reload"]["last_error"], Value::Null, "{doc:#}");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let at = doc["reload"]["at"].as_u64().expect("reload.at");
            assert!(at <= now && now - at < 60, "reload.at {at}, now {now}");
        }
        // Each change was reloaded once; nothing failed.
        assert_eq!(reloads(admin, "ok").await, changes.len() as u64);
        assert_eq!(reloads(admin, "failed").await, 0);
        let (_, text) = http_get(admin, "/metrics").await;
        assert!(
            text.contains(&format!("pgsplit_config_generation {}", changes.len() + 1)),
            "{text}"
        );
        // Touching the file, or rewriting the same bytes, does not reload.
        file.publish(&knobs.yaml(&env));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(status(admin).await["generation"], changes.len() as u64 + 1);
        promtool_check(&text).await;
        stop(handle).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_renames_show_in_status_within_a_second() {
    rewrites_show_in_status("rename", Layout::Rename).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swaps_show_in_status_within_a_second() {
    rewrites_show_in_status("configmap", Layout::ConfigMap).await;
}

// ---------------------------------------------------------------------------------------------
// 2. An invalid file keeps the old config; /status and the failure counter say why.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_old_config_and_status_says_why() {
    bounded(Duration::from_secs(30), "invalid reload", async {
        let env = unreachable_env();
        let good = Knobs {
            size: 3,
            checkout_secs: 5,
            weights: (1, 1),
            rule: false,
        };
        let mut file = ConfigFile::new("invalid", Layout::ConfigMap, &good.yaml(&env));
        let handle = start_from(&file).await;
        let admin = handle.admin_addr();
        let shown = file.path().display().to_string();

        // A value the validator refuses: the error names the file, the line and the key.
        let text = good.yaml(&env).replace("size: 3", "size: 0");
        let line = text
            .lines()
            .position(|l| l.starts_with("pool:"))
            .expect("a pool line")
            + 1;
        let written = Instant::now();
        file.publish(&text);
        let (doc, _) = visible_within(admin, written, "the refused reload", |d| {
            d["reload"]["last_result"] == "failed"
        })
        .await;
        let error = doc["reload"]["last_error"].as_str().expect("last_error");
        assert!(
            error.contains(&format!("{shown}:{line}:")) && error.contains("pool.size"),
            "last_error {error:?} should name {shown}, line {line} and pool.size"
        );
        assert_eq!(doc["generation"], 1, "{doc:#}");
        assert!(good.shown_in(&doc, 2), "the old config stays: {doc:#}");
        assert_eq!(reloads(admin, "failed").await, 1);
        assert_eq!(reloads(admin, "ok").await, 0);

        // Broken YAML: still refused, with the file and a line.
        let written = Instant::now();
        file.publish("listen: 127.0.0.1:0\nservers:\n  - name: [unclosed\n");
        let (doc, _) = visible_within(admin, written, "the second refused reload", |d| {
            d["reload"]["last_error"]
                .as_str()
                .is_some_and(|e| !e.contains("pool.size"))
        })
        .await;
        let error = doc["reload"]["last_error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("{shown}:"))
                && error[shown.len() + 1..].starts_with(|c: char| c.is_ascii_digit()),
            "last_error {error:?} should start with {shown}:LINE"
        );
        assert_eq!(doc["generation"], 1, "{doc:#}");
        assert_eq!(reloads(admin, "failed").await, 2);

        // SIGHUP (and RELOAD) of the same broken file: refused again, counted again.
        let err = handle.reload().await.unwrap_err();
        assert!(err.contains(&shown), "{err}");
        assert_eq!(reloads(admin, "failed").await, 3);

        // Fixed: applied as generation 2.
        let fixed = Knobs { size: 4, ..good };
        let written = Instant::now();
        file.publish(&fixed.yaml(&env));
        let (doc, _) = visible_within(admin, written, "the fixed config", |d| {
            d["reload"]["generation"] == 2 && fixed.shown_in(d, 2)
        })
        .await;
        assert_eq!(doc["reload"]["last_result"], "ok", "{doc:#}");
        assert_eq!(doc["reload"]["last_error"], Value::Null, "{doc:#}");
        assert_eq!(reloads(admin, "ok").await, 1);
        // A reload of an unchanged file (SIGHUP) is a reload too.
        assert_eq!(handle.reload().await, Ok(3));
        assert_eq!(status(admin).await["reload"]["generation"], 3);
        stop(handle).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Ten rewrites under pgbench -S -c 16.

/// Seconds of the load run: `PGSPLIT_E2E_PGBENCH_SECS` (default 30), at least 10.
fn pgbench_secs() -> u64 {
    let secs = match std::env::var("PGSPLIT_E2E_PGBENCH_SECS") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            panic!("PGSPLIT_E2E_PGBENCH_SECS={v:?} is not a number of seconds")
        }),
        _ => 30,
    };
    secs.max(10)
}

/// pgsplit's server connections to `db` on `node`, by backend PID: client backends of `app`,
/// other than this test's own direct connections (`application_name` `pgsplit-testkit`).
async fn pool_pids(env: &ClusterEnv, node: &Node, db: &str) -> BTreeSet<i32> {
    let admin = connect_direct(node, &env.superuser, &env.superuser_password, "postgres").await;
    let rows = admin
        .query(
            "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND usename = $2 \
             AND backend_type = 'client backend' AND application_name <> 'pgsplit-testkit'",
            &[&db, &APP_USER],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Waits until every replica has replayed the primary's WAL up to now.
async fn replicas_caught_up(env: &ClusterEnv, db: &str) {
    let primary = env.app_client(db).await;
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    for node in &env.replicas {
        let replica = connect_direct(node, APP_USER, APP_PASSWORD, db).await;
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !replica
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            assert!(
                Instant::now() < deadline,
                "{node} did not replay up to {lsn}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn pgbench_command(pgbench: &Path, addr: SocketAddr, db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", APP_USER])
        .args(args)
        .arg(db)
        .kill_on_drop(true);
    cmd
}

/// The `i`-th change (1-based) of the load test: weights, pool size and checkout timeout in
/// turn, so each kind changes at least three times in ten.
fn change(knobs: &mut Knobs, i: usize) {
    match i % 3 {
        1 => knobs.weights = [(3, 1), (1, 3), (2, 2), (1, 4)][(i / 3) % 4],
        // Never below the 16 clients, so a smaller pool never has to close connections.
        2 => knobs.size = [24, 18, 22, 20][(i / 3) % 4],
        _ => knobs.checkout_secs = [6, 7, 8, 5][(i / 3) % 4],
    }
    // Every fourth change also adds or removes a routing rule.
    if i.is_multiple_of(4) {
        knobs.rule = !knobs.rule;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_rewrites_under_pgbench_fail_nothing_and_keep_server_connections() {
    let Some(pgbench) = require_tool("pgbench") else {
        return;
    };
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    if env.replicas.len() < 2 {
        assert!(
            !cluster_required(),
            "this test needs two replicas (PGSPLIT_TEST_REPLICAS)"
        );
        eprintln!("skipping: needs two replicas");
        return;
    }
    let secs = pgbench_secs();
    crate::harness::init_tracing();
    bounded(Duration::from_secs(secs + 240), "reload under load", async {
        let db = env.fresh_database("reload_pgbench").await;
        for node in &env.replicas {
            drop(crate::cluster::connect_when_replayed(node, &db).await);
        }
        let mut knobs = Knobs {
            size: 20,
            checkout_secs: 5,
            weights: (1, 1),
            rule: false,
        };
        let mut file = ConfigFile::new("pgbench", Layout::ConfigMap, &knobs.yaml(&env));
        let handle = start_from(&file).await;
        let (client, admin) = (handle.client_addr(), handle.admin_addr());

        let init = pgbench_command(&pgbench, client, &db, &["-i", "-s", "1", "-q"]);
        let out = run(init, Duration::from_secs(120)).await;
        assert!(out.status.success(), "pgbench -i failed\n{}", describe(&out));
        replicas_caught_up(&env, &db).await;

        let secs_arg = secs.to_string();
        let bench = pgbench_command(
            &pgbench,
            client,
            &db,
            &["-S", "-c", "16", "-j", "2", "-T", &secs_arg],
        );
        let started = Instant::now();
        let bench = tokio::spawn(run(bench, Duration::from_secs(secs + 120)));

        // Let every pool fill, then note its server connections.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let nodes: Vec<Node> = std::iter::once(env.primary.clone())
            .chain(env.replicas.iter().cloned())
            .collect();
        let mut before = Vec::new();
        for node in &nodes {
            before.push(pool_pids(&env, node, &db).await);
        }
        assert!(
            before.iter().map(BTreeSet::len).sum::<usize>() > 0,
            "no pool connections under load: {before:?}"
        );

        // Ten rewrites spread over the first three quarters of the run.
        let every = Duration::from_millis(secs * 750 / 10);
        for i in 1..=10 {
            tokio::time::sleep_until(started + Duration::from_secs(2) + every * (i - 1)).await;
            change(&mut knobs, i as usize);
            let written = Instant::now();
            file.publish(&knobs.yaml(&env));
            let generation = u64::from(i) + 1;
            let (_, took) = visible_within(admin, written, &format!("change {i}"), |d| {
                d["reload"]["generation"] == generation && knobs.shown_in(d, 2)
            })
            .await;
            if i % 3 == 2 {
                // The new pool size reaches the busy pools at their next checkout.
                visible_within(admin, written, &format!("pool size of change {i}"), |d| {
                    d["pools"].as_array().is_some_and(|pools| {
                        pools
                            .iter()
                            .any(|p| p["database"] == db.as_str() && p["size"] == knobs.size)
                    })
                })
                .await;
            }
            eprintln!("change {i} ({knobs:?}) visible after {took:?}");
        }
        // An invalid file while the load goes on: refused, the old config stays.
        let written = Instant::now();
        file.publish(&knobs.yaml(&env).replace("servers:", "servers: oops"));
        let (doc, _) = visible_within(admin, written, "the refused reload", |d| {
            d["reload"]["last_result"] == "failed"
        })
        .await;
        assert_eq!(doc["generation"], 11, "{doc:#}");
        assert!(knobs.shown_in(&doc, 2), "{doc:#}");
        assert!(
            !bench.is_finished(),
            "pgbench ended before the rewrites did; raise PGSPLIT_E2E_PGBENCH_SECS"
        );

        let out = bench.await.unwrap();
        let stdout = assert_pgbench_clean(&out, "simple");
        let processed = crate::tools::pgbench_processed(&stdout);
        assert!(
            processed.is_some_and(|n| n > 0),
            "no transactions\n{}",
            describe(&out)
        );
        eprintln!("pgbench -S -c 16 -T {secs} with 10 reloads: {processed:?} transactions");

        for (node, before) in nodes.iter().zip(&before) {
            let after = pool_pids(&env, node, &db).await;
            eprintln!("{node}: {} pool connections before the reloads, {} after", before.len(), after.len());
            let lost: Vec<_> = before.difference(&after).collect();
            assert!(
                lost.is_empty(),
                "{node}: server connections {lost:?} closed across the reloads (before {before:?}, after {after:?})"
            );
        }
        assert_eq!(reloads(admin, "ok").await, 10);
        assert_eq!(reloads(admin, "failed").await, 1);
        stop(handle).await;
        env.drop_database(&db).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. /metrics after routed traffic: counters move, the scrape-time families (clients and
//    server connections by state, parse cache) and the query duration histogram follow, and
//    promtool accepts the text.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_routed_queries() {
    Case::new("reload_promtool")
        .replicas()
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            if px.env.replicas.is_empty() {
                assert!(!cluster_required(), "this test needs replicas");
                return;
            }
            let admin = px.admin_addr().expect("a proxy");
            let scrape = async || {
                let (code, text) = http_get(admin, "/metrics").await;
                assert_eq!(code, 200, "{text}");
                text
            };
            let replica_reads =
                |t: &str| metric(t, r#"pgsplit_queries_total{kind="read",role="replica""#);
            let primary_writes =
                |t: &str| metric(t, r#"pgsplit_queries_total{kind="write",role="primary""#);
            let timed = |t: &str, role: &str| {
                metric(
                    t,
                    &format!("pgsplit_query_duration_seconds_count{{role=\"{role}\"}}"),
                )
            };
            let cache = |t: &str, result: &str| {
                metric(
                    t,
                    &format!("pgsplit_parse_cache_total{{result=\"{result}\"}}"),
                )
            };
            let routed = |t: &str, target: &str| -> u64 {
                let label = format!("target=\"{target}\"");
                t.lines()
                    .filter(|l| {
                        l.starts_with("pgsplit_route_decisions_total{") && l.contains(&label)
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            let before = scrape().await;
            // Reads first: after a write, this session's reads may stay on the primary.
            let c = px.client().await;
            for _ in 0..5 {
                c.simple_query("SELECT 1").await.unwrap();
            }
            c.simple_query("CREATE TABLE m (a int)").await.unwrap();
            c.simple_query("INSERT INTO m VALUES (1)").await.unwrap();
            let after = scrape().await;
            assert!(
                replica_reads(&after) >= replica_reads(&before) + 5,
                "replica reads did not move\n{after}"
            );
            assert!(
                primary_writes(&after) >= primary_writes(&before) + 2,
                "primary writes did not move\n{after}"
            );
            assert!(
                routed(&after, "replica") >= routed(&before, "replica") + 5,
                "{after}"
            );
            assert!(
                routed(&after, "primary") >= routed(&before, "primary") + 2,
                "{after}"
            );
            // Every routed unit was timed under its server's role.
            assert!(
                timed(&after, "replica") >= timed(&before, "replica") + 5,
                "replica query durations did not move\n{after}"
            );
            assert!(
                timed(&after, "primary") >= timed(&before, "primary") + 2,
                "primary query durations did not move\n{after}"
            );
            // The same text five times: one miss at most, then hits.
            assert!(
                cache(&after, "hit") >= cache(&before, "hit") + 4,
                "parse cache hits did not move\n{after}"
            );
            assert!(
                cache(&after, "miss") >= cache(&before, "miss") + 2,
                "the two new statements were not misses\n{after}"
            );
            // Transaction pooling: once the session is done with the write (it still reads
            // the primary's WAL position after the client has its answer), the connections
            // wait in their pools and the client (connected, between queries) is idle.
            let settled = |t: &str| {
                let idle = |server: &str| {
                    metric(
                        t,
                        &format!(
                            "pgsplit_server_connections{{server=\"{server}\",state=\"idle\"}}"
                        ),
                    )
                };
                idle("primary") > 0
                    && idle("replica1") + idle("replica2") > 0
                    && metric(t, r#"pgsplit_clients{state="idle"}"#) >= 1
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut now = after.clone();
            while !settled(&now) {
                assert!(
                    Instant::now() < deadline,
                    "no idle server connections or idle client after 5s\n{now}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                now = scrape().await;
            }
            assert!(
                after.contains("pgsplit_config_reloads_total{result=\"failed\"} 0"),
                "{after}"
            );
            promtool_check(&after).await;
            drop(c);
        })
        .await;
}
