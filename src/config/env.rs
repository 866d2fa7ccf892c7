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
    /// Values that came from the environment (not from defaults) of variables whose names say
    /// they are secrets ([`looks_secret`]), and passwords inside URLs: these are redacted.
    pub secrets: Vec<String>,
    /// Every value that came from the environment, with its variable: the YAML reader also
    /// redacts those set at a key that says it holds a secret (`token:`, `X-Auth-Token:`).
    pub from_env: Vec<(String, String)>,
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
                    if looks_secret(name) {
                        out.secrets.push(v.clone());
                    } else if let Some(password) = url_password(&v) {
                        out.secrets.push(password.to_string());
                    }
                    out.from_env.push((name.to_string(), v));
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

/// Whether a variable or key name says it holds a secret (`SF_CLIENT_SECRET`, `ERP_API_TOKEN`,
/// `X-Api-Key`, `password`). Only those values are masked in output: a region or a price book
/// id from the environment is shown as it is, so output stays readable.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 12] = [
        "SECRET",
        "TOKEN",
        "PASS",
        "PWD",
        "KEY",
        "AUTH",
        "CREDENTIAL",
        "PRIVATE",
        "SIGNING",
        "SALT",
        "COOKIE",
        "SESSION",
    ];
    // Compared byte by byte, ASCII case ignored, rather than on an upper-case copy: the flow
    // asks this of every key of every value an explanation quotes.
    let name = name.as_bytes();
    WORDS.iter().any(|w| {
        name.windows(w.len())
            .any(|at| at.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// The password of a URL's `user:password@`, if it has one (`postgres://u:pw@host/db`).
fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// Replaces secrets with `***` in text meant for people: every value that came from the
/// environment as a secret, in the forms a remote may echo it (as it is, percent-encoded as in
/// a URL or a form, JSON-escaped, base64), and whatever follows `Bearer ` or `Basic ` or a
/// credential's name in a query or form (`access_token=…`, `client_secret=…`), which covers
/// tokens nobody configured (an OAuth access token, a basic-auth pair).
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    /// Short values (a currency code, a port) would garble output if masked everywhere and
    /// protect nothing, so only values of four characters or more are treated as secrets.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut set: BTreeSet<String> = BTreeSet::new();
        for v in values.into_iter().filter(|v| v.chars().count() >= 4) {
            set.extend(echoed_forms(&v));
            set.insert(v);
        }
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
        if !self.secrets.iter().any(|s| contains(s)) && !credential_patterns().is_match_bytes(text)
        {
            return std::borrow::Cow::Borrowed(text);
        }
        let owned = self.redact(&String::from_utf8_lossy(text));
        std::borrow::Cow::Owned(owned.into_bytes())
    }

    /// [`Redactor::redact`] for a string that usually holds no secret: `None`, and nothing
    /// copied, when there is none in it.
    pub fn masked(&self, text: &str) -> Option<String> {
        let clean = !self.secrets.iter().any(|s| text.contains(s.as_str()))
            && !credential_patterns().is_match(text);
        (!clean).then(|| self.redact(text))
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        let patterns = credential_patterns();
        if patterns.is_match(&out) {
            out = patterns.replace_all(&out).into_owned();
        }
        out
    }
}

/// How a remote may echo a secret it was sent: percent-encoded (a query, a form), JSON-escaped,
/// base64 (as inside a basic-auth header).
fn echoed_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut forms = vec![
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    ];
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json.trim_matches('"').to_string());
    }
    forms.retain(|f| f != secret);
    forms
}

/// The credentials that are masked wherever they appear, whoever configured them.
struct CredentialPatterns {
    schemes: regex::Regex,
    params: regex::Regex,
}

impl CredentialPatterns {
    fn is_match(&self, text: &str) -> bool {
        self.schemes.is_match(text) || self.params.is_match(text)
    }
    fn is_match_bytes(&self, text: &[u8]) -> bool {
        std::str::from_utf8(text).is_ok_and(|t| self.is_match(t))
    }
    fn replace_all<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.schemes.replace_all(text, "${1} ***") {
            std::borrow::Cow::Borrowed(t) => self.params.replace_all(t, "${1}=***"),
            std::borrow::Cow::Owned(t) => {
                std::borrow::Cow::Owned(self.params.replace_all(&t, "${1}=***").into_owned())
            }
        }
    }
}

fn credential_patterns() -> &'static CredentialPatterns {
    static PATTERNS: std::sync::OnceLock<CredentialPatterns> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| CredentialPatterns {
        // An `Authorization` value echoed back: the scheme stays, the credential goes. Eight
        // characters at least, so prose ("basic support") is left alone.
        #[allow(clippy::unwrap_used)] // a constant pattern, tested below
        schemes: regex::Regex::new(r"(?i)(?-u:\b)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}").unwrap(),
        #[allow(clippy::unwrap_used)]
        params: regex::Regex::new(
            r"(?i)(?-u:\b)(access_token|refresh_token|id_token|token|client_secret|password|passwd|api_key|apikey|secret|sign|signature)=[^&\s\x22'<>,;]+",
        )
        .unwrap(),
    })
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
    fn only_secrets_are_masked_in_the_forms_a_remote_echoes_them() {
        let env = |n: &str| match n {
            "ERP_API_TOKEN" => Some("tok/en+with=specials".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            "SF_PRICEBOOK_ID" => Some("01s5e00000ABCDE".to_string()),
            "DATABASE_URL" => Some("postgres://app:db-pa55word@db/x".to_string()),
            _ => None,
        };
        let got = interpolate(
            "${ERP_API_TOKEN} ${AWS_REGION} ${SF_PRICEBOOK_ID} ${DATABASE_URL}",
            &env,
        );
        let r = Redactor::new(got.secrets);
        assert_eq!(got.from_env.len(), 4);
        // Not secrets: shown as they are.
        assert_eq!(
            r.redact("region eu-west-1, book 01s5e00000ABCDE"),
            "region eu-west-1, book 01s5e00000ABCDE"
        );
        assert_eq!(
            r.redact("db at postgres://app:db-pa55word@db"),
            "db at postgres://app:***@db"
        );
        assert_eq!(r.redact("echo tok/en+with=specials"), "echo ***");
        assert_eq!(r.redact("echo tok%2Fen%2Bwith%3Dspecials"), "echo ***");
        // Credentials nobody configured, as remotes echo them.
        assert_eq!(
            r.redact("got Authorization: Bearer eyJhbGciOi.x-y_z and Basic dXNlcjpodW50ZXIy"),
            "got Authorization: Bearer *** and Basic ***"
        );
        assert_eq!(
            r.redact("GET /x?access_token=abc123&page=2 body client_secret=s3cr3t&grant_type=x"),
            "GET /x?access_token=***&page=2 body client_secret=***&grant_type=x"
        );
        assert_eq!(
            r.redact("basic support for tokens"),
            "basic support for tokens"
        );
        assert!(matches!(
            r.redact_bytes(b"token=abcdef"),
            std::borrow::Cow::Owned(_)
        ));
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
        // `masked` gives what `redact` gives, and nothing when there is nothing to mask.
        for text in [
            "sent s3cr3t-value",
            "token=abcdef",
            "Bearer abcdefgh12",
            "nothing here",
        ] {
            let want = r.redact(text);
            assert_eq!(r.masked(text).unwrap_or_else(|| text.to_string()), want);
            assert_eq!(r.masked(text).is_none(), want == text, "{text}");
        }
    }

    #[test]
    fn secret_names_are_told_in_any_case() {
        for name in [
            "X-Api-Key",
            "sf_client_SECRET",
            "sessionId",
            "passwd",
            "a.Token.b",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["region", "id", "", "pässword", "to-ken"] {
            assert!(!looks_secret(name), "{name}");
        }
    }
}
