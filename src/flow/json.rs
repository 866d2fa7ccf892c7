//! An outcome as JSON (`dry-run --format json`, the admin API's dry run): the one place that
//! knows its shape, `{pipeline, event_id, triggered, filtered?, record, actions, state_changes,
//! errors}`.
//!
//! Values are written here rather than through serde: records and payloads are most of a dry
//! run's output, and serde_json's serializer spent a seventh of the process's instructions on
//! them, mostly per string (a table lookup per byte, three buffer writes). [`value`] writes
//! byte for byte what `serde_json::to_vec` writes, compact and with the same escapes; the tests
//! compare the two.

use std::ops::Range;

use serde_json::Value;

use super::{Action, Outcome};

impl Outcome {
    /// Appends the outcome's JSON to `out`. Payloads lent to actions
    /// ([`super::Keep::Lent`]) are written in their places in the record and
    /// copied from there into their actions: serialised once for both.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"pipeline\":");
        string(out, &self.pipeline);
        out.extend_from_slice(b",\"event_id\":");
        string(out, &self.event_id);
        out.extend_from_slice(if self.triggered {
            b",\"triggered\":true"
        } else {
            b",\"triggered\":false"
        });
        if self.filtered {
            out.extend_from_slice(b",\"filtered\":true");
        }
        out.extend_from_slice(b",\"record\":");
        let lent: Vec<(&[String], usize)> = self
            .lent
            .iter()
            .filter(|(i, _)| *i < self.actions.len())
            .map(|(i, path)| (&path[..], *i))
            .collect();
        // Where in `out` each lent payload was written.
        let mut spans: Vec<Option<Range<usize>>> = vec![None; self.actions.len()];
        Lent {
            actions: &self.actions,
            spans: &mut spans,
        }
        .write(out, Some(&self.record), &lent);
        out.extend_from_slice(b",\"actions\":[");
        for (n, (action, span)) in self.actions.iter().zip(spans).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"connector\":");
            string(out, &action.connector);
            out.extend_from_slice(b",\"op\":");
            string(out, &action.op);
            if let Some(object) = &action.object {
                out.extend_from_slice(b",\"object\":");
                string(out, object);
            }
            if let Some(key) = &action.key {
                out.extend_from_slice(b",\"key\":");
                string(out, key);
            }
            out.extend_from_slice(b",\"payload\":");
            match span {
                Some(span) => out.extend_from_within(span),
                None => value(out, &action.payload),
            }
            out.push(b'}');
        }
        // Few and small: serde is fine for these.
        out.extend_from_slice(b"],\"state_changes\":");
        serde_json::to_writer(&mut *out, &self.state_changes)?;
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut *out, &self.errors)?;
        out.push(b'}');
        Ok(())
    }

    /// The outcome's JSON as text.
    pub fn to_json(&self) -> serde_json::Result<String> {
        let mut out = Vec::new();
        self.write_json(&mut out)?;
        // Only strings from `&str`s and ASCII were written.
        String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
    }
}

/// Writing a record with payloads lent out of it put back in place.
struct Lent<'a> {
    actions: &'a [Action],
    /// Filled in as lent payloads are written.
    spans: &'a mut [Option<Range<usize>>],
}

impl Lent<'_> {
    /// Writes `record` (`None`: a key that is not there) with the payloads of the actions in
    /// `lent` at their paths below it. Keys come out in order, as a `serde_json` object has
    /// them.
    fn write(&mut self, out: &mut Vec<u8>, record: Option<&Value>, lent: &[(&[String], usize)]) {
        if let Some((_, i)) = lent.iter().find(|(path, _)| path.is_empty()) {
            let start = out.len();
            value(out, &self.actions[*i].payload);
            self.spans[*i] = Some(start..out.len());
            return;
        }
        let fields = match record {
            _ if lent.is_empty() => return value(out, record.unwrap_or(&Value::Null)),
            Some(Value::Object(fields)) => Some(fields),
            None => None,
            // Payloads are lent only from inside objects: nothing else has one below it.
            Some(other) => return value(out, other),
        };
        let mut keys: Vec<&str> = fields
            .into_iter()
            .flat_map(|f| f.keys().map(String::as_str))
            .chain(lent.iter().map(|(path, _)| path[0].as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        out.push(b'{');
        for (n, key) in keys.into_iter().enumerate() {
            entry(out, n, key);
            let below: Vec<(&[String], usize)> = lent
                .iter()
                .filter(|(path, _)| path[0] == key)
                .map(|(path, i)| (&path[1..], *i))
                .collect();
            self.write(out, fields.and_then(|f| f.get(key)), &below);
        }
        out.push(b'}');
    }
}

/// Appends `v` as compact JSON, exactly as `serde_json::to_vec` writes it.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // With `arbitrary_precision` a number is kept as its text, which serde_json writes.
        Value::Number(n) => out.extend_from_slice(n.as_str().as_bytes()),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (n, (key, item)) in fields.iter().enumerate() {
                entry(out, n, key);
                value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Starts entry `n` (from 0) of an object: the comma before all but the first, key and colon.
fn entry(out: &mut Vec<u8>, n: usize, key: &str) {
    if n > 0 {
        out.push(b',');
    }
    string(out, key);
    out.push(b':');
}

/// Whether serde_json escapes this byte in a string.
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` is escaped, eight at a time: most strings need no escape and are
/// then copied whole, and most are short, where a vectorised loop never leaves its scalar tail.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte of the result is set if that byte of `x` is below `n` (for
    // n <= 0x80), and some high bit is set exactly when some byte is.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let word = |x: u64| {
        below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        if word(u64::from_ne_bytes(eight)) != 0 {
            return true;
        }
    }
    // The tail, padded with a byte that needs no escape.
    let tail = chunks.remainder();
    let mut eight = [b' '; 8];
    eight[..tail.len()].copy_from_slice(tail);
    word(u64::from_ne_bytes(eight)) != 0
}

/// Appends `s` as a JSON string with serde_json's escapes: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`,
/// `\r`, other control characters as `\u00xx`; nothing else (not `/`, not non-ASCII).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !escaped(b) {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_serde(v: &Value) {
        let mut ours = Vec::new();
        value(&mut ours, v);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(v).unwrap()
        );
    }

    #[test]
    fn every_character_below_128_and_some_above_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..128 {
            let c = char::from(b);
            same_as_serde(&Value::String(format!("{c}")));
            same_as_serde(&Value::String(format!("ab{c}cd{c}{c}e")));
        }
        for s in [
            "é",
            "€ 12,50",
            "日本語",
            "😀/\u{7f}\u{80}\u{2028}",
            "",
            "\"\\",
        ] {
            same_as_serde(&json!({ s: s, "list": [s, s] }));
        }
    }

    #[test]
    fn a_byte_to_escape_is_found_at_every_position_of_strings_up_to_twenty_bytes() {
        for len in 0..20 {
            assert!(!needs_escape(&vec![b'a'; len]));
            assert!(!needs_escape("é€😀~\u{7f}".repeat(len).as_bytes()));
            for at in 0..len {
                for b in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut bytes = vec![b'z'; len];
                    bytes[at] = b;
                    assert!(needs_escape(&bytes), "{bytes:?}");
                }
                for b in (0x20u8..=0xff).filter(|b| !escaped(*b)) {
                    let mut bytes = vec![b'!'; len];
                    bytes[at] = b;
                    assert!(!needs_escape(&bytes), "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn numbers_keep_their_text_and_values_their_shape() {
        let text = r#"{"big": 123456789012345678901234567890, "dec": "225.0000", "e": 1.5e300,
            "neg": -0.0, "f": 0.1, "nested": [[], {}, [null, true, false, {"a": [1, 2.50]}]],
            "z": {"y": {"x": "deep"}}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        same_as_serde(&v);
        same_as_serde(&json!(18446744073709551615u64));
        same_as_serde(&json!(-9223372036854775808i64));
        same_as_serde(&json!(0.30000000000000004));
    }

    #[test]
    fn the_webhook_fixtures_are_written_as_serde_json_writes_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seen = 0;
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    if let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) {
                        same_as_serde(&v);
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen >= 10, "only {seen} JSON fixtures found");
    }
}
