//! Queries pgsplit runs on a server connection for itself (replaying and reading back session
//! state), between the client's units, with every response kept from the client.

use pgsplit_backend::{BackendError, ServerConn};
use pgsplit_wire::ErrorFields;

/// What an internal query returned.
#[derive(Debug, Default)]
pub(crate) struct Internal {
    /// Rows of every result set, in order, as text (`None` is NULL).
    pub(crate) rows: Vec<Vec<Option<String>>>,
    /// The first ErrorResponse, if any.
    pub(crate) error: Option<ErrorFields>,
}

/// Runs `sql` as a simple Query and reads up to ReadyForQuery. ParameterStatus messages update
/// the connection's reported parameters; notices are dropped. A server error is returned in
/// [`Internal::error`] (with no rows), the connection still in step.
pub(crate) async fn run(conn: &mut ServerConn, sql: &str) -> Result<Internal, BackendError> {
    match conn.simple_query(sql).await {
        Ok(rows) => Ok(Internal { rows, error: None }),
        Err(BackendError::Server { fields, .. }) => Ok(Internal {
            rows: Vec::new(),
            error: Some(*fields),
        }),
        Err(e) => Err(e),
    }
}
