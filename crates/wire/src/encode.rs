//! Encoders: each function appends one whole message (header included) to a `BytesMut`.
//!
//! Strings are written up to their first NUL byte, because the protocol cannot carry one
//! inside a string and a truncated value is safer than a misaligned message.
//! Lists longer than the protocol's `Int16` counts allow are cut at 32767 entries, and values
//! must stay below 1 GiB (PostgreSQL's own limit), so every encoded frame stays well-formed.

use bytes::{BufMut, BytesMut};

use crate::ErrorFields;
use crate::backend::{FieldDescription, auth_codes, tags as be};
use crate::frontend::tags as fe;
use crate::startup::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE};

/// Largest count an `Int16` list header can hold.
const MAX_COUNT: usize = i16::MAX as usize;

/// Writes a tagged message: `tag`, a length patched in afterwards, and what `body` writes.
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_u32(0);
    body(buf);
    patch_len(buf, start + 1);
}

/// Writes an untagged (startup) packet whose length field comes first.
fn packet(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    body(buf);
    patch_len(buf, start);
}

/// Stores the length from `at` to the end of `buf` in the four bytes at `at`.
fn patch_len(buf: &mut BytesMut, at: usize) {
    let len = u32::try_from(buf.len() - at).unwrap_or(u32::MAX);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes `s` up to its first NUL, then a NUL.
fn put_cstr(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    buf.put_slice(&bytes[..end]);
    buf.put_u8(0);
}

/// The first 32767 entries of `items` and their count as an `Int16`.
fn capped<T>(items: &[T]) -> (&[T], i16) {
    let items = &items[..items.len().min(MAX_COUNT)];
    (items, i16::try_from(items.len()).unwrap_or(i16::MAX))
}

/// A byte length as an `Int32`, saturating (callers keep values below 1 GiB).
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// Writes an `Int16` count and the format codes.
fn put_formats(buf: &mut BytesMut, formats: &[i16]) {
    let (formats, n) = capped(formats);
    buf.put_i16(n);
    for &f in formats {
        buf.put_i16(f);
    }
}

/// Writes one length-prefixed value, -1 for NULL.
fn put_value(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            buf.put_i32(len_i32(v.len()));
            buf.put_slice(v);
        }
        None => buf.put_i32(-1),
    }
}

/// Writes an `Int16` count and the values.
fn put_values(buf: &mut BytesMut, values: &[Option<&[u8]>]) {
    let (values, n) = capped(values);
    buf.put_i16(n);
    for &v in values {
        put_value(buf, v);
    }
}

// ---------------------------------------------------------------------------------------------
// Frontend side: pgsplit as a client of a server.
// ---------------------------------------------------------------------------------------------

/// StartupMessage for protocol 3.0 with the given parameters (`user` is required by servers).
pub fn startup(buf: &mut BytesMut, params: &[(&str, &str)]) {
    startup_with_protocol(buf, PROTOCOL_3_0, params);
}

/// StartupMessage with an explicit protocol version (`major << 16 | minor`).
pub fn startup_with_protocol(buf: &mut BytesMut, protocol: u32, params: &[(&str, &str)]) {
    packet(buf, |buf| {
        buf.put_u32(protocol);
        for (name, value) in params {
            put_cstr(buf, name);
            put_cstr(buf, value);
        }
        buf.put_u8(0);
    });
}

/// SSLRequest.
pub fn ssl_request(buf: &mut BytesMut) {
    packet(buf, |buf| buf.put_u32(SSL_REQUEST_CODE));
}

/// GSSENCRequest.
pub fn gssenc_request(buf: &mut BytesMut) {
    packet(buf, |buf| buf.put_u32(GSSENC_REQUEST_CODE));
}

/// CancelRequest for the backend with this process id and secret key.
pub fn cancel_request(buf: &mut BytesMut, pid: u32, secret: u32) {
    packet(buf, |buf| {
        buf.put_u32(CANCEL_REQUEST_CODE);
        buf.put_u32(pid);
        buf.put_u32(secret);
    });
}

/// PasswordMessage: a cleartext password or an `md5...` response.
pub fn password(buf: &mut BytesMut, password: &str) {
    message(buf, fe::PASSWORD, |buf| put_cstr(buf, password));
}

/// SASLInitialResponse with the chosen mechanism and the client-first data.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    message(buf, fe::PASSWORD, |buf| {
        put_cstr(buf, mechanism);
        put_value(buf, Some(data));
    });
}

/// SASLResponse carrying raw mechanism data.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    message(buf, fe::PASSWORD, |buf| buf.put_slice(data));
}

/// GSSResponse carrying raw GSSAPI or SSPI data (same layout as SASLResponse).
pub fn gss_response(buf: &mut BytesMut, data: &[u8]) {
    sasl_response(buf, data);
}

/// Query (simple protocol).
pub fn query(buf: &mut BytesMut, sql: &str) {
    message(buf, fe::QUERY, |buf| put_cstr(buf, sql));
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    message(buf, fe::SYNC, |_| ());
}

/// Flush.
pub fn flush(buf: &mut BytesMut) {
    message(buf, fe::FLUSH, |_| ());
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    message(buf, fe::TERMINATE, |_| ());
}

/// Parse: prepare `sql` as statement `name` (empty for the unnamed statement).
pub fn parse(buf: &mut BytesMut, name: &str, sql: &str, param_types: &[u32]) {
    message(buf, fe::PARSE, |buf| {
        put_cstr(buf, name);
        put_cstr(buf, sql);
        let (types, n) = capped(param_types);
        buf.put_i16(n);
        for &t in types {
            buf.put_u32(t);
        }
    });
}

/// Bind: create `portal` from `statement` with parameter values (`None` is NULL).
pub fn bind(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) {
    message(buf, fe::BIND, |buf| {
        put_cstr(buf, portal);
        put_cstr(buf, statement);
        put_formats(buf, param_formats);
        put_values(buf, params);
        put_formats(buf, result_formats);
    });
}

/// Describe a statement (`kind` `b'S'`) or portal (`kind` `b'P'`).
pub fn describe(buf: &mut BytesMut, kind: u8, name: &str) {
    message(buf, fe::DESCRIBE, |buf| {
        buf.put_u8(kind);
        put_cstr(buf, name);
    });
}

/// Execute `portal`, returning at most `max_rows` rows (0 for all).
pub fn execute(buf: &mut BytesMut, portal: &str, max_rows: u32) {
    message(buf, fe::EXECUTE, |buf| {
        put_cstr(buf, portal);
        buf.put_u32(max_rows);
    });
}

/// Close a statement (`kind` `b'S'`) or portal (`kind` `b'P'`).
pub fn close(buf: &mut BytesMut, kind: u8, name: &str) {
    message(buf, fe::CLOSE, |buf| {
        buf.put_u8(kind);
        put_cstr(buf, name);
    });
}

/// CopyData (the same message in both directions).
pub fn copy_data(buf: &mut BytesMut, data: &[u8]) {
    message(buf, fe::COPY_DATA, |buf| buf.put_slice(data));
}

/// CopyDone (the same message in both directions).
pub fn copy_done(buf: &mut BytesMut) {
    message(buf, fe::COPY_DONE, |_| ());
}

/// CopyFail with the client's reason.
pub fn copy_fail(buf: &mut BytesMut, msg: &str) {
    message(buf, fe::COPY_FAIL, |buf| put_cstr(buf, msg));
}

/// FunctionCall (fast path) of function `oid` with arguments (`None` is NULL).
pub fn function_call(
    buf: &mut BytesMut,
    oid: u32,
    arg_formats: &[i16],
    args: &[Option<&[u8]>],
    result_format: i16,
) {
    message(buf, fe::FUNCTION_CALL, |buf| {
        buf.put_u32(oid);
        put_formats(buf, arg_formats);
        put_values(buf, args);
        buf.put_i16(result_format);
    });
}

// ---------------------------------------------------------------------------------------------
// Backend side: pgsplit as a server to clients.
// ---------------------------------------------------------------------------------------------

/// An Authentication message with `code` and extra data.
fn auth(buf: &mut BytesMut, code: u32, data: &[u8]) {
    message(buf, be::AUTHENTICATION, |buf| {
        buf.put_u32(code);
        buf.put_slice(data);
    });
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    auth(buf, auth_codes::OK, &[]);
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext(buf: &mut BytesMut) {
    auth(buf, auth_codes::CLEARTEXT_PASSWORD, &[]);
}

/// AuthenticationMD5Password with this salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    auth(buf, auth_codes::MD5_PASSWORD, &salt);
}

/// AuthenticationSASL offering these mechanisms.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, be::AUTHENTICATION, |buf| {
        buf.put_u32(auth_codes::SASL);
        for m in mechanisms {
            put_cstr(buf, m);
        }
        buf.put_u8(0);
    });
}

/// AuthenticationSASLContinue with a challenge.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_codes::SASL_CONTINUE, data);
}

/// AuthenticationSASLFinal with the outcome data.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_codes::SASL_FINAL, data);
}

/// Any other Authentication request (KerberosV5, SCMCredential, GSS, GSSContinue, SSPI) with
/// its raw data.
pub fn auth_other(buf: &mut BytesMut, code: u32, data: &[u8]) {
    auth(buf, code, data);
}

/// BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: u32, secret: u32) {
    message(buf, be::BACKEND_KEY_DATA, |buf| {
        buf.put_u32(pid);
        buf.put_u32(secret);
    });
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, be::PARAMETER_STATUS, |buf| {
        put_cstr(buf, name);
        put_cstr(buf, value);
    });
}

/// ReadyForQuery with transaction status `b'I'`, `b'T'` or `b'E'`.
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, be::READY_FOR_QUERY, |buf| buf.put_u8(status));
}

/// Writes error or notice fields: `S`, `C`, `M`, `D`, `H`, then the others in order.
fn put_fields(buf: &mut BytesMut, fields: &ErrorFields) {
    let named = [
        (b'S', Some(fields.severity.as_str())),
        (b'C', Some(fields.code.as_str())),
        (b'M', Some(fields.message.as_str())),
        (b'D', fields.detail.as_deref()),
        (b'H', fields.hint.as_deref()),
    ];
    let others = fields.other.iter().map(|(k, v)| (*k, Some(v.as_str())));
    for (kind, value) in named.into_iter().chain(others) {
        // A zero type byte would end the list early, so such a field cannot be sent.
        match value {
            Some(value) if kind != 0 => {
                buf.put_u8(kind);
                put_cstr(buf, value);
            }
            _ => {}
        }
    }
    buf.put_u8(0);
}

/// ErrorResponse.
pub fn error_response(buf: &mut BytesMut, fields: &ErrorFields) {
    message(buf, be::ERROR, |buf| put_fields(buf, fields));
}

/// NoticeResponse.
pub fn notice_response(buf: &mut BytesMut, fields: &ErrorFields) {
    message(buf, be::NOTICE, |buf| put_fields(buf, fields));
}

/// CommandComplete with a command tag such as `SELECT 1`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    message(buf, be::COMMAND_COMPLETE, |buf| put_cstr(buf, tag));
}

/// EmptyQueryResponse.
pub fn empty_query_response(buf: &mut BytesMut) {
    message(buf, be::EMPTY_QUERY, |_| ());
}

/// RowDescription of text-format columns given as (name, type OID); table OID 0, attribute 0,
/// type length -1 and type modifier -1.
pub fn row_description(buf: &mut BytesMut, columns: &[(&str, u32)]) {
    let (columns, n) = capped(columns);
    message(buf, be::ROW_DESCRIPTION, |buf| {
        buf.put_i16(n);
        for &(name, type_oid) in columns {
            put_field(buf, &text_field(name, type_oid));
        }
    });
}

/// RowDescription with every attribute of every field given.
pub fn row_description_fields(buf: &mut BytesMut, fields: &[FieldDescription<'_>]) {
    let (fields, n) = capped(fields);
    message(buf, be::ROW_DESCRIPTION, |buf| {
        buf.put_i16(n);
        for field in fields {
            put_field(buf, field);
        }
    });
}

/// The field description [`row_description`] writes for a text column.
fn text_field(name: &str, type_oid: u32) -> FieldDescription<'_> {
    FieldDescription {
        name,
        table_oid: 0,
        column: 0,
        type_oid,
        type_len: -1,
        type_modifier: -1,
        format: 0,
    }
}

fn put_field(buf: &mut BytesMut, f: &FieldDescription<'_>) {
    put_cstr(buf, f.name);
    buf.put_u32(f.table_oid);
    buf.put_i16(f.column);
    buf.put_u32(f.type_oid);
    buf.put_i16(f.type_len);
    buf.put_i32(f.type_modifier);
    buf.put_i16(f.format);
}

/// DataRow (`None` is NULL).
pub fn data_row(buf: &mut BytesMut, values: &[Option<&[u8]>]) {
    message(buf, be::DATA_ROW, |buf| put_values(buf, values));
}

/// NegotiateProtocolVersion: the newest supported minor version and unrecognized options.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: u32, unrecognized: &[&str]) {
    message(buf, be::NEGOTIATE_PROTOCOL, |buf| {
        buf.put_u32(newest_minor);
        buf.put_u32(u32::try_from(unrecognized.len()).unwrap_or(u32::MAX));
        for option in unrecognized {
            put_cstr(buf, option);
        }
    });
}

/// NotificationResponse from backend `pid` on `channel`.
pub fn notification_response(buf: &mut BytesMut, pid: u32, channel: &str, payload: &str) {
    message(buf, be::NOTIFICATION, |buf| {
        buf.put_u32(pid);
        put_cstr(buf, channel);
        put_cstr(buf, payload);
    });
}

/// ParseComplete.
pub fn parse_complete(buf: &mut BytesMut) {
    message(buf, be::PARSE_COMPLETE, |_| ());
}

/// BindComplete.
pub fn bind_complete(buf: &mut BytesMut) {
    message(buf, be::BIND_COMPLETE, |_| ());
}

/// CloseComplete.
pub fn close_complete(buf: &mut BytesMut) {
    message(buf, be::CLOSE_COMPLETE, |_| ());
}

/// NoData.
pub fn no_data(buf: &mut BytesMut) {
    message(buf, be::NO_DATA, |_| ());
}

/// PortalSuspended.
pub fn portal_suspended(buf: &mut BytesMut) {
    message(buf, be::PORTAL_SUSPENDED, |_| ());
}

/// ParameterDescription with the parameter type OIDs.
pub fn parameter_description(buf: &mut BytesMut, types: &[u32]) {
    let (types, n) = capped(types);
    message(buf, be::PARAMETER_DESCRIPTION, |buf| {
        buf.put_i16(n);
        for &t in types {
            buf.put_u32(t);
        }
    });
}

/// Body shared by the three copy responses.
fn copy_response(buf: &mut BytesMut, tag: u8, format: u8, columns: &[u16]) {
    let (columns, n) = capped(columns);
    message(buf, tag, |buf| {
        buf.put_u8(format);
        buf.put_i16(n);
        for &c in columns {
            buf.put_u16(c);
        }
    });
}

/// CopyInResponse: overall format (0 text, 1 binary) and per-column formats.
pub fn copy_in_response(buf: &mut BytesMut, format: u8, columns: &[u16]) {
    copy_response(buf, be::COPY_IN, format, columns);
}

/// CopyOutResponse: overall format (0 text, 1 binary) and per-column formats.
pub fn copy_out_response(buf: &mut BytesMut, format: u8, columns: &[u16]) {
    copy_response(buf, be::COPY_OUT, format, columns);
}

/// CopyBothResponse: overall format (0 text, 1 binary) and per-column formats.
pub fn copy_both_response(buf: &mut BytesMut, format: u8, columns: &[u16]) {
    copy_response(buf, be::COPY_BOTH, format, columns);
}

/// FunctionCallResponse (`None` is NULL).
pub fn function_call_response(buf: &mut BytesMut, value: Option<&[u8]>) {
    message(buf, be::FUNCTION_CALL_RESPONSE, |buf| put_value(buf, value));
}

/// The single-byte answer to SSLRequest: `S` to proceed with TLS, `N` to continue in clear.
/// It has no header.
pub fn ssl_response(buf: &mut BytesMut, accept: bool) {
    buf.put_u8(if accept { b'S' } else { b'N' });
}

/// The single-byte answer to GSSENCRequest: `G` to proceed with GSSAPI encryption, `N` to
/// continue in clear. It has no header.
pub fn gssenc_response(buf: &mut BytesMut, accept: bool) {
    buf.put_u8(if accept { b'G' } else { b'N' });
}
