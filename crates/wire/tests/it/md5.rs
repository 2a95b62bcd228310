//! MD5 authentication: known answers and server-side verification.

use pgsplit_wire::md5::{client_response, is_stored_hash, stored_hash, verify};

#[test]
fn stored_hash_known_answers() {
    for (user, password, expected) in [
        (
            "postgres",
            "postgres",
            "md53175bce1d3201d16594cebf9d7eb3f9d",
        ),
        // Stored by PostgreSQL 15 with password_encryption = md5.
        ("wire_m", "md5pw", "md541014c60302271094ba47f6ad6450ec3"),
    ] {
        assert_eq!(stored_hash(user, password), expected, "{user}");
        assert!(is_stored_hash(expected));
    }
}

#[test]
fn client_response_known_answers() {
    assert_eq!(
        client_response("postgres", "postgres", [1, 2, 3, 4]),
        "md568be9ed08db75f318087ab337aaea044"
    );
    assert_eq!(
        client_response("postgres", "postgres", [0xde, 0xad, 0xbe, 0xef]),
        "md58ee245854025535aedb7b15709315318"
    );
}

#[test]
fn verify_accepts_plaintext_and_stored_hashes() {
    let salt = [9, 8, 7, 6];
    let response = client_response("alice", "s3cret", salt);
    let stored = stored_hash("alice", "s3cret");
    let table = [
        (
            "plaintext",
            "alice",
            "s3cret",
            salt,
            response.as_str(),
            true,
        ),
        (
            "stored hash",
            "alice",
            stored.as_str(),
            salt,
            response.as_str(),
            true,
        ),
        (
            "wrong plaintext",
            "alice",
            "s3cret!",
            salt,
            response.as_str(),
            false,
        ),
        (
            "wrong user",
            "bob",
            "s3cret",
            salt,
            response.as_str(),
            false,
        ),
        (
            "wrong user, stored",
            "bob",
            stored.as_str(),
            salt,
            response.as_str(),
            true,
        ),
        (
            "other salt",
            "alice",
            stored.as_str(),
            [0, 0, 0, 0],
            response.as_str(),
            false,
        ),
        ("empty response", "alice", "s3cret", salt, "", false),
        (
            "uppercase hex",
            "alice",
            stored.as_str(),
            salt,
            &response.to_uppercase(),
            false,
        ),
        (
            "scram secret",
            "alice",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            salt,
            response.as_str(),
            false,
        ),
    ];
    for (name, user, stored, salt, response, ok) in table {
        assert_eq!(verify(user, stored, salt, response), ok, "{name}");
    }
}

#[test]
fn stored_hash_shape() {
    assert!(!is_stored_hash("md5"));
    assert!(!is_stored_hash("md53175bce1d3201d16594cebf9d7eb3f9dx"));
    assert!(!is_stored_hash("md53175bce1d3201d16594cebf9d7eb3f9g"));
    assert!(!is_stored_hash("postgres"));
}
