//! A bounds-checked reader over a message body, used by every parser in the crate.
//!
//! Each read either returns a value or a `WireError::Malformed` naming the message tag,
//! so parsers never index out of bounds and never panic on short input.

use crate::WireError;

/// Reads big-endian integers and NUL-terminated strings from a borrowed body.
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
    tag: u8,
}

impl<'a> Cursor<'a> {
    /// Starts reading `body`; errors will carry `tag`.
    pub(crate) fn new(tag: u8, body: &'a [u8]) -> Self {
        Cursor { rest: body, tag }
    }

    /// The error for this message with the given description.
    pub(crate) fn err(&self, what: &'static str) -> WireError {
        WireError::Malformed {
            tag: self.tag,
            what,
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Takes exactly `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(self.err(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Takes one byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Takes a big-endian `Int16`.
    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    /// Takes a big-endian `Int16` read as unsigned (counts and format codes).
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// Takes a big-endian `Int32`.
    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    /// Takes a big-endian `Int32` read as unsigned (OIDs, process ids, keys).
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Takes a count that the protocol sends as a signed `Int16` and forbids to be negative.
    pub(crate) fn count16(&mut self, what: &'static str) -> Result<usize, WireError> {
        usize::try_from(self.i16(what)?).map_err(|_| self.err(what))
    }

    /// Takes a NUL-terminated byte string, without its terminator.
    pub(crate) fn cbytes(&mut self) -> Result<&'a [u8], WireError> {
        let Some(nul) = self.rest.iter().position(|&b| b == 0) else {
            return Err(self.err("missing NUL terminator"));
        };
        let s = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Ok(s)
    }

    /// Takes a NUL-terminated UTF-8 string, without its terminator.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, WireError> {
        let bytes = self.cbytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.err("invalid UTF-8"))
    }

    /// Takes a value with an `Int32` length prefix, where -1 stands for NULL.
    pub(crate) fn nullable(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, WireError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n).map_err(|_| self.err(what))?;
                self.bytes(n, what).map(Some)
            }
        }
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Succeeds only if the whole body was consumed.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes after the last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;
    use crate::WireError;

    #[test]
    fn short_reads_are_errors() {
        let mut c = Cursor::new(b'X', &[0, 1, 2]);
        assert_eq!(
            c.u32("x"),
            Err(WireError::Malformed {
                tag: b'X',
                what: "x"
            })
        );
        assert_eq!(c.u16("y"), Ok(1));
        assert_eq!(c.u8("z"), Ok(2));
        assert!(c.u8("w").is_err());
        c.finish().unwrap();
    }

    #[test]
    fn nullable_rejects_negative_lengths_other_than_minus_one() {
        let mut c = Cursor::new(b'D', &[0xff, 0xff, 0xff, 0xfe]);
        assert!(c.nullable("value").is_err());
        let mut c = Cursor::new(b'D', &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.nullable("value"), Ok(None));
    }
}
