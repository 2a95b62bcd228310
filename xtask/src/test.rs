//! `cargo xtask test`: what CI runs. Install what is missing, reset a separate test cluster, run
//! fmt, clippy and the workspace tests against it, stop the cluster, and summarise.
//!
//! The test cluster is not the development one: base port 25432 (`--base-port` or
//! `$PGSPLIT_TEST_BASE_PORT`), 2 replicas (`--replicas` or `$PGSPLIT_TEST_REPLICA_COUNT`), in
//! `/tmp/pgsplit-cluster-<base port>` (or `$PGSPLIT_TEST_CLUSTER_DIR`), reset at every run.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;

use crate::cluster::{self, APP, Cluster};
use crate::flags::Flags;
use crate::node::SUPERUSER;
use crate::pg::Pg;
use crate::{cmd, install};

const DEFAULT_TEST_BASE_PORT: u16 = 25432;
const DEFAULT_TEST_REPLICAS: u16 = 2;

/// One step of the run and how it went.
struct Step {
    name: &'static str,
    outcome: Outcome,
    seconds: f64,
}

enum Outcome {
    Passed,
    Failed(String),
    Skipped(&'static str),
}

#[derive(Default)]
struct Report {
    steps: Vec<Step>,
}

impl Report {
    /// Runs `work` as step `name`, printing a banner; returns whether it passed.
    fn step(&mut self, name: &'static str, work: impl FnOnce() -> Result<()>) -> bool {
        println!("\n==> [{name}]");
        let start = Instant::now();
        let outcome = match work() {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                eprintln!("error in step `{name}`: {e:#}");
                Outcome::Failed(
                    format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
        };
        let passed = matches!(outcome, Outcome::Passed);
        self.steps.push(Step {
            name,
            outcome,
            seconds: start.elapsed().as_secs_f64(),
        });
        passed
    }

    fn skip(&mut self, name: &'static str, why: &'static str) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Skipped(why),
            seconds: 0.0,
        });
    }

    /// Prints the summary; true when no step failed.
    fn finish(&self) -> bool {
        println!("\n==> summary");
        for step in &self.steps {
            match &step.outcome {
                Outcome::Passed => println!("  ok      {:<14} {:>7.1}s", step.name, step.seconds),
                Outcome::Failed(why) => {
                    println!("  FAILED  {:<14} {:>7.1}s  {why}", step.name, step.seconds)
                }
                Outcome::Skipped(why) => println!("  skipped {:<14}           {why}", step.name),
            }
        }
        let failed: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
            .map(|s| s.name)
            .collect();
        if failed.is_empty() {
            println!("all steps passed");
        } else {
            println!("failed: {}", failed.join(", "));
        }
        failed.is_empty()
    }
}

/// Entry point of `cargo xtask test [--no-lint] [--base-port P] [--replicas N] [-- CARGO TEST ARGS]`;
/// returns whether everything passed.
pub(crate) fn main(args: Vec<String>) -> Result<bool> {
    let mut flags = Flags::new(args);
    let no_lint = flags.switch("no-lint");
    let base_port = match flags.value("base-port")? {
        Some(port) => port,
        None => env_number("PGSPLIT_TEST_BASE_PORT")?.unwrap_or(DEFAULT_TEST_BASE_PORT),
    };
    let replicas = match flags.value("replicas")? {
        Some(n) => n,
        None => env_number("PGSPLIT_TEST_REPLICA_COUNT")?.unwrap_or(DEFAULT_TEST_REPLICAS),
    };
    let test_args = flags.rest();
    let extra = flags.finish()?;
    if !extra.is_empty() {
        anyhow::bail!("unexpected arguments {extra:?}; a test filter goes after `--`");
    }
    let dir = std::env::var_os("PGSPLIT_TEST_CLUSTER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/pgsplit-cluster-{base_port}")));
    let cluster = Cluster::new(dir, base_port, replicas)?;

    let mut report = Report::default();
    if !report.step("install", install::ensure) {
        return Ok(report.finish());
    }
    let mut pg = None;
    let cluster_up = report.step("cluster reset", || {
        let found = pg.insert(Pg::detect()?);
        cluster::reset(found, &cluster)
    });
    if no_lint {
        report.skip("fmt", "--no-lint");
        report.skip("clippy", "--no-lint");
    } else {
        report.step("fmt", || {
            cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
        });
        report.step("clippy", || {
            cmd::run(cmd::cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
    }
    if cluster_up {
        report.step("cargo test", || {
            let mut test = cmd::cargo();
            test.args(["test", "--workspace"]).args(&test_args);
            for (key, value) in test_env(&cluster)? {
                test.env(key, value);
            }
            cmd::run(&mut test)
        });
    } else {
        report.skip("cargo test", "no cluster");
    }
    if let Some(pg) = &pg {
        report.step("cluster down", || cluster::down(pg, &cluster));
    }
    Ok(report.finish())
}

/// The environment the tests read (see `crates/testkit/src/cluster.rs`).
fn test_env(cluster: &Cluster) -> Result<Vec<(&'static str, String)>> {
    let xtask = std::env::current_exe().context("cannot locate the xtask binary")?;
    let env = vec![
        (
            "PGSPLIT_TEST_PRIMARY",
            format!("127.0.0.1:{}", cluster.base_port),
        ),
        ("PGSPLIT_TEST_REPLICAS", cluster.replica_addrs().join(",")),
        ("PGSPLIT_TEST_SUPERUSER", format!("{SUPERUSER}:{SUPERUSER}")),
        ("PGSPLIT_TEST_USER", format!("{APP}:{APP}")),
        ("PGSPLIT_TEST_DATABASE", APP.to_owned()),
        (
            "PGSPLIT_TEST_CLUSTER_DIR",
            cluster.dir.display().to_string(),
        ),
        ("PGSPLIT_REQUIRE_CLUSTER", "1".to_owned()),
        // So that a test can run `$PGSPLIT_TEST_XTASK cluster stop PORT` (or start, promote,
        // pause-replay, ...) and reach this cluster, not the development one.
        ("PGSPLIT_TEST_XTASK", xtask.display().to_string()),
        ("PGSPLIT_CLUSTER_DIR", cluster.dir.display().to_string()),
        ("PGSPLIT_CLUSTER_BASE_PORT", cluster.base_port.to_string()),
    ];
    for (key, value) in &env {
        println!("  {key}={value}");
    }
    Ok(env)
}

fn env_number(name: &str) -> Result<Option<u16>> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => {
            Ok(Some(text.trim().parse().with_context(|| {
                format!("{name}={text:?} is not a number")
            })?))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Report};

    #[test]
    fn report_fails_when_a_step_fails() {
        let mut report = Report::default();
        assert!(report.step("ok", || Ok(())));
        report.skip("skipped", "why");
        assert!(report.finish());
        assert!(!report.step("bad", || Err(anyhow::anyhow!("boom\nmore"))));
        assert!(matches!(&report.steps[2].outcome, Outcome::Failed(why) if why == "boom"));
        assert!(!report.finish());
    }
}
