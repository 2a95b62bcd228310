//! Where a client's next unit goes: scan its buffered messages, classify them, ask the router, and resolve the server's pool.
//!
//! A unit is one Simple Query, one FunctionCall, or the extended-protocol messages up to and
//! including Sync. It is routed as a whole, before any of it is sent, from the dominant
//! classification of its statements: any write (or anything unclassifiable) makes the whole
//! unit a write. Statements prepared in earlier units are classified once per config
//! generation and the verdict is kept with the statement.

// Seeded per map, and several times faster than SipHash on short keys (names, ids).
use foldhash::{HashMap, HashMapExt};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use pgsplit_backend::{PoolKey, PoolSettings};
use pgsplit_classify::{Class, Classification, Reason, SetKind};
use pgsplit_config::Config;
use pgsplit_router::{
    Balancer, NodeRole, Route, RouteOverride, RouteReason, SessionView, Snapshot, Target, Topology,
    Unit, route,
};
use pgsplit_telemetry::{Histogram, IntCounter, Metrics};
use tokio::time::{Duration, Instant};

mod scan;

pub(crate) use scan::{Scan, scan_unit};

thread_local! {
    /// The topology last routed with on this thread, and a copy that each routing decision
    /// first stamps with the current busy counts. Scratch shared by the thread's sessions: a
    /// decision overwrites every count before it reads any, and nothing else keeps a borrow.
    /// Copied once per topology change per thread, not once per session.
    static LOCAL_TOPOLOGY: RefCell<Option<(Arc<Topology>, Topology)>> =
        const { RefCell::new(None) };
    /// The buffer a session's first use of a server builds its shared-target key in: a lookup
    /// that finds the target allocates nothing.
    static SHARED_KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What the routing of every session shares: verdicts for messages that carry no SQL, and
/// metric handles resolved once.
#[derive(Debug)]
pub struct RouteKit {
    /// Something pgsplit cannot classify (a Bind of a statement it does not know, COPY data
    /// outside COPY, a batch too large to scan): the primary.
    unknown: Arc<Classification>,
    /// A unit with no statement in it (only Sync, Describe, Close): runs anywhere.
    empty: Arc<Classification>,
    /// A FunctionCall message: may do anything.
    function_call: Arc<Classification>,
    /// `pgsplit_route_decisions_total`, by target kind then reason.
    decisions: Vec<IntCounter>,
    /// `pgsplit_route_fallbacks_total`, by reason (only the fallback reasons are used).
    fallbacks: Vec<IntCounter>,
    /// `pgsplit_query_duration_seconds{role}`: primary, replica.
    durations: [Histogram; 2],
    /// The registry, to resolve per-server query counters.
    metrics: Arc<Metrics>,
    /// Server connections checked out by sessions, per server name (shared by every
    /// session; balancing and the full-server check read them).
    loads: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// The counters of [`RouteKit::loads`] in the server order of the latest generation a
    /// session asked for, shared by the sessions of that generation.
    generation_loads: Mutex<Option<(u64, Loads)>>,
    /// Server connections checked out by sessions, per pool (server, login user, database,
    /// joined by NUL): the full-pool check reads them.
    pool_loads: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// The counters of [`RouteKit::pool_loads`] of one login user and database, in the
    /// server order of a generation, shared by that pair's sessions.
    session_pool_loads: Mutex<HashMap<(String, String), (u64, Loads)>>,
    /// Targets built by sessions, shared so that a new client connection does not resolve its
    /// pool settings and metric handles again (`-C` workloads connect for every transaction).
    targets: Mutex<SharedTargets>,
}

/// [`ServerTarget`]s of one config generation and primary, by server index, user, login user
/// and database (see [`shared_key`]).
#[derive(Debug, Default)]
struct SharedTargets {
    scope: Option<(u64, Option<usize>)>,
    map: HashMap<String, Arc<ServerTarget>>,
}

/// Checked-out connection counts of servers, by index in a config generation.
/// Pool counters kept before the unused ones are dropped (see [`RouteKit::pool_load`]).
const POOL_LOADS_PRUNE_AT: usize = 4096;

type Loads = Arc<[Arc<AtomicUsize>]>;

/// Most shared targets kept (clients name databases freely): past it the map starts over.
const SHARED_TARGETS_MAX: usize = 10_000;

/// The key of a shared target: the server index in a fixed-width prefix, then the names
/// separated by NUL, which never occurs in names from a startup packet or the config.
#[cfg(test)]
fn shared_key(index: usize, user: &str, login_user: &str, database: &str) -> String {
    let mut key = String::new();
    shared_key_into(&mut key, index, user, login_user, database);
    key
}

/// Writes [`shared_key`] into `key` (cleared first). Built by hand: `format!` cost a new
/// client connection about 1,700 instructions per target.
fn shared_key_into(key: &mut String, index: usize, user: &str, login_user: &str, database: &str) {
    key.clear();
    key.reserve(20 + 3 + user.len() + login_user.len() + database.len());
    let mut digits = [b'0'; 20];
    let mut n = index;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // ASCII digits: always valid UTF-8.
    key.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    for part in [user, login_user, database] {
        key.push('\0');
        key.push_str(part);
    }
}

/// Target kinds as metric labels, in the order [`target_kind`] numbers them.
const TARGET_KINDS: [&str; 5] = ["primary", "replica", "stay", "wait", "refuse"];

fn target_kind(target: &Target) -> usize {
    match target {
        Target::Primary(_) => 0,
        Target::Replica(_) => 1,
        Target::Stay => 2,
        Target::Wait { .. } => 3,
        Target::Refuse(_) => 4,
    }
}

/// Route reasons that mean "a read did not simply go to a replica".
fn is_fallback(reason: RouteReason) -> bool {
    matches!(
        reason,
        RouteReason::ReadPrimaryFallback
            | RouteReason::SessionConsistency
            | RouteReason::AfterWriteWindow
            | RouteReason::PoolFull
            | RouteReason::NoReplica
    )
}

impl RouteKit {
    /// Resolves every route metric handle once.
    pub fn new(metrics: Arc<Metrics>) -> RouteKit {
        let reasons = RouteReason::ALL;
        let mut decisions = Vec::with_capacity(TARGET_KINDS.len() * reasons.len());
        for target in TARGET_KINDS {
            for reason in reasons {
                decisions.push(
                    metrics
                        .route_decisions_total
                        .with_label_values(&[target, reason.as_str()]),
                );
            }
        }
        let fallbacks = reasons
            .iter()
            .map(|r| {
                metrics
                    .route_fallbacks_total
                    .with_label_values(&[r.as_str()])
            })
            .collect();
        let fixed = |class, reason| Arc::new(Classification::new(class, reason));
        RouteKit {
            unknown: fixed(Class::Unknown, Reason::Unparsed),
            empty: fixed(Class::Read, Reason::Empty),
            function_call: fixed(Class::Write, Reason::CallDo),
            decisions,
            fallbacks,
            durations: pgsplit_telemetry::QUERY_ROLES.map(|role| metrics.query_duration(role)),
            metrics,
            loads: Mutex::new(HashMap::new()),
            generation_loads: Mutex::new(None),
            pool_loads: Mutex::new(HashMap::new()),
            session_pool_loads: Mutex::new(HashMap::new()),
            targets: Mutex::new(SharedTargets::default()),
        }
    }

    /// The target another session built for `key` under `scope` (generation, primary).
    fn shared_target(&self, scope: (u64, Option<usize>), key: &str) -> Option<Arc<ServerTarget>> {
        let shared = self.targets.lock();
        if shared.scope != Some(scope) {
            return None;
        }
        shared.map.get(key).cloned()
    }

    /// Shares a target built for `key` under `scope`. A newer scope replaces the older one's
    /// targets; a session still on an older snapshot shares nothing.
    fn keep_target(&self, scope: (u64, Option<usize>), key: String, target: Arc<ServerTarget>) {
        let mut shared = self.targets.lock();
        match shared.scope {
            Some(current) if current == scope => {}
            Some((generation, _)) if generation > scope.0 => return,
            _ => {
                shared.scope = Some(scope);
                shared.map.clear();
            }
        }
        if shared.map.len() >= SHARED_TARGETS_MAX {
            shared.map.clear();
        }
        shared.map.insert(key, target);
    }

    /// The checked-out connection count of server `name` (created at first use; kept across
    /// reloads so that counts of connections held over a reload stay right).
    fn load(&self, name: &str) -> Arc<AtomicUsize> {
        let mut loads = self.loads.lock();
        if let Some(load) = loads.get(name) {
            return Arc::clone(load);
        }
        Arc::clone(loads.entry(name.to_owned()).or_default())
    }

    /// The checked-out count of the pool of (`server`, `login_user`, `database`).
    fn pool_load(&self, server: &str, login_user: &str, database: &str) -> Arc<AtomicUsize> {
        let key = format!("{server}\0{login_user}\0{database}");
        let mut loads = self.pool_loads.lock();
        if loads.len() >= POOL_LOADS_PRUNE_AT && !loads.contains_key(&key) {
            // Clients may name any database: forget the counters nobody holds (a count of
            // zero with no session or target referring to it).
            loads.retain(|_, load| Arc::strong_count(load) > 1);
        }
        Arc::clone(loads.entry(key).or_default())
    }

    /// The checked-out counts of the pools of `login_user` and `database` on the snapshot's
    /// servers, by server index.
    fn pool_loads_of(&self, snapshot: &Snapshot, login_user: &str, database: &str) -> Loads {
        let pair = (login_user.to_owned(), database.to_owned());
        if let Some((generation, loads)) = self.session_pool_loads.lock().get(&pair)
            && *generation == snapshot.generation
        {
            return Arc::clone(loads);
        }
        let loads = per_server(snapshot, |server| {
            self.pool_load(server, login_user, database)
        });
        let mut cached = self.session_pool_loads.lock();
        if cached.len() >= SHARED_TARGETS_MAX {
            cached.clear();
        }
        cached.insert(pair, (snapshot.generation, Arc::clone(&loads)));
        loads
    }

    /// The checked-out connection counts of `snapshot`'s servers, by index: built once per
    /// generation and shared (a new client connection would otherwise look up every server).
    fn loads_of(&self, snapshot: &Snapshot) -> Loads {
        let mut cached = self.generation_loads.lock();
        if let Some((generation, loads)) = &*cached
            && *generation == snapshot.generation
        {
            return Arc::clone(loads);
        }
        let loads = per_server(snapshot, |server| self.load(server));
        *cached = Some((snapshot.generation, Arc::clone(&loads)));
        loads
    }

    fn count(&self, route: &Route) {
        let reasons = RouteReason::ALL.len();
        let reason = route.reason as usize;
        if let Some(c) = self
            .decisions
            .get(target_kind(&route.target) * reasons + reason)
        {
            c.inc();
        }
        if is_fallback(route.reason)
            && let Some(c) = self.fallbacks.get(reason)
        {
            c.inc();
        }
    }
}

/// A server a session may send units to, with its pool and its metric handles.
#[derive(Debug)]
pub(crate) struct ServerTarget {
    /// Index in the snapshot's servers (and topology nodes).
    pub(crate) index: usize,
    /// The pool of (server, login user, database).
    pub(crate) key: PoolKey,
    /// How that pool opens and limits connections.
    pub(crate) settings: PoolSettings,
    /// The role the server had when this target was built.
    pub(crate) role: NodeRole,
    /// `pgsplit_queries_total{server, role, kind}`, one per class, in [`kind_index`] order.
    queries: [IntCounter; 8],
    /// Connections of this server checked out by sessions.
    busy: Arc<AtomicUsize>,
    /// Connections of this pool checked out by sessions.
    pool_busy: Arc<AtomicUsize>,
    /// `pgsplit_query_duration_seconds{role}` of this server's role.
    pub(crate) duration: Histogram,
}

impl ServerTarget {
    /// A session checked out a connection of this server.
    pub(crate) fn checked_out(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.pool_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// A session gave a connection of this server back.
    pub(crate) fn released(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.pool_busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one unit of this class sent to this server.
    pub(crate) fn count_query(&self, class: Class) {
        self.queries[kind_index(class)].inc();
    }
}

/// Class names in [`kind_index`] order.
const KINDS: [&str; 8] = [
    "read",
    "write",
    "txn_begin",
    "txn_end",
    "savepoint",
    "session_set",
    "cursor",
    "unknown",
];

fn kind_index(class: Class) -> usize {
    match class {
        Class::Read => 0,
        Class::Write => 1,
        Class::TxnBegin(_) => 2,
        Class::TxnEnd => 3,
        Class::Savepoint => 4,
        Class::SessionSet(_) => 5,
        Class::Cursor => 6,
        Class::Unknown => 7,
    }
}

/// What the session tells the router, and the router's per-session state.
#[derive(Debug)]
pub(crate) struct SessionRouter {
    /// What routing knows about the session (kept current by the session).
    pub(crate) view: SessionView,
    /// Round-robin credits, started at a phase of the session's own (`seed`), and the
    /// least-connections tie-break position, started at the first replica (see `refresh`).
    balancer: Balancer,
    /// The config generation `targets` and `balancer` belong to.
    generation: u64,
    /// The primary `targets` were built with (their role labels depend on it).
    primary: Option<usize>,
    /// Targets built so far, by server index.
    targets: Vec<Option<Arc<ServerTarget>>>,
    /// The session's clock.
    epoch: Instant,
    /// When the last unit was routed: read once per unit, and reused for the checkout and as
    /// the unit's send time when nothing waited in between.
    routed_at: Instant,
    /// Phase for the round-robin start.
    seed: u32,
    /// The login user and database on servers (pool keys).
    login_user: String,
    /// Checked-out connection counts of the snapshot's servers, by index.
    loads: Loads,
    /// Checked-out connection counts of this session's pools (login user, database) on the
    /// snapshot's servers, by index.
    pool_loads: Loads,
    /// `pool.size` of the snapshot: a pool with this many checked out is full.
    pool_size: usize,
}

impl SessionRouter {
    /// A router for a session of `user` on `database` whose server login is `login_user`.
    pub(crate) fn new(user: &str, database: &str, login_user: &str, seed: u32) -> Self {
        let epoch = Instant::now();
        SessionRouter {
            view: SessionView {
                user: user.to_owned(),
                database: database.to_owned(),
                ..SessionView::default()
            },
            balancer: Balancer::new(),
            generation: 0,
            primary: None,
            targets: Vec::new(),
            epoch,
            routed_at: epoch,
            seed,
            login_user: login_user.to_owned(),
            loads: Arc::default(),
            pool_loads: Arc::default(),
            pool_size: usize::MAX,
        }
    }

    /// The session's clock, as the router reads time.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// When the last unit was routed.
    pub(crate) fn routed_at(&self) -> Instant {
        self.routed_at
    }

    /// Routes one unit against `snapshot` (or `modified`, a copy of its topology with some
    /// servers marked down) and counts the decision. Busy counts are the current ones.
    pub(crate) fn route(
        &mut self,
        snapshot: &Snapshot,
        modified: Option<Topology>,
        kit: &RouteKit,
        class: &Classification,
        sql: &str,
    ) -> Route {
        self.refresh(snapshot, kit);
        let fingerprint = if snapshot.routing.needs_fingerprint() && !sql.is_empty() {
            pgsplit_classify::fingerprint(sql)
        } else {
            None
        };
        let unit = Unit {
            class,
            sql,
            fingerprint: fingerprint.as_deref(),
        };
        self.routed_at = Instant::now();
        let now = self.routed_at.saturating_duration_since(self.epoch);
        let decision = match modified {
            Some(mut owned) => {
                set_busy(&mut owned, &self.loads, &self.pool_loads, self.pool_size);
                let policy = &snapshot.routing.policy;
                route(&unit, &self.view, &owned, policy, &mut self.balancer, now)
            }
            None => LOCAL_TOPOLOGY.with_borrow_mut(|local| {
                let fresh = local
                    .as_ref()
                    .is_none_or(|(source, _)| !Arc::ptr_eq(source, &snapshot.topology));
                if fresh {
                    let copy = Topology::clone(&snapshot.topology);
                    *local = Some((Arc::clone(&snapshot.topology), copy));
                }
                let (_, local) = local.as_mut().expect("set above");
                set_busy(local, &self.loads, &self.pool_loads, self.pool_size);
                let policy = &snapshot.routing.policy;
                route(&unit, &self.view, local, policy, &mut self.balancer, now)
            }),
        };
        kit.count(&decision);
        decision
    }

    /// The up replica a new client is greeted from while no primary is usable: one with room
    /// (for the server and for this session's pool there) before a full one, then the fewest
    /// checked-out connections; a full one's checkout queues.
    pub(crate) fn greeting_replica(
        &mut self,
        snapshot: &Snapshot,
        kit: &RouteKit,
    ) -> Option<usize> {
        self.refresh(snapshot, kit);
        let mut topology = Topology::clone(&snapshot.topology);
        set_busy(&mut topology, &self.loads, &self.pool_loads, self.pool_size);
        topology
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role() == Some(NodeRole::Replica) && n.is_up())
            .min_by_key(|(_, n)| (n.is_full(), n.busy))
            .map(|(i, _)| i)
    }

    /// Drops targets and balancing state of an older generation or primary.
    fn refresh(&mut self, snapshot: &Snapshot, kit: &RouteKit) {
        let primary = snapshot.topology.primary;
        if self.generation == snapshot.generation && self.primary == primary {
            return;
        }
        let fresh_generation = self.generation != snapshot.generation;
        self.generation = snapshot.generation;
        self.primary = primary;
        self.targets.clear();
        self.targets.resize(snapshot.config.servers.len(), None);
        if fresh_generation {
            self.loads = kit.loads_of(snapshot);
            self.pool_loads = kit.pool_loads_of(snapshot, &self.login_user, &self.view.database);
            self.pool_size = snapshot.config.pool.size;
            let nodes = &snapshot.topology.nodes;
            let replicas = |i: usize| nodes[i].role() == Some(NodeRole::Replica);
            // A session's first least-connections tie goes to the first replica in the
            // configuration: with no warm server of its own yet, it takes the one every new
            // session prefers, which short sessions one after the other thus keep warm
            // (measured on the bench cluster: `pgbench -C` with one client made 10% more
            // connections per second, and the replicas spent about 25 µs less CPU on each,
            // than with sessions starting at alternate replicas). Concurrent sessions still
            // spread, as each checkout counts against its replica's busy connections.
            let start = (0..nodes.len()).find(|&i| replicas(i)).unwrap_or(0);
            self.balancer = Balancer::starting_at(start);
            // Start the round robin at a session-specific phase.
            let total: u32 = nodes
                .iter()
                .filter(|n| n.role() == Some(NodeRole::Replica))
                .map(|n| n.weight.max(1))
                .sum();
            if total > 1 {
                for _ in 0..self.seed % total {
                    self.balancer
                        .pick(pgsplit_router::BalancePolicy::RoundRobin, nodes, replicas);
                }
            }
        }
    }

    /// The target for server `index` of `snapshot` (built at its first use in a generation).
    pub(crate) fn target(
        &mut self,
        snapshot: &Snapshot,
        kit: &RouteKit,
        index: usize,
    ) -> Option<Arc<ServerTarget>> {
        self.refresh(snapshot, kit);
        if let Some(Some(t)) = self.targets.get(index) {
            return Some(Arc::clone(t));
        }
        let scope = (snapshot.generation, snapshot.topology.primary);
        let target = SHARED_KEY.with_borrow_mut(|key| {
            let (user, database) = (&self.view.user, &self.view.database);
            shared_key_into(key, index, user, &self.login_user, database);
            let target = kit.shared_target(scope, key).or_else(|| {
                let target = Arc::new(self.build_target(snapshot, kit, index)?);
                kit.keep_target(scope, key.clone(), Arc::clone(&target));
                Some(target)
            });
            // A long key is not kept in the thread's buffer.
            if key.capacity() > 4096 {
                *key = String::new();
            }
            target
        })?;
        if let Some(slot) = self.targets.get_mut(index) {
            *slot = Some(Arc::clone(&target));
        }
        Some(target)
    }

    /// A new target for server `index` of `snapshot`: its pool, its role there, its metric
    /// handles.
    fn build_target(
        &self,
        snapshot: &Snapshot,
        kit: &RouteKit,
        index: usize,
    ) -> Option<ServerTarget> {
        let config: &Config = &snapshot.config;
        let server = config.servers.get(index)?;
        let password = config
            .user(&self.view.user)
            .and_then(|u| u.server_password.clone());
        let role = match snapshot.topology.primary {
            Some(p) if p == index => NodeRole::Primary,
            Some(_) => NodeRole::Replica,
            None => snapshot
                .topology
                .nodes
                .get(index)
                .and_then(|n| n.role())
                .unwrap_or(NodeRole::Primary),
        };
        let (role_label, duration) = match role {
            NodeRole::Primary => ("primary", &kit.durations[0]),
            NodeRole::Replica => ("replica", &kit.durations[1]),
        };
        let queries = KINDS.map(|kind| {
            kit.metrics
                .queries_total
                .with_label_values(&[server.name.as_str(), role_label, kind])
        });
        Some(ServerTarget {
            index,
            key: PoolKey::new(&server.name, &self.login_user, &self.view.database),
            settings: PoolSettings::new(
                server,
                &config.pool,
                password,
                config.limits.max_message_size,
            ),
            role,
            queries,
            // The session's counters of this generation (`refresh` ran before any target is
            // built), so a new session's targets cost no lookup of their own.
            busy: self
                .loads
                .get(index)
                .cloned()
                .unwrap_or_else(|| kit.load(&server.name)),
            pool_busy: self.pool_loads.get(index).cloned().unwrap_or_else(|| {
                kit.pool_load(&server.name, &self.login_user, &self.view.database)
            }),
            duration: duration.clone(),
        })
    }

    /// Applies the session settings routing cares about (after a read-back or at startup).
    pub(crate) fn note_settings(&mut self, settings: &[(String, String)]) {
        let get = |name: &str| {
            settings
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        self.view.default_read_only = get("default_transaction_read_only") == Some("on");
        self.view.default_serializable =
            get("default_transaction_isolation") == Some("serializable");
        let app = get("application_name").unwrap_or("");
        if self.view.application_name != app {
            app.clone_into(&mut self.view.application_name);
        }
    }
}

/// One counter per server of `snapshot`, by index.
fn per_server(snapshot: &Snapshot, load: impl Fn(&str) -> Arc<AtomicUsize>) -> Loads {
    snapshot
        .config
        .servers
        .iter()
        .map(|s| load(&s.name))
        .collect()
}

/// Copies the current checked-out counts into every node of `topology` (0 where `loads` has
/// none), and whether the session's pool there is full (`pool_loads` at `pool_size`), so that
/// nothing another session stamped on a shared copy is read.
fn set_busy(
    topology: &mut Topology,
    loads: &[Arc<AtomicUsize>],
    pool_loads: &[Arc<AtomicUsize>],
    pool_size: usize,
) {
    for (i, node) in topology.nodes.iter_mut().enumerate() {
        node.busy = loads.get(i).map_or(0, |load| load.load(Ordering::Relaxed));
        node.pool_full = pool_loads
            .get(i)
            .is_some_and(|load| load.load(Ordering::Relaxed) >= pool_size);
    }
}

/// A `SET pgsplit.route = ...` / `RESET pgsplit.route` pgsplit answers itself: the new
/// override, or the error for a bad value. `SET pgsplit.route = primary` is not valid SQL
/// (`primary` is a reserved word) but is what users write, so unparsed text is read too.
pub(crate) fn route_setting(
    class: &Classification,
    sql: &str,
) -> Option<Result<RouteOverride, String>> {
    let value = match (&class.class, &class.setting) {
        (Class::SessionSet(SetKind::Set { .. }), Some(s)) if s.name == "pgsplit.route" => {
            s.value.as_deref().map(str::to_ascii_lowercase)
        }
        (Class::SessionSet(SetKind::Reset), Some(s)) if s.name == "pgsplit.route" => None,
        (Class::Unknown, _) => lenient_route_setting(sql)?,
        _ => return None,
    };
    if class.statements > 1 {
        return None;
    }
    Some(match value.as_deref() {
        None | Some("auto" | "default") => Ok(RouteOverride::Auto),
        Some("primary") => Ok(RouteOverride::Primary),
        Some("replica") => Ok(RouteOverride::Replica),
        Some(v) => Err(format!(
            "invalid value for parameter \"pgsplit.route\": \"{v}\" (use primary, replica or auto)"
        )),
    })
}

/// `SET [SESSION|LOCAL] pgsplit.route {=|TO} word` or `RESET pgsplit.route`, read word by
/// word: `Some(Some(value))`, `Some(None)` for a reset, `None` when the text is anything else.
fn lenient_route_setting(sql: &str) -> Option<Option<String>> {
    let text = sql.trim().trim_end_matches(';').to_ascii_lowercase();
    let spaced = text.replace('=', " = ");
    let mut words = spaced.split_whitespace();
    match words.next()? {
        "reset" => (words.next()? == "pgsplit.route" && words.next().is_none()).then_some(None),
        "set" => {
            let mut name = words.next()?;
            if name == "session" || name == "local" {
                name = words.next()?;
            }
            if name != "pgsplit.route" || !matches!(words.next()?, "=" | "to") {
                return None;
            }
            let value = words.next()?.trim_matches(|c| c == '\'' || c == '"');
            words.next().is_none().then(|| Some(value.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
