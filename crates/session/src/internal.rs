//! Queries pgsplit runs on a server connection for itself (replaying and reading back session
//! state), between the client's units, with every response kept from the client.

use bytes::BytesMut;
use pgsplit_backend::{BackendError, ServerConn};
use pgsplit_wire::backend::{self, BackendMessage};
use pgsplit_wire::{ErrorFields, encode};

/// What an internal query returned.
#[derive(Debug, Default)]
pub(crate) struct Internal {
    /// Rows of every result set, in order, as text (`None` is NULL).
    pub(crate) rows: Vec<Vec<Option<String>>>,
    /// The first ErrorResponse, if any.
    pub(crate) error: Option<ErrorFields>,
}

/// Runs `sql` as a simple Query and reads up to ReadyForQuery. ParameterStatus messages update
/// the connection's reported parameters; notices are dropped.
pub(crate) async fn run(conn: &mut ServerConn, sql: &str) -> Result<Internal, BackendError> {
    let mut buf = BytesMut::with_capacity(sql.len() + 8);
    encode::query(&mut buf, sql);
    conn.write_all(&buf).await?;
    let mut out = Internal::default();
    loop {
        let frame = conn.read_frame().await?;
        match backend::parse(&frame).map_err(|e| conn.protocol_error(e))? {
            BackendMessage::DataRow { .. } => {
                let values =
                    backend::parse_data_row(frame.body()).map_err(|e| conn.protocol_error(e))?;
                out.rows.push(
                    values
                        .into_iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                );
            }
            BackendMessage::ParameterStatus { name, value } => {
                let (name, value) = (name.to_owned(), value.to_owned());
                conn.note_param(&name, &value);
            }
            BackendMessage::ErrorResponse(fields) => {
                out.error.get_or_insert(fields);
            }
            BackendMessage::ReadyForQuery { status } => {
                conn.note_ready(status);
                return Ok(out);
            }
            _ => {}
        }
    }
}
