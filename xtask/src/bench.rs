//! `cargo xtask bench`: pgbench against PostgreSQL directly, through pgsplit and through PgBouncer,
//! in interleaved rounds on a cluster of its own, with medians and ratios written to
//! docs/benchmarks.md.
//!
//! The bench cluster is not the development (15432) or test (25432) one: base port 26432, two
//! replicas, in `/tmp/pgsplit-cluster-26432`. pgsplit and PgBouncer listen on free ports of
//! 127.0.0.1 with configurations generated in `/tmp/pgsplit-bench-<pid>`. Every pgbench run is
//! bounded (`-T` plus a grace period, then killed), the proxies are stopped by PID and the cluster
//! is brought down at the end, also after an error.
//!
//! `cargo xtask bench --memory` is the other half: pgsplit's resident memory per idle client
//! connection (see `memory`). `cargo xtask bench --instructions` counts user-space instructions
//! per transaction of both proxies under callgrind (see `instructions`).
//!
//! Modules: `plan` (flags → what runs), `services` (the proxies), `pgbench` (one run and its
//! figures), `metrics` (pgsplit's /metrics), `report` (medians, targets, markdown), `machine`
//! (the description of the machine), `memory` (the idle-connection memory bench), `instructions`
//! (callgrind counts).

mod cpu;
mod instructions;
mod machine;
mod memory;
mod metrics;
mod micro;
mod pgbench;
mod plan;
mod report;
mod services;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cluster::{self, APP, Cluster};
use crate::flags::Flags;
use crate::pg::Pg;
use crate::{cmd, install};
use pgbench::{Endpoint, Run};
use plan::RW_APP_NAME;
use plan::{Kind, Plan, Target};
use report::Sample;
use services::MD5_USER;

const BENCH_BASE_PORT: u16 = 26432;
const BENCH_REPLICAS: u16 = 2;
/// `pgbench -i -s SCALE`: 1,000,000 rows in pgbench_accounts.
const SCALE: u32 = 10;
/// Length of the unmeasured run per target that fills the pools and the caches before round 1.
const WARM_UP_SECS: u32 = 3;
const DOC: &str = "docs/benchmarks.md";

pub(crate) fn main(args: Vec<String>) -> Result<()> {
    let command = std::iter::once("cargo xtask bench".to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut flags = Flags::new(args);
    if flags.switch("memory") {
        return memory::main(flags, command);
    }
    if flags.switch("instructions") {
        return instructions::main(flags, command);
    }
    let no_criterion = flags.switch("no-criterion");
    if flags.switch("criterion") {
        return criterion_only(flags);
    }
    let plan = Plan::from_flags(flags)?;
    println!(
        "==> bench: {} measured run(s) of {} s ({} round(s) × {} workload(s) × clients {:?} × 3 or 4 targets), \
         about {} min",
        plan.runs(),
        plan.secs,
        plan.rounds,
        plan.workloads.len(),
        plan.clients,
        (plan.runs() as u64 * (u64::from(plan.secs) + 2)).div_ceil(60) + 2
    );
    install::ensure()?;
    let pgbouncer = install::ensure_pgbouncer()?;
    let pg = Pg::detect()?;
    let bouncer_version = services::pgbouncer_version(&pg, &pgbouncer)?;
    let root = cmd::workspace_root();
    let mut machine = machine::describe(&pg.bindir().join("postgres"), &bouncer_version, &root);
    let load_start = machine::load_average();
    let date = machine::date();

    let pgsplit = build_pgsplit()?;
    let cluster = bench_cluster()?;
    let work = work_dir("bench")?;
    let tools = Tools {
        pg: &pg,
        cluster: &cluster,
        work: &work,
        pgsplit: &pgsplit,
        pgbouncer: &pgbouncer,
        bouncer_version: &bouncer_version,
    };
    let measured = cluster::up(&pg, &cluster).and_then(|()| measure(&tools, &plan));
    println!();
    let down = cluster::down(&pg, &cluster);
    let (samples, prepared_mode) = measured.with_context(|| {
        format!(
            "the benchmark stopped; its files are kept in {}",
            work.display()
        )
    })?;
    down?;
    let load_end = machine::load_average();
    machine.push(format!(
        "Load average (1, 5, 15 min, from /proc/loadavg): {load_start} when the bench started, \
         {load_end} when it ended. The machine is shared (other engineers' tests may run during the bench), \
         so the load varies between runs; the interleaved rounds spread it over the targets"
    ));

    let setup = report::Setup {
        plan: &plan,
        command,
        date,
        machine,
        targets: describe_targets(&cluster, &bouncer_version, &plan),
        prepared_mode,
        prepared_in_session: !services::keeps_prepared_in_transaction(&bouncer_version),
    };
    let section = report::render(&setup, &samples);
    let doc = root.join(DOC);
    report::write_doc(&doc, &section)?;
    println!("\n{section}\n==> wrote {}", doc.display());
    std::fs::remove_dir_all(&work).with_context(|| format!("rm -r {}", work.display()))?;
    if !plan.quick && !no_criterion {
        // After the cluster is down, so the servers do not compete with criterion.
        let section = micro::run(false, &machine::date(), &setup.machine)?;
        report::write_doc_between(&doc, micro::BEGIN, micro::END, &section)?;
        println!("\n{section}\n==> wrote {}", doc.display());
    }
    Ok(())
}

/// `cargo xtask bench --criterion [--quick]`: the criterion part alone.
fn criterion_only(mut flags: Flags) -> Result<()> {
    let quick = flags.switch("quick");
    let extra = flags.finish()?;
    if !extra.is_empty() {
        anyhow::bail!("unexpected arguments {extra:?}\n{}", plan::USAGE);
    }
    let root = cmd::workspace_root();
    let machine = machine::describe(Path::new("postgres"), "", &root);
    let section = micro::run(quick, &machine::date(), &machine)?;
    let doc = root.join(DOC);
    report::write_doc_between(&doc, micro::BEGIN, micro::END, &section)?;
    println!("\n{section}\n==> wrote {}", doc.display());
    Ok(())
}

/// What the measuring needs, found before the cluster comes up.
struct Tools<'a> {
    pg: &'a Pg,
    cluster: &'a Cluster,
    /// The work directory: configurations, logs, pgbench output.
    work: &'a Path,
    pgsplit: &'a Path,
    pgbouncer: &'a Path,
    bouncer_version: &'a str,
}

/// Loads the data, starts both proxies, warms up and runs every round; the proxies are stopped
/// before returning, also on error (by their guards). Returns the samples and how PgBouncer served
/// `-M prepared`.
fn measure(tools: &Tools<'_>, plan: &Plan) -> Result<(Vec<Sample>, String)> {
    let Tools {
        pg, cluster, work, ..
    } = *tools;
    println!(
        "\n==> pgbench -i -s {SCALE} into database {APP} on 127.0.0.1:{}",
        cluster.base_port
    );
    let mut init = pg.client("pgbench");
    init.args(["-i", "-q", "-s", &SCALE.to_string(), "-h", "127.0.0.1"]);
    init.args(["-p", &cluster.base_port.to_string(), "-U", APP, APP]);
    init.env("PGPASSWORD", APP);
    cmd::run(&mut init)?;
    let md5_secret = create_md5_role(pg, cluster)?;

    let workers = format!("workers: {}\n", plan.workers_yaml());
    let all_replicas = cluster.replica_nodes().len();
    let mut pgsplit = services::start_pgsplit(
        pg,
        tools.pgsplit,
        cluster,
        &work.join("pgsplit"),
        all_replicas,
        &workers,
        &[],
    )?;
    // The same pgsplit with only the first replica, for the workloads that compare it.
    let mut pgsplit_one = if plan.needs_one_replica() && all_replicas > 1 {
        Some(services::start_pgsplit(
            pg,
            tools.pgsplit,
            cluster,
            &work.join("pgsplit-one-replica"),
            1,
            &workers,
            &[],
        )?)
    } else {
        None
    };
    let session_pool = plan.max_clients().max(services::POOL_SIZE);
    let secret = cluster.primary().query(
        pg,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{APP}'"),
    )?;
    if !secret.starts_with("SCRAM-SHA-256$") {
        anyhow::bail!("role {APP} has no SCRAM verifier in pg_authid (found {secret:?})");
    }
    let mut bouncer = services::start_pgbouncer(
        pg,
        tools.pgbouncer,
        tools.bouncer_version,
        cluster,
        &work.join("pgbouncer"),
        session_pool,
        services::Secrets {
            app: &secret,
            md5: &md5_secret,
        },
        &[],
    )?;
    let (pgsplit_port, bouncer_port) = (pgsplit.port, bouncer.port);
    // Whose CPU each run reports: the target's proxy, and the cluster's servers.
    let postmasters: Vec<u32> = std::iter::once(cluster.primary())
        .chain(cluster.replica_nodes())
        .filter_map(|node| cpu::postmaster_pid(&node.data_dir()))
        .collect();
    let one = pgsplit_one
        .as_ref()
        .map(|p| (p.port, p.admin_port, p.service.pid()));
    // The one-replica target runs only when its pgsplit was started.
    let running = |target: Target| target != Target::PgsplitOneReplica || one.is_some();
    let proxy_pids = [pgsplit.service.pid(), bouncer.service.pid()];
    let watch = |target: Target| pgbench::Watch {
        proxy: match target {
            Target::Direct => None,
            Target::Pgsplit => proxy_pids[0],
            Target::PgsplitOneReplica => one.and_then(|(_, _, pid)| pid),
            Target::Pgbouncer => proxy_pids[1],
        },
        postmasters: &postmasters,
    };
    let admin_port = |target: Target| match target {
        Target::Pgsplit => Some(pgsplit.admin_port),
        Target::PgsplitOneReplica => one.map(|(_, admin, _)| admin),
        Target::Direct | Target::Pgbouncer => None,
    };
    let bouncer_prepared = bouncer.prepared_database;
    let endpoint = |target: Target, kind: Kind| -> Endpoint {
        let (port, database) = match target {
            Target::Direct => (cluster.base_port, APP),
            Target::Pgsplit => (pgsplit_port, APP),
            // Only planned when that pgsplit runs (`needs_one_replica`).
            Target::PgsplitOneReplica => (one.map_or(pgsplit_port, |(port, _, _)| port), APP),
            Target::Pgbouncer if kind == Kind::SelectPrepared => (bouncer_port, bouncer_prepared),
            Target::Pgbouncer => (bouncer_port, APP),
        };
        let user = if kind == Kind::ConnectMd5 {
            MD5_USER
        } else {
            APP
        };
        Endpoint {
            port,
            database,
            user,
        }
    };

    let runs_dir = work.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    // pgbench runs in runs_dir, so the rw-90-10 arguments name the scripts relative to it.
    for (name, text) in plan::rw_scripts(SCALE) {
        let path = runs_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    println!(
        "\n==> warm-up: {WARM_UP_SECS} s per target at {} clients (not measured)",
        plan.max_clients()
    );
    let planned = |kind: Kind| plan.workloads.iter().any(|w| w.kind == kind);
    for target in Target::ALL.into_iter().filter(|&t| running(t)) {
        let mut kinds = vec![Kind::SelectSimple];
        // The proxies pool per user: bench_md5's pools are filled by a run of their own.
        for kind in [Kind::SelectPrepared, Kind::ConnectMd5] {
            if planned(kind) {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let args: &[&str] = if kind == Kind::SelectPrepared {
                &["-S", "-M", "prepared"]
            } else {
                &["-S"]
            };
            let warm = Run {
                endpoint: endpoint(target, kind),
                args,
                clients: plan.max_clients(),
                secs: WARM_UP_SECS,
                log: false,
                app_name: None,
                watch: watch(target),
            };
            let figures =
                warm.execute(pg, &runs_dir, &format!("warm-{}-{kind:?}", target.label()))?;
            if let Some(e) = figures.error {
                println!("  warning: warm-up through {} failed: {e}", target.label());
            }
        }
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut n = 0;
    for round in 1..=plan.rounds {
        for workload in &plan.workloads {
            for &clients in &plan.clients {
                for target in Target::for_kind(workload.kind).filter(|&t| running(t)) {
                    n += 1;
                    if workload.kind == Kind::TpcB {
                        cluster.primary().script(
                            pg,
                            "\\c app\nVACUUM pgbench_branches, pgbench_tellers;\nTRUNCATE pgbench_history;\n",
                        )?;
                    }
                    println!(
                        "\n==> run {n}/{} (round {round}/{}): {}, {clients} clients, {}",
                        plan.runs(),
                        plan.rounds,
                        workload.title,
                        target.label()
                    );
                    let run = Run {
                        endpoint: endpoint(target, workload.kind),
                        args: workload.args,
                        clients,
                        secs: plan.secs,
                        log: true,
                        app_name: workload.app_name,
                        watch: watch(target),
                    };
                    // Where pgsplit sent the reads, from its counters around the run.
                    let admin = admin_port(target);
                    let reads_before = admin.and_then(scrape_reads);
                    let figures = run.execute(pg, &runs_dir, &format!("run{n}"))?;
                    let reads = reads_before
                        .zip(admin.and_then(scrape_reads))
                        .map(|(before, after)| before.delta(after));
                    print_figures(&figures, started, n, plan.runs());
                    if let Some(r) = reads {
                        println!(
                            "  pgsplit reads: {} on replicas, {} on the primary",
                            r.replica, r.primary
                        );
                    }
                    samples.push(Sample {
                        kind: workload.kind,
                        clients,
                        target,
                        figures,
                        reads,
                    });
                    for (name, service) in [
                        ("pgsplit", Some(&mut pgsplit.service)),
                        (
                            "pgsplit (one replica)",
                            pgsplit_one.as_mut().map(|p| &mut p.service),
                        ),
                        ("pgbouncer", Some(&mut bouncer.service)),
                    ] {
                        if service.is_some_and(|s| s.exited()) {
                            anyhow::bail!(
                                "{name} exited during the benchmark; see its log in {}",
                                work.display()
                            );
                        }
                    }
                }
            }
        }
    }
    pgsplit.service.stop()?;
    if let Some(mut one) = pgsplit_one {
        one.service.stop()?;
    }
    bouncer.service.stop()?;
    Ok((samples, bouncer.prepared_mode))
}

/// pgsplit's read counters by server role, or `None` (with a warning) when /metrics fails.
fn scrape_reads(admin_port: u16) -> Option<metrics::Reads> {
    match metrics::scrape(admin_port) {
        Ok(text) => Some(metrics::Reads::parse(&text)),
        Err(e) => {
            println!("  warning: could not read pgsplit's /metrics: {e:#}");
            None
        }
    }
}

fn print_figures(f: &pgbench::Figures, started: Instant, done: usize, total: usize) {
    let show = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
    };
    let left = started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64;
    let per_txn = |ms: Option<f64>| report::us_per_txn(ms, f.processed);
    println!(
        "  tps {}, mean {} ms, p99 {} ms, CPU µs/txn proxy {} servers {}, {} transactions, {} failed{}; about {:.0} min left",
        show(f.tps, 1),
        show(f.latency_ms, 3),
        show(f.p99_ms, 3),
        show(per_txn(f.proxy_cpu_ms), 1),
        show(per_txn(f.servers_cpu_ms), 1),
        f.processed,
        f.failed,
        f.error
            .as_ref()
            .map_or_else(String::new, |e| format!(", RUN FAILED: {e}")),
        left / 60.0
    );
}

/// Builds the release pgsplit and returns its path.
fn build_pgsplit() -> Result<PathBuf> {
    println!("\n==> building pgsplit (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "pgsplit"]))?;
    Ok(cmd::target_dir()?.join("release").join("pgsplit"))
}

/// The bench cluster (primary on [`BENCH_BASE_PORT`], [`BENCH_REPLICAS`] replicas).
fn bench_cluster() -> Result<Cluster> {
    Cluster::new(
        PathBuf::from(format!("/tmp/pgsplit-cluster-{BENCH_BASE_PORT}")),
        BENCH_BASE_PORT,
        BENCH_REPLICAS,
    )
}

/// A fresh directory `/tmp/pgsplit-<name>-<pid>` for one bench's files.
fn work_dir(name: &str) -> Result<PathBuf> {
    let work = PathBuf::from(format!("/tmp/pgsplit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
    Ok(work)
}

/// Creates (or updates) the role of the md5 workload on the primary, over its unix socket as the
/// superuser: LOGIN, password = name stored as an md5 hash, member of `app` (so it may read the
/// pgbench tables `app` owns) and allowed to connect to database `app`. The replicas get it by
/// streaming replication. Returns the md5 hash from `pg_authid`, for PgBouncer's userlist.
fn create_md5_role(pg: &Pg, cluster: &Cluster) -> Result<String> {
    println!("\n==> role {MD5_USER} with an md5 password (for the md5 `-C` workload)");
    cluster.primary().script(
        pg,
        &format!(
            "SET password_encryption = 'md5';\n\
             SELECT 'CREATE ROLE {MD5_USER}' WHERE NOT EXISTS \
             (SELECT FROM pg_roles WHERE rolname = '{MD5_USER}') \\gexec\n\
             ALTER ROLE {MD5_USER} LOGIN PASSWORD '{MD5_USER}';\n\
             GRANT {APP} TO {MD5_USER};\n\
             GRANT CONNECT ON DATABASE {APP} TO {MD5_USER};\n"
        ),
    )?;
    let secret = cluster.primary().query(
        pg,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{MD5_USER}'"),
    )?;
    let is_md5 = secret.len() == 35
        && secret.starts_with("md5")
        && secret[3..].bytes().all(|b| b.is_ascii_hexdigit());
    if !is_md5 {
        anyhow::bail!("role {MD5_USER} has no md5 password in pg_authid (found {secret:?})");
    }
    Ok(secret)
}

/// Bullet lines describing direct, pgsplit and PgBouncer as configured.
fn describe_targets(cluster: &Cluster, bouncer_version: &str, plan: &Plan) -> Vec<String> {
    let replicas: Vec<String> = cluster
        .replica_nodes()
        .iter()
        .map(|r| r.port.to_string())
        .collect();
    let pool = services::POOL_SIZE;
    let workers = match plan.pgsplit_workers {
        Some(1) => "`workers: 1` (one single-threaded event loop, as PgBouncer runs one thread; \
                    `--pgsplit-workers` changes it)"
            .to_owned(),
        Some(n) => format!("`workers: {n}` ({n} event loops, from `--pgsplit-workers`)"),
        None => {
            let loops = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            format!(
                "`workers: auto` (one single-threaded event loop per core: {loops} here, from `--pgsplit-workers auto`)"
            )
        }
    };
    let mut lines = vec![
        format!(
            "cluster: PostgreSQL primary on 127.0.0.1:{} and {} streaming replica(s) on {} (`cargo xtask cluster` settings: \
             fsync off, synchronous_commit off, max_connections 300), SCRAM-SHA-256 for TCP logins except role \
             `{MD5_USER}` (md5, password stored as an md5 hash, member of `{APP}`; only the md5 `-C` workload uses it)",
            cluster.base_port,
            replicas.len(),
            replicas.join(", ")
        ),
        "direct: pgbench connects to the primary, one server process per client connection"
            .to_owned(),
        format!(
            "pgsplit: release build, {workers}, transaction pooling, pool size {pool} per server, the primary plus the replicas \
             as role `replica` (read/write routing on, so select-only reads may go to replicas; default routing \
             settings, `consistency: session`, plus one rule: reads of application_name `{RW_APP_NAME}` (the rw-90-10 \
             workload) get `consistency: eventual`), user app/app with \
             SCRAM-SHA-256 and user {MD5_USER}/{MD5_USER} with md5 (its plain password also as server_password, \
             so pgsplit logs in to the servers with md5), one pool per (server, user, database), log level warn"
        ),
        format!(
            "PgBouncer: {bouncer_version}, pool_mode=transaction, default_pool_size={pool}, the primary only \
             (PgBouncer does not split reads), auth_type=md5 with app's SCRAM verifier from pg_authid in \
             its userlist (so app logs in with SCRAM: no key derivation per login; SCRAM pass-through to the server) \
             and {MD5_USER}'s md5 hash from pg_authid (md5 from the client and to the server), connection logging off"
        ),
    ];
    if plan.needs_one_replica() && replicas.len() > 1 {
        lines.insert(
            3,
            format!(
                "pgsplit, one replica: a second pgsplit, the same build and configuration but with the primary and only \
                 the first replica (127.0.0.1:{}), so that every read goes to one server, as through PgBouncer. \
                 It runs the select-only workloads and md5 `-C`: on this machine the three servers share the cores, \
                 and reads spread over two replicas cost the servers more CPU per read than the same reads on one \
                 (see \"Two replicas on two cores\" in the hand-written part); its rows separate the proxy's cost from that one",
                replicas[0]
            ),
        );
    }
    lines
}
