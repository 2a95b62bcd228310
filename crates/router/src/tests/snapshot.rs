//! Building routing from a config (`Routing::from_config`), and carrying topology over a reload.

use std::time::Duration;

use pgsplit_classify::{Class, Reason};

use super::ms;
use crate::{
    Action, BalancePolicy, Balancer, Consistency, Health, HealthParams, HealthReport, LagLimits,
    Lsn, NodeRole, PrimaryReads, Probe, Routing, RuleTarget, SessionView, Snapshot, Topology, Unit,
    route,
};

fn parse(text: &str) -> pgsplit_config::Config {
    pgsplit_config::parse_with_env(text, "t.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

const SERVERS: &str = "\
users:
  - { name: app, password: x }
servers:
  - { name: p, host: h, port: 1, role: primary }
  - { name: r1, host: h, port: 2, role: replica }
  - { name: r2, host: h, port: 3, role: replica }
";

const RULES: &str = "\
primary_reads: never
balance: least_connections
consistency: { primary_after_write: 3s }
causal_wait: 200ms
failover: { write_wait: 4s }
rules:
  - name: big
    match:
      regex: \"(?i)^select .* from big_table\"
    target: replica
    consistency: eventual
  - match: { user: reporting, kind: [read, write] }
    block: \"reporting is read-only here\"
  - match: { tables: orders, fingerprint: 0A1B2C3D4E5F6789 }
    target: primary
  - consistency: session
";

#[test]
fn policy_comes_from_the_config() {
    let routing = Routing::from_config(&parse(&format!("{SERVERS}{RULES}")));
    let p = &routing.policy;
    assert_eq!(p.primary_reads, PrimaryReads::Never);
    assert_eq!(p.balance, BalancePolicy::LeastConnections);
    assert_eq!(
        p.consistency,
        Consistency::PrimaryAfterWrite(Duration::from_secs(3))
    );
    assert_eq!(p.causal_wait, ms(200));
    assert_eq!(p.write_wait, Duration::from_secs(4));
    let names: Vec<&str> = p.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["big", "rules[1]", "rules[2]", "rules[3]"]);

    let big = &p.rules[0];
    assert_eq!(
        big.then,
        Action {
            target: Some(RuleTarget::Replica),
            consistency: Some(Consistency::Eventual),
            block: None,
        }
    );
    let re = big.when.regex.as_ref().expect("regex compiled");
    assert!(re.is_match("SELECT count(*) FROM big_table"));
    assert!(!re.is_match("SELECT 1 FROM small_table"));

    let blocker = &p.rules[1];
    assert_eq!(blocker.when.users, ["reporting"]);
    assert_eq!(blocker.when.kinds, ["read", "write"]);
    assert_eq!(
        blocker.then.block.as_deref(),
        Some("reporting is read-only here")
    );
    assert_eq!(p.rules[2].when.tables, ["orders"]);
    assert_eq!(p.rules[2].when.fingerprints, ["0a1b2c3d4e5f6789"]);
    assert_eq!(p.rules[3].then.consistency, Some(Consistency::Session));
    assert!(routing.needs_fingerprint());

    let defaults = Routing::from_config(&parse(SERVERS));
    assert_eq!(defaults.policy.primary_reads, PrimaryReads::Fallback);
    assert_eq!(defaults.policy.balance, BalancePolicy::LeastConnections);
    assert_eq!(defaults.policy.consistency, Consistency::Session);
    assert_eq!(defaults.policy.write_wait, Duration::from_secs(10));
    assert!(defaults.policy.rules.is_empty());
    assert!(!defaults.needs_fingerprint());
}

#[test]
fn rules_route_in_order_first_match_wins() {
    let config = parse(&format!("{SERVERS}{RULES}"));
    let routing = Routing::from_config(&config);
    let topology = Topology::from_config(&config);
    let decide = |sql: &str, user: &str| {
        let class = routing.classifier.classify(sql);
        let unit = Unit {
            class: &class,
            sql,
            fingerprint: None,
        };
        let session = SessionView {
            user: user.into(),
            database: "app".into(),
            ..SessionView::default()
        };
        let policy = &routing.policy;
        route(
            &unit,
            &session,
            &topology,
            policy,
            &mut Balancer::new(),
            ms(1000),
        )
        .to_string()
    };
    // The regex rule (first) forces a replica, even for the blocked user.
    assert_eq!(
        decide("SELECT * FROM big_table", "reporting"),
        "replica:1 rule rule:0"
    );
    assert_eq!(
        decide("SELECT * FROM t", "reporting"),
        "refuse:blocked(reporting is read-only here) blocked rule:1"
    );
    // Not a read or write (a SET): the blocking rule does not match; the catch-all does.
    assert_eq!(
        decide("SET search_path = x", "reporting")
            .split(' ')
            .next_back(),
        Some("rule:3")
    );
    // A fingerprint condition with no fingerprint given does not match.
    assert!(decide("SELECT * FROM orders", "app").ends_with("rule:3"));
}

#[test]
fn function_lists_reach_the_classifier() {
    let plain = Routing::from_config(&parse(SERVERS));
    let c = plain.classifier.classify("SELECT my_fn()");
    assert_eq!((c.class, c.reason), (Class::Write, Reason::UnknownFunction));

    let listed = Routing::from_config(&parse(&format!(
        "{SERVERS}functions:\n  read: [my_fn]\n  write: [app.bump*]\n"
    )));
    assert_eq!(
        listed.classifier.classify("SELECT my_fn()").class,
        Class::Read
    );
    let c = listed.classifier.classify("SELECT app.bump_counter(1)");
    assert_eq!(c.class, Class::Write);
    assert_ne!(c.reason, Reason::UnknownFunction);

    let trusting = Routing::from_config(&parse(&format!(
        "{SERVERS}functions: {{ unknown: replica }}\n"
    )));
    assert_eq!(
        trusting.classifier.classify("SELECT my_fn()").class,
        Class::Read
    );
}

#[test]
fn topology_takes_rise_and_lag_limits_from_the_config() {
    let config = parse(&format!(
        "{SERVERS}health: {{ rise: 4 }}\nlag: {{ max_bytes: 1KiB, max_delay: 2s }}\n"
    ));
    let t = Topology::from_config(&config);
    assert_eq!(
        t.params,
        HealthParams {
            rise: 4,
            lag: LagLimits {
                max_bytes: Some(1024),
                max_delay: Some(Duration::from_secs(2)),
            },
        }
    );
    let defaults = Topology::from_config(&parse(SERVERS));
    assert_eq!(defaults.params.rise, 2);
    assert_eq!(defaults.params.lag.max_bytes, Some(16 * 1024 * 1024));
    assert_eq!(defaults.params.lag.max_delay, Some(Duration::from_secs(5)));
}

fn report(t: &mut Topology, node: usize, at: u64, in_recovery: bool, lsn: u64) {
    t.apply_health(HealthReport {
        node,
        at: ms(at),
        probe: Probe::Ok {
            in_recovery,
            lsn: Some(Lsn(lsn)),
        },
    });
}

#[test]
fn carry_over_keeps_what_was_learned_about_servers_that_stayed() {
    let with_gone = SERVERS.replace(
        "  - { name: r2, host: h, port: 3, role: replica }\n",
        "  - { name: r2, host: h, port: 3, role: replica }\n  \
         - { name: gone, host: h, port: 4, role: replica }\n",
    );
    let old_config = parse(&format!("{with_gone}lag: {{ max_bytes: 1000 }}\n"));
    assert_eq!(old_config.servers.len(), 4);
    let mut old = Topology::from_config(&old_config);
    // The primary moves from 0 to 5000; r1 replays 0 (5000 behind: excluded), r2 fails.
    report(&mut old, 0, 0, false, 0);
    report(&mut old, 0, 1000, false, 5000);
    report(&mut old, 1, 1100, true, 0);
    old.mark_down(2, ms(1200));
    old.nodes[1].busy = 7;
    assert!(old.nodes[1].lag_excluded);
    assert_eq!(old.nodes[2].health, Health::Down);

    // New config: r2 moved to another port, `fresh` is new, `gone` is gone, r1 is
    // reweighted, and the byte limit is raised so far that r1 is back under half of it.
    let new_config = parse(
        "users:\n  - { name: app, password: x }\nservers:\n\
           - { name: fresh, host: h, port: 9, role: replica }\n\
           - { name: r1, host: h, port: 2, role: replica, weight: 5, max_connections: 8 }\n\
           - { name: p, host: h, port: 1, role: primary }\n\
           - { name: r2, host: h, port: 33, role: replica }\n\
         lag: { max_bytes: 1GiB }\nhealth: { rise: 3 }\n",
    );
    let new = Topology::carry_over(&new_config, &old);
    let names: Vec<&str> = new.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["fresh", "r1", "p", "r2"]);
    assert_eq!(new.params.rise, 3);
    assert_eq!(
        new.primary,
        Some(2),
        "the primary is found at its new index"
    );

    let r1 = &new.nodes[1];
    assert_eq!(
        (r1.detected_role, r1.busy, r1.lsn),
        (Some(NodeRole::Replica), 7, Some(Lsn(0)))
    );
    assert_eq!(r1.lag.map(|l| l.bytes), Some(5000));
    assert!(!r1.lag_excluded, "re-checked against the new, larger limit");
    assert_eq!((r1.weight, r1.max_connections), (5, 8));

    let p = &new.nodes[2];
    assert_eq!(p.detected_role, Some(NodeRole::Primary));
    assert_eq!(p.successes, 2);

    // r2 moved: a fresh node (up, nothing detected), although it was down before.
    let r2 = &new.nodes[3];
    assert_eq!(
        (r2.health, r2.detected_role, r2.lsn),
        (Health::Up, None, None)
    );
    let fresh = &new.nodes[0];
    assert_eq!(
        (fresh.health, fresh.successes, fresh.busy),
        (Health::Up, 0, 0)
    );

    // The primary stayed, so its WAL history did: a replica report right after the
    // reload gets its time lag from samples taken before it.
    let mut after = new.clone();
    report(&mut after, 0, 1500, true, 0);
    let lag = after.nodes[0]
        .lag
        .expect("lag known from the carried history");
    assert_eq!((lag.bytes, lag.delay), (5000, ms(500)));
}

#[test]
fn carry_over_drops_the_history_of_a_primary_that_moved() {
    let old_config = parse(SERVERS);
    let mut old = Topology::from_config(&old_config);
    report(&mut old, 0, 0, false, 0);
    report(&mut old, 0, 1000, false, 5000);
    let moved = parse(&SERVERS.replace("port: 1, role: primary", "port: 11, role: primary"));
    let mut new = Topology::carry_over(&moved, &old);
    assert_eq!(new.nodes[0].detected_role, None);
    // No primary sample yet at the new address: a replica's lag is unknown.
    report(&mut new, 1, 1500, true, 0);
    assert_eq!(new.nodes[1].lag, None);
}

#[test]
fn carry_over_to_a_down_rise_counts_on() {
    // A server that was down and half-way back stays down, with its run of good probes.
    let config = parse(SERVERS);
    let mut old = Topology::from_config(&config);
    old.mark_down(1, ms(0));
    report(&mut old, 1, 10, true, 0);
    let mut new = Topology::carry_over(&config, &old);
    assert_eq!(
        (new.nodes[1].health, new.nodes[1].successes),
        (Health::Down, 1)
    );
    report(&mut new, 1, 20, true, 0);
    assert_eq!(
        new.nodes[1].health,
        Health::Up,
        "rise 2 reached across the reload"
    );
}

#[test]
fn snapshot_reload_bumps_the_generation_and_carries_the_topology() {
    let mut first = Snapshot::new(parse(SERVERS));
    let mut topology = (*first.topology).clone();
    topology.mark_down(2, ms(0));
    first = first.with_topology(topology);
    let second = first.reload(parse(&format!("{SERVERS}{RULES}")));
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(second.routing.policy.rules.len(), 4);
    assert_eq!(second.topology.nodes[2].health, Health::Down);
    assert_eq!(second.config.routing.rules.len(), 4);
}

#[test]
fn reloads_start_an_empty_cache_but_keep_counting_hits_and_misses() {
    let first = Snapshot::new(parse(SERVERS));
    first.routing.classifier.classify("SELECT 1");
    first.routing.classifier.classify("SELECT 1");
    let second = first.reload(parse(SERVERS));
    assert_eq!(second.routing.classifier.cached(), 0, "a new cache");
    second.routing.classifier.classify("SELECT 1");
    let third = Routing::next(&second.routing, &parse(SERVERS));
    third.classifier.classify("SELECT 1");
    let counters = third.classifier.cache_counters();
    assert!(std::sync::Arc::ptr_eq(
        counters,
        first.routing.classifier.cache_counters()
    ));
    assert_eq!((counters.hits(), counters.misses()), (1, 3));
    // A routing built from scratch counts on its own.
    let fresh = Routing::from_config(&parse(SERVERS));
    assert_eq!(fresh.classifier.cache_counters().misses(), 0);
}

#[test]
fn fingerprint_rules_match_the_same_query_shape() {
    let fp = pgsplit_classify::fingerprint("SELECT * FROM orders WHERE id = 1").unwrap();
    let config = parse(&format!(
        "{SERVERS}rules:\n  - match: {{ fingerprint: \"{fp}\" }}\n    target: primary\n"
    ));
    let routing = Routing::from_config(&config);
    assert!(routing.needs_fingerprint());
    let topology = Topology::from_config(&config);
    let decide = |sql: &str| {
        let class = routing.classifier.classify(sql);
        let fingerprint = pgsplit_classify::fingerprint(sql);
        let unit = Unit {
            class: &class,
            sql,
            fingerprint: fingerprint.as_deref(),
        };
        let session = SessionView::default();
        let policy = &routing.policy;
        route(
            &unit,
            &session,
            &topology,
            policy,
            &mut Balancer::new(),
            ms(0),
        )
        .to_string()
    };
    assert!(
        decide("select * from orders where id = 42").starts_with("primary:0 rule rule:0"),
        "{}",
        decide("select * from orders where id = 42")
    );
    assert!(decide("SELECT * FROM orders WHERE total = 1").starts_with("replica:"));
}
