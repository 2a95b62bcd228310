//! Router microbenchmark: one routing decision for a plain read, 1 primary + 2 replicas, round robin, session consistency.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pgsplit_classify::{Class, Classification, Reason};
use pgsplit_router::{
    BalancePolicy, Balancer, Consistency, Policy, SessionView, Target, Topology, Unit, route,
};

const CONFIG: &str = "\
users:
  - { name: app, password: x }
servers:
  - { name: p, host: h, role: primary }
  - { name: r1, host: h, role: replica }
  - { name: r2, host: h, role: replica }
";

fn benches(c: &mut Criterion) {
    let config = pgsplit_config::parse_with_env(CONFIG, "bench.yaml", &|_| None)
        .expect("bench config parses");
    let topology = Topology::from_config(&config);
    let policy = Policy {
        balance: BalancePolicy::RoundRobin,
        consistency: Consistency::Session,
        ..Policy::default()
    };
    let session = SessionView {
        user: "app".into(),
        database: "app".into(),
        application_name: "web".into(),
        ..SessionView::default()
    };
    let class = Classification::new(Class::Read, Reason::Select);
    let unit = Unit::new(&class);
    let now = Duration::from_secs(100);
    let mut balancer = Balancer::new();
    let first = route(&unit, &session, &topology, &policy, &mut balancer, now);
    assert!(matches!(first.target, Target::Replica(_)), "got {first:?}");

    c.bench_function("route/read_1p2r_round_robin_session", |b| {
        b.iter(|| {
            route(
                black_box(&unit),
                black_box(&session),
                black_box(&topology),
                black_box(&policy),
                &mut balancer,
                black_box(now),
            )
        })
    });
}

criterion_group!(route_benches, benches);
criterion_main!(route_benches);
