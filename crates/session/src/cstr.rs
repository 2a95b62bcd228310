//! NUL-terminated strings at the front of a message body, found with `memchr`.

/// A NUL-terminated byte string at the front of `buf`, and what follows it.
pub(crate) fn cbytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(0, buf)?;
    Some((&buf[..end], &buf[end + 1..]))
}

/// A NUL-terminated UTF-8 string at the front of `buf`, and what follows it.
pub(crate) fn cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let (text, rest) = cbytes(buf)?;
    Some((std::str::from_utf8(text).ok()?, rest))
}
