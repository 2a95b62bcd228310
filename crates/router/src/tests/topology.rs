//! Health reports: down at once, up after `rise`, lag and hysteresis, roles, failover and split brain.

use std::fmt::Write as _;

use super::{cluster, ms};
use crate::{HealthReport, Lag, Lsn, NodeRole, Probe, Topology, WalHistory};

/// One report: `(node, at in ms, probe)`.
type Step = (usize, u64, Probe);

const FAIL: Probe = Probe::Failed;

/// A good probe of a primary at WAL position `lsn`.
const fn p(lsn: u64) -> Probe {
    Probe::Ok {
        in_recovery: false,
        lsn: Some(Lsn(lsn)),
    }
}

/// A good probe of a replica that replayed up to `lsn`.
const fn r(lsn: u64) -> Probe {
    Probe::Ok {
        in_recovery: true,
        lsn: Some(Lsn(lsn)),
    }
}

/// `primary=0 | p up primary | r1 up replica lag=100b/2000ms excluded | ...`
fn render(t: &Topology) -> String {
    let mut out = match (t.primary, t.split_brain) {
        (_, true) => "split_brain".to_owned(),
        (Some(i), false) => format!("primary={i}"),
        (None, false) => "primary=none".to_owned(),
    };
    for n in &t.nodes {
        let role = match n.role() {
            Some(NodeRole::Primary) => "primary",
            Some(NodeRole::Replica) => "replica",
            None => "unknown",
        };
        let health = if n.is_up() { "up" } else { "down" };
        write!(out, " | {} {health} {role}", n.name).unwrap();
        if let Some(lag) = n.lag {
            write!(out, " lag={}b/{}ms", lag.bytes, lag.delay.as_millis()).unwrap();
        }
        if n.lag_excluded {
            out.push_str(" excluded");
        }
    }
    out
}

fn check(replicas: usize, steps: &[Step], expect: &str) {
    let mut t = cluster(replicas);
    for n in &mut t.nodes {
        n.lsn = None;
    }
    for &(node, at, probe) in steps {
        t.apply_health(HealthReport {
            node,
            at: ms(at),
            probe,
        });
    }
    assert_eq!(render(&t), expect, "steps: {steps:?}");
}

#[test]
fn health_transitions() {
    #[rustfmt::skip]
    let cases: &[(&str, usize, &[Step], &str)] = &[
        ("initial: configured roles, all up", 2, &[],
         "primary=0 | p up primary | r1 up replica | r2 up replica"),
        ("a failure marks down at once", 1, &[(1, 0, FAIL)],
         "primary=0 | p up primary | r1 down replica"),
        ("one success is not enough with rise 2", 1, &[(1, 0, FAIL), (1, 1, r(0))],
         "primary=0 | p up primary | r1 down replica"),
        ("rise consecutive successes bring it back", 1,
         &[(1, 0, FAIL), (1, 1, r(0)), (1, 2, r(0))],
         "primary=0 | p up primary | r1 up replica"),
        ("a failure in between restarts the count", 1,
         &[(1, 0, FAIL), (1, 1, r(0)), (1, 2, FAIL), (1, 3, r(0))],
         "primary=0 | p up primary | r1 down replica"),
        ("primary down: still the primary, but down", 1, &[(0, 0, FAIL)],
         "primary=0 | p down primary | r1 up replica"),
        ("failover: the promoted replica becomes primary", 1,
         &[(0, 0, FAIL), (1, 10, p(500))],
         "primary=1 | p down primary | r1 up primary"),
        ("old primary back as primary: split brain", 1,
         &[(0, 0, FAIL), (1, 10, p(500)), (0, 20, p(400)), (0, 30, p(400))],
         "split_brain | p up primary | r1 up primary"),
        ("old primary back as a replica: resolved", 1,
         &[(0, 0, FAIL), (1, 10, p(500)), (0, 20, p(400)), (0, 30, p(400)), (0, 40, r(500))],
         "primary=1 | p up replica lag=0b/0ms | r1 up primary"),
        ("a replica claims primary while the primary is up: split brain", 2,
         &[(2, 0, p(10))],
         "split_brain | p up primary | r1 up replica | r2 up primary"),
        ("a down claimer does not count", 2, &[(2, 0, p(10)), (2, 1, FAIL)],
         "primary=0 | p up primary | r1 up replica | r2 down primary"),
        ("unknown node index changes nothing", 1, &[(9, 0, FAIL)],
         "primary=0 | p up primary | r1 up replica"),
    ];
    for (name, replicas, steps, expect) in cases {
        eprintln!("case: {name}");
        check(*replicas, steps, expect);
    }
}

#[test]
fn lag_and_hysteresis() {
    // Limits from the fixture: 1000 bytes, 10 s.
    #[rustfmt::skip]
    let cases: &[(&str, &[Step], &str)] = &[
        ("caught up", &[(0, 0, p(5000)), (1, 0, r(5000))],
         "primary=0 | p up primary | r1 up replica lag=0b/0ms"),
        ("behind in bytes, under the limit", &[(0, 0, p(5000)), (1, 0, r(4500))],
         "primary=0 | p up primary | r1 up replica lag=500b/0ms"),
        ("over the byte limit: excluded", &[(0, 0, p(5000)), (1, 0, r(3999))],
         "primary=0 | p up primary | r1 up replica lag=1001b/0ms excluded"),
        ("back under the limit but over half: still excluded",
         &[(0, 0, p(5000)), (1, 0, r(3999)), (1, 1, r(4400))],
         "primary=0 | p up primary | r1 up replica lag=600b/1ms excluded"),
        ("exactly half: still excluded",
         &[(0, 0, p(5000)), (1, 0, r(3999)), (1, 1, r(4500))],
         "primary=0 | p up primary | r1 up replica lag=500b/1ms excluded"),
        ("under half: back",
         &[(0, 0, p(5000)), (1, 0, r(3999)), (1, 1, r(4501))],
         "primary=0 | p up primary | r1 up replica lag=499b/1ms"),
        ("time lag from primary history: primary moved past 100 at t=1s",
         &[(0, 0, p(100)), (0, 1000, p(200)), (1, 12_000, r(100))],
         "primary=0 | p up primary | r1 up replica lag=100b/11000ms excluded"),
        ("idle primary: caught up replica has no time lag however long",
         &[(0, 0, p(100)), (0, 60_000, p(100)), (1, 120_000, r(100))],
         "primary=0 | p up primary | r1 up replica lag=0b/0ms"),
        ("time lag back under half (5 s) re-admits",
         &[(0, 0, p(100)), (0, 1000, p(200)), (1, 12_000, r(100)),
           (0, 13_000, p(300)), (1, 17_999, r(200))],
         "primary=0 | p up primary | r1 up replica lag=100b/4999ms"),
        ("a primary sample updates every replica's lag",
         &[(0, 0, p(100)), (1, 0, r(100)), (0, 1, p(5000))],
         "primary=0 | p up primary | r1 up replica lag=4900b/0ms excluded"),
        ("unknown lag changes nothing", &[(1, 0, r(100))],
         "primary=0 | p up primary | r1 up replica"),
    ];
    for (name, steps, expect) in cases {
        eprintln!("case: {name}");
        check(1, steps, expect);
    }
}

#[test]
fn wal_history() {
    let mut h = WalHistory::default();
    assert_eq!(h.lag(Lsn(0), ms(0)), None);
    h.record(ms(0), Lsn(100));
    h.record(ms(500), Lsn(100)); // idle: ignored
    h.record(ms(1000), Lsn(300));
    h.record(ms(2000), Lsn(600));
    let lag = |replay, now| h.lag(Lsn(replay), ms(now)).unwrap();
    assert_eq!(lag(600, 5000), Lag::default());
    assert_eq!(lag(700, 5000), Lag::default());
    assert_eq!(
        lag(300, 5000),
        Lag {
            bytes: 300,
            delay: ms(3000)
        }
    );
    assert_eq!(
        lag(100, 5000),
        Lag {
            bytes: 500,
            delay: ms(4000)
        }
    );
    assert_eq!(
        lag(50, 5000),
        Lag {
            bytes: 550,
            delay: ms(5000)
        }
    );
    // A lower position (new timeline) starts afresh.
    h.record(ms(6000), Lsn(10));
    assert_eq!(h.latest(), Some(Lsn(10)));
    assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
}

#[test]
fn from_config() {
    let text = "\
users:
  - { name: app, password: x }
servers:
  - { name: a, host: h, role: replica, weight: 3, max_connections: 5 }
  - { name: b, host: h, role: primary }
  - { name: c, host: h, role: auto }
";
    let config = pgsplit_config::parse_with_env(text, "t.yaml", &|_| None).unwrap();
    let t = Topology::from_config(&config);
    assert_eq!(
        render(&t),
        "primary=1 | a up replica | b up primary | c up unknown"
    );
    assert_eq!((t.nodes[0].weight, t.nodes[0].max_connections), (3, 5));
}

#[test]
fn lsn_text_round_trips() {
    assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
    assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
    assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
    for bad in ["", "16", "x/1", "1/", "/1", "100000000/0"] {
        assert_eq!(Lsn::parse(bad), None, "{bad}");
    }
}
