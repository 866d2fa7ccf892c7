//! The YAML reader with spans (`config::yaml`): any text parses or fails with a located
//! problem, every node of the result has a span on a line of the text, and turning a
//! deserialisation error into a diagnostic (with its source excerpt) never panics.
#![no_main]

use std::path::Path;

use crossdock::config::model::{PipelineFile, ProjectFile};
use crossdock::config::span::PathSeg;
use crossdock::config::yaml::{self, Doc};
use crossdock::mapping::MappingFile;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn env(name: &str) -> Option<String> {
    // A few set variables so `${SET}` and `${SET:-d}` reach interpolation's happy path too.
    match name {
        "SET" => Some("value".into()),
        "EMPTY" => Some(String::new()),
        "MULTI" => Some("a\nb: c\n${SET}".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // yaml-rust2 also breaks lines at a lone `\r`, which `str::lines` does not.
    let lines = text.split(['\n', '\r']).count() + 1;
    let (doc, _problems) = match yaml::parse(text, &env) {
        Ok(parsed) => parsed,
        Err(problem) => {
            assert!(
                problem.pos.line >= 1 && problem.pos.line <= lines + 1,
                "{problem:?}"
            );
            return;
        }
    };
    let mut path = Vec::new();
    check_spans(&doc, &doc.value, &mut path, lines);
    for (path, _, pos) in &doc.unset_vars {
        assert!(pos.line >= 1 && pos.line <= lines, "{path:?} at {pos:?}");
    }
    // What `check` does with each kind of file: the errors are rendered with an excerpt.
    let file = Path::new("fuzz.yaml");
    if let Err(e) = yaml::from_doc::<ProjectFile>(&doc.value) {
        let _ = yaml::diagnostic(file, &doc, text, &e).to_string();
    }
    if let Err(e) = yaml::from_doc::<PipelineFile>(&doc.value) {
        let _ = yaml::diagnostic(file, &doc, text, &e).to_string();
    }
    if let Err(e) = yaml::from_doc::<MappingFile>(&doc.value) {
        let _ = yaml::diagnostic(file, &doc, text, &e).to_string();
    }
});

fn check_spans(doc: &Doc, value: &Value, path: &mut Vec<PathSeg>, lines: usize) {
    let pos = doc.spans.value_pos(path);
    assert!(
        pos.line >= 1 && pos.line <= lines && pos.col >= 1,
        "{path:?} at {pos:?}"
    );
    let key = doc.spans.key_pos(path);
    assert!(
        key.line >= 1 && key.line <= lines,
        "{path:?} key at {key:?}"
    );
    if let Value::String(s) = value {
        for offset in [0, s.len() / 2, s.len(), s.len() + 7] {
            let _ = doc.spans.offset_pos(path, s, offset);
        }
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                check_spans(doc, item, path, lines);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(PathSeg::Key(k.clone()));
                check_spans(doc, item, path, lines);
                path.pop();
            }
        }
        _ => {}
    }
}
