//! Malformed bodies: every parser returns an error, never panics, never trusts a count.

use bytes::BytesMut;
use pgsplit_wire::backend::{self, parse_data_row, parse_row_description};
use pgsplit_wire::frontend::{self, parse_bind, parse_function_call, parse_sasl_initial};
use pgsplit_wire::{ErrorFields, WireError, next_frame, next_startup};

use crate::support::{backend_cases, frontend_cases, raw};

fn malformed(tag: u8, what: &'static str) -> WireError {
    WireError::Malformed { tag, what }
}

/// Runs every parser over a body; the point is that none of them panics.
fn parse_everything(tag: u8, body: &[u8]) {
    let f = raw(tag, body);
    let _ = frontend::parse(&f);
    let _ = backend::parse(&f);
    let _ = backend::error_code(&f);
    let _ = backend::ready_status(&f);
    let _ = parse_bind(body);
    let _ = parse_function_call(body);
    let _ = parse_sasl_initial(body);
    let _ = parse_row_description(body);
    let _ = parse_data_row(body);
    let _ = ErrorFields::parse(tag, body);
}

#[test]
fn truncated_bodies_fail_cleanly() {
    let fe = frontend_cases().into_iter().map(|c| c.bytes);
    for bytes in fe.chain(backend_cases().into_iter().map(|c| c.bytes)) {
        let (tag, body) = (bytes[0], &bytes[5..]);
        for cut in 0..body.len() {
            parse_everything(tag, &body[..cut]);
        }
        // Extra bytes at the end of a body are never silently accepted by fixed layouts.
        let mut longer = body.to_vec();
        longer.push(0);
        parse_everything(tag, &longer);
    }
}

/// Backend messages whose body ends in raw data of any length: CopyData and the
/// Authentication requests that carry data or are not interpreted.
fn open_ended(tag: u8, body: &[u8]) -> bool {
    match tag {
        b'd' => true,
        b'R' => !matches!(body.get(..4), Some([0, 0, 0, 0 | 3 | 5 | 10])),
        _ => false,
    }
}

#[test]
fn fixed_layout_messages_reject_truncation_and_trailing_bytes() {
    // Messages whose body has no open-ended part: any change of length must fail.
    for case in backend_cases() {
        let (tag, body) = (case.bytes[0], &case.bytes[5..]);
        if open_ended(tag, body) {
            continue;
        }
        for cut in 0..body.len() {
            assert!(
                backend::parse(&raw(tag, &body[..cut])).is_err(),
                "{} cut at {cut}",
                case.name
            );
        }
        let mut longer = body.to_vec();
        longer.push(b'x');
        assert!(
            backend::parse(&raw(tag, &longer)).is_err(),
            "{} with a trailing byte",
            case.name
        );
    }
    for case in frontend_cases() {
        let (tag, body) = (case.bytes[0], &case.bytes[5..]);
        if matches!(tag, b'd' | b'p' | b'B') {
            continue;
        }
        for cut in 0..body.len() {
            assert!(
                frontend::parse(&raw(tag, &body[..cut])).is_err(),
                "{} cut at {cut}",
                case.name
            );
        }
        let mut longer = body.to_vec();
        longer.push(b'x');
        assert!(
            frontend::parse(&raw(tag, &longer)).is_err(),
            "{} with a trailing byte",
            case.name
        );
    }
}

#[test]
fn specific_errors() {
    let table: &[(&str, Result<(), WireError>, WireError)] = &[
        (
            "query without NUL",
            fe(b'Q', b"SELECT 1"),
            malformed(b'Q', "missing NUL terminator"),
        ),
        (
            "query not UTF-8",
            fe(b'Q', b"SELECT '\xff'\0"),
            malformed(b'Q', "invalid UTF-8"),
        ),
        (
            "sync with body",
            fe(b'S', b"x"),
            malformed(b'S', "trailing bytes after the last field"),
        ),
        (
            "negative parse count",
            fe(b'P', b"\0q\0\xff\xff"),
            malformed(b'P', "parameter type count"),
        ),
        (
            "parse count too big",
            fe(b'P', b"\0q\0\0\x02\0\0\0\x17"),
            malformed(b'P', "parameter type count does not match the body"),
        ),
        (
            "execute short",
            fe(b'E', b"p\0\0\0"),
            malformed(b'E', "row limit"),
        ),
        (
            "status not UTF-8",
            be(b'S', b"a\0\xc3\0"),
            malformed(b'S', "invalid UTF-8"),
        ),
        (
            "status missing value",
            be(b'S', b"a\0"),
            malformed(b'S', "missing NUL terminator"),
        ),
        (
            "row value -2",
            be(b'D', b"\0\x01\xff\xff\xff\xfe"),
            malformed(b'D', "column value"),
        ),
        (
            "row value too long",
            be(b'D', b"\0\x01\0\0\0\x09abc"),
            malformed(b'D', "column value"),
        ),
        (
            "row count too big",
            be(b'D', b"\xff\xff"),
            malformed(b'D', "column value"),
        ),
        (
            "row desc count",
            be(b'T', b"\0\x05"),
            malformed(b'T', "missing NUL terminator"),
        ),
        (
            "key data short",
            be(b'K', b"\0\0\0\x01"),
            malformed(b'K', "secret key"),
        ),
        (
            "md5 salt short",
            be(b'R', b"\0\0\0\x05\x01\x02"),
            malformed(b'R', "MD5 salt"),
        ),
        (
            "sasl list unterminated",
            be(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0"),
            malformed(b'R', "missing NUL terminator"),
        ),
        (
            "auth ok with data",
            be(b'R', b"\0\0\0\0x"),
            malformed(b'R', "trailing bytes after the last field"),
        ),
        (
            "ready unknown status",
            be(b'Z', b"Q"),
            malformed(b'Z', "unknown transaction status"),
        ),
        (
            "error unterminated",
            be(b'E', b"SERROR\0"),
            malformed(b'E', "missing field terminator"),
        ),
        (
            "negotiate count lies",
            be(b'v', b"\0\0\0\0\x7f\xff\xff\xff_pq_.a\0"),
            malformed(b'v', "missing NUL terminator"),
        ),
        (
            "copy count lies",
            be(b'G', b"\0\x7f\xff"),
            malformed(b'G', "column count does not match the body"),
        ),
        (
            "param desc count lies",
            be(b't', b"\x7f\xff"),
            malformed(b't', "parameter count does not match the body"),
        ),
        (
            "function result short",
            be(b'V', b"\0\0\0\x05ab"),
            malformed(b'V', "result value"),
        ),
    ];
    for (name, got, expected) in table {
        assert_eq!(got, &Err(expected.clone()), "{name}");
    }
    assert_eq!(
        parse_bind(b"p\0s\0\x7f\xff"),
        Err(malformed(b'B', "format code count exceeds the body"))
    );
    assert_eq!(
        parse_bind(b"p\0s\0\0\0\x7f\xff"),
        Err(malformed(b'B', "value count exceeds the body"))
    );
    assert_eq!(
        parse_bind(b"p\0s\0\xff\xff"),
        Err(malformed(b'B', "format code count"))
    );
}

fn fe(tag: u8, body: &[u8]) -> Result<(), WireError> {
    frontend::parse(&raw(tag, body)).map(drop)
}

fn be(tag: u8, body: &[u8]) -> Result<(), WireError> {
    backend::parse(&raw(tag, body)).map(drop)
}

/// A tiny deterministic generator, so the fuzz below needs no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u8
    }
}

#[test]
fn random_input_never_panics() {
    let tags: Vec<u8> = b"QPBDECSHXdcfFpRK23GHWIVvnNAtS1sZT!\0".to_vec();
    let mut rng = Lcg(0x5eed);
    for round in 0..20_000 {
        let len = usize::from(rng.next() % 40);
        let mut body: Vec<u8> = (0..len).map(|_| rng.next()).collect();
        // Bias towards plausible bytes: NULs, small counts and printable text.
        for b in body.iter_mut() {
            match *b % 4 {
                0 => *b = 0,
                1 => *b %= 3,
                _ => {}
            }
        }
        let tag = tags[round % tags.len()];
        parse_everything(tag, &body);

        let mut stream = BytesMut::from(&body[..]);
        while let Ok(Some(_)) = next_frame(&mut stream, 64) {}
        let mut stream = BytesMut::from(&body[..]);
        while let Ok(Some(_)) = next_startup(&mut stream, 64) {}
    }
}
