//! Config reload: re-read the config file, validate it, and swap in a new snapshot.
//!
//! [`reload`] is the one way a config changes at runtime; the admin console's `RELOAD` reaches
//! it through [`serve_requests`], and file watching and `SIGHUP` call it directly. An invalid
//! file changes nothing: the error is logged and returned, and the old snapshot stays.

use std::sync::Arc;

use pgsplit_config::Config;
use pgsplit_session::{Ctx, ReloadRequest, Snapshot};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Re-reads the file the running config came from and, when it is valid, publishes a new
/// snapshot with the next generation. Returns that generation, or why nothing changed.
///
/// The new config's listen addresses only take effect after a restart (the sockets are
/// bound once); a change to them is logged.
pub async fn reload(ctx: &Ctx) -> Result<u64, String> {
    let current = ctx.snapshot.load_full();
    let Some(path) = current.config.source.clone() else {
        let message = "the running config was not read from a file, so there is nothing to reload";
        warn!("config reload refused: {message}");
        return Err(message.to_owned());
    };
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || pgsplit_config::load(&path)).await
    };
    let config = match read {
        Ok(Ok(config)) => config,
        Ok(Err(errors)) => {
            warn!(path = %path.display(), errors = %errors, "config reload rejected");
            return Err(errors.to_string());
        }
        Err(e) => {
            warn!(error = %e, "config reload failed");
            return Err(format!("reading the config failed: {e}"));
        }
    };
    warn_about_restart_only_changes(&current.config, &config);
    let config = Arc::new(config);
    let routing = Arc::new(pgsplit_router::Routing::from_config(&config));
    let previous = ctx.snapshot.rcu(|now| Snapshot {
        generation: now.generation + 1,
        config: Arc::clone(&config),
        routing: Arc::clone(&routing),
        // Servers that stayed (same name and address) keep their health, role and lag;
        // new ones start as configured until their first probe.
        topology: Arc::new(pgsplit_router::Topology::carry_over(&config, &now.topology)),
    });
    let generation = previous.generation + 1;
    info!(path = %path.display(), generation, "config reloaded");
    Ok(generation)
}

fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    if old.listen != new.listen {
        warn!(old = %old.listen, new = %new.listen, "listen changed; it takes effect after a restart");
    }
    if old.admin.listen != new.admin.listen {
        warn!(old = %old.admin.listen, new = %new.admin.listen, "admin.listen changed; it takes effect after a restart");
    }
}

/// Answers reload requests (from the admin console) until the proxy starts draining.
pub(crate) async fn serve_requests(ctx: Ctx, mut requests: mpsc::UnboundedReceiver<ReloadRequest>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                let outcome = reload(&ctx).await;
                let _ = request.reply.send(outcome);
            }
            _ = draining(&mut shutdown) => return,
        }
    }
}

/// Resolves once the proxy is draining (or its shutdown sender is gone). The watch guard is
/// dropped inside, so callers stay `Send`.
async fn draining(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|d| *d).await;
}
