//! One PostgreSQL server of the test cluster: its directory, configuration, start and stop, and SQL through `psql`.
//!
//! Layout of a node directory `<cluster dir>/<port>/`: `data/` (PGDATA), `postgres.log`, and the
//! unix socket `.s.PGSQL.<port>`.
//! xtask speaks SQL only through `psql` over that socket as the superuser `postgres` (trust), so it
//! needs no PostgreSQL client library.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::pg::Pg;

/// The superuser every node has, with this password for TCP logins (tests use it).
pub(crate) const SUPERUSER: &str = "postgres";

/// Settings every node gets, written to `data/pgsplit.conf` before every start.
/// `fsync` and `synchronous_commit` are off because this cluster is disposable and speed matters.
/// `max_connections` leaves room for the bench's largest moment: 64 direct clients beside two
/// pgsplit instances and PgBouncer holding their pools (see `bench/plan.rs`).
const SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
max_connections = 300
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
log_line_prefix = '%m [%p] %q%u@%d '
";

/// Client authentication: trust on the unix socket (xtask's own psql), trust for replication over
/// TCP (pg_basebackup and the walreceivers), md5 for the role `bench_md5` over TCP, SCRAM for
/// every other TCP login.
///
/// `bench_md5` exists only on the bench cluster (26432), where `cargo xtask bench` creates it with
/// an md5 password for its md5 `-C` workload (see bench/services.rs); on other clusters the line
/// names no role and changes nothing. It is written for every cluster to keep one pg_hba.conf.
const HBA: &str = "\
local all all trust
host replication all 127.0.0.1/32 trust
host all bench_md5 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
";

/// The longest unix socket path the kernel accepts is 107 bytes; keep a margin.
const MAX_SOCKET_PATH: usize = 100;

pub(crate) struct Node {
    pub(crate) port: u16,
    /// `<cluster dir>/<port>`.
    pub(crate) dir: PathBuf,
}

impl Node {
    pub(crate) fn new(cluster_dir: &Path, port: u16) -> Node {
        Node {
            port,
            dir: cluster_dir.join(port.to_string()),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `cluster_name`, which the walreceiver also uses as its `application_name`, so the primary's
    /// `pg_stat_replication` names each replica.
    pub(crate) fn name(&self) -> String {
        format!("pgsplit-{}", self.port)
    }

    /// The physical replication slot on the primary that keeps WAL for this replica.
    pub(crate) fn slot(&self) -> String {
        format!("pgsplit_{}", self.port)
    }

    pub(crate) fn has_data(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// Whether a postmaster runs on this data directory (`pg_ctl status`).
    pub(crate) fn is_running(&self, pg: &Pg) -> Result<bool> {
        if !self.has_data() {
            return Ok(false);
        }
        let mut status = pg.tool("pg_ctl");
        status.arg("status").arg("-D").arg(self.data_dir());
        let out = status
            .output()
            .with_context(|| format!("could not run `{}`", cmd::display(&status)))?;
        Ok(out.status.success())
    }

    /// Creates the node directory, owned by the PostgreSQL OS user.
    pub(crate) fn create_dir(&self, pg: &Pg) -> Result<()> {
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the unix socket path {} is too long for the kernel; choose a shorter PGSPLIT_CLUSTER_DIR",
                socket.display()
            );
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("mkdir {}", self.dir.display()))?;
        pg.give(&self.dir)
    }

    /// `initdb` a fresh primary whose superuser is `postgres`, then include our settings file.
    pub(crate) fn init(&self, pg: &Pg) -> Result<()> {
        println!(
            "==> initdb for the primary on port {} ({})",
            self.port,
            self.data_dir().display()
        );
        let mut initdb = pg.tool("initdb");
        initdb.arg("-D").arg(self.data_dir());
        initdb.args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth=trust",
            "--no-sync",
        ]);
        println!("  $ {}", cmd::display(&initdb));
        cmd::output(&mut initdb)?;
        let conf = self.data_dir().join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).with_context(|| format!("read {}", conf.display()))?;
        text.push_str(
            "\n# pgsplit test cluster: written by `cargo xtask cluster` before every start.\n",
        );
        text.push_str("include_if_exists = 'pgsplit.conf'\n");
        write(pg, &conf, &text)
    }

    /// Clones `primary` with `pg_basebackup -R` and a new replication slot.
    pub(crate) fn clone_from(&self, pg: &Pg, primary: &Node) -> Result<()> {
        println!(
            "==> pg_basebackup of port {} for the replica on port {}",
            primary.port, self.port
        );
        let drop_slot = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{}' AND NOT active",
            self.slot()
        );
        primary.query(pg, &drop_slot)?;
        let mut backup = pg.tool("pg_basebackup");
        backup.args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            SUPERUSER,
        ]);
        backup.arg("-D").arg(self.data_dir());
        backup.args([
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-C",
            "-S",
            &self.slot(),
            "--no-sync",
        ]);
        println!("  $ {}", cmd::display(&backup));
        cmd::output(&mut backup)?;
        Ok(())
    }

    /// Writes this node's settings and `pg_hba.conf`; done before every start so they always match xtask.
    fn configure(&self, pg: &Pg) -> Result<()> {
        let socket_dir = self
            .dir
            .to_str()
            .context("the cluster directory must be valid UTF-8")?;
        let mut settings = format!(
            "# Written by `cargo xtask cluster` before every start; edits are overwritten.\n\
             port = {}\nunix_socket_directories = '{}'\ncluster_name = '{}'\n{SETTINGS}",
            self.port,
            socket_dir.replace('\'', "''"),
            self.name(),
        );
        // `cluster up --tls` made a certificate: every node serves TLS with a copy of it (the
        // key owned by the server's OS user, readable by it alone, as PostgreSQL demands).
        let tls = self.dir.parent().map(crate::cluster::tls_dir);
        if let Some(tls) = tls.filter(|d| d.join("server.crt").is_file()) {
            let crt = std::fs::read_to_string(tls.join("server.crt"))
                .with_context(|| format!("read {}", tls.join("server.crt").display()))?;
            write(pg, &self.data_dir().join("server.crt"), &crt)?;
            // The key is created readable by its owner alone, then given to the server's user.
            let key = self.data_dir().join("server.key");
            let text = std::fs::read(tls.join("server.key"))
                .with_context(|| format!("read {}", tls.join("server.key").display()))?;
            let _ = std::fs::remove_file(&key);
            let mut file = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create_new(true),
                0o600,
            )
            .open(&key)
            .with_context(|| format!("create {}", key.display()))?;
            std::io::Write::write_all(&mut file, &text)
                .with_context(|| format!("write {}", key.display()))?;
            pg.give(&key)?;
            settings
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        write(pg, &self.data_dir().join("pgsplit.conf"), &settings)?;
        write(pg, &self.data_dir().join("pg_hba.conf"), HBA)
    }

    /// Starts the node unless it runs; waits until it accepts connections.
    pub(crate) fn start(&self, pg: &Pg) -> Result<()> {
        if self.is_running(pg)? {
            println!("  node {} is already running", self.port);
            return Ok(());
        }
        self.check_port_free()?;
        self.configure(pg)?;
        println!(
            "==> starting node {} (log: {})",
            self.port,
            self.log_file().display()
        );
        let mut start = pg.tool("pg_ctl");
        start
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(self.data_dir());
        start.arg("-l").arg(self.log_file());
        println!("  $ {}", cmd::display(&start));
        cmd::output(&mut start).map_err(|e| self.with_log(e))?;
        Ok(())
    }

    /// Fails when something else listens on this node's port (meant for a stopped node).
    pub(crate) fn check_port_free(&self) -> Result<()> {
        if TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            bail!(
                "port {} on 127.0.0.1 is in use by another program; choose another --base-port",
                self.port
            );
        }
        Ok(())
    }

    /// Stops the node (fast mode: roll back open transactions, disconnect clients) if it runs.
    pub(crate) fn stop(&self, pg: &Pg) -> Result<()> {
        if !self.is_running(pg)? {
            println!("  node {} is not running", self.port);
            return Ok(());
        }
        println!("==> stopping node {}", self.port);
        let mut stop = pg.tool("pg_ctl");
        stop.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(self.data_dir());
        println!("  $ {}", cmd::display(&stop));
        cmd::output(&mut stop).map_err(|e| self.with_log(e))?;
        Ok(())
    }

    /// Promotes a replica and waits until it leaves recovery.
    pub(crate) fn promote(&self, pg: &Pg) -> Result<()> {
        if !self.in_recovery(pg)? {
            bail!(
                "node {} is not a replica (not in recovery); nothing to promote",
                self.port
            );
        }
        println!("==> promoting node {}", self.port);
        let mut promote = pg.tool("pg_ctl");
        promote
            .args(["promote", "-w", "-t", "60", "-D"])
            .arg(self.data_dir());
        println!("  $ {}", cmd::display(&promote));
        cmd::output(&mut promote).map_err(|e| self.with_log(e))?;
        self.wait_for(Duration::from_secs(60), "leave recovery", || {
            Ok(!self.in_recovery(pg)?)
        })
    }

    /// `psql` as the superuser over the unix socket, quiet and unaligned, stopping at the first error.
    fn psql(&self, pg: &Pg, database: &str) -> std::process::Command {
        let mut psql = pg.tool("psql");
        psql.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir);
        psql.args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            database,
        ]);
        psql
    }

    /// Runs one SQL command in database `postgres`; returns the rows, fields separated by `|`.
    pub(crate) fn query(&self, pg: &Pg, sql: &str) -> Result<String> {
        let mut psql = self.psql(pg, "postgres");
        psql.args(["-c", sql]);
        let out =
            cmd::output(&mut psql).with_context(|| format!("SQL on node {} failed", self.port))?;
        Ok(out.trim().to_owned())
    }

    /// Runs a psql script (meta-commands such as `\gexec` and `\c` allowed) starting in database `postgres`.
    pub(crate) fn script(&self, pg: &Pg, script: &str) -> Result<()> {
        let mut psql = self.psql(pg, "postgres");
        psql.args(["-f", "-"]);
        cmd::output_with_input(&mut psql, script)
            .with_context(|| format!("SQL on node {} failed", self.port))?;
        Ok(())
    }

    pub(crate) fn in_recovery(&self, pg: &Pg) -> Result<bool> {
        Ok(self.query(pg, "SELECT pg_is_in_recovery()")? == "t")
    }

    /// Polls `done` every 100 ms until it holds or `limit` passes.
    pub(crate) fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        while !done()? {
            if start.elapsed() > limit {
                return Err(self.with_log(anyhow::anyhow!(
                    "node {} did not {what} within {}s",
                    self.port,
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Adds the end of the server log to an error, where the real reason usually is.
    pub(crate) fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        anyhow::anyhow!(
            "{error:#}\nlast lines of {}:\n{tail}",
            self.log_file().display()
        )
    }
}

/// Writes a file inside a data directory, owned by the PostgreSQL OS user (we may be root).
fn write(pg: &Pg, path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    pg.give(path)
}
