//! Simple queries pgsplit runs for itself on a server connection (health probes), read to ReadyForQuery.

use bytes::BytesMut;
use pgsplit_wire::backend::{self, BackendMessage, tags};
use pgsplit_wire::encode;

use crate::{BackendError, ServerConn};

/// Rows of every result set of a simple query, in order, as text (`None` is NULL).
pub type TextRows = Vec<Vec<Option<String>>>;

impl ServerConn {
    /// Runs `sql` as a simple Query and reads everything up to ReadyForQuery.
    ///
    /// Returns the rows as text. An ErrorResponse becomes [`BackendError::Server`], returned
    /// only after ReadyForQuery, so the connection is still in step afterwards.
    /// ParameterStatus messages update [`ServerConn::params`]; notices are dropped;
    /// NotificationResponses are kept for the client ([`ServerConn::take_notifications`]).
    ///
    /// Not cancel safe: dropped halfway, the connection is out of step and must be closed.
    pub async fn simple_query(&mut self, sql: &str) -> Result<TextRows, BackendError> {
        let mut buf = BytesMut::with_capacity(sql.len() + 8);
        encode::query(&mut buf, sql);
        self.write_all(&buf).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            if frame.tag() == tags::NOTIFICATION {
                // Another session's NOTIFY for the client holding this connection: it is the
                // client's, not an answer to this query.
                self.notifications.push(frame.into_bytes());
                continue;
            }
            match backend::parse(&frame).map_err(|e| self.protocol_error(e))? {
                BackendMessage::DataRow { .. } => {
                    let values = backend::parse_data_row(frame.body())
                        .map_err(|e| self.protocol_error(e))?;
                    rows.push(
                        values
                            .into_iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect(),
                    );
                }
                BackendMessage::ParameterStatus { name, value } => {
                    let (name, value) = (name.to_owned(), value.to_owned());
                    self.note_param(&name, &value);
                }
                BackendMessage::ErrorResponse(fields) => {
                    error.get_or_insert(fields);
                }
                BackendMessage::ReadyForQuery { status } => {
                    self.note_ready(status);
                    return match error {
                        None => Ok(rows),
                        Some(fields) => Err(BackendError::Server {
                            addr: self.addr.clone(),
                            fields: Box::new(fields),
                        }),
                    };
                }
                _ => {}
            }
        }
    }
}
