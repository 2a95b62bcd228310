//! The accept loop and the event loops that serve clients: a semaphore caps client
//! connections, each accepted client goes to the event loop serving the fewest and runs there
//! in its own task inside a span, and shutdown stops accepting, drains every loop, then aborts
//! what is left.
//!
//! With `workers: n` there are n event loops, each a single-threaded runtime on its own thread:
//! loop 0 is the caller's (it also runs the accept loop, the admin endpoint, health checks and
//! reloads), loops 1..n are threads started here. A client stays on its loop for its whole
//! session, so its socket's events never cross threads; server connections are shared by all
//! loops through the pools, which hand a session the idle connections its own loop opened first
//! (see `pgsplit_backend::home`). Every loop stays up until all loops have drained, so a server
//! connection a loop opened keeps working for sessions elsewhere until the very end.

use std::net::SocketAddr;
use std::sync::Arc;

use pgsplit_session::{Ctx, reject, run};
use pgsplit_telemetry::IntGauge;
use pgsplit_wire::{ErrorFields, sqlstate};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Duration, timeout};
use tracing::{info, warn};

/// Clients served by each event loop, by loop number: the `pgsplit_event_loop_clients` series,
/// which the accept loop also reads to pick the least busy.
type Loads = Arc<[IntGauge]>;

/// An accepted client on its way to another event loop, with its connection permit.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// An event loop on a thread of its own.
struct Worker {
    /// Where accepted clients are sent; dropped when accepting stops, which starts the drain.
    clients: Option<mpsc::UnboundedSender<Handoff>>,
    /// Fires when the loop has drained its clients.
    drained: oneshot::Receiver<()>,
    /// Dropped once every loop has drained: the thread then ends its runtime.
    _exit: oneshot::Sender<()>,
}

impl Worker {
    /// Starts event loop `index` on a new thread.
    fn start(index: usize, ctx: Ctx, loads: Loads) -> std::io::Result<Worker> {
        let (clients, rx) = mpsc::unbounded_channel();
        let (drained_tx, drained) = oneshot::channel();
        let (exit, exit_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("pgsplit-loop{index}"))
            .spawn(move || {
                pgsplit_backend::set_home(index);
                runtime.block_on(async move {
                    serve_handoffs(rx, ctx, loads, index).await;
                    let _ = drained_tx.send(());
                    // Keep this loop's sockets working until every loop has drained.
                    let _ = exit_rx.await;
                });
            })?;
        Ok(Worker {
            clients: Some(clients),
            drained,
            _exit: exit,
        })
    }
}

/// The event loop to give the next client: the one serving the fewest.
fn least_busy(loads: &[IntGauge]) -> usize {
    let mut best = 0;
    let mut fewest = i64::MAX;
    for (i, load) in loads.iter().enumerate() {
        let n = load.get();
        if n < fewest {
            (best, fewest) = (i, n);
        }
    }
    best
}

/// Counts a client against its event loop while it lives.
struct LoadGuard {
    loads: Loads,
    index: usize,
}

impl LoadGuard {
    fn new(loads: &Loads, index: usize) -> LoadGuard {
        loads[index].inc();
        LoadGuard {
            loads: loads.clone(),
            index,
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.loads[self.index].dec();
    }
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
    // Boxed: the session's future is large, and a task holding it by value is allocated with
    // the task's alignment (`posix_memalign`, several thousand instructions per client in
    // glibc); a box of the future is a plain allocation and the task stays small.
    sessions.spawn(Box::pin(async move {
        run(stream, peer, ctx).await;
        drop(permit);
        drop(load);
    }));
}

/// Accepts clients until shutdown, hands them to `workers` event loops (this one included),
/// then drains all of them.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: Ctx, workers: usize) {
    let snapshot = ctx.snapshot.load_full();
    let limits = snapshot.config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_client_connections));
    let loads: Loads = (0..workers.max(1))
        .map(|i| {
            ctx.metrics
                .event_loop_clients
                .with_label_values(&[&i.to_string()])
        })
        .collect();
    let mut others = Vec::with_capacity(workers.saturating_sub(1));
    for index in 1..workers {
        match Worker::start(index, ctx.clone(), loads.clone()) {
            Ok(worker) => others.push(worker),
            Err(e) => {
                warn!(error = %e, started = index, asked = workers, "cannot start another event loop thread; serving with those started");
                break;
            }
        }
    }
    // Loops that failed to start get no clients.
    let serving = others.len() + 1;
    let mut sessions = JoinSet::new();
    let mut shutdown = ctx.shutdown.clone();
    info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        event_loops = serving,
        "accepting clients"
    );
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
                        let index = least_busy(&loads[..serving]);
                        match index.checked_sub(1).and_then(|i| others[i].clients.as_ref()) {
                            None => {
                                let load = LoadGuard::new(&loads, 0);
                                spawn_session(&mut sessions, stream, peer, ctx.clone(), permit, load);
                            }
                            Some(clients) => hand_off(clients, stream, peer, permit, &mut sessions, &ctx, &loads),
                        }
                    }
                    Err(_) => {
                        let fields = ErrorFields::fatal(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            "sorry, too many clients already",
                        );
                        sessions.spawn(reject(stream, fields, 64 * 1024, limits.startup_timeout));
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
    // The other loops drain as soon as their channel closes, in parallel with this one.
    for worker in &mut others {
        worker.clients = None;
    }
    drain(sessions, &ctx).await;
    for worker in &mut others {
        let _ = (&mut worker.drained).await;
    }
    // Dropping `others` lets the other loops end.
    drop(others);
    info!("stopped");
}

/// Sends an accepted client to another event loop; if that loop is gone, serves it here.
fn hand_off(
    clients: &mpsc::UnboundedSender<Handoff>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    sessions: &mut JoinSet<()>,
    ctx: &Ctx,
    loads: &Loads,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            warn!(error = %e, %peer, "cannot hand a client to another event loop");
            return;
        }
    };
    let Err(mpsc::error::SendError(back)) = clients.send(Handoff {
        stream,
        peer,
        permit,
    }) else {
        return;
    };
    match TcpStream::from_std(back.stream) {
        Ok(stream) => {
            let load = LoadGuard::new(loads, 0);
            spawn_session(sessions, stream, back.peer, ctx.clone(), back.permit, load);
        }
        Err(e) => warn!(error = %e, %peer, "cannot serve a client"),
    }
}

/// An event loop other than the first: serves the clients handed to it until the accept loop
/// stops, then drains.
async fn serve_handoffs(
    mut clients: mpsc::UnboundedReceiver<Handoff>,
    ctx: Ctx,
    loads: Loads,
    index: usize,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            handoff = clients.recv() => {
                let Some(Handoff { stream, peer, permit }) = handoff else {
                    break;
                };
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let load = LoadGuard::new(&loads, index);
                        spawn_session(&mut sessions, stream, peer, ctx.clone(), permit, load);
                    }
                    Err(e) => warn!(error = %e, %peer, "cannot serve a client"),
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drain(sessions, &ctx).await;
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

    #[test]
    fn the_least_busy_loop_gets_the_next_client() {
        let loads: Loads = [3, 1, 1, 2]
            .into_iter()
            .map(|n| {
                let g = IntGauge::new("clients", "clients").expect("valid gauge");
                g.set(n);
                g
            })
            .collect();
        assert_eq!(least_busy(&loads), 1, "the first of the least busy");
        let guard = LoadGuard::new(&loads, 1);
        assert_eq!(least_busy(&loads), 2);
        drop(guard);
        assert_eq!(
            least_busy(&loads),
            1,
            "a session that ended no longer counts"
        );
    }
}
