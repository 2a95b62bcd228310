//! The one error type of the crate: every way wire input can fail to frame, parse or authenticate.

use std::fmt;

/// Why a message could not be framed, parsed or authenticated.
///
/// Variants carry static descriptions and numbers only, so building an error never allocates;
/// text is rendered only when the error is displayed.
/// A `tag` of 0 stands for an untagged startup packet.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The declared length exceeds the caller's limit; nothing was buffered for it.
    #[error("{} message declares {len} bytes, more than the limit of {max} bytes", Tag(*tag))]
    MessageTooLarge {
        /// Message type byte (0 for a startup packet).
        tag: u8,
        /// Declared size of the whole message in bytes, tag byte included.
        len: usize,
        /// The limit that was applied.
        max: usize,
    },
    /// The length field is smaller than the header itself (4, or 8 for startup packets).
    #[error("{} message has an impossible length field of {len}", Tag(*tag))]
    BadLength {
        /// Message type byte (0 for a startup packet).
        tag: u8,
        /// The length field as sent.
        len: u32,
    },
    /// The message type byte is not one this parser knows for this direction.
    #[error("{} is not a known message type", Tag(*tag))]
    UnknownMessage {
        /// Message type byte.
        tag: u8,
    },
    /// The message body does not follow the message's layout.
    #[error("{} message is malformed: {what}", Tag(*tag))]
    Malformed {
        /// Message type byte.
        tag: u8,
        /// Which part of the body is wrong.
        what: &'static str,
    },
    /// The first packet of a connection is not a startup packet this crate accepts.
    #[error("invalid startup packet: {what}")]
    BadStartup {
        /// What is wrong with the packet.
        what: &'static str,
    },
    /// A SCRAM or MD5 exchange failed; `"password"` means the credentials were wrong.
    #[error("authentication failed: {0}")]
    Auth(&'static str),
}

/// Renders a message type byte for humans: `'Q'` when printable, otherwise its number.
struct Tag(u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("startup"),
            t if t.is_ascii_graphic() => write!(f, "'{}'", char::from(t)),
            t => write!(f, "type {t:#04x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WireError;

    #[test]
    fn display_is_a_sentence() {
        let e = WireError::Malformed {
            tag: b'Q',
            what: "missing NUL terminator",
        };
        assert_eq!(
            e.to_string(),
            "'Q' message is malformed: missing NUL terminator"
        );
        let e = WireError::BadLength { tag: 0, len: 3 };
        assert_eq!(
            e.to_string(),
            "startup message has an impossible length field of 3"
        );
        let e = WireError::UnknownMessage { tag: 0x01 };
        assert_eq!(e.to_string(), "type 0x01 is not a known message type");
    }
}
