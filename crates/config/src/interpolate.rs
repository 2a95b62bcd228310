//! `${NAME}` interpolation of environment variables into the YAML text.
//!
//! Interpolation happens on the text, before YAML parsing, so a variable can stand anywhere
//! a value can (including `port: ${PORT}`), and it keeps every line where it was, so line
//! numbers in later errors stay right. To keep a value from changing the structure of the
//! document (a secret containing `: ` or ` #` or a quote), values are inserted *escaped for
//! the scalar they land in*:
//!
//! - in a plain (unquoted) scalar, the whole scalar is rewritten as a double-quoted string,
//!   so `host: db-${REGION}` becomes `host: "db-eu1"`; numeric and boolean settings accept
//!   such strings;
//! - inside `"..."`, the value is escaped (`\"`, `\\`, `\n`, ...);
//! - inside `'...'`, quotes are doubled; a line break cannot be written there and is an error;
//! - inside a `|` or `>` block scalar, the value is inserted as is; a line break is an error.
//!
//! Only `${NAME}` is recognised, where NAME is letters, digits and `_` and does not start
//! with a digit. Any other `$` is kept literally; a `${` that does not form such a reference
//! is an error, so there is no way to write a literal `${` except through a variable's value
//! (values are not scanned again). Comments are not interpolated.
//! An unset variable is an error that names it, with its line and column.

use std::borrow::Cow;

/// A problem found while interpolating, at a 1-based line and column of the original text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub(crate) message: String,
}

/// The interpolated text and how to map its positions back to the original.
#[derive(Debug)]
pub(crate) struct Interpolated<'a> {
    pub(crate) text: Cow<'a, str>,
    edits: Vec<Edit>,
}

/// A span of one line that was replaced, in 0-based character columns.
#[derive(Clone, Copy, Debug)]
struct Edit {
    line: usize,
    old_start: usize,
    old_end: usize,
    new_start: usize,
    new_end: usize,
}

impl Interpolated<'_> {
    /// Maps a 1-based column of the interpolated text to one of the original text.
    /// Positions inside a replaced span map to the start of the span.
    pub(crate) fn original_col(&self, line: usize, col: usize) -> usize {
        let col0 = col.saturating_sub(1);
        let mut shift: isize = 0;
        for edit in self.edits.iter().filter(|e| e.line == line) {
            if col0 < edit.new_start {
                break;
            }
            if col0 < edit.new_end {
                return edit.old_start + 1;
            }
            // `new_end` already includes the shifts of earlier edits on the line.
            shift = edit.new_end as isize - edit.old_end as isize;
        }
        (col0 as isize - shift).max(0) as usize + 1
    }
}

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`.
pub(crate) fn interpolate<'a>(
    text: &'a str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated<'a>, Vec<Problem>> {
    if !text.contains("${") {
        return Ok(Interpolated {
            text: Cow::Borrowed(text),
            edits: Vec::new(),
        });
    }
    let mut scanner = Scanner {
        lookup,
        quote: None,
        flow_depth: 0,
        block_scalar: None,
        out: String::with_capacity(text.len()),
        out_col: 0,
        edits: Vec::new(),
        problems: Vec::new(),
    };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let chars: Vec<char> = content.chars().collect();
        scanner.out_col = 0;
        scanner.line(index + 1, &chars);
        scanner.out.push_str(&line[content.len()..]);
    }
    if scanner.problems.is_empty() {
        Ok(Interpolated {
            text: Cow::Owned(scanner.out),
            edits: scanner.edits,
        })
    } else {
        Err(scanner.problems)
    }
}

/// Where a placeholder's value lands, which decides how it is escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Double,
    Single,
    Block,
}

struct Scanner<'l> {
    lookup: &'l dyn Fn(&str) -> Option<String>,
    /// The quote of a quoted scalar still open at the end of the previous line.
    quote: Option<char>,
    flow_depth: usize,
    /// Inside a block scalar whose parent node starts at this column.
    block_scalar: Option<usize>,
    out: String,
    /// Characters written to `out` on the current line.
    out_col: usize,
    edits: Vec<Edit>,
    problems: Vec<Problem>,
}

impl Scanner<'_> {
    fn push(&mut self, c: char) {
        self.out.push(c);
        self.out_col += 1;
    }

    fn push_str(&mut self, s: &str) {
        self.out.push_str(s);
        self.out_col += s.chars().count();
    }

    fn line(&mut self, line_no: usize, chars: &[char]) {
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        if let Some(parent_col) = self.block_scalar {
            if chars.iter().all(|c| c.is_whitespace()) || indent > parent_col {
                self.quoted(line_no, chars, 0, Context::Block);
                return;
            }
            self.block_scalar = None;
        }
        let mut i = 0;
        while i < chars.len() {
            if let Some(quote) = self.quote {
                let context = if quote == '"' {
                    Context::Double
                } else {
                    Context::Single
                };
                i = self.quoted(line_no, chars, i, context);
                continue;
            }
            let c = chars[i];
            let next_is_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            match c {
                ' ' | '\t' => self.push(c),
                '#' if i == 0 || chars[i - 1].is_whitespace() => {
                    chars[i..].iter().for_each(|c| self.push(*c));
                    return;
                }
                '"' | '\'' => {
                    self.quote = Some(c);
                    self.push(c);
                }
                '[' | '{' => {
                    self.flow_depth += 1;
                    self.push(c);
                }
                ']' | '}' => {
                    self.flow_depth = self.flow_depth.saturating_sub(1);
                    self.push(c);
                }
                ',' if self.flow_depth > 0 => self.push(c),
                '-' | '?' | ':' if next_is_space => self.push(c),
                '|' | '>' if self.flow_depth == 0 => {
                    self.block_scalar = Some(block_parent_col(chars, indent, i));
                    chars[i..].iter().for_each(|c| self.push(*c));
                    return;
                }
                '&' | '!' | '*' => {
                    while i < chars.len() && !chars[i].is_whitespace() {
                        self.push(chars[i]);
                        i += 1;
                    }
                    continue;
                }
                _ => {
                    i = self.plain(line_no, chars, i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Copies a plain scalar starting at `chars[start]`, rewriting it as a double-quoted
    /// string when it holds a reference. Returns the index after the scalar.
    fn plain(&mut self, line_no: usize, chars: &[char], start: usize) -> usize {
        let in_flow = self.flow_depth > 0;
        let mut end = start;
        while end < chars.len() {
            let c = chars[end];
            let next = chars.get(end + 1);
            let ends_at_colon = c == ':'
                && next.is_none_or(|n| n.is_whitespace() || (in_flow && ",[]{}".contains(*n)));
            let ends_at_comment = c == '#' && end > start && chars[end - 1].is_whitespace();
            if ends_at_colon || ends_at_comment || (in_flow && ",[]{}".contains(c)) {
                break;
            }
            end = match reference_end(chars, end) {
                Some(after) => after,
                None => end + 1,
            };
        }
        while end > start && chars[end - 1].is_whitespace() {
            end -= 1;
        }
        if end == start {
            // An indicator in a place YAML will reject anyway (`a:{`): copy it and move on.
            self.push(chars[start]);
            return start + 1;
        }
        let scalar = &chars[start..end];
        if !scalar.windows(2).any(|w| w == ['$', '{']) {
            scalar.iter().for_each(|c| self.push(*c));
            return end;
        }
        let new_start = self.out_col;
        self.push('"');
        let mut i = start;
        while i < end {
            match self.reference(line_no, chars, i) {
                Some((after, value)) => {
                    self.push_str(&escape_double(&value));
                    i = after;
                }
                None => {
                    self.push_str(&escape_double(&chars[i].to_string()));
                    i += 1;
                }
            }
        }
        self.push('"');
        self.edits.push(Edit {
            line: line_no,
            old_start: start,
            old_end: end,
            new_start,
            new_end: self.out_col,
        });
        end
    }

    /// Copies the inside of a quoted or block scalar from `chars[start]` up to and including
    /// its closing quote (or to the end of the line), substituting references in place.
    fn quoted(&mut self, line_no: usize, chars: &[char], start: usize, context: Context) -> usize {
        let mut i = start;
        while i < chars.len() {
            let c = chars[i];
            if context == Context::Double && c == '\\' {
                self.push(c);
                if let Some(escaped) = chars.get(i + 1) {
                    self.push(*escaped);
                }
                i += 2;
                continue;
            }
            let quote = match context {
                Context::Double => Some('"'),
                Context::Single => Some('\''),
                Context::Block => None,
            };
            if Some(c) == quote {
                if c == '\'' && chars.get(i + 1) == Some(&'\'') {
                    self.push_str("''");
                    i += 2;
                    continue;
                }
                self.push(c);
                self.quote = None;
                return i + 1;
            }
            match self.reference(line_no, chars, i) {
                Some((after, value)) => {
                    let replacement = match context {
                        Context::Double => escape_double(&value),
                        Context::Single | Context::Block => {
                            if value.contains(['\n', '\r']) {
                                let name: String = chars[i + 2..after - 1].iter().collect();
                                self.problem(line_no, i, line_break_message(&name, context));
                            }
                            if context == Context::Single {
                                value.replace('\'', "''")
                            } else {
                                value
                            }
                        }
                    };
                    let new_start = self.out_col;
                    self.push_str(&replacement);
                    self.edits.push(Edit {
                        line: line_no,
                        old_start: i,
                        old_end: after,
                        new_start,
                        new_end: self.out_col,
                    });
                    i = after;
                }
                None => {
                    self.push(c);
                    i += 1;
                }
            }
        }
        i
    }

    /// If `chars[i..]` starts a reference, resolves it and returns the index after it and
    /// its value. A malformed or unset reference is recorded as a problem (and resolves to
    /// the empty string so scanning can go on and find further problems).
    fn reference(&mut self, line_no: usize, chars: &[char], i: usize) -> Option<(usize, String)> {
        if chars[i] != '$' || chars.get(i + 1) != Some(&'{') {
            return None;
        }
        let Some(after) = reference_end(chars, i) else {
            let shown: String = chars[i..].iter().take(24).collect();
            self.problem(
                line_no,
                i,
                format!(
                    "malformed variable reference `{shown}`: write `${{NAME}}` where NAME is \
                     letters, digits and `_`"
                ),
            );
            return Some((i + 2, String::new()));
        };
        let name: String = chars[i + 2..after - 1].iter().collect();
        match (self.lookup)(&name) {
            Some(value) => Some((after, value)),
            None => {
                self.problem(
                    line_no,
                    i,
                    format!("environment variable `{name}` is not set"),
                );
                Some((after, String::new()))
            }
        }
    }

    fn problem(&mut self, line: usize, index: usize, message: String) {
        self.problems.push(Problem {
            line,
            col: index + 1,
            message,
        });
    }
}

/// Returns the index after a well-formed `${NAME}` starting at `chars[i]`.
fn reference_end(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'$') || chars.get(i + 1) != Some(&'{') {
        return None;
    }
    let close = i + 2 + chars[i + 2..].iter().position(|c| *c == '}')?;
    let name = &chars[i + 2..close];
    let valid = name
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
        && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == '_');
    valid.then_some(close + 1)
}

/// The column a block scalar's content must be indented past: that of the key it belongs
/// to, or of the `-` when the scalar is a sequence item itself.
fn block_parent_col(chars: &[char], indent: usize, indicator: usize) -> usize {
    let mut col = indent;
    let mut last_dash = indent;
    while chars.get(col) == Some(&'-') && chars.get(col + 1).is_none_or(|c| c.is_whitespace()) {
        last_dash = col;
        col += 1;
        while chars.get(col).is_some_and(|c| *c == ' ') {
            col += 1;
        }
    }
    if col == indicator { last_dash } else { col }
}

fn line_break_message(name: &str, context: Context) -> String {
    let place = match context {
        Context::Single => "a single-quoted string",
        _ => "a block scalar",
    };
    format!(
        "environment variable `{name}` contains a line break, which cannot be inserted into \
         {place}; use a double-quoted string (\"${{{name}}}\") or a plain value"
    )
}

/// Escapes `value` for the inside of a YAML double-quoted scalar, keeping it on one line.
fn escape_double(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("5432".into()),
            "PW" => Some("se\"cr: #et".into()),
            "Q" => Some("it's".into()),
            "NL" => Some("a\nb".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, Vec<Problem>> {
        interpolate(text, &env).map(|i| i.text.into_owned())
    }

    #[test]
    fn plain_scalars_become_double_quoted() {
        assert_eq!(run("port: ${PORT}\n").unwrap(), "port: \"5432\"\n");
        assert_eq!(
            run("password: ${PW} # c ${X}\n").unwrap(),
            "password: \"se\\\"cr: #et\" # c ${X}\n"
        );
        assert_eq!(
            run("host: db-${PORT}.x\n").unwrap(),
            "host: \"db-5432.x\"\n"
        );
        assert_eq!(
            run("- { a: ${PORT}, b: ${EMPTY} }\n").unwrap(),
            "- { a: \"5432\", b: \"\" }\n"
        );
        assert_eq!(run("a: b$c\r\n").unwrap(), "a: b$c\r\n");
    }

    #[test]
    fn quoted_and_block_scalars_are_escaped_in_place() {
        assert_eq!(run("a: \"x${PW}\"\n").unwrap(), "a: \"xse\\\"cr: #et\"\n");
        assert_eq!(run("a: '${Q}'\n").unwrap(), "a: 'it''s'\n");
        assert_eq!(run("a: \"${NL}\"\n").unwrap(), "a: \"a\\nb\"\n");
        assert_eq!(
            run("q: |\n  select ${PORT}\nb: ${PORT}\n").unwrap(),
            "q: |\n  select 5432\nb: \"5432\"\n"
        );
    }

    #[test]
    fn problems_name_the_variable_and_position() {
        let problems = run("a: 1\nb: ${NOPE} ${ALSO}\nc: '${NL}'\nd: ${1X}\n").unwrap_err();
        let got: Vec<(usize, usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.col, p.message.as_str()))
            .collect();
        assert_eq!(got[0], (2, 4, "environment variable `NOPE` is not set"));
        assert_eq!(got[1], (2, 12, "environment variable `ALSO` is not set"));
        assert_eq!((got[2].0, got[2].1), (3, 5));
        assert!(
            got[2].2.contains("`NL` contains a line break"),
            "{}",
            got[2].2
        );
        assert_eq!((got[3].0, got[3].1), (4, 4));
        assert!(
            got[3].2.starts_with("malformed variable reference `${1X}`"),
            "{}",
            got[3].2
        );
    }

    #[test]
    fn stray_indicators_do_not_stall_the_scanner() {
        // Regression: a `:` directly before a flow indicator used to be an empty plain
        // scalar, and the scanner never moved past it.
        assert_eq!(
            run("a: { b:{ ${PORT} }\n").unwrap(),
            "a: { b:{ \"5432\" }\n"
        );
    }

    #[test]
    fn columns_map_back() {
        let i = interpolate("- { a: ${PORT}, b: zz }\n", &env).unwrap();
        // `zz` is at column 20 in the original and 19 after `${PORT}` became `"5432"`.
        assert_eq!(i.text, "- { a: \"5432\", b: zz }\n");
        assert_eq!(i.original_col(1, 19), 20);
        assert_eq!(i.original_col(1, 8), 8);
        assert_eq!(i.original_col(1, 10), 8);
        assert_eq!(i.original_col(1, 3), 3);
    }
}
