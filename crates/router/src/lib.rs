//! Which server takes a unit of SQL, and why: pgsplit's routing policy as pure functions and data.
//!
//! # What it does
//!
//! - [`Topology`]: a snapshot of every server (configured and detected role, health, weight,
//!   `max_connections`, busy connections, WAL position, lag, lag exclusion), the primary
//!   and the split-brain flag, built by [`Topology::from_config`] (`health.rise` and the
//!   `lag` limits come from the config), carried over a reload by [`Topology::carry_over`]
//!   (servers with the same name and address keep what was learned), and changed by
//!   [`Topology::apply_health`]: down at once on a failure, up after `rise` consecutive
//!   good probes, lag in bytes and in time (from a history of primary positions, so it is
//!   right on an idle primary), exclusion over `lag.max_bytes` / `lag.max_delay` and
//!   re-admission only under half of them, and primary election (two up servers claiming
//!   primary → no primary and [`Topology::split_brain`]).
//! - [`Balancer`]: smooth weighted round robin, least connections and weighted least
//!   connections (`busy / weight` compared by cross-multiplication), all deterministic.
//! - [`route`]: ([`Unit`], [`SessionView`], [`Topology`], [`Policy`]) → [`Route`], a
//!   [`Target`] and a [`RouteReason`] with a stable snake_case name for metrics. It applies
//!   transactions, pinning, hints (`/* pgsplit: route=... */`, `SET pgsplit.route`), YAML
//!   [`Rule`]s (first match wins), `primary_reads`, read-after-write consistency
//!   (`eventual`, `session`, `primary_after_write`), `causal_wait` and `failover.write_wait`.
//!
//! **Invariant:** only a [`Class::Read`](pgsplit_classify::Class::Read), or a `BEGIN` that
//! is read-only and not SERIALIZABLE, can ever be routed to a replica — under any topology,
//! hint, rule or session state. A hint or rule asking for a replica for anything else is
//! ignored (the unit goes to the primary with its own reason); a property test checks this.
//!
//! Decisions worth knowing:
//! - A read forced to a replica (comment hint, `pgsplit.route`, rule target) is read with
//!   `eventual` consistency: the client asked for a replica. Hint beats session override
//!   beats rule target; a rule's `block` beats everything, even an open transaction.
//! - Read-your-writes beats `primary_reads`: under `session` consistency, when replicas
//!   are up but behind the client's last write, the read waits up to `causal_wait`, then
//!   goes to the primary even with `primary_reads: never`.
//! - A full replica is not eligible; when only full replicas remain, the read goes to the
//!   primary if `primary_reads` allows one, else it queues on the least loaded full replica
//!   (reason `pool_full`): the pool's fair queue and checkout timeout do the waiting.
//! - Time and state are inputs. `now` is a [`std::time::Duration`] since an epoch the caller
//!   chooses; waits are returned as [`Target::Wait`] with a deadline, and the caller routes
//!   again when the topology changes or the deadline passes. No randomness is used.
//!
//! # What it does not do
//!
//! No IO, no tokio, no clock reads, no globals: it does not probe servers (that is
//! `backend`), hold connections or queues (`backend`, `session`), classify SQL
//! (`pgsplit-classify`, whose [`Classification`](pgsplit_classify::Classification) it
//! takes), count metrics, or read YAML: [`Routing::from_config`] turns an already
//! validated [`pgsplit_config::Config`] into a [`Policy`] (rules with compiled regexes) and
//! a classifier told the `functions` lists; [`Snapshot`] bundles config, routing and
//! topology, and [`Snapshot::reload`] builds the next generation.
#![warn(missing_docs)]

mod balance;
mod lag;
mod policy;
mod route;
mod rules;
mod snapshot;
mod topology;

#[cfg(test)]
mod tests;

pub use balance::Balancer;
pub use lag::{Lag, Lsn, WalHistory};
pub use policy::{BalancePolicy, Consistency, Policy, PrimaryReads};
pub use route::{
    LastWrite, Refusal, Route, RouteOverride, RouteReason, SessionView, Target, Unit,
    replica_capable, route,
};
pub use rules::{Action, Match, Rule, RuleTarget, first_match};
pub use snapshot::{Routing, Snapshot};
pub use topology::{
    Changes, Health, HealthParams, HealthReport, LagLimits, Node, NodeRole, Probe, Topology,
};
