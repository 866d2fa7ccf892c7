//! Errors inside successful answers (`body_errors:`): the platforms that answer HTTP 200 with
//! an error code in the body (Shopee's `error`, TikTok Shop's `code`, Lazada's `code`), read
//! by a declarative rule so such a call fails instead of passing as done.
//!
//! Owns the rule, compiled at load, and its verdict on one answer: success, or a
//! [`CallError`] that is retryable when the code is one the rule lists as "later" (throttles,
//! busy) and permanent otherwise. It must not look at the HTTP status: `classify` has.

use serde::Deserialize;
use serde_json::Value;

use crate::connectors::classify::{self, Answer};
use crate::connectors::CallError;
use crate::jsonpath::JsonPath;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyErrorsConfig {
    /// Where the answer holds its error code (`$.error`, `$.code`).
    pub code: String,
    /// The codes that mean success, compared as text. Without it: no code, null, `""` and `0`.
    #[serde(default)]
    pub ok: Option<Vec<Value>>,
    /// Where the answer holds the error's text, for the message.
    #[serde(default)]
    pub message: Option<String>,
    /// The codes that mean "try again later" (rate limits, busy servers).
    #[serde(default)]
    pub retryable: Vec<Value>,
    /// The codes that mean the access token expired or was revoked: with `auth.refresh`, the
    /// pair is renewed and the call replayed once, as after a 401.
    #[serde(default)]
    pub renew: Vec<Value>,
}

pub struct BodyErrors {
    code: JsonPath,
    ok: Option<Vec<String>>,
    message: Option<JsonPath>,
    retryable: Vec<String>,
    renew: Vec<String>,
}

/// A code as text: `0` and `"0"` are one code, as platforms are not consistent about it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl BodyErrors {
    /// The error names the key below `body_errors` it concerns.
    pub fn compile(config: &BodyErrorsConfig) -> Result<BodyErrors, (&'static str, String)> {
        let path = |key: &'static str, src: &str| {
            JsonPath::parse(src).map_err(|e| (key, format!("JSONPath `{src}`: {}", e.message)))
        };
        Ok(BodyErrors {
            code: path("code", &config.code)?,
            ok: config.ok.as_ref().map(|ok| ok.iter().map(text).collect()),
            message: config
                .message
                .as_deref()
                .map(|m| path("message", m))
                .transpose()?,
            retryable: config.retryable.iter().map(text).collect(),
            renew: config.renew.iter().map(text).collect(),
        })
    }

    /// Whether the answer, whatever its status (Shopee refuses a token with a 403), says the
    /// access token must be renewed.
    pub fn wants_renewal(&self, answer: &Answer) -> bool {
        !self.renew.is_empty()
            && self
                .code
                .first(&answer.body)
                .is_some_and(|c| self.renew.contains(&text(c)))
    }

    /// The failure a successful answer carries, if any.
    pub fn check(&self, answer: &Answer, what: &str) -> Option<CallError> {
        let code = self.code.first(&answer.body).map(text).unwrap_or_default();
        let fine = match &self.ok {
            Some(ok) => ok.contains(&code),
            None => code.is_empty() || code == "0",
        };
        if fine {
            return None;
        }
        let message = self
            .message
            .as_ref()
            .and_then(|m| m.first(&answer.body))
            .map(text)
            .unwrap_or_else(|| classify::body_text(&answer.body));
        let detail = format!("error `{code}` in the answer: {message}");
        Some(classify::failure(
            answer,
            what,
            self.retryable.contains(&code),
            &detail,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde_json::json;

    fn rule(v: Value) -> BodyErrors {
        BodyErrors::compile(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn answer(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            retry_after: None,
            body,
        }
    }

    #[test]
    fn shopee_tiktok_and_lazada_codes() {
        let shopee =
            rule(json!({"code": "$.error", "message": "$.message", "retryable": ["error_busy"]}));
        assert!(shopee
            .check(&answer(json!({"error": "", "response": {}})), "c")
            .is_none());
        assert!(shopee
            .check(&answer(json!({"response": {}})), "c")
            .is_none());
        let e = shopee
            .check(
                &answer(json!({"error": "error_param", "message": "bad"})),
                "c",
            )
            .unwrap();
        assert_eq!(
            e,
            CallError::Permanent {
                message: "c: 200 OK: error `error_param` in the answer: bad".into()
            }
        );
        assert!(shopee
            .check(&answer(json!({"error": "error_busy"})), "c")
            .unwrap()
            .is_retryable());

        let tiktok = rule(
            json!({"code": "$.code", "ok": [0], "message": "$.message", "retryable": [36009004]}),
        );
        assert!(tiktok
            .check(&answer(json!({"code": 0, "data": {}})), "c")
            .is_none());
        assert!(!tiktok
            .check(&answer(json!({"code": 105001})), "c")
            .unwrap()
            .is_retryable());
        assert!(tiktok
            .check(&answer(json!({"code": 36009004})), "c")
            .unwrap()
            .is_retryable());
        // A missing code is not success when `ok` lists what success is.
        assert!(tiktok.check(&answer(json!({})), "c").is_some());

        let lazada = rule(json!({"code": "$.code", "ok": ["0"], "retryable": ["ApiCallLimit"]}));
        assert!(lazada.check(&answer(json!({"code": "0"})), "c").is_none());
        assert!(lazada
            .check(&answer(json!({"code": "ApiCallLimit"})), "c")
            .unwrap()
            .is_retryable());
        assert!(lazada
            .check(&answer(json!({"code": "IllegalAccessToken"})), "c")
            .is_some());
    }

    #[test]
    fn renew_codes_ask_for_a_new_token() {
        let plain = rule(json!({"code": "$.code", "ok": ["0"]}));
        assert!(!plain.wants_renewal(&answer(json!({"code": "IllegalAccessToken"}))));
        let renewing =
            rule(json!({"code": "$.code", "ok": ["0"], "renew": ["IllegalAccessToken"]}));
        assert!(renewing.wants_renewal(&answer(json!({"code": "IllegalAccessToken"}))));
        assert!(!renewing.wants_renewal(&answer(json!({"code": "0"}))));
    }
}
