//! What changed between two configs, for hot reload.
//!
//! Reload builds a whole new snapshot, but pools are expensive to rebuild and their
//! connections are worth keeping. [`diff`] tells the reloader which inputs of which pools
//! changed, so pools of unchanged servers and users can be carried over.

use std::collections::HashMap;

use crate::Config;

/// The differences between an old and a new [`Config`].
///
/// Server and user lists are by name: a renamed server is one removed and one added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Servers only in the new config, in its order.
    pub servers_added: Vec<String>,
    /// Servers only in the old config, in its order.
    pub servers_removed: Vec<String>,
    /// Servers in both whose settings differ in any way, in the new config's order.
    pub servers_changed: Vec<String>,
    /// The subset of `servers_changed` whose host or port changed: their connections lead
    /// somewhere else and must not be reused.
    pub servers_moved: Vec<String>,
    /// Whether any `pool` setting changed (it applies to every pool).
    pub pool_changed: bool,
    /// Users only in the new config.
    pub users_added: Vec<String>,
    /// Users only in the old config.
    pub users_removed: Vec<String>,
    /// Users in both whose settings differ (credentials, auth method, admin flag).
    pub users_changed: Vec<String>,
    /// Whether `listen` changed (takes a new listener).
    pub listen_changed: bool,
    /// Whether `admin.listen` changed.
    pub admin_changed: bool,
    /// Whether any `log` setting changed.
    pub log_changed: bool,
    /// Whether any `limits` setting changed.
    pub limits_changed: bool,
    /// Whether `shutdown_timeout` changed.
    pub shutdown_timeout_changed: bool,
    /// Whether any routing key changed (`primary_reads`, `balance`, `consistency`,
    /// `causal_wait`, `functions`, `rules`): the routing policy and classifier are rebuilt.
    pub routing_changed: bool,
    /// Whether any `health` setting changed.
    pub health_changed: bool,
    /// Whether any `lag` limit changed.
    pub lag_changed: bool,
    /// Whether any `failover` setting changed.
    pub failover_changed: bool,
}

impl ConfigDiff {
    /// Whether the two configs are equivalent (the source path is not compared).
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

/// Compares two configs.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let old_servers: HashMap<&str, _> = old.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    let new_servers: HashMap<&str, _> = new.servers.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut d = ConfigDiff::default();
    for server in &new.servers {
        match old_servers.get(server.name.as_str()) {
            None => d.servers_added.push(server.name.clone()),
            Some(before) if *before != server => {
                d.servers_changed.push(server.name.clone());
                if before.host != server.host || before.port != server.port {
                    d.servers_moved.push(server.name.clone());
                }
            }
            Some(_) => {}
        }
    }
    d.servers_removed = old
        .servers
        .iter()
        .filter(|s| !new_servers.contains_key(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();

    let old_users: HashMap<&str, _> = old.users.iter().map(|u| (u.name.as_str(), u)).collect();
    let new_users: HashMap<&str, _> = new.users.iter().map(|u| (u.name.as_str(), u)).collect();
    for user in &new.users {
        match old_users.get(user.name.as_str()) {
            None => d.users_added.push(user.name.clone()),
            Some(before) if *before != user => d.users_changed.push(user.name.clone()),
            Some(_) => {}
        }
    }
    d.users_removed = old
        .users
        .iter()
        .filter(|u| !new_users.contains_key(u.name.as_str()))
        .map(|u| u.name.clone())
        .collect();

    d.pool_changed = old.pool != new.pool;
    d.listen_changed = old.listen != new.listen;
    d.admin_changed = old.admin != new.admin;
    d.log_changed = old.log != new.log;
    d.limits_changed = old.limits != new.limits;
    d.shutdown_timeout_changed = old.shutdown_timeout != new.shutdown_timeout;
    d.routing_changed = old.routing != new.routing;
    d.health_changed = old.health != new.health;
    d.lag_changed = old.lag != new.lag;
    d.failover_changed = old.failover != new.failover;
    d
}
