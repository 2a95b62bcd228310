//! The routing decision: from a classified unit, the session's state, the topology and the policy to a target and a reason.
//!
//! Order of decisions, first that applies wins:
//! 1. a rule that blocks: refuse with its message (`blocked`), even inside a transaction;
//! 2. inside a transaction: stay on the transaction's server (`in_transaction`);
//! 3. a pinned session: stay on the pinned connection (`pinned`);
//! 4. not a read (anything but [`Class::Read`] and a replica-eligible [`Class::TxnBegin`]):
//!    the primary, whatever any hint or rule says;
//! 5. a read forced to a target: the `/* pgsplit: route=... */` comment, else the session's
//!    `pgsplit.route`, else the first matching rule's target. Forcing a replica also
//!    means `eventual` consistency for that unit: the client asked for a replica;
//! 6. a read: consistency (rule, else session, else policy), then the balancer among
//!    eligible replicas (plus the primary under `primary_reads: always`), then fallbacks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgsplit_classify::{Class, Classification, Target as Hint};

use crate::balance::Balancer;
use crate::lag::Lsn;
use crate::policy::{Consistency, Policy, PrimaryReads};
use crate::rules::{RuleTarget, first_match};
use crate::topology::{NodeRole, Topology};

/// One unit of SQL to route: its classification plus what rules may match on.
#[derive(Clone, Copy, Debug)]
pub struct Unit<'a> {
    /// The classifier's verdict.
    pub class: &'a Classification,
    /// The SQL text (for `regex` rules); may be empty when no rule needs it.
    pub sql: &'a str,
    /// The query fingerprint, when the caller computes one (for `fingerprint` rules).
    pub fingerprint: Option<&'a str>,
}

impl<'a> Unit<'a> {
    /// A unit with no text and no fingerprint.
    pub fn new(class: &'a Classification) -> Self {
        Unit {
            class,
            sql: "",
            fingerprint: None,
        }
    }
}

/// The session's `SET pgsplit.route` override.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteOverride {
    /// No override (`auto`).
    #[default]
    Auto,
    /// Reads go to the primary.
    Primary,
    /// Reads go to a replica (writes still go to the primary).
    Replica,
}

/// The client's last committed write, for read-after-write consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastWrite {
    /// When it committed, on the caller's clock.
    pub at: Duration,
    /// The primary's WAL position captured at the commit; `None` when it could not be
    /// captured, in which case `session` consistency sends reads to the primary.
    pub lsn: Option<Lsn>,
}

/// What the router needs to know about a client session. Owned and kept current by the
/// session; passed by reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionView {
    /// Inside a transaction (last ReadyForQuery `T` or `E`): the unit stays where the
    /// transaction is.
    pub in_transaction: bool,
    /// Pinned to one primary connection (temporary tables, session advisory locks, ...).
    pub pinned: bool,
    /// `SET pgsplit.route`.
    pub route_override: RouteOverride,
    /// A session-level consistency, overriding the policy's default (a rule's wins).
    pub consistency: Option<Consistency>,
    /// The client's last committed write.
    pub last_write: Option<LastWrite>,
    /// `default_transaction_read_only` is on: a bare BEGIN starts a read-only transaction.
    pub default_read_only: bool,
    /// `default_transaction_isolation` is `serializable`.
    pub default_serializable: bool,
    /// The client's user name.
    pub user: String,
    /// The client's database.
    pub database: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// When this unit first got [`Target::Wait`]; `None` before that. Deadlines of later
    /// attempts count from it.
    pub waiting_since: Option<Duration>,
}

/// Where a unit goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The primary, this node index.
    Primary(usize),
    /// This replica node index.
    Replica(usize),
    /// Keep the server the session already holds (open transaction, pinned connection).
    Stay,
    /// Nothing suitable now: route again when the topology changes, or at `deadline` at
    /// the latest (set [`SessionView::waiting_since`] meanwhile).
    Wait {
        /// When waiting ends and the unit gets its final answer.
        deadline: Duration,
    },
    /// Refuse the unit with an error.
    Refuse(Refusal),
}

/// Why a unit is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A rule blocked it, with this message.
    Blocked(Arc<str>),
    /// No primary (none known, or down) within `write_wait`.
    NoPrimary,
    /// Two servers claim to be the primary.
    SplitBrain,
    /// A read with `primary_reads: never` and no eligible replica.
    NoReplica,
}

macro_rules! route_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why a unit went where it went; [`RouteReason::as_str`] is a stable metric label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RouteReason {
            $( $(#[$doc])* $variant, )*
        }

        impl RouteReason {
            /// Every reason, in declaration order (for pre-registering metric labels).
            pub const ALL: &'static [RouteReason] = &[ $( RouteReason::$variant, )* ];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self { $( RouteReason::$variant => $name, )* }
            }
        }
    };
}

route_reasons! {
    /// A write (or anything classified [`Class::Write`]).
    Write => "write",
    /// The unit could not be classified: fail closed to the primary.
    Unparsed => "unparsed",
    /// BEGIN of a read-write transaction.
    TxnBegin => "txn_begin",
    /// A read-only transaction at SERIALIZABLE, which hot standbys refuse.
    Serializable => "serializable",
    /// BEGIN READ ONLY (or `default_transaction_read_only`) on a replica.
    TxnReadOnly => "txn_read_only",
    /// COMMIT / ROLLBACK / SAVEPOINT outside a transaction.
    TxnControl => "txn_control",
    /// SET / RESET / DISCARD.
    SessionSet => "session_set",
    /// FETCH / MOVE / CLOSE outside a transaction.
    Cursor => "cursor",
    /// Inside a transaction: stays on its server.
    InTransaction => "in_transaction",
    /// The session is pinned to one connection.
    Pinned => "pinned",
    /// A read on a balanced replica.
    ReadReplica => "read_replica",
    /// A read the balancer gave to the primary (`primary_reads: always`).
    ReadPrimary => "read_primary",
    /// A read on the primary because no replica is eligible.
    ReadPrimaryFallback => "read_primary_fallback",
    /// A `/* pgsplit: route=primary */` comment.
    HintPrimary => "hint_primary",
    /// A `/* pgsplit: route=replica */` comment.
    HintReplica => "hint_replica",
    /// `SET pgsplit.route = primary`.
    SessionPrimary => "session_primary",
    /// `SET pgsplit.route = replica`.
    SessionReplica => "session_replica",
    /// A rule's target.
    Rule => "rule",
    /// A rule blocked the unit.
    Blocked => "blocked",
    /// Read-your-writes: no replica has replayed the client's last write yet.
    SessionConsistency => "session_consistency",
    /// `primary_after_write`: within the window after the client's last write.
    AfterWriteWindow => "after_write_window",
    /// Every otherwise eligible replica is full: queue on the least loaded one.
    PoolFull => "pool_full",
    /// The unit needs the primary and none is known or up.
    NoPrimary => "no_primary",
    /// Two servers claim to be the primary.
    SplitBrain => "split_brain",
    /// A read with `primary_reads: never` and no eligible replica.
    NoReplica => "no_replica",
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where the unit goes.
    pub target: Target,
    /// Why.
    pub reason: RouteReason,
    /// The index of the rule that matched, if any (whether or not it changed the target).
    pub rule: Option<usize>,
}

impl fmt::Display for Route {
    /// `primary:0 write`, `replica:2 read_replica`, `stay in_transaction`,
    /// `wait:1500ms no_primary`, `refuse:no_primary no_primary` (plus ` rule:N`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Primary(i) => write!(f, "primary:{i}")?,
            Target::Replica(i) => write!(f, "replica:{i}")?,
            Target::Stay => f.write_str("stay")?,
            Target::Wait { deadline } => write!(f, "wait:{}ms", deadline.as_millis())?,
            Target::Refuse(Refusal::Blocked(message)) => write!(f, "refuse:blocked({message})")?,
            Target::Refuse(Refusal::NoPrimary) => f.write_str("refuse:no_primary")?,
            Target::Refuse(Refusal::SplitBrain) => f.write_str("refuse:split_brain")?,
            Target::Refuse(Refusal::NoReplica) => f.write_str("refuse:no_replica")?,
        }
        write!(f, " {}", self.reason)?;
        if let Some(rule) = self.rule {
            write!(f, " rule:{rule}")?;
        }
        Ok(())
    }
}

/// Everything one decision reads, bundled to keep signatures short.
struct Ctx<'a> {
    session: &'a SessionView,
    topology: &'a Topology,
    policy: &'a Policy,
    now: Duration,
    rule: Option<usize>,
}

impl Ctx<'_> {
    fn done(&self, target: Target, reason: RouteReason) -> Route {
        Route {
            target,
            reason,
            rule: self.rule,
        }
    }

    /// The deadline of a wait that started (or starts now) for this unit.
    fn deadline(&self, wait: Duration) -> Duration {
        self.session.waiting_since.unwrap_or(self.now) + wait
    }

    /// The primary, or wait for one during a failover, or refuse.
    fn primary(&self, reason: RouteReason) -> Route {
        if self.topology.split_brain {
            return self.done(Target::Refuse(Refusal::SplitBrain), RouteReason::SplitBrain);
        }
        if let Some(i) = self.topology.usable_primary() {
            return self.done(Target::Primary(i), reason);
        }
        let deadline = self.deadline(self.policy.write_wait);
        if self.now < deadline {
            self.done(Target::Wait { deadline }, RouteReason::NoPrimary)
        } else {
            self.done(Target::Refuse(Refusal::NoPrimary), RouteReason::NoPrimary)
        }
    }
}

/// Whether a unit of this class may be served by a replica at all, given the session's
/// transaction defaults. This is the only door to a replica.
pub fn replica_capable(class: Class, session: &SessionView) -> bool {
    match class {
        Class::Read => true,
        Class::TxnBegin(mode) => {
            mode.replica_eligible(session.default_read_only, session.default_serializable)
        }
        _ => false,
    }
}

/// Why a non-read goes to the primary.
fn primary_reason(class: Class, session: &SessionView) -> RouteReason {
    match class {
        Class::Unknown => RouteReason::Unparsed,
        Class::TxnBegin(mode) if mode.read_only.unwrap_or(session.default_read_only) => {
            RouteReason::Serializable
        }
        Class::TxnBegin(_) => RouteReason::TxnBegin,
        Class::TxnEnd | Class::Savepoint => RouteReason::TxnControl,
        Class::SessionSet(_) => RouteReason::SessionSet,
        Class::Cursor => RouteReason::Cursor,
        Class::Read | Class::Write => RouteReason::Write,
    }
}

/// Routes one unit. Pure: the same inputs (and balancer state) give the same answer.
///
/// **Invariant:** only a unit for which [`replica_capable`] holds can get
/// [`Target::Replica`]. A hint, `pgsplit.route`, or a rule asking for a replica for any
/// other unit is ignored and the unit goes to the primary with its own reason.
pub fn route(
    unit: &Unit<'_>,
    session: &SessionView,
    topology: &Topology,
    policy: &Policy,
    balancer: &mut Balancer,
    now: Duration,
) -> Route {
    let class = unit.class.class;
    let mut cx = Ctx {
        session,
        topology,
        policy,
        now,
        rule: None,
    };
    let rule = first_match(&policy.rules, unit, session);
    cx.rule = rule.map(|(i, _)| i);
    let action = rule.map(|(_, r)| &r.then);
    // Blocking comes first, so wrapping a blocked statement in BEGIN does not get it past.
    if let Some(message) = action.and_then(|a| a.block.clone()) {
        return cx.done(
            Target::Refuse(Refusal::Blocked(message)),
            RouteReason::Blocked,
        );
    }
    if session.in_transaction {
        return cx.done(Target::Stay, RouteReason::InTransaction);
    }
    if session.pinned {
        return cx.done(Target::Stay, RouteReason::Pinned);
    }
    if !replica_capable(class, session) {
        return cx.primary(primary_reason(class, session));
    }
    let forced = match (unit.class.hint, session.route_override) {
        (Some(Hint::Primary), _) => Some((RuleTarget::Primary, RouteReason::HintPrimary)),
        (Some(Hint::Replica), _) => Some((RuleTarget::Replica, RouteReason::HintReplica)),
        (None, RouteOverride::Primary) => Some((RuleTarget::Primary, RouteReason::SessionPrimary)),
        (None, RouteOverride::Replica) => Some((RuleTarget::Replica, RouteReason::SessionReplica)),
        (None, RouteOverride::Auto) => action
            .and_then(|a| a.target)
            .map(|t| (t, RouteReason::Rule)),
    };
    let default_reason = if class == Class::Read {
        RouteReason::ReadReplica
    } else {
        RouteReason::TxnReadOnly
    };
    match forced {
        Some((RuleTarget::Primary, reason)) => cx.primary(reason),
        Some((RuleTarget::Replica, reason)) => read(&cx, balancer, None, reason),
        None => {
            let consistency = action
                .and_then(|a| a.consistency)
                .or(session.consistency)
                .unwrap_or(policy.consistency);
            let mut required = None;
            match (consistency, session.last_write) {
                (Consistency::Session, Some(write)) => match write.lsn {
                    Some(lsn) => required = Some(lsn),
                    None => return cx.primary(RouteReason::SessionConsistency),
                },
                (Consistency::PrimaryAfterWrite(window), Some(write))
                    if now < write.at.saturating_add(window) =>
                {
                    return cx.primary(RouteReason::AfterWriteWindow);
                }
                _ => {}
            }
            read(&cx, balancer, required, default_reason)
        }
    }
}

/// Why a replica is not eligible, in the order the checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ineligible {
    /// Not a replica, down, or over its lag limit.
    Unusable,
    /// Has not replayed the client's last write.
    Behind,
    /// Every connection pgsplit may open to the server is in use.
    Full,
    /// The session's own pool there has every one of its connections in use: passed over for
    /// a replica with room, but still where the read waits when every replica is so.
    PoolFull,
}

/// Whether node `i` may take a read that needs `required`.
fn replica_check(topology: &Topology, i: usize, required: Option<Lsn>) -> Result<(), Ineligible> {
    let node = &topology.nodes[i];
    if node.role() != Some(NodeRole::Replica)
        || !node.is_up()
        || node.lag_excluded
        || topology.primary == Some(i)
    {
        return Err(Ineligible::Unusable);
    }
    if let Some(required) = required
        && node.lsn.is_none_or(|lsn| lsn < required)
    {
        return Err(Ineligible::Behind);
    }
    if node.server_full() {
        return Err(Ineligible::Full);
    }
    if node.pool_full {
        return Err(Ineligible::PoolFull);
    }
    Ok(())
}

/// Routes a read among eligible replicas (and the primary under `primary_reads: always`).
fn read(
    cx: &Ctx<'_>,
    balancer: &mut Balancer,
    required: Option<Lsn>,
    reason: RouteReason,
) -> Route {
    let topology = cx.topology;
    let policy = cx.policy;
    let primary_candidate = match policy.primary_reads {
        PrimaryReads::Always if !topology.split_brain => topology
            .usable_primary()
            .filter(|&p| !topology.nodes[p].is_full()),
        _ => None,
    };
    let eligible =
        |i: usize| primary_candidate == Some(i) || replica_check(topology, i, required).is_ok();
    if let Some(i) = balancer.pick(policy.balance, &topology.nodes, eligible) {
        return if Some(i) == topology.primary {
            cx.done(Target::Primary(i), RouteReason::ReadPrimary)
        } else {
            cx.done(Target::Replica(i), reason)
        };
    }
    let (mut behind, mut full, mut pool_full) = (false, false, false);
    for i in 0..topology.nodes.len() {
        match replica_check(topology, i, required) {
            Err(Ineligible::Behind) => behind = true,
            Err(Ineligible::Full) => full = true,
            Err(Ineligible::PoolFull) => pool_full = true,
            _ => {}
        }
    }
    if behind {
        // Read-your-writes beats `primary_reads`: wait for a replica to catch up for up
        // to `causal_wait`, then read from the primary.
        let deadline = cx.deadline(policy.causal_wait);
        if cx.now < deadline {
            return cx.done(Target::Wait { deadline }, RouteReason::SessionConsistency);
        }
        return cx.primary(RouteReason::SessionConsistency);
    }
    let queue_on_full = |cx: &Ctx<'_>, balancer: &mut Balancer| {
        // Every otherwise eligible replica is full: queue on the least loaded one; the
        // pool's fair queue and checkout timeout do the waiting.
        let full_ok = |i: usize| {
            matches!(
                replica_check(topology, i, required),
                Err(Ineligible::Full | Ineligible::PoolFull)
            )
        };
        balancer
            .pick(
                crate::policy::BalancePolicy::WeightedLeastConnections,
                &topology.nodes,
                full_ok,
            )
            .map(|i| cx.done(Target::Replica(i), RouteReason::PoolFull))
    };
    if pool_full && let Some(route) = queue_on_full(cx, balancer) {
        // Replicas whose pools for this client are busy keep the read (it waits for one of
        // their connections) rather than moving it to the primary: a surge of reads must not
        // land on the primary because the replicas' pools are momentarily all in use.
        return route;
    }
    match policy.primary_reads {
        PrimaryReads::Never => {
            if full && let Some(route) = queue_on_full(cx, balancer) {
                return route;
            }
            cx.done(Target::Refuse(Refusal::NoReplica), RouteReason::NoReplica)
        }
        PrimaryReads::Fallback | PrimaryReads::Always => {
            if full
                && topology.usable_primary().is_none()
                && let Some(route) = queue_on_full(cx, balancer)
            {
                return route;
            }
            cx.primary(RouteReason::ReadPrimaryFallback)
        }
    }
}
