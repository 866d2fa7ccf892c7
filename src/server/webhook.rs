//! Webhook ingress: find the route in the live version, check size, signature and JSON, write
//! the event to the inbox, wait for the group commit, answer 202.
//!
//! Owns the dedup keys of a delivery and what a body must be to be accepted: a body no flow
//! could parse is refused here with 400, not accepted and dead-lettered. A path with `{name}`
//! parameters chooses its tenant here: an id not in the list is a 404 before the body is read,
//! and the tenant's own scheme verifies. The event carries the tenant and the parameters as
//! `x-crossdock-tenant` and `x-crossdock-param-NAME` headers, and no `x-crossdock-*` header a
//! sender wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, LogLimiter};
use crate::flow::tenants::{tenant_text, Choose, WebhookTenants};
use crate::projection::Kind;
use crate::runtime::refused::{self, Refused};
use crate::runtime::{metrics, InboxError, Route, Runtime, Submitted};
use crate::verify::Scheme;

/// Headers never stored with an event: credentials that scripts have no business seeing.
const DROPPED_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// The engine's own headers on an event (source, tenant, path parameters): a sender's are
/// dropped, so none can pose as another tenant.
const OWN_HEADER_PREFIX: &str = "x-crossdock-";

pub(super) async fn receive(
    State(runtime): State<Arc<Runtime>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // One load of the version for the whole request: a reload meanwhile does not change the
    // route under it.
    let live = runtime.live();
    let path = uri.path();
    let (route, params) = match live.routes.get(path) {
        Some(route) => (route, Vec::new()),
        None => live
            .patterns
            .iter()
            .find_map(|r| Some((r, r.webhook.pattern.as_ref()?.matches(path)?)))
            .ok_or_else(|| ApiError::NotFound(format!("no pipeline listens on {path}")))?,
    };
    let pipeline = route.pipeline.as_str();
    // A tenant named by the path is known before the body is read.
    let mut tenant = match &route.webhook.tenants {
        Some(tenants) => choose_tenant(pipeline, tenants, &params, None)?,
        None => None,
    };
    if runtime.is_draining() {
        metrics::rejected(pipeline, 503);
        return Err(ApiError::Busy("shutting down: not accepting events".into()));
    }
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "{path} takes POST, not {method}"
        )));
    }
    let limit = runtime.settings.body_limit;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            if let Some(late) = super::serve::timed_out(&e) {
                metrics::rejected(pipeline, 408);
                return Err(ApiError::Timeout(late.to_string()));
            }
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                metrics::rejected(pipeline, 413);
                return Err(ApiError::TooLarge(format!(
                    "the body is larger than {limit} bytes"
                )));
            }
            // The client went away or sent a broken body: nothing was received.
            metrics::rejected(pipeline, 400);
            return Err(ApiError::BadRequest(format!(
                "the body could not be read: {e}"
            )));
        }
    };
    if let (Some(tenants), None) = (&route.webhook.tenants, tenant) {
        tenant = choose_tenant(pipeline, tenants, &params, Some(&body))?;
    }
    let scheme = match tenant {
        Some((_, scheme)) => scheme,
        None => route.webhook.scheme.as_deref(),
    };
    let tenant = tenant.map(|(id, _)| id);
    let delivery_id = match scheme {
        None => None,
        Some(scheme) => match scheme.verify(&headers, &body, chrono::Utc::now().timestamp()) {
            Ok(v) => v
                .delivery_id
                .filter(|s| !s.is_empty())
                .map(|id| DeliveryId {
                    id,
                    signed: scheme.signs_delivery_id(),
                }),
            Err(e) => {
                metrics::rejected(pipeline, 401);
                runtime.refused.push(Refused {
                    pipeline: pipeline.to_owned(),
                    at: crate::runtime::inbox::now_rfc3339(),
                    scheme: scheme_name(&live, pipeline).to_owned(),
                    reason: e.to_string(),
                    headers: keep_headers(&headers),
                    body: refused::body_preview(&body),
                    bytes: body.len(),
                });
                if let Some(tenant) = tenant {
                    metrics::tenant_webhook(pipeline, tenant, "refused");
                }
                if let Some(suppressed) = REFUSAL_LOG.admit(pipeline, Instant::now()) {
                    tracing::info!(pipeline, error = %e, suppressed, "Webhook refused: signature");
                }
                return Err(ApiError::Unauthorized(format!("signature: {e}")));
            }
        },
    };
    // One pass checks the body is JSON a flow can parse and, with `dedup_id:`, reads that
    // field of it. A flow's parse refuses a lone surrogate or nesting past the parser's limit
    // only in what it reads, which a reload or a retried dead letter can change: checked here
    // in the whole body (as UTF-8 is), or the event would fail only once queued.
    let parser = match (&route.webhook.key, &route.webhook.dedup_id) {
        (Some(key), _) => Some(&key.parser),
        (None, Some(dedup_id)) => Some(&dedup_id.parser),
        (None, None) => None,
    };
    let parsed = match parser {
        Some(parser) => parser.parse(&body).map(|v| (Kind::of(&v), Some(v))),
        None => crate::projection::check(&body).map(|kind| (kind, None)),
    };
    let parsed = match parsed {
        Ok((Kind::Object, parsed)) => parsed,
        Ok((kind, _)) => {
            metrics::rejected(pipeline, 400);
            return Err(ApiError::BadRequest(format!(
                "the body must be a JSON object, not {}",
                kind.name()
            )));
        }
        Err(e) => {
            metrics::rejected(pipeline, 400);
            return Err(ApiError::BadRequest(refusal(&e)));
        }
    };
    let mut keys = dedup_keys(route, delivery_id, parsed.as_ref(), &body);
    if let Some(tenant) = tenant {
        // Two shops' deliveries are never duplicates of each other.
        for key in &mut keys {
            *key = format!("tenant:{tenant}:{key}");
        }
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut kept = keep_headers(&headers);
    if scheme.is_some() {
        // What the console shows as the delivery's signature check: it passed, by this scheme.
        kept.insert(
            SIGNATURE_HEADER.to_owned(),
            format!("{} ok", scheme_name(&live, pipeline)),
        );
    }
    if let Some(tenant) = tenant {
        kept.insert(crate::runtime::TENANT_HEADER.to_owned(), tenant.to_owned());
    }
    for (name, value) in &params {
        kept.insert(
            format!("{}{name}", crate::rules::PARAM_HEADER_PREFIX),
            value.clone(),
        );
    }
    let accepted = runtime
        .submit(pipeline, &keys, kept, &body)
        .await
        .map_err(|e| match e {
            InboxError::Busy(_) | InboxError::BusyBytes(_) => {
                metrics::rejected(pipeline, 503);
                ApiError::Busy(e.to_string())
            }
            // A full disk or a failing store: the sender tries again later. Logged once by
            // the runtime's storage watch, not per request.
            e if e.is_storage() => {
                metrics::rejected(pipeline, 503);
                ApiError::Busy(format!("the event could not be made durable: {e}"))
            }
            other => ApiError::Internal(other.to_string()),
        })?;
    if let Some(tenant) = tenant {
        let outcome = match accepted {
            Submitted::New(_) => "accepted",
            Submitted::Duplicate(_) => "duplicate",
        };
        metrics::tenant_webhook(pipeline, tenant, outcome);
    }
    match accepted {
        Submitted::New(id) => Ok((
            StatusCode::ACCEPTED,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            accepted_body(&id),
        )
            .into_response()),
        Submitted::Duplicate(id) => Ok((
            StatusCode::OK,
            Json(json!({ "event_id": id, "duplicate": true })),
        )
            .into_response()),
    }
}

/// `{"event_id":ID}`, as `Json(json!(...))` writes it, without a map built and dropped per
/// event: the answer to every accepted webhook.
fn accepted_body(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 16);
    out.extend_from_slice(br#"{"event_id":"#);
    // A string always serialises.
    let _ = serde_json::to_writer(&mut out, id);
    out.push(b'}');
    out
}

/// The header an accepted delivery's event carries when its signature was checked:
/// `{scheme} ok`. Like the tenant's, no sender can set it (see [`OWN_HEADER_PREFIX`]).
pub const SIGNATURE_HEADER: &str = "x-crossdock-signature";

/// The `scheme:` a pipeline's webhook verifies with, as its `verify:` names it.
fn scheme_name<'l>(live: &'l crate::runtime::Live, pipeline: &str) -> &'l str {
    match live.project.pipeline(pipeline).map(|flow| &flow.source) {
        Some(crate::config::model::SourceConfig::Webhook(w)) => w
            .verify
            .as_ref()
            .map_or("per tenant", |v| v.scheme.as_str()),
        _ => "unknown",
    }
}

/// A delivery's tenant and that tenant's scheme (None: the webhook verifies nothing).
type Chosen<'r> = Option<(&'r str, Option<&'r dyn Scheme>)>;

/// The tenant a delivery is for, and that tenant's scheme: by the path parameter, or by the
/// body field (None until `body` is given). A tenant not in the list is a 404.
fn choose_tenant<'r>(
    pipeline: &str,
    tenants: &'r WebhookTenants,
    params: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<Chosen<'r>, ApiError> {
    let unknown = |named: String| {
        metrics::rejected(pipeline, 404);
        ApiError::NotFound(format!(
            "no tenant {named} in the tenants list `{}` of pipeline `{pipeline}`",
            tenants.list
        ))
    };
    let id = match &tenants.choose {
        Choose::Param(param) => params
            .iter()
            .find(|(name, _)| name == param)
            .map(|(_, value)| value.clone())
            .unwrap_or_default(),
        Choose::Body {
            path,
            parser,
            index,
        } => {
            let Some(body) = body else {
                return Ok(None);
            };
            let value = parser.parse(body).map_err(|e| {
                metrics::rejected(pipeline, 400);
                ApiError::BadRequest(refusal(&e))
            })?;
            let text = path.first(&value).and_then(tenant_text);
            match text.as_ref().and_then(|t| index.get(t)) {
                Some(id) => id.clone(),
                None => {
                    let found = text.map_or("nothing".to_owned(), |t| format!("`{t}`"));
                    return Err(unknown(format!(
                        "for {found} at {}",
                        tenants.choose.describe()
                    )));
                }
            }
        }
    };
    match tenants.schemes.get_key_value(id.as_str()) {
        Some((id, scheme)) => Ok(Some((id.as_str(), scheme.as_deref()))),
        None => Err(unknown(format!("`{id}`"))),
    }
}

/// Why a body is refused, from the parser's error: the reason in words where the parser's own
/// would mislead ("not JSON" for JSON nested too deep).
fn refusal(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        format!("the body is nested deeper than the parser's limit of 128 levels ({text})")
    } else if text.contains("surrogate") || text.contains("end of hex escape") {
        // serde_json's words for a `\u` escape that is half of a UTF-16 pair.
        format!("the body has a string that is not Unicode text ({text})")
    } else {
        format!("the body is not JSON: {text}")
    }
}

/// A provider's delivery id, and whether its signature covers it.
struct DeliveryId {
    id: String,
    signed: bool,
}

/// The keys that make a later delivery a duplicate of this one: the business key of `key:`
/// when the body has its fields, then a signed delivery id alone; an unsigned one (Shopify,
/// GitHub) with the body's hash too, because a replay can carry any id but only the signed
/// body; else the value at `dedup_id:`, else the body's hash. `parsed` is the body as the
/// route's `key` or `dedup_id` parser read it, when the route has one.
fn dedup_keys(
    route: &Route,
    delivery_id: Option<DeliveryId>,
    parsed: Option<&serde_json::Value>,
    body: &[u8],
) -> Vec<String> {
    let mut keys = delivery_keys(route, delivery_id, parsed, body);
    // First: a cluster's inbox takes one key per event, and the business key is the one a
    // catch-up poll's item shares.
    if let (Some(key), Some(value)) = (&route.webhook.key, parsed) {
        if let Some(business) = key.key.dedup_key(value) {
            keys.insert(0, business);
        }
    }
    keys
}

/// The keys of one delivery as such: see [`dedup_keys`].
fn delivery_keys(
    route: &Route,
    delivery_id: Option<DeliveryId>,
    parsed: Option<&serde_json::Value>,
    body: &[u8],
) -> Vec<String> {
    let hash = || format!("sha256:{}", hex::encode(Sha256::digest(body)));
    match delivery_id {
        Some(DeliveryId { id, signed: true }) => return vec![format!("id:{id}")],
        Some(DeliveryId { id, signed: false }) => return vec![format!("id:{id}"), hash()],
        None => {}
    }
    if let (Some(dedup_id), Some(value)) = (&route.webhook.dedup_id, parsed) {
        if let Some(found) = dedup_id.path.first(value) {
            let text = match found {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return vec![format!("path:{text}")];
        }
    }
    vec![hash()]
}

/// Signature refusals are logged at most once per pipeline per this long: whoever can reach
/// the port decides how many there are, and must not decide how much is written to the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(5);

static REFUSAL_LOG: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(REFUSAL_LOG_EVERY));

fn keep_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if DROPPED_HEADERS.contains(&name) || name.starts_with(OWN_HEADER_PREFIX) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out.insert(name.to_string(), v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_body_is_what_the_json_value_wrote() {
        for id in ["evt_00000000000000ff", "", "a\"b\\c\u{7}é"] {
            assert_eq!(
                String::from_utf8(accepted_body(id)).unwrap(),
                json!({ "event_id": id }).to_string()
            );
        }
    }
}
