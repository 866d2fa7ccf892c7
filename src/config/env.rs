//! `${VAR}` and `${VAR:-default}` in config strings, and keeping what they bring in secret.
//!
//! Owns interpolation (done once, at load) and the [`Redactor`] that every piece of output
//! goes through, so a value that came from the environment prints as `***` in logs, dry-run
//! output and error messages. `$${` writes a literal `${` (Rhai's own string interpolation
//! uses that syntax inside backticks).

use std::collections::BTreeSet;
use std::sync::Arc;

/// Reads an environment variable. A function, not `std::env::var` directly, so tests and
/// `check` can supply their own environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvProblem {
    /// `${VAR}` with VAR unset and no default. `offset` is where `${` starts in the string.
    Unset { var: String, offset: usize },
    /// `${` without a closing `}` or with a name that is not a variable name.
    Malformed { offset: usize, message: String },
}

#[derive(Debug, Default)]
pub struct Interpolated {
    pub text: String,
    pub problems: Vec<EnvProblem>,
    /// Values that came from the environment (not from defaults): these are secrets to redact.
    pub secrets: Vec<String>,
    pub vars: Vec<String>,
}

/// Replaces `${VAR}` / `${VAR:-default}` in `input`. Unset variables without a default are
/// left as they were written and reported, so `check` can warn and `run` can refuse.
pub fn interpolate(input: &str, env: EnvLookup<'_>) -> Interpolated {
    let mut out = Interpolated::default();
    if !input.contains('$') {
        out.text = input.to_string();
        return out;
    }
    let mut rest = input;
    let mut consumed = 0usize;
    while let Some(at) = rest.find('$') {
        out.text.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(r) = after.strip_prefix("$${") {
            out.text.push_str("${");
            rest = r;
            consumed += at + 3;
            continue;
        }
        if !after.starts_with("${") {
            out.text.push('$');
            rest = &after[1..];
            consumed += at + 1;
            continue;
        }
        let offset = consumed + at;
        let Some(close) = after.find('}') else {
            out.problems.push(EnvProblem::Malformed {
                offset,
                message: "`${` is not closed by `}` (write `$${` for a literal `${`)".into(),
            });
            out.text.push_str(after);
            return out;
        };
        let inner = &after[2..close];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_var_name(name) {
            out.problems.push(EnvProblem::Malformed {
                offset,
                message: format!(
                    "`${{{inner}}}` is not a variable name (write `$${{` for a literal `${{`)"
                ),
            });
            out.text.push_str(&after[..=close]);
        } else {
            out.vars.push(name.to_string());
            match (env(name), default) {
                (Some(v), _) => {
                    out.text.push_str(&v);
                    out.secrets.push(v);
                }
                (None, Some(d)) => out.text.push_str(d),
                (None, None) => {
                    out.problems.push(EnvProblem::Unset {
                        var: name.to_string(),
                        offset,
                    });
                    out.text.push_str(&after[..=close]);
                }
            }
        }
        rest = &after[close + 1..];
        consumed += at + close + 1;
    }
    out.text.push_str(rest);
    out
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every value that came from the environment with `***` in text meant for people.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    /// Short values (a currency code, a port) would garble output if masked everywhere and
    /// protect nothing, so only values of four characters or more are treated as secrets.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut set: BTreeSet<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= 4)
            .collect();
        set.retain(|v| !v.trim().is_empty());
        let mut secrets: Vec<String> = set.into_iter().collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// [`Redactor::redact`] for UTF-8 bytes about to be written, copied only when a secret is
    /// in them (a dry run writes every outcome through here).
    pub fn redact_bytes<'a>(&self, text: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let contains = |s: &str| memchr::memmem::find(text, s.as_bytes()).is_some();
        if !self.secrets.iter().any(|s| contains(s)) {
            return std::borrow::Cow::Borrowed(text);
        }
        let owned = self.redact(&String::from_utf8_lossy(text));
        std::borrow::Cow::Owned(owned.into_bytes())
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t-value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_reports_unset() {
        let cases: &[(&str, &str, usize)] = &[
            ("plain", "plain", 0),
            ("Bearer ${TOKEN}", "Bearer s3cr3t-value", 0),
            ("${MISSING:-fallback}", "fallback", 0),
            ("${MISSING:-}", "", 0),
            ("a ${MISSING} b", "a ${MISSING} b", 1),
            ("cost: $5", "cost: $5", 0),
            ("`hi $${name}`", "`hi ${name}`", 0),
            ("${EMPTY:-x}", "", 0),
            ("${not closed", "${not closed", 1),
            ("${1BAD}", "${1BAD}", 1),
        ];
        for (input, want, problems) in cases {
            let got = interpolate(input, &env);
            assert_eq!(&got.text, want, "input {input}");
            assert_eq!(got.problems.len(), *problems, "input {input}");
        }
    }

    #[test]
    fn unset_reports_the_offset_of_the_reference() {
        let got = interpolate("x ${A} ${B}", &env);
        assert_eq!(
            got.problems,
            vec![
                EnvProblem::Unset {
                    var: "A".into(),
                    offset: 2
                },
                EnvProblem::Unset {
                    var: "B".into(),
                    offset: 7
                }
            ]
        );
    }

    #[test]
    fn redacts_environment_values() {
        let got = interpolate("Bearer ${TOKEN}", &env);
        let r = Redactor::new(got.secrets);
        assert_eq!(r.redact("sent Bearer s3cr3t-value!"), "sent Bearer ***!");
        assert_eq!(Redactor::new(vec!["USD".to_string()]).redact("USD"), "USD");
        assert_eq!(&*r.redact_bytes(b"sent s3cr3t-value"), b"sent ***");
        assert!(matches!(
            r.redact_bytes(b"nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
