//! Test helpers for pgsplit: the real test cluster, proxy config YAML, a scripted mock PostgreSQL server, and where external tools are.
//!
//! This crate is a dev-dependency only.
//! It may use `pgsplit-wire` and `pgsplit-config` but never `session` or `proxy`,
//! so the proxy's own tests can use it without a dependency cycle; starting the proxy is the e2e crate's job.
//!
//! What it does not do: it starts no PostgreSQL itself (`cargo xtask cluster up` does) and never
//! decides whether a test runs; [`cluster::ClusterEnv::require`] only reports what the environment says.

pub mod cluster;
pub mod mock;
pub mod proxy_config;
pub mod tools;

pub use cluster::{ClusterEnv, Node};
pub use mock::{Match, MockServer, Received, Reply, Script};
pub use proxy_config::ProxyYaml;
