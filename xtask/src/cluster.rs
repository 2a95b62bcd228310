//! `cargo xtask cluster ...`: a real PostgreSQL primary and streaming replicas on 127.0.0.1, for tests and the demo.
//!
//! The cluster lives in `/tmp/pgsplit-cluster-<base port>/` (or `$PGSPLIT_CLUSTER_DIR`), one
//! directory per node named by its port (see `node.rs`), plus `pgsplit-cluster.json`, which
//! remembers the options of the last `up` so that `reset` and a later `up` reuse them.
//! The primary listens on the base port, replica `i` on base port + `i`.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::flags::Flags;
use crate::node::{Node, SUPERUSER};
use crate::pg::Pg;

pub(crate) const DEFAULT_BASE_PORT: u16 = 15432;
const DEFAULT_REPLICAS: u16 = 2;
/// `max_wal_senders = 10` leaves room for this many walreceivers plus one `pg_basebackup`.
const MAX_REPLICAS: u16 = 8;
const STATE_FILE: &str = "pgsplit-cluster.json";
const ENV_DIR: &str = "PGSPLIT_CLUSTER_DIR";
const ENV_BASE_PORT: &str = "PGSPLIT_CLUSTER_BASE_PORT";

/// The application role and database every cluster has (password = name).
pub(crate) const APP: &str = "app";

/// Idempotent setup of roles, database and extension on the primary.
const BOOTSTRAP: &str = "\
ALTER ROLE postgres PASSWORD 'postgres';
SELECT 'CREATE ROLE app' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') \\gexec
ALTER ROLE app LOGIN CREATEDB PASSWORD 'app';
SELECT 'CREATE DATABASE app OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \\gexec
\\c app
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
";

const USAGE: &str = "\
usage: cargo xtask cluster <command> [--base-port P] [--replicas N] [--tls]
  --tls (with up or reset): the servers also take TLS (ssl = on), with a certificate for
        127.0.0.1 and localhost signed by a test CA, both made once by openssl in
        <cluster dir>/tls/ (ca.crt is what clients verify them with); kept by later `up`s,
        removed by a `reset` without --tls
commands: up, down, status, reset, pause-replay PORT, resume-replay PORT,
          stop PORT, start PORT, promote PORT, psql [PORT] [-- PSQL ARGS]";

/// Where a cluster lives and what it is made of.
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) base_port: u16,
    pub(crate) replicas: u16,
    /// Whether the directory or base port was chosen explicitly (flag or environment), which turns
    /// off the search for a node's cluster by port.
    explicit: bool,
}

impl Cluster {
    /// A cluster from explicit values, checked.
    pub(crate) fn new(dir: PathBuf, base_port: u16, replicas: u16) -> Result<Cluster> {
        if replicas > MAX_REPLICAS {
            bail!("at most {MAX_REPLICAS} replicas are supported (max_wal_senders = 10)");
        }
        if base_port.checked_add(replicas).is_none() || base_port < 1024 {
            bail!("base port {base_port} with {replicas} replicas does not fit in 1024..=65535");
        }
        Ok(Cluster {
            dir,
            base_port,
            replicas,
            explicit: true,
        })
    }

    /// The cluster the flags and environment name: base port from `--base-port`,
    /// `$PGSPLIT_CLUSTER_BASE_PORT`, the state file or 15432; replicas from `--replicas`, the state
    /// file or 2; directory from `$PGSPLIT_CLUSTER_DIR` or `/tmp/pgsplit-cluster-<base port>`.
    pub(crate) fn from_flags(flags: &mut Flags) -> Result<Cluster> {
        let env_port = match std::env::var(ENV_BASE_PORT) {
            Ok(text) if !text.trim().is_empty() => Some(
                text.trim()
                    .parse()
                    .with_context(|| format!("{ENV_BASE_PORT}={text:?} is not a port"))?,
            ),
            _ => None,
        };
        let port = flags.value::<u16>("base-port")?.or(env_port);
        let replicas = flags.value::<u16>("replicas")?;
        let env_dir = std::env::var_os(ENV_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let explicit = port.is_some() || env_dir.is_some();
        let dir = env_dir.unwrap_or_else(|| default_dir(port.unwrap_or(DEFAULT_BASE_PORT)));
        let state = State::load(&dir)?;
        if let (Some(port), Some(state)) = (port, &state)
            && port != state.base_port
        {
            bail!(
                "{} holds a cluster with base port {}, not {port}; use that port or another {ENV_DIR}",
                dir.display(),
                state.base_port
            );
        }
        let base_port = port
            .or(state.as_ref().map(|s| s.base_port))
            .unwrap_or(DEFAULT_BASE_PORT);
        let replicas = replicas
            .or(state.map(|s| s.replicas))
            .unwrap_or(DEFAULT_REPLICAS);
        let mut cluster = Cluster::new(dir, base_port, replicas)?;
        cluster.explicit = explicit;
        Ok(cluster)
    }

    pub(crate) fn primary(&self) -> Node {
        Node::new(&self.dir, self.base_port)
    }

    pub(crate) fn replica_nodes(&self) -> Vec<Node> {
        (1..=self.replicas)
            .map(|i| Node::new(&self.dir, self.base_port + i))
            .collect()
    }

    /// `127.0.0.1:PORT` of each replica.
    pub(crate) fn replica_addrs(&self) -> Vec<String> {
        self.replica_nodes()
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// Every node directory that holds a data directory, by port.
    fn existing_nodes(&self) -> Vec<Node> {
        let mut ports: Vec<u16> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        ports.sort_unstable();
        ports
            .into_iter()
            .map(|port| Node::new(&self.dir, port))
            .filter(Node::has_data)
            .collect()
    }

    /// The node at `port`. Without an explicit cluster, a port outside the default cluster is
    /// looked up among the other `/tmp/pgsplit-cluster-*` directories.
    fn node(&self, port: u16) -> Result<Node> {
        let node = Node::new(&self.dir, port);
        if node.has_data() {
            return Ok(node);
        }
        if !self.explicit {
            let found = std::fs::read_dir("/tmp")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("pgsplit-cluster-")
                })
                .map(|e| Node::new(&e.path(), port))
                .find(Node::has_data);
            if let Some(node) = found {
                return Ok(node);
            }
        }
        bail!(
            "no node with port {port} in {}; run `cargo xtask cluster up` first",
            self.dir.display()
        )
    }

    /// `--base-port P` when it is not the default, for hints printed to the user.
    fn port_flag(&self) -> String {
        if self.base_port == DEFAULT_BASE_PORT {
            String::new()
        } else {
            format!(" --base-port {}", self.base_port)
        }
    }
}

fn default_dir(base_port: u16) -> PathBuf {
    PathBuf::from(format!("/tmp/pgsplit-cluster-{base_port}"))
}

/// The options of the last `up`, kept in the cluster directory.
struct State {
    base_port: u16,
    replicas: u16,
}

impl State {
    fn load(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(STATE_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |name: &str| -> Result<u16> {
            let value = json[name].as_u64().and_then(|v| u16::try_from(v).ok());
            value
                .with_context(|| format!("{}: `{name}` is missing or out of range", path.display()))
        };
        Ok(Some(State {
            base_port: field("base_port")?,
            replicas: field("replicas")?,
        }))
    }

    fn save(cluster: &Cluster) -> Result<()> {
        let json =
            serde_json::json!({ "base_port": cluster.base_port, "replicas": cluster.replicas });
        let path = cluster.dir.join(STATE_FILE);
        std::fs::write(&path, format!("{json:#}\n"))
            .with_context(|| format!("write {}", path.display()))
    }
}

/// Entry point of `cargo xtask cluster`.
pub(crate) fn main(args: Vec<String>) -> Result<()> {
    let mut flags = Flags::new(args);
    let cluster = Cluster::from_flags(&mut flags)?;
    let tls = flags.switch("tls");
    let psql_args = flags.rest();
    let words = flags.finish()?;
    let (command, port) = match words.as_slice() {
        [] => bail!("{USAGE}"),
        [command] => (command.as_str(), None),
        [command, port] => {
            let port = port
                .parse::<u16>()
                .with_context(|| format!("{port:?} is not a port"))?;
            (command.as_str(), Some(port))
        }
        _ => bail!("too many arguments: {}\n{USAGE}", words.join(" ")),
    };
    if command == "psql" {
        return psql(port.unwrap_or(cluster.base_port), &psql_args);
    }
    if !psql_args.is_empty() {
        bail!("only `cluster psql` takes arguments after `--`");
    }
    let pg = Pg::detect()?;
    let node = || -> Result<Node> {
        let port = port.with_context(|| format!("`cluster {command}` needs a PORT\n{USAGE}"))?;
        cluster.node(port)
    };
    match command {
        "up" | "down" | "status" | "reset" if port.is_some() => {
            bail!("`cluster {command}` takes no PORT; use --base-port to choose the cluster")
        }
        "up" | "reset" if tls => {
            make_certificate(&cluster)?;
            if command == "up" {
                up(&pg, &cluster)
            } else {
                reset(&pg, &cluster)
            }
        }
        _ if tls => bail!("--tls goes with `cluster up` or `cluster reset`"),
        "reset" => {
            // A reset without --tls gives a cluster without TLS.
            let dir = tls_dir(&cluster.dir);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("rm -r {}", dir.display()))?;
            }
            reset(&pg, &cluster)
        }
        "up" => up(&pg, &cluster),
        "down" => down(&pg, &cluster),
        "status" => status(&pg, &cluster),
        "pause-replay" => pause_replay(&pg, &node()?),
        "resume-replay" => resume_replay(&pg, &node()?),
        "stop" => node()?.stop(&pg),
        "start" => start(&pg, &node()?),
        "promote" => promote(&pg, &cluster, &node()?),
        _ => bail!("unknown cluster command `{command}`\n{USAGE}"),
    }
}

/// The cluster's directory for its TLS certificates: when it holds `server.crt` and
/// `server.key`, every node serves TLS with them.
pub(crate) fn tls_dir(cluster_dir: &std::path::Path) -> PathBuf {
    cluster_dir.join("tls")
}

/// Makes the certificates of `cluster up --tls` unless they exist: a CA (`ca.crt`, what
/// clients verify the servers with) and the servers' certificate for 127.0.0.1 and localhost
/// signed by it (`server.crt`, `server.key`). A self-signed server certificate would do for
/// libpq, but rustls (pgsplit's TLS) refuses a CA certificate as a server's.
fn make_certificate(cluster: &Cluster) -> Result<()> {
    let dir = tls_dir(&cluster.dir);
    if ["ca.crt", "server.crt", "server.key"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    println!(
        "==> cluster: a test CA and a server certificate in {}",
        dir.display()
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=pgsplit test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    ];
    for args in steps {
        let mut openssl = std::process::Command::new("openssl");
        openssl.args(args).current_dir(&dir);
        crate::cmd::output(&mut openssl)
            .context("openssl (Debian's `openssl` package; `cargo xtask install` installs it)")?;
    }
    Ok(())
}

/// Brings the cluster up, reusing and starting existing data directories, and waits until every
/// replica streams from the primary.
pub(crate) fn up(pg: &Pg, cluster: &Cluster) -> Result<()> {
    println!(
        "==> cluster up: primary on 127.0.0.1:{}, {} replica(s), data in {}, PostgreSQL from {} as {}",
        cluster.base_port,
        cluster.replicas,
        cluster.dir.display(),
        pg.bindir().display(),
        pg.user_label()
    );
    let primary = cluster.primary();
    let replicas = cluster.replica_nodes();
    for node in std::iter::once(&primary).chain(&replicas) {
        if !node.is_running(pg)? {
            node.check_port_free()?;
        }
    }
    std::fs::create_dir_all(&cluster.dir)
        .with_context(|| format!("mkdir {}", cluster.dir.display()))?;
    State::save(cluster)?;
    if !primary.has_data() {
        for stale in cluster.existing_nodes() {
            println!(
                "  removing replica {} (it belongs to a primary that no longer exists)",
                stale.port
            );
            stale.stop(pg)?;
            std::fs::remove_dir_all(&stale.dir)
                .with_context(|| format!("rm -r {}", stale.dir.display()))?;
        }
        primary.create_dir(pg)?;
        primary.init(pg)?;
    }
    primary.start(pg)?;
    if primary.in_recovery(pg)? {
        println!(
            "  note: node {} is in recovery, so roles are left as they are",
            primary.port
        );
    } else {
        println!("==> ensuring role `app`, database `app`, pg_stat_statements, superuser password");
        primary.script(pg, BOOTSTRAP)?;
    }
    for replica in &replicas {
        if !replica.has_data() {
            replica.create_dir(pg)?;
            replica.clone_from(pg, &primary)?;
        }
        replica.start(pg)?;
        if !replica.in_recovery(pg)? {
            bail!(
                "node {} was promoted and no longer follows port {}; `cargo xtask cluster{} reset` starts over",
                replica.port,
                primary.port,
                cluster.port_flag()
            );
        }
    }
    let others: Vec<u16> = cluster
        .existing_nodes()
        .iter()
        .map(|n| n.port)
        .filter(|&p| p < cluster.base_port || p > cluster.base_port + cluster.replicas)
        .collect();
    if !others.is_empty() {
        println!(
            "  note: nodes {others:?} also exist in {} and were left alone",
            cluster.dir.display()
        );
    }
    wait_streaming(pg, &primary, &replicas)?;
    print_connections(cluster);
    Ok(())
}

/// Waits until the primary's `pg_stat_replication` shows every replica streaming.
fn wait_streaming(pg: &Pg, primary: &Node, replicas: &[Node]) -> Result<()> {
    if replicas.is_empty() {
        return Ok(());
    }
    println!(
        "==> waiting until {} replica(s) stream from port {}",
        replicas.len(),
        primary.port
    );
    let sql = "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'";
    let mut missing: Vec<u16> = Vec::new();
    primary
        .wait_for(
            Duration::from_secs(60),
            "see every replica streaming",
            || {
                let streaming = primary.query(pg, sql)?;
                let streaming: Vec<&str> = streaming.lines().collect();
                missing = replicas
                    .iter()
                    .filter(|r| !streaming.contains(&r.name().as_str()))
                    .map(|r| r.port)
                    .collect();
                Ok(missing.is_empty())
            },
        )
        .with_context(|| format!("replicas {missing:?} are not streaming; see their postgres.log"))
}

fn print_connections(cluster: &Cluster) {
    println!("\ncluster ready ({}):", cluster.dir.display());
    println!(
        "  primary  postgres://{APP}:{APP}@127.0.0.1:{}/{APP}",
        cluster.base_port
    );
    for replica in cluster.replica_nodes() {
        println!(
            "  replica  postgres://{APP}:{APP}@127.0.0.1:{}/{APP}",
            replica.port
        );
    }
    println!(
        "  superuser postgres://{SUPERUSER}:{SUPERUSER}@127.0.0.1:{}/postgres",
        cluster.base_port
    );
    let flag = cluster.port_flag();
    println!("  psql:    cargo xtask cluster{flag} psql [PORT]");
    println!("  status:  cargo xtask cluster{flag} status");
    println!("  stop:    cargo xtask cluster{flag} down");
}

/// Stops every node of the cluster, replicas first.
pub(crate) fn down(pg: &Pg, cluster: &Cluster) -> Result<()> {
    let nodes = cluster.existing_nodes();
    println!(
        "==> cluster down: {} node(s) in {}",
        nodes.len(),
        cluster.dir.display()
    );
    let mut failures = Vec::new();
    for node in nodes.iter().rev() {
        if let Err(e) = node.stop(pg) {
            eprintln!("error: {e:#}");
            failures.push(node.port);
        }
    }
    if !failures.is_empty() {
        bail!("could not stop nodes {failures:?}");
    }
    Ok(())
}

/// Stops the cluster, deletes its data and brings up a fresh one with the same options.
pub(crate) fn reset(pg: &Pg, cluster: &Cluster) -> Result<()> {
    println!("==> cluster reset: {}", cluster.dir.display());
    down(pg, cluster)?;
    for node in cluster.existing_nodes() {
        println!("  rm -r {}", node.dir.display());
        std::fs::remove_dir_all(&node.dir)
            .with_context(|| format!("rm -r {}", node.dir.display()))?;
    }
    up(pg, cluster)
}

/// What a running node reports about itself.
struct Probe {
    in_recovery: bool,
    /// Replay position on a replica, current WAL position on a primary.
    lsn: String,
    replay_paused: bool,
}

impl Probe {
    fn read(pg: &Pg, node: &Node) -> Result<Option<Probe>> {
        if !node.is_running(pg)? {
            return Ok(None);
        }
        let row = node.query(
            pg,
            "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
             THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
             CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END",
        )?;
        let fields: Vec<&str> = row.split('|').collect();
        Ok(Some(Probe {
            in_recovery: fields.first() == Some(&"t"),
            lsn: fields.get(1).copied().unwrap_or_default().to_owned(),
            replay_paused: fields.get(2) == Some(&"t"),
        }))
    }
}

/// One line per node: port, running, role, WAL position, replay lag and pause, walsender state.
fn status(pg: &Pg, cluster: &Cluster) -> Result<()> {
    let (dir, port_flag) = (cluster.dir.display(), cluster.port_flag());
    println!(
        "cluster {dir} (base port {}, {} replica(s))",
        cluster.base_port, cluster.replicas
    );
    let mut probes = Vec::new();
    for node in cluster.existing_nodes() {
        let probe = Probe::read(pg, &node)?;
        probes.push((node, probe));
    }
    if probes.is_empty() {
        println!("no nodes; run `cargo xtask cluster{port_flag} up`");
        return Ok(());
    }
    let primaries: Vec<(&Node, &Probe)> = probes
        .iter()
        .filter_map(|(node, probe)| Some((node, probe.as_ref()?)))
        .filter(|(_, probe)| !probe.in_recovery)
        .collect();
    // Lag is measured against the base-port primary, or else the first one.
    let primary = primaries
        .iter()
        .find(|(n, _)| n.port == cluster.base_port)
        .or(primaries.first());
    let head = primary.and_then(|(_, probe)| parse_lsn(&probe.lsn));
    let senders = match primary {
        Some((node, _)) => node.query(
            pg,
            "SELECT application_name || '|' || state FROM pg_stat_replication",
        )?,
        None => String::new(),
    };
    print_row([
        "PORT",
        "STATE",
        "ROLE",
        "WAL LSN",
        "LAG BYTES",
        "REPLAY",
        "WALSENDER",
    ]);
    for (node, probe) in &probes {
        let port = node.port.to_string();
        let Some(probe) = probe else {
            print_row([&port, "stopped", "", "", "", "", ""]);
            continue;
        };
        if !probe.in_recovery {
            print_row([&port, "running", "primary", &probe.lsn, "-", "-", "-"]);
            continue;
        }
        let lag = match (head, parse_lsn(&probe.lsn)) {
            (Some(head), Some(at)) => head.saturating_sub(at).to_string(),
            _ => "?".to_owned(),
        };
        let replay = if probe.replay_paused {
            "paused"
        } else {
            "running"
        };
        let name = format!("{}|", node.name());
        let sender = senders
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .unwrap_or("none");
        print_row([
            &port, "running", "replica", &probe.lsn, &lag, replay, sender,
        ]);
    }
    if primaries.len() > 1 {
        let ports: Vec<u16> = primaries.iter().map(|(n, _)| n.port).collect();
        println!(
            "note: nodes {ports:?} are all primaries; `cargo xtask cluster{port_flag} reset` starts over"
        );
    }
    Ok(())
}

fn print_row(columns: [&str; 7]) {
    let [port, state, role, lsn, lag, replay, sender] = columns;
    let line = format!("{port:<7}{state:<9}{role:<9}{lsn:<14}{lag:<12}{replay:<9}{sender}");
    println!("{}", line.trim_end());
}

/// Parses an LSN such as `0/3000148` into a byte position.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

fn require_replica(pg: &Pg, node: &Node) -> Result<()> {
    if !node.is_running(pg)? {
        bail!("node {} is not running", node.port);
    }
    if !node.in_recovery(pg)? {
        bail!(
            "node {} is a primary (not in recovery); replay control applies to replicas",
            node.port
        );
    }
    Ok(())
}

/// Pauses WAL replay: the replica keeps receiving WAL but stops applying it, so its lag grows.
fn pause_replay(pg: &Pg, node: &Node) -> Result<()> {
    require_replica(pg, node)?;
    // The startup process checks for a pause before it applies each record, so WAL written after
    // this returns is not applied, even while `pg_get_wal_replay_pause_state()` still says
    // "pause requested" (an idle replica only notices within about 5 s).
    node.query(pg, "SELECT pg_wal_replay_pause()")?;
    println!(
        "replay paused on node {0}: WAL written from now on arrives but is not applied \
         (`resume-replay {0}` applies it)",
        node.port
    );
    Ok(())
}

fn resume_replay(pg: &Pg, node: &Node) -> Result<()> {
    require_replica(pg, node)?;
    node.query(pg, "SELECT pg_wal_replay_resume()")?;
    println!("replay resumed on node {}", node.port);
    Ok(())
}

/// Starts one node; a replica is waited for until its walreceiver streams again.
fn start(pg: &Pg, node: &Node) -> Result<()> {
    node.start(pg)?;
    if node.in_recovery(pg)? {
        let sql = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'";
        node.wait_for(Duration::from_secs(60), "stream from its primary", || {
            Ok(node.query(pg, sql)? == "1")
        })?;
    }
    Ok(())
}

fn promote(pg: &Pg, cluster: &Cluster, node: &Node) -> Result<()> {
    node.promote(pg)?;
    println!(
        "node {} is now a primary; other replicas still follow their old primary. \
         `cargo xtask cluster{} reset` brings back a clean cluster",
        node.port,
        cluster.port_flag()
    );
    Ok(())
}

/// Replaces xtask with an interactive `psql` as `app` on `port`, over TCP with SCRAM.
fn psql(port: u16, args: &[String]) -> Result<()> {
    let program = crate::pg::find_bindir()
        .map(|d| d.join("psql"))
        .filter(|p| p.is_file());
    let mut psql = std::process::Command::new(program.unwrap_or_else(|| "psql".into()));
    psql.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        APP,
        "-d",
        APP,
    ])
    .args(args);
    psql.env("PGPASSWORD", APP);
    let error = psql.exec();
    Err(error).with_context(|| format!("could not run `{}`", crate::cmd::display(&psql)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_lsn() {
        assert_eq!(super::parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(super::parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(super::parse_lsn(""), None);
    }
}
