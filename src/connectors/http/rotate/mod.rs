//! Rotating tokens for the `http` connector (`auth: { refresh: ... }`): the refresh-token
//! flows of Shopee, TikTok Shop and Lazada, where each renewal answers with a new access token
//! *and* a new refresh token, and the old refresh token stops working.
//!
//! Owns the current pair: read from the state at the first call (so a restart goes on with the
//! newest refresh token, not the one in crossdock.yaml), renewed before it expires by one call
//! while the others wait, and written to the state before any call uses the new access token.
//! It must not sign calls itself: the connector hands it a function that sends the token
//! request (signed like the connector's other calls when `signed: true`).
//!
//! The pair is stored under `token/<connector>` with a digest of the configured refresh token:
//! a new refresh token in crossdock.yaml (the shop authorised again) replaces the stored pair.//!
//! The block and its compiled request are `compile.rs`; the live pair is here.

mod compile;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::connectors::classify::{self, Answer};
use crate::connectors::CallError;
use crate::jsonpath::JsonPath;
use crate::state::{escape, StateStore};

pub use compile::{Compiled, RefreshConfig, TokenRequest};

/// Renew this long before the stated expiry at most (a tenth of the lifetime when shorter):
/// clock skew, and a call that starts just before the end.
const MARGIN: Duration = Duration::from_secs(300);

/// The pair in use.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds after which the access token is not used; `None` when never said.
    pub renew_at: Option<i64>,
    /// Which renewal this pair came from, so a burst of refusals costs one renewal.
    serial: u64,
}

pub struct Rotating {
    connector: String,
    spec: Compiled,
    state: Option<Arc<dyn StateStore>>,
    current: ArcSwapOption<Pair>,
    gate: tokio::sync::Mutex<()>,
}

impl Rotating {
    pub fn new(connector: &str, spec: Compiled, state: Option<Arc<dyn StateStore>>) -> Self {
        Rotating {
            connector: connector.to_string(),
            spec,
            state,
            current: ArcSwapOption::empty(),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The state key of a connector's pair.
    pub fn key(connector: &str) -> String {
        format!("token/{}", escape(connector))
    }

    fn seed(&self) -> String {
        hex::encode(Sha256::digest(self.spec.initial.as_bytes()))
    }

    /// The access token in use, for masking.
    pub fn current(&self) -> Option<Arc<Pair>> {
        self.current.load_full()
    }

    pub fn request(&self) -> &TokenRequest {
        &self.spec.request
    }

    fn fresh(&self) -> Option<Arc<Pair>> {
        let now = chrono::Utc::now().timestamp();
        self.current
            .load_full()
            .filter(|p| p.renew_at.is_none_or(|at| now < at))
    }

    /// A pair whose access token is not known to be expired, renewing it if needed.
    /// `exchange(request, refresh_token)` sends the token request and reads the answer.
    pub async fn pair<F, Fut>(&self, exchange: &F) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let _gate = self.gate.lock().await;
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let stored = match self.current.load_full() {
            Some(p) => Some(p),
            None => self.load().await?,
        };
        if let Some(p) = &stored {
            let now = chrono::Utc::now().timestamp();
            if p.renew_at.is_none_or(|at| now < at) {
                self.current.store(Some(p.clone()));
                return Ok(p.clone());
            }
        }
        let refresh = stored
            .as_ref()
            .map(|p| p.refresh_token.clone())
            .unwrap_or_else(|| self.spec.initial.clone());
        let serial = stored.as_ref().map_or(0, |p| p.serial) + 1;
        self.renew(exchange, refresh, serial).await
    }

    /// The next pair after the remote refused `stale`'s access token; another call's renewal
    /// since is taken instead of renewing twice.
    pub async fn after_refusal<F, Fut>(
        &self,
        stale: &Pair,
        exchange: &F,
    ) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        let _gate = self.gate.lock().await;
        if let Some(p) = self.current.load_full() {
            if p.serial != stale.serial {
                return Ok(p);
            }
        }
        self.renew(exchange, stale.refresh_token.clone(), stale.serial + 1)
            .await
    }

    /// Only called with the gate held.
    async fn renew<F, Fut>(
        &self,
        exchange: &F,
        refresh: String,
        serial: u64,
    ) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        let asked_at = chrono::Utc::now().timestamp();
        let what = format!(
            "connector `{}`: renewing the access token ({} {})",
            self.connector,
            self.spec.request.method.as_reqwest(),
            self.spec.request.url
        );
        let help = "the refresh token may have expired or been used already: authorise the shop \
                    again and set the new refresh token in `auth.refresh.refresh_token`";
        let answer = exchange(refresh.clone()).await.map_err(|e| match e {
            CallError::Retryable {
                message,
                retry_after,
            } => CallError::Retryable {
                message: format!("{what}: {message}"),
                retry_after,
            },
            CallError::Permanent { message } => CallError::Permanent {
                message: format!("{what}: {message}"),
            },
        })?;
        let body = &answer.body;
        let text = |p: &JsonPath| {
            p.first(body).and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
        };
        let (Some(access_token), Some(refresh_token)) =
            (text(&self.spec.access), text(&self.spec.refresh))
        else {
            // The remote's own words say why (Shopee `error`, TikTok `message`); the tokens
            // it may echo are masked by the caller.
            let detail = if answer.status.is_success() {
                format!(
                    "the answer has no new token pair: {}",
                    classify::body_text(body)
                )
            } else {
                classify::body_text(body)
            };
            let retryable = classify::is_retryable_status(answer.status);
            let message = format!("{what}: {}: {detail}", answer.status);
            return Err(if retryable {
                CallError::Retryable {
                    message,
                    retry_after: answer.retry_after,
                }
            } else {
                CallError::Permanent {
                    message: format!("{message}; {help}"),
                }
            });
        };
        let number = |p: &Option<JsonPath>| {
            p.as_ref()
                .and_then(|p| p.first(body))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                })
        };
        let expires_at = match (number(&self.spec.expires_in), number(&self.spec.expires_at)) {
            (Some(life), _) if life > 0 => Some((asked_at.saturating_add(life), life)),
            (_, Some(at)) if at > asked_at => Some((at, at - asked_at)),
            _ => None,
        };
        let renew_at = expires_at.map(|(at, life)| {
            let margin = (life / 10).min(MARGIN.as_secs() as i64);
            at - margin
        });
        let pair = Arc::new(Pair {
            access_token,
            refresh_token,
            renew_at,
            serial,
        });
        // Kept before it is used: after a crash here the old refresh token no longer works.
        self.save(&pair).await.map_err(|e| CallError::Retryable {
            message: format!("{what}: the new token pair could not be kept in the state: {e}"),
            retry_after: None,
        })?;
        self.current.store(Some(pair.clone()));
        tracing::info!(connector = %self.connector, "Access token renewed");
        Ok(pair)
    }

    async fn load(&self) -> Result<Option<Arc<Pair>>, CallError> {
        let Some(state) = self.state.clone() else {
            return Ok(None);
        };
        let key = Self::key(&self.connector);
        let value = tokio::task::spawn_blocking(move || state.get(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(value) = value else { return Ok(None) };
        if value.get("seed").and_then(Value::as_str) != Some(self.seed().as_str()) {
            return Ok(None);
        }
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(match (text("access_token"), text("refresh_token")) {
            (Some(access_token), Some(refresh_token)) => Some(Arc::new(Pair {
                access_token,
                refresh_token,
                renew_at: value.get("renew_at").and_then(Value::as_i64),
                serial: 0,
            })),
            _ => None,
        })
    }

    async fn save(&self, pair: &Pair) -> Result<(), String> {
        let Some(state) = self.state.clone() else {
            return Ok(());
        };
        let keys = vec![Self::key(&self.connector)];
        let value = json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "renew_at": pair.renew_at,
            "seed": self.seed(),
        });
        tokio::task::spawn_blocking(move || {
            state.update(&keys, &mut |_| Ok((vec![Some(value.clone())], Value::Null)))?;
            state.make_durable()
        })
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}
