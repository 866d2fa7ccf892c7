//! Typed config from a parsed document: deserialising with the path of a failing node kept,
//! and turning serde's messages into a [`Diagnostic`] at `file:line:col`, with "did you mean"
//! for unknown keys. It must not read YAML text.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Doc;
use crate::config::diag::{did_you_mean, Code, Diagnostic};
use crate::config::span::{display_path, PathSeg};

/// A typed-deserialisation failure: the path of the node and a message meant for a person.
#[derive(Debug, Clone)]
pub struct DeError {
    pub path: Vec<PathSeg>,
    pub message: String,
    pub help: Option<String>,
    /// The error concerns a key (unknown key) rather than a value.
    pub at_key: bool,
}

/// Deserialises a typed config out of a document.
pub fn from_doc<T: DeserializeOwned>(value: &Value) -> Result<T, DeError> {
    from_doc_at(value, &[])
}

/// Deserialises a typed config out of the node at `base` of a document.
pub fn from_doc_at<T: DeserializeOwned>(value: &Value, base: &[PathSeg]) -> Result<T, DeError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path: Vec<PathSeg> = base.to_vec();
        path.extend(e.path().iter().filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        }));
        let raw = e.into_inner().to_string();
        let (message, help, at_key) = humanize(&raw, &mut path);
        DeError {
            path,
            message,
            help,
            at_key,
        }
    })
}

/// Turns serde's wording into ours, with a "did you mean" for misspelt keys and kinds.
fn humanize(raw: &str, path: &mut Vec<PathSeg>) -> (String, Option<String>, bool) {
    let ticked: Vec<&str> = raw.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let wrong = rest.split('`').next().unwrap_or_default();
        if path.last() != Some(&PathSeg::Key(wrong.to_string())) {
            path.push(PathSeg::Key(wrong.to_string()));
        }
        let expected = &ticked[1.min(ticked.len())..];
        let help =
            did_you_mean(wrong, expected.iter().copied()).or_else(|| expected_list(expected));
        let help = if expected.is_empty() {
            Some("this place takes no keys".into())
        } else {
            help
        };
        return (format!("unknown key `{wrong}`"), help, true);
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let wrong = rest.split('`').next().unwrap_or_default();
        let expected = &ticked[1.min(ticked.len())..];
        let help =
            did_you_mean(wrong, expected.iter().copied()).or_else(|| expected_list(expected));
        return (format!("unknown kind `{wrong}`"), help, true);
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return (format!("missing key `{name}`"), None, false);
    }
    let message = raw
        .replace("invalid type: ", "wrong type: found ")
        .replace("expected u32", "expected a whole number")
        .replace("expected u64", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a character", "expected one character")
        .replace("map, expected", "mapping, expected")
        .replace("sequence", "list");
    (message, None, false)
}

fn expected_list(expected: &[&str]) -> Option<String> {
    if expected.is_empty() {
        return None;
    }
    let names: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    Some(format!("expected one of {}", names.join(", ")))
}

/// Builds the diagnostic for a deserialisation error in `file`.
pub fn diagnostic(file: &std::path::Path, doc: &Doc, source: &str, err: &DeError) -> Diagnostic {
    let mut kind_path = err.path.clone();
    kind_path.push(PathSeg::Key("kind".into()));
    let at = if err.message.starts_with("unknown kind") && err.path.last() == kind_path.last() {
        // An internally tagged kind (`kind: htp`): point at the value of `kind`.
        doc.spans.value_pos(&err.path)
    } else if err.message.starts_with("unknown kind") && doc.spans.get(&kind_path).is_some() {
        doc.spans.value_pos(&kind_path)
    } else if err.at_key {
        doc.spans.key_pos(&err.path)
    } else {
        doc.spans.value_pos(&err.path)
    };
    let mut message = err.message.clone();
    if !err.path.is_empty() && !err.at_key {
        message = format!("{}: {message}", display_path(&err.path));
    }
    // Read off the wording `humanize` gives each serde error.
    let code = match err.message.as_str() {
        m if m.starts_with("unknown key") => Code::UnknownKey,
        m if m.starts_with("unknown kind") => Code::UnknownKind,
        m if m.starts_with("missing key") => Code::MissingKey,
        m if m.starts_with("wrong type") => Code::WrongType,
        _ => Code::InvalidValue,
    };
    let d = Diagnostic::error(file, at, message)
        .with_code(code)
        .with_source(source);
    match &err.help {
        Some(h) => d.with_help(h.clone()),
        None => d,
    }
}
