//! PostgreSQL's MD5 password scheme: the client response, the stored hash, and server-side checks.
//!
//! MD5 authentication is weak and deprecated; it exists here for servers and clients that still
//! use it.

use ::md5::{Digest, Md5};

/// Length of a stored hash: `md5` plus 32 hex digits.
const STORED_LEN: usize = 35;

/// What a client sends: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
pub fn client_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    ascii(&salted(&stored_hash(user, password)[3..], salt))
}

/// The stored form of a password: `"md5" + hex(md5(password + user))`.
pub fn stored_hash(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    ascii(&prefixed_hex(&h.finalize()))
}

/// Server side: checks a client `response` against `stored`, which is either a plaintext
/// password or a stored `md5...` hash.
///
/// A stored SCRAM secret cannot check an MD5 response, so it always fails.
/// The final comparison takes the same time wherever the strings differ.
pub fn verify(user: &str, stored: &str, salt: [u8; 4], response: &str) -> bool {
    let expected = if is_stored_hash(stored) {
        salted(&stored[3..], salt)
    } else if stored.starts_with("SCRAM-SHA-256$") {
        return false;
    } else {
        salted(&stored_hash(user, stored)[3..], salt)
    };
    constant_time_eq(&expected, response.as_bytes())
}

/// True for strings shaped like a stored MD5 hash, as PostgreSQL decides it.
pub fn is_stored_hash(s: &str) -> bool {
    s.len() == STORED_LEN && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `"md5" + hex(md5(inner_hex + salt))`, as ASCII bytes (checked at every MD5 login: no
/// allocation).
fn salted(inner_hex: &str, salt: [u8; 4]) -> [u8; STORED_LEN] {
    let mut h = Md5::new();
    h.update(inner_hex.as_bytes());
    h.update(salt);
    prefixed_hex(&h.finalize())
}

/// `"md5"` followed by the lowercase hex digits of a 16-byte `digest`, as ASCII bytes.
fn prefixed_hex(digest: &[u8]) -> [u8; STORED_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = [0u8; STORED_LEN];
    s[..3].copy_from_slice(b"md5");
    for (pair, &b) in s[3..].chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    s
}

/// The hex form built by [`prefixed_hex`] as a string.
fn ascii(bytes: &[u8; STORED_LEN]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
