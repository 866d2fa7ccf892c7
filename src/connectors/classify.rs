//! What the HTTP-based connectors (`http`, `salesforce`, and the OAuth 2.0 token cache) share:
//! sending one request with a timeout, reading the answer, and turning failures into the
//! [`CallError`] kinds the runtime acts on.
//!
//! Owns the generic rules — connect errors, timeouts, 408, 429 and 5xx are retryable, other
//! statuses permanent with the remote body — and `Retry-After` parsing. A kind with its own
//! error vocabulary (Salesforce's `errorCode`) decides retryability itself and only uses the
//! pieces here. Nothing here prints headers: they carry credentials.

use std::error::Error as _;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::CallError;
use crate::config::env::Redactor;

/// How much of a remote body goes into an error message: enough for any real error array,
/// short enough that an HTML error page does not swamp the log and the dead-letter record.
const BODY_IN_MESSAGE: usize = 2048;

/// RFC 3986 unreserved characters stay as they are; everything else in a path segment is
/// percent-encoded, so a value with `/`, `#`, `?` or a space stays one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// JSON when the body parses as JSON, the text otherwise, `Null` when empty.
    pub body: Value,
}

/// Sends `request` with `timeout` over the whole exchange (connect, headers and body) and
/// reads the answer; with traces exported, it carries the current span's `traceparent`. `what` names the call in messages, e.g. `GET https://host/path`.
pub(crate) async fn send(
    request: RequestBuilder,
    timeout: Duration,
    what: &str,
) -> Result<Answer, CallError> {
    // The call's span (W3C Trace Context), so the remote's own trace joins ours.
    let request = match super::traceparent::current() {
        Some(parent) => request.header("traceparent", parent),
        None => request,
    };
    let response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(e, timeout, what))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, timeout, what))?;
    Ok(Answer {
        status,
        retry_after,
        body: parse_body(&bytes),
    })
}

/// A request that got no (complete) answer. Only a request we could not even build, or a
/// redirect loop, is permanent: everything else is the network or the server, worth a retry.
fn transport_error(e: reqwest::Error, timeout: Duration, what: &str) -> CallError {
    let permanent = e.is_builder() || e.is_redirect();
    let reason = if e.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else {
        describe(e)
    };
    let message = format!("{what}: {reason}");
    if permanent {
        CallError::Permanent { message }
    } else {
        CallError::Retryable {
            message,
            retry_after: None,
        }
    }
}

/// reqwest's own text repeats the URL (which `what` already has) and says little by itself;
/// the cause chain says "connection refused" and the like.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Empty → `Null`; JSON → the value; anything else → the text, so a plain-text or HTML
/// answer still reaches the record or the error message.
pub(crate) fn parse_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means "now". Anything unreadable is ignored: the runtime's own backoff then decides.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The statuses any HTTP API means as "later": request timeout, too many requests, and the
/// server's own failures.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The error for a non-success answer: `{what}: {status}: {detail}`, with the detail cut to
/// about 2 KB. Retryable ones carry the server's `Retry-After`.
pub(crate) fn failure(answer: &Answer, what: &str, retryable: bool, detail: &str) -> CallError {
    let message = format!(
        "{what}: {}: {}",
        answer.status,
        truncate(detail, BODY_IN_MESSAGE)
    );
    if retryable {
        CallError::Retryable {
            message,
            retry_after: answer.retry_after,
        }
    } else {
        CallError::Permanent { message }
    }
}

/// The generic classification, for APIs without an error vocabulary of their own.
pub(crate) fn generic_failure(answer: &Answer, what: &str) -> CallError {
    failure(
        answer,
        what,
        is_retryable_status(answer.status),
        &body_text(&answer.body),
    )
}

/// A body as people read it: text as is, JSON compact, nothing as `(no body)`.
pub(crate) fn body_text(body: &Value) -> String {
    match body {
        Value::Null => "(no body)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The `id` of a JSON answer, when it is a string or a number (some APIs use integer ids).
pub(crate) fn remote_id(body: &Value) -> Option<String> {
    match body.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a JSON value is, for messages about a payload field of the wrong shape.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn permanent(message: String) -> CallError {
    CallError::Permanent { message }
}

/// Values no error message may show: a connector's credentials, and the tokens it was given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        Secrets(values.into_iter().collect())
    }

    /// `err` with every secret, and `also` (a token in use), masked as `***`. Remote bodies
    /// sometimes echo what they were sent, so this runs on every error a call returns.
    pub fn scrub(&self, err: CallError, also: Option<&str>) -> CallError {
        let redactor = Redactor::new(self.0.iter().cloned().chain(also.map(str::to_string)));
        match err {
            CallError::Retryable {
                message,
                retry_after,
            } => CallError::Retryable {
                message: redactor.redact(&message),
                retry_after,
            },
            CallError::Permanent { message } => CallError::Permanent {
                message: redactor.redact(&message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let got = retry_after(&headers(&date)).unwrap();
        assert!(
            got > Duration::from_secs(110) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn bodies_parse_as_json_text_or_nothing() {
        assert_eq!(parse_body(b""), Value::Null);
        assert_eq!(parse_body(b" \n"), Value::Null);
        assert_eq!(parse_body(br#"{"id":5}"#), serde_json::json!({"id": 5}));
        assert_eq!(parse_body(b"oops"), Value::String("oops".into()));
    }

    #[test]
    fn long_details_are_cut_on_a_char_boundary() {
        let long = "é".repeat(3000);
        let cut = truncate(&long, BODY_IN_MESSAGE);
        assert!(cut.len() < 2100);
        assert!(cut.ends_with("(6000 bytes in all)"));
        assert_eq!(truncate("short", BODY_IN_MESSAGE), "short");
    }

    #[test]
    fn segments_keep_unreserved_characters_only() {
        assert_eq!(encode_segment("BC-250_x.y~z"), "BC-250_x.y~z");
        assert_eq!(encode_segment("a/b #c?d"), "a%2Fb%20%23c%3Fd");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(
            remote_id(&serde_json::json!({"id": "a1"})),
            Some("a1".into())
        );
        assert_eq!(
            remote_id(&serde_json::json!({"id": 12345678901234567890u64})),
            Some("12345678901234567890".into())
        );
        assert_eq!(remote_id(&serde_json::json!({"id": null})), None);
        assert_eq!(remote_id(&Value::Null), None);
    }

    #[test]
    fn scrub_masks_credentials_and_the_token_in_use() {
        let secrets = Secrets::new(vec!["hunter2-pw".to_string()]);
        let err = CallError::Permanent {
            message: "echo: hunter2-pw and tok-abcdef".into(),
        };
        assert_eq!(
            secrets.scrub(err, Some("tok-abcdef")),
            CallError::Permanent {
                message: "echo: *** and ***".into()
            }
        );
    }
}
