//! libpq tools through pgsplit: pgbench in all three query modes, and psql.
//!
//! They prove what tokio-postgres alone cannot: libpq's startup (with its SSLRequest under the
//! default `sslmode=prefer`), its protocol habits, and named prepared statements under load.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER, cluster_required};
use tokio::process::Command;

use crate::harness::{Case, Proxy, bounded};

/// Finds a PostgreSQL client program on PATH or under /usr/lib/postgresql/<major>/bin (newest first).
fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let major = e.file_name().to_str()?.parse().ok()?;
                let p = e.path().join("bin").join(name);
                p.is_file().then_some((major, p))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, p)| p)
    })
}

/// The tool, or `None` after a skip notice; a missing tool fails when the cluster is required.
pub(crate) fn require_tool(name: &str) -> Option<PathBuf> {
    let tool = find_tool(name);
    if tool.is_none() {
        assert!(
            !cluster_required(),
            "{name} not found on PATH or in /usr/lib/postgresql/*/bin"
        );
        eprintln!("skipping: {name} not found");
    }
    tool
}

/// A libpq tool invocation aimed at the test database through the proxy.
pub(crate) fn libpq_command(tool: &Path, px: &Proxy) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .args([
            "-h",
            &px.addr.host,
            "-p",
            &px.addr.port.to_string(),
            "-U",
            APP_USER,
        ])
        .kill_on_drop(true);
    cmd
}

/// psql on the test database through the proxy: no psqlrc, no command tags, unaligned tuples
/// only, stopping at the first error.
pub(crate) fn psql_quiet(psql: &Path, px: &Proxy) -> Command {
    let mut cmd = libpq_command(psql, px);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        &px.db,
    ]);
    cmd
}

/// Runs a command to completion within `limit`, returning its output.
pub(crate) async fn run(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    bounded(limit, &what, cmd.output())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Asserts that a pgbench run exited 0 and reported no failed transaction; returns its stdout.
#[track_caller]
pub(crate) fn assert_pgbench_clean(out: &Output, mode: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench -M {mode} failed\n{}",
        describe(out)
    );
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "pgbench -M {mode} reports failures\n{}",
        describe(out)
    );
    stdout
}

/// pgbench's "number of transactions actually processed".
pub(crate) fn pgbench_processed(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `pgbench -i -s 1`, then `pgbench -T 5 -c 8 -M <mode>`: exit 0 and no failed transaction.
async fn pgbench(name: &'static str, mode: &'static str) {
    let Some(pgbench) = require_tool("pgbench") else {
        return;
    };
    Case::new(name)
        .limit(Duration::from_secs(120))
        .run(async |px| {
            let mut init = libpq_command(&pgbench, px);
            init.args(["-i", "-s", "1", "-q", &px.db]);
            let out = run(init, Duration::from_secs(60)).await;
            assert!(
                out.status.success(),
                "pgbench -i failed\n{}",
                describe(&out)
            );

            let mut bench = libpq_command(&pgbench, px);
            bench.args(["-T", "5", "-c", "8", "-j", "2", "-M", mode, &px.db]);
            let out = run(bench, Duration::from_secs(60)).await;
            let stdout = assert_pgbench_clean(&out, mode);
            let processed = pgbench_processed(&stdout);
            assert!(
                processed.is_some_and(|n| n > 0),
                "no transactions processed\n{}",
                describe(&out)
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_simple() {
    pgbench("pgbench_simple", "simple").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_extended() {
    pgbench("pgbench_extended", "extended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_prepared() {
    pgbench("pgbench_prepared", "prepared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_smoke() {
    let Some(psql) = require_tool("psql") else {
        return;
    };
    Case::new("psql")
        .run(async |px| {
            // psql runs each -c as its own simple query; the last one checks the session's identity.
            let identity = format!(
                "SELECT current_user || '@' || current_database() = 'app@{}'",
                px.db
            );
            let mut cmd = psql_quiet(&psql, px);
            cmd.args([
                "-c",
                "CREATE TABLE p (v int4); INSERT INTO p VALUES (20), (22)",
                "-c",
                "SELECT sum(v) FROM p",
                "-c",
                &identity,
            ]);
            let out = run(cmd, Duration::from_secs(30)).await;
            assert!(out.status.success(), "psql failed\n{}", describe(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines, ["42", "t"], "{}", describe(&out));

            // An error: psql exits 1 and prints the server's message.
            let mut cmd = libpq_command(&psql, px);
            cmd.args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &px.db,
                "-c",
                "SELECT 1/0",
            ]);
            let out = run(cmd, Duration::from_secs(30)).await;
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("division by zero"),
                "{}",
                describe(&out)
            );
        })
        .await;
}
