//! pgsplit's composition root: builds the shared [`pgsplit_session::Ctx`] from a validated
//! config, binds the client listener, and runs the accept loop with a connection limit and a
//! graceful drain. It also runs the background tasks: pool maintenance and the health checker
//! (`health.rs`), which turns probe results into the routing topology.
//!
//! This is the only crate with process-wide wiring; the binary (`main.rs`) adds the CLI,
//! logging and signal handling on top of [`start`].
#![warn(missing_docs)]

mod filewatch;
mod health;
mod listener;
mod reload;
mod scrape;

pub use filewatch::POLL_EVERY as CONFIG_POLL_INTERVAL;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use pgsplit_admin::{AdminState, MetricsRefresh};
use pgsplit_config::Config;
use pgsplit_session::{Control, Ctx};
use pgsplit_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    client_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: Arc<Metrics>,
    refresh: MetricsRefresh,
    control: Arc<Control>,
}

impl ProxyHandle {
    /// The address clients connect to (useful when the config asked for port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The address of the HTTP admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The proxy's metric families (rendered by the admin endpoint's `/metrics`). The
    /// families read off live state at scrape time (clients and server connections by
    /// state, parse cache totals) are only current in [`ProxyHandle::scrape`].
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What `/metrics` answers now: the scrape-time families brought up to date, then every
    /// family rendered.
    pub fn scrape(&self) -> String {
        self.refresh.run();
        self.metrics.render()
    }

    /// Re-reads the config file and, when it is valid, serves it as the next generation
    /// (what `SIGHUP` does). Returns that generation, or why the file was refused (the old
    /// config stays). Logged, counted and shown in `/status` like every other reload.
    pub async fn reload(&self) -> Result<u64, String> {
        self.control.reload().await
    }

    /// Starts a graceful drain: stop accepting, let in-flight transactions finish up to
    /// `shutdown_timeout`, then close every connection.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the proxy has fully stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the accept loop panicked")
    }
}

/// How often idle server connections are reaped and pools topped up to `min_idle`.
const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs pool maintenance until shutdown.
async fn maintain_pools(ctx: Ctx) {
    let (pools, mut shutdown) = (ctx.pools.clone(), ctx.shutdown.clone());
    let mut tick = tokio::time::interval(MAINTAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Pools of servers no longer configured drain (also those a session still
                // using an older snapshot revived just after a reload retired them).
                let snapshot = ctx.snapshot.load_full();
                pools.retire(|name| snapshot.config.servers.iter().any(|s| s.name == name));
                pools.maintain().await;
            }
            res = shutdown.changed() => {
                if res.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// The TLS acceptor of `config.tls` (`None` without `tls:`), its files read now, after the
/// servers' `sslrootcert` files were read and found usable.
///
/// # Errors
/// When a file cannot be read or used; the message names the key and the file.
pub fn load_tls(config: &Config) -> anyhow::Result<Option<Arc<pgsplit_session::TlsServer>>> {
    let file = config
        .source
        .as_ref()
        .map_or_else(|| "the config".to_owned(), |p| p.display().to_string());
    // The servers' CA files, read as a connect would read them.
    for (i, server) in config.servers.iter().enumerate() {
        pgsplit_backend::tls::ServerTls::of(server)
            .check()
            .map_err(|e| anyhow::anyhow!("{file}: servers[{i}] ({}): {e}", server.name))?;
    }
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    pgsplit_session::TlsServer::load(tls)
        .map(Some)
        .with_context(|| format!("{file}: TLS cannot be set up"))
}

/// Binds `config.listen` and `config.admin.listen` and starts serving on the current tokio
/// runtime, which is the first of `config.workers` event loops: the others are single-threaded
/// runtimes on threads of their own, started here, each accepting on its own socket bound to
/// the same address (`SO_REUSEPORT`) and serving the clients the kernel gives it.
///
/// When the config was read from a file (`config.source`), that file is watched (polled every
/// [`CONFIG_POLL_INTERVAL`]) and reloaded when its content changes, and so are the TLS files
/// it names.
///
/// The admin endpoint keeps answering while the proxy drains (so `/readyz` can say 503) and
/// stops once the accept loop has finished.
pub async fn start(config: Config) -> anyhow::Result<ProxyHandle> {
    // The TLS files are read before anything listens: a broken one stops the start.
    let tls = load_tls(&config)?;
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Every event loop accepts on a socket of its own bound to this address.
    let listener = listener::bind(&config.listen, workers > 1).await?;
    let client_addr = listener.local_addr()?;
    let admin_listener = TcpListener::bind(&config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let source = config.source.clone();
    let (ctx, inbox) = Ctx::new(config, metrics.clone(), rx);
    ctx.tls.store(tls);
    health::spawn(&ctx, inbox.server_events);
    tokio::spawn(maintain_pools(ctx.clone()));
    let last_reload = Arc::new(ArcSwapOption::empty());
    let tried = filewatch::Tried::default();
    tokio::spawn(reload::serve_requests(
        ctx.clone(),
        last_reload.clone(),
        tried.clone(),
        inbox.reload_requests,
    ));
    if let Some(path) = source {
        // The first look happens before `start` returns: a change made after that is seen.
        let state = filewatch::first_look(path, tried).await;
        tokio::spawn(filewatch::watch_config(
            state,
            filewatch::POLL_EVERY,
            ctx.control.clone(),
            ctx.shutdown.clone(),
        ));
        tokio::spawn(filewatch::watch_tls(
            ctx.snapshot.clone(),
            ctx.tls.clone(),
            filewatch::POLL_EVERY,
            ctx.control.clone(),
            ctx.shutdown.clone(),
        ));
    }
    let refresh = {
        let ctx = ctx.clone();
        MetricsRefresh::new(move || scrape::refresh(&ctx))
    };
    let admin_state = AdminState {
        refresh: Some(refresh.clone()),
        metrics: metrics.clone(),
        pools: ctx.pools.clone(),
        snapshot: ctx.snapshot.clone(),
        draining: ctx.shutdown.clone(),
        last_reload,
    };
    let control = ctx.control.clone();
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn(pgsplit_admin::serve(
        admin_listener,
        admin_state,
        admin_stop_rx,
    ));
    tracing::info!(addr = %admin_addr, "admin HTTP listening");
    let task = tokio::spawn(async move {
        listener::accept_loop(listener, ctx, workers).await;
        let _ = admin_stop.send(true);
        let _ = admin.await;
    });
    Ok(ProxyHandle {
        client_addr,
        admin_addr,
        shutdown: tx,
        task,
        metrics,
        refresh,
        control,
    })
}
