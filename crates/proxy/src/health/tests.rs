//! The health checker in-process against mock servers: roles, lag, metrics, server events,
//! reloads, failover counting, split brain and shutdown.

use std::sync::Arc;

use arc_swap::ArcSwap;

use pgsplit_config::Config;
use pgsplit_router::{Health, NodeRole, Snapshot};
use pgsplit_session::{Ctx, ServerEvent};
use pgsplit_telemetry::Metrics;
use pgsplit_testkit::{Match, MockServer, Reply, Script};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

use super::{HealthSettings, spawn_with};

/// A mock that answers the probe as a primary at `lsn` or as a replica replayed up to `lsn`.
async fn mock(in_recovery: bool, lsn: &str) -> MockServer {
    let row = vec![
        Some(if in_recovery { "t" } else { "f" }.to_owned()),
        Some(lsn.to_owned()),
        in_recovery.then(|| lsn.to_owned()),
    ];
    let script = Script::new().on(
        Match::contains("pg_is_in_recovery"),
        [Reply::Rows {
            columns: vec!["r".into(), "lsn".into(), "received".into()],
            rows: vec![row],
        }],
    );
    MockServer::start(script).await
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A config with these `(name, port, role)` servers.
fn config(servers: &[(&str, u16, &str)]) -> Config {
    let mut y = String::from("users:\n  - { name: app, password: app }\nservers:\n");
    for (name, port, role) in servers {
        y.push_str(&format!(
            "  - {{ name: {name}, host: 127.0.0.1, port: {port}, role: {role} }}\n"
        ));
    }
    pgsplit_config::parse(&y, "test.yaml").expect("a valid test config")
}

/// A running checker and the handles a test drives it with.
struct Running {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    events: mpsc::UnboundedSender<ServerEvent>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn settings_every_100ms(config: &Config) -> HealthSettings {
    HealthSettings {
        interval: Duration::from_millis(100),
        ..HealthSettings::from_config(config)
    }
}

/// Probes once at start, then only on demand (within any test's time).
fn settings_on_demand(config: &Config) -> HealthSettings {
    HealthSettings {
        interval: Duration::from_secs(600),
        ..HealthSettings::from_config(config)
    }
}

fn start(config: Config, settings_of: fn(&Config) -> HealthSettings) -> Running {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ctx, inbox) = Ctx::new(config, Arc::new(Metrics::new()), shutdown_rx);
    let events = ctx.server_events.clone();
    let events_rx = inbox.server_events;
    let task = spawn_with(&ctx, events_rx, settings_of);
    Running {
        snapshot: ctx.snapshot,
        metrics: ctx.metrics,
        events,
        shutdown,
        task,
    }
}

impl Running {
    /// The value of the sample line starting with `series` (e.g. `pgsplit_server_up{server="a"}`).
    fn metric(&self, series: &str) -> Option<f64> {
        self.metrics.render().lines().find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            rest.parse().ok()
        })
    }

    fn node<T>(&self, name: &str, f: impl Fn(&pgsplit_router::Node) -> T) -> T {
        let snap = self.snapshot.load();
        let i = snap.server_index(name).expect("a configured server");
        f(&snap.topology.nodes[i])
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .expect("the checker stops at shutdown")
            .unwrap();
    }
}

/// Waits up to `limit` for `cond`, failing with `what`.
async fn eventually(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn probes_set_roles_lag_health_and_metrics() {
    let primary = mock(false, "0/1000").await;
    let replica = mock(true, "0/E00").await;
    let dead = dead_port().await;
    let r = start(
        config(&[
            ("p", primary.addr().port(), "auto"),
            ("r", replica.addr().port(), "auto"),
            ("d", dead, "replica"),
        ]),
        settings_every_100ms,
    );
    eventually(
        "roles detected, lag known, d down",
        Duration::from_secs(3),
        || {
            let snap = r.snapshot.load();
            let t = &snap.topology;
            t.nodes[0].detected_role == Some(NodeRole::Primary)
                && t.nodes[1].detected_role == Some(NodeRole::Replica)
                && t.nodes[1].lag.is_some()
                && t.nodes[2].health == Health::Down
                && t.primary == Some(0)
        },
    )
    .await;
    assert_eq!(r.node("r", |n| n.lag.unwrap().bytes), 0x200);
    eventually("metrics follow", Duration::from_secs(2), || {
        r.metric("pgsplit_replica_lag_bytes{server=\"r\"}") == Some(512.0)
            && r.metric("pgsplit_server_up{server=\"d\"}") == Some(0.0)
    })
    .await;
    assert_eq!(r.metric("pgsplit_server_up{server=\"p\"}"), Some(1.0));
    assert_eq!(r.metric("pgsplit_server_up{server=\"r\"}"), Some(1.0));
    assert_eq!(
        r.metric("pgsplit_server_role{role=\"primary\",server=\"p\"}"),
        Some(1.0)
    );
    assert_eq!(
        r.metric("pgsplit_server_role{role=\"replica\",server=\"r\"}"),
        Some(1.0)
    );
    assert_eq!(
        r.metric("pgsplit_server_role{role=\"unknown\",server=\"d\"}"),
        Some(1.0)
    );
    assert_eq!(
        r.metric("pgsplit_replica_lag_bytes{server=\"p\"}"),
        Some(0.0)
    );
    assert!(r.metric("pgsplit_health_checks_total{result=\"ok\",server=\"p\"}") >= Some(1.0));
    assert!(r.metric("pgsplit_health_checks_total{result=\"failed\",server=\"d\"}") >= Some(1.0));
    assert_eq!(r.metric("pgsplit_split_brain"), Some(0.0));
    // The probe logs in with the first user's server credentials, to database postgres, under
    // its own application_name.
    let startup = primary
        .startups()
        .into_iter()
        .next()
        .expect("a probe connected");
    for (k, v) in [
        ("user", "app"),
        ("database", "postgres"),
        ("application_name", "pgsplit-health"),
    ] {
        assert!(
            startup.iter().any(|(a, b)| a == k && b == v),
            "{k}={v} missing from {startup:?}"
        );
    }
    // One connection is kept: many probes, one startup.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(primary.startups().len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn failure_on_real_traffic_marks_down_at_once_and_rise_brings_it_back() {
    let primary = mock(false, "0/1000").await;
    let replica = mock(true, "0/1000").await;
    let r = start(
        config(&[
            ("p", primary.addr().port(), "primary"),
            ("r", replica.addr().port(), "replica"),
        ]),
        settings_on_demand,
    );
    let ok = |r: &Running, s: &str| {
        r.metric(&format!(
            "pgsplit_health_checks_total{{result=\"ok\",server=\"{s}\"}}"
        ))
        .unwrap_or(0.0)
    };
    eventually("first probes", Duration::from_secs(2), || {
        ok(&r, "p") == 1.0 && ok(&r, "r") == 1.0
    })
    .await;
    r.events
        .send(ServerEvent::Failed { server: "p".into() })
        .unwrap();
    eventually("p marked down", Duration::from_secs(1), || {
        r.node("p", |n| n.health) == Health::Down
    })
    .await;
    // The failure triggers a probe of p at once; one good probe is not enough (rise 2).
    eventually("p probed again", Duration::from_secs(1), || {
        ok(&r, "p") == 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.node("p", |n| n.health), Health::Down);
    assert_eq!(r.snapshot.load().topology.usable_primary(), None);
    assert_eq!(r.metric("pgsplit_server_up{server=\"p\"}"), Some(0.0));
    // Losing the primary re-checks every server's role at once, once.
    eventually(
        "r re-checked when the primary was lost",
        Duration::from_secs(1),
        || ok(&r, "r") == 2.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ok(&r, "r"), 2.0, "the loss is acted on once");
    // A read-only error re-checks every server at once: the second good probe brings p back.
    r.events
        .send(ServerEvent::ReadOnly { server: "p".into() })
        .unwrap();
    eventually("p up again", Duration::from_secs(1), || {
        r.node("p", |n| n.health) == Health::Up
    })
    .await;
    eventually("r re-checked", Duration::from_secs(1), || {
        ok(&r, "r") == 3.0
    })
    .await;
    // A replica's failure probes that replica only: the primary is not lost.
    r.events
        .send(ServerEvent::Failed { server: "r".into() })
        .unwrap();
    eventually("r probed again", Duration::from_secs(1), || {
        ok(&r, "r") == 4.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ok(&r, "p"), 3.0, "only the failed replica is probed again");
    assert_eq!(r.snapshot.load().topology.usable_primary(), Some(0));
    eventually("metrics follow", Duration::from_secs(1), || {
        r.metric("pgsplit_server_up{server=\"p\"}") == Some(1.0)
    })
    .await;
    // An event about a server that is not configured changes nothing.
    r.events
        .send(ServerEvent::Failed {
            server: "nope".into(),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.snapshot.load().topology.usable_primary(), Some(0));
    r.stop().await;
}

#[tokio::test]
async fn follows_reloads_and_counts_a_failover() {
    let primary = mock(false, "0/1000").await;
    let replica = mock(true, "0/1000").await;
    let (pp, rp) = (primary.addr().port(), replica.addr().port());
    let r = start(config(&[("a", pp, "auto")]), settings_every_100ms);
    eventually("a is the primary", Duration::from_secs(2), || {
        r.node("a", |n| n.detected_role) == Some(NodeRole::Primary)
    })
    .await;
    // A reload adds b (listed first, so indexes shift) at the replica.
    r.snapshot.store(Arc::new(Snapshot::new(config(&[
        ("b", rp, "auto"),
        ("a", pp, "auto"),
    ]))));
    eventually("b probed, a still primary", Duration::from_secs(2), || {
        r.node("b", |n| n.detected_role) == Some(NodeRole::Replica)
            && r.node("a", |n| n.detected_role) == Some(NodeRole::Primary)
    })
    .await;
    assert_eq!(r.metric("pgsplit_failovers_total"), Some(0.0));
    // The servers swap addresses: b is now the primary, a failover from a to b.
    r.snapshot.store(Arc::new(Snapshot::new(config(&[
        ("b", pp, "auto"),
        ("a", rp, "auto"),
    ]))));
    eventually("b became the primary", Duration::from_secs(2), || {
        let snap = r.snapshot.load();
        snap.topology.primary == snap.server_index("b")
            && r.node("a", |n| n.detected_role) == Some(NodeRole::Replica)
    })
    .await;
    eventually("failover counted", Duration::from_secs(1), || {
        r.metric("pgsplit_failovers_total") == Some(1.0)
    })
    .await;
    // A reload removes a: its series go away.
    r.snapshot
        .store(Arc::new(Snapshot::new(config(&[("b", pp, "auto")]))));
    eventually("a's series removed", Duration::from_secs(2), || {
        r.metric("pgsplit_server_up{server=\"a\"}").is_none()
    })
    .await;
    assert_eq!(r.metric("pgsplit_server_up{server=\"b\"}"), Some(1.0));
    r.stop().await;
}

#[tokio::test]
async fn two_primaries_are_a_split_brain() {
    let one = mock(false, "0/1000").await;
    let two = mock(false, "0/2000").await;
    let r = start(
        config(&[
            ("one", one.addr().port(), "auto"),
            ("two", two.addr().port(), "auto"),
        ]),
        settings_every_100ms,
    );
    eventually("split brain", Duration::from_secs(2), || {
        r.snapshot.load().topology.split_brain
    })
    .await;
    eventually("split brain gauge", Duration::from_secs(1), || {
        r.metric("pgsplit_split_brain") == Some(1.0)
    })
    .await;
    assert_eq!(
        r.metric("pgsplit_split_brains_total"),
        Some(1.0),
        "one episode so far"
    );
    assert_eq!(r.snapshot.load().topology.usable_primary(), None);
    r.stop().await;
}
