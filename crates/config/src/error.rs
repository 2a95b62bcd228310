//! Configuration errors that point at a file, a line, a column and a key path.
//!
//! Every problem found while reading a config becomes one [`ConfigError`], and a failed
//! parse returns all of them at once as [`ConfigErrors`], so an operator can fix a file in
//! one pass. The rendered form is the one `pgsplit check` prints:
//! `FILE:LINE:COL: key.path: message`.

use std::fmt;

use crate::Locator;
use crate::interpolate::Interpolated;

/// One problem in a configuration file.
///
/// Rendered by `Display` as `FILE:LINE:COL: key.path: message`.
/// When the column is unknown the form is `FILE:LINE: key.path: message`; when the line is
/// unknown too it is `FILE: key.path: message`. An empty `key` (a problem with the file as a
/// whole, such as a read error) is left out together with its `": "`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`crate::parse`] or [`crate::load`].
    pub file: String,
    /// 1-based line of the offending key or value, when it could be located.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value, when it could be located.
    pub col: Option<usize>,
    /// Dotted key path such as `servers[1].port`; empty for problems with the whole file.
    pub key: String,
    /// What is wrong, in lower case, without a trailing period.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration, in file order where that is known.
///
/// Never empty when returned as an error. `Display` prints one [`ConfigError`] per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render_lines(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl ConfigErrors {
    /// The individual errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never true for an error returned by this crate).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Turns a serde error into a positioned [`ConfigError`].
pub(crate) fn from_deserialize(
    error: serde_path_to_error::Error<serde_yaml::Error>,
    file: &str,
    interpolated: &Interpolated<'_>,
    locator: &Locator,
) -> ConfigError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let position = inner.location().map(|location| {
        let line = location.line();
        (line, interpolated.original_col(line, location.column()))
    });
    // serde_path_to_error writes `.` for the root and `?` for a segment it could not name.
    let mut key = if path == "." || path.contains('?') {
        String::new()
    } else {
        path
    };
    if key.is_empty()
        && let Some((line, col)) = position
    {
        key = locator.path_at(line, col).unwrap_or_default().to_owned();
    }
    ConfigError {
        file: file.to_owned(),
        line: position.map(|(line, _)| line),
        col: position.map(|(_, col)| col),
        message: clean_message(&inner.to_string(), &key, interpolated, position),
        key,
    }
}

/// Strips the positions and the path that serde_yaml writes into its messages, since
/// [`ConfigError`] carries both separately, and explains the most common syntax error.
fn clean_message(
    message: &str,
    key: &str,
    interpolated: &Interpolated<'_>,
    position: Option<(usize, usize)>,
) -> String {
    let mut message = strip_positions(message);
    let mut prefix = key;
    while !prefix.is_empty() {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(": "))
        {
            message = rest.to_owned();
            break;
        }
        prefix = &prefix[..prefix.rfind(['.', '[']).unwrap_or(0)];
    }
    let found_tab = position.is_some_and(|(line, col)| {
        let text = interpolated
            .text
            .lines()
            .nth(line.wrapping_sub(1))
            .unwrap_or_default();
        let mut chars = text.chars();
        chars.clone().nth(col.wrapping_sub(1)) == Some('\t')
            || chars
                .by_ref()
                .take_while(|c| c.is_whitespace())
                .any(|c| c == '\t')
    });
    if found_tab && message.contains("cannot start any token") {
        message = format!("tabs cannot indent YAML, use spaces ({message})");
    } else if message.starts_with("mapping values are not allowed") {
        message.push_str(" (quote a value that contains `: `)");
    }
    message
}

/// Removes every ` at line N column M` (and ` at position N`) from a serde_yaml message.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(index) = rest.find(" at ") {
        out.push_str(&rest[..index]);
        let after = &rest[index + 4..];
        let skipped = skip_position(after);
        if skipped == 0 {
            out.push_str(" at ");
        }
        rest = &after[skipped..];
    }
    out.push_str(rest);
    out
}

/// The length of a leading `line N column M` or `position N`, or 0.
fn skip_position(text: &str) -> usize {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    if let Some(rest) = text.strip_prefix("line ") {
        let line_digits = digits(rest);
        if line_digits > 0
            && let Some(col) = rest[line_digits..].strip_prefix(" column ")
            && digits(col) > 0
        {
            return "line ".len() + line_digits + " column ".len() + digits(col);
        }
    } else if let Some(rest) = text.strip_prefix("position ") {
        let n = digits(rest);
        if n > 0 {
            return "position ".len() + n;
        }
    }
    0
}
