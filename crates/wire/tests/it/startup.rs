//! Startup packets: every kind round-trips; partial, oversized and garbage packets are handled.

use bytes::BytesMut;
use pgsplit_wire::startup::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_STARTUP_LEN, PROTOCOL_3_0, SSL_REQUEST_CODE,
};
use pgsplit_wire::{StartupPacket, WireError, encode, next_startup};

use crate::support::{MAX, encoded};

/// Decodes exactly one packet from `bytes`.
fn decode(bytes: &[u8]) -> Result<Option<StartupPacket>, WireError> {
    next_startup(&mut BytesMut::from(bytes), MAX)
}

/// A raw packet: length, code, then body.
fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cases() -> Vec<(bytes::Bytes, StartupPacket)> {
    let params = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    vec![
        (
            encoded(|b| {
                encode::startup(
                    b,
                    &[
                        ("user", "alice"),
                        ("database", "app"),
                        ("application_name", "psql"),
                    ],
                )
            }),
            StartupPacket::Startup {
                protocol: PROTOCOL_3_0,
                params: params(&[
                    ("user", "alice"),
                    ("database", "app"),
                    ("application_name", "psql"),
                ]),
            },
        ),
        (
            encoded(|b| encode::startup(b, &[])),
            StartupPacket::Startup {
                protocol: PROTOCOL_3_0,
                params: vec![],
            },
        ),
        (
            encoded(|b| {
                encode::startup_with_protocol(
                    b,
                    PROTOCOL_3_0 | 2,
                    &[("user", "u"), ("_pq_.x", "1")],
                )
            }),
            StartupPacket::Startup {
                protocol: PROTOCOL_3_0 | 2,
                params: params(&[("user", "u"), ("_pq_.x", "1")]),
            },
        ),
        (encoded(encode::ssl_request), StartupPacket::SslRequest),
        (
            encoded(encode::gssenc_request),
            StartupPacket::GssEncRequest,
        ),
        (
            encoded(|b| encode::cancel_request(b, 1234, 0xfeed_f00d)),
            StartupPacket::Cancel {
                pid: 1234,
                secret: 0xfeed_f00d,
            },
        ),
    ]
}

#[test]
fn every_startup_kind_round_trips() {
    for (bytes, expected) in cases() {
        let mut buf = BytesMut::from(&bytes[..]);
        buf.extend_from_slice(b"Qnext");
        assert_eq!(next_startup(&mut buf, MAX), Ok(Some(expected)));
        assert_eq!(&buf[..], b"Qnext", "only the packet is consumed");
    }
}

#[test]
fn well_known_codes() {
    assert_eq!(PROTOCOL_3_0, 3 << 16);
    assert_eq!(SSL_REQUEST_CODE, (1234 << 16) | 5679);
    assert_eq!(GSSENC_REQUEST_CODE, (1234 << 16) | 5680);
    assert_eq!(CANCEL_REQUEST_CODE, (1234 << 16) | 5678);
    assert_eq!(
        &encoded(encode::ssl_request)[..],
        &[0, 0, 0, 8, 4, 210, 22, 47]
    );
}

#[test]
fn every_prefix_is_incomplete() {
    for (bytes, _) in cases() {
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(next_startup(&mut buf, MAX), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }
}

#[test]
fn param_lookup_takes_the_last_value_and_versions_split() {
    let p = decode(&encoded(|b| {
        encode::startup_with_protocol(b, PROTOCOL_3_0 | 1, &[("user", "a"), ("user", "b")])
    }))
    .unwrap()
    .unwrap();
    assert_eq!(p.param("user"), Some("b"));
    assert_eq!(p.param("database"), None);
    assert_eq!((p.major(), p.minor()), (Some(3), Some(1)));
    assert_eq!(StartupPacket::SslRequest.param("user"), None);
    assert_eq!(StartupPacket::SslRequest.major(), None);
}

#[test]
fn lengths_are_checked_first() {
    // Too small to hold a code.
    for len in 0..8u8 {
        assert_eq!(
            decode(&[0, 0, 0, len]),
            Err(WireError::BadLength {
                tag: 0,
                len: len.into()
            })
        );
    }
    // PostgreSQL's 10 000-byte cap applies even when the caller allows more.
    let big = (MAX_STARTUP_LEN as u32 + 1).to_be_bytes();
    assert_eq!(
        decode(&big),
        Err(WireError::MessageTooLarge {
            tag: 0,
            len: MAX_STARTUP_LEN + 1,
            max: MAX_STARTUP_LEN
        })
    );
    // A smaller caller limit wins.
    let mut buf = BytesMut::from(&[0, 0, 0, 100][..]);
    assert_eq!(
        next_startup(&mut buf, 50),
        Err(WireError::MessageTooLarge {
            tag: 0,
            len: 100,
            max: 50
        })
    );
    // An HTTP request looks like a 1.2 GB packet and is rejected from four bytes.
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    assert!(matches!(
        next_startup(&mut buf, MAX),
        Err(WireError::MessageTooLarge { .. })
    ));
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        next_startup(&mut buf, MAX),
        Err(WireError::MessageTooLarge { .. })
    ));
    assert!(buf.capacity() <= 64);
}

#[test]
fn garbage_and_bad_versions_are_bad_startup() {
    let table: &[(&str, Vec<u8>, &str)] = &[
        (
            "garbage",
            packet(0xdead_beef, b"\x01\x02\x03\x04"),
            "unsupported protocol version",
        ),
        (
            "protocol 2.0",
            packet(2 << 16, b"user\0u\0\0"),
            "unsupported protocol version",
        ),
        (
            "protocol 4.0",
            packet(4 << 16, b"user\0u\0\0"),
            "unsupported protocol version",
        ),
        (
            "unknown 1234 code",
            packet((1234 << 16) | 9999, b""),
            "unknown request code",
        ),
        (
            "no terminator",
            packet(PROTOCOL_3_0, b""),
            "missing NUL terminator",
        ),
        (
            "name without NUL",
            packet(PROTOCOL_3_0, b"user"),
            "missing NUL terminator",
        ),
        (
            "value without NUL",
            packet(PROTOCOL_3_0, b"user\0alice"),
            "missing NUL terminator",
        ),
        (
            "missing final NUL",
            packet(PROTOCOL_3_0, b"user\0alice\0"),
            "missing NUL terminator",
        ),
        (
            "after terminator",
            packet(PROTOCOL_3_0, b"user\0a\0\0x"),
            "bytes after the parameter list terminator",
        ),
        (
            "invalid UTF-8",
            packet(PROTOCOL_3_0, b"user\0\xff\xfe\0\0"),
            "parameter is not valid UTF-8",
        ),
        (
            "ssl with body",
            packet(SSL_REQUEST_CODE, b"x"),
            "encryption request with a body",
        ),
        (
            "gssenc with body",
            packet(GSSENC_REQUEST_CODE, b"x"),
            "encryption request with a body",
        ),
        (
            "short cancel",
            packet(CANCEL_REQUEST_CODE, &[0; 4]),
            "cancel request length",
        ),
        (
            "long cancel",
            packet(CANCEL_REQUEST_CODE, &[0; 12]),
            "cancel request length",
        ),
    ];
    for &(name, ref bytes, what) in table {
        assert_eq!(decode(bytes), Err(WireError::BadStartup { what }), "{name}");
    }
}
