//! Session errors: whose fault (client, server, pgsplit) and what the client should see.

use pgsplit_backend::BackendError;
use pgsplit_wire::{ErrorFields, WireError, sqlstate};

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client closed its socket.
    #[error("client disconnected")]
    ClientGone,
    /// Reading from or writing to the client failed.
    #[error("client IO: {0}")]
    ClientIo(#[source] std::io::Error),
    /// The client broke the protocol.
    #[error("client protocol violation: {0}")]
    ClientProtocol(#[from] WireError),
    /// The client did not finish startup in time.
    #[error("client startup timed out")]
    StartupTimeout,
    /// Authentication was refused; the fields were sent to the client.
    #[error("authentication failed: {}", .0.message)]
    Refused(Box<ErrorFields>),
    /// The server closed the connection mid-session; the client was already told.
    #[error("server {0} closed the connection")]
    ServerGone(String),
    /// The server side failed.
    #[error(transparent)]
    Server(#[from] BackendError),
}

impl SessionError {
    /// The FATAL error to send to the client before closing, if the client is still there.
    pub(crate) fn client_error(&self) -> Option<ErrorFields> {
        match self {
            SessionError::ClientGone | SessionError::ClientIo(_) | SessionError::ServerGone(_) => {
                None
            }
            SessionError::ClientProtocol(e) => Some(ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                e.to_string(),
            )),
            SessionError::StartupTimeout => Some(ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "startup and authentication took too long",
            )),
            SessionError::Refused(fields) => Some((**fields).clone()),
            SessionError::Server(e) => {
                let mut f = e.to_client_error();
                if f.severity == "ERROR" {
                    f.severity = "FATAL".into();
                    for (tag, value) in &mut f.other {
                        if *tag == b'V' {
                            *value = "FATAL".into();
                        }
                    }
                }
                Some(f)
            }
        }
    }

    /// Whether this is an ordinary end that deserves no warning in the log.
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self, SessionError::ClientGone)
    }
}
