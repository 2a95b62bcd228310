//! What one `cargo xtask bench` measures: the workloads, client counts, rounds and duration,
//! from the command line.

use anyhow::{Context, Result, bail};

use crate::flags::Flags;

/// Which of the benchmark's pgbench workloads a [`Workload`] is; the targets of issue 7 and the
/// PgBouncer pool used for `-M prepared` depend on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    SelectSimple,
    SelectExtended,
    SelectPrepared,
    /// Select-only with `-C` (a new connection per transaction), logging in as `app` with
    /// SCRAM-SHA-256 like every other workload.
    ConnectScram,
    /// Select-only with `-C`, logging in as `bench_md5` with md5 on every target: the client's
    /// login is cheap, so the figure shows what a new connection costs the server side.
    ConnectMd5,
    /// pgbench's default TPC-B-like read/write script.
    TpcB,
    /// Two custom scripts, 9 single-row reads per single-row write (`-f read@9 -f write@1`):
    /// pgsplit sends the reads to the replicas, direct and PgBouncer to the primary.
    ReadWrite9010,
}

/// One pgbench workload.
pub(crate) struct Workload {
    pub(crate) kind: Kind,
    /// Its name for `--workloads`.
    pub(crate) name: &'static str,
    /// The heading of its table in docs/benchmarks.md.
    pub(crate) title: &'static str,
    /// The pgbench arguments that select it (the rest of the command line is the same for all).
    pub(crate) args: &'static [&'static str],
    /// The `application_name` pgbench connects with (`PGAPPNAME`), when not `pgbench`.
    pub(crate) app_name: Option<&'static str>,
}

/// The `application_name` of `rw-90-10`, which the bench's pgsplit configuration matches with a
/// rule giving its reads `consistency: eventual`.
pub(crate) const RW_APP_NAME: &str = "bench_rw_90_10";

pub(crate) const WORKLOADS: [Workload; 7] = [
    Workload {
        kind: Kind::SelectSimple,
        name: "select-simple",
        title: "select-only, simple query protocol",
        args: &["-S", "-M", "simple"],
        app_name: None,
    },
    Workload {
        kind: Kind::SelectExtended,
        name: "select-extended",
        title: "select-only, extended query protocol (unnamed statements)",
        args: &["-S", "-M", "extended"],
        app_name: None,
    },
    Workload {
        kind: Kind::SelectPrepared,
        name: "select-prepared",
        title: "select-only, protocol-level prepared statements",
        args: &["-S", "-M", "prepared"],
        app_name: None,
    },
    Workload {
        kind: Kind::ConnectScram,
        name: "connect-scram",
        title: "select-only, a new connection per transaction, SCRAM-SHA-256 logins",
        args: &["-S", "-M", "simple", "-C"],
        app_name: None,
    },
    Workload {
        kind: Kind::ConnectMd5,
        name: "connect-md5",
        title: "select-only, a new connection per transaction, md5 logins (the pooling measure)",
        args: &["-S", "-M", "simple", "-C"],
        app_name: None,
    },
    Workload {
        kind: Kind::TpcB,
        name: "tpcb",
        title: "TPC-B-like read/write (pgbench's default script)",
        args: &["-M", "simple"],
        app_name: None,
    },
    Workload {
        kind: Kind::ReadWrite9010,
        name: "rw-90-10",
        title: "90/10 read/write (single-row SELECT ×9, single-row UPDATE ×1), reads to replicas through pgsplit",
        args: &[
            "-M",
            "simple",
            "-f",
            RW_READ_SCRIPT_WEIGHTED,
            "-f",
            RW_WRITE_SCRIPT_WEIGHTED,
        ],
        app_name: Some(RW_APP_NAME),
    },
];

/// The script files of `rw-90-10`, written by the bench into the directory pgbench runs in.
pub(crate) const RW_READ_SCRIPT: &str = "rw-read.sql";
pub(crate) const RW_WRITE_SCRIPT: &str = "rw-write.sql";
const RW_READ_SCRIPT_WEIGHTED: &str = "rw-read.sql@9";
const RW_WRITE_SCRIPT_WEIGHTED: &str = "rw-write.sql@1";

/// The two scripts of `rw-90-10` for a database loaded with `pgbench -i -s scale`: a read of one
/// random account, and an update of one random account's balance, each its own autocommit
/// transaction.
pub(crate) fn rw_scripts(scale: u32) -> [(&'static str, String); 2] {
    let accounts = u64::from(scale) * 100_000;
    [
        (
            RW_READ_SCRIPT,
            format!(
                "\\set aid random(1, {accounts})\n\
                 SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
            ),
        ),
        (
            RW_WRITE_SCRIPT,
            format!(
                "\\set aid random(1, {accounts})\n\
                 \\set delta random(-5000, 5000)\n\
                 UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
            ),
        ),
    ]
}

/// Where pgbench connects in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Target {
    Direct,
    /// pgsplit with the primary and every replica of the cluster.
    Pgsplit,
    /// A second pgsplit with the primary and only the first replica, so that its rows show the
    /// proxy's cost apart from what spreading reads over two replicas costs servers that share
    /// the machine's cores (see [`Kind::compares_one_replica`]).
    PgsplitOneReplica,
    Pgbouncer,
}

impl Kind {
    /// Whether pgbench opens a new connection per transaction (`-C`).
    pub(crate) fn connects(self) -> bool {
        matches!(self, Kind::ConnectScram | Kind::ConnectMd5)
    }

    /// Whether the workload also runs through pgsplit with one replica: the select-only
    /// workloads whose every read goes to a replica, where PgBouncer sends them all to one
    /// server (the primary). On a machine where all the servers share two cores, reads spread
    /// over two replicas cost the servers more CPU than the same reads on one.
    pub(crate) fn compares_one_replica(self) -> bool {
        matches!(
            self,
            Kind::SelectSimple | Kind::SelectExtended | Kind::SelectPrepared | Kind::ConnectMd5
        )
    }
}

impl Target {
    /// The order of every round: A B C D, A B C D, ... (the targets a workload runs, in this order).
    pub(crate) const ALL: [Target; 4] = [
        Target::Direct,
        Target::Pgsplit,
        Target::PgsplitOneReplica,
        Target::Pgbouncer,
    ];

    /// The targets `kind` runs against, in round order.
    pub(crate) fn for_kind(kind: Kind) -> impl Iterator<Item = Target> {
        Target::ALL
            .into_iter()
            .filter(move |t| *t != Target::PgsplitOneReplica || kind.compares_one_replica())
    }

    /// Whether pgsplit serves this target (either configuration).
    pub(crate) fn is_pgsplit(self) -> bool {
        matches!(self, Target::Pgsplit | Target::PgsplitOneReplica)
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgsplit => "pgsplit",
            Target::PgsplitOneReplica => "pgsplit, one replica",
            Target::Pgbouncer => "PgBouncer",
        }
    }
}

/// Everything the run is asked to do.
pub(crate) struct Plan {
    pub(crate) rounds: u32,
    /// Duration of each pgbench run (`-T`).
    pub(crate) secs: u32,
    pub(crate) clients: Vec<u32>,
    pub(crate) workloads: Vec<&'static Workload>,
    /// `--quick`: a smoke test whose figures are labelled as such.
    pub(crate) quick: bool,
    /// pgsplit's `workers` (`--pgsplit-workers`): event loops, `None` for `auto`.
    pub(crate) pgsplit_workers: Option<u32>,
}

const DEFAULT_ROUNDS: u32 = 3;
const DEFAULT_SECS: u32 = 15;
const DEFAULT_CLIENTS: [u32; 3] = [1, 16, 64];
/// Each node of the bench cluster allows 300 connections, shared by a direct run (one per client),
/// the transaction pools of both pgsplit instances and PgBouncer (20 per user and server: up to
/// 40 each on the primary) and PgBouncer's session pool for `-M prepared` (one per client), which
/// stay open between runs: 64 + 3 × 40 + 64 = 248, plus the superuser's reserved slots.
const MAX_CLIENTS: u32 = 64;
/// pgsplit's `workers` unless `--pgsplit-workers` says otherwise: one event loop, as PgBouncer
/// runs one thread. On this 2-core machine, shared with three servers and pgbench, a second
/// loop adds CPU per transaction and run-queue waits and gains no throughput (the hand-run
/// sections of docs/benchmarks.md).
const DEFAULT_PGSPLIT_WORKERS: Option<u32> = Some(1);

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [--workloads LIST] [--rounds N] [--secs S] [--clients LIST] [--quick]
                         [--pgsplit-workers N|auto] [--no-criterion]
       cargo xtask bench --criterion [--quick]
       cargo xtask bench --memory [--idle-clients N]
  --workloads LIST  comma-separated workloads, run in this order (default: all of
                    select-simple,select-extended,select-prepared,connect-scram,connect-md5,tpcb,
                    rw-90-10)
  --rounds N        interleaved rounds (default 3)
  --secs S          duration of each pgbench run (default 15)
  --clients LIST    comma-separated client counts (default 1,16,64)
  --pgsplit-workers N|auto
                    pgsplit's event loops (`workers`; default 1, as PgBouncer runs one thread)
  --quick           smoke test: 1 round of 5 s, 16 clients, select-simple, connect-scram,
                    connect-md5 and rw-90-10 (explicit --workloads/--rounds/--secs/--clients
                    still win), no criterion
  --no-criterion    skip the criterion microbenchmarks that follow a full pgbench run
  --criterion       only the criterion microbenchmarks (--quick: 1 s warm-up, 2 s measurement)
  --memory          only pgsplit's RSS per idle client connection, with --idle-clients N
                    connections (default 10000)";

impl Plan {
    pub(crate) fn from_flags(mut flags: Flags) -> Result<Plan> {
        let quick = flags.switch("quick");
        let rounds = flags.value::<u32>("rounds")?;
        let secs = flags.value::<u32>("secs")?;
        let clients = flags.value::<String>("clients")?;
        let workloads = flags.value::<String>("workloads")?;
        let workers = flags.value::<String>("pgsplit-workers")?;
        let extra = flags.finish()?;
        if !extra.is_empty() {
            bail!("unexpected arguments {extra:?}\n{USAGE}");
        }
        let (default_rounds, default_secs, default_clients) = if quick {
            (1, 5, vec![16])
        } else {
            (DEFAULT_ROUNDS, DEFAULT_SECS, DEFAULT_CLIENTS.to_vec())
        };
        let clients = match clients {
            Some(list) => parse_clients(&list)?,
            None => default_clients,
        };
        let workloads = match workloads {
            Some(list) => parse_workloads(&list)?,
            None => WORKLOADS
                .iter()
                .filter(|w| {
                    !quick
                        || matches!(w.kind, Kind::SelectSimple | Kind::ReadWrite9010)
                        || w.kind.connects()
                })
                .collect(),
        };
        let pgsplit_workers = match workers.as_deref().map(str::trim) {
            None => DEFAULT_PGSPLIT_WORKERS,
            Some("auto") => None,
            Some(n) => match n.parse::<u32>() {
                Ok(n) if (1..=64).contains(&n) => Some(n),
                _ => bail!("--pgsplit-workers: {n:?} is neither auto nor a number from 1 to 64"),
            },
        };
        let plan = Plan {
            rounds: rounds.unwrap_or(default_rounds),
            secs: secs.unwrap_or(default_secs),
            clients,
            workloads,
            quick,
            pgsplit_workers,
        };
        if plan.rounds == 0 || plan.secs == 0 {
            bail!("--rounds and --secs must be at least 1\n{USAGE}");
        }
        Ok(plan)
    }

    /// The number of pgbench runs that are measured.
    pub(crate) fn runs(&self) -> usize {
        let per_round: usize = self
            .workloads
            .iter()
            .map(|w| Target::for_kind(w.kind).count())
            .sum();
        self.rounds as usize * self.clients.len() * per_round
    }

    /// Whether some workload runs through pgsplit with one replica.
    pub(crate) fn needs_one_replica(&self) -> bool {
        self.workloads.iter().any(|w| w.kind.compares_one_replica())
    }

    /// pgsplit's `workers` setting as YAML.
    pub(crate) fn workers_yaml(&self) -> String {
        match self.pgsplit_workers {
            Some(n) => n.to_string(),
            None => "auto".to_owned(),
        }
    }

    pub(crate) fn max_clients(&self) -> u32 {
        self.clients.iter().copied().max().unwrap_or(1)
    }
}

fn parse_workloads(list: &str) -> Result<Vec<&'static Workload>> {
    let mut workloads: Vec<&'static Workload> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(workload) = WORKLOADS.iter().find(|w| w.name == item) else {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            bail!(
                "--workloads: unknown workload {item:?} (known: {})",
                names.join(",")
            );
        };
        if !workloads.iter().any(|w| w.kind == workload.kind) {
            workloads.push(workload);
        }
    }
    if workloads.is_empty() {
        bail!("--workloads needs at least one name, e.g. --workloads select-simple,connect-md5");
    }
    Ok(workloads)
}

fn parse_clients(list: &str) -> Result<Vec<u32>> {
    let mut clients = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let n: u32 = item
            .parse()
            .with_context(|| format!("--clients: {item:?} is not a number"))?;
        if n == 0 || n > MAX_CLIENTS {
            bail!("--clients: {n} is outside 1..={MAX_CLIENTS}");
        }
        if !clients.contains(&n) {
            clients.push(n);
        }
    }
    if clients.is_empty() {
        bail!("--clients needs at least one number, e.g. --clients 1,16,64");
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::{Kind, Plan};
    use crate::flags::Flags;

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        Plan::from_flags(Flags::new(args.iter().map(|a| a.to_string()).collect()))
    }

    #[test]
    fn defaults_and_quick() {
        let full = plan(&[]).unwrap();
        assert_eq!((full.rounds, full.secs), (3, 15));
        assert_eq!(full.clients, vec![1, 16, 64]);
        assert_eq!(full.workloads.len(), 7);
        assert!(full.workloads.iter().any(|w| w.kind == Kind::ReadWrite9010));
        // Four targets for the three select-only workloads and connect-md5, three for the rest.
        assert_eq!(full.runs(), 3 * 3 * (4 * 4 + 3 * 3));
        assert!(full.needs_one_replica());
        assert_eq!(full.pgsplit_workers, Some(1));
        let quick = plan(&["--quick"]).unwrap();
        assert_eq!(
            (quick.rounds, quick.secs, quick.clients.clone()),
            (1, 5, vec![16])
        );
        let kinds: Vec<Kind> = quick.workloads.iter().map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::SelectSimple,
                Kind::ConnectScram,
                Kind::ConnectMd5,
                Kind::ReadWrite9010
            ]
        );
        let mixed = plan(&["--quick", "--secs", "2", "--clients=1, 4,4"]).unwrap();
        assert_eq!((mixed.secs, mixed.clients), (2, vec![1, 4]));
        let auto = plan(&["--pgsplit-workers", "auto"]).unwrap();
        assert_eq!(
            (auto.pgsplit_workers, auto.workers_yaml()),
            (None, "auto".to_owned())
        );
        let two = plan(&["--pgsplit-workers=2", "--workloads", "tpcb,rw-90-10"]).unwrap();
        assert_eq!(
            (two.pgsplit_workers, two.workers_yaml()),
            (Some(2), "2".to_owned())
        );
        assert!(!two.needs_one_replica());
        assert_eq!(two.runs(), 3 * 3 * 2 * 3);
    }

    #[test]
    fn workloads_in_the_order_given() {
        let some = plan(&["--workloads", "connect-md5, select-simple,connect-md5"]).unwrap();
        let kinds: Vec<Kind> = some.workloads.iter().map(|w| w.kind).collect();
        assert_eq!(kinds, vec![Kind::ConnectMd5, Kind::SelectSimple]);
        assert_eq!((some.rounds, some.secs), (3, 15));
        let quick = plan(&["--quick", "--workloads=tpcb"]).unwrap();
        assert_eq!(quick.workloads.len(), 1);
        assert!(plan(&["--workloads", "select"]).is_err());
        assert!(plan(&["--workloads", ","]).is_err());
    }

    #[test]
    fn rw_scripts_weigh_nine_reads_per_write() {
        let rw = super::WORKLOADS
            .iter()
            .find(|w| w.name == "rw-90-10")
            .unwrap();
        let files: Vec<&str> = rw
            .args
            .windows(2)
            .filter(|pair| pair[0] == "-f")
            .map(|pair| pair[1])
            .collect();
        assert_eq!(files, vec!["rw-read.sql@9", "rw-write.sql@1"]);
        assert_eq!(rw.app_name, Some(super::RW_APP_NAME));
        assert!(
            super::WORKLOADS
                .iter()
                .filter(|w| w.app_name.is_some())
                .count()
                == 1
        );
        let [(read_name, read), (write_name, write)] = super::rw_scripts(10);
        assert_eq!(files[0].split('@').next(), Some(read_name));
        assert_eq!(files[1].split('@').next(), Some(write_name));
        assert!(read.starts_with("\\set aid random(1, 1000000)\n"));
        assert!(read.contains("SELECT abalance FROM pgbench_accounts WHERE aid = :aid;"));
        assert!(write.contains(
            "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;"
        ));
        assert!(!read.contains("UPDATE") && !write.contains("SELECT"));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(plan(&["--clients", "0"]).is_err());
        assert!(plan(&["--clients", "x"]).is_err());
        assert!(plan(&["--clients", ","]).is_err());
        assert!(plan(&["--rounds", "0"]).is_err());
        assert!(plan(&["--pgsplit-workers", "0"]).is_err());
        assert!(plan(&["--pgsplit-workers", "many"]).is_err());
        assert!(plan(&["extra"]).is_err());
    }
}
