//! SCRAM-SHA-256: RFC 7677 known answers, client/server exchanges, secrets from real PostgreSQL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use pgsplit_wire::WireError;
use pgsplit_wire::scram::{SCRAM_SHA_256, ScramClient, ScramKeys, ScramSecret, ScramServer};

// RFC 7677, section 3: user "user", password "pencil".
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// Secrets that PostgreSQL 15 stored for `CREATE ROLE ... PASSWORD '<password>'`.
const PG_PENCIL: &str = "SCRAM-SHA-256$4096:HshT0SKe8hJ/jl4Fyda8Ng==$\
                         tj9jYaFzqal4/OUnQOJ8KT2r2l827IjJrl3uojVbOHc=:\
                         ao7gYONfwGHbeE0e4z2HNtZlnscuKa6UGpkLPTNYZfY=";
const PG_POSTGRES: &str = "SCRAM-SHA-256$4096:ebxzqpTiMSfuqB/oZCpbvg==$\
                           htUEEp0yB9BV5AuC6JnA71KOdgkfhs4XwAcuERqq3QI=:\
                           vBioSsNcNmJJmBAwcchLOcEb7o0TsB+ltsTkUOab12k=";
/// Stored for the password "sésame ﬁ"; SASLprep maps the ligature to "fi".
const PG_SASLPREP: &str = "SCRAM-SHA-256$4096:P6C/7ZBWLge6lXmvjT+YYQ==$\
                           TLR3naYkekht205CK0BFiDyw+azQCaKiuPvSCuNXoWc=:\
                           C9SW9aLtFtFJfIJsrSt5HEZDESFXPxVzBFGL2jMCeQo=";

fn rfc_secret() -> ScramSecret {
    ScramSecret::from_password(
        "pencil",
        &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
        4096,
    )
}

fn s(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// Runs a whole exchange; returns the server's verdict and, on success, the client's check of
/// the server's signature.
fn exchange(
    client: &mut ScramClient,
    server: &mut ScramServer,
) -> Result<Result<(), WireError>, WireError> {
    let server_first = server.handle_client_first(&client.client_first())?;
    let client_final = client
        .handle_server_first(&server_first)
        .expect("client accepts");
    let server_final = server.handle_client_final(&client_final)?;
    Ok(client.verify_server_final(&server_final))
}

#[test]
fn rfc7677_client_known_answer() {
    let mut client = ScramClient::with_username_and_nonce("user", "pencil", RFC_CLIENT_NONCE);
    assert_eq!(s(client.client_first()), RFC_CLIENT_FIRST);
    assert_eq!(
        s(client
            .handle_server_first(RFC_SERVER_FIRST.as_bytes())
            .unwrap()),
        RFC_CLIENT_FINAL
    );
    assert_eq!(
        client.verify_server_final(RFC_SERVER_FINAL.as_bytes()),
        Ok(())
    );
}

/// Keys kept from an earlier login give the very message a fresh derivation gives; the
/// callback sees the server's salt and count; keys of another password fail the exchange.
#[test]
fn kept_keys_give_the_same_proof() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let kept = ScramKeys::derive("pencil", &salt, 4096);
    let mut client = ScramClient::with_username_and_nonce("user", "pencil", RFC_CLIENT_NONCE);
    let mut seen = None;
    let reply = client
        .handle_server_first_with(RFC_SERVER_FIRST.as_bytes(), |salt, iterations, _derive| {
            seen = Some((salt.to_vec(), iterations));
            kept
        })
        .unwrap();
    assert_eq!(s(reply), RFC_CLIENT_FINAL);
    assert_eq!(seen, Some((salt.clone(), 4096)));
    assert_eq!(
        client.verify_server_final(RFC_SERVER_FINAL.as_bytes()),
        Ok(())
    );

    // `derive` is the client's own derivation.
    let mut client = ScramClient::with_username_and_nonce("user", "pencil", RFC_CLIENT_NONCE);
    client
        .handle_server_first_with(RFC_SERVER_FIRST.as_bytes(), |_, _, derive| {
            let derived = derive();
            assert_eq!(derived, kept);
            derived
        })
        .unwrap();

    // Keys of another password: the server refuses the proof.
    let mut client = ScramClient::with_nonce("pencil", "abc");
    let mut server = ScramServer::new(rfc_secret());
    let server_first = server.handle_client_first(&client.client_first()).unwrap();
    let wrong = ScramKeys::derive("crayon", &salt, 4096);
    let client_final = client
        .handle_server_first_with(&server_first, |_, _, _| wrong)
        .unwrap();
    assert!(server.handle_client_final(&client_final).is_err());
    assert_eq!(format!("{wrong:?}"), "ScramKeys(<redacted>)");
}

#[test]
fn rfc7677_server_known_answer() {
    let mut server = ScramServer::with_nonce(rfc_secret(), RFC_SERVER_NONCE);
    assert_eq!(
        s(server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap()),
        RFC_SERVER_FIRST
    );
    assert_eq!(
        s(server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap()),
        RFC_SERVER_FINAL
    );
}

#[test]
fn client_first_looks_like_libpq() {
    assert_eq!(SCRAM_SHA_256, "SCRAM-SHA-256");
    let first = s(ScramClient::new("pw").client_first());
    let nonce = first
        .strip_prefix("n,,n=,r=")
        .expect("empty user name, no channel binding");
    assert_eq!(nonce.len(), 24);
    assert!(nonce.bytes().all(|b| b.is_ascii_graphic() && b != b','));
    assert_ne!(
        first,
        s(ScramClient::new("pw").client_first()),
        "nonces are random"
    );
    assert_eq!(
        s(ScramClient::with_nonce("pw", "abc").client_first()),
        "n,,n=,r=abc"
    );
    let escaped = ScramClient::with_username_and_nonce("a=b,c", "pw", "n");
    assert_eq!(s(escaped.client_first()), "n,,n=a=3Db=2Cc,r=n");
}

#[test]
fn client_and_server_agree_on_the_right_password() {
    for (password, secret) in [
        (
            "pencil",
            ScramSecret::from_password("pencil", b"salt", 4096),
        ),
        ("pencil", ScramSecret::parse(PG_PENCIL).unwrap()),
        ("postgres", ScramSecret::parse(PG_POSTGRES).unwrap()),
        ("sésame ﬁ", ScramSecret::parse(PG_SASLPREP).unwrap()),
        ("sésame fi", ScramSecret::parse(PG_SASLPREP).unwrap()),
        ("", ScramSecret::generate("")),
        ("x", ScramSecret::from_password("x", b"", 1)),
    ] {
        let mut client = ScramClient::new(password);
        let mut server = ScramServer::new(secret);
        assert_eq!(
            exchange(&mut client, &mut server),
            Ok(Ok(())),
            "{password:?}"
        );
    }
}

#[test]
fn wrong_password_is_rejected_by_the_server() {
    for password in ["pencil2", "Pencil", "", "sésame fi"] {
        let mut client = ScramClient::new(password);
        let mut server = ScramServer::new(ScramSecret::parse(PG_PENCIL).unwrap());
        assert_eq!(
            exchange(&mut client, &mut server),
            Err(WireError::Auth("password")),
            "{password:?}"
        );
    }
}

#[test]
fn client_rejects_a_server_that_does_not_know_the_secret() {
    // The server knows StoredKey but not the right ServerKey: it cannot sign.
    let mut forged = ScramSecret::parse(PG_PENCIL).unwrap();
    forged.server_key = [7; 32];
    let mut client = ScramClient::new("pencil");
    let mut server = ScramServer::new(forged);
    assert_eq!(
        exchange(&mut client, &mut server),
        Ok(Err(WireError::Auth("server signature does not match")))
    );
}

#[test]
fn client_checks_server_messages() {
    let first =
        |data: &str| ScramClient::with_nonce("pw", "abc").handle_server_first(data.as_bytes());
    let bad = Err(WireError::Auth("malformed server-first-message"));
    assert_eq!(first("r=abcdef,s=c2FsdA==,i=4096").map(|_| ()), Ok(()));
    assert_eq!(
        first("r=abcdef,s=c2FsdA==,i=4096,x=ext").map(|_| ()),
        Ok(())
    );
    assert_eq!(
        first("r=xyzdef,s=c2FsdA==,i=4096"),
        Err(WireError::Auth(
            "server nonce does not extend the client nonce"
        ))
    );
    assert_eq!(
        first("r=abc,s=c2FsdA==,i=4096"),
        Err(WireError::Auth(
            "server nonce does not extend the client nonce"
        ))
    );
    assert_eq!(
        first("m=ext,r=abcdef,s=c2FsdA==,i=4096"),
        Err(WireError::Auth(
            "server requires an unsupported SCRAM extension"
        ))
    );
    assert_eq!(first("r=abcdef,s=c2FsdA==,i=0"), bad);
    assert_eq!(first("r=abcdef,s=c2FsdA==,i=-1"), bad);
    assert_eq!(first("r=abcdef,s=!!!,i=4096"), bad);
    assert_eq!(first("r=abcdef,i=4096"), bad);
    assert_eq!(first(""), bad);
    assert!(ScramClient::new("pw").handle_server_first(b"\xff").is_err());

    let client = ScramClient::new("pw");
    assert_eq!(
        client.verify_server_final(b"v=abc"),
        Err(WireError::Auth(
            "server-final-message before server-first-message"
        ))
    );
    let mut client = ScramClient::with_nonce("pw", "abc");
    client
        .handle_server_first(b"r=abcdef,s=c2FsdA==,i=16")
        .unwrap();
    assert_eq!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(WireError::Auth("server reported a SCRAM error"))
    );
    assert_eq!(
        client.verify_server_final(b"v=###"),
        Err(WireError::Auth("malformed server-final-message"))
    );
    assert_eq!(
        client.verify_server_final(b"v=AAAA"),
        Err(WireError::Auth("server signature does not match"))
    );
    assert_eq!(
        client.handle_server_first(b"r=abcdef,s=c2FsdA==,i=16"),
        Err(WireError::Auth("unexpected second server-first-message"))
    );
}

#[test]
fn server_accepts_any_user_name_and_the_y_flag() {
    for first in [
        "n,,n=,r=abc",
        "n,,n=someone_else,r=abc",
        "y,,n=,r=abc",
        "n,,n=x,r=abc,ext=1",
    ] {
        let mut server = ScramServer::with_nonce(rfc_secret(), "SRV");
        let reply = s(server.handle_client_first(first.as_bytes()).unwrap());
        assert_eq!(
            reply, "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "{first}"
        );
    }
}

#[test]
fn server_checks_client_messages() {
    let first = |data: &str| ScramServer::new(rfc_secret()).handle_client_first(data.as_bytes());
    let bad = Err(WireError::Auth("malformed client-first-message"));
    assert_eq!(
        first("p=tls-server-end-point,,n=,r=abc"),
        Err(WireError::Auth("channel binding is not supported"))
    );
    assert_eq!(
        first("n,a=admin,n=,r=abc"),
        Err(WireError::Auth("authorization identity is not supported"))
    );
    assert_eq!(
        first("n,,m=ext,n=,r=abc"),
        Err(WireError::Auth(
            "client requires an unsupported SCRAM extension"
        ))
    );
    assert_eq!(first("n,,r=abc"), bad);
    assert_eq!(first("n,,n=,r="), bad);
    assert_eq!(first("n,,n=,r=a b"), bad);
    assert_eq!(first("x,,n=,r=abc"), bad);
    assert_eq!(first(""), bad);
    assert!(first("n,,n=,r=\u{e9}").is_err());

    let final_ = |data: &str| {
        let mut server = ScramServer::with_nonce(rfc_secret(), RFC_SERVER_NONCE);
        server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        server.handle_client_final(data.as_bytes())
    };
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let nonce = format!("r={RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    assert_eq!(
        final_(&format!("c=eSws,{nonce},{proof}")),
        Err(WireError::Auth("channel binding data does not match"))
    );
    assert_eq!(
        final_(&format!("c=biws,r=other,{proof}")),
        Err(WireError::Auth("nonce does not match"))
    );
    assert_eq!(
        final_(&format!("c=biws,{nonce}")),
        Err(WireError::Auth("malformed client-final-message"))
    );
    assert_eq!(
        final_(&format!("c=biws,{nonce},p=AAAA")),
        Err(WireError::Auth("malformed client-final-message"))
    );
    // A well-formed but different proof is a wrong password.
    let zero = B64.encode([0u8; 32]);
    assert_eq!(
        final_(&format!("c=biws,{nonce},p={zero}")),
        Err(WireError::Auth("password"))
    );
    // An extension before the proof changes the AuthMessage, so the RFC proof no longer fits.
    assert_eq!(
        final_(&format!("c=biws,{nonce},x=1,{proof}")),
        Err(WireError::Auth("password"))
    );
}

#[test]
fn server_enforces_the_order_of_messages() {
    let mut server = ScramServer::new(rfc_secret());
    assert_eq!(
        server.handle_client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(WireError::Auth("unexpected client-final-message"))
    );
    let mut server = ScramServer::with_nonce(rfc_secret(), RFC_SERVER_NONCE);
    server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
        .unwrap();
    assert_eq!(
        server.handle_client_first(RFC_CLIENT_FIRST.as_bytes()),
        Err(WireError::Auth("unexpected client-first-message"))
    );
    // An exchange is single-use: after a final message, even a correct replay fails.
    let mut server = ScramServer::with_nonce(rfc_secret(), RFC_SERVER_NONCE);
    server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
        .unwrap();
    server
        .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
        .unwrap();
    assert!(
        server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .is_err()
    );
}

#[test]
fn secrets_round_trip_through_verifiers() {
    for verifier in [PG_PENCIL, PG_POSTGRES, PG_SASLPREP] {
        let secret = ScramSecret::parse(verifier).expect("PostgreSQL's format parses");
        assert_eq!(secret.iterations, 4096);
        assert_eq!(secret.salt.len(), 16);
        assert_eq!(secret.to_verifier(), verifier);
    }
    let generated = ScramSecret::generate("pw");
    assert_eq!(
        ScramSecret::parse(&generated.to_verifier()),
        Some(generated.clone())
    );
    assert_ne!(generated, ScramSecret::generate("pw"), "salts are random");
}

#[test]
fn derivation_matches_postgresql() {
    for (password, verifier) in [
        ("pencil", PG_PENCIL),
        ("postgres", PG_POSTGRES),
        ("sésame ﬁ", PG_SASLPREP),
        ("sésame fi", PG_SASLPREP),
    ] {
        let stored = ScramSecret::parse(verifier).unwrap();
        let derived = ScramSecret::from_password(password, &stored.salt, stored.iterations);
        assert_eq!(derived, stored, "{password:?}");
    }
}

#[test]
fn bad_verifiers_do_not_parse() {
    let keys =
        "tj9jYaFzqal4/OUnQOJ8KT2r2l827IjJrl3uojVbOHc=:ao7gYONfwGHbeE0e4z2HNtZlnscuKa6UGpkLPTNYZfY=";
    for bad in [
        String::new(),
        "md53175bce1d3201d16594cebf9d7eb3f9d".to_string(),
        format!("SCRAM-SHA-1$4096:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$x:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$4096:!!!${keys}"),
        format!("SCRAM-SHA-256$4096${keys}"),
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA".to_string(),
        "SCRAM-SHA-256$4096:c2FsdA==".to_string(),
        format!("SCRAM-SHA-256$4096:c2FsdA==${}", keys.replace(':', "")),
    ] {
        assert_eq!(ScramSecret::parse(&bad), None, "{bad}");
    }
}

#[test]
fn debug_output_hides_keys() {
    let secret = ScramSecret::parse(PG_PENCIL).unwrap();
    let text = format!("{secret:?} {:?}", ScramServer::new(secret.clone()));
    assert!(text.contains("4096"));
    assert!(!text.contains("tj9jYaFzqal4"));
    assert!(!text.contains("ao7gYONfwGHb"));
    assert!(!format!("{:?}", ScramClient::new("hunter2")).contains("hunter2"));
}
