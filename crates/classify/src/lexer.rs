//! A small PostgreSQL lexer: words, semicolons and "other", skipping comments, string
//! literals (standard, E'', dollar-quoted) and quoted identifiers. It never fails: unterminated
//! literals and comments simply run to the end of the input.

/// One token of interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted word (keyword or identifier) as written; compare case-insensitively.
    Word(&'a str),
    /// A `;` outside literals and comments: a statement boundary.
    Semicolon,
    /// A dollar-quoted body (`$$...$$` or `$tag$...$tag$`), contents included.
    DollarBody(&'a str),
    /// Anything else that is not whitespace, a comment or a literal (operators, numbers,
    /// parentheses, quoted identifiers, string literals).
    Other,
}

/// Iterator over the [`Token`]s of a SQL string.
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Tokens<'a> {
    /// Lexes `src`.
    pub fn new(src: &'a str) -> Self {
        Tokens { src, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.bytes().get(self.pos + off).copied()
    }

    /// Skips to just after the next unescaped `quote` (`''` and `""` are escapes).
    fn skip_quoted(&mut self, quote: u8, backslash_escapes: bool) {
        let b = self.bytes();
        while self.pos < b.len() {
            let c = b[self.pos];
            self.pos += 1;
            if backslash_escapes && c == b'\\' {
                self.pos += 1;
            } else if c == quote {
                if b.get(self.pos) == Some(&quote) {
                    self.pos += 1;
                } else {
                    return;
                }
            }
        }
        self.pos = b.len();
    }

    /// Skips a (nestable) block comment; `self.pos` is just after the opening `/*`.
    fn skip_block_comment(&mut self) {
        let b = self.bytes();
        let mut depth = 1usize;
        while self.pos < b.len() {
            if b[self.pos] == b'/' && b.get(self.pos + 1) == Some(&b'*') {
                depth += 1;
                self.pos += 2;
            } else if b[self.pos] == b'*' && b.get(self.pos + 1) == Some(&b'/') {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// At a `$`: a dollar-quote opener `$tag$` returns its body; otherwise `None` and nothing
    /// is consumed (a parameter such as `$1`).
    fn dollar_body(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        let start = self.pos;
        let mut end = start + 1;
        while end < b.len() && (b[end] == b'_' || b[end].is_ascii_alphabetic() || b[end] >= 0x80) {
            end += 1;
        }
        if b.get(end) != Some(&b'$') {
            return None;
        }
        // A tag cannot start with a digit; `$1$` is not a dollar quote, the loop above already
        // refused digits.
        let tag = &self.src[start..=end];
        let body_start = end + 1;
        match self.src[body_start..].find(tag) {
            Some(rel) => {
                self.pos = body_start + rel + tag.len();
                Some(&self.src[body_start..body_start + rel])
            }
            None => {
                self.pos = b.len();
                Some(&self.src[body_start..])
            }
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic() || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == b'$'
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let c = self.peek(0)?;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.pos += 1,
                b'-' if self.peek(1) == Some(b'-') => {
                    let rest = &self.src[self.pos..];
                    self.pos += rest.find('\n').unwrap_or(rest.len());
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    self.pos += 2;
                    self.skip_block_comment();
                }
                b';' => {
                    self.pos += 1;
                    return Some(Token::Semicolon);
                }
                b'\'' => {
                    self.pos += 1;
                    self.skip_quoted(b'\'', false);
                    return Some(Token::Other);
                }
                b'"' => {
                    self.pos += 1;
                    self.skip_quoted(b'"', false);
                    return Some(Token::Other);
                }
                b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                    self.pos += 2;
                    self.skip_quoted(b'\'', true);
                    return Some(Token::Other);
                }
                b'$' => {
                    if let Some(body) = self.dollar_body() {
                        return Some(Token::DollarBody(body));
                    }
                    self.pos += 1;
                    while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                    return Some(Token::Other);
                }
                c if is_word_start(c) => {
                    let start = self.pos;
                    while self.peek(0).is_some_and(is_word_char) {
                        self.pos += 1;
                    }
                    // Multi-byte characters are >= 0x80 throughout, so `pos` stays on a char
                    // boundary.
                    return Some(Token::Word(&self.src[start..self.pos]));
                }
                _ => {
                    self.pos += 1;
                    return Some(Token::Other);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        Tokens::new(sql)
            .map(|t| match t {
                Token::Word(w) => w.to_owned(),
                Token::Semicolon => ";".into(),
                Token::DollarBody(b) => format!("$[{b}]"),
                Token::Other => "·".into(),
            })
            .collect()
    }

    #[test]
    fn skips_literals_and_comments() {
        let cases: &[(&str, &str)] = &[
            ("SELECT 1", "SELECT ·"),
            ("select 'set x' -- set y\n; reset", "select · ; reset"),
            ("/* set /* nested */ still */ show", "show"),
            ("E'it\\'s; set' x", "· x"),
            ("'it''s; set' x", "· x"),
            ("\"set\" x", "· x"),
            (
                "do $$ begin set x; end $$; select $1",
                "do $[ begin set x; end ] ; select ·",
            ),
            ("$fn$ a $$ b $fn$ c", "$[ a $$ b ] c"),
            ("'unterminated ; set", "·"),
            ("/* unterminated ; set", ""),
            ("$$ unterminated", "$[ unterminated]"),
            ("SELECT é; ünïcode", "SELECT é ; ünïcode"),
            ("a.b::int", "a · b · · int"),
        ];
        for (sql, want) in cases {
            assert_eq!(words(sql).join(" "), *want, "lexing {sql:?}");
        }
    }
}
