//! Unit tests of the router: shared fixtures, then one module per concern.

mod balance;
mod invariant;
mod route;
mod snapshot;
mod topology;

use std::time::Duration;

use pgsplit_config::Role;

use crate::{Health, HealthParams, LagLimits, Lsn, Node, NodeRole, Topology};

/// A node with this role, up, weight 1, room for 10 connections, no lag known.
fn node(name: &str, role: NodeRole) -> Node {
    Node {
        name: name.to_owned(),
        configured_role: match role {
            NodeRole::Primary => Role::Primary,
            NodeRole::Replica => Role::Replica,
        },
        detected_role: Some(role),
        health: Health::Up,
        successes: 0,
        weight: 1,
        max_connections: 10,
        busy: 0,
        lsn: Some(Lsn(1000)),
        lag: None,
        lag_excluded: false,
        pool_full: false,
    }
}

/// Node 0 the primary, nodes 1.. replicas.
fn cluster(replicas: usize) -> Topology {
    let mut nodes = vec![node("p", NodeRole::Primary)];
    nodes.extend((1..=replicas).map(|i| node(&format!("r{i}"), NodeRole::Replica)));
    Topology::new(
        nodes,
        HealthParams {
            rise: 2,
            lag: LagLimits {
                max_bytes: Some(1000),
                max_delay: Some(Duration::from_secs(10)),
            },
        },
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
