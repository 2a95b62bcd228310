//! The routing policy: balancing, primary reads, consistency, waits and rules, in one value.

use std::time::Duration;

use crate::rules::Rule;

/// How reads are spread among eligible servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BalancePolicy {
    /// Smooth weighted round robin: deterministic, and a server of weight 3 gets three
    /// picks in every four beside one of weight 1, interleaved rather than in bursts.
    #[default]
    RoundRobin,
    /// Fewest busy server connections; a tie goes to the server the session picked last.
    LeastConnections,
    /// Fewest busy connections per unit of weight (`busy / weight`); a tie goes to the server
    /// the session picked last.
    WeightedLeastConnections,
}

impl BalancePolicy {
    /// The config spelling: `round_robin`, `least_connections`, `weighted_least_connections`.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancePolicy::RoundRobin => "round_robin",
            BalancePolicy::LeastConnections => "least_connections",
            BalancePolicy::WeightedLeastConnections => "weighted_least_connections",
        }
    }
}

/// Whether the primary takes reads (`primary_reads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrimaryReads {
    /// Never: with no eligible replica a read is refused (or queued on a full replica).
    Never,
    /// Only when no replica is eligible (the default).
    #[default]
    Fallback,
    /// Always: the primary is one more candidate, with its own weight.
    Always,
}

/// Read-after-write consistency (`consistency:` globally, per rule, or per session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Any eligible replica, however far behind the client's own writes.
    Eventual,
    /// After a write, only replicas whose replay position has reached the WAL position
    /// recorded at the write's commit (the default).
    #[default]
    Session,
    /// For this long after a write, reads go to the primary.
    PrimaryAfterWrite(Duration),
}

/// Everything routing needs besides the statement, the session and the topology.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How reads are spread.
    pub balance: BalancePolicy,
    /// Whether the primary takes reads.
    pub primary_reads: PrimaryReads,
    /// The default consistency, when neither a rule nor the session says otherwise.
    pub consistency: Consistency,
    /// Under `session` consistency, how long a read may wait for a replica to catch up
    /// before it goes to the primary (`causal_wait`, default 0: go at once).
    pub causal_wait: Duration,
    /// How long a unit that needs the primary waits for one during a failover before it
    /// is refused (`failover.write_wait`, default 10 s).
    pub write_wait: Duration,
    /// `rules`, in order; the first match wins.
    pub rules: Vec<Rule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            balance: BalancePolicy::default(),
            primary_reads: PrimaryReads::default(),
            consistency: Consistency::default(),
            causal_wait: Duration::ZERO,
            write_wait: Duration::from_secs(10),
            rules: Vec::new(),
        }
    }
}
