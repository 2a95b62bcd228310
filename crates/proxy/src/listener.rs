//! The event loops that accept and serve clients: a semaphore caps client connections, each
//! client runs in its own task inside a span, and shutdown stops accepting, drains every loop,
//! then aborts what is left.
//!
//! With `workers: n` there are n event loops, each a single-threaded runtime on its own thread:
//! loop 0 is the caller's (it also runs the admin endpoint, health checks and reloads), loops
//! 1..n are threads started here. Every loop accepts on a listening socket of its own, all bound
//! to the same address with `SO_REUSEPORT`, so the kernel spreads new connections over the
//! loops and no client is handed from one thread to another. A client stays on its loop for its
//! whole session, so its socket's events never cross threads; server connections are shared by
//! all loops through the pools, which hand a session the idle connections its own loop watches
//! first and move another loop's connection to the session's loop when they hand it over (see
//! `pgsplit_backend::home`). Every loop stays up until all loops have drained.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use pgsplit_session::{Ctx, reject, run};
use pgsplit_telemetry::IntGauge;
use pgsplit_wire::{ErrorFields, sqlstate};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Duration, timeout};
use tracing::{info, warn};

/// Pending connections a listening socket queues (what `TcpListener::bind` uses).
const BACKLOG: u32 = 1024;

/// Binds a listening socket on `addr` (`host:port`, every resolved address tried in turn);
/// with `shared`, with `SO_REUSEPORT`, so that other event loops can bind the same address.
pub(crate) async fn bind(addr: &str, shared: bool) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
    {
        // A port taken by another process (a second pgsplit, say) must fail as it would
        // without SO_REUSEPORT, not silently share the traffic: bind it once unshared first.
        // Port 0 needs no check: the kernel gives a port nobody holds.
        if shared
            && resolved.port() != 0
            && let Err(e) = bind_one(resolved, false)
        {
            last = Some(e);
            continue;
        }
        match bind_one(resolved, shared) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => anyhow::Error::new(e).context(format!("cannot listen on {addr}")),
        None => anyhow::anyhow!("cannot listen on {addr}: it resolves to no address"),
    })
}

fn bind_one(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// An event loop on a thread of its own.
struct Worker {
    /// Fires when the loop has stopped accepting and drained its clients.
    drained: oneshot::Receiver<()>,
    /// Dropped once every loop has drained: the thread then ends its runtime.
    _exit: oneshot::Sender<()>,
}

/// What every event loop shares.
#[derive(Clone)]
struct Shared {
    ctx: Ctx,
    /// One permit per client connection, for all loops together (`max_client_connections`).
    permits: Arc<Semaphore>,
    /// One permit per connection being refused over that limit ([`REJECTING_AT_ONCE`]).
    rejecting: Arc<Semaphore>,
}

/// The most connections refused over `max_client_connections` that are told why (or have their
/// cancel request forwarded) at the same time; past it, a connection is closed at once, so a
/// flood over the limit holds neither file descriptors for `startup_timeout` nor server
/// connections for cancels.
const REJECTING_AT_ONCE: usize = 256;

impl Worker {
    /// Starts event loop `index` on a new thread, accepting on its own socket bound to
    /// `addr`; returns once that socket listens (or could not be bound).
    async fn start(index: usize, addr: SocketAddr, shared: Shared) -> anyhow::Result<Worker> {
        let (ready_tx, ready) = oneshot::channel::<std::io::Result<()>>();
        let (drained_tx, drained) = oneshot::channel();
        let (exit, exit_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("pgsplit-loop{index}"))
            .spawn(move || {
                pgsplit_backend::set_home(index);
                // Built here, not by the caller: a runtime must not be dropped inside another
                // one, as it would be if the thread could not start.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match bind_one(addr, true) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    serve_loop(listener, shared, index).await;
                    let _ = drained_tx.send(());
                    // Keep this loop's sockets working until every loop has drained.
                    let _ = exit_rx.await;
                });
            })?;
        ready
            .await
            .context("the event loop thread ended before listening")?
            .with_context(|| format!("event loop {index}: cannot listen on {addr}"))?;
        Ok(Worker {
            drained,
            _exit: exit,
        })
    }
}

/// Counts a client against its event loop (`pgsplit_event_loop_clients`) while it lives.
struct LoadGuard(IntGauge);

impl LoadGuard {
    fn new(gauge: &IntGauge) -> LoadGuard {
        gauge.inc();
        LoadGuard(gauge.clone())
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs `workers` event loops (this one included) that accept on `listener`'s address until
/// shutdown, then drains all of them. `listener` must have been bound with `SO_REUSEPORT`
/// when `workers` is more than one.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: Ctx, workers: usize) {
    let limits = ctx.snapshot.load().config.limits.clone();
    let shared = Shared {
        ctx: ctx.clone(),
        permits: Arc::new(Semaphore::new(limits.max_client_connections)),
        rejecting: Arc::new(Semaphore::new(REJECTING_AT_ONCE)),
    };
    let mut others = Vec::with_capacity(workers.saturating_sub(1));
    if let Ok(addr) = listener.local_addr() {
        for index in 1..workers {
            match Worker::start(index, addr, shared.clone()).await {
                Ok(worker) => others.push(worker),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), started = index, asked = workers, "cannot start another event loop; serving with those started");
                    break;
                }
            }
        }
    }
    info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        event_loops = others.len() + 1,
        "accepting clients"
    );
    serve_loop(listener, shared, 0).await;
    for worker in &mut others {
        let _ = (&mut worker.drained).await;
    }
    // Dropping `others` lets the other loops end.
    drop(others);
    info!("stopped");
}

/// One event loop: accepts clients on `listener` until shutdown, serves each in its own task,
/// then drains.
async fn serve_loop(listener: TcpListener, shared: Shared, index: usize) {
    let Shared {
        ctx,
        permits,
        rejecting,
    } = shared;
    let load = ctx
        .metrics
        .event_loop_clients
        .with_label_values(&[&index.to_string()]);
    let mut sessions = JoinSet::new();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        spawn_session(&mut sessions, stream, peer, ctx.clone(), permit, LoadGuard::new(&load));
                    }
                    Err(_) => {
                        let Ok(telling) = rejecting.clone().try_acquire_owned() else {
                            continue;
                        };
                        let fields = ErrorFields::fatal(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            "sorry, too many clients already",
                        );
                        let ctx = ctx.clone();
                        sessions.spawn(async move {
                            reject(stream, fields, ctx).await;
                            drop(telling);
                        });
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            res = shutdown.changed() => {
                if res.is_err() {
                    break;
                }
            }
        }
    }
    drop(listener);
    drain(sessions, &ctx).await;
}

/// Runs one client's session on the current event loop.
fn spawn_session(
    sessions: &mut JoinSet<()>,
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Ctx,
    permit: OwnedSemaphorePermit,
    load: LoadGuard,
) {
    // The session's future is large: it is built once, straight into its box, and the task
    // holds only the box. A task holding it by value was allocated with the task's alignment
    // (`posix_memalign`, several thousand instructions per client in glibc), and each move of
    // the future (into an async block, into the task) copied it whole.
    let session = Box::pin(run(stream, peer, ctx));
    sessions.spawn(async move {
        session.await;
        drop(permit);
        drop(load);
    });
}

/// Lets this loop's clients finish for up to `shutdown_timeout`, then closes the rest.
async fn drain(mut sessions: JoinSet<()>, ctx: &Ctx) {
    let grace = ctx.snapshot.load().config.shutdown_timeout;
    info!(
        clients = sessions.len(),
        grace_secs = grace.as_secs_f64(),
        "draining"
    );
    let drained = timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            clients = sessions.len(),
            "shutdown timeout reached; closing remaining clients"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sockets share an address only when both ask for it.
    #[tokio::test]
    async fn shared_listeners_bind_one_address() {
        let first = bind("127.0.0.1:0", true).await.expect("bind");
        let addr = first.local_addr().expect("addr");
        let second = bind_one(addr, true).expect("a second shared socket binds the same address");
        assert_eq!(second.local_addr().expect("addr"), addr);
        let lone = bind("127.0.0.1:0", false).await.expect("bind");
        let lone_addr = lone.local_addr().expect("addr");
        assert!(
            bind_one(lone_addr, true).is_err(),
            "a socket bound without SO_REUSEPORT is not shared"
        );
        // A fixed port another socket holds is refused even with sharing asked for (a second
        // pgsplit must not take part of the first one's clients).
        let taken = first.local_addr().expect("addr").to_string();
        let err = bind(&taken, true).await.expect_err("port taken");
        assert!(format!("{err:#}").contains(&taken), "{err:#}");
        let err = bind("127.0.0.1:99999", false).await.expect_err("bad port");
        assert!(format!("{err:#}").contains("127.0.0.1:99999"), "{err:#}");
    }

    #[test]
    fn a_load_guard_counts_while_it_lives() {
        let gauge = IntGauge::new("clients", "clients").expect("valid gauge");
        let a = LoadGuard::new(&gauge);
        let b = LoadGuard::new(&gauge);
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }
}
