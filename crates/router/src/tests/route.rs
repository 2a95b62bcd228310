//! Routing decisions, data-driven: one fixture, one mutation per case, the expected route as text.

use std::time::Duration;

use pgsplit_classify::{
    Class, Classification, Isolation, Reason, SetKind, Target as Hint, TxnMode,
};

use super::{cluster, ms};
use crate::{
    Action, Balancer, Consistency, Health, LastWrite, Lsn, Match, Policy, PrimaryReads, Route,
    RouteOverride, RouteReason, Rule, RuleTarget, SessionView, Topology, Unit, route,
};

/// Everything one decision reads. The default: primary 0, replicas 1 and 2 (all up, at
/// LSN 1000, room for 10 connections), a plain read, default policy, now = 100 s.
struct Fx {
    class: Classification,
    sql: &'static str,
    session: SessionView,
    topology: Topology,
    policy: Policy,
    now: Duration,
}

/// A case: name, how it changes the fixture, the expected route.
type Case = (&'static str, fn(&mut Fx), &'static str);

fn fx() -> Fx {
    Fx {
        class: Classification::new(Class::Read, Reason::Select),
        sql: "SELECT * FROM users",
        session: SessionView {
            user: "app".into(),
            database: "app".into(),
            application_name: "web".into(),
            ..SessionView::default()
        },
        topology: cluster(2),
        policy: Policy::default(),
        now: ms(100_000),
    }
}

fn decide(f: &Fx, balancer: &mut Balancer) -> Route {
    let unit = Unit {
        class: &f.class,
        sql: f.sql,
        fingerprint: Some("fp1"),
    };
    route(&unit, &f.session, &f.topology, &f.policy, balancer, f.now)
}

fn check(name: &str, setup: fn(&mut Fx), expect: &str) {
    let mut f = fx();
    setup(&mut f);
    let got = decide(&f, &mut Balancer::new()).to_string();
    assert_eq!(got, expect, "case: {name}");
}

fn class(c: Class) -> Classification {
    Classification::new(c, Reason::Dml)
}

fn begin(read_only: Option<bool>, isolation: Option<Isolation>) -> Classification {
    class(Class::TxnBegin(TxnMode {
        read_only,
        isolation,
        deferrable: None,
    }))
}

fn rule(when: Match, then: Action) -> Rule {
    Rule {
        name: "rules[0]".into(),
        when,
        then,
    }
}

fn target(t: RuleTarget) -> Action {
    Action {
        target: Some(t),
        ..Action::default()
    }
}

fn down(f: &mut Fx, nodes: &[usize]) {
    for &i in nodes {
        f.topology.nodes[i].health = Health::Down;
    }
}

fn wrote(f: &mut Fx, lsn: Option<u64>) {
    f.session.last_write = Some(LastWrite {
        at: ms(99_500),
        lsn: lsn.map(Lsn),
    });
}

#[test]
fn classes() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("read", |_| {}, "replica:1 read_replica"),
        ("write", |f| f.class = class(Class::Write), "primary:0 write"),
        ("unknown", |f| f.class = Classification::unknown(Reason::Unparsed), "primary:0 unparsed"),
        ("begin", |f| f.class = begin(None, None), "primary:0 txn_begin"),
        ("begin read write", |f| f.class = begin(Some(false), None), "primary:0 txn_begin"),
        ("begin read only", |f| f.class = begin(Some(true), None), "replica:1 txn_read_only"),
        ("begin read only serializable",
         |f| f.class = begin(Some(true), Some(Isolation::Serializable)), "primary:0 serializable"),
        ("begin read only repeatable read",
         |f| f.class = begin(Some(true), Some(Isolation::RepeatableRead)), "replica:1 txn_read_only"),
        ("bare begin, default_transaction_read_only",
         |f| { f.class = begin(None, None); f.session.default_read_only = true },
         "replica:1 txn_read_only"),
        ("bare begin, read only by default, serializable by default",
         |f| { f.class = begin(None, None); f.session.default_read_only = true;
               f.session.default_serializable = true },
         "primary:0 serializable"),
        ("begin read write overrides the read-only default",
         |f| { f.class = begin(Some(false), None); f.session.default_read_only = true },
         "primary:0 txn_begin"),
        ("set", |f| f.class = class(Class::SessionSet(SetKind::Set { local: false })),
         "primary:0 session_set"),
        ("commit outside a transaction", |f| f.class = class(Class::TxnEnd), "primary:0 txn_control"),
        ("savepoint", |f| f.class = class(Class::Savepoint), "primary:0 txn_control"),
        ("fetch outside a transaction", |f| f.class = class(Class::Cursor), "primary:0 cursor"),
        ("in a transaction", |f| { f.class = class(Class::Write); f.session.in_transaction = true },
         "stay in_transaction"),
        ("pinned read", |f| f.session.pinned = true, "stay pinned"),
    ];
    for (name, setup, expect) in cases {
        check(name, *setup, expect);
    }
}

#[test]
fn hints_overrides_and_rules() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("hint primary", |f| f.class.hint = Some(Hint::Primary), "primary:0 hint_primary"),
        ("hint replica", |f| f.class.hint = Some(Hint::Replica), "replica:1 hint_replica"),
        ("hint replica on a write is ignored",
         |f| { f.class = class(Class::Write); f.class.hint = Some(Hint::Replica) }, "primary:0 write"),
        ("hint replica on unparsed is ignored",
         |f| { f.class = Classification::unknown(Reason::Unparsed); f.class.hint = Some(Hint::Replica) },
         "primary:0 unparsed"),
        ("session override primary", |f| f.session.route_override = RouteOverride::Primary,
         "primary:0 session_primary"),
        ("session override replica", |f| f.session.route_override = RouteOverride::Replica,
         "replica:1 session_replica"),
        ("session override replica on a write is ignored",
         |f| { f.class = class(Class::Write); f.session.route_override = RouteOverride::Replica },
         "primary:0 write"),
        ("hint beats the session override",
         |f| { f.class.hint = Some(Hint::Replica); f.session.route_override = RouteOverride::Primary },
         "replica:1 hint_replica"),
        ("rule target primary by table",
         |f| { f.class.tables = vec!["public.users".into()];
               f.policy.rules = vec![rule(Match { tables: vec!["users".into()], ..Match::default() },
                                          target(RuleTarget::Primary))] },
         "primary:0 rule rule:0"),
        ("rule on a table the unit does not touch",
         |f| { f.class.tables = vec!["public.orders".into()];
               f.policy.rules = vec![rule(Match { tables: vec!["users".into()], ..Match::default() },
                                          target(RuleTarget::Primary))] },
         "replica:1 read_replica"),
        ("rule target replica on a write is ignored",
         |f| { f.class = class(Class::Write);
               f.policy.rules = vec![rule(Match::default(), target(RuleTarget::Replica))] },
         "primary:0 write rule:0"),
        ("hint beats a rule target",
         |f| { f.class.hint = Some(Hint::Replica);
               f.policy.rules = vec![rule(Match::default(), target(RuleTarget::Primary))] },
         "replica:1 hint_replica rule:0"),
        ("rule block", |f| f.policy.rules = vec![rule(Match::default(),
             Action { block: Some("no reports at noon".into()), ..Action::default() })],
         "refuse:blocked(no reports at noon) blocked rule:0"),
        ("block applies inside a transaction",
         |f| { f.session.in_transaction = true;
               f.policy.rules = vec![rule(Match::default(),
                   Action { block: Some("no".into()), ..Action::default() })] },
         "refuse:blocked(no) blocked rule:0"),
        ("a non-blocking rule inside a transaction: stay",
         |f| { f.session.in_transaction = true;
               f.policy.rules = vec![rule(Match::default(), target(RuleTarget::Primary))] },
         "stay in_transaction rule:0"),
        ("block beats pinning",
         |f| { f.session.pinned = true;
               f.policy.rules = vec![rule(Match::default(),
                   Action { block: Some("no".into()), ..Action::default() })] },
         "refuse:blocked(no) blocked rule:0"),
        ("first match wins",
         |f| f.policy.rules = vec![
             rule(Match { users: vec!["other".into()], ..Match::default() }, target(RuleTarget::Replica)),
             rule(Match { users: vec!["app".into()], ..Match::default() }, target(RuleTarget::Primary)),
             rule(Match::default(), target(RuleTarget::Replica))],
         "primary:0 rule rule:1"),
        ("rule by database, application_name, kind, function, fingerprint and regex",
         |f| { f.class.functions = vec!["pg_catalog.now".into()];
               f.policy.rules = vec![rule(Match {
                   databases: vec!["app".into()], application_names: vec!["web".into()],
                   kinds: vec!["read".into()], functions: vec!["now".into()],
                   fingerprints: vec!["fp1".into()],
                   regex: Some(regex::Regex::new("(?i)from\\s+users").unwrap()),
                   ..Match::default() }, target(RuleTarget::Primary))] },
         "primary:0 rule rule:0"),
        ("rule whose regex does not match",
         |f| f.policy.rules = vec![rule(Match {
                 regex: Some(regex::Regex::new("orders").unwrap()), ..Match::default() },
                 target(RuleTarget::Primary))],
         "replica:1 read_replica"),
        ("rule whose kind does not match",
         |f| f.policy.rules = vec![rule(Match { kinds: vec!["write".into()], ..Match::default() },
                 target(RuleTarget::Primary))],
         "replica:1 read_replica"),
    ];
    for (name, setup, expect) in cases {
        check(name, *setup, expect);
    }
}

#[test]
fn eligibility_and_fallbacks() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("first replica down", |f| down(f, &[1]), "replica:2 read_replica"),
        ("all replicas down: primary fallback", |f| down(f, &[1, 2]), "primary:0 read_primary_fallback"),
        ("all replicas down, primary_reads never",
         |f| { down(f, &[1, 2]); f.policy.primary_reads = PrimaryReads::Never },
         "refuse:no_replica no_replica"),
        ("lag excluded", |f| f.topology.nodes[1].lag_excluded = true, "replica:2 read_replica"),
        ("full", |f| f.topology.nodes[1].busy = 10, "replica:2 read_replica"),
        ("the session's pool full", |f| f.topology.nodes[1].pool_full = true, "replica:2 read_replica"),
        ("both pools full: the read waits on the least loaded replica, not the primary",
         |f| { f.topology.nodes[1].pool_full = true; f.topology.nodes[2].pool_full = true;
               f.topology.nodes[2].busy = 3 },
         "replica:1 pool_full"),
        ("one server full, the other's pool full: wait on the replica",
         |f| { f.topology.nodes[1].busy = 10; f.topology.nodes[2].pool_full = true },
         "replica:2 pool_full"),
        ("all full: primary fallback",
         |f| { f.topology.nodes[1].busy = 10; f.topology.nodes[2].busy = 12 },
         "primary:0 read_primary_fallback"),
        ("all full, never: queue on the least loaded",
         |f| { f.topology.nodes[1].busy = 12; f.topology.nodes[2].busy = 10;
               f.policy.primary_reads = PrimaryReads::Never },
         "replica:2 pool_full"),
        ("all full, primary down: queue on a replica",
         |f| { f.topology.nodes[1].busy = 10; f.topology.nodes[2].busy = 10; down(f, &[0]) },
         "replica:1 pool_full"),
        ("primary_reads always: the primary is a candidate",
         |f| f.policy.primary_reads = PrimaryReads::Always, "primary:0 read_primary"),
        ("a server of unknown role never takes reads",
         |f| { f.topology.nodes[1].detected_role = None;
               f.topology.nodes[1].configured_role = pgsplit_config::Role::Auto },
         "replica:2 read_replica"),
        ("write, primary down: wait for failover", |f| { f.class = class(Class::Write); down(f, &[0]) },
         "wait:110000ms no_primary"),
        ("write, primary down, the wait started 10 s ago: refused",
         |f| { f.class = class(Class::Write); down(f, &[0]); f.session.waiting_since = Some(ms(90_000)) },
         "refuse:no_primary no_primary"),
        ("write, no primary known", |f| { f.class = class(Class::Write); f.topology.primary = None },
         "wait:110000ms no_primary"),
        ("write during split brain", |f| { f.class = class(Class::Write); f.topology.split_brain = true;
                                           f.topology.primary = None },
         "refuse:split_brain split_brain"),
        ("read during split brain goes on", |f| { f.topology.split_brain = true; f.topology.primary = None },
         "replica:1 read_replica"),
        ("read, everything down: wait for a primary", |f| down(f, &[0, 1, 2]), "wait:110000ms no_primary"),
    ];
    for (name, setup, expect) in cases {
        check(name, *setup, expect);
    }
}

#[test]
fn consistency() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("session: no write yet", |_| {}, "replica:1 read_replica"),
        ("session: only the caught-up replica",
         |f| { wrote(f, Some(1500)); f.topology.nodes[2].lsn = Some(Lsn(1500)) },
         "replica:2 read_replica"),
        ("session: none caught up, no causal wait", |f| wrote(f, Some(1500)),
         "primary:0 session_consistency"),
        ("session: none caught up, primary_reads never still reads the primary",
         |f| { wrote(f, Some(1500)); f.policy.primary_reads = PrimaryReads::Never },
         "primary:0 session_consistency"),
        ("session: none caught up, causal wait",
         |f| { wrote(f, Some(1500)); f.policy.causal_wait = ms(500) },
         "wait:100500ms session_consistency"),
        ("session: causal wait over",
         |f| { wrote(f, Some(1500)); f.policy.causal_wait = ms(500);
               f.session.waiting_since = Some(ms(99_500)) },
         "primary:0 session_consistency"),
        ("session: write position unknown", |f| wrote(f, None), "primary:0 session_consistency"),
        ("session: replica position unknown",
         |f| { wrote(f, Some(10)); f.topology.nodes[1].lsn = None },
         "replica:2 read_replica"),
        ("eventual", |f| { wrote(f, Some(1500)); f.policy.consistency = Consistency::Eventual },
         "replica:1 read_replica"),
        ("session-level eventual",
         |f| { wrote(f, Some(1500)); f.session.consistency = Some(Consistency::Eventual) },
         "replica:1 read_replica"),
        ("rule consistency beats the session's",
         |f| { wrote(f, Some(1500)); f.session.consistency = Some(Consistency::Eventual);
               f.policy.rules = vec![rule(Match::default(), Action {
                   consistency: Some(Consistency::Session), ..Action::default() })] },
         "primary:0 session_consistency rule:0"),
        ("hint replica reads eventually", |f| { wrote(f, Some(1500)); f.class.hint = Some(Hint::Replica) },
         "replica:1 hint_replica"),
        ("primary_after_write: inside the window",
         |f| { wrote(f, Some(1500));
               f.policy.consistency = Consistency::PrimaryAfterWrite(ms(1000)) },
         "primary:0 after_write_window"),
        ("primary_after_write: after the window",
         |f| { wrote(f, Some(1500)); f.now = ms(100_500);
               f.policy.consistency = Consistency::PrimaryAfterWrite(ms(1000)) },
         "replica:1 read_replica"),
        ("read-only transaction honours session consistency",
         |f| { f.class = begin(Some(true), None); wrote(f, Some(1500)) },
         "primary:0 session_consistency"),
    ];
    for (name, setup, expect) in cases {
        check(name, *setup, expect);
    }
}

#[test]
fn spreads_reads_by_weight() {
    let mut f = fx();
    f.topology.nodes[2].weight = 3;
    let mut balancer = Balancer::new();
    let mut counts = [0usize; 3];
    for _ in 0..400 {
        match decide(&f, &mut balancer).target {
            crate::Target::Replica(i) => counts[i] += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(counts, [0, 100, 300]);
}

#[test]
fn reason_names_are_stable_and_unique() {
    let mut names: Vec<&str> = RouteReason::ALL.iter().map(|r| r.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    let len = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), len);
}
