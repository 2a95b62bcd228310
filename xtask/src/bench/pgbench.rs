//! One bounded pgbench run and the figures it yields: tps and mean latency from its summary, p99
//! from its per-transaction log files.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cpu;
use crate::cmd;
use crate::pg::Pg;

/// How much longer than `-T` a run may take before it is killed: connection setup, the last
/// transactions, and writing the logs.
const GRACE: Duration = Duration::from_secs(60);

/// Where pgbench connects: `127.0.0.1:port`, database `database`, as `user` with password `user`
/// (`app`/`app`, or `bench_md5`/`bench_md5` for the md5 workload).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint {
    pub(crate) port: u16,
    pub(crate) database: &'static str,
    pub(crate) user: &'static str,
}

/// One pgbench invocation.
pub(crate) struct Run<'a> {
    pub(crate) endpoint: Endpoint,
    /// The workload's own arguments (`-S -M simple`, ...).
    pub(crate) args: &'a [&'a str],
    pub(crate) clients: u32,
    pub(crate) secs: u32,
    /// Whether to write per-transaction logs and compute the p99 from them.
    pub(crate) log: bool,
    /// `PGAPPNAME` for pgbench's connections (else pgbench's own `pgbench`).
    pub(crate) app_name: Option<&'a str>,
    /// Whose CPU time to read around the run.
    pub(crate) watch: Watch<'a>,
}

/// The processes whose CPU time a run reports besides pgbench's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Watch<'a> {
    /// The proxy pgbench goes through (none for the direct target).
    pub(crate) proxy: Option<u32>,
    /// The postmasters of the cluster.
    pub(crate) postmasters: &'a [u32],
}

/// What a run measured; figures pgbench did not print stay `None`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Figures {
    pub(crate) tps: Option<f64>,
    /// pgbench's "latency average", in milliseconds.
    pub(crate) latency_ms: Option<f64>,
    /// 99th percentile of the per-transaction latencies, in milliseconds.
    pub(crate) p99_ms: Option<f64>,
    pub(crate) processed: u64,
    pub(crate) failed: u64,
    /// CPU time (user + system) pgbench itself used, in milliseconds, from the reaped-children
    /// times of /proc/self/stat around the run (10 ms resolution).
    pub(crate) client_cpu_ms: Option<f64>,
    /// CPU time the proxy used during the run, in milliseconds (10 ms resolution).
    pub(crate) proxy_cpu_ms: Option<f64>,
    /// CPU time the PostgreSQL servers used during the run, in milliseconds.
    pub(crate) servers_cpu_ms: Option<f64>,
    /// Why the run did not finish cleanly (non-zero exit, killed at the deadline, ...).
    pub(crate) error: Option<String>,
}

impl Run<'_> {
    /// The pgbench command line, log options included.
    fn command(&self, pg: &Pg, log_prefix: &Path) -> Command {
        let mut pgbench = pg.client("pgbench");
        pgbench.args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &self.endpoint.port.to_string(),
        ]);
        pgbench.args(["-U", self.endpoint.user, "-c", &self.clients.to_string()]);
        pgbench.args(["-j", &self.clients.min(2).to_string()]);
        pgbench.args(["-T", &self.secs.to_string()]);
        if self.log {
            pgbench
                .arg("--log")
                .arg(format!("--log-prefix={}", log_prefix.display()));
        }
        pgbench.args(self.args).arg(self.endpoint.database);
        pgbench
            .env("PGPASSWORD", self.endpoint.user)
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some(name) = self.app_name {
            pgbench.env("PGAPPNAME", name);
        }
        pgbench
    }

    /// Runs pgbench in `dir` (output and logs go there, under names starting with `tag`), killing
    /// it if it outlives `-T` by more than [`GRACE`]. A failed run is reported in the figures; only
    /// a pgbench that cannot be started is an error.
    pub(crate) fn execute(&self, pg: &Pg, dir: &Path, tag: &str) -> Result<Figures> {
        let log_prefix = dir.join(format!("{tag}-txn"));
        let (out_path, err_path) = (
            dir.join(format!("{tag}.out")),
            dir.join(format!("{tag}.err")),
        );
        let mut pgbench = self.command(pg, &log_prefix);
        pgbench.current_dir(dir).stdin(Stdio::null());
        pgbench.stdout(std::fs::File::create(&out_path)?);
        pgbench.stderr(std::fs::File::create(&err_path)?);
        println!("  $ {}", cmd::display(&pgbench));
        let cpu_before = cpu::reaped_children_ticks();
        let proxy_before = self.watch.proxy.and_then(cpu::process_ticks);
        let servers_before = cpu::servers_ticks(self.watch.postmasters);
        let mut child = pgbench
            .spawn()
            .with_context(|| format!("could not run `{}`", cmd::display(&pgbench)))?;
        let deadline = Instant::now() + Duration::from_secs(self.secs.into()) + GRACE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                // Our own child, by its handle: SIGKILL to exactly this pgbench.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let mut figures = parse_summary(&stdout);
        figures.client_cpu_ms = cpu::ms_between(cpu_before, cpu::reaped_children_ticks());
        figures.proxy_cpu_ms =
            cpu::ms_between(proxy_before, self.watch.proxy.and_then(cpu::process_ticks));
        figures.servers_cpu_ms =
            cpu::ms_between(servers_before, cpu::servers_ticks(self.watch.postmasters));
        figures.error = match status {
            None => Some(format!(
                "killed after {}s (pgbench did not finish)",
                deadline_secs(self.secs)
            )),
            Some(status) if !status.success() => Some(format!(
                "pgbench exited with {status}: {}",
                first_error(&stderr)
            )),
            Some(_) => None,
        };
        if self.log {
            let (latencies, files) = read_latencies(dir, &format!("{tag}-txn."))?;
            figures.p99_ms = percentile(latencies, 0.99).map(|us| us as f64 / 1000.0);
            for file in files {
                let _ = std::fs::remove_file(file);
            }
        }
        Ok(figures)
    }
}

fn deadline_secs(secs: u32) -> u64 {
    u64::from(secs) + GRACE.as_secs()
}

/// The most telling line of pgbench's stderr.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.contains("error") || l.contains("FATAL"))
        .or(lines.last())
        .map(|l| (*l).to_owned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Reads pgbench's summary: `tps = ...`, `latency average = ... ms`, and the transaction counts.
pub(crate) fn parse_summary(stdout: &str) -> Figures {
    let mut figures = Figures::default();
    let number = |text: &str| -> Option<f64> { text.split_whitespace().next()?.parse().ok() };
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            figures.tps = figures.tps.or(number(rest));
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            figures.latency_ms = number(rest);
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            figures.processed = rest
                .split('/')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            figures.failed = number(rest).map_or(0, |n| n as u64);
        }
    }
    figures
}

/// The latency column (third field, microseconds) of every log file in `dir` whose name starts
/// with `prefix` (pgbench writes one per thread: `<prefix><pid>` and `<prefix><pid>.<thread>`).
/// Failed or skipped transactions carry a word instead of a number and are left out.
fn read_latencies(dir: &Path, prefix: &str) -> Result<(Vec<u64>, Vec<PathBuf>)> {
    let mut latencies = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let matches = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        if !matches {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        latencies.extend(parse_log(&text));
        files.push(path);
    }
    Ok((latencies, files))
}

/// The latencies of one per-transaction log (`client_id transaction_no time script_no epoch us ...`).
pub(crate) fn parse_log(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

/// The nearest-rank percentile `q` (0 < q ≤ 1) of `values`.
pub(crate) fn percentile(mut values: Vec<u64>, q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::{parse_log, parse_summary, percentile};

    #[test]
    fn summary_of_pgbench_15() {
        let out = "\
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 61234
number of failed transactions: 3 (0.005%)
latency average = 1.306 ms
initial connection time = 24.911 ms
tps = 12246.877146 (without initial connection time)
";
        let f = parse_summary(out);
        assert_eq!(f.tps, Some(12246.877146));
        assert_eq!(f.latency_ms, Some(1.306));
        assert_eq!((f.processed, f.failed), (61234, 3));
        let f = parse_summary("tps = 812.5 (including reconnection times)\n");
        assert_eq!(f.tps, Some(812.5));
        assert_eq!(f.latency_ms, None);
    }

    #[test]
    fn log_latencies_and_percentile() {
        let log =
            "0 1 250 0 1700000000 123\n0 2 failed 0 1700000000 456\n1 1 1000 0 1700000001 7\n";
        assert_eq!(parse_log(log).collect::<Vec<_>>(), vec![250, 1000]);
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(values, 0.99), Some(990));
        assert_eq!(percentile(vec![5], 0.99), Some(5));
        assert_eq!(percentile(vec![3, 1, 2], 0.99), Some(3));
        assert_eq!(percentile(Vec::new(), 0.99), None);
    }
}
