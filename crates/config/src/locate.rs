//! Finds where a key path such as `servers[1].port` is written in a YAML text.
//!
//! serde tells us *which* key is wrong only while it deserializes; validation runs later on
//! plain values, so it needs another way back to a line and a column. This is a small,
//! forgiving scanner for the block YAML people write in config files: nested mappings,
//! `- ` sequence items (indented or not), and flow collections such as `{ a: 1 }` or
//! `[1, 2]` when they fit on one line. It never fails; what it cannot follow, it skips,
//! and the caller then reports the error without a position.

/// An index from key paths to their positions in one YAML text.
#[derive(Clone, Debug, Default)]
pub struct Locator {
    entries: Vec<Entry>,
}

/// One key (or sequence item) and where it starts.
#[derive(Clone, Debug)]
struct Entry {
    path: String,
    /// 1-based line.
    line: usize,
    /// 1-based column, in characters.
    col: usize,
}

/// Finds the 1-based `(line, column)` of the key at `path` in `text`, or of its nearest
/// ancestor that is written there when the key itself is absent.
///
/// Paths use the form of error messages: `pool.size`, `servers[1].port`, `users[0]`.
/// Sequence items are located at their `- ` (or at their first character in a flow
/// sequence). Returns `None` when not even the top-level key is present.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    Locator::new(text).locate(path)
}

impl Locator {
    /// Scans `text` once; lookups are then cheap.
    pub fn new(text: &str) -> Locator {
        let mut scan = Scan {
            frames: vec![Frame {
                col: 0,
                path: String::new(),
                kind: Kind::Map,
            }],
            pending: None,
            block_scalar: None,
            entries: Vec::new(),
        };
        for (index, line) in text.lines().enumerate() {
            scan.line(index + 1, line);
        }
        Locator {
            entries: scan.entries,
        }
    }

    /// See [`locate`].
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        while !path.is_empty() {
            if let Some(entry) = self.entries.iter().find(|e| e.path == path) {
                return Some((entry.line, entry.col));
            }
            path = parent(path);
        }
        None
    }

    /// The path of the key written on `line` at or before `col` (the rightmost such key),
    /// or the first key on that line when all of them start after `col`.
    pub fn path_at(&self, line: usize, col: usize) -> Option<&str> {
        let on_line = self.entries.iter().filter(|e| e.line == line);
        let before = on_line
            .clone()
            .filter(|e| e.col <= col)
            .max_by_key(|e| e.col);
        before
            .or_else(|| on_line.min_by_key(|e| e.col))
            .map(|e| e.path.as_str())
    }
}

/// `servers[1].port` → `servers[1]` → `servers` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(index) => &path[..index],
        None => "",
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[derive(Debug)]
enum Kind {
    Map,
    Seq { next: usize },
}

/// An open block collection: its keys (or dashes) start at `col`.
#[derive(Debug)]
struct Frame {
    col: usize,
    path: String,
    kind: Kind,
}

struct Scan {
    frames: Vec<Frame>,
    /// A key or item whose value starts on a later line: `(column, path)`.
    pending: Option<(usize, String)>,
    /// Inside a `|` or `>` block scalar whose parent sits at this column.
    block_scalar: Option<usize>,
    entries: Vec<Entry>,
}

impl Scan {
    fn record(&mut self, path: String, line: usize, index: usize) {
        self.entries.push(Entry {
            path,
            line,
            col: index + 1,
        });
    }

    fn line(&mut self, line_no: usize, line: &str) {
        let chars: Vec<char> = strip_comment(line).trim_end().chars().collect();
        let indent = chars
            .iter()
            .take_while(|c| **c == ' ' || **c == '\t')
            .count();
        let blank = indent == chars.len();
        if let Some(parent_col) = self.block_scalar {
            if blank || indent > parent_col {
                return;
            }
            self.block_scalar = None;
        }
        if blank {
            return;
        }
        let text: String = chars.iter().collect();
        if text.starts_with("---") || text.starts_with("...") {
            self.frames.truncate(1);
            self.pending = None;
            return;
        }
        self.node(&chars, indent, line_no);
    }

    /// Handles what starts at `chars[col]`: sequence items, then a key, on one line.
    fn node(&mut self, chars: &[char], mut col: usize, line_no: usize) {
        while col < chars.len() {
            if !is_dash(chars, col) {
                self.key(chars, col, line_no);
                return;
            }
            let Some(item) = self.seq_item(col) else {
                return;
            };
            self.record(item.clone(), line_no, col);
            let next = skip_ws(chars, col + 1);
            self.pending = Some((col, item.clone()));
            if next >= chars.len() || is_dash(chars, next) {
                col = next;
                continue;
            }
            if matches!(chars[next], '{' | '[') {
                self.pending = None;
                self.flow(chars, next, &item, line_no);
                return;
            }
            if parse_key(chars, next).is_none() {
                self.pending = None;
                return;
            }
            self.pending = None;
            self.frames.push(Frame {
                col: next,
                path: item,
                kind: Kind::Map,
            });
            col = next;
        }
    }

    /// Opens or continues the sequence whose dashes are at `col`; returns the item's path.
    fn seq_item(&mut self, col: usize) -> Option<String> {
        while self.frames.len() > 1 && self.frames.last().is_some_and(|f| f.col > col) {
            self.frames.pop();
        }
        if let Some(Frame {
            col: c,
            path,
            kind: Kind::Seq { next },
        }) = self.frames.last_mut()
            && *c == col
        {
            let item = format!("{path}[{next}]");
            *next += 1;
            return Some(item);
        }
        let (pending_col, path) = self.pending.take()?;
        if pending_col > col {
            return None;
        }
        let item = format!("{path}[0]");
        self.frames.push(Frame {
            col,
            path,
            kind: Kind::Seq { next: 1 },
        });
        Some(item)
    }

    /// Handles `key: value` starting at `chars[col]`.
    fn key(&mut self, chars: &[char], col: usize, line_no: usize) {
        let Some((key, after_colon)) = parse_key(chars, col) else {
            return;
        };
        while self.frames.len() > 1
            && self.frames.last().is_some_and(|f| {
                f.col > col || (matches!(f.kind, Kind::Seq { .. }) && f.col >= col)
            })
        {
            self.frames.pop();
        }
        let Some(top) = self.frames.last() else {
            return;
        };
        let parent = if matches!(top.kind, Kind::Map) && top.col == col {
            top.path.clone()
        } else if top.col < col && self.pending.is_some() {
            let Some((_, path)) = self.pending.take() else {
                return;
            };
            self.frames.push(Frame {
                col,
                path: path.clone(),
                kind: Kind::Map,
            });
            path
        } else {
            return;
        };
        let path = join(&parent, &key);
        self.record(path.clone(), line_no, col);
        self.pending = None;
        let mut value = skip_ws(chars, after_colon);
        // Skip an anchor or a tag in front of the value.
        while value < chars.len() && matches!(chars[value], '&' | '!') {
            while value < chars.len() && !chars[value].is_whitespace() {
                value += 1;
            }
            value = skip_ws(chars, value);
        }
        match chars.get(value) {
            None => self.pending = Some((col, path)),
            Some('{' | '[') => {
                self.flow(chars, value, &path, line_no);
            }
            Some('|' | '>') => self.block_scalar = Some(col),
            Some(_) => {}
        }
    }

    /// Records the keys of a flow collection starting at `chars[start]`; returns the index
    /// just after the value.
    fn flow(&mut self, chars: &[char], start: usize, path: &str, line_no: usize) -> usize {
        let mut i = skip_ws(chars, start);
        match chars.get(i) {
            None => chars.len(),
            Some('{') => {
                i += 1;
                loop {
                    let before = i;
                    i = skip_ws(chars, i);
                    match chars.get(i) {
                        None => return chars.len(),
                        Some('}') => return i + 1,
                        Some(',') => i += 1,
                        Some(_) => {
                            let key_start = i;
                            let (key, after) = flow_key(chars, i);
                            let key_path = join(path, &key);
                            self.record(key_path.clone(), line_no, key_start);
                            i = skip_ws(chars, after);
                            if chars.get(i) == Some(&':') {
                                i = self.flow(chars, i + 1, &key_path, line_no);
                            }
                        }
                    }
                    if i == before {
                        i += 1;
                    }
                }
            }
            Some('[') => {
                i += 1;
                let mut index = 0;
                loop {
                    let before = i;
                    i = skip_ws(chars, i);
                    match chars.get(i) {
                        None => return chars.len(),
                        Some(']') => return i + 1,
                        Some(',') => i += 1,
                        Some(_) => {
                            let item = format!("{path}[{index}]");
                            index += 1;
                            self.record(item.clone(), line_no, i);
                            i = self.flow(chars, i, &item, line_no);
                        }
                    }
                    if i == before {
                        i += 1;
                    }
                }
            }
            Some(&quote @ ('"' | '\'')) => skip_quoted(chars, i, quote),
            Some(_) => {
                while i < chars.len() && !matches!(chars[i], ',' | ']' | '}') {
                    i = skip_reference(chars, i);
                }
                i
            }
        }
    }
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
        i += 1;
    }
    i
}

fn is_dash(chars: &[char], i: usize) -> bool {
    chars.get(i) == Some(&'-') && chars.get(i + 1).is_none_or(|c| *c == ' ' || *c == '\t')
}

/// Steps over one character, or over a whole `${NAME}` so its braces do not end a flow value.
fn skip_reference(chars: &[char], i: usize) -> usize {
    if chars[i] == '$'
        && chars.get(i + 1) == Some(&'{')
        && let Some(close) = chars[i..].iter().position(|c| *c == '}')
    {
        return i + close + 1;
    }
    i + 1
}

/// Returns the index just after the quoted scalar opening at `chars[start]`.
fn skip_quoted(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if quote == '"' && c == '\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if quote == '\'' && chars.get(i + 1) == Some(&'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// Parses a block mapping key at `chars[col]`: returns the key and the index after its `:`.
fn parse_key(chars: &[char], col: usize) -> Option<(String, usize)> {
    let first = *chars.get(col)?;
    if first == '"' || first == '\'' {
        let end = skip_quoted(chars, col, first);
        let key: String = chars[col + 1..end.saturating_sub(1).max(col + 1)]
            .iter()
            .collect();
        let colon = skip_ws(chars, end);
        let is_key = chars.get(colon) == Some(&':')
            && chars.get(colon + 1).is_none_or(|c| c.is_whitespace());
        return is_key.then_some((key, colon + 1));
    }
    if matches!(first, '{' | '[' | '|' | '>' | '*' | '#' | '?') {
        return None;
    }
    let mut i = col;
    while i < chars.len() {
        if chars[i] == ':' && chars.get(i + 1).is_none_or(|c| c.is_whitespace()) {
            let key: String = chars[col..i].iter().collect();
            return Some((key.trim_end().to_owned(), i + 1));
        }
        i = skip_reference(chars, i);
    }
    None
}

/// Parses a flow mapping key at `chars[start]`: returns the key and the index after it.
fn flow_key(chars: &[char], start: usize) -> (String, usize) {
    let first = chars[start];
    if first == '"' || first == '\'' {
        let end = skip_quoted(chars, start, first);
        let key: String = chars[start + 1..end.saturating_sub(1).max(start + 1)]
            .iter()
            .collect();
        return (key, end);
    }
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        let ends_key = c == ':'
            && chars
                .get(i + 1)
                .is_none_or(|n| n.is_whitespace() || ",[]{}".contains(*n));
        if ends_key || matches!(c, ',' | '}' | ']') {
            break;
        }
        i = skip_reference(chars, i);
    }
    let key: String = chars[start..i].iter().collect();
    (key.trim_end().to_owned(), i)
}

/// Cuts a `# comment` off a line, leaving `#` inside quoted scalars alone.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => {
                if q == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => {
                let boundary = prev.is_none_or(|p| p.is_whitespace() || "[{,:".contains(p));
                if (c == '"' || c == '\'') && boundary {
                    quote = Some(c);
                } else if c == '#' && prev.is_none_or(char::is_whitespace) {
                    return &line[..index];
                }
            }
        }
        prev = Some(c);
    }
    line
}

#[cfg(test)]
mod tests;
