//! OAuth 2.0 client credentials (RFC 6749 §4.4) for the connectors that use it (`http` with
//! `auth: oauth2`, `salesforce`): fetching a token, keeping it, and renewing it.
//!
//! Owns the one token a connector uses. Calls read it without a lock; when it is missing, near
//! its `expires_in`, or refused with a 401, one call fetches the next while the others wait
//! for that one instead of each asking the token endpoint. A call refused with a 401 gets one
//! new token and one replay ([`TokenCache::send`]); a second 401 is permanent, never a loop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;

use reqwest::StatusCode;

use super::classify::{self, Answer};
use super::http::{ClientAuth, OAuth2ClientCredentials};
use super::CallError;

/// A token in use.
#[derive(Debug)]
pub(crate) struct Token {
    pub access_token: String,
    /// The server's `instance_url`, when it names one (Salesforce does: data calls go there).
    pub instance_url: Option<String>,
    /// When to stop using it; `None` when the server did not say (Salesforce never does: a 401
    /// is the only sign of expiry).
    renew_at: Option<Instant>,
    /// Which fetch this token came from, so a call refused with an old token does not throw
    /// away the new one another call has just fetched.
    serial: u64,
}

impl Token {
    fn is_fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

pub(crate) struct TokenCache {
    client: reqwest::Client,
    creds: OAuth2ClientCredentials,
    timeout: Duration,
    current: ArcSwapOption<Token>,
    /// Held while fetching: one fetch at a time, and calls that need a token wait for it.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl TokenCache {
    pub fn new(client: reqwest::Client, creds: OAuth2ClientCredentials, timeout: Duration) -> Self {
        TokenCache {
            client,
            creds,
            timeout,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// A token not known to be expired, fetched if there is none.
    async fn token(&self) -> Result<Arc<Token>, CallError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _gate = self.fetching.lock().await;
        // Another call may have fetched one while this one waited for the gate.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        self.fetch().await
    }

    /// The next token after the server refused `stale`. If another call has replaced `stale`
    /// already, that replacement is the answer: a burst of 401s costs one fetch.
    async fn renew(&self, stale: &Token) -> Result<Arc<Token>, CallError> {
        let _gate = self.fetching.lock().await;
        if let Some(token) = self.fresh() {
            if token.serial != stale.serial {
                return Ok(token);
            }
        }
        self.current.store(None);
        self.fetch().await
    }

    /// Makes a call with `attempt(token)`, which answers with the [`Answer`] and the call's
    /// description for messages. A 401 means the token expired or was revoked: one new
    /// token, one replay. A 401 to a token fetched just now means the credentials (or their
    /// permissions) are the problem, which no retry mends.
    ///
    /// `turn()` is awaited before each attempt takes its token (a connector's `rate`): a call
    /// that waited in the rate's queue longer than a token lives would otherwise send one that
    /// expired while it waited, and its replay with a renewed token could wait as long again.
    pub async fn send<F, Fut, T, TFut>(
        &self,
        turn: T,
        attempt: F,
    ) -> Result<(Answer, String), CallError>
    where
        F: Fn(Arc<Token>) -> Fut,
        Fut: Future<Output = Result<(Answer, String), CallError>>,
        T: Fn() -> TFut,
        TFut: Future<Output = ()>,
    {
        turn().await;
        let token = self.token().await?;
        let (answer, what) = attempt(token.clone()).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok((answer, what));
        }
        turn().await;
        let token = self.renew(&token).await?;
        let (answer, what) = attempt(token).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            let detail = format!(
                "refused a freshly fetched OAuth2 token: {}",
                classify::body_text(&answer.body)
            );
            return Err(classify::failure(&answer, &what, false, &detail));
        }
        Ok((answer, what))
    }

    /// The token in use, if any: for masking it in error messages.
    pub fn current(&self) -> Option<Arc<Token>> {
        self.current.load_full()
    }

    fn fresh(&self) -> Option<Arc<Token>> {
        let now = Instant::now();
        self.current.load_full().filter(|t| t.is_fresh(now))
    }

    /// Asks the token endpoint; only called with `fetching` held.
    async fn fetch(&self) -> Result<Arc<Token>, CallError> {
        let what = format!("OAuth2 token request POST {}", self.creds.token_url);
        let mut form = vec![("grant_type", "client_credentials")];
        if self.creds.client_auth == ClientAuth::Body {
            form.push(("client_id", self.creds.client_id.as_str()));
            form.push(("client_secret", self.creds.client_secret.as_str()));
        }
        if let Some(scope) = &self.creds.scope {
            form.push(("scope", scope.as_str()));
        }
        let asked_at = Instant::now();
        let request = self.client.post(&self.creds.token_url).form(&form);
        let request = match self.creds.client_auth {
            ClientAuth::Body => request,
            ClientAuth::Basic => {
                request.basic_auth(&self.creds.client_id, Some(&self.creds.client_secret))
            }
            ClientAuth::Bearer => request.bearer_auth(&self.creds.client_secret),
        };
        let answer = classify::send(request, self.timeout, &what)
            .await
            .map_err(|e| self.scrub(e))?;
        if !answer.status.is_success() {
            return Err(self.scrub(token_failure(&answer, &what)));
        }
        let token = self.token_from(&answer.body, asked_at).ok_or_else(|| {
            // The body is not shown: it may hold a token under another name.
            CallError::Permanent {
                message: format!(
                    "{what}: {}: the answer has no access_token string",
                    answer.status
                ),
            }
        })?;
        let token = Arc::new(token);
        self.current.store(Some(token.clone()));
        Ok(token)
    }

    fn token_from(&self, body: &Value, asked_at: Instant) -> Option<Token> {
        let access_token = body.get("access_token")?.as_str()?.to_string();
        // Renew before the end rather than at it: a tenth of the lifetime, at most a minute,
        // covers clock skew and a call that starts just before expiry.
        // A lifetime too long for the clock (`expires_in: 1e300`) is as good as none: the
        // token is kept until a 401 says otherwise.
        let renew_at = expires_in(body).and_then(|life| {
            let margin = (life / 10).min(Duration::from_secs(60));
            asked_at.checked_add(life - margin)
        });
        Some(Token {
            access_token,
            instance_url: body
                .get("instance_url")
                .and_then(Value::as_str)
                .map(|s| s.trim_end_matches('/').to_string()),
            renew_at,
            serial: self.fetches.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    fn scrub(&self, err: CallError) -> CallError {
        classify::Secrets::new([self.creds.client_secret.clone()]).scrub(err, None)
    }
}

/// `expires_in` in seconds: a number, or a numeric string (some servers send one); a
/// fraction is kept. Anything else (negative, not a number, past what a `Duration` holds) is
/// taken as not said, which a remote's answer may not turn into a panic.
fn expires_in(body: &Value) -> Option<Duration> {
    let secs = match body.get("expires_in")? {
        Value::Number(n) => match n.as_u64() {
            Some(secs) => return Some(Duration::from_secs(secs)),
            None => n.as_f64()?,
        },
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    // `try_from_secs_f64` refuses negative, NaN, infinite and too large.
    Duration::try_from_secs_f64(secs).ok()
}

/// Token endpoints answer errors OAuth style (`error`, `error_description`), not with the
/// API's own error format. Bad credentials are permanent; the generic rule covers the rest.
fn token_failure(answer: &Answer, what: &str) -> CallError {
    let field = |name: &str| answer.body.get(name).and_then(Value::as_str);
    let detail = match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error.to_string(),
        _ => classify::body_text(&answer.body),
    };
    classify::failure(
        answer,
        what,
        classify::is_retryable_status(answer.status),
        &detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expires_in_is_a_number_or_a_numeric_string() {
        assert_eq!(
            expires_in(&json!({"expires_in": 3600})),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            expires_in(&json!({"expires_in": "90"})),
            Some(Duration::from_secs(90))
        );
        assert_eq!(expires_in(&json!({"expires_in": null})), None);
        assert_eq!(expires_in(&json!({})), None);
        assert_eq!(
            expires_in(&json!({"expires_in": 1.5})),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(expires_in(&json!({"expires_in": -5})), None);
        assert_eq!(expires_in(&json!({"expires_in": "-5"})), None);
        assert_eq!(expires_in(&json!({"expires_in": "soon"})), None);
        assert_eq!(expires_in(&json!({"expires_in": "NaN"})), None);
        assert_eq!(expires_in(&json!({"expires_in": "1e400"})), None);
        assert_eq!(expires_in(&json!({"expires_in": [60]})), None);
    }

    /// Every answer a token endpoint might give for `expires_in` makes a token or none, and a
    /// lifetime past what the clock can add is kept as no lifetime.
    #[test]
    fn no_expires_in_panics_and_huge_ones_never_expire() {
        let cache = TokenCache::new(
            reqwest::Client::new(),
            OAuth2ClientCredentials {
                token_url: "http://127.0.0.1:9/token".into(),
                client_id: "id".into(),
                client_secret: "secret".into(),
                scope: None,
                client_auth: ClientAuth::Body,
            },
            Duration::from_secs(1),
        );
        let now = Instant::now();
        let huge: Value = serde_json::from_str(
            r#"[18446744073709551615, 1e300, "18446744073709551615", "1e300",
                999999999999999999999999999999]"#,
        )
        .unwrap();
        for e in huge.as_array().unwrap() {
            let token = cache
                .token_from(&json!({"access_token": "t", "expires_in": e}), now)
                .unwrap();
            assert_eq!(token.renew_at, None, "{e}");
            assert!(token.is_fresh(now + Duration::from_secs(10 * 365 * 86400)));
        }
        for e in [json!(-1), json!(-1e300), json!("x"), json!(true), json!({})] {
            let token = cache
                .token_from(&json!({"access_token": "t", "expires_in": e}), now)
                .unwrap();
            assert_eq!(token.renew_at, None, "{e}");
        }
        let token = cache
            .token_from(&json!({"access_token": "t", "expires_in": 3600.0}), now)
            .unwrap();
        assert_eq!(token.renew_at, Some(now + Duration::from_secs(3540)));
    }
}
