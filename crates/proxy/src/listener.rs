//! The accept loop: a semaphore caps client connections, each client runs in its own task
//! inside a span, and shutdown stops accepting, drains, then aborts what is left.

use std::sync::Arc;

use pgsplit_session::{Ctx, reject, run};
use pgsplit_wire::{ErrorFields, sqlstate};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Duration, timeout};
use tracing::{info, warn};

/// Accepts clients until shutdown, then drains.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    let snapshot = ctx.snapshot.load_full();
    let limits = snapshot.config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_client_connections));
    let mut sessions = JoinSet::new();
    let mut shutdown = ctx.shutdown.clone();
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "accepting clients");
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
                        let ctx = ctx.clone();
                        sessions.spawn(async move {
                            run(stream, peer, ctx).await;
                            drop(permit);
                        });
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
    info!("stopped");
}
