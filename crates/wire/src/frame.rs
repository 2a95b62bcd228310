//! Framing of tagged messages: peek the 5-byte header, split whole messages off a read buffer.

use bytes::{Bytes, BytesMut};

use crate::WireError;

/// Size of a tagged message header: one type byte and a 4-byte length.
pub const HEADER_LEN: usize = 5;

/// One complete tagged message.
///
/// `bytes` holds the whole message, tag byte and length field included, so a relay can forward
/// it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// Wraps bytes that the caller guarantees to be one whole message (used by encoders and tests).
    ///
    /// Accessors stay panic-free even when the guarantee is broken: a too-short buffer has tag 0
    /// and an empty body.
    pub fn from_bytes(bytes: Bytes) -> Frame {
        Frame { bytes }
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The message body, after the 5-byte header.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The whole message, to be forwarded unchanged.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole message, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Length of the whole message, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True only for a frame built from empty bytes; frames from [`next_frame`] never are.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Splits the next whole tagged message off `buf`, without copying.
///
/// Returns `Ok(None)` while the message is incomplete; `buf` is then left untouched.
/// The declared length is checked against `max_len` (the size of the whole message, tag included)
/// as soon as the header is readable, and no memory is ever reserved for the declared length:
/// the buffer only grows as bytes arrive.
/// A length field below 4 is `BadLength`.
/// Unknown tags are not rejected here, because a relay forwards them.
pub fn next_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, WireError> {
    let Some((tag, len)) = header(buf) else {
        return Ok(None);
    };
    if len < 4 {
        return Err(WireError::BadLength { tag, len });
    }
    let total = whole_len(len);
    if total > max_len {
        return Err(WireError::MessageTooLarge {
            tag,
            len: total,
            max: max_len,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        bytes: buf.split_to(total).freeze(),
    }))
}

/// The total length (tag included) of the message whose header starts `buf`.
///
/// Returns `None` when the header is incomplete or its length field is below 4; in the second
/// case [`next_frame`] reports the error.
/// The length is not checked against any limit, so relays that skip bytes with it must still
/// apply their own.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    match header(buf)? {
        (_, len) if len < 4 => None,
        (_, len) => Some(whole_len(len)),
    }
}

/// Reads the tag and the length field when the whole header is present.
fn header(buf: &[u8]) -> Option<(u8, u32)> {
    let head: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some((
        head[0],
        u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
    ))
}

/// Converts a length field into the whole message size, saturating on tiny targets.
fn whole_len(len: u32) -> usize {
    usize::try_from(len).map_or(usize::MAX, |l| l.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_accessors_do_not_panic_on_short_bytes() {
        let f = Frame::from_bytes(Bytes::from_static(b"Q"));
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"");
        let f = Frame::from_bytes(Bytes::new());
        assert_eq!(f.tag(), 0);
        assert!(f.is_empty());
    }

    #[test]
    fn frame_len_reads_the_header() {
        assert_eq!(frame_len(b"Z\0\0\0\x05I"), Some(6));
        assert_eq!(frame_len(b"Z\0\0\0"), None);
        assert_eq!(frame_len(b"Z\0\0\0\x03"), None);
    }
}
