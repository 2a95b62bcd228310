//! ErrorFields: builders, and parsing the shape PostgreSQL actually sends.

use pgsplit_wire::backend::{self, BackendMessage};
use pgsplit_wire::{ErrorFields, SqlState, encode};

use crate::support::{encoded, frame, raw};

#[test]
fn builders_set_both_severities() {
    let table = [
        (
            ErrorFields::error(SqlState::SYNTAX_ERROR, "m"),
            "ERROR",
            "42601",
        ),
        (
            ErrorFields::fatal(SqlState::INVALID_PASSWORD, "m"),
            "FATAL",
            "28P01",
        ),
        (
            ErrorFields::notice(SqlState::SUCCESSFUL_COMPLETION, "m"),
            "NOTICE",
            "00000",
        ),
    ];
    for (fields, severity, code) in table {
        assert_eq!(fields.severity, severity);
        assert_eq!(fields.other, vec![(b'V', severity.to_string())]);
        assert_eq!(fields.sqlstate(), code);
        assert_eq!(
            (fields.detail.as_deref(), fields.hint.as_deref()),
            (None, None)
        );
    }
    let f = ErrorFields::error(SqlState::SYNTAX_ERROR, "m")
        .with_detail("d")
        .with_hint("h");
    assert_eq!(
        (f.detail.as_deref(), f.hint.as_deref()),
        (Some("d"), Some("h"))
    );
}

#[test]
fn parses_a_postgresql_error() {
    // The field order PostgreSQL 15 uses for `SELECT 1/0`.
    let body = b"SERROR\0VERROR\0C22012\0Mdivision by zero\0Fint.c\0L841\0Rint4div\0\0";
    let expected = ErrorFields {
        severity: "ERROR".into(),
        code: "22012".into(),
        message: "division by zero".into(),
        detail: None,
        hint: None,
        other: vec![
            (b'V', "ERROR".into()),
            (b'F', "int.c".into()),
            (b'L', "841".into()),
            (b'R', "int4div".into()),
        ],
    };
    assert_eq!(
        backend::parse(&raw(b'E', body)),
        Ok(BackendMessage::ErrorResponse(expected.clone()))
    );
    assert_eq!(
        backend::error_code(&raw(b'E', body)),
        Some(SqlState::DIVISION_BY_ZERO)
    );
    assert_eq!(expected.field(b'R'), Some("int4div"));
}

#[test]
fn text_in_another_encoding_is_kept_lossily() {
    let body = b"SERREUR\0C28P01\0Mmot de passe \xe9chou\xe9\0\0";
    let Ok(BackendMessage::ErrorResponse(f)) = backend::parse(&raw(b'E', body)) else {
        panic!("an error in LATIN1 still parses");
    };
    assert_eq!(f.code, "28P01");
    assert_eq!(f.message, "mot de passe \u{fffd}chou\u{fffd}");
}

#[test]
fn encoder_skips_fields_it_cannot_represent() {
    let mut fields = ErrorFields::error(SqlState::INTERNAL_ERROR, "boom");
    fields.other.push((0, "would end the list".into()));
    let f = frame(&encoded(|b| encode::error_response(b, &fields)));
    fields.other.pop();
    assert_eq!(
        backend::parse(&f),
        Ok(BackendMessage::ErrorResponse(fields))
    );
}
