//! pgsplit's HTTP admin endpoint: `/metrics`, `/healthz`, `/readyz` and `/status`.
//!
//! `/readyz` answers 503, with the reason in the body, while the proxy drains and while no
//! usable primary is known. `/status` is JSON: the config generation, readiness, the primary
//! (or null) and split brain, one entry per server (addresses, configured and detected role,
//! health, lag, lag exclusion, pool usage summed over its pools), and one entry per pool.
//!
//! Read-only views only: the server renders what [`AdminState`] points at and never changes
//! it. The SQL admin console (`SHOW ...`, `RELOAD`, `PAUSE`) lives in the session crate.
#![warn(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pgsplit_backend::{PoolStats, Pools};
use pgsplit_router::{NodeRole, Snapshot};
use pgsplit_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the admin endpoint reports on.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The proxy's metric families, rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The server pools, listed by `/status`.
    pub pools: Pools,
    /// The config, routing and topology being served, shown by `/status`.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// `true` once the proxy is draining; `/readyz` answers 503 from then on.
    pub draining: watch::Receiver<bool>,
    /// The outcome of the latest config reload (`None` before the first one), shown by
    /// `/status` as `reload`. The proxy's reloader stores into it; the endpoint only reads.
    pub last_reload: Arc<ArcSwapOption<LastReload>>,
    /// Called by `/metrics` right before rendering, to set the families that are read off
    /// live state rather than recorded (clients and server connections by state, parse
    /// cache totals). `None`: render as is.
    pub refresh: Option<MetricsRefresh>,
}

/// A hook that brings scrape-time metric families up to date (see [`AdminState::refresh`]).
/// Cheap to clone.
#[derive(Clone)]
pub struct MetricsRefresh(Arc<dyn Fn() + Send + Sync>);

impl MetricsRefresh {
    /// Wraps `f`, which must be quick: it runs on every scrape.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> MetricsRefresh {
        MetricsRefresh(Arc::new(f))
    }

    /// Runs the hook.
    pub fn run(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for MetricsRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRefresh(..)")
    }
}

/// How the latest config reload (file watch, `SIGHUP` or console `RELOAD`) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastReload {
    /// `None` when the new config was applied; otherwise why it was refused (for a config
    /// error, one `FILE:LINE:COL: key: message` line per problem). The old config stays.
    pub error: Option<String>,
    /// The generation served once this reload was done (unchanged after a failure).
    pub generation: u64,
    /// When it ended, in seconds since the Unix epoch.
    pub at_unix: u64,
}

impl LastReload {
    /// `"ok"` or `"failed"`, as `/status` and the reload metric name it.
    pub fn result(&self) -> &'static str {
        if self.error.is_none() { "ok" } else { "failed" }
    }
}

/// Serves the admin endpoint on `listener` until `stop` turns `true` (or its sender is
/// dropped). Open connections are then shut down gracefully.
///
/// `stop` is separate from [`AdminState::draining`] so that `/readyz` can still answer 503
/// while the proxy drains.
pub async fn serve(listener: TcpListener, state: AdminState, mut stop: watch::Receiver<bool>) {
    let state = Arc::new(state);
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let (stream, _peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            res = stop.changed() => {
                if res.is_err() {
                    return;
                }
                continue;
            }
        };
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                res = conn.as_mut() => res,
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// Answers one request.
fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/status");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => {
            if let Some(refresh) = &state.refresh {
                refresh.run();
            }
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.render())
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready(state) {
            Some(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{why}\n"),
            ),
            None => text(StatusCode::OK, "ready\n"),
        },
        _ => respond(StatusCode::OK, "application/json", status_json(state)),
    }
}

/// Why the proxy should take no traffic now, or `None` when it is ready: it is draining, or
/// no usable primary is known (none configured or detected, it is down, or split brain).
fn not_ready(state: &AdminState) -> Option<String> {
    if *state.draining.borrow() {
        return Some("draining".to_owned());
    }
    let snapshot = state.snapshot.load();
    let topology = &snapshot.topology;
    if topology.usable_primary().is_some() {
        return None;
    }
    Some(if topology.split_brain {
        "no primary: split brain, more than one server claims to be the primary".to_owned()
    } else if let Some(p) = topology.primary {
        format!("no primary: primary {} is down", topology.nodes[p].name)
    } else {
        "no primary: no server is known to be the primary".to_owned()
    })
}

/// A role as `/status` spells it.
fn role_name(role: Option<NodeRole>) -> &'static str {
    match role {
        Some(NodeRole::Primary) => "primary",
        Some(NodeRole::Replica) => "replica",
        None => "unknown",
    }
}

/// One entry per configured server: roles, health, lag and pool usage.
fn servers_json(snapshot: &Snapshot, stats: &[PoolStats]) -> Vec<serde_json::Value> {
    let topology = &snapshot.topology;
    snapshot
        .config
        .servers
        .iter()
        .zip(&topology.nodes)
        .map(|(server, node)| {
            let (mut busy, mut idle, mut open) = (0, 0, 0);
            for s in stats.iter().filter(|s| s.key.server() == &*server.name) {
                busy += s.busy;
                idle += s.idle;
                open += s.open;
            }
            let lag = node.lag.map(|l| (l.bytes, l.delay.as_secs_f64()));
            serde_json::json!({
                "name": &server.name,
                "addr": server.addr(),
                "configured_role": config_role_name(server.role),
                "detected_role": role_name(node.detected_role),
                "health": if node.is_up() { "up" } else { "down" },
                "lag_bytes": lag.map(|l| l.0),
                "lag_seconds": lag.map(|l| l.1),
                "lag_excluded": node.lag_excluded,
                "busy": busy,
                "idle": idle,
                "open": open,
            })
        })
        .collect()
}

/// The `/status` document: config generation, the latest reload, readiness, servers (roles,
/// health, lag, pool usage), the primary, the config's pool settings and servers, and one
/// entry per pool.
fn status_json(state: &AdminState) -> String {
    let snapshot = state.snapshot.load();
    let stats = state.pools.stats();
    let servers = servers_json(&snapshot, &stats);
    let topology = &snapshot.topology;
    let primary = topology.primary.map(|i| topology.nodes[i].name.as_str());
    let pools: Vec<serde_json::Value> = stats
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "server": s.key.server(),
                "user": s.key.user(),
                "database": s.key.database(),
                "open": s.open,
                "idle": s.idle,
                "busy": s.busy,
                "connecting": s.connecting,
                "waiting": s.waiting,
                "size": s.size,
                "server_open": s.server_open,
                "server_max": s.server_max,
            })
        })
        .collect();
    let last = state.last_reload.load();
    let reload = serde_json::json!({
        "generation": last.as_ref().map_or(snapshot.generation, |l| l.generation),
        "last_result": last.as_ref().map(|l| l.result()),
        "last_error": last.as_ref().and_then(|l| l.error.as_deref()),
        "at": last.as_ref().map(|l| l.at_unix),
    });
    let config = &snapshot.config;
    let config_servers: Vec<serde_json::Value> = config
        .servers
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "host": s.host,
                "port": s.port,
                "role": config_role_name(s.role),
                "weight": s.weight,
                "max_connections": s.max_connections,
            })
        })
        .collect();
    let pool = &config.pool;
    let config_doc = serde_json::json!({
        "source": config.source.as_ref().map(|p| p.display().to_string()),
        "pool": {
            "size": pool.size,
            "min_idle": pool.min_idle,
            "checkout_timeout_ms": millis(pool.checkout_timeout),
            "connect_timeout_ms": millis(pool.connect_timeout),
            "server_idle_timeout_ms": millis(pool.server_idle_timeout),
            "server_lifetime_ms": millis(pool.server_lifetime),
        },
        "servers": config_servers,
        "rules": snapshot.routing.policy.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
    });
    let doc = serde_json::json!({
        "generation": snapshot.generation,
        "reload": reload,
        "draining": *state.draining.borrow(),
        "ready": not_ready(state).is_none(),
        "primary": primary,
        "split_brain": topology.split_brain,
        "servers": servers,
        "config": config_doc,
        "pools": pools,
    });
    let mut out = doc.to_string();
    out.push('\n');
    out
}

fn config_role_name(role: pgsplit_config::Role) -> &'static str {
    match role {
        pgsplit_config::Role::Primary => "primary",
        pgsplit_config::Role::Replica => "replica",
        pgsplit_config::Role::Auto => "auto",
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
