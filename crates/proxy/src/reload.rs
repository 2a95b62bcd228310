//! Config reload: re-read the config file, validate it, and swap in a new snapshot.
//!
//! [`reload`] is the one way a config changes at runtime. Every trigger (the file watcher,
//! `SIGHUP` through [`crate::ProxyHandle::reload`], and the admin console's `RELOAD`) sends a
//! request down the `Control` channel, and [`serve_requests`] answers them one at a time and
//! records each outcome the same way ([`record`]): a log line, the
//! `pgsplit_config_reloads_total{result}` counter, the `pgsplit_config_generation` gauge and
//! the `reload` object of `/status`. An invalid file changes nothing: the old snapshot stays.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pgsplit_admin::LastReload;
use pgsplit_config::{Config, ConfigError, ConfigErrors};
use pgsplit_session::{Ctx, ReloadRequest, Snapshot};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::filewatch::{Tried, content_hash};

/// Re-reads the file the running config came from and, when it is valid, publishes a new
/// snapshot with the next generation. Returns that generation, or why nothing changed.
///
/// The new config's listen addresses only take effect after a restart (the sockets are
/// bound once); a change to them is logged.
///
/// Logs nothing and records nothing itself: [`serve_requests`] does, for every trigger. The
/// hash of the content read goes to `tried`, so the file watcher does not reload it again.
pub(crate) async fn reload(ctx: &Ctx, tried: &Tried) -> Result<u64, String> {
    let current = ctx.snapshot.load_full();
    let Some(path) = current.config.source.clone() else {
        let message = "the running config was not read from a file, so there is nothing to reload";
        return Err(message.to_owned());
    };
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_config(&path)).await
    };
    let config = match read {
        Ok((config, hash)) => {
            if let Some(hash) = hash {
                *tried.lock() = Some(hash);
            }
            config
        }
        Err(e) => return Err(format!("reading the config failed: {e}")),
    };
    let config = config.map_err(|errors| errors.to_string())?;
    // The TLS files are read again on every reload (renewed certificates are picked up even
    // when the config text did not change); one that cannot be used refuses the reload.
    let tls = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || crate::load_tls(&config))
            .await
            .map_err(|e| format!("reading the TLS files failed: {e}"))?
            .map_err(|e| format!("{e:#}"))?
    };
    warn_about_restart_only_changes(&current.config, &config);
    let config = Arc::new(config);
    // The classification cache starts empty; its hit and miss counters carry on.
    let routing = Arc::new(current.routing.next(&config));
    let previous = ctx.snapshot.rcu(|now| Snapshot {
        generation: now.generation + 1,
        config: Arc::clone(&config),
        routing: Arc::clone(&routing),
        // Servers that stayed (same name and address) keep their health, role and lag;
        // new ones start as configured until their first probe.
        topology: Arc::new(pgsplit_router::Topology::carry_over(&config, &now.topology)),
    });
    // New clients handshake with the new certificate; connections already encrypted keep theirs.
    ctx.tls.store(tls);
    // Servers the new config no longer lists get no new units; their pools drain.
    ctx.pools
        .retire(|name| config.servers.iter().any(|s| s.name == name));
    Ok(previous.generation + 1)
}

/// What `pgsplit_config::load` does, also returning the hash of the bytes read (`None` when
/// the file could not be read).
fn read_config(path: &Path) -> (Result<Config, ConfigErrors>, Option<u64>) {
    let file = path.display().to_string();
    let whole_file = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: None,
            col: None,
            key: String::new(),
            message,
        }])
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return (Err(whole_file(format!("cannot read the file: {e}"))), None),
    };
    let hash = content_hash(&bytes);
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let message = format!("cannot read the file: {e}");
            return (Err(whole_file(message)), Some(hash));
        }
    };
    let config = pgsplit_config::parse(&text, &file).map(|mut config| {
        config.source = Some(path.to_path_buf());
        config
    });
    (config, Some(hash))
}

fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    if old.listen != new.listen {
        warn!(old = %old.listen, new = %new.listen, "listen changed; it takes effect after a restart");
    }
    if old.workers != new.workers {
        warn!("workers changed; it takes effect after a restart");
    }
    if old.admin.listen != new.admin.listen {
        warn!(old = %old.admin.listen, new = %new.admin.listen, "admin.listen changed; it takes effect after a restart");
    }
}

/// Logs one reload outcome and publishes it to the metrics and `/status`.
pub(crate) fn record(ctx: &Ctx, last: &ArcSwapOption<LastReload>, outcome: &Result<u64, String>) {
    let at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let source = ctx.snapshot.load().config.source.clone();
    let path = source.as_deref().map(|p| p.display().to_string());
    let path = path.as_deref().unwrap_or("-");
    if let Ok(generation) = outcome {
        ctx.metrics
            .config_generation
            .set(i64::try_from(*generation).unwrap_or(i64::MAX));
    }
    let entry = LastReload {
        error: outcome.as_ref().err().cloned(),
        generation: match outcome {
            Ok(generation) => *generation,
            Err(_) => ctx.snapshot.load().generation,
        },
        at_unix,
    };
    ctx.metrics
        .config_reloads_total
        .with_label_values(&[entry.result()])
        .inc();
    last.store(Some(Arc::new(entry)));
    // Logged last, so whoever reads the line finds the metrics and /status already updated.
    match outcome {
        Ok(generation) => info!(path, generation, "config reloaded"),
        Err(reason) => error!(
            path,
            reason = %reason,
            "config reload refused; the previous config stays in effect"
        ),
    }
}

/// Answers reload requests (console `RELOAD`, `SIGHUP`, the file watcher) one at a time until
/// the proxy starts draining, recording each outcome.
pub(crate) async fn serve_requests(
    ctx: Ctx,
    last: Arc<ArcSwapOption<LastReload>>,
    tried: Tried,
    mut requests: mpsc::UnboundedReceiver<ReloadRequest>,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                let outcome = reload(&ctx, &tried).await;
                record(&ctx, &last, &outcome);
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgsplit_router::{HealthReport, Probe, Topology};

    fn config(servers: &str) -> Config {
        let text = format!("users:\n  - {{ name: app, password: app }}\nservers:\n{servers}");
        pgsplit_config::parse(&text, "t.yaml").unwrap()
    }

    const TWO: &str = "  - { name: p, host: 127.0.0.1, port: 1, role: primary }\n  \
                       - { name: r, host: 127.0.0.1, port: 2, role: replica, weight: 1 }\n";

    /// The old topology with the replica marked down by a failed probe.
    fn old_with_replica_down(old: &Config) -> Arc<Topology> {
        let mut t = Topology::from_config(old);
        t.apply_health(HealthReport {
            node: 1,
            at: std::time::Duration::from_secs(1),
            probe: Probe::Failed,
        });
        assert!(!t.nodes[1].is_up());
        Arc::new(t)
    }

    #[test]
    fn unchanged_servers_keep_their_health_and_take_new_weights() {
        let old = config(TWO);
        let new = config(&TWO.replace("weight: 1", "weight: 5, max_connections: 7"));
        let carried = Topology::carry_over(&new, &old_with_replica_down(&old));
        assert!(!carried.nodes[1].is_up(), "health carried over");
        assert_eq!(carried.nodes[1].weight, 5);
        assert_eq!(carried.nodes[1].max_connections, 7);
    }

    #[test]
    fn moved_or_renamed_servers_start_from_the_new_config() {
        let old = config(TWO);
        for changed in [
            TWO.replace("port: 2", "port: 3"),
            TWO.replace("name: r", "name: r2"),
        ] {
            let new = config(&changed);
            let carried = Topology::carry_over(&new, &old_with_replica_down(&old));
            assert!(carried.nodes[1].is_up(), "{changed}");
        }
    }
}
