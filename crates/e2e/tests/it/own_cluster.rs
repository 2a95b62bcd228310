//! Clusters of a test's own, for fault tests: brought up on a base port of the test's choice
//! through `$PGSPLIT_TEST_XTASK cluster --base-port P ...` (which `cargo xtask test` sets), so
//! the shared test cluster is never paused, stopped or promoted; brought down when dropped,
//! even on panic. Plus small helpers to read the proxy's admin endpoint and metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pgsplit_testkit::ClusterEnv;
use pgsplit_testkit::cluster::cluster_required;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::bounded;

/// `GET path` on the admin endpoint; the status code and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    bounded(
        Duration::from_secs(5),
        "admin response",
        stream.read_to_string(&mut raw),
    )
    .await
    .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// The value of one sample line, e.g. `pgsplit_server_up{server="replica1"}`.
pub(crate) fn metric(handle: &pgsplit::ProxyHandle, series: &str) -> Option<f64> {
    handle.metrics().render().lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')
            .and_then(|v| v.parse().ok())
    })
}

/// Polls `metric` until `want` holds, failing after `limit`; returns how long it took.
pub(crate) async fn metric_until(
    handle: &pgsplit::ProxyHandle,
    series: &str,
    limit: Duration,
    want: impl Fn(f64) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let value = metric(handle, series);
        if value.is_some_and(&want) {
            return Instant::now() - start;
        }
        assert!(
            Instant::now() - start < limit,
            "{series} is {value:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This test's own cluster, driven through xtask; brought down when dropped, even on panic.
pub(crate) struct OwnCluster {
    xtask: PathBuf,
    base_port: u16,
}

impl OwnCluster {
    /// The xtask binary from `PGSPLIT_TEST_XTASK`, or `None` (after a skip notice).
    ///
    /// # Panics
    ///
    /// When it is missing but `PGSPLIT_REQUIRE_CLUSTER=1`.
    pub(crate) fn xtask() -> Option<PathBuf> {
        match std::env::var_os("PGSPLIT_TEST_XTASK").filter(|v| !v.is_empty()) {
            Some(path) => Some(PathBuf::from(path)),
            None if cluster_required() => panic!(
                "PGSPLIT_REQUIRE_CLUSTER=1 but PGSPLIT_TEST_XTASK is not set: the health fault test \
                 cannot start its own cluster (run `cargo xtask test`, or build xtask and export \
                 PGSPLIT_TEST_XTASK=target/debug/xtask)"
            ),
            None => {
                eprintln!(
                    "skipping: PGSPLIT_TEST_XTASK is not set, so the health fault test cannot \
                     start its own cluster (run `cargo xtask test`)"
                );
                None
            }
        }
    }

    /// `xtask cluster --base-port 28432 ARGS...`, aimed at this cluster's own directory even
    /// when the environment names the shared test cluster's.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.xtask);
        let base_port = self.base_port;
        c.arg("cluster")
            .args(["--base-port", &base_port.to_string()])
            .args(args)
            .env(
                "PGSPLIT_CLUSTER_DIR",
                format!("/tmp/pgsplit-cluster-{base_port}"),
            )
            .env_remove("PGSPLIT_CLUSTER_BASE_PORT")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs a cluster command to completion, failing the test if it fails or takes over
    /// `limit`.
    pub(crate) async fn run(&self, args: &[&str], limit: Duration) {
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.kill_on_drop(true);
        let what = format!("xtask cluster {}", args.join(" "));
        let out = bounded(limit, &what, cmd.output())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The cluster as the testkit describes one.
    pub(crate) fn env(&self) -> ClusterEnv {
        let base = self.base_port;
        ClusterEnv::from_vars(
            &format!("127.0.0.1:{base}"),
            Some(&format!("127.0.0.1:{},127.0.0.1:{}", base + 1, base + 2)),
            Some("postgres:postgres"),
        )
    }

    /// The port of replica `n` (1-based).
    pub(crate) fn replica_port(&self, n: u16) -> u16 {
        self.base_port + n
    }

    /// Brings a fresh cluster up on `base_port` (primary there, two replicas after it), or
    /// `None` when the xtask binary is not available (see [`OwnCluster::xtask`]).
    pub(crate) async fn start(base_port: u16) -> Option<OwnCluster> {
        OwnCluster::start_with(base_port, &[]).await
    }

    /// [`OwnCluster::start`] with servers that also take TLS (`cluster reset --tls`), their
    /// certificate at [`OwnCluster::server_ca`].
    pub(crate) async fn start_tls(base_port: u16) -> Option<OwnCluster> {
        OwnCluster::start_with(base_port, &["--tls"]).await
    }

    async fn start_with(base_port: u16, flags: &[&str]) -> Option<OwnCluster> {
        let cluster = OwnCluster {
            xtask: OwnCluster::xtask()?,
            base_port,
        };
        let args: Vec<&str> = std::iter::once("reset")
            .chain(flags.iter().copied())
            .collect();
        cluster.run(&args, Duration::from_secs(180)).await;
        Some(cluster)
    }

    /// The CA that signed the servers' certificate, of a cluster started with `--tls`.
    pub(crate) fn server_ca(&self) -> String {
        format!("/tmp/pgsplit-cluster-{}/tls/ca.crt", self.base_port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // Blocking here is fine: the test is over either way, and the cluster must not outlive it.
        let out = self.command(&["down"]).output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!(
                "xtask cluster down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
