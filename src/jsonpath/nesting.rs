//! Guards on a query's text before the `serde_json_path` engine reads it: nesting bounded
//! (its parser recurses, and its time doubles per filter inside a filter), string literals
//! closed, and `\uXXXX` escapes in the case it accepts. It must not parse or judge a query
//! beyond that.

use std::borrow::Cow;

use super::JsonPathError;

/// Deepest nesting of `[` and `(` accepted, counted together (stack guard).
const MAX_NESTING: usize = 64;
/// Deepest nesting of `[` alone: `$[?@[?@[?…]]]`. The engine's parse time doubles per level.
const MAX_BRACKET_NESTING: usize = 8;

/// Rejects queries nested deeper than the engine handles safely, pointing at the opening
/// bracket that goes too deep, and string literals left open: the engine's parser panics
/// when the text ends inside a `\u` escape (`$["\u`). String literals are skipped.
pub(super) fn check_nesting(src: &str) -> Result<(), JsonPathError> {
    let mut depth = 0usize;
    let mut brackets = 0usize;
    let mut quote: Option<u8> = None;
    let mut quote_at = 0;
    let mut escaped = false;
    for (offset, b) in src.bytes().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => {
                quote = Some(b);
                quote_at = offset;
            }
            b'[' | b'(' => {
                depth += 1;
                if b == b'[' {
                    brackets += 1;
                }
                if brackets > MAX_BRACKET_NESTING {
                    return Err(JsonPathError {
                        message: format!("brackets nest more than {MAX_BRACKET_NESTING} deep"),
                        offset,
                    });
                }
                if depth > MAX_NESTING {
                    return Err(JsonPathError {
                        message: format!(
                            "brackets and parentheses nest more than {MAX_NESTING} deep"
                        ),
                        offset,
                    });
                }
            }
            b']' | b')' => {
                depth = depth.saturating_sub(1);
                if b == b']' {
                    brackets = brackets.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err(JsonPathError {
            message: "the string is not closed".into(),
            offset: quote_at,
        });
    }
    Ok(())
}

/// Writes the hex digits of `\uXXXX` escapes in string literals in upper case, which changes
/// no meaning (RFC 9535's ABNF is case-insensitive there) but is needed because the engine
/// refuses a lower-case high surrogate: `$['\ud83d\ude00']`. Same length, so error offsets
/// still point into `src`.
pub(crate) fn upper_hex_escapes(src: &str) -> Cow<'_, str> {
    if !src.contains("\\u") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len());
    let mut quote = None;
    let mut escaped = false;
    let mut hex_left = 0;
    for mut c in src.chars() {
        if let Some(q) = quote {
            if hex_left > 0 {
                hex_left -= 1;
                c = c.to_ascii_uppercase();
            } else if escaped {
                escaped = false;
                if c == 'u' {
                    hex_left = 4;
                }
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
        }
        out.push(c);
    }
    Cow::Owned(out)
}
