//! The console's result sets: every command's columns and rows, built from plain values
//! (pool stats, the snapshot, the client registry) so they are tested without sockets.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use pgsplit_backend::PoolStats;
use pgsplit_config::PoolMode;
use pgsplit_router::{Balancer, NodeRole, Refusal, SessionView, Snapshot, Target, Unit, route};

use crate::clients::{ClientRow, DbTotals};

/// A column's type as the client sees it; values are always sent in text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `text` (OID 25).
    Text,
    /// `int8` (OID 20): counters, sizes, ports; psql right-aligns them.
    Int8,
    /// `float8` (OID 701).
    Float8,
    /// `bool` (OID 16), `t` / `f`.
    Bool,
}

impl Kind {
    /// The type OID put in the RowDescription.
    pub(crate) fn oid(self) -> u32 {
        match self {
            Kind::Text => 25,
            Kind::Int8 => 20,
            Kind::Float8 => 701,
            Kind::Bool => 16,
        }
    }
}

/// One result set.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    /// Column names and types.
    pub(crate) columns: Vec<(&'static str, Kind)>,
    /// Rows of text values (`None` is NULL), one value per column.
    pub(crate) rows: Vec<Vec<Option<String>>>,
    /// The CommandComplete tag.
    pub(crate) tag: &'static str,
}

impl Table {
    fn new(tag: &'static str, columns: &[(&'static str, Kind)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            tag,
        }
    }

    fn push(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The values of column `name`, for tests.
    #[cfg(test)]
    pub(crate) fn column(&self, name: &str) -> Vec<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        self.rows.iter().map(|r| r[i].as_deref()).collect()
    }
}

fn text(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

fn num(v: impl std::fmt::Display) -> Option<String> {
    Some(v.to_string())
}

fn boolean(v: bool) -> Option<String> {
    Some(if v { "t" } else { "f" }.to_owned())
}

/// `SHOW POOLS`: one row per (server, user, database) pool.
pub(crate) fn pools(stats: &[PoolStats], mode: PoolMode) -> Table {
    use Kind::*;
    let mut t = Table::new(
        "SHOW",
        &[
            ("database", Text),
            ("user", Text),
            ("server", Text),
            ("cl_waiting", Int8),
            ("sv_active", Int8),
            ("sv_idle", Int8),
            ("sv_login", Int8),
            ("pool_size", Int8),
            ("pool_mode", Text),
        ],
    );
    let mut stats: Vec<&PoolStats> = stats.iter().collect();
    stats.sort_by(|a, b| {
        (&a.key.database(), &a.key.user(), &a.key.server()).cmp(&(
            &b.key.database(),
            &b.key.user(),
            &b.key.server(),
        ))
    });
    for s in stats {
        t.push(vec![
            text(s.key.database()),
            text(s.key.user()),
            text(s.key.server()),
            num(s.waiting),
            num(s.busy),
            num(s.idle),
            num(s.connecting),
            num(s.size),
            text(mode.as_str()),
        ]);
    }
    t
}

/// `SHOW SERVERS`: one row per configured server, with what routing knows about it.
pub(crate) fn servers(snapshot: &Snapshot, stats: &[PoolStats]) -> Table {
    use Kind::*;
    let mut t = Table::new(
        "SHOW",
        &[
            ("name", Text),
            ("host", Text),
            ("port", Int8),
            ("role", Text),
            ("state", Text),
            ("weight", Int8),
            ("max_connections", Int8),
            ("open", Int8),
            ("active", Int8),
            ("lag_bytes", Int8),
            ("lag_seconds", Float8),
            ("lag_excluded", Bool),
        ],
    );
    for (i, server) in snapshot.config.servers.iter().enumerate() {
        let node = snapshot.topology.nodes.get(i);
        let role = match node.and_then(|n| n.role()) {
            Some(NodeRole::Primary) => "primary",
            Some(NodeRole::Replica) => "replica",
            None => "unknown",
        };
        let state = match node {
            Some(n) if !n.is_up() => "down",
            _ => "up",
        };
        let mine = stats.iter().filter(|s| s.key.server() == &*server.name);
        let (open, active) = mine.fold((0, 0), |(o, a), s| (o + s.open, a + s.busy));
        let lag = node.and_then(|n| n.lag);
        t.push(vec![
            text(&server.name),
            text(&server.host),
            num(server.port),
            text(role),
            text(state),
            num(node.map_or(server.weight, |n| n.weight)),
            num(node.map_or(server.max_connections, |n| n.max_connections)),
            num(open),
            num(active),
            lag.map(|l| l.bytes.to_string()),
            lag.map(|l| format!("{:.3}", l.delay.as_secs_f64())),
            boolean(node.is_some_and(|n| n.lag_excluded)),
        ]);
    }
    t
}

/// `SHOW CLIENTS`: one row per authenticated client.
pub(crate) fn clients(rows: &[ClientRow]) -> Table {
    use Kind::*;
    let mut t = Table::new(
        "SHOW",
        &[
            ("id", Int8),
            ("user", Text),
            ("database", Text),
            ("application_name", Text),
            ("addr", Text),
            ("state", Text),
            ("connect_time", Text),
            ("pinned", Bool),
        ],
    );
    for r in rows {
        t.push(vec![
            num(r.id),
            text(&r.user),
            text(&r.database),
            text(&r.application_name),
            r.addr.map(|a| a.to_string()),
            text(r.activity.as_str()),
            text(utc(r.connected_at)),
            boolean(r.pinned),
        ]);
    }
    t
}

/// `SHOW STATS`: totals per database since the proxy started, `uptime` ago. The columns
/// are PgBouncer's (the names and order of its recent releases, so its exporters find
/// theirs), then pgsplit's own.
/// The `avg_*` figures are since the start, not over PgBouncer's last `stats_period`: rates
/// per second for the counts and bytes, per transaction, query or checkout for the times.
pub(crate) fn stats(totals: &[DbTotals], uptime: Duration) -> Table {
    use Kind::*;
    let mut t = Table::new(
        "SHOW",
        &[
            ("database", Text),
            ("total_server_assignment_count", Int8),
            ("total_xact_count", Int8),
            ("total_query_count", Int8),
            ("total_received", Int8),
            ("total_sent", Int8),
            ("total_xact_time", Int8),
            ("total_query_time", Int8),
            ("total_wait_time", Int8),
            ("avg_server_assignment_count", Int8),
            ("avg_xact_count", Int8),
            ("avg_query_count", Int8),
            ("avg_recv", Int8),
            ("avg_sent", Int8),
            ("avg_xact_time", Int8),
            ("avg_query_time", Int8),
            ("avg_wait_time", Int8),
            ("total_client_connections", Int8),
            ("current_clients", Int8),
            ("total_checkout_timeouts", Int8),
        ],
    );
    // Whole seconds, at least one: a rate over the first second is the count so far.
    let secs = uptime.as_secs().max(1);
    for d in totals {
        let w = &d.work;
        let attempts = d.checkouts + d.checkout_timeouts;
        t.push(vec![
            text(&d.database),
            num(d.checkouts),
            num(w.xacts),
            num(w.queries),
            num(w.received),
            num(w.sent),
            num(w.xact_us),
            num(w.query_us),
            num(d.wait_us),
            num(d.checkouts / secs),
            num(w.xacts / secs),
            num(w.queries / secs),
            num(w.received / secs),
            num(w.sent / secs),
            num(w.xact_us.checked_div(w.xacts).unwrap_or(0)),
            num(w.query_us.checked_div(w.queries).unwrap_or(0)),
            num(d.wait_us.checked_div(attempts).unwrap_or(0)),
            num(d.client_connections),
            num(d.current_clients),
            num(d.checkout_timeouts),
        ]);
    }
    t
}

/// `SHOW CONFIG`: the effective settings of the current snapshot. Never a password: users
/// are only counted.
pub(crate) fn config(snapshot: &Snapshot) -> Table {
    let c = &snapshot.config;
    let p = &c.pool;
    let l = &c.limits;
    let mut t = Table::new("SHOW", &[("key", Kind::Text), ("value", Kind::Text)]);
    let rows: Vec<(&str, String)> = vec![
        (
            "source",
            c.source
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_default(),
        ),
        ("generation", snapshot.generation.to_string()),
        ("listen", c.listen.clone()),
        ("admin.listen", c.admin.listen.clone()),
        ("log.format", c.log.format.as_str().to_owned()),
        ("log.level", c.log.level.clone()),
        (
            "limits.max_client_connections",
            l.max_client_connections.to_string(),
        ),
        ("limits.max_message_size", l.max_message_size.to_string()),
        ("limits.startup_timeout", duration(l.startup_timeout)),
        ("shutdown_timeout", duration(c.shutdown_timeout)),
        (
            "workers",
            c.workers
                .map_or_else(|| "auto".to_owned(), |n| n.to_string()),
        ),
        ("pool.mode", p.mode.as_str().to_owned()),
        ("pool.size", p.size.to_string()),
        ("pool.min_idle", p.min_idle.to_string()),
        ("pool.checkout_timeout", duration(p.checkout_timeout)),
        ("pool.server_lifetime", duration(p.server_lifetime)),
        ("pool.server_idle_timeout", duration(p.server_idle_timeout)),
        (
            "pool.client_idle_timeout",
            p.client_idle_timeout.map_or("never".to_owned(), duration),
        ),
        ("pool.connect_timeout", duration(p.connect_timeout)),
        ("pool.reset_query", p.reset_query.clone()),
        ("servers", c.servers.len().to_string()),
        ("users", c.users.len().to_string()),
    ];
    for (k, v) in rows {
        t.push(vec![text(k), text(v)]);
    }
    t
}

/// `SHOW VERSION`.
pub(crate) fn version() -> Table {
    let mut t = Table::new("SHOW", &[("version", Kind::Text)]);
    t.push(vec![text(format!("pgsplit {}", env!("CARGO_PKG_VERSION")))]);
    t
}

/// Who asks for `EXPLAIN ROUTE`: the console session's own user, database and
/// application_name stand in for a client's (rules may match on them).
pub(crate) struct Asker<'a> {
    pub(crate) user: &'a str,
    pub(crate) database: &'a str,
    pub(crate) application_name: &'a str,
}

/// `EXPLAIN ROUTE <sql>`: a dry run of classification and routing against the current
/// snapshot, for a session outside any transaction. Changes no state (the classification
/// cache and balancing included).
pub(crate) fn explain_route(snapshot: &Snapshot, sql: &str, asker: &Asker<'_>) -> Table {
    use Kind::*;
    let mut t = Table::new(
        "EXPLAIN",
        &[
            ("class", Text),
            ("classify_reason", Text),
            ("target", Text),
            ("route_reason", Text),
            ("rule", Text),
            ("tables", Text),
            ("functions", Text),
            ("hint", Text),
        ],
    );
    let class = snapshot.routing.classifier.classify_uncached(sql);
    let session = SessionView {
        user: asker.user.to_owned(),
        database: asker.database.to_owned(),
        application_name: asker.application_name.to_owned(),
        ..SessionView::default()
    };
    let unit = Unit {
        class: &class,
        sql,
        fingerprint: None,
    };
    let policy = &snapshot.routing.policy;
    let decision = route(
        &unit,
        &session,
        &snapshot.topology,
        policy,
        &mut Balancer::new(),
        Duration::ZERO,
    );
    let node = |i: usize| {
        snapshot
            .topology
            .nodes
            .get(i)
            .map_or_else(|| i.to_string(), |n| n.name.clone())
    };
    let target = match &decision.target {
        Target::Primary(i) => format!("primary:{}", node(*i)),
        Target::Replica(i) => format!("replica:{}", node(*i)),
        Target::Stay => "stay".to_owned(),
        Target::Wait { deadline } => format!("wait:{}ms", deadline.as_millis()),
        Target::Refuse(Refusal::Blocked(message)) => format!("refuse:blocked ({message})"),
        Target::Refuse(Refusal::NoPrimary) => "refuse:no_primary".to_owned(),
        Target::Refuse(Refusal::SplitBrain) => "refuse:split_brain".to_owned(),
        Target::Refuse(Refusal::NoReplica) => "refuse:no_replica".to_owned(),
    };
    let rule = decision
        .rule
        .map(|i| {
            policy
                .rules
                .get(i)
                .map_or_else(|| format!("rules[{i}]"), |r| r.name.clone())
        })
        .unwrap_or_default();
    t.push(vec![
        text(class.class.as_str()),
        text(class.reason.as_str()),
        text(target),
        text(decision.reason.as_str()),
        text(rule),
        text(class.tables.join(",")),
        text(class.functions.join(",")),
        text(class.hint.map(|h| h.as_str()).unwrap_or_default()),
    ]);
    t
}

/// `5s`, `250ms`, `1h`: a duration as an operator writes it in the config.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `2026-11-05 13:04:05 UTC` (whole seconds).
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = String::with_capacity(23);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use pgsplit_backend::PoolKey;

    use super::*;
    use crate::clients::{Activity, Work};

    const YAML: &str = "\
users:
  - { name: app, password: s3cret-app, server_password: s3cret-server }
  - { name: admin, password: s3cret-admin, admin: true }
pool: { size: 7, checkout_timeout: 250ms }
servers:
  - { name: pg1, host: 10.0.0.1, port: 5432, role: primary }
  - { name: pg2, host: 10.0.0.2, port: 5433, role: replica, weight: 3 }
";

    fn snapshot() -> Snapshot {
        Snapshot::new(pgsplit_config::parse(YAML, "t.yaml").unwrap())
    }

    fn stat(server: &str, db: &str, busy: usize, idle: usize) -> PoolStats {
        PoolStats {
            key: PoolKey::new(server, "app", db),
            open: busy + idle,
            idle,
            busy,
            connecting: 0,
            waiting: 1,
            size: 7,
            server_open: busy + idle,
            server_max: 100,
        }
    }

    const ASKER: Asker<'static> = Asker {
        user: "admin",
        database: "pgsplit",
        application_name: "",
    };

    #[test]
    fn explain_route_sends_writes_to_the_primary_and_reads_are_reads() {
        let s = snapshot();
        let t = explain_route(&s, "UPDATE t SET a = 1", &ASKER);
        assert_eq!(t.tag, "EXPLAIN");
        assert_eq!(t.column("class"), [Some("write")]);
        assert_eq!(t.column("target"), [Some("primary:pg1")]);
        assert_eq!(t.column("route_reason"), [Some("write")]);
        assert_eq!(t.column("tables"), [Some("t")]);
        assert_eq!(t.column("rule"), [Some("")]);

        let t = explain_route(&s, "SELECT 1", &ASKER);
        assert_eq!(t.column("class"), [Some("read")]);
        let target = t.column("target")[0].unwrap().to_owned();
        assert!(
            target == "replica:pg2" || target == "primary:pg1",
            "{target}"
        );

        let t = explain_route(&s, "SELECT nextval('s')", &ASKER);
        assert_eq!(t.column("functions"), [Some("nextval")]);
        assert_eq!(t.column("target"), [Some("primary:pg1")]);
    }

    #[test]
    fn pools_are_sorted_and_use_the_counts() {
        let t = pools(
            &[stat("pg2", "b", 0, 2), stat("pg1", "a", 3, 1)],
            PoolMode::Transaction,
        );
        assert_eq!(t.column("database"), [Some("a"), Some("b")]);
        assert_eq!(t.column("server"), [Some("pg1"), Some("pg2")]);
        assert_eq!(t.column("sv_active"), [Some("3"), Some("0")]);
        assert_eq!(t.column("sv_idle"), [Some("1"), Some("2")]);
        assert_eq!(t.column("cl_waiting"), [Some("1"), Some("1")]);
        assert_eq!(t.column("pool_mode"), [Some("transaction"); 2]);
        let kinds: Vec<Kind> = t.columns.iter().map(|c| c.1).collect();
        assert_eq!(kinds[3], Kind::Int8);
    }

    #[test]
    fn servers_add_up_their_pools() {
        let s = snapshot();
        let t = servers(
            &s,
            &[
                stat("pg1", "a", 2, 1),
                stat("pg1", "b", 1, 0),
                stat("pg2", "a", 0, 4),
            ],
        );
        assert_eq!(t.column("name"), [Some("pg1"), Some("pg2")]);
        assert_eq!(t.column("port"), [Some("5432"), Some("5433")]);
        assert_eq!(t.column("role"), [Some("primary"), Some("replica")]);
        assert_eq!(t.column("state"), [Some("up"), Some("up")]);
        assert_eq!(t.column("weight"), [Some("1"), Some("3")]);
        assert_eq!(t.column("open"), [Some("4"), Some("4")]);
        assert_eq!(t.column("active"), [Some("3"), Some("0")]);
        assert_eq!(t.column("lag_bytes"), [None, None]);
        assert_eq!(t.column("lag_excluded"), [Some("f"), Some("f")]);
    }

    #[test]
    fn config_shows_settings_and_never_a_password() {
        let mut s = snapshot();
        s.generation = 4;
        let t = config(&s);
        let get = |k: &str| {
            let i = t.column("key").iter().position(|v| *v == Some(k)).unwrap();
            t.column("value")[i].unwrap().to_owned()
        };
        assert_eq!(get("pool.size"), "7");
        assert_eq!(get("pool.checkout_timeout"), "250ms");
        assert_eq!(get("shutdown_timeout"), "30s");
        assert_eq!(get("workers"), "auto");
        assert_eq!(get("pool.server_lifetime"), "1h");
        assert_eq!(get("pool.client_idle_timeout"), "never");
        assert_eq!(get("generation"), "4");
        assert_eq!(get("servers"), "2");
        let all = format!("{t:?}");
        assert!(!all.contains("s3cret"), "{all}");
    }

    #[test]
    fn clients_and_stats_rows() {
        let row = ClientRow {
            id: 9,
            user: "app".into(),
            database: "db".into(),
            application_name: "x".into(),
            addr: Some("127.0.0.1:4000".parse().unwrap()),
            connected_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            activity: Activity::Waiting,
            pinned: true,
        };
        let t = clients(&[row]);
        assert_eq!(t.column("addr"), [Some("127.0.0.1:4000")]);
        assert_eq!(t.column("state"), [Some("waiting")]);
        assert_eq!(t.column("connect_time"), [Some("2023-11-14 22:13:20 UTC")]);
        assert_eq!(t.column("pinned"), [Some("t")]);

        let t = stats(
            &[DbTotals {
                database: "db".into(),
                client_connections: 5,
                current_clients: 2,
                checkouts: 3,
                wait_us: 900,
                checkout_timeouts: 0,
                work: Work {
                    xacts: 40,
                    queries: 100,
                    received: 5000,
                    sent: 20_000,
                    xact_us: 8000,
                    query_us: 5000,
                },
            }],
            Duration::from_millis(10_900),
        );
        assert_eq!(t.column("total_server_assignment_count"), [Some("3")]);
        assert_eq!(t.column("avg_wait_time"), [Some("300")]);
        assert_eq!(t.column("total_xact_count"), [Some("40")]);
        assert_eq!(
            t.column("avg_xact_count"),
            [Some("4")],
            "per second, over 10 s"
        );
        assert_eq!(t.column("avg_recv"), [Some("500")]);
        assert_eq!(t.column("avg_sent"), [Some("2000")]);
        assert_eq!(
            t.column("avg_xact_time"),
            [Some("200")],
            "µs per transaction"
        );
        assert_eq!(t.column("avg_query_time"), [Some("50")], "µs per query");
        let idle = stats(
            &[DbTotals {
                database: "db".into(),
                ..DbTotals::default()
            }],
            Duration::ZERO,
        );
        assert_eq!(
            idle.column("avg_query_time"),
            [Some("0")],
            "no division by zero"
        );
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc(leap), "2000-02-29 00:00:00 UTC");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_secs(600)), "10m");
        assert_eq!(duration(Duration::ZERO), "0s");
    }
}
