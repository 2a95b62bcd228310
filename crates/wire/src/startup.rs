//! Untagged first packets of a connection: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.

use bytes::{Buf, BytesMut};

use crate::WireError;

/// Protocol version 3.0 (major 3 in the high 16 bits, minor 0 in the low 16 bits).
pub const PROTOCOL_3_0: u32 = 196608;
/// The "protocol version" of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80877103;
/// The "protocol version" of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80877104;
/// The "protocol version" of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80877102;

/// PostgreSQL's own limit on the size of a startup packet.
pub const MAX_STARTUP_LEN: usize = 10_000;

/// The first packet a client sends on a connection (or on a fresh connection, for a cancel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupPacket {
    /// A StartupMessage.
    ///
    /// The major version is always 3; a minor version above 0 is kept so that the caller can
    /// answer with NegotiateProtocolVersion.
    Startup {
        /// The requested protocol version, `major << 16 | minor`.
        protocol: u32,
        /// Parameters in the order sent, `_pq_.` protocol options included.
        params: Vec<(String, String)>,
    },
    /// A request to switch to TLS.
    SslRequest,
    /// A request to switch to GSSAPI encryption.
    GssEncRequest,
    /// A request to cancel the query running on another connection.
    Cancel {
        /// Process id of the target backend.
        pid: u32,
        /// Secret key of the target backend (4 bytes in protocol 3.0).
        secret: u32,
    },
}

impl StartupPacket {
    /// The value of a startup parameter, such as `user` or `database`.
    ///
    /// When a name is repeated the last value wins, as in PostgreSQL.
    /// Always `None` for packets other than `Startup`.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The major protocol version of a `Startup` packet.
    pub fn major(&self) -> Option<u16> {
        match self {
            StartupPacket::Startup { protocol, .. } => Some((protocol >> 16) as u16),
            _ => None,
        }
    }

    /// The minor protocol version of a `Startup` packet.
    pub fn minor(&self) -> Option<u16> {
        match self {
            StartupPacket::Startup { protocol, .. } => Some((protocol & 0xffff) as u16),
            _ => None,
        }
    }
}

/// Splits the next untagged startup packet off `buf` and parses it.
///
/// Follows the rules of [`next_frame`](crate::next_frame): `Ok(None)` while incomplete, the
/// declared length is checked against `min(max_len, 10_000)` before anything is buffered, and a
/// length below 8 is `BadLength` (with tag 0).
/// Anything that is not a well-formed protocol 3.x startup, SSL, GSSENC or cancel request is
/// `BadStartup`, including parameters that are not UTF-8.
/// A complete packet is consumed from `buf` even when it fails to parse.
pub fn next_startup(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<StartupPacket>, WireError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if len < 8 {
        return Err(WireError::BadLength { tag: 0, len });
    }
    let max = max_len.min(MAX_STARTUP_LEN);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(WireError::MessageTooLarge { tag: 0, len, max });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    parse_packet(&packet).map(Some)
}

/// Parses a startup packet body: everything after the length field.
fn parse_packet(body: &[u8]) -> Result<StartupPacket, WireError> {
    let bad = |what| WireError::BadStartup { what };
    let (code, rest) = body.split_first_chunk::<4>().ok_or(bad("too short"))?;
    let code = u32::from_be_bytes(*code);
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            if !rest.is_empty() {
                return Err(bad("encryption request with a body"));
            }
            Ok(if code == SSL_REQUEST_CODE {
                StartupPacket::SslRequest
            } else {
                StartupPacket::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            let keys: &[u8; 8] = rest.try_into().map_err(|_| bad("cancel request length"))?;
            let pid = u32::from_be_bytes([keys[0], keys[1], keys[2], keys[3]]);
            let secret = u32::from_be_bytes([keys[4], keys[5], keys[6], keys[7]]);
            Ok(StartupPacket::Cancel { pid, secret })
        }
        _ if code >> 16 == 1234 => Err(bad("unknown request code")),
        _ if code >> 16 != 3 => Err(bad("unsupported protocol version")),
        _ => Ok(StartupPacket::Startup {
            protocol: code,
            params: parse_params(rest)?,
        }),
    }
}

/// Parses `name\0value\0 ... \0`: pairs of strings closed by an empty name.
fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let bad = |what| WireError::BadStartup { what };
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut rest)?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut rest)?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the parameter list terminator"));
    }
    Ok(params)
}

/// Takes one NUL-terminated UTF-8 string off the front of `rest`.
fn take_cstr<'a>(rest: &mut &'a [u8]) -> Result<&'a str, WireError> {
    let bad = |what| WireError::BadStartup { what };
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(bad("missing NUL terminator"))?;
    let (s, tail) = rest.split_at(nul);
    *rest = &tail[1..];
    std::str::from_utf8(s).map_err(|_| bad("parameter is not valid UTF-8"))
}
