//! Unit scans: the verdict, the bytes the unit takes, and the session effects of its SQL that
//! the relay then trusts instead of lexing the same bytes again.

use std::hash::RandomState;
use std::sync::Arc;

use bytes::BytesMut;
use pgsplit_classify::{Class, Classifier, Effects, Options};
use pgsplit_telemetry::Metrics;
use pgsplit_wire::frontend::tags as fe;

use super::{RouteKit, Scan, scan_unit};
use crate::extended::ClientStatements;

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn query(sql: &str) -> Vec<u8> {
    message(fe::QUERY, &[sql.as_bytes(), b"\0"].concat())
}

fn parse(sql: &str) -> Vec<u8> {
    message(fe::PARSE, &[b"\0", sql.as_bytes(), b"\0\0\0"].concat())
}

fn extended(sql: &str) -> Vec<u8> {
    let bind = message(fe::BIND, b"\0\0\0\0\0\0\0\0");
    let execute = message(fe::EXECUTE, b"\0\0\0\0\0");
    let sync = message(fe::SYNC, b"");
    [parse(sql), bind, execute, sync].concat()
}

/// The class, the bytes taken and the effects of the unit at the front of `input`.
fn scan(input: &[u8]) -> (Class, usize, Effects) {
    let classifier = Classifier::new(Options::default());
    let kit = RouteKit::new(Arc::new(Metrics::new()));
    let statements = ClientStatements::new(RandomState::new());
    let classify = |sql: &str| classifier.classify_with(sql, true);
    let buf = BytesMut::from(input);
    match scan_unit(&buf, 1 << 20, &statements, 1, &kit, &classify) {
        Scan::Unit {
            class,
            end,
            effects,
            ..
        } => (class.class, end, effects),
        Scan::Incomplete => panic!("the unit is complete"),
    }
}

#[test]
fn a_plain_read_has_no_effects_and_takes_its_whole_message() {
    let unit = query("SELECT abalance FROM pgbench_accounts WHERE aid = 7");
    let (class, end, effects) = scan(&[unit.clone(), query("SELECT 2")].concat());
    assert_eq!(class, Class::Read);
    assert_eq!(end, unit.len());
    assert!(!effects.any() && !effects.unpins);
}

#[test]
fn effects_come_with_the_verdict_for_simple_and_extended_units() {
    let (_, _, fx) = scan(&query("SET search_path = app"));
    assert!(fx.settings, "SET changes settings");
    let (_, end, fx) = scan(&extended("SELECT pg_advisory_lock(42)"));
    assert!(fx.state, "a session advisory lock is state");
    assert_eq!(end, extended("SELECT pg_advisory_lock(42)").len());
    let (_, _, fx) = scan(&query("SELECT 1; CREATE TEMP TABLE t (a int)"));
    assert!(fx.state, "the second statement counts too");
}

#[test]
fn a_cached_verdict_keeps_the_effects_of_its_shape() {
    // Both texts share one cached verdict (they differ only in a constant): the second one
    // must still report the advisory lock although it was not lexed for effects.
    let classifier = Classifier::new(Options::default());
    let first = classifier.classify_with("SELECT pg_advisory_lock(1)", true);
    let second = classifier.classify_with("SELECT pg_advisory_lock(2)", true);
    assert!(first.effects.state && second.effects.state);
    let plain = classifier.classify_with("SELECT 1", true);
    assert_eq!(plain.effects, Effects::default());
}

const YAML: &str = "\
users:
  - { name: app, password: s3cret-app }
servers:
  - { name: pg1, host: 127.0.0.1, port: 5432, role: primary }
  - { name: pg2, host: 127.0.0.1, port: 5433, role: replica }
";

#[test]
fn sessions_share_targets_of_one_generation_and_pool() {
    use super::SessionRouter;
    use pgsplit_router::Snapshot;

    let kit = RouteKit::new(Arc::new(Metrics::new()));
    let snapshot = Snapshot::new(pgsplit_config::parse(YAML, "t.yaml").unwrap());
    let mut first = SessionRouter::new("app", "app", "app", 1);
    let mut second = SessionRouter::new("app", "app", "app", 2);
    let mut other_db = SessionRouter::new("app", "other", "app", 3);
    let a = first.target(&snapshot, &kit, 1).expect("server 1");
    let b = second.target(&snapshot, &kit, 1).expect("server 1");
    assert!(
        Arc::ptr_eq(&a, &b),
        "a second session reuses the first one's target"
    );
    let c = other_db.target(&snapshot, &kit, 1).expect("server 1");
    assert!(!Arc::ptr_eq(&a, &c), "another database is another pool");
    assert_eq!(c.key.database(), "other");
    // A reload is a new generation: targets are built again, with its settings.
    let reloaded = snapshot.reload(pgsplit_config::parse(YAML, "t.yaml").unwrap());
    let d = SessionRouter::new("app", "app", "app", 4)
        .target(&reloaded, &kit, 1)
        .expect("server 1");
    assert!(!Arc::ptr_eq(&a, &d));
    let e = first.target(&reloaded, &kit, 1).expect("server 1");
    assert!(
        Arc::ptr_eq(&d, &e),
        "the older session moves to the new generation's target"
    );
}

#[test]
fn shared_keys_tell_their_parts_apart() {
    use super::shared_key;
    let keys = [
        shared_key(1, "ab", "c", "d"),
        shared_key(1, "a", "bc", "d"),
        shared_key(1, "ab", "", "cd"),
        shared_key(11, "ab", "c", "d"),
        shared_key(1, "ab", "c", ""),
        shared_key(usize::MAX, "ab", "c", "d"),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(shared_key(7, "u", "l", "db"), shared_key(7, "u", "l", "db"));
}

/// Sessions of one thread route with one shared copy of the topology: each decision sees the
/// busy counts of that moment, whichever session stamped the copy before.
#[test]
fn sessions_on_one_thread_route_with_the_current_busy_counts() {
    use super::SessionRouter;
    use pgsplit_router::Target;

    let (kit, snapshot) = primary_and_two_replicas("balance: least_connections");
    let classifier = Classifier::new(Options::default());
    let read = classifier.classify_with("SELECT 1", true);
    let mut first = SessionRouter::new("app", "app", "app", 1);
    let mut second = SessionRouter::new("app", "app", "app", 2);
    let replica = |router: &mut SessionRouter| match router
        .route(&snapshot, None, &kit, &read, "SELECT 1")
        .target
    {
        Target::Replica(i) => i,
        other => panic!("a read went to {other:?}"),
    };
    let pg2 = first.target(&snapshot, &kit, 1).expect("pg2");
    let pg3 = first.target(&snapshot, &kit, 2).expect("pg3");
    pg2.checked_out();
    assert_eq!(replica(&mut first), 2, "pg2 is busy");
    assert_eq!(replica(&mut second), 2, "the other session sees it too");
    pg2.released();
    pg3.checked_out();
    pg3.checked_out();
    assert_eq!(replica(&mut second), 1, "now pg3 is the busier one");
    assert_eq!(replica(&mut first), 1);
    pg3.released();
    pg3.released();
}

/// New sessions, whatever their id, send their first tied read to the first replica (short
/// sessions one after the other keep it warm); a session then stays where it read last while
/// no replica is less busy, and a busier first replica sends new sessions to the other.
#[test]
fn new_sessions_break_their_first_tie_at_the_first_replica() {
    use super::SessionRouter;
    use pgsplit_router::Target;

    let (kit, snapshot) = primary_and_two_replicas("balance: least_connections");
    let classifier = Classifier::new(Options::default());
    let read = classifier.classify_with("SELECT 1", true);
    let replica = |router: &mut SessionRouter| match router
        .route(&snapshot, None, &kit, &read, "SELECT 1")
        .target
    {
        Target::Replica(i) => i,
        other => panic!("a read went to {other:?}"),
    };
    for id in 1..=5 {
        let mut session = SessionRouter::new("app", "app", "app", id);
        assert_eq!(replica(&mut session), 1, "session {id}");
    }
    let mut moved = SessionRouter::new("app", "app", "app", 6);
    let pg2 = moved.target(&snapshot, &kit, 1).expect("pg2");
    pg2.checked_out();
    assert_eq!(replica(&mut moved), 2, "pg2 is busier");
    let mut fresh = SessionRouter::new("app", "app", "app", 7);
    assert_eq!(
        replica(&mut fresh),
        2,
        "a new session avoids the busier replica too"
    );
    pg2.released();
    assert_eq!(
        replica(&mut moved),
        2,
        "tied again: the session stays where it read last"
    );
    assert_eq!(replica(&mut fresh), 2);
}

/// A replica where the session's own pool (its login user and database) has every
/// connection checked out takes none of that session's reads while another replica has room;
/// sessions of another database still read there.
#[test]
fn a_full_pool_sends_reads_to_another_replica() {
    use super::SessionRouter;
    use pgsplit_router::Target;

    let (kit, snapshot) = primary_and_two_replicas("pool: { size: 1 }\nbalance: round_robin");
    let classifier = Classifier::new(Options::default());
    let read = classifier.classify_with("SELECT 1", true);
    let mut holder = SessionRouter::new("app", "app", "app", 1);
    let mut same_pool = SessionRouter::new("app", "app", "app", 2);
    let mut other_db = SessionRouter::new("app", "other", "app", 3);
    let picks = |router: &mut SessionRouter| -> Vec<usize> {
        (0..4)
            .map(|_| {
                match router
                    .route(&snapshot, None, &kit, &read, "SELECT 1")
                    .target
                {
                    Target::Replica(i) => i,
                    other => panic!("a read went to {other:?}"),
                }
            })
            .collect()
    };
    assert!(
        picks(&mut same_pool).contains(&1),
        "round robin uses pg2 while it has room"
    );
    let pg2 = holder.target(&snapshot, &kit, 1).expect("pg2");
    pg2.checked_out();
    assert_eq!(
        picks(&mut same_pool),
        [2, 2, 2, 2],
        "pg2's app/app pool is full"
    );
    assert!(
        picks(&mut other_db).contains(&1),
        "pg2's app/other pool has room"
    );
    pg2.released();
    assert!(picks(&mut same_pool).contains(&1), "pg2 has room again");
}

/// While no primary is usable, a new client is greeted from the up replica with the fewest
/// checked-out connections and room in its pool.
#[test]
fn greetings_go_to_the_least_busy_replica_with_room() {
    use super::SessionRouter;

    let (kit, up) = primary_and_two_replicas("pool: { size: 2 }");
    let mut topology = (*up.topology).clone();
    topology.mark_down(0, std::time::Duration::from_secs(1));
    let snapshot = up.with_topology(topology);
    let mut router = SessionRouter::new("app", "app", "app", 1);
    let pg2 = router.target(&snapshot, &kit, 1).expect("pg2");
    let pg3 = router.target(&snapshot, &kit, 2).expect("pg3");
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        Some(1),
        "a tie: the first"
    );
    pg2.checked_out();
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        Some(2),
        "pg2 is busier"
    );
    pg3.checked_out();
    pg3.checked_out();
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        Some(1),
        "pg3's pool is full"
    );
    pg3.released();
    pg2.checked_out();
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        Some(2),
        "pg2's pool is full"
    );
    pg3.checked_out();
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        Some(1),
        "both full: the first"
    );
    let mut none_up = (*snapshot.topology).clone();
    none_up.mark_down(1, std::time::Duration::from_secs(1));
    none_up.mark_down(2, std::time::Duration::from_secs(1));
    let snapshot = snapshot.with_topology(none_up);
    assert_eq!(
        router.greeting_replica(&snapshot, &kit),
        None,
        "no replica is up"
    );
}

/// A route kit and a snapshot of a primary (pg1) and two replicas (pg2, pg3) for user `app`,
/// with `extra` appended to the config.
fn primary_and_two_replicas(extra: &str) -> (RouteKit, pgsplit_router::Snapshot) {
    let yaml = format!(
        "\
users:
  - {{ name: app, password: s3cret-app }}
servers:
  - {{ name: pg1, host: 127.0.0.1, port: 5432, role: primary }}
  - {{ name: pg2, host: 127.0.0.1, port: 5433, role: replica }}
  - {{ name: pg3, host: 127.0.0.1, port: 5434, role: replica }}
{extra}
"
    );
    let config = pgsplit_config::parse(&yaml, "t.yaml").unwrap();
    (
        RouteKit::new(Arc::new(Metrics::new())),
        pgsplit_router::Snapshot::new(config),
    )
}
