//! One consistent view of everything routing reads: config, policy, classifier and topology, swapped as a whole.
//!
//! The proxy keeps one `ArcSwap<Snapshot>`. Two writers replace it, both with
//! read-copy-update: a config reload (new config, [`Routing`] and a [`Topology`] that carries
//! the health state of unchanged servers over) and the health checker (same config and
//! routing, a new topology). Sessions load it at transaction boundaries, so a transaction
//! never straddles two configs.

use std::sync::Arc;

use pgsplit_classify::{CacheCounters, Classifier, Options, UnknownFunctions};
use pgsplit_config as config;
use pgsplit_config::Config;
use regex::Regex;

use crate::policy::{BalancePolicy, Consistency, Policy, PrimaryReads};
use crate::rules::{Action, Match, Rule, RuleTarget};
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
    /// The routing of `config`: its policy (`balance`, `primary_reads`, `consistency`,
    /// `causal_wait`, `failover.write_wait`, `rules` in order) and a classifier told its
    /// `functions` lists (with the default cache size).
    pub fn from_config(config: &Config) -> Routing {
        Routing::with_cache_counters(config, Arc::default())
    }

    /// The routing of a reloaded `config`: like [`Routing::from_config`] (an empty
    /// classification cache), but counting cache hits and misses on from this routing's
    /// totals, so that `pgsplit_parse_cache_total` never goes down.
    pub fn next(&self, config: &Config) -> Routing {
        Routing::with_cache_counters(config, Arc::clone(self.classifier.cache_counters()))
    }

    fn with_cache_counters(config: &Config, cache_counters: Arc<CacheCounters>) -> Routing {
        let r = &config.routing;
        let policy = Policy {
            balance: match r.balance {
                config::Balance::RoundRobin => BalancePolicy::RoundRobin,
                config::Balance::LeastConnections => BalancePolicy::LeastConnections,
                config::Balance::WeightedLeastConnections => {
                    BalancePolicy::WeightedLeastConnections
                }
            },
            primary_reads: match r.primary_reads {
                config::PrimaryReads::Never => PrimaryReads::Never,
                config::PrimaryReads::Fallback => PrimaryReads::Fallback,
                config::PrimaryReads::Always => PrimaryReads::Always,
            },
            consistency: consistency(r.consistency),
            causal_wait: r.causal_wait,
            write_wait: config.failover.write_wait,
            rules: r.rules.iter().map(rule).collect(),
        };
        let classifier = Classifier::new(Options {
            write_functions: r.functions.write.clone(),
            read_functions: r.functions.read.clone(),
            unknown_functions: match r.functions.unknown {
                config::UnknownFunctions::Primary => UnknownFunctions::Primary,
                config::UnknownFunctions::Replica => UnknownFunctions::Replica,
            },
            cache_counters,
            ..Options::default()
        });
        Routing { policy, classifier }
    }

    /// Whether any rule matches on query fingerprints, so the caller must compute
    /// [`pgsplit_classify::fingerprint`] for [`crate::Unit::fingerprint`] (it costs a
    /// parse; skip it otherwise).
    pub fn needs_fingerprint(&self) -> bool {
        self.policy
            .rules
            .iter()
            .any(|r| !r.when.fingerprints.is_empty())
    }
}

fn consistency(c: config::Consistency) -> Consistency {
    match c {
        config::Consistency::Eventual => Consistency::Eventual,
        config::Consistency::Session => Consistency::Session,
        config::Consistency::PrimaryAfterWrite(d) => Consistency::PrimaryAfterWrite(d),
    }
}

fn rule(r: &config::RuleConfig) -> Rule {
    let m = &r.when;
    let regex = m.regex.as_deref().map(|pattern| {
        // Cannot fail: pgsplit-config refuses a config whose regex does not compile, and it
        // compiles it with this same `Regex::new` of the same workspace `regex` crate.
        Regex::new(pattern).expect("rule regex was validated by pgsplit-config")
    });
    Rule {
        name: r.name.clone(),
        when: Match {
            users: m.users.clone(),
            databases: m.databases.clone(),
            application_names: m.application_names.clone(),
            kinds: m.kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            tables: m.tables.clone(),
            functions: m.functions.clone(),
            fingerprints: m.fingerprints.clone(),
            regex,
        },
        then: Action {
            target: r.target.map(|t| match t {
                config::RuleTarget::Primary => RuleTarget::Primary,
                config::RuleTarget::Replica => RuleTarget::Replica,
            }),
            consistency: r.consistency.map(consistency),
            block: r.block.as_deref().map(Arc::from),
        },
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

    /// The snapshot of a reloaded `config`: the next generation, a new [`Routing`] (and so
    /// an empty classification cache whose hit and miss counters continue this one's), and a topology that keeps what this one learned
    /// about servers that stayed ([`Topology::carry_over`]).
    pub fn reload(&self, config: Config) -> Snapshot {
        Snapshot {
            generation: self.generation + 1,
            routing: Arc::new(self.routing.next(&config)),
            topology: Arc::new(Topology::carry_over(&config, &self.topology)),
            config: Arc::new(config),
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
