//! What every session receives from the composition root: the config snapshot and shared
//! registries. No globals: the `pgsplit` binary builds one [`Ctx`] and clones it per client.

// Seeded per map, and several times faster than SipHash on short keys (names, ids).
use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pgsplit_backend::{PoolKey, Pools};
use pgsplit_router::Snapshot;
use pgsplit_telemetry::Metrics;
use pgsplit_wire::encode;
use pgsplit_wire::scram::ScramSecret;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use crate::{CancelRegistry, ClientRegistry, Control};

/// Shared handles a session needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The current snapshot; sessions load it at transaction boundaries.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Metric families; sessions record into them.
    pub metrics: Arc<Metrics>,
    /// Server connection pools, shared by every session.
    pub pools: Pools,
    /// Maps the cancel keys pgsplit hands to clients to the server running their query.
    pub cancels: Arc<CancelRegistry>,
    /// SCRAM secrets derived from plain-text passwords, so the 4096 PBKDF2 rounds run once.
    pub secrets: Arc<SecretCache>,
    /// Parameters reported to recently greeted clients, per pool and settings.
    pub greetings: Arc<GreetingCache>,
    /// Keys the hash that names server-side prepared statements, so clients cannot craft SQL
    /// whose statement id collides with another client's.
    pub statement_ids: std::hash::RandomState,
    /// Becomes `true` when the proxy starts draining.
    pub shutdown: watch::Receiver<bool>,
    /// The same signal as sessions wait for it in every unit (no lock per wait).
    pub drain: crate::Drain,
    /// Source of connection ids (also used as the process id in client cancel keys).
    pub next_id: Arc<AtomicU32>,
    /// Route metric handles and fixed verdicts, shared by every session.
    pub route_kit: Arc<crate::RouteKit>,
    /// What sessions observe about servers on real traffic, for the health checker (which
    /// marks a server down at once, or re-checks roles after a failover symptom).
    pub server_events: tokio::sync::mpsc::UnboundedSender<ServerEvent>,
    /// Every authenticated client (admin console `SHOW CLIENTS`, `SHOW STATS`).
    pub clients: Arc<ClientRegistry>,
    /// Reload requests and the pause flag (admin console `RELOAD`, `PAUSE`, `RESUME`).
    pub control: Arc<Control>,
    /// TLS towards clients, built from `tls:` by the composition root at start and at every
    /// reload; empty when the config has no `tls:` (SSLRequest is declined).
    pub tls: Arc<ArcSwapOption<crate::TlsServer>>,
}

/// Something a session saw on real traffic that the health checker must act on at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// Connecting to this server (by config name) failed: mark it down now instead of
    /// waiting for the next probe.
    Failed {
        /// The server's config name.
        server: String,
    },
    /// A connection to this server broke in the middle of a unit (it may have been killed
    /// alone, e.g. by `pg_terminate_backend`): probe the server now rather than mark it down.
    Suspect {
        /// The server's config name.
        server: String,
    },
    /// A write on the server believed to be the primary failed with SQLSTATE 25006
    /// (read-only transaction): it was demoted; re-check every server's role now.
    ReadOnly {
        /// The server's config name.
        server: String,
    },
}

/// The receiving ends of what sessions send to the composition root.
#[derive(Debug)]
pub struct CtxInbox {
    /// [`ServerEvent`]s for the health checker.
    pub server_events: tokio::sync::mpsc::UnboundedReceiver<ServerEvent>,
    /// Admin console `RELOAD` requests.
    pub reload_requests: tokio::sync::mpsc::UnboundedReceiver<crate::ReloadRequest>,
}

impl Ctx {
    /// A context serving `config`, with fresh registries and pools, recording into `metrics`
    /// and draining when `shutdown` turns `true`; plus the receivers the caller must serve.
    pub fn new(
        config: pgsplit_config::Config,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Ctx, CtxInbox) {
        let (server_events, server_events_rx) = tokio::sync::mpsc::unbounded_channel();
        let (control, reload_requests) = Control::new(shutdown.clone());
        let ctx = Ctx {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(config))),
            route_kit: Arc::new(crate::RouteKit::new(metrics.clone())),
            metrics,
            pools: Pools::new(),
            cancels: Arc::new(CancelRegistry::default()),
            secrets: Arc::new(SecretCache::default()),
            statement_ids: std::hash::RandomState::new(),
            greetings: Arc::new(GreetingCache::default()),
            drain: crate::Drain::new(shutdown.clone()),
            shutdown,
            next_id: Arc::new(AtomicU32::new(1)),
            server_events,
            clients: Arc::new(ClientRegistry::default()),
            control: Arc::new(control),
            tls: Arc::new(ArcSwapOption::empty()),
        };
        let inbox = CtxInbox {
            server_events: server_events_rx,
            reload_requests,
        };
        (ctx, inbox)
    }

    /// A fresh id for a new client connection.
    pub fn new_conn_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Salt and iterations for SCRAM secrets derived from plain-text passwords.
const DERIVED_ITERATIONS: u32 = 4096;

/// Secrets derived from configured passwords, per user, each kept with the password it was
/// derived from so a reload that changes a password takes effect at once.
#[derive(Debug)]
pub struct SecretCache {
    salt: [u8; 16],
    /// SCRAM secrets.
    scram: PerPassword<ScramSecret>,
    /// The stored MD5 form (`md5` + hex) of plain-text passwords.
    md5: PerPassword<str>,
}

/// A value derived from a user's password, by user.
type PerPassword<T> = Mutex<HashMap<String, (String, Arc<T>)>>;

/// The value `map` keeps for `user` if it was derived from `password`, else `derive()`'s,
/// remembered.
fn derived<T: ?Sized>(
    map: &PerPassword<T>,
    user: &str,
    password: &str,
    derive: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    if let Some((pw, value)) = map.lock().get(user)
        && pw == password
    {
        return Arc::clone(value);
    }
    let value = derive();
    map.lock()
        .insert(user.to_owned(), (password.to_owned(), Arc::clone(&value)));
    value
}

impl Default for SecretCache {
    fn default() -> Self {
        SecretCache {
            salt: rand::random(),
            scram: Mutex::new(HashMap::new()),
            md5: Mutex::new(HashMap::new()),
        }
    }
}

impl SecretCache {
    /// The SCRAM secret for `user` whose configured password is `password` (a verifier or plain
    /// text).
    pub fn scram_secret(&self, user: &str, password: &str) -> Arc<ScramSecret> {
        derived(&self.scram, user, password, || {
            Arc::new(match ScramSecret::parse(password) {
                Some(s) => s,
                None => ScramSecret::from_password(password, &self.salt, DERIVED_ITERATIONS),
            })
        })
    }

    /// What an MD5 response of `user` is checked against: the stored `md5...` hash of the
    /// configured `password`, hashed once per password rather than at every login (a stored
    /// hash or a SCRAM verifier is returned as configured).
    pub fn md5_stored(&self, user: &str, password: &str) -> Arc<str> {
        derived(&self.md5, user, password, || {
            if pgsplit_wire::md5::is_stored_hash(password) || password.starts_with("SCRAM-SHA-256$")
            {
                Arc::from(password)
            } else {
                Arc::from(pgsplit_wire::md5::stored_hash(user, password))
            }
        })
    }
}

/// How long a remembered greeting stays valid: long enough to absorb connection storms, short
/// enough that a server upgrade or failover is reflected soon.
const GREETING_TTL: Duration = Duration::from_secs(60);

/// Most remembered greetings; the cache is emptied when it fills (distinct settings are few).
const GREETING_MAX: usize = 4096;

/// The ParameterStatus values a server connection reported after a client's settings were
/// applied, per (pool, settings tag), with those messages encoded. A client whose settings
/// were validated and greeted before can be greeted again without a server connection, and
/// without encoding its greeting again.
#[derive(Debug, Default)]
pub struct GreetingCache {
    entries: Mutex<HashMap<(PoolKey, u64), Greeting>>,
}

/// Reported parameters, (name, value) in the order the server sent them: shared with the
/// sessions greeted with them (each copies them only if they change).
pub(crate) type Params = Arc<Vec<(String, String)>>;

/// A weak reference to [`Params`], for caches keyed by a list's identity.
pub(crate) type WeakParams = std::sync::Weak<Vec<(String, String)>>;

/// A remembered greeting: when, the parameters, and their ParameterStatus messages.
type Greeting = (Instant, Params, Bytes);

impl GreetingCache {
    /// The parameters for `tag` on `pool`, if remembered and fresh, and their ParameterStatus
    /// messages.
    pub fn get(&self, pool: &PoolKey, tag: u64) -> Option<(Params, Bytes)> {
        let entries = self.entries.lock();
        let (at, params, encoded) = entries.get(&(pool.clone(), tag))?;
        (at.elapsed() < GREETING_TTL).then(|| (params.clone(), encoded.clone()))
    }

    /// Remembers the parameters reported for `tag` on `pool`; returns their ParameterStatus
    /// messages.
    pub fn put(&self, pool: &PoolKey, tag: u64, params: &Params) -> Bytes {
        let encoded = encode_params(params);
        let mut entries = self.entries.lock();
        if entries.len() >= GREETING_MAX {
            entries.clear();
        }
        entries.insert(
            (pool.clone(), tag),
            (Instant::now(), Arc::clone(params), encoded.clone()),
        );
        encoded
    }
}

/// One ParameterStatus message per parameter, in order.
pub(crate) fn encode_params(params: &[(String, String)]) -> Bytes {
    let mut b = BytesMut::new();
    for (name, value) in params {
        encode::parameter_status(&mut b, name, value);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The greeting cache hands back the parameters it was given and their ParameterStatus
    /// messages, encoded as the session would encode them one by one.
    #[test]
    fn greetings_keep_their_encoded_parameters() {
        let cache = GreetingCache::default();
        let pool = PoolKey::new("primary", "app", "db");
        let params: Params = Arc::new(vec![
            ("TimeZone".to_owned(), "UTC".to_owned()),
            ("in_hot_standby".to_owned(), "off".to_owned()),
        ]);
        assert!(cache.get(&pool, 7).is_none());
        let encoded = cache.put(&pool, 7, &params);
        let mut expected = BytesMut::new();
        encode::parameter_status(&mut expected, "TimeZone", "UTC");
        encode::parameter_status(&mut expected, "in_hot_standby", "off");
        assert_eq!(encoded, expected.freeze());
        let (got, bytes) = cache.get(&pool, 7).expect("remembered");
        assert!(Arc::ptr_eq(&got, &params), "shared, not copied");
        assert_eq!(bytes, encoded);
        assert!(cache.get(&pool, 8).is_none(), "another settings tag");
    }

    /// An MD5 login is checked against the stored hash of a plain-text password, computed once
    /// and again only when the password changes; a stored hash is used as configured.
    #[test]
    fn md5_stored_hashes_plain_passwords_once() {
        let secrets = SecretCache::default();
        let stored = secrets.md5_stored("alice", "s3cret");
        assert_eq!(&*stored, pgsplit_wire::md5::stored_hash("alice", "s3cret"));
        let again = secrets.md5_stored("alice", "s3cret");
        assert!(Arc::ptr_eq(&stored, &again), "remembered, not hashed again");
        let changed = secrets.md5_stored("alice", "other");
        assert_eq!(&*changed, pgsplit_wire::md5::stored_hash("alice", "other"));
        let hash = pgsplit_wire::md5::stored_hash("bob", "pw");
        assert_eq!(
            &*secrets.md5_stored("bob", &hash),
            hash,
            "a stored hash as configured"
        );
        let salt = [1, 2, 3, 4];
        let response = pgsplit_wire::md5::client_response("alice", "other", salt);
        assert!(pgsplit_wire::md5::verify(
            "alice", &changed, salt, &response
        ));
        assert!(!pgsplit_wire::md5::verify(
            "alice", &stored, salt, &response
        ));
    }
}
