//! Shared helpers: encode into a fresh buffer, frame it, and tables of sample messages.

use bytes::{Bytes, BytesMut};
use pgsplit_wire::backend::{AuthRequest, BackendMessage};
use pgsplit_wire::frontend::FrontendMessage;
use pgsplit_wire::{ErrorFields, Frame, SqlState, encode, next_frame};

/// A limit comfortably above every sample message.
pub(crate) const MAX: usize = 1 << 20;

/// One encoded sample and what parsing it must give.
pub(crate) struct Case<M> {
    pub(crate) name: &'static str,
    pub(crate) bytes: Bytes,
    pub(crate) expected: M,
}

/// Runs an encoder on a fresh buffer.
pub(crate) fn encoded(f: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    f(&mut buf);
    buf.freeze()
}

/// Frames `bytes`, asserting that they hold exactly one whole message.
pub(crate) fn frame(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = next_frame(&mut buf, MAX)
        .expect("frames")
        .expect("is complete");
    assert!(buf.is_empty(), "encoder wrote more than one message");
    frame
}

/// Builds a tagged message from a tag and a raw body, with a correct length field.
pub(crate) fn raw(tag: u8, body: &[u8]) -> Frame {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    Frame::from_bytes(Bytes::from(v))
}

fn case<M>(name: &'static str, f: impl FnOnce(&mut BytesMut), expected: M) -> Case<M> {
    Case {
        name,
        bytes: encoded(f),
        expected,
    }
}

/// Every frontend message type of protocol 3.0 (tagged ones; startup packets are separate).
pub(crate) fn frontend_cases() -> Vec<Case<FrontendMessage<'static>>> {
    use FrontendMessage as F;
    vec![
        case(
            "Query",
            |b| encode::query(b, "SELECT 1"),
            F::Query { sql: "SELECT 1" },
        ),
        case(
            "Query empty",
            |b| encode::query(b, ""),
            F::Query { sql: "" },
        ),
        case(
            "Parse",
            |b| encode::parse(b, "s1", "SELECT $1, $2", &[23, 25]),
            F::Parse {
                name: "s1",
                sql: "SELECT $1, $2",
                param_types: vec![23, 25],
            },
        ),
        case(
            "Parse unnamed, no types",
            |b| encode::parse(b, "", "SELECT now()", &[]),
            F::Parse {
                name: "",
                sql: "SELECT now()",
                param_types: vec![],
            },
        ),
        case(
            "Bind",
            |b| encode::bind(b, "p1", "s1", &[1], &[Some(b"\0\0\0\x07"), None], &[0, 1]),
            F::Bind {
                portal: "p1",
                statement: "s1",
            },
        ),
        case(
            "Describe S",
            |b| encode::describe(b, b'S', "s1"),
            F::Describe {
                kind: b'S',
                name: "s1",
            },
        ),
        case(
            "Describe P",
            |b| encode::describe(b, b'P', ""),
            F::Describe {
                kind: b'P',
                name: "",
            },
        ),
        case(
            "Execute",
            |b| encode::execute(b, "p1", 100),
            F::Execute {
                portal: "p1",
                max_rows: 100,
            },
        ),
        case(
            "Close S",
            |b| encode::close(b, b'S', "s1"),
            F::Close {
                kind: b'S',
                name: "s1",
            },
        ),
        case(
            "Close P",
            |b| encode::close(b, b'P', "p1"),
            F::Close {
                kind: b'P',
                name: "p1",
            },
        ),
        case("Sync", encode::sync, F::Sync),
        case("Flush", encode::flush, F::Flush),
        case("Terminate", encode::terminate, F::Terminate),
        case(
            "CopyData",
            |b| encode::copy_data(b, b"1\t2\n"),
            F::CopyData { data: b"1\t2\n" },
        ),
        case(
            "CopyData empty",
            |b| encode::copy_data(b, b""),
            F::CopyData { data: b"" },
        ),
        case("CopyDone", encode::copy_done, F::CopyDone),
        case(
            "CopyFail",
            |b| encode::copy_fail(b, "abort"),
            F::CopyFail { message: "abort" },
        ),
        case(
            "FunctionCall",
            |b| encode::function_call(b, 1598, &[0], &[Some(b"42"), None], 1),
            F::FunctionCall { oid: 1598 },
        ),
        case(
            "PasswordMessage",
            |b| encode::password(b, "secret"),
            F::Password { body: b"secret\0" },
        ),
        case(
            "SASLInitialResponse",
            |b| encode::sasl_initial_response(b, "SCRAM-SHA-256", b"n,,n=,r=abc"),
            F::Password {
                body: b"SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc",
            },
        ),
        case(
            "SASLResponse",
            |b| encode::sasl_response(b, b"c=biws"),
            F::Password { body: b"c=biws" },
        ),
        case(
            "GSSResponse",
            |b| encode::gss_response(b, b"\x60\x01"),
            F::Password { body: b"\x60\x01" },
        ),
    ]
}

/// Every backend message type of protocol 3.0.
pub(crate) fn backend_cases() -> Vec<Case<BackendMessage<'static>>> {
    use AuthRequest as A;
    use BackendMessage as B;
    let error = ErrorFields::error(SqlState::SYNTAX_ERROR, "syntax error at or near \"x\"")
        .with_hint("check the SQL");
    let notice = ErrorFields::notice(SqlState::SUCCESSFUL_COMPLETION, "relation exists")
        .with_detail("skipping");
    let (error2, notice2) = (error.clone(), notice.clone());
    vec![
        case(
            "AuthenticationOk",
            encode::auth_ok,
            B::Authentication(A::Ok),
        ),
        case(
            "AuthenticationCleartextPassword",
            encode::auth_cleartext,
            B::Authentication(A::CleartextPassword),
        ),
        case(
            "AuthenticationMD5Password",
            |b| encode::auth_md5(b, [1, 2, 3, 4]),
            B::Authentication(A::Md5Password { salt: [1, 2, 3, 4] }),
        ),
        case(
            "AuthenticationSASL",
            |b| encode::auth_sasl(b, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
            B::Authentication(A::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            }),
        ),
        case(
            "AuthenticationSASLContinue",
            |b| encode::auth_sasl_continue(b, b"r=abc,s=c2FsdA==,i=4096"),
            B::Authentication(A::SaslContinue {
                data: b"r=abc,s=c2FsdA==,i=4096",
            }),
        ),
        case(
            "AuthenticationSASLFinal",
            |b| encode::auth_sasl_final(b, b"v=abc"),
            B::Authentication(A::SaslFinal { data: b"v=abc" }),
        ),
        case(
            "AuthenticationKerberosV5",
            |b| encode::auth_other(b, 2, &[]),
            B::Authentication(A::Other { code: 2 }),
        ),
        case(
            "AuthenticationSCMCredential",
            |b| encode::auth_other(b, 6, &[]),
            B::Authentication(A::Other { code: 6 }),
        ),
        case(
            "AuthenticationGSS",
            |b| encode::auth_other(b, 7, &[]),
            B::Authentication(A::Other { code: 7 }),
        ),
        case(
            "AuthenticationGSSContinue",
            |b| encode::auth_other(b, 8, b"token"),
            B::Authentication(A::Other { code: 8 }),
        ),
        case(
            "AuthenticationSSPI",
            |b| encode::auth_other(b, 9, &[]),
            B::Authentication(A::Other { code: 9 }),
        ),
        case(
            "BackendKeyData",
            |b| encode::backend_key_data(b, 4242, 0xdead_beef),
            B::BackendKeyData {
                pid: 4242,
                secret: 0xdead_beef,
            },
        ),
        case("BindComplete", encode::bind_complete, B::BindComplete),
        case("CloseComplete", encode::close_complete, B::CloseComplete),
        case("ParseComplete", encode::parse_complete, B::ParseComplete),
        case("NoData", encode::no_data, B::NoData),
        case(
            "PortalSuspended",
            encode::portal_suspended,
            B::PortalSuspended,
        ),
        case(
            "EmptyQueryResponse",
            encode::empty_query_response,
            B::EmptyQueryResponse,
        ),
        case("CopyDone", encode::copy_done, B::CopyDone),
        case(
            "CommandComplete",
            |b| encode::command_complete(b, "INSERT 0 1"),
            B::CommandComplete { tag: "INSERT 0 1" },
        ),
        case(
            "CopyData",
            |b| encode::copy_data(b, b"row\n"),
            B::CopyData { data: b"row\n" },
        ),
        case(
            "CopyInResponse",
            |b| encode::copy_in_response(b, 0, &[0, 0]),
            B::CopyInResponse {
                format: 0,
                columns: vec![0, 0],
            },
        ),
        case(
            "CopyOutResponse",
            |b| encode::copy_out_response(b, 1, &[1]),
            B::CopyOutResponse {
                format: 1,
                columns: vec![1],
            },
        ),
        case(
            "CopyBothResponse",
            |b| encode::copy_both_response(b, 0, &[]),
            B::CopyBothResponse {
                format: 0,
                columns: vec![],
            },
        ),
        case(
            "DataRow",
            |b| encode::data_row(b, &[Some(b"1"), None, Some(b"")]),
            B::DataRow { columns: 3 },
        ),
        case(
            "DataRow empty",
            |b| encode::data_row(b, &[]),
            B::DataRow { columns: 0 },
        ),
        case(
            "ErrorResponse",
            move |b| encode::error_response(b, &error),
            B::ErrorResponse(error2),
        ),
        case(
            "NoticeResponse",
            move |b| encode::notice_response(b, &notice),
            B::NoticeResponse(notice2),
        ),
        case(
            "FunctionCallResponse",
            |b| encode::function_call_response(b, Some(b"42")),
            B::FunctionCallResponse { value: Some(b"42") },
        ),
        case(
            "FunctionCallResponse NULL",
            |b| encode::function_call_response(b, None),
            B::FunctionCallResponse { value: None },
        ),
        case(
            "NegotiateProtocolVersion",
            |b| encode::negotiate_protocol_version(b, 0, &["_pq_.foo", "_pq_.bar"]),
            B::NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized: vec!["_pq_.foo", "_pq_.bar"],
            },
        ),
        case(
            "NotificationResponse",
            |b| encode::notification_response(b, 77, "jobs", "{\"id\":1}"),
            B::NotificationResponse {
                pid: 77,
                channel: "jobs",
                payload: "{\"id\":1}",
            },
        ),
        case(
            "ParameterDescription",
            |b| encode::parameter_description(b, &[23, 1043]),
            B::ParameterDescription {
                types: vec![23, 1043],
            },
        ),
        case(
            "ParameterStatus",
            |b| encode::parameter_status(b, "server_version", "15.8"),
            B::ParameterStatus {
                name: "server_version",
                value: "15.8",
            },
        ),
        case(
            "ReadyForQuery I",
            |b| encode::ready_for_query(b, b'I'),
            B::ReadyForQuery { status: b'I' },
        ),
        case(
            "ReadyForQuery T",
            |b| encode::ready_for_query(b, b'T'),
            B::ReadyForQuery { status: b'T' },
        ),
        case(
            "ReadyForQuery E",
            |b| encode::ready_for_query(b, b'E'),
            B::ReadyForQuery { status: b'E' },
        ),
        case(
            "RowDescription",
            |b| encode::row_description(b, &[("id", 23), ("name", 25)]),
            B::RowDescription { fields: 2 },
        ),
    ]
}
