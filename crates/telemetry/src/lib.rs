//! Logging setup and the names pgsplit uses for spans and fields.
//!
//! This crate owns the process-wide `tracing` subscriber initialisation (called once, from the
//! `pgsplit` binary) and the span/field name constants shared by the data path.
//! It also defines [`Metrics`], the one typed struct holding every Prometheus family, created
//! once by the composition root and handed to whoever records; the server families (health,
//! role, lag, failovers) are grouped in [`ServerMetrics`], and the ones set at scrape time
//! (clients and server connections by state, parse cache totals) in [`ConnectionMetrics`].
//! It holds no configuration or
//! pool state and no global: the registry lives inside the struct.
#![warn(missing_docs)]

mod connections;
mod families;
mod metrics;
mod servers;

pub use connections::{
    CLIENT_STATES, ClientCounts, ConnectionMetrics, SERVER_STATES, ServerConnections,
};
pub use metrics::{Metrics, QUERY_ROLES};
pub use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge};
pub use servers::{ServerHandles, ServerMetrics, ServerRole};
use tracing_subscriber::EnvFilter;

/// Span and field names used across crates, so logs stay greppable.
pub mod names {
    /// One span per client connection.
    pub const CLIENT_SPAN: &str = "client";
    /// Field: the connection id pgsplit assigned.
    pub const CONN_ID: &str = "conn_id";
    /// Field: the peer address.
    pub const PEER: &str = "peer";
    /// Field: the user name.
    pub const USER: &str = "user";
    /// Field: the database name.
    pub const DATABASE: &str = "database";
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Errors from [`init_logging`].
#[derive(Debug)]
pub enum InitError {
    /// The level directive did not parse.
    BadFilter(String),
    /// A global subscriber was already installed.
    AlreadySet,
}

impl std::error::Error for InitError {}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::BadFilter(e) => write!(f, "invalid log level directive: {e}"),
            InitError::AlreadySet => f.write_str("a global tracing subscriber is already set"),
        }
    }
}

/// Installs the global `tracing` subscriber writing to stderr.
///
/// `RUST_LOG`, when set, overrides `level` (so operators can raise verbosity without editing
/// the config file).
pub fn init_logging(format: Format, level: &str) -> Result<(), InitError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| InitError::BadFilter(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let res = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().with_current_span(true).try_init(),
    };
    res.map_err(|_| InitError::AlreadySet)
}
