//! Why a checkout failed: the queue timed out, or the connection could not be opened.

use pgsplit_wire::{ErrorFields, sqlstate};
use tokio::time::Duration;

use super::{PoolKey, human_duration};
use crate::BackendError;

/// A checkout that did not produce a connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became available within `checkout_timeout` (SQLSTATE 53300).
    #[error("{key}: no server connection available within {}", human_duration(*.timeout))]
    Timeout {
        /// The pool.
        key: PoolKey,
        /// The configured `checkout_timeout`.
        timeout: Duration,
    },
    /// A slot was free but opening the connection failed; the slot went to the next waiter.
    #[error("{key}: cannot open a server connection: {source}")]
    Connect {
        /// The pool.
        key: PoolKey,
        /// Why the connect failed.
        #[source]
        source: BackendError,
    },
}

impl PoolError {
    /// The pool the checkout was for.
    pub fn key(&self) -> &PoolKey {
        match self {
            PoolError::Timeout { key, .. } | PoolError::Connect { key, .. } => key,
        }
    }

    /// The SQLSTATE a client should see: 53300 for a timeout, the connect failure's otherwise.
    pub fn code(&self) -> &str {
        match self {
            PoolError::Timeout { .. } => sqlstate::TOO_MANY_CONNECTIONS.code(),
            PoolError::Connect { source, .. } => source.code(),
        }
    }

    /// Whether trying again (later, or on another server) may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            PoolError::Timeout { .. } => true,
            PoolError::Connect { source, .. } => source.retryable(),
        }
    }

    /// The ErrorResponse fields to send to the client: the server's own error when it refused
    /// the connection (e.g. `3D000` for a missing database), else ours, naming the pool.
    pub fn to_client_error(&self) -> ErrorFields {
        match self {
            PoolError::Timeout { .. } => {
                ErrorFields::error(sqlstate::TOO_MANY_CONNECTIONS, self.to_string())
            }
            PoolError::Connect {
                source: source @ BackendError::Server { .. },
                ..
            } => source.to_client_error(),
            PoolError::Connect { source, .. } => {
                let mut fields = source.to_client_error();
                fields.message = self.to_string();
                fields
            }
        }
    }
}
