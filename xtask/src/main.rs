//! `cargo xtask`: pgsplit's developer tasks (cluster, install, test, demo, bench; tidy runs as a test).
//!
//! It depends only on anyhow, serde_json and md-5 (the md5 logins of `bench --memory`): external
//! tools run through `std::process::Command` and are printed first, so any failing step can be
//! repeated by hand.
#![allow(clippy::disallowed_types, clippy::print_stdout)]

mod bench;
mod cluster;
mod cmd;
mod demo;
mod flags;
mod install;
mod node;
mod pg;
mod test;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

  cluster up [--replicas N] [--base-port P]
                      primary on 127.0.0.1:P (default 15432) and N (default 2) streaming replicas
                      on P+1.., data in /tmp/pgsplit-cluster-P (or $PGSPLIT_CLUSTER_DIR);
                      the base port may also come from $PGSPLIT_CLUSTER_BASE_PORT
  cluster down | status | reset
  cluster pause-replay PORT | resume-replay PORT | stop PORT | start PORT | promote PORT
  cluster psql [PORT] [-- PSQL ARGS]
                      psql as app/app (default: the primary)
  install             apt-get PostgreSQL, libclang and promtool when missing (root)
  test [--no-lint] [--base-port P] [--replicas N] [-- CARGO TEST ARGS]
                      what CI runs: install, reset the test cluster (25432), fmt, clippy, cargo test
  demo                cluster up + pgsplit with examples/local.yaml in the foreground
  tidy                the architecture checks alone (cargo test -p xtask tidy)
  bench [--workloads LIST] [--rounds N] [--secs S] [--clients LIST] [--quick] [--no-criterion]
                      pgbench direct vs pgsplit vs PgBouncer on a bench cluster (26432), interleaved
                      rounds, medians written to docs/benchmarks.md, then (unless --quick or
                      --no-criterion) the criterion microbenchmarks
  bench --criterion [--quick]
                      the criterion microbenchmarks alone, to their section of docs/benchmarks.md
  bench --memory [--idle-clients N]
                      pgsplit's RSS per idle client connection (default 10000 clients), written
                      to its own section of docs/benchmarks.md
  bench --instructions
                      user-space instructions per pgbench -S transaction of pgsplit and PgBouncer
                      under callgrind (installs valgrind), with pgsplit's costliest functions,
                      written to its own section of docs/benchmarks.md";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches a command; `Ok(false)` is a failure that has already been reported.
fn run(mut args: Vec<String>) -> anyhow::Result<bool> {
    let command = if args.is_empty() {
        String::from("help")
    } else {
        args.remove(0)
    };
    match command.as_str() {
        "cluster" => cluster::main(args)?,
        "install" => {
            if !flags::Flags::new(args).finish()?.is_empty() {
                anyhow::bail!("`cargo xtask install` takes no arguments");
            }
            install::ensure()?
        }
        "test" => return test::main(args),
        "demo" => demo::main(args)?,
        "tidy" => cmd::run(cmd::cargo().args(["test", "-p", "xtask", "--", "tidy"]))?,
        "bench" => bench::main(args)?,
        "help" | "--help" | "-h" => println!("{HELP}"),
        other => anyhow::bail!("unknown command `{other}`\n\n{HELP}"),
    }
    Ok(true)
}
