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
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "json" => InputFormat::Json,
            "jsonl" | "ndjson" => InputFormat::JsonLines,
            "csv" | "txt" => {
                let delimiter = match source {
                    Some(SourceConfig::File(f)) if f.format == FileFormat::Csv => f.delimiter.unwrap_or(','),
                    _ => ',',
                };
                InputFormat::Csv { delimiter: u8::try_from(delimiter).unwrap_or(b',') }
            }
            _ => InputFormat::Auto,
        }
    }
}

/// One event's body, or why it could not be read. `label` says where it came from (`line 3`).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub label: String,
    pub body: Result<Value, String>,
}

pub fn decode(bytes: &[u8], format: InputFormat) -> Vec<Decoded> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return vec![Decoded { label: "input".into(), body: Err("the input is empty".into()) }];
    }
    match format {
        InputFormat::Json => vec![Decoded { label: "input".into(), body: parse_json(bytes) }],
        InputFormat::JsonLines => lines(bytes),
        InputFormat::Csv { delimiter } => csv_rows(bytes, delimiter),
        InputFormat::Auto => match parse_json(bytes) {
            Ok(v) => vec![Decoded { label: "input".into(), body: Ok(v) }],
            Err(_) if bytes.iter().filter(|b| **b == b'\n').count() > 1 => lines(bytes),
            Err(e) => vec![Decoded { label: "input".into(), body: Err(e) }],
        },
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

fn lines(bytes: &[u8]) -> Vec<Decoded> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| Decoded { label: format!("line {}", i + 1), body: parse_json(line) })
        .collect()
}

fn csv_rows(bytes: &[u8], delimiter: u8) -> Vec<Decoded> {
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(false).from_reader(bytes);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return vec![Decoded { label: "header".into(), body: Err(format!("not valid CSV: {e}")) }],
    };
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        // Row 1 is the header, so data rows start at line 2.
        let label = format!("row {}", i + 2);
        let body = row.map_err(|e| format!("not valid CSV: {e}")).map(|row| {
            let mut obj = Map::new();
            for (name, value) in headers.iter().zip(row.iter()) {
                obj.insert(name.trim().to_string(), Value::String(value.to_string()));
            }
            Value::Object(obj)
        });
        out.push(Decoded { label, body });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_inputs_into_events() {
        let one = decode(br#"{"a": 1}"#, InputFormat::Json);
        assert_eq!(one.len(), 1);
        let many = decode(b"{\"a\":1}\n\nnot json\n{\"a\":2}\n", InputFormat::JsonLines);
        let labels: Vec<_> = many.iter().map(|d| (d.label.as_str(), d.body.is_ok())).collect();
        assert_eq!(labels, vec![("line 1", true), ("line 3", false), ("line 4", true)]);
        let auto = decode(b"{\"a\":1}\n{\"a\":2}\n", InputFormat::Auto);
        assert_eq!(auto.len(), 2);
    }

    #[test]
    fn csv_rows_become_objects_of_strings() {
        let rows = decode(b"ItemNo;OnHand\nA-1;5\nB-2;n/a\n", InputFormat::Csv { delimiter: b';' });
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].body.as_ref().unwrap()["OnHand"], "n/a");
        assert_eq!(rows[1].label, "row 3");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let deep = "[".repeat(100_000);
        let cases: Vec<&[u8]> = vec![b"", b"   \n", b"{", deep.as_bytes(), b"\xff\xfe", b"1e400x"];
        for c in cases {
            let out = decode(c, InputFormat::Json);
            assert!(out[0].body.is_err(), "{:?}", String::from_utf8_lossy(c));
        }
    }
}
