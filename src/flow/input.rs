//! Turning input files into event bodies: one JSON document, JSON lines, or CSV rows.
//!
//! Used by `dry-run` and pipeline tests; the `file` source of the runtime reads drops the same
//! way. Every event decodes on its own, so one bad line is one bad event, not a failed file.

use serde_json::{Map, Value};

use crate::config::model::{FileFormat, SourceConfig};

/// How to split an input into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// The whole input is one JSON document.
    Json,
    /// One JSON document per non-blank line.
    JsonLines,
    /// A header row, then one event per row: an object of column name to string.
    Csv { delimiter: u8 },
    /// One document if the whole input parses as one, else JSON lines (for stdin).
    Auto,
}

impl InputFormat {
    /// Picks the format from a file's extension; CSV takes the pipeline's delimiter if its
    /// source is a CSV file drop.
    pub fn for_path(path: &str, source: Option<&SourceConfig>) -> InputFormat {
        let ext = path
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "json" => InputFormat::Json,
            "jsonl" | "ndjson" => InputFormat::JsonLines,
            "csv" | "txt" => {
                let delimiter = match source {
                    Some(SourceConfig::File(f)) if f.format == FileFormat::Csv => {
                        f.delimiter.unwrap_or(',')
                    }
                    _ => ',',
                };
                InputFormat::Csv {
                    delimiter: u8::try_from(delimiter).unwrap_or(b','),
                }
            }
            _ => InputFormat::Auto,
        }
    }
}

/// One event's body as it arrived: JSON text still to parse (each flow parses only what it
/// reads), or a value already made (a CSV row).
#[derive(Debug, Clone)]
pub enum Body<'a> {
    Json(&'a [u8]),
    Value(Value),
}

/// Why one event of an input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input holds nothing but whitespace.
    #[error("the input is empty")]
    Empty,
    /// A CSV header or row that does not parse (the reader's message).
    #[error("not valid CSV: {0}")]
    Csv(String),
}

/// One event's body, or why it could not be read. `label` says where it came from (`line 3`).
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    pub label: String,
    pub body: Result<Body<'a>, DecodeError>,
}

/// Splits input into events. JSON is only split here, not parsed: see [`Body`].
pub fn decode(bytes: &[u8], format: InputFormat) -> Vec<Decoded<'_>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return vec![Decoded {
            label: "input".into(),
            body: Err(DecodeError::Empty),
        }];
    }
    let whole = || {
        vec![Decoded {
            label: "input".into(),
            body: Ok(Body::Json(bytes)),
        }]
    };
    match format {
        InputFormat::Json => whole(),
        InputFormat::JsonLines => lines(bytes),
        InputFormat::Csv { delimiter } => csv_rows(bytes, delimiter),
        // One document, unless it is several lines that each stand alone.
        InputFormat::Auto => {
            let mut docs =
                serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
            let first = docs.next();
            let second = docs.next();
            match (first, second) {
                (Some(Ok(_)), Some(_)) => lines(bytes),
                _ => whole(),
            }
        }
    }
}

fn lines(bytes: &[u8]) -> Vec<Decoded<'_>> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    ends.map(|end| {
        let line = &bytes[start..end];
        start = end + 1;
        line
    })
    .enumerate()
    .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
    .map(|(i, line)| Decoded {
        label: format!("line {}", i + 1),
        body: Ok(Body::Json(line)),
    })
    .collect()
}

/// Reads JSON lines from `reader` a block at a time and hands each non-blank line to `each`,
/// labelled as [`decode`] labels them; `each` returns false to stop. A large file is never held
/// whole: reading one into memory cost a dry run a fifth of its time in page faults alone.
/// Returns whether any event was seen (an input of only blank lines has none).
pub fn each_json_line(
    mut reader: impl std::io::Read,
    mut each: impl FnMut(Decoded<'_>) -> bool,
) -> std::io::Result<bool> {
    const BLOCK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut line_no = 0usize;
    let mut seen = false;
    let mut eof = false;
    // `buf[..filled]` holds bytes read and not yet handed out, starting at a line's start.
    let mut filled = 0usize;
    while !eof {
        if buf.len() - filled < BLOCK / 4 {
            // A line longer than what is left: grow (a line is only ever handed out whole).
            buf.resize(filled + BLOCK, 0);
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        eof = n == 0;
        let scanned_from = filled;
        filled += n;
        // Complete lines end at a newline; at the end of input the rest is a line too.
        let mut start = 0;
        let mut ends: Vec<usize> = memchr::memchr_iter(b'\n', &buf[scanned_from..filled])
            .map(|i| scanned_from + i)
            .collect();
        if eof && filled > 0 && buf[filled - 1] != b'\n' {
            ends.push(filled);
        }
        for end in ends {
            let line = &buf[start..end];
            start = end + 1;
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            seen = true;
            let decoded = Decoded {
                label: format!("line {line_no}"),
                body: Ok(Body::Json(line)),
            };
            if !each(decoded) {
                return Ok(seen);
            }
        }
        let start = start.min(filled);
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    Ok(seen)
}

fn csv_rows(bytes: &[u8], delimiter: u8) -> Vec<Decoded<'static>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(bytes);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return vec![Decoded {
                label: "header".into(),
                body: Err(DecodeError::Csv(e.to_string())),
            }]
        }
    };
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        // Row 1 is the header, so data rows start at line 2.
        let label = format!("row {}", i + 2);
        let body = row.map_err(|e| DecodeError::Csv(e.to_string())).map(|row| {
            let mut obj = Map::new();
            for (name, value) in headers.iter().zip(row.iter()) {
                obj.insert(name.trim().to_string(), Value::String(value.to_string()));
            }
            Body::Value(Value::Object(obj))
        });
        out.push(Decoded { label, body });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(d: &Decoded<'_>) -> Result<Value, String> {
        match &d.body {
            Ok(Body::Json(b)) => serde_json::from_slice(b).map_err(|e| e.to_string()),
            Ok(Body::Value(v)) => Ok(v.clone()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn splits_inputs_into_events() {
        let one = decode(br#"{"a": 1}"#, InputFormat::Json);
        assert_eq!(one.len(), 1);
        let many = decode(
            b"{\"a\":1}\n\nnot json\n{\"a\":2}\n",
            InputFormat::JsonLines,
        );
        let labels: Vec<_> = many
            .iter()
            .map(|d| (d.label.as_str(), json(d).is_ok()))
            .collect();
        assert_eq!(
            labels,
            vec![("line 1", true), ("line 3", false), ("line 4", true)]
        );
        assert_eq!(
            decode(b"{\"a\":1}\n{\"a\":2}\n", InputFormat::Auto).len(),
            2
        );
        assert_eq!(decode(b"{\"a\":\n 1}\n", InputFormat::Auto).len(), 1);
        assert_eq!(decode(b"{\"a\":", InputFormat::Auto).len(), 1);
    }

    /// A reader that hands out at most `step` bytes per read, to cross line ends.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn streamed_json_lines_match_the_whole_input_split() {
        let long = format!("{{\"s\":\"{}\"}}", "x".repeat(3 << 20));
        let inputs = [
            "{\"a\":1}\n\nnot json\n{\"a\":2}\n".to_string(),
            "{\"a\":1}\r\n{\"a\":2}".to_string(),
            format!("{{\"a\":1}}\n{long}\n{{\"a\":3}}"),
            "\n  \n".to_string(),
        ];
        for input in &inputs {
            let whole: Vec<(String, Result<Value, String>)> = lines(input.as_bytes())
                .iter()
                .map(|d| (d.label.clone(), json(d)))
                .collect();
            for step in [1, 7, 1 << 20, usize::MAX] {
                let mut streamed = Vec::new();
                let reader = Trickle {
                    data: input.as_bytes(),
                    step,
                };
                let seen = each_json_line(reader, |d| {
                    streamed.push((d.label.clone(), json(&d)));
                    true
                })
                .unwrap();
                assert_eq!(seen, !whole.is_empty());
                assert_eq!(streamed, whole, "step {step}");
            }
        }
        // Stopping early stops reading.
        let mut count = 0;
        each_json_line(inputs[0].as_bytes(), |_| {
            count += 1;
            false
        })
        .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn csv_rows_become_objects_of_strings() {
        let rows = decode(
            b"ItemNo;OnHand\nA-1;5\nB-2;n/a\n",
            InputFormat::Csv { delimiter: b';' },
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(json(&rows[1]).unwrap()["OnHand"], "n/a");
        assert_eq!(rows[1].label, "row 3");
    }

    #[test]
    fn empty_input_is_an_error() {
        for empty in [&b""[..], b"  \n"] {
            assert!(decode(empty, InputFormat::Json)[0].body.is_err());
        }
    }
}
