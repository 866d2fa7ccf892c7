//! A byte reader over a query's text, shared by the fast path's reader and the evaluator's
//! parser: blanks, names, integers and string literals with their escapes. It must not know
//! the grammar around those tokens.

pub(super) struct Reader<'s> {
    pub(super) s: &'s [u8],
    pub(super) src: &'s str,
    pub(super) i: usize,
}

impl Reader<'_> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// `member-name-shorthand`: ALPHA / "_" / non-ASCII, then those or DIGIT.
    pub(super) fn shorthand_name(&mut self) -> Option<String> {
        let rest = self.src.get(self.i..)?;
        let len = rest
            .char_indices()
            .find(|&(at, c)| {
                let ok = c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
                !(ok || (at > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(at, _)| at);
        if len == 0 {
            return None;
        }
        self.i += len;
        Some(rest[..len].to_owned())
    }

    /// An integer index; the engine has already checked its form and range.
    pub(super) fn int(&mut self) -> Option<i64> {
        let start = self.i;
        self.eat(b'-');
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.src.get(start..self.i)?.parse().ok()
    }

    /// The rest of a string literal opened by `quote`, unescaped.
    pub(super) fn string(&mut self, quote: u8) -> Option<String> {
        let mut out = String::new();
        let rest = self.src.get(self.i..)?;
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        '/' | '\\' | '\'' | '"' => e,
                        'u' => {
                            let hi = hex4(&mut chars)?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if chars.next()?.1 != '\\' || chars.next()?.1 != 'u' {
                                    return None;
                                }
                                let lo = hex4(&mut chars)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(hi)?
                            }
                        }
                        _ => return None,
                    });
                }
                c if c == char::from(quote) => {
                    self.i += at + 1;
                    return Some(out);
                }
                c => out.push(c),
            }
        }
        None
    }
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let mut n = 0;
    for _ in 0..4 {
        n = n * 16 + chars.next()?.1.to_digit(16)?;
    }
    Some(n)
}
