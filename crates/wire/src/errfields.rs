//! The fields of ErrorResponse and NoticeResponse, parsed into and built from one struct.

use std::fmt;

use crate::{SqlState, WireError, cursor::Cursor};

/// Fields of an ErrorResponse or NoticeResponse.
///
/// Severity, code, message, detail and hint have their own slots; every other field, including
/// the non-localized severity `V`, is kept in `other` in the order received.
/// A repeated field fills its slot once and goes to `other` after that.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// Field `S`: the severity, possibly localized (`ERROR`, `FATAL`, `NOTICE`...).
    pub severity: String,
    /// Field `C`: the SQLSTATE code.
    pub code: String,
    /// Field `M`: the primary message.
    pub message: String,
    /// Field `D`: an optional secondary message.
    pub detail: Option<String>,
    /// Field `H`: an optional suggestion.
    pub hint: Option<String>,
    /// Every other field, as (field type, value), in order.
    pub other: Vec<(u8, String)>,
}

impl ErrorFields {
    /// An `ERROR` with the given code and message (also sets field `V` to `ERROR`).
    pub fn error(code: SqlState, message: impl Into<String>) -> Self {
        Self::with_severity("ERROR", code, message)
    }

    /// A `FATAL` error with the given code and message (also sets field `V` to `FATAL`).
    pub fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        Self::with_severity("FATAL", code, message)
    }

    /// A `NOTICE` (for NoticeResponse) with the given code and message.
    pub fn notice(code: SqlState, message: impl Into<String>) -> Self {
        Self::with_severity("NOTICE", code, message)
    }

    /// Fields with the given non-localized severity (`ERROR`, `FATAL`, `PANIC`, `WARNING`...).
    pub fn with_severity(severity: &str, code: SqlState, message: impl Into<String>) -> Self {
        ErrorFields {
            severity: severity.to_owned(),
            code: code.code().to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
            other: vec![(b'V', severity.to_owned())],
        }
    }

    /// Adds field `D`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds field `H`.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The SQLSTATE code, as sent.
    pub fn sqlstate(&self) -> &str {
        &self.code
    }

    /// The value of any field by its type byte, named slots included.
    pub fn field(&self, kind: u8) -> Option<&str> {
        match kind {
            b'S' => Some(&self.severity),
            b'C' => Some(&self.code),
            b'M' => Some(&self.message),
            b'D' => self.detail.as_deref(),
            b'H' => self.hint.as_deref(),
            _ => self
                .other
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// Parses the body of an ErrorResponse (`tag` `E`) or NoticeResponse (`tag` `N`).
    ///
    /// Text is decoded leniently (invalid UTF-8 becomes U+FFFD), because servers send errors in
    /// their own encoding before `client_encoding` is settled, and an unreadable error message
    /// must not hide the error itself.
    pub fn parse(tag: u8, body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag, body);
        let mut fields = ErrorFields::default();
        let (mut seen_s, mut seen_c, mut seen_m) = (false, false, false);
        loop {
            let kind = c.u8("missing field terminator")?;
            if kind == 0 {
                break;
            }
            let value = String::from_utf8_lossy(c.cbytes()?).into_owned();
            match kind {
                b'S' if !seen_s => (seen_s, fields.severity) = (true, value),
                b'C' if !seen_c => (seen_c, fields.code) = (true, value),
                b'M' if !seen_m => (seen_m, fields.message) = (true, value),
                b'D' if fields.detail.is_none() => fields.detail = Some(value),
                b'H' if fields.hint.is_none() => fields.hint = Some(value),
                _ => fields.other.push((kind, value)),
            }
        }
        c.finish()?;
        Ok(fields)
    }
}

impl fmt::Display for ErrorFields {
    /// `SEVERITY:  message (SQLSTATE code)`, the way psql prints errors, plus detail and hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_slots() {
        let e = ErrorFields::fatal(SqlState::INVALID_PASSWORD, "bad").with_hint("h");
        assert_eq!(e.severity, "FATAL");
        assert_eq!(e.sqlstate(), "28P01");
        assert_eq!(e.field(b'V'), Some("FATAL"));
        assert_eq!(e.field(b'H'), Some("h"));
        assert_eq!(e.to_string(), "FATAL: bad (SQLSTATE 28P01); HINT: h");
    }

    #[test]
    fn parse_keeps_unknown_and_repeated_fields() {
        let body = b"SERROR\0VERROR\0C42601\0Mm\0Mm2\0P7\0\0";
        let e = ErrorFields::parse(b'E', body).unwrap();
        assert_eq!(e.message, "m");
        assert_eq!(
            e.other,
            vec![
                (b'V', "ERROR".into()),
                (b'M', "m2".into()),
                (b'P', "7".into())
            ]
        );
        assert!(ErrorFields::parse(b'E', b"SERROR\0").is_err());
        assert!(ErrorFields::parse(b'E', b"SERROR").is_err());
        assert!(ErrorFields::parse(b'E', b"\0x").is_err());
    }
}
