//! Backend messages: every type round-trips through its encoder; hot-path peeks work.

use pgsplit_wire::backend::{
    self, BackendMessage, FieldDescription, parse_data_row, parse_row_description, ready_status,
};
use pgsplit_wire::{ErrorFields, SqlState, encode};

use crate::support::{backend_cases, encoded, frame, raw};

#[test]
fn every_message_type_round_trips() {
    let cases = backend_cases();
    assert!(cases.len() >= 35);
    for case in cases {
        let frame = frame(&case.bytes);
        assert_eq!(backend::parse(&frame), Ok(case.expected), "{}", case.name);
    }
}

#[test]
fn row_description_fields_round_trip() {
    let f = frame(&encoded(|b| {
        encode::row_description(b, &[("id", 23), ("note", 25)])
    }));
    let fields = parse_row_description(f.body()).unwrap();
    let text = |name, type_oid| FieldDescription {
        name,
        table_oid: 0,
        column: 0,
        type_oid,
        type_len: -1,
        type_modifier: -1,
        format: 0,
    };
    assert_eq!(fields, vec![text("id", 23), text("note", 25)]);

    let full = [FieldDescription {
        name: "balance",
        table_oid: 16384,
        column: 3,
        type_oid: 1700,
        type_len: -1,
        type_modifier: 655366,
        format: 1,
    }];
    let f = frame(&encoded(|b| encode::row_description_fields(b, &full)));
    assert_eq!(parse_row_description(f.body()), Ok(full.to_vec()));
    assert_eq!(
        backend::parse(&f),
        Ok(BackendMessage::RowDescription { fields: 1 })
    );
}

#[test]
fn data_row_values_round_trip() {
    let values: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b""), Some(b"\0\x01")];
    let f = frame(&encoded(|b| encode::data_row(b, &values)));
    assert_eq!(parse_data_row(f.body()), Ok(values.to_vec()));
}

#[test]
fn ready_status_peeks_without_parsing() {
    for status in [b'I', b'T', b'E'] {
        assert_eq!(
            ready_status(&frame(&encoded(|b| encode::ready_for_query(b, status)))),
            Some(status)
        );
    }
    assert_eq!(ready_status(&raw(b'Z', b"")), None);
    assert_eq!(ready_status(&raw(b'Z', b"II")), None);
    assert_eq!(ready_status(&raw(b'C', b"I")), None);
    assert!(backend::parse(&raw(b'Z', b"X")).is_err());
}

#[test]
fn error_code_scans_for_the_sqlstate() {
    let code_of = |fields: &ErrorFields| {
        backend::error_code(&frame(&encoded(|b| encode::error_response(b, fields))))
    };
    let known = ErrorFields::fatal(SqlState::ADMIN_SHUTDOWN, "terminating connection");
    assert_eq!(code_of(&known), Some(SqlState::ADMIN_SHUTDOWN));
    // Codes outside the table fall back to their class.
    let custom = ErrorFields {
        code: "40X99".into(),
        ..known.clone()
    };
    assert_eq!(code_of(&custom), Some(SqlState::TRANSACTION_ROLLBACK));
    let unknown_class = ErrorFields {
        code: "U0001".into(),
        ..known.clone()
    };
    assert_eq!(code_of(&unknown_class), None);
    // Only ErrorResponse frames, and only well-formed fields.
    let notice = frame(&encoded(|b| encode::notice_response(b, &known)));
    assert_eq!(backend::error_code(&notice), None);
    assert_eq!(backend::error_code(&raw(b'E', b"SERROR\0C57P0")), None);
    assert_eq!(backend::error_code(&raw(b'E', b"SERROR\0\0C57P01\0")), None);
    assert_eq!(backend::error_code(&raw(b'E', b"")), None);
}

#[test]
fn encryption_answers_are_single_bytes() {
    assert_eq!(&encoded(|b| encode::ssl_response(b, true))[..], b"S");
    assert_eq!(&encoded(|b| encode::ssl_response(b, false))[..], b"N");
    assert_eq!(&encoded(|b| encode::gssenc_response(b, true))[..], b"G");
    assert_eq!(&encoded(|b| encode::gssenc_response(b, false))[..], b"N");
}

#[test]
fn error_fields_survive_a_round_trip() {
    let mut fields = ErrorFields::error(SqlState::UNIQUE_VIOLATION, "duplicate key")
        .with_detail("Key (id)=(1) already exists.")
        .with_hint("");
    fields.other.extend([
        (b'n', "t_pkey".to_string()),
        (b'F', "nbtinsert.c".to_string()),
    ]);
    let f = frame(&encoded(|b| encode::error_response(b, &fields)));
    assert_eq!(
        backend::parse(&f),
        Ok(BackendMessage::ErrorResponse(fields))
    );
}
