//! Balancing policies: the acceptance criteria of issue 5, as unit tests.

use super::{cluster, node};
use crate::{BalancePolicy, Balancer, Node, NodeRole};

fn replicas(specs: &[(u32, usize)]) -> Vec<Node> {
    specs
        .iter()
        .enumerate()
        .map(|(i, &(weight, busy))| Node {
            weight,
            busy,
            max_connections: 1000,
            ..node(&format!("r{i}"), NodeRole::Replica)
        })
        .collect()
}

fn counts(policy: BalancePolicy, nodes: &[Node], picks: usize) -> Vec<usize> {
    let mut balancer = Balancer::new();
    let mut counts = vec![0; nodes.len()];
    for _ in 0..picks {
        counts[balancer.pick(policy, nodes, |_| true).unwrap()] += 1;
    }
    counts
}

#[test]
fn weights_one_to_three_give_25_75() {
    let nodes = replicas(&[(1, 0), (3, 0)]);
    let got = counts(BalancePolicy::RoundRobin, &nodes, 10_000);
    for (count, share) in got.iter().zip([0.25, 0.75]) {
        let frac = *count as f64 / 10_000.0;
        assert!((frac - share).abs() <= 0.02, "{got:?}");
    }
}

#[test]
fn round_robin_is_smooth_and_exact() {
    // Each window of total-weight picks holds exactly each node's weight.
    let cases: &[&[u32]] = &[&[1], &[1, 1], &[1, 3], &[5, 1, 1], &[2, 3, 4, 1]];
    for weights in cases {
        let specs: Vec<(u32, usize)> = weights.iter().map(|&w| (w, 0)).collect();
        let nodes = replicas(&specs);
        let total: u32 = weights.iter().sum();
        let mut balancer = Balancer::new();
        for _ in 0..5 {
            let mut window = vec![0u32; nodes.len()];
            for _ in 0..total {
                window[balancer
                    .pick(BalancePolicy::RoundRobin, &nodes, |_| true)
                    .unwrap()] += 1;
            }
            assert_eq!(&window, weights, "{weights:?}");
        }
    }
    // Smooth: weights 5:1:1 interleave as a a b a c a a, not a a a a a b c.
    let nodes = replicas(&[(5, 0), (1, 0), (1, 0)]);
    let mut balancer = Balancer::new();
    let seq: Vec<usize> = (0..7)
        .map(|_| {
            balancer
                .pick(BalancePolicy::RoundRobin, &nodes, |_| true)
                .unwrap()
        })
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn least_connections_picks_a_least_busy_server() {
    let mut state = 7u64;
    let mut balancer = Balancer::new();
    for _ in 0..2000 {
        let specs: Vec<(u32, usize)> = (0..1 + super::invariant::below(&mut state, 6))
            .map(|_| {
                (
                    1 + super::invariant::below(&mut state, 4) as u32,
                    super::invariant::below(&mut state, 5),
                )
            })
            .collect();
        let nodes = replicas(&specs);
        let pick = balancer
            .pick(BalancePolicy::LeastConnections, &nodes, |_| true)
            .unwrap();
        let min = nodes.iter().map(|n| n.busy).min().unwrap();
        assert_eq!(nodes[pick].busy, min, "{specs:?}");

        let pick = balancer
            .pick(BalancePolicy::WeightedLeastConnections, &nodes, |_| true)
            .unwrap();
        for other in &nodes {
            // busy/weight of the pick <= busy/weight of every other node.
            assert!(
                nodes[pick].busy as u64 * other.weight as u64
                    <= other.busy as u64 * nodes[pick].weight as u64,
                "{specs:?} picked {pick}"
            );
        }
    }
}

#[test]
fn ties_stay_with_the_last_pick() {
    let nodes = replicas(&[(1, 2), (1, 2), (1, 5), (1, 2)]);
    let got = counts(BalancePolicy::LeastConnections, &nodes, 300);
    assert_eq!(got, [300, 0, 0, 0]);
    let nodes = replicas(&[(2, 4), (1, 2), (4, 9)]);
    let got = counts(BalancePolicy::WeightedLeastConnections, &nodes, 300);
    assert_eq!(got, [300, 0, 0]);

    // A starting point spreads sessions over tied nodes; one that is not least busy passes
    // the first tie-break to the next least busy node after it.
    let nodes = replicas(&[(1, 2), (1, 2), (1, 5), (1, 2)]);
    for (start, want) in [(1, 1), (2, 3), (3, 3), (5, 1)] {
        let mut balancer = Balancer::starting_at(start);
        for _ in 0..3 {
            let pick = balancer.pick(BalancePolicy::LeastConnections, &nodes, |_| true);
            assert_eq!(pick, Some(want), "start {start}");
        }
    }

    // Load moves the pick at once, and it stays where it moved while the tie lasts.
    let mut balancer = Balancer::new();
    let mut pick = |busy: [usize; 2]| {
        let nodes = replicas(&[(1, busy[0]), (1, busy[1])]);
        balancer
            .pick(BalancePolicy::LeastConnections, &nodes, |_| true)
            .unwrap()
    };
    assert_eq!(pick([0, 0]), 0);
    assert_eq!(pick([1, 0]), 1);
    assert_eq!(pick([1, 1]), 1);
    assert_eq!(pick([0, 0]), 1);
    assert_eq!(pick([0, 1]), 0);
}

#[test]
fn only_eligible_nodes_are_picked() {
    let topology = cluster(4);
    for policy in [
        BalancePolicy::RoundRobin,
        BalancePolicy::LeastConnections,
        BalancePolicy::WeightedLeastConnections,
    ] {
        let mut balancer = Balancer::new();
        for _ in 0..100 {
            let pick = balancer
                .pick(policy, &topology.nodes, |i| i % 2 == 1)
                .unwrap();
            assert!(pick % 2 == 1, "{policy:?}");
        }
        assert_eq!(balancer.pick(policy, &topology.nodes, |_| false), None);
    }
}
