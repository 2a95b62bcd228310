//! Messages sent by servers (backends), parsed as borrowing views, plus cheap hot-path peeks.

use crate::{ErrorFields, Frame, SqlState, WireError, cursor::Cursor};

/// Message type bytes of backend messages.
pub mod tags {
    /// Authentication request or result (all `Authentication*` messages).
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyInResponse.
    pub const COPY_IN: u8 = b'G';
    /// CopyOutResponse.
    pub const COPY_OUT: u8 = b'H';
    /// CopyBothResponse.
    pub const COPY_BOTH: u8 = b'W';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY: u8 = b'I';
    /// ErrorResponse.
    pub const ERROR: u8 = b'E';
    /// FunctionCallResponse.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL: u8 = b'v';
    /// NoData.
    pub const NO_DATA: u8 = b'n';
    /// NoticeResponse.
    pub const NOTICE: u8 = b'N';
    /// NotificationResponse.
    pub const NOTIFICATION: u8 = b'A';
    /// ParameterDescription.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// PortalSuspended.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Authentication request codes carried by `R` messages.
pub mod auth_codes {
    /// AuthenticationOk.
    pub const OK: u32 = 0;
    /// AuthenticationKerberosV5 (no longer supported by servers).
    pub const KERBEROS_V5: u32 = 2;
    /// AuthenticationCleartextPassword.
    pub const CLEARTEXT_PASSWORD: u32 = 3;
    /// AuthenticationMD5Password.
    pub const MD5_PASSWORD: u32 = 5;
    /// AuthenticationSCMCredential (no longer supported by servers).
    pub const SCM_CREDENTIAL: u32 = 6;
    /// AuthenticationGSS.
    pub const GSS: u32 = 7;
    /// AuthenticationGSSContinue.
    pub const GSS_CONTINUE: u32 = 8;
    /// AuthenticationSSPI.
    pub const SSPI: u32 = 9;
    /// AuthenticationSASL.
    pub const SASL: u32 = 10;
    /// AuthenticationSASLContinue.
    pub const SASL_CONTINUE: u32 = 11;
    /// AuthenticationSASLFinal.
    pub const SASL_FINAL: u32 = 12;
}

/// A backend message, borrowing strings and data from the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// An authentication request, or the final AuthenticationOk.
    Authentication(AuthRequest<'a>),
    /// Cancellation key of the backend.
    BackendKeyData {
        /// Process id of the backend.
        pid: u32,
        /// Secret key (4 bytes in protocol 3.0).
        secret: u32,
    },
    /// Bind succeeded.
    BindComplete,
    /// Close succeeded.
    CloseComplete,
    /// Parse succeeded.
    ParseComplete,
    /// The statement or portal described returns no rows.
    NoData,
    /// Execute stopped at its row limit.
    PortalSuspended,
    /// The query string was empty.
    EmptyQueryResponse,
    /// End of COPY data from the server.
    CopyDone,
    /// A command finished.
    CommandComplete {
        /// The command tag, such as `INSERT 0 1` or `SELECT 3`.
        tag: &'a str,
    },
    /// COPY data from the server.
    CopyData {
        /// Raw data.
        data: &'a [u8],
    },
    /// The server is ready to receive COPY data.
    CopyInResponse {
        /// Overall format: 0 text, 1 binary.
        format: u8,
        /// Format code of each column.
        columns: Vec<u16>,
    },
    /// The server is about to send COPY data.
    CopyOutResponse {
        /// Overall format: 0 text, 1 binary.
        format: u8,
        /// Format code of each column.
        columns: Vec<u16>,
    },
    /// Start of a bidirectional copy (streaming replication).
    CopyBothResponse {
        /// Overall format: 0 text, 1 binary.
        format: u8,
        /// Format code of each column.
        columns: Vec<u16>,
    },
    /// One result row; values are checked but not materialized (see [`parse_data_row`]).
    DataRow {
        /// Number of columns.
        columns: u16,
    },
    /// An error; the current command (or the whole session, for `FATAL`) failed.
    ErrorResponse(ErrorFields),
    /// A notice or warning.
    NoticeResponse(ErrorFields),
    /// Result of a fast-path function call.
    FunctionCallResponse {
        /// The result, or `None` for NULL.
        value: Option<&'a [u8]>,
    },
    /// The server does not support the requested minor version or some `_pq_.` options.
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        newest_minor: u32,
        /// Protocol options the server did not recognize.
        unrecognized: Vec<&'a str>,
    },
    /// A NOTIFY was delivered.
    NotificationResponse {
        /// Process id of the notifying backend.
        pid: u32,
        /// Channel name.
        channel: &'a str,
        /// Payload string.
        payload: &'a str,
    },
    /// Parameter types of a described statement.
    ParameterDescription {
        /// Type OIDs.
        types: Vec<u32>,
    },
    /// A run-time parameter's current value.
    ParameterStatus {
        /// Parameter name.
        name: &'a str,
        /// Parameter value.
        value: &'a str,
    },
    /// The server is ready for a new query cycle.
    ReadyForQuery {
        /// Transaction status: `b'I'` idle, `b'T'` in a transaction, `b'E'` in a failed one.
        status: u8,
    },
    /// Row layout of a result; fields are checked but not materialized
    /// (see [`parse_row_description`]).
    RowDescription {
        /// Number of fields.
        fields: u16,
    },
}

/// The request carried by an Authentication (`R`) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear text.
    CleartextPassword,
    /// Send an MD5-hashed password using this salt.
    Md5Password {
        /// Random salt.
        salt: [u8; 4],
    },
    /// Start SASL with one of these mechanisms.
    Sasl {
        /// Mechanism names, in the server's order of preference.
        mechanisms: Vec<&'a str>,
    },
    /// A SASL challenge.
    SaslContinue {
        /// Mechanism-specific data.
        data: &'a [u8],
    },
    /// SASL outcome data (sent just before AuthenticationOk).
    SaslFinal {
        /// Mechanism-specific data.
        data: &'a [u8],
    },
    /// Any other request: KerberosV5 (2), SCMCredential (6), GSS (7), GSSContinue (8), SSPI (9),
    /// or a code this crate does not know. Any data after the code is ignored.
    Other {
        /// The request code.
        code: u32,
    },
}

/// Parses a backend message. An unknown tag is `UnknownMessage`; a bad body is `Malformed`.
pub fn parse(frame: &Frame) -> Result<BackendMessage<'_>, WireError> {
    let tag = frame.tag();
    let body = frame.body();
    let mut c = Cursor::new(tag, body);
    let msg = match tag {
        tags::AUTHENTICATION => BackendMessage::Authentication(auth(&mut c)?),
        tags::BACKEND_KEY_DATA => BackendMessage::BackendKeyData {
            pid: c.u32("process id")?,
            secret: c.u32("secret key")?,
        },
        tags::BIND_COMPLETE => BackendMessage::BindComplete,
        tags::CLOSE_COMPLETE => BackendMessage::CloseComplete,
        tags::PARSE_COMPLETE => BackendMessage::ParseComplete,
        tags::NO_DATA => BackendMessage::NoData,
        tags::PORTAL_SUSPENDED => BackendMessage::PortalSuspended,
        tags::EMPTY_QUERY => BackendMessage::EmptyQueryResponse,
        tags::COPY_DONE => BackendMessage::CopyDone,
        tags::COMMAND_COMPLETE => BackendMessage::CommandComplete { tag: c.cstr()? },
        tags::COPY_DATA => BackendMessage::CopyData { data: c.rest() },
        tags::COPY_IN => {
            let (format, columns) = copy_response(&mut c)?;
            BackendMessage::CopyInResponse { format, columns }
        }
        tags::COPY_OUT => {
            let (format, columns) = copy_response(&mut c)?;
            BackendMessage::CopyOutResponse { format, columns }
        }
        tags::COPY_BOTH => {
            let (format, columns) = copy_response(&mut c)?;
            BackendMessage::CopyBothResponse { format, columns }
        }
        tags::DATA_ROW => {
            let columns = c.u16("column count")?;
            for _ in 0..columns {
                c.nullable("column value")?;
            }
            BackendMessage::DataRow { columns }
        }
        tags::ERROR => BackendMessage::ErrorResponse(ErrorFields::parse(tag, c.rest())?),
        tags::NOTICE => BackendMessage::NoticeResponse(ErrorFields::parse(tag, c.rest())?),
        tags::FUNCTION_CALL_RESPONSE => BackendMessage::FunctionCallResponse {
            value: c.nullable("result value")?,
        },
        tags::NEGOTIATE_PROTOCOL => {
            let newest_minor = c.u32("newest minor version")?;
            let n = c.u32("option count")?;
            // Each option needs at least its NUL; never trust the count for allocation.
            let mut unrecognized = Vec::new();
            for _ in 0..n {
                unrecognized.push(c.cstr()?);
            }
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            }
        }
        tags::NOTIFICATION => BackendMessage::NotificationResponse {
            pid: c.u32("process id")?,
            channel: c.cstr()?,
            payload: c.cstr()?,
        },
        tags::PARAMETER_DESCRIPTION => {
            let n = usize::from(c.u16("parameter count")?);
            if c.remaining() != n * 4 {
                return Err(c.err("parameter count does not match the body"));
            }
            let types = (0..n)
                .map(|_| c.u32("parameter type"))
                .collect::<Result<_, _>>()?;
            BackendMessage::ParameterDescription { types }
        }
        tags::PARAMETER_STATUS => BackendMessage::ParameterStatus {
            name: c.cstr()?,
            value: c.cstr()?,
        },
        tags::READY_FOR_QUERY => {
            let status = c.u8("missing transaction status")?;
            if !matches!(status, b'I' | b'T' | b'E') {
                return Err(c.err("unknown transaction status"));
            }
            BackendMessage::ReadyForQuery { status }
        }
        tags::ROW_DESCRIPTION => {
            let fields = c.u16("field count")?;
            for _ in 0..fields {
                field(&mut c)?;
            }
            BackendMessage::RowDescription { fields }
        }
        _ => return Err(WireError::UnknownMessage { tag }),
    };
    c.finish()?;
    Ok(msg)
}

/// Reads the body of an Authentication message.
fn auth<'a>(c: &mut Cursor<'a>) -> Result<AuthRequest<'a>, WireError> {
    use auth_codes as code;
    Ok(match c.u32("authentication code")? {
        code::OK => AuthRequest::Ok,
        code::CLEARTEXT_PASSWORD => AuthRequest::CleartextPassword,
        code::MD5_PASSWORD => {
            let salt = c.bytes(4, "MD5 salt")?;
            AuthRequest::Md5Password {
                salt: [salt[0], salt[1], salt[2], salt[3]],
            }
        }
        code::SASL => {
            let mut mechanisms = Vec::new();
            loop {
                match c.cstr()? {
                    "" => break,
                    m => mechanisms.push(m),
                }
            }
            AuthRequest::Sasl { mechanisms }
        }
        code::SASL_CONTINUE => AuthRequest::SaslContinue { data: c.rest() },
        code::SASL_FINAL => AuthRequest::SaslFinal { data: c.rest() },
        other => {
            c.rest();
            AuthRequest::Other { code: other }
        }
    })
}

/// Reads the body of CopyIn/CopyOut/CopyBothResponse.
fn copy_response(c: &mut Cursor<'_>) -> Result<(u8, Vec<u16>), WireError> {
    let format = c.u8("copy format")?;
    let n = usize::from(c.u16("column count")?);
    if c.remaining() != n * 2 {
        return Err(c.err("column count does not match the body"));
    }
    let columns = (0..n)
        .map(|_| c.u16("column format"))
        .collect::<Result<_, _>>()?;
    Ok((format, columns))
}

/// One field of a RowDescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column name.
    pub name: &'a str,
    /// OID of the source table, or 0.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0.
    pub column: i16,
    /// OID of the data type.
    pub type_oid: u32,
    /// Data type size (`pg_type.typlen`); negative for variable width.
    pub type_len: i16,
    /// Type modifier (`pg_attribute.atttypmod`).
    pub type_modifier: i32,
    /// Format code: 0 text, 1 binary.
    pub format: i16,
}

/// Reads one RowDescription field.
fn field<'a>(c: &mut Cursor<'a>) -> Result<FieldDescription<'a>, WireError> {
    Ok(FieldDescription {
        name: c.cstr()?,
        table_oid: c.u32("table OID")?,
        column: c.i16("attribute number")?,
        type_oid: c.u32("type OID")?,
        type_len: c.i16("type length")?,
        type_modifier: c.i32("type modifier")?,
        format: c.i16("format code")?,
    })
}

/// Decodes every field of a RowDescription body (the relay itself never needs to).
pub fn parse_row_description(body: &[u8]) -> Result<Vec<FieldDescription<'_>>, WireError> {
    let mut c = Cursor::new(tags::ROW_DESCRIPTION, body);
    let n = c.u16("field count")?;
    let fields = (0..n).map(|_| field(&mut c)).collect::<Result<_, _>>()?;
    c.finish()?;
    Ok(fields)
}

/// Decodes every value of a DataRow body; `None` is SQL NULL.
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let mut c = Cursor::new(tags::DATA_ROW, body);
    let n = c.u16("column count")?;
    let values = (0..n)
        .map(|_| c.nullable("column value"))
        .collect::<Result<_, _>>()?;
    c.finish()?;
    Ok(values)
}

/// The transaction status of a well-formed ReadyForQuery frame, without a full parse.
pub fn ready_status(frame: &Frame) -> Option<u8> {
    match (frame.tag(), frame.body()) {
        (tags::READY_FOR_QUERY, &[status]) => Some(status),
        _ => None,
    }
}

/// The SQLSTATE of an ErrorResponse frame, found by scanning its fields for `C`.
///
/// Codes outside PostgreSQL 15's table map to their class's generic code (`xx000`), as the SQL
/// standard suggests for unknown codes; `None` if the frame is not an ErrorResponse, has no
/// code, or the class is unknown too.
/// Use [`ErrorFields`] for the exact text.
pub fn error_code(frame: &Frame) -> Option<SqlState> {
    if frame.tag() != tags::ERROR {
        return None;
    }
    let mut rest = frame.body();
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let nul = tail.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            let code = std::str::from_utf8(&tail[..nul]).ok()?;
            return SqlState::from_code(code).or_else(|| SqlState::class_of(code));
        }
        rest = &tail[nul + 1..];
    }
    None
}
