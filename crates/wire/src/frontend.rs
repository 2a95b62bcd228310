//! Messages sent by clients (frontends), parsed as borrowing views over a frame's body.

use crate::{Frame, WireError, cursor::Cursor};

/// Message type bytes of frontend messages.
pub mod tags {
    /// Query (simple protocol).
    pub const QUERY: u8 = b'Q';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse.
    pub const PASSWORD: u8 = b'p';
}

/// A frontend message, borrowing strings and data from the frame.
///
/// Strings must be UTF-8; a client using another `client_encoding` gets `Malformed`, and the
/// caller may still forward the raw frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// A simple-protocol query string (may hold several statements).
    Query {
        /// The SQL text.
        sql: &'a str,
    },
    /// Parse: create a prepared statement.
    Parse {
        /// Statement name; empty for the unnamed statement.
        name: &'a str,
        /// The SQL text.
        sql: &'a str,
        /// Parameter type OIDs the client specified (0 means unspecified).
        param_types: Vec<u32>,
    },
    /// Bind: create a portal. Only the names are decoded; see [`parse_bind`] for the rest.
    Bind {
        /// Portal name; empty for the unnamed portal.
        portal: &'a str,
        /// Source statement name; empty for the unnamed statement.
        statement: &'a str,
    },
    /// Describe a statement (`kind` `S`) or a portal (`kind` `P`).
    Describe {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// The statement or portal name.
        name: &'a str,
    },
    /// Execute a portal.
    Execute {
        /// Portal name.
        portal: &'a str,
        /// Maximum number of rows to return; 0 means no limit.
        max_rows: u32,
    },
    /// Close a statement (`kind` `S`) or a portal (`kind` `P`).
    Close {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// The statement or portal name.
        name: &'a str,
    },
    /// Sync: end of an extended-protocol batch.
    Sync,
    /// Flush: ask the server to send what it has buffered.
    Flush,
    /// Terminate: the client is closing the connection.
    Terminate,
    /// COPY data from the client.
    CopyData {
        /// Raw data.
        data: &'a [u8],
    },
    /// End of COPY data from the client.
    CopyDone,
    /// The client aborts a COPY FROM STDIN.
    CopyFail {
        /// The reason given by the client.
        message: &'a str,
    },
    /// A fast-path function call; see [`parse_function_call`] for the arguments.
    FunctionCall {
        /// OID of the function.
        oid: u32,
    },
    /// `p`: its meaning depends on the authentication state, so the body is kept raw.
    ///
    /// Decode it with [`parse_password`] or [`parse_sasl_initial`]; a SASLResponse or
    /// GSSResponse body is the raw data itself.
    Password {
        /// The whole message body.
        body: &'a [u8],
    },
}

/// Parses a frontend message. An unknown tag is `UnknownMessage`; a bad body is `Malformed`.
pub fn parse(frame: &Frame) -> Result<FrontendMessage<'_>, WireError> {
    let tag = frame.tag();
    let mut c = Cursor::new(tag, frame.body());
    let msg = match tag {
        tags::QUERY => FrontendMessage::Query { sql: c.cstr()? },
        tags::PARSE => {
            let name = c.cstr()?;
            let sql = c.cstr()?;
            let n = c.count16("parameter type count")?;
            if c.remaining() != n.saturating_mul(4) {
                return Err(c.err("parameter type count does not match the body"));
            }
            let mut param_types = Vec::with_capacity(n);
            for _ in 0..n {
                param_types.push(c.u32("parameter type")?);
            }
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            }
        }
        tags::BIND => {
            let portal = c.cstr()?;
            let statement = c.cstr()?;
            // The parameters are forwarded raw; `parse_bind` decodes them when needed.
            c.rest();
            FrontendMessage::Bind { portal, statement }
        }
        tags::DESCRIBE => {
            let (kind, name) = target(&mut c)?;
            FrontendMessage::Describe { kind, name }
        }
        tags::CLOSE => {
            let (kind, name) = target(&mut c)?;
            FrontendMessage::Close { kind, name }
        }
        tags::EXECUTE => FrontendMessage::Execute {
            portal: c.cstr()?,
            max_rows: c.u32("row limit")?,
        },
        tags::SYNC => FrontendMessage::Sync,
        tags::FLUSH => FrontendMessage::Flush,
        tags::TERMINATE => FrontendMessage::Terminate,
        tags::COPY_DATA => FrontendMessage::CopyData { data: c.rest() },
        tags::COPY_DONE => FrontendMessage::CopyDone,
        tags::COPY_FAIL => FrontendMessage::CopyFail { message: c.cstr()? },
        tags::FUNCTION_CALL => FrontendMessage::FunctionCall {
            oid: function_call(tag, c.rest())?.oid,
        },
        tags::PASSWORD => FrontendMessage::Password { body: c.rest() },
        _ => return Err(WireError::UnknownMessage { tag }),
    };
    c.finish()?;
    Ok(msg)
}

/// Reads the `S`/`P` kind byte and name of Describe and Close.
fn target<'a>(c: &mut Cursor<'a>) -> Result<(u8, &'a str), WireError> {
    let kind = c.u8("missing statement or portal kind")?;
    if kind != b'S' && kind != b'P' {
        return Err(c.err("kind is neither 'S' nor 'P'"));
    }
    Ok((kind, c.cstr()?))
}

/// Parses a PasswordMessage body: a cleartext password or an `md5...` response.
pub fn parse_password(body: &[u8]) -> Result<&str, WireError> {
    let mut c = Cursor::new(tags::PASSWORD, body);
    let password = c.cstr()?;
    c.finish()?;
    Ok(password)
}

/// Parses a SASLInitialResponse body into the mechanism name and the initial data.
///
/// The data is `None` when the client sent a length of -1 (no initial response).
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, Option<&[u8]>), WireError> {
    let mut c = Cursor::new(tags::PASSWORD, body);
    let mechanism = c.cstr()?;
    let data = c.nullable("initial response length")?;
    c.finish()?;
    Ok((mechanism, data))
}

/// A fully decoded Bind message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMessage<'a> {
    /// Portal name; empty for the unnamed portal.
    pub portal: &'a str,
    /// Source statement name; empty for the unnamed statement.
    pub statement: &'a str,
    /// Parameter format codes (none: all text; one: applies to all).
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes (none: all text; one: applies to all).
    pub result_formats: Vec<i16>,
}

/// Decodes a whole Bind body, parameters included (the relay itself never needs to).
pub fn parse_bind(body: &[u8]) -> Result<BindMessage<'_>, WireError> {
    let mut c = Cursor::new(tags::BIND, body);
    let portal = c.cstr()?;
    let statement = c.cstr()?;
    let param_formats = formats(&mut c)?;
    let params = values(&mut c)?;
    let result_formats = formats(&mut c)?;
    c.finish()?;
    Ok(BindMessage {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// A fully decoded FunctionCall message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCallMessage<'a> {
    /// OID of the function.
    pub oid: u32,
    /// Argument format codes (none: all text; one: applies to all).
    pub arg_formats: Vec<i16>,
    /// Argument values; `None` is SQL NULL.
    pub args: Vec<Option<&'a [u8]>>,
    /// Format code of the result.
    pub result_format: i16,
}

/// Decodes a whole FunctionCall body.
pub fn parse_function_call(body: &[u8]) -> Result<FunctionCallMessage<'_>, WireError> {
    function_call(tags::FUNCTION_CALL, body)
}

fn function_call(tag: u8, body: &[u8]) -> Result<FunctionCallMessage<'_>, WireError> {
    let mut c = Cursor::new(tag, body);
    let oid = c.u32("function OID")?;
    let arg_formats = formats(&mut c)?;
    let args = values(&mut c)?;
    let result_format = c.i16("result format")?;
    c.finish()?;
    Ok(FunctionCallMessage {
        oid,
        arg_formats,
        args,
        result_format,
    })
}

/// Reads an `Int16` count followed by that many `Int16` format codes.
pub(crate) fn formats(c: &mut Cursor<'_>) -> Result<Vec<i16>, WireError> {
    let n = c.count16("format code count")?;
    // The count is checked against the bytes present before anything is allocated.
    if c.remaining() < n.saturating_mul(2) {
        return Err(c.err("format code count exceeds the body"));
    }
    (0..n).map(|_| c.i16("format code")).collect()
}

/// Reads an `Int16` count followed by that many length-prefixed nullable values.
pub(crate) fn values<'a>(c: &mut Cursor<'a>) -> Result<Vec<Option<&'a [u8]>>, WireError> {
    let n = c.count16("value count")?;
    if c.remaining() < n.saturating_mul(4) {
        return Err(c.err("value count exceeds the body"));
    }
    (0..n).map(|_| c.nullable("value length")).collect()
}
