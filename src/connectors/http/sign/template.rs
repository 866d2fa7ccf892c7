//! Templates of a `sign:` block: parsed at load with every placeholder resolved to a call part
//! or a connector value, and rendered for one call. It must not choose the algorithm, the
//! encoding or where the result goes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Call, CALL_PARTS};
use crate::connectors::http::{parse_template, Piece};

/// A template with its placeholders resolved at load.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Text(String),
    Method,
    Path,
    Query,
    QueryForm,
    Body,
    Timestamp,
    AccessToken,
    Key,
}

pub(super) type Template = Vec<Part>;

/// Parses a template, resolving connector values now and refusing unknown names.
pub(super) fn template(
    text: &str,
    values: &BTreeMap<String, String>,
    parts: &[&str],
) -> Result<Template, String> {
    let pieces = parse_template(text).map_err(|p| format!("`{text}`: {p}"))?;
    let mut out = Vec::new();
    for piece in pieces {
        let part = match piece {
            Piece::Text(t) => Part::Text(t),
            Piece::Field(name) if parts.contains(&name.as_str()) => match name.as_str() {
                "method" => Part::Method,
                "path" => Part::Path,
                "query" => Part::Query,
                "query_form" => Part::QueryForm,
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                "access_token" => Part::AccessToken,
                _ => Part::Key,
            },
            Piece::Field(name) => match values.get(&name) {
                Some(v) => Part::Text(v.clone()),
                None => {
                    let mut known: Vec<&str> = parts.to_vec();
                    known.extend(values.keys().map(String::as_str));
                    let hint = crate::config::diag::did_you_mean(&name, known.iter().copied())
                        .unwrap_or_else(|| {
                            format!(
                                "write one of {{{}}} or add it to `values:`",
                                known.join("}, {")
                            )
                        });
                    let why = if CALL_PARTS.contains(&name.as_str()) {
                        " here: only {timestamp}, {access_token} and values are known before the call is signed"
                    } else {
                        ""
                    };
                    return Err(format!("unknown placeholder `{{{name}}}`{why}; {hint}"));
                }
            },
        };
        // Adjacent text (a value next to literal text) is one piece.
        match (out.last_mut(), part) {
            (Some(Part::Text(prev)), Part::Text(t)) => prev.push_str(&t),
            (_, part) => out.push(part),
        }
    }
    Ok(out)
}

/// Renders a template. Added parameters and headers cannot name `{key}` (refused at load), so
/// they render with an empty one.
pub(super) fn render(
    t: &Template,
    call: Option<Call<'_>>,
    timestamp: &str,
    token: &str,
    key: &str,
    query: &[(&str, &str)],
) -> String {
    let mut out = String::new();
    for part in t {
        match part {
            Part::Text(s) => out.push_str(s),
            Part::Timestamp => out.push_str(timestamp),
            Part::AccessToken => out.push_str(token),
            Part::Key => out.push_str(key),
            Part::Method => out.push_str(call.map(|c| c.method).unwrap_or_default()),
            Part::Path => out.push_str(call.map(|c| c.path).unwrap_or_default()),
            Part::Body => out.push_str(&String::from_utf8_lossy(
                call.map(|c| c.body).unwrap_or_default(),
            )),
            Part::Query => {
                for (n, v) in query {
                    out.push_str(n);
                    out.push_str(v);
                }
            }
            Part::QueryForm => {
                for (i, (n, v)) in query.iter().enumerate() {
                    if i > 0 {
                        out.push('&');
                    }
                    let _ = write!(out, "{n}={v}");
                }
            }
        }
    }
    out
}
