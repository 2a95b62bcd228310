//! The two proxies under test, each a child process with a generated configuration in the
//! benchmark's work directory, listening on a free port of 127.0.0.1, and stopped by its PID.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::plan::RW_APP_NAME;
use crate::cluster::{APP, Cluster};
use crate::cmd;
use crate::pg::Pg;

/// Server connections per pool, the same for pgsplit and PgBouncer.
pub(crate) const POOL_SIZE: u32 = 20;

/// The role of the md5 workload (password = name): created by the benchmark with an md5-hashed
/// password, and logged in with md5 by pgbench on every target and by both proxies on the servers
/// (node.rs's pg_hba.conf has `host all bench_md5 127.0.0.1/32 md5` before the SCRAM line).
pub(crate) const MD5_USER: &str = "bench_md5";

/// How long a proxy may take to accept its first query.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a proxy may take to exit after SIGTERM before it gets SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// A proxy we started. Dropping it stops it, so an error anywhere in the run leaves nothing behind.
pub(crate) struct Service {
    name: &'static str,
    /// `None` once stopped.
    child: Option<Child>,
    /// Where the server writes its own PID, when `child` is a wrapper (`runuser`) around it.
    pidfile: Option<PathBuf>,
    /// stdout and stderr of the process.
    log: PathBuf,
}

impl Service {
    fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<Service> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        println!("  $ {}", cmd::display(&command));
        let child = command
            .spawn()
            .with_context(|| format!("could not start {name}: `{}`", cmd::display(&command)))?;
        Ok(Service {
            name,
            child: Some(child),
            pidfile: None,
            log,
        })
    }

    /// Waits until `SELECT 1` through the proxy works, failing early if the process exits.
    fn wait_ready(&mut self, pg: &Pg, port: u16, database: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                return Err(self.with_log(anyhow::anyhow!(
                    "{} exited at startup ({status})",
                    self.name
                )));
            }
            let mut psql = pg.client("psql");
            psql.args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string()]);
            psql.args(["-U", APP, "-d", database, "-c", "SELECT 1"]);
            psql.env("PGPASSWORD", APP).env("PGCONNECT_TIMEOUT", "3");
            let last = match cmd::output(&mut psql) {
                Ok(out) if out.trim() == "1" => return Ok(()),
                Ok(out) => anyhow::anyhow!("SELECT 1 returned {out:?}"),
                Err(e) => e,
            };
            if start.elapsed() > READY_WITHIN {
                let e = last.context(format!(
                    "{} did not answer on 127.0.0.1:{port} within {}s",
                    self.name,
                    READY_WITHIN.as_secs()
                ));
                return Err(self.with_log(e));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The PID of the running process (the server's own when it runs under a wrapper).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| self.server_pid(child))
    }

    /// Whether the process has exited on its own (it should run until [`Service::stop`]).
    pub(crate) fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The PID to signal: the server itself, read from its pidfile when we started a wrapper,
    /// accepted only if it is our child or our child's child.
    fn server_pid(&self, child: &Child) -> u32 {
        let wrapper = child.id();
        let Some(pidfile) = &self.pidfile else {
            return wrapper;
        };
        let pid = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        match pid {
            Some(pid) if super::cpu::parent_of(pid) == Some(wrapper) => pid,
            _ => wrapper,
        }
    }

    /// SIGTERM to the server's PID, then SIGKILL if it lingers; idempotent.
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            println!("  {} had already exited ({status})", self.name);
            return Ok(());
        }
        let pid = self.server_pid(&child);
        println!("==> stopping {} (kill -TERM {pid})", self.name);
        signal("TERM", pid)?;
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > STOP_WITHIN {
                println!(
                    "  {} still runs after {}s: kill -KILL {pid}",
                    self.name,
                    STOP_WITHIN.as_secs()
                );
                let _ = signal("KILL", pid);
                let _ = child.kill();
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Adds the end of the process's output to an error.
    fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        anyhow::anyhow!("{error:#}\nlast lines of {}:\n{tail}", self.log.display())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("error: could not stop {}: {e:#}", self.name);
        }
    }
}

fn signal(name: &str, pid: u32) -> Result<()> {
    cmd::output(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()),
    )?;
    Ok(())
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released for the proxies).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("could not find a free port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A running pgsplit.
pub(crate) struct Pgsplit {
    pub(crate) service: Service,
    pub(crate) port: u16,
    /// The admin listener (`/metrics`).
    pub(crate) admin_port: u16,
}

/// The pgsplit configuration: the cluster's primary and replicas, user app/app with SCRAM and
/// user bench_md5/bench_md5 with md5 (plain password, also used as its server password),
/// transaction pooling with [`POOL_SIZE`] connections per server, the default `workers`
/// (`auto`: one event loop per core) unless `extra` sets it, quiet logs, default routing
/// (`consistency: session`) except one rule: the reads of the rw-90-10 workload (its own
/// application_name) get `consistency: eventual`. Only the first `replicas` replicas are
/// configured.
fn pgsplit_config(cluster: &Cluster, port: u16, admin_port: u16, replicas: usize) -> String {
    let mut yaml = format!(
        "# Written by `cargo xtask bench`.\n\
         listen: 127.0.0.1:{port}\n\
         admin:\n  listen: 127.0.0.1:{admin_port}\n\
         shutdown_timeout: 5s\n\
         log:\n  format: text\n  level: warn\n\
         users:\n  - name: {APP}\n    password: {APP}\n    auth: scram-sha-256\n\
         \x20 - name: {MD5_USER}\n    password: {MD5_USER}\n    auth: md5\n    \
         server_password: {MD5_USER}\n\
         pool:\n  mode: transaction\n  size: {POOL_SIZE}\n\
         rules:\n  - name: bench-rw-90-10\n    match:\n      application_name: {RW_APP_NAME}\n      \
         kind: read\n    consistency: eventual\n\
         servers:\n  - name: primary\n    host: 127.0.0.1\n    port: {}\n    role: primary\n",
        cluster.base_port
    );
    for (i, replica) in cluster.replica_nodes().iter().take(replicas).enumerate() {
        let _ = write!(
            yaml,
            "  - name: replica{}\n    host: 127.0.0.1\n    port: {}\n    role: replica\n",
            i + 1,
            replica.port
        );
    }
    yaml
}

/// Writes the configuration (the first `replicas` replicas of the cluster, plus `extra`, more
/// top-level YAML keys) to `dir`, checks it with
/// `pgsplit check`, starts `binary` and waits until it answers. `wrapper` (a program and its arguments, e.g. valgrind), when not empty, runs pgsplit.
pub(crate) fn start_pgsplit(
    pg: &Pg,
    binary: &Path,
    cluster: &Cluster,
    dir: &Path,
    replicas: usize,
    extra: &str,
    wrapper: &[String],
) -> Result<Pgsplit> {
    let ports = free_ports(2)?;
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let config = dir.join("pgsplit.yaml");
    let yaml = pgsplit_config(cluster, ports[0], ports[1], replicas) + extra;
    std::fs::write(&config, yaml).with_context(|| format!("write {}", config.display()))?;
    println!(
        "==> starting pgsplit on 127.0.0.1:{} ({})",
        ports[0],
        config.display()
    );
    let mut check = Command::new(binary);
    check.arg("check").arg("--config").arg(&config);
    cmd::output(&mut check)?;
    let mut run = match wrapper.split_first() {
        Some((program, args)) => {
            let mut run = Command::new(program);
            run.args(args).arg(binary);
            run
        }
        None => Command::new(binary),
    };
    run.arg("--config").arg(&config).current_dir(dir);
    let mut service = Service::spawn("pgsplit", run, dir.join("pgsplit.log"))?;
    service.wait_ready(pg, ports[0], APP)?;
    Ok(Pgsplit {
        service,
        port: ports[0],
        admin_port: ports[1],
    })
}

/// What PgBouncer's userlist holds, from `pg_authid`.
#[derive(Clone, Copy)]
pub(crate) struct Secrets<'a> {
    /// app's SCRAM verifier.
    pub(crate) app: &'a str,
    /// bench_md5's md5 hash.
    pub(crate) md5: &'a str,
}

/// A running PgBouncer and how the benchmark reaches it.
pub(crate) struct Pgbouncer {
    pub(crate) service: Service,
    pub(crate) port: u16,
    /// The database for `-M prepared`: `app` when this PgBouncer keeps prepared statements in
    /// transaction mode, else `app_session`, a session-mode pool.
    pub(crate) prepared_database: &'static str,
    /// How `-M prepared` is served, for the report.
    pub(crate) prepared_mode: String,
}

/// `PgBouncer 1.18.0` → (1, 18).
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether this PgBouncer (`PgBouncer 1.21.0`) keeps protocol-level prepared statements in
/// transaction mode (`max_prepared_statements`, 1.21 and later).
pub(crate) fn keeps_prepared_in_transaction(version: &str) -> bool {
    parse_version(version).is_some_and(|v| v >= (1, 21))
}

/// The first line of `pgbouncer --version`.
pub(crate) fn pgbouncer_version(pg: &Pg, binary: &Path) -> Result<String> {
    let out = cmd::output(pg.as_owner(binary).arg("--version"))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_owned())
}

/// Writes `pgbouncer.ini` and `userlist.txt` to `dir` (handed to the PostgreSQL OS user, which
/// runs PgBouncer when we are root: it refuses to run as root), starts it and waits until both
/// databases answer.
///
/// `secrets.app` is what the userlist holds for `app`: its SCRAM verifier from `pg_authid`, the
/// configuration PgBouncer's documentation recommends. With a verifier PgBouncer checks a client's
/// proof without deriving keys (a plain-text password costs it 4096 PBKDF2 iterations per login,
/// which would handicap it under `-C`) and logs in to the server by SCRAM pass-through.
/// `secrets.md5` is bench_md5's md5 hash from `pg_authid`. `auth_type = md5` checks clients with
/// md5 where the userlist holds an md5 hash and switches to SCRAM by itself for a SCRAM secret
/// (PgBouncer's documented behaviour), so app logs in with SCRAM and bench_md5 with md5, and
/// PgBouncer logs in to the server with the same method.
///
/// Protocol-level prepared statements in transaction mode need `max_prepared_statements`
/// (PgBouncer 1.21); older versions get a second database entry in session mode, with one
/// server connection per client (`session_pool`) since a session holds its connection throughout.
///
/// `wrapper` (a program and its arguments, e.g. valgrind), when not empty, runs PgBouncer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_pgbouncer(
    pg: &Pg,
    binary: &Path,
    version: &str,
    cluster: &Cluster,
    dir: &Path,
    session_pool: u32,
    secrets: Secrets<'_>,
    wrapper: &[String],
) -> Result<Pgbouncer> {
    let Secrets {
        app: secret,
        md5: md5_secret,
    } = secrets;
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    pg.give(dir)?;
    let port = free_ports(1)?[0];
    let prepared_in_transaction = keeps_prepared_in_transaction(version);
    let server = format!("host=127.0.0.1 port={} dbname={APP}", cluster.base_port);
    let (prepared_database, prepared_mode, extra) = if prepared_in_transaction {
        (
            APP,
            format!("transaction mode, max_prepared_statements 200, pool {POOL_SIZE}"),
            "max_prepared_statements = 200\n".to_owned(),
        )
    } else {
        (
            "app_session",
            format!(
                "session mode, pool {session_pool}: {version} cannot keep protocol-level prepared \
                 statements in transaction mode (that needs 1.21's max_prepared_statements)"
            ),
            String::new(),
        )
    };
    let ini = format!(
        "; Written by `cargo xtask bench`.\n\
         [databases]\n\
         {APP} = {server}\n\
         app_session = {server} pool_mode=session pool_size={session_pool}\n\
         \n[pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = md5\n\
         auth_file = {}\n\
         pidfile = {}\n\
         pool_mode = transaction\n\
         default_pool_size = {POOL_SIZE}\n\
         max_client_conn = 2000\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         ignore_startup_parameters = extra_float_digits\n\
         {extra}",
        dir.join("userlist.txt").display(),
        dir.join("pgbouncer.pid").display(),
    );
    let files = [
        ("pgbouncer.ini", ini),
        (
            "userlist.txt",
            format!("\"{APP}\" \"{secret}\"\n\"{MD5_USER}\" \"{md5_secret}\"\n"),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        pg.give(&path)?;
    }
    println!(
        "==> starting {version} on 127.0.0.1:{port} ({})",
        dir.display()
    );
    let mut run = match wrapper.split_first() {
        Some((program, args)) => {
            let mut run = pg.as_owner(Path::new(program));
            run.args(args).arg(binary);
            run
        }
        None => pg.as_owner(binary),
    };
    run.arg(dir.join("pgbouncer.ini"));
    let mut service = Service::spawn("pgbouncer", run, dir.join("pgbouncer.log"))?;
    service.pidfile = Some(dir.join("pgbouncer.pid"));
    service.wait_ready(pg, port, APP)?;
    service.wait_ready(pg, port, prepared_database)?;
    Ok(Pgbouncer {
        service,
        port,
        prepared_database,
        prepared_mode,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pgbouncer_version() {
        assert_eq!(super::parse_version("PgBouncer 1.18.0"), Some((1, 18)));
        assert_eq!(super::parse_version("PgBouncer 1.21.0"), Some((1, 21)));
        assert_eq!(super::parse_version("nonsense"), None);
        assert!(!super::keeps_prepared_in_transaction("PgBouncer 1.18.0"));
        assert!(super::keeps_prepared_in_transaction("PgBouncer 1.21.0"));
        assert!(super::keeps_prepared_in_transaction("PgBouncer 2.0.1"));
    }

    #[test]
    fn parent_of_self() {
        let me = std::process::id();
        assert!(super::super::cpu::parent_of(me).is_some_and(|p| p != me));
    }
}
