//! What Rhai source reads of `record` and of `event`, from its text.

use super::PathStep;

/// One thing Rhai source reads of `record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `record.a.b`: the value at the path.
    Path(Vec<PathStep>),
    /// `"k" in record.a`: whether the key exists.
    Presence(Vec<PathStep>),
}

/// The `record.a.b` chains a Rhai source reads, or `None` when `record` is used in any way we
/// cannot see through (passed whole, indexed by an expression, iterated, …). Scanning the
/// text is conservative: `record` inside a string or comment only widens the need.
pub fn record_reads(src: &str) -> Option<Vec<Read>> {
    let bytes = src.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let code = code_mask(src);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(found) = src[i..].find("record") {
        let start = i + found;
        let end = start + "record".len();
        i = end;
        if !code[start] {
            continue;
        }
        let before_ok = start == 0 || !(is_ident(bytes[start - 1]) || bytes[start - 1] == b'.');
        let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
        if !before_ok || !after_ok {
            continue;
        }
        // Follow `.name` / `?.name` steps.
        let mut path = Vec::new();
        let mut j = end;
        loop {
            let dot = if src[j..].starts_with("?.") {
                2
            } else if src[j..].starts_with('.') {
                1
            } else {
                break;
            };
            let name_start = j + dot;
            let name_end = name_start
                + bytes[name_start..]
                    .iter()
                    .take_while(|b| is_ident(**b))
                    .count();
            if name_end == name_start {
                return None;
            }
            // A method call (`record.items.len()`) reads what comes before it, whole.
            if bytes.get(name_end) == Some(&b'(') {
                break;
            }
            path.push(PathStep::Name(src[name_start..name_end].to_string()));
            j = name_end;
        }
        // `"key" in record.a`: only the key's presence is read, when nothing follows the chain
        // that could use the value.
        if let Some(key) = tested_key(&src[..start]) {
            path.push(PathStep::Name(key));
            out.push(Read::Presence(path));
            continue;
        }
        if path.is_empty() {
            return None;
        }
        out.push(Read::Path(path));
    }
    Some(out)
}

/// Whether Rhai source reads the body through `event` (`event.body`, or `event` whole).
/// Reading `event.id`, `.pipeline`, `.headers` or `.received_at` does not count.
pub fn reads_event_body(src: &str) -> bool {
    let bytes = src.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let code = code_mask(src);
    let mut from = 0;
    while let Some(found) = src[from..].find("event") {
        let start = from + found;
        let end = start + "event".len();
        from = end;
        if !code[start] {
            continue;
        }
        if (start > 0 && (is_ident(bytes[start - 1]) || bytes[start - 1] == b'.'))
            || bytes.get(end).is_some_and(|b| is_ident(*b))
        {
            continue;
        }
        let rest = src[end..].trim_start_matches('?');
        let harmless = ["id", "pipeline", "headers", "received_at"]
            .iter()
            .any(|field| {
                rest.strip_prefix('.')
                    .and_then(|r| r.strip_prefix(field))
                    .is_some_and(|r| !r.bytes().next().is_some_and(is_ident))
            });
        if !harmless {
            return true;
        }
    }
    false
}

/// For each byte of Rhai source: is it code, rather than inside a comment or a plain string
/// literal? Words in comments ("the record made by …") must not count as uses. Backtick strings
/// count as code: their `${…}` parts are code, and a word in their text only widens a need.
fn code_mask(src: &str) -> Vec<bool> {
    let b = src.as_bytes();
    let mut mask = vec![true; b.len() + 1];
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter()
                .position(|c| *c == b'\n')
                .map_or(b.len(), |p| i + p)
        } else if rest.starts_with(b"/*") {
            src[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2)
        } else if rest[0] == b'"' || rest[0] == b'\'' {
            let quote = rest[0];
            let mut j = i + 1;
            while j < b.len() && b[j] != quote {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        } else {
            i += 1;
            continue;
        };
        mask[i..end].iter_mut().for_each(|m| *m = false);
        i = end.max(i + 1);
    }
    mask
}

/// The string literal of an `"key" in` that ends `before`, if that is how it ends.
fn tested_key(before: &str) -> Option<String> {
    let rest = before.trim_end().strip_suffix("in")?;
    if rest.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let rest = rest.trim_end().strip_suffix('"')?;
    let open = rest.rfind('"')?;
    let key = &rest[open + 1..];
    (!key.contains('\\')).then(|| key.to_string())
}
