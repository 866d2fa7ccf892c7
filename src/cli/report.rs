//! Diagnostics and test results in the formats tools read: JSON, SARIF 2.1.0, JUnit XML.
//!
//! Each function turns what `check` or `test` found into one document for stdout; nothing here
//! decides what is a problem or runs anything. Paths are the project folder as given joined to
//! the file's path in the project, so a tool run from the repository root finds the file.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::diag::{Code, Diagnostic, Diagnostics, Severity};
use crate::testing::CaseResult;

/// `file` as a tool run from where crossdock was run would open it, with `/` separators.
fn located(project: &Path, file: &Path) -> String {
    let joined = if project == Path::new(".") {
        file.to_path_buf()
    } else {
        project.join(file)
    };
    joined.to_string_lossy().replace('\\', "/")
}

fn severity(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn diagnostic_json(project: &Path, d: &Diagnostic) -> Value {
    json!({
        "file": located(project, &d.file),
        "line": d.pos.line,
        "column": d.pos.col,
        "severity": severity(d),
        "code": d.code.as_str(),
        "message": d.message,
        "help": d.help,
    })
}

/// `check --format json`: `{ ok, errors, warnings, diagnostics: [...] }`.
pub fn check_json(project: &Path, diags: &Diagnostics, ok: bool) -> Value {
    json!({
        "ok": ok,
        "errors": diags.errors().count(),
        "warnings": diags.warnings().count(),
        "diagnostics": diags.iter().map(|d| diagnostic_json(project, d)).collect::<Vec<_>>(),
    })
}

/// `check --format sarif`: one run of the `crossdock` tool, a rule per code that occurs, a
/// result per diagnostic (SARIF 2.1.0, OASIS; the subset GitHub code scanning reads:
/// `ruleId`, `level`, `message.text`, `physicalLocation` with `artifactLocation.uri` and
/// `region.startLine`/`startColumn`).
pub fn check_sarif(project: &Path, diags: &Diagnostics) -> Value {
    let mut codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<Value> = codes
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "shortDescription": { "text": c.description() },
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(h) => format!("{}\nhelp: {h}", d.message),
                None => d.message.clone(),
            };
            json!({
                "ruleId": d.code.as_str(),
                "level": severity(d),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": located(project, &d.file) },
                        "region": {
                            "startLine": d.pos.line.max(1),
                            "startColumn": d.pos.col.max(1),
                        }
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "crossdock",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    })
}

/// `test --format json`: every case with its failures, the test files' problems, counts.
pub fn test_json(project: &Path, results: &[CaseResult], diags: &Diagnostics) -> Value {
    let failed = results.iter().filter(|r| !r.passed()).count();
    json!({
        "passed": results.len() - failed,
        "failed": failed,
        "cases": results.iter().map(|r| json!({
            "file": located(project, &r.file),
            "pipeline": r.pipeline,
            "name": r.name,
            "passed": r.passed(),
            "failures": r.failures,
        })).collect::<Vec<_>>(),
        "diagnostics": diags.iter().map(|d| diagnostic_json(project, d)).collect::<Vec<_>>(),
    })
}

/// `test --format junit`: a `<testsuite>` per pipeline, a `<testcase>` per case, a
/// `<failure>` per failed case; a test file that could not be read is a case with an
/// `<error>`, so CI shows it rather than a green run with fewer tests.
pub fn test_junit(project: &Path, results: &[CaseResult], diags: &Diagnostics) -> String {
    let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        match suites.iter_mut().find(|(p, _)| *p == r.pipeline) {
            Some((_, cases)) => cases.push(r),
            None => suites.push((&r.pipeline, vec![r])),
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let errors = diags.errors().count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"crossdock\" tests=\"{}\" failures=\"{failed}\" errors=\"{errors}\">\n",
        results.len() + errors
    ));
    for (pipeline, cases) in &suites {
        let failures = cases.iter().filter(|r| !r.passed()).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
            xml(pipeline),
            cases.len()
        ));
        for r in cases {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
                xml(&r.pipeline),
                xml(&r.name),
                xml(&located(project, &r.file))
            ));
            if r.passed() {
                out.push_str("/>\n");
            } else {
                let first = r.failures.first().map(String::as_str).unwrap_or_default();
                out.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(first),
                    xml(&r.failures.join("\n"))
                ));
            }
        }
        out.push_str("  </testsuite>\n");
    }
    if errors > 0 {
        out.push_str(&format!(
            "  <testsuite name=\"test files\" tests=\"{errors}\" failures=\"0\" errors=\"{errors}\">\n"
        ));
        for d in diags.errors() {
            let file = located(project, &d.file);
            out.push_str(&format!(
                "    <testcase classname=\"test files\" name=\"{}\" file=\"{}\">\n      <error message=\"{}\">{}:{}:{}: {}</error>\n    </testcase>\n",
                xml(&file),
                xml(&file),
                xml(&d.message),
                xml(&file),
                d.pos.line,
                d.pos.col,
                xml(&d.message)
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text for an XML attribute or element; characters XML 1.0 does not allow are dropped.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\r' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
