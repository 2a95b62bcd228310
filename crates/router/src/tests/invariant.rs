//! Property test: nothing but a read ever reaches a replica, whatever the topology, hints, rules or session.
//!
//! A small xorshift generator (seeded, so failures reproduce) draws thousands of random
//! topologies, policies, sessions and classifications; every decision is checked against
//! the invariant and against the eligibility rules for the replica it names.

use std::sync::Arc;
use std::time::Duration;

use pgsplit_classify::{
    Class, Classification, Isolation, Reason, SetKind, Target as Hint, TxnMode,
};
use pgsplit_config::Role;

use crate::{
    Action, BalancePolicy, Balancer, Consistency, Health, HealthParams, HealthReport, LastWrite,
    Lsn, Match, Node, NodeRole, Policy, PrimaryReads, Probe, RouteOverride, RouteReason, Rule,
    RuleTarget, SessionView, Target, Topology, Unit, replica_capable, route,
};

/// xorshift64*: tiny, deterministic, good enough to explore a state space.
pub(super) fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A number in `0..n` (`n > 0`).
pub(super) fn below(state: &mut u64, n: usize) -> usize {
    (next(state) % n as u64) as usize
}

fn coin(state: &mut u64) -> bool {
    next(state) & 1 == 1
}

fn pick<T: Copy>(state: &mut u64, items: &[T]) -> T {
    items[below(state, items.len())]
}

fn opt_bool(s: &mut u64) -> Option<bool> {
    pick(s, &[None, Some(false), Some(true)])
}

fn random_class(s: &mut u64) -> Classification {
    let mode = TxnMode {
        read_only: opt_bool(s),
        isolation: pick(
            s,
            &[
                None,
                Some(Isolation::ReadCommitted),
                Some(Isolation::RepeatableRead),
                Some(Isolation::Serializable),
            ],
        ),
        deferrable: opt_bool(s),
    };
    let class = pick(
        s,
        &[
            Class::Read,
            Class::Write,
            Class::Unknown,
            Class::TxnBegin(mode),
            Class::TxnEnd,
            Class::Savepoint,
            Class::SessionSet(SetKind::Set { local: false }),
            Class::SessionSet(SetKind::SessionDefaults(mode)),
            Class::Cursor,
        ],
    );
    let mut c = Classification::new(class, Reason::Select);
    c.hint = pick(s, &[None, Some(Hint::Primary), Some(Hint::Replica)]);
    if coin(s) {
        c.tables = vec![pick(s, &["users", "public.orders"]).to_owned()];
    }
    c
}

fn random_node(s: &mut u64, i: usize) -> Node {
    let role = |s: &mut u64| pick(s, &[None, Some(NodeRole::Primary), Some(NodeRole::Replica)]);
    Node {
        name: format!("n{i}"),
        configured_role: pick(s, &[Role::Primary, Role::Replica, Role::Auto]),
        detected_role: role(s),
        health: pick(s, &[Health::Up, Health::Up, Health::Down]),
        successes: below(s, 3) as u32,
        weight: 1 + below(s, 4) as u32,
        max_connections: below(s, 8),
        busy: below(s, 5),
        lsn: pick(s, &[None, Some(Lsn(900)), Some(Lsn(1000)), Some(Lsn(1100))]),
        lag: None,
        lag_excluded: below(s, 4) == 0,
        pool_full: below(s, 4) == 0,
    }
}

fn random_topology(s: &mut u64) -> Topology {
    let nodes = (0..1 + below(s, 5)).map(|i| random_node(s, i)).collect();
    let mut t = Topology::new(nodes, HealthParams::default());
    // Sometimes lie about the derived fields too: the router must not rely on them
    // being consistent for safety.
    if below(s, 8) == 0 {
        t.primary = Some(below(s, t.nodes.len()));
    }
    if below(s, 8) == 0 {
        t.split_brain = coin(s);
    }
    // And sometimes feed it reports.
    for _ in 0..below(s, 4) {
        let node = below(s, t.nodes.len() + 1);
        let probe = if coin(s) {
            Probe::Failed
        } else {
            Probe::Ok {
                in_recovery: coin(s),
                lsn: Some(Lsn(next(s) % 2000)),
            }
        };
        t.apply_health(HealthReport {
            node,
            at: Duration::from_millis(below(s, 5000) as u64),
            probe,
        });
    }
    t
}

fn random_consistency(s: &mut u64) -> Consistency {
    pick(
        s,
        &[
            Consistency::Eventual,
            Consistency::Session,
            Consistency::PrimaryAfterWrite(Duration::from_millis(500)),
        ],
    )
}

fn random_policy(s: &mut u64) -> Policy {
    let rules = (0..below(s, 3))
        .map(|i| Rule {
            name: format!("rules[{i}]"),
            when: Match {
                kinds: if coin(s) {
                    vec![pick(s, &["read", "write", "unknown", "txn_begin"]).to_owned()]
                } else {
                    Vec::new()
                },
                tables: if coin(s) {
                    vec!["users".into()]
                } else {
                    Vec::new()
                },
                ..Match::default()
            },
            then: Action {
                target: pick(
                    s,
                    &[None, Some(RuleTarget::Primary), Some(RuleTarget::Replica)],
                ),
                consistency: if coin(s) {
                    Some(random_consistency(s))
                } else {
                    None
                },
                block: (below(s, 10) == 0).then(|| Arc::from("blocked")),
            },
        })
        .collect();
    Policy {
        balance: pick(
            s,
            &[
                BalancePolicy::RoundRobin,
                BalancePolicy::LeastConnections,
                BalancePolicy::WeightedLeastConnections,
            ],
        ),
        primary_reads: pick(
            s,
            &[
                PrimaryReads::Never,
                PrimaryReads::Fallback,
                PrimaryReads::Always,
            ],
        ),
        consistency: random_consistency(s),
        causal_wait: Duration::from_millis(pick(s, &[0, 200])),
        write_wait: Duration::from_millis(pick(s, &[0, 1000])),
        rules,
    }
}

fn random_session(s: &mut u64) -> SessionView {
    SessionView {
        in_transaction: below(s, 6) == 0,
        pinned: below(s, 6) == 0,
        route_override: pick(
            s,
            &[
                RouteOverride::Auto,
                RouteOverride::Primary,
                RouteOverride::Replica,
            ],
        ),
        consistency: if coin(s) {
            Some(random_consistency(s))
        } else {
            None
        },
        last_write: coin(s).then(|| LastWrite {
            at: Duration::from_millis(below(s, 2000) as u64),
            lsn: pick(s, &[None, Some(Lsn(950)), Some(Lsn(1050))]),
        }),
        default_read_only: coin(s),
        default_serializable: coin(s),
        user: "app".into(),
        database: "app".into(),
        application_name: String::new(),
        waiting_since: pick(
            s,
            &[None, Some(Duration::ZERO), Some(Duration::from_millis(900))],
        ),
    }
}

#[test]
fn nothing_but_a_read_reaches_a_replica() {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut balancer = Balancer::new();
    let mut to_replica = 0;
    let mut guarded = 0;
    for case in 0..50_000 {
        let topology = random_topology(&mut s);
        let policy = random_policy(&mut s);
        let session = random_session(&mut s);
        let class = random_class(&mut s);
        let now = Duration::from_millis(below(&mut s, 3000) as u64);
        let unit = Unit {
            class: &class,
            sql: "SELECT 1",
            fingerprint: None,
        };
        let got = route(&unit, &session, &topology, &policy, &mut balancer, now);
        let ctx =
            || format!("case {case}: {got}\n{class:?}\n{session:?}\n{topology:?}\n{policy:?}");
        let capable = replica_capable(class.class, &session);
        if !capable {
            guarded += 1;
            assert!(!matches!(got.target, Target::Replica(_)), "{}", ctx());
        }
        // Independently of replica_capable: the classes that must never go there.
        if !matches!(class.class, Class::Read | Class::TxnBegin(_)) {
            assert!(!capable, "{}", ctx());
        }
        if let Target::Replica(i) = got.target {
            to_replica += 1;
            assert!(capable, "{}", ctx());
            if let Class::TxnBegin(mode) = class.class {
                let read_only = mode.read_only.unwrap_or(session.default_read_only);
                let serializable = mode.isolation.map_or(session.default_serializable, |i| {
                    i == Isolation::Serializable
                });
                assert!(read_only && !serializable, "{}", ctx());
            }
            let node = &topology.nodes[i];
            assert_eq!(node.role(), Some(NodeRole::Replica), "{}", ctx());
            assert!(node.is_up() && !node.lag_excluded, "{}", ctx());
            assert_ne!(topology.primary, Some(i), "{}", ctx());
            if got.reason != RouteReason::PoolFull {
                assert!(!node.is_full(), "{}", ctx());
            }
        }
        if let Target::Primary(i) = got.target {
            assert!(!topology.split_brain, "{}", ctx());
            assert_eq!(topology.primary, Some(i), "{}", ctx());
            assert!(topology.nodes[i].is_up(), "{}", ctx());
        }
    }
    // The generator must actually exercise both sides.
    assert!(
        to_replica > 500 && guarded > 20_000,
        "{to_replica} {guarded}"
    );
}
