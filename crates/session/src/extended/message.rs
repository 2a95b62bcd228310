//! Message layouts the mapping needs beneath the wire crate's views: names split off raw client
//! messages, messages rebuilt around the client's original bytes, and a re-spelled
//! ErrorResponse.
//!
//! Names are split off the raw bytes rather than through `frontend::parse`: that view needs
//! UTF-8, but names and SQL are in the client's encoding, and renaming must copy the rest of a
//! message byte for byte anyway.

use bytes::{BufMut, Bytes, BytesMut};
use pgsplit_wire::backend::tags as be;
use pgsplit_wire::frame::HEADER_LEN;
use pgsplit_wire::frontend::tags as fe;
use pgsplit_wire::{Frame, WireError};

/// Writes a message header for a body of `body_len` bytes.
pub(super) fn put_header(buf: &mut BytesMut, tag: u8, body_len: usize) {
    buf.put_u8(tag);
    // Bodies come from messages that passed the size limit, so this cannot saturate.
    buf.put_u32(u32::try_from(body_len + 4).unwrap_or(u32::MAX));
}

/// A whole message whose body is `parts`, concatenated.
pub(super) fn message(tag: u8, parts: &[&[u8]]) -> Bytes {
    let body_len = parts.iter().map(|p| p.len()).sum();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body_len);
    put_header(&mut buf, tag, body_len);
    parts.iter().for_each(|part| buf.put_slice(part));
    buf.freeze()
}

/// Splits a NUL-terminated string off the front of `bytes`.
pub(super) fn cstr<'a>(
    tag: u8,
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), WireError> {
    match bytes.iter().position(|&b| b == 0) {
        Some(nul) => Ok((&bytes[..nul], &bytes[nul + 1..])),
        None => Err(WireError::Malformed { tag, what }),
    }
}

/// A Parse body as (statement name, definition): the definition is the rest of the body (SQL
/// text and parameter types), checked to be well formed.
pub(super) fn split_parse(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let bad = |what| WireError::Malformed {
        tag: fe::PARSE,
        what,
    };
    let (name, definition) = cstr(fe::PARSE, body, "missing statement name terminator")?;
    let (_sql, types) = cstr(fe::PARSE, definition, "missing query terminator")?;
    let Some((count, oids)) = types.split_first_chunk::<2>() else {
        return Err(bad("missing parameter type count"));
    };
    let count = usize::try_from(i16::from_be_bytes(*count));
    if count.map_or(true, |n| oids.len() != n * 4) {
        return Err(bad("parameter type count does not match the body"));
    }
    Ok((name, definition))
}

/// The parts of a Bind body a rename needs.
pub(super) struct BindParts<'a> {
    /// Portal name, without its NUL.
    pub(super) portal: &'a [u8],
    /// Statement name, without its NUL.
    pub(super) statement: &'a [u8],
    /// Everything after the statement name (formats, values, result formats), kept raw.
    pub(super) params: &'a [u8],
}

/// Splits a Bind body after its two names.
pub(super) fn split_bind(body: &[u8]) -> Result<BindParts<'_>, WireError> {
    let (portal, rest) = cstr(fe::BIND, body, "missing portal name terminator")?;
    let (statement, params) = cstr(fe::BIND, rest, "missing statement name terminator")?;
    Ok(BindParts {
        portal,
        statement,
        params,
    })
}

/// A Describe or Close body as (kind `S` or `P`, name).
pub(super) fn split_target(tag: u8, body: &[u8]) -> Result<(u8, &[u8]), WireError> {
    let bad = |what| WireError::Malformed { tag, what };
    let Some((&kind, rest)) = body.split_first() else {
        return Err(bad("missing statement or portal kind"));
    };
    if kind != b'S' && kind != b'P' {
        return Err(bad("kind is neither 'S' nor 'P'"));
    }
    match cstr(tag, rest, "missing name terminator")? {
        (name, []) => Ok((kind, name)),
        _ => Err(bad("trailing bytes after the name")),
    }
}

/// The ErrorResponse `frame` with `from` replaced by `to` in its message field, every other
/// field kept in order; `None` if the body is malformed or the message does not name `from`.
pub(super) fn respell_error(frame: &Frame, from: &[u8], to: &[u8]) -> Option<Bytes> {
    if from.is_empty() {
        return None;
    }
    let mut body = BytesMut::with_capacity(frame.len() + to.len());
    let mut rest = frame.body();
    let mut changed = false;
    loop {
        let (&kind, tail) = rest.split_first()?;
        body.put_u8(kind);
        if kind == 0 {
            return (changed && tail.is_empty()).then(|| message(be::ERROR, &[&body]));
        }
        let nul = tail.iter().position(|&b| b == 0)?;
        let mut value = &tail[..nul];
        if kind == b'M' {
            while let Some(at) = value.windows(from.len()).position(|w| w == from) {
                body.put_slice(&value[..at]);
                body.put_slice(to);
                value = &value[at + from.len()..];
                changed = true;
            }
        }
        body.put_slice(value);
        body.put_u8(0);
        rest = &tail[nul + 1..];
    }
}
