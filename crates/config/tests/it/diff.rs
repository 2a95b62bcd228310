//! `diff(old, new)` for hot reload.

use pgsplit_config::{ConfigDiff, diff};

use crate::parse;

const BASE: &str = "\
users:
  - { name: app, password: app }
  - { name: old, password: x }
pool: { size: 10 }
servers:
  - { name: primary, host: 10.0.0.1, role: primary }
  - { name: r1, host: 10.0.0.2, role: replica }
  - { name: r2, host: 10.0.0.3, role: replica }
  - { name: gone, host: 10.0.0.4, role: replica }
";

#[test]
fn identical_configs_have_an_empty_diff() {
    let a = parse(BASE).unwrap();
    let d = diff(&a, &a.clone());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d, ConfigDiff::default());
}

#[test]
fn lists_added_removed_changed_and_moved_servers() {
    let new_text = "\
users:
  - { name: app, password: changed }
  - { name: new, password: y }
pool: { size: 12 }
listen: 127.0.0.1:7000
servers:
  - { name: primary, host: 10.0.0.1, role: primary }
  - { name: r1, host: 10.0.0.2, role: replica, weight: 5 }
  - { name: r2, host: 10.0.0.30, role: replica }
  - { name: fresh, host: 10.0.0.5, role: replica }
";
    let old = parse(BASE).unwrap();
    let new = parse(new_text).unwrap();
    let d = diff(&old, &new);
    assert_eq!(d.servers_added, ["fresh"]);
    assert_eq!(d.servers_removed, ["gone"]);
    assert_eq!(d.servers_changed, ["r1", "r2"]);
    assert_eq!(d.servers_moved, ["r2"]);
    assert!(d.pool_changed);
    assert_eq!(d.users_added, ["new"]);
    assert_eq!(d.users_removed, ["old"]);
    assert_eq!(d.users_changed, ["app"]);
    assert!(d.listen_changed);
    assert!(!d.admin_changed && !d.log_changed && !d.limits_changed);
    assert!(!d.shutdown_timeout_changed);
    // The health checker logs in with the first user's server credentials by default, and
    // `app`'s password changed.
    assert!(d.health_changed);
    assert!(!d.routing_changed && !d.lag_changed && !d.failover_changed);
    assert!(!d.is_empty());
}

#[test]
fn routing_health_lag_and_failover_changes_are_listed() {
    let old = parse(BASE).unwrap();
    type Flag = fn(&ConfigDiff) -> bool;
    let cases: [(&str, Flag); 5] = [
        ("rules: [{ target: primary }]\n", |d| d.routing_changed),
        ("functions: { read: [my_fn] }\n", |d| d.routing_changed),
        ("health: { rise: 3 }\n", |d| d.health_changed),
        ("lag: { max_delay: 1s }\n", |d| d.lag_changed),
        ("failover: { write_wait: 1s }\n", |d| d.failover_changed),
    ];
    for (extra, changed) in cases {
        let new = parse(&format!("{BASE}{extra}")).unwrap();
        let d = diff(&old, &new);
        assert!(changed(&d), "{extra}: {d:?}");
        let flags = [
            d.routing_changed,
            d.health_changed,
            d.lag_changed,
            d.failover_changed,
        ];
        assert_eq!(flags.iter().filter(|f| **f).count(), 1, "{extra}: {d:?}");
    }
}
