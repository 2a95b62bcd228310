//! SQLSTATE constants: the codes other crates rely on, and lookups.

use pgsplit_wire::{SqlState, sqlstate};

#[test]
fn required_constants_have_postgresql_codes() {
    let table = [
        (SqlState::SUCCESSFUL_COMPLETION, "00000"),
        (SqlState::CONNECTION_EXCEPTION, "08000"),
        (SqlState::CONNECTION_FAILURE, "08006"),
        (
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            "08001",
        ),
        (SqlState::PROTOCOL_VIOLATION, "08P01"),
        (SqlState::FEATURE_NOT_SUPPORTED, "0A000"),
        (SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "28000"),
        (SqlState::INVALID_PASSWORD, "28P01"),
        (SqlState::INVALID_CATALOG_NAME, "3D000"),
        (SqlState::TOO_MANY_CONNECTIONS, "53300"),
        (SqlState::CONFIGURATION_LIMIT_EXCEEDED, "53400"),
        (SqlState::PROGRAM_LIMIT_EXCEEDED, "54000"),
        (SqlState::ADMIN_SHUTDOWN, "57P01"),
        (SqlState::CRASH_SHUTDOWN, "57P02"),
        (SqlState::CANNOT_CONNECT_NOW, "57P03"),
        (SqlState::QUERY_CANCELED, "57014"),
        (SqlState::READ_ONLY_SQL_TRANSACTION, "25006"),
        (SqlState::INSUFFICIENT_PRIVILEGE, "42501"),
        (SqlState::SYNTAX_ERROR, "42601"),
        (SqlState::INTERNAL_ERROR, "XX000"),
        (SqlState::UNDEFINED_OBJECT, "42704"),
        (SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "55000"),
        (SqlState::INVALID_PARAMETER_VALUE, "22023"),
        (SqlState::DEADLOCK_DETECTED, "40P01"),
        (SqlState::SERIALIZATION_FAILURE, "40001"),
        (SqlState::IDLE_SESSION_TIMEOUT, "57P05"),
        (sqlstate::ADMIN_SHUTDOWN, "57P01"),
        (sqlstate::UNDEFINED_DATABASE, "3D000"),
    ];
    for (state, code) in table {
        assert_eq!(state.code(), code);
        assert_eq!(state.to_string(), code);
        assert_eq!(SqlState::from_code(code).map(|s| s.code()), Some(code));
    }
}

#[test]
fn lookups() {
    assert_eq!(SqlState::from_code("57P01"), Some(SqlState::ADMIN_SHUTDOWN));
    assert_eq!(SqlState::from_code("57P0"), None);
    assert_eq!(
        SqlState::class_of("57P99"),
        Some(SqlState::OPERATOR_INTERVENTION)
    );
    assert_eq!(SqlState::class_of(""), None);
    assert_eq!(SqlState::INVALID_PASSWORD.class(), "28");
}
