//! Frontend messages: every type round-trips through its encoder; full Bind/FunctionCall/auth
//! bodies decode.

use pgsplit_wire::frontend::{
    self, BindMessage, FrontendMessage, FunctionCallMessage, parse_bind, parse_function_call,
    parse_password, parse_sasl_initial, tags,
};
use pgsplit_wire::{WireError, encode};

use crate::support::{encoded, frame, frontend_cases, raw};

#[test]
fn every_message_type_round_trips() {
    let cases = frontend_cases();
    assert!(cases.len() >= 20);
    for case in cases {
        let frame = frame(&case.bytes);
        assert_eq!(frontend::parse(&frame), Ok(case.expected), "{}", case.name);
    }
}

#[test]
fn bind_decodes_fully() {
    let frame = frame(&encoded(|b| {
        encode::bind(
            b,
            "p",
            "s",
            &[1, 0],
            &[Some(b"\x01"), None, Some(b"")],
            &[1],
        )
    }));
    assert_eq!(
        parse_bind(frame.body()),
        Ok(BindMessage {
            portal: "p",
            statement: "s",
            param_formats: vec![1, 0],
            params: vec![Some(b"\x01"), None, Some(b"")],
            result_formats: vec![1],
        })
    );
}

#[test]
fn function_call_decodes_fully() {
    let frame = frame(&encoded(|b| {
        encode::function_call(b, 42, &[1], &[None, Some(b"ab")], 0)
    }));
    assert_eq!(
        parse_function_call(frame.body()),
        Ok(FunctionCallMessage {
            oid: 42,
            arg_formats: vec![1],
            args: vec![None, Some(b"ab")],
            result_format: 0,
        })
    );
}

#[test]
fn password_bodies_decode() {
    let f = frame(&encoded(|b| encode::password(b, "md5abc")));
    assert_eq!(parse_password(f.body()), Ok("md5abc"));
    let f = frame(&encoded(|b| {
        encode::sasl_initial_response(b, "SCRAM-SHA-256", b"n,,n=,r=x")
    }));
    assert_eq!(
        parse_sasl_initial(f.body()),
        Ok(("SCRAM-SHA-256", Some(&b"n,,n=,r=x"[..])))
    );
    // A length of -1 means "no initial response".
    assert_eq!(parse_sasl_initial(b"M\0\xff\xff\xff\xff"), Ok(("M", None)));
    let malformed = |what| WireError::Malformed {
        tag: tags::PASSWORD,
        what,
    };
    assert_eq!(
        parse_password(b"pw"),
        Err(malformed("missing NUL terminator"))
    );
    assert_eq!(
        parse_password(b"pw\0x"),
        Err(malformed("trailing bytes after the last field"))
    );
    let short = parse_sasl_initial(b"M\0\0\0\0\x05abc");
    assert_eq!(short, Err(malformed("initial response length")));
    let negative = parse_sasl_initial(b"M\0\xff\xff\xff\xfe");
    assert_eq!(negative, Err(malformed("initial response length")));
}

#[test]
fn encoders_cut_strings_at_nul() {
    let f = frame(&encoded(|b| encode::query(b, "SELECT 1\0; DROP TABLE t")));
    assert_eq!(
        frontend::parse(&f),
        Ok(FrontendMessage::Query { sql: "SELECT 1" })
    );
}

#[test]
fn describe_and_close_need_a_known_kind() {
    for tag in [tags::DESCRIBE, tags::CLOSE] {
        assert_eq!(
            frontend::parse(&raw(tag, b"Xname\0")),
            Err(WireError::Malformed {
                tag,
                what: "kind is neither 'S' nor 'P'"
            })
        );
        assert!(frontend::parse(&raw(tag, b"")).is_err());
    }
}

#[test]
fn bind_body_is_not_validated_by_parse() {
    // The relay forwards Bind raw; only parse_bind looks past the names.
    let f = raw(tags::BIND, b"p\0s\0garbage");
    assert_eq!(
        frontend::parse(&f),
        Ok(FrontendMessage::Bind {
            portal: "p",
            statement: "s"
        })
    );
    assert!(parse_bind(f.body()).is_err());
}
