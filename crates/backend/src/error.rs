//! Errors raised while talking to a PostgreSQL server, with whose fault and whether to retry.

use pgsplit_wire::{ErrorFields, SqlState, WireError, sqlstate};

/// A failure on the server side of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect or IO failed.
    #[error("server {addr}: {source}")]
    Io {
        /// The server's address.
        addr: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting or authenticating took longer than `pool.connect_timeout`.
    #[error("server {addr}: connect timed out")]
    ConnectTimeout {
        /// The server's address.
        addr: String,
    },
    /// The server closed the connection.
    #[error("server {addr} closed the connection")]
    Closed {
        /// The server's address.
        addr: String,
    },
    /// The server sent bytes that are not valid protocol.
    #[error("server {addr} broke the protocol: {source}")]
    Protocol {
        /// The server's address.
        addr: String,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The server sent a message we did not expect at this point.
    #[error("server {addr} sent an unexpected message {tag:?} during {phase}")]
    Unexpected {
        /// The server's address.
        addr: String,
        /// The message tag.
        tag: char,
        /// What we were doing.
        phase: &'static str,
    },
    /// The server asked for an authentication method pgsplit cannot do, or the exchange failed.
    #[error("server {addr}: authentication failed: {reason}")]
    Auth {
        /// The server's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// TLS could not be set up as the server's `sslmode` requires (the server declined it,
    /// the handshake failed, or the certificate did not verify).
    #[error("server {addr}: TLS: {reason}")]
    Tls {
        /// The server's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an ErrorResponse (e.g. during startup).
    #[error("server {addr}: {} {}", .fields.code, .fields.message)]
    Server {
        /// The server's address.
        addr: String,
        /// The server's error, relayed to the client as is.
        fields: Box<ErrorFields>,
    },
}

impl BackendError {
    /// The SQLSTATE a client should see for this failure.
    pub fn code(&self) -> &str {
        match self {
            BackendError::Server { fields, .. } => &fields.code,
            other => other.own_sqlstate().code(),
        }
    }

    fn own_sqlstate(&self) -> SqlState {
        match self {
            BackendError::Server { .. } => sqlstate::CONNECTION_FAILURE,
            BackendError::Io { .. }
            | BackendError::ConnectTimeout { .. }
            | BackendError::Closed { .. } => sqlstate::CONNECTION_FAILURE,
            BackendError::Protocol { .. } | BackendError::Unexpected { .. } => {
                sqlstate::PROTOCOL_VIOLATION
            }
            BackendError::Auth { .. } | BackendError::Tls { .. } => {
                sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
            }
        }
    }

    /// Whether trying again (on this or another server) may succeed: connection-level failures
    /// may, a server's explicit error or a protocol violation will not.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Io { .. }
                | BackendError::ConnectTimeout { .. }
                | BackendError::Closed { .. }
        )
    }

    /// The ErrorResponse fields to send to the client for this failure.
    pub fn to_client_error(&self) -> ErrorFields {
        match self {
            BackendError::Server { fields, .. } => (**fields).clone(),
            other => ErrorFields::error(other.own_sqlstate(), other.to_string()),
        }
    }
}
