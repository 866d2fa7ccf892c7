//! The `poll` source: call a connector's operation on a schedule and make one event of each
//! item in the answer, resuming from a cursor kept in the state.
//!
//! Owns one poll ([`poll_once`]): the payload (`params`, the cursor, the next-page token), the
//! pages, the items, their dedup keys and the cursor's progress. The task around it waits
//! `every` (polling at once when it starts) or until the next `cron` time.
//!
//! # Cursor
//!
//! `cursor: { param, from, initial }`: the value stored under `cursor/<pipeline>` (or
//! `initial` before anything is stored) is sent as the payload field `param`; after the items
//! of a page are all accepted, it moves to the largest `from` value among them, and is written
//! back. A crash between accepting items and writing the cursor fetches them again, and their
//! dedup keys make the repeat a no-op. Values compare as instants when both are RFC 3339 times,
//! as numbers when both are numbers, else as text. The API must return items at or after the
//! cursor; ordered by it, so that a page's maximum is a safe place to resume.
//!
//! # Pages
//!
//! With `next: { from, param }`, a page whose answer has a token at `from` (not null, not
//! empty) is followed by a call with the token as `param` and the same cursor value the first
//! page was asked with. Without `next` but with `batch_size`, a full page is followed by a call
//! with the advanced cursor (keyset paging). At most [`MAX_PAGES`] pages per poll; the rest
//! comes at the next one. With `next.more`, the token is followed only while the flag at
//! `more` is true (Shopee answers `more` beside `next_cursor`).
//!
//! With `offset: { param, size, size_param, total }`, pages are asked with `param` = the
//! items fetched so far in this poll (0 first) and `size_param` = `size`, until a page is
//! shorter than `size` or `total` (a JSONPath into the answer) is reached: Lazada's
//! `offset`/`limit`, SFCC's `start`/`count`/`total`. With `first_page`, `param` is the page's
//! number instead, counted from `first_page` (SAP Commerce OCC's `currentPage` from 0, Adobe
//! Commerce's `searchCriteria[currentPage]` from 1); the end is found the same way. Adobe
//! answers a page past the end with the last page again, so `total` is what ends its polls.
//!
//! # Dedup keys
//!
//! `poll:<id>@<from value>` when the item has an `id` and the cursor a `from` value: a record
//! fetched again is a duplicate, a record updated since (new `updated_at`) is a new event.
//! `poll:<id>` without a cursor value, `poll:sha256:<hash of the item>` without an `id`.
//!
//! # Catch-up
//!
//! A webhook's `catch_up:` is this poll with two changes: instead of a cursor, every call
//! sends `since.param` = now minus `lookback` (one instant for all pages of a poll), and an
//! item's dedup key is its business key (`key:<text>`, the one the webhook's deliveries of the
//! same object get), falling back to the poll key above for an item without its fields. Its
//! events say `x-crossdock-source: catch_up`.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::SourceCx;
use crate::config::cron::CronExpr;
use crate::config::model::{CatchUpConfig, PollSource, SinceFormat};
use crate::connectors::{CallError, Request};
use crate::flow::key::BusinessKey;
use crate::jsonpath::JsonPath;
use crate::runtime::{Runtime, Submitted};
use crate::state::{escape, StateError};

/// Pages fetched in one poll at most: a runaway `next` link cannot keep a poll going forever.
pub const MAX_PAGES: usize = 100;

/// A poll source, compiled: JSONPaths parsed and the schedule read.
pub struct Poll {
    pub connector: String,
    pub op: String,
    pub when: When,
    pub params: Map<String, Value>,
    pub items: Option<JsonPath>,
    pub cursor: Option<Cursor>,
    pub next: Option<Next>,
    pub batch_size: Option<usize>,
    pub offset: Option<Offset>,
    /// A catch-up poll's "changed since" field; None for a poll source.
    pub since: Option<Since>,
    /// A catch-up poll's business key of each item; None for a poll source.
    pub key: Option<BusinessKey>,
}

/// `catch_up.since`: the payload field `param` = now minus `lookback`.
pub struct Since {
    pub param: String,
    pub lookback: Duration,
    pub format: SinceFormat,
}

impl Since {
    fn value(&self, now: DateTime<Utc>) -> Value {
        let at = now - chrono::Duration::from_std(self.lookback).unwrap_or(chrono::Duration::MAX);
        match self.format {
            SinceFormat::Rfc3339 => Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            SinceFormat::Unix => Value::from(at.timestamp()),
        }
    }
}

pub struct Offset {
    pub param: String,
    pub size: usize,
    pub size_param: Option<String>,
    pub total: Option<JsonPath>,
    /// `param` is a page number counted from this, instead of an item count.
    pub first_page: Option<usize>,
}

pub enum When {
    Every(Duration),
    Cron(Box<CronExpr>),
}

pub struct Cursor {
    pub param: String,
    pub from: JsonPath,
    pub initial: Option<Value>,
}

pub struct Next {
    pub from: JsonPath,
    pub param: String,
    pub more: Option<JsonPath>,
}

/// Why a poll's config cannot run. `check` refuses each of these with the file's line first,
/// so only a project loaded around it meets one at run time.
#[derive(Debug, thiserror::Error)]
pub enum PollConfigError {
    #[error("{what}: JSONPath `{path}`: {message}")]
    Path {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("{what}: `{text}` is not a duration: {source}")]
    Duration {
        what: &'static str,
        text: String,
        source: humantime::DurationError,
    },
    #[error(transparent)]
    Cron(#[from] crate::config::cron::CronError),
    #[error("a poll source needs exactly one of `every` or `cron`")]
    Schedule,
    #[error("key[{index}]: {message}")]
    Key { index: usize, message: String },
}

fn duration(what: &'static str, text: &str) -> Result<Duration, PollConfigError> {
    humantime::parse_duration(text).map_err(|source| PollConfigError::Duration {
        what,
        text: text.to_string(),
        source,
    })
}

impl Poll {
    pub fn compile(source: &PollSource) -> Result<Poll, PollConfigError> {
        let path = |what: &'static str, src: &str| {
            JsonPath::parse(src).map_err(|e| PollConfigError::Path {
                what,
                path: src.to_string(),
                message: e.message,
            })
        };
        let when = match (&source.every, &source.cron) {
            (Some(every), None) => {
                When::Every(duration("every", every)?.max(Duration::from_millis(10)))
            }
            (None, Some(cron)) => When::Cron(Box::new(CronExpr::parse(cron)?)),
            _ => return Err(PollConfigError::Schedule),
        };
        Ok(Poll {
            connector: source.connector.clone(),
            op: source.op.clone(),
            when,
            params: source.params.clone(),
            items: source
                .items
                .as_deref()
                .map(|p| path("items", p))
                .transpose()?,
            cursor: match &source.cursor {
                Some(c) => Some(Cursor {
                    param: c.param.clone(),
                    from: path("cursor.from", &c.from)?,
                    initial: c.initial.clone(),
                }),
                None => None,
            },
            next: match &source.next {
                Some(n) => Some(Next {
                    from: path("next.from", &n.from)?,
                    param: n.param.clone(),
                    more: n
                        .more
                        .as_deref()
                        .map(|m| path("next.more", m))
                        .transpose()?,
                }),
                None => None,
            },
            batch_size: source.batch_size.map(|n| n.max(1) as usize),
            offset: match &source.offset {
                Some(o) => Some(Offset {
                    param: o.param.clone(),
                    size: o.size.max(1) as usize,
                    size_param: o.size_param.clone(),
                    total: o
                        .total
                        .as_deref()
                        .map(|t| path("offset.total", t))
                        .transpose()?,
                    first_page: o.first_page.map(|n| n as usize),
                }),
                None => None,
            },
            since: None,
            key: None,
        })
    }

    /// A `catch_up:` poll: the poll, with `since` in place of a cursor and the business key.
    pub fn compile_catch_up(catch_up: &CatchUpConfig) -> Result<Poll, PollConfigError> {
        let mut poll = Poll::compile(&catch_up.poll)?;
        let lookback = duration("since.lookback", &catch_up.since.lookback)?;
        poll.cursor = None;
        poll.since = Some(Since {
            param: catch_up.since.param.clone(),
            lookback,
            format: catch_up.since.format,
        });
        poll.key = Some(
            BusinessKey::parse(&catch_up.key.list()).map_err(|(index, e)| {
                PollConfigError::Key {
                    index,
                    message: e.message,
                }
            })?,
        );
        Ok(poll)
    }

    /// The `x-crossdock-source` of the events it makes.
    fn kind(&self) -> &'static str {
        if self.since.is_some() {
            "catch_up"
        } else {
            "poll"
        }
    }
}

/// Why a poll stopped early. The next poll starts over from the stored cursor.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    NoConnector(#[from] super::NoConnector),
    #[error("calling `{connector}` `{op}`: {error}")]
    Call {
        connector: String,
        op: String,
        error: CallError,
    },
    #[error("accepting an item: {0}")]
    Submit(#[from] crate::runtime::InboxError),
    #[error("the cursor: {0}")]
    Cursor(#[from] StateError),
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollReport {
    pub pages: usize,
    /// Items accepted as new events.
    pub new: usize,
    /// Items seen before (their dedup key was known).
    pub duplicates: usize,
    /// The cursor after the poll.
    pub cursor: Option<Value>,
}

/// The state key of a pipeline's cursor.
pub fn cursor_key(pipeline: &str) -> String {
    format!("cursor/{}", escape(pipeline))
}

/// One poll: every page until there is no more (or [`MAX_PAGES`]), each item one event.
pub async fn poll_once(
    runtime: &Runtime,
    pipeline: &str,
    poll: &Poll,
) -> Result<PollReport, PollError> {
    let key = cursor_key(pipeline);
    let state = runtime.state().clone();
    let stored = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || state.get(&key))
            .await
            .map_err(|e| StateError::Backend(format!("reading the cursor: {e}")))??
    };
    let start = stored.or_else(|| poll.cursor.as_ref().and_then(|c| c.initial.clone()));
    let mut report = PollReport {
        cursor: start.clone(),
        ..PollReport::default()
    };
    // The cursor value the calls are made with, and the largest value seen so far.
    let mut asked = start;
    let mut token: Option<Value> = None;
    let mut offset: usize = 0;
    // One instant for every page, so the pages of a poll ask the same question.
    let since = poll.since.as_ref().map(|s| (s, s.value(Utc::now())));
    let mut keyless = 0usize;
    let mut more_left = false;
    for _ in 0..MAX_PAGES {
        let mut payload = poll.params.clone();
        if let Some((s, value)) = &since {
            payload.insert(s.param.clone(), value.clone());
        }
        if let (Some(c), Some(v)) = (&poll.cursor, &asked) {
            payload.insert(c.param.clone(), v.clone());
        }
        if let (Some(n), Some(t)) = (&poll.next, &token) {
            payload.insert(n.param.clone(), t.clone());
        }
        if let Some(o) = &poll.offset {
            let at = match o.first_page {
                Some(first) => first + report.pages,
                None => offset,
            };
            payload.insert(o.param.clone(), at.into());
            if let Some(size_param) = &o.size_param {
                payload.insert(size_param.clone(), o.size.into());
            }
        }
        let answer = call(runtime, poll, &Value::Object(payload)).await?;
        report.pages += 1;
        let items = items_of(poll, &answer);
        let before = report.cursor.clone();
        for item in &items {
            let from = poll
                .cursor
                .as_ref()
                .and_then(|c| c.from.first(item))
                .filter(|v| !v.is_null());
            let mut headers = super::headers(poll.kind());
            headers.insert("x-crossdock-connector".into(), poll.connector.clone());
            let business = poll.key.as_ref().and_then(|k| k.dedup_key(item));
            if poll.key.is_some() && business.is_none() {
                keyless += 1;
            }
            let key = business.unwrap_or_else(|| dedup_key(item, from));
            let accepted = runtime
                .submit(pipeline, &[&key], headers, item.to_string().as_bytes())
                .await?;
            match accepted {
                Submitted::New(_) => report.new += 1,
                Submitted::Duplicate(_) => report.duplicates += 1,
            }
            if let Some(v) = from {
                if report
                    .cursor
                    .as_ref()
                    .is_none_or(|c| compare(v, c) == Ordering::Greater)
                {
                    report.cursor = Some(v.clone());
                }
            }
        }
        // Only now: every item of the page is in the inbox.
        if report.cursor != before {
            if let Some(v) = &report.cursor {
                store_cursor(runtime, &key, v.clone()).await?;
            }
        }
        token = poll
            .next
            .as_ref()
            .and_then(|n| n.from.first(&answer))
            .filter(|t| !(t.is_null() || t.as_str() == Some("")))
            .cloned();
        let more = match (&poll.next, poll.batch_size) {
            _ if poll.offset.is_some() => {
                offset += items.len();
                poll.offset
                    .as_ref()
                    .is_some_and(|o| more_by_offset(o, &answer, items.len(), offset))
            }
            (Some(n), _) => {
                token.is_some()
                    && n.more
                        .as_ref()
                        .is_none_or(|m| m.first(&answer) == Some(&Value::Bool(true)))
            }
            (None, Some(size)) if items.len() >= size => {
                if report.cursor == asked {
                    tracing::warn!(
                        pipeline,
                        "A full page did not move the cursor: the rest waits for the next poll"
                    );
                    false
                } else {
                    asked = report.cursor.clone();
                    true
                }
            }
            _ => false,
        };
        more_left = more;
        if !more {
            break;
        }
    }
    if keyless > 0 {
        // Such an item is still one event (by its own poll key), but a webhook of the same
        // object is not known as its duplicate.
        tracing::warn!(
            pipeline,
            items = keyless,
            "Catch-up items without the fields of `key`: they cannot be matched with webhooks"
        );
    }
    if more_left {
        tracing::warn!(
            pipeline,
            pages = MAX_PAGES,
            "Page limit reached: the next poll goes on from the cursor"
        );
    }
    Ok(report)
}

async fn call(runtime: &Runtime, poll: &Poll, payload: &Value) -> Result<Value, PollError> {
    let live = runtime.live();
    let connector = runtime.sources().connector(&live, &poll.connector)?;
    let request = Request {
        connector: &poll.connector,
        op: &poll.op,
        object: None,
        key: None,
        payload,
        idempotency_key: None,
    };
    connector
        .call(request, runtime.settings.call_timeout)
        .await
        .map(|reply| reply.body)
        .map_err(|error| PollError::Call {
            connector: poll.connector.clone(),
            op: poll.op.clone(),
            error,
        })
}

/// Whether an offset-paged poll asks for another page: the last one was full, and `total`
/// (when the answer says it) is not reached.
fn more_by_offset(o: &Offset, answer: &Value, got: usize, fetched: usize) -> bool {
    if got < o.size {
        return false;
    }
    let total = o
        .total
        .as_ref()
        .and_then(|t| t.first(answer))
        .and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
    total.is_none_or(|t| (fetched as u64) < t)
}

/// The items of an answer: what `items` selects (the elements, when it selects one list), or
/// the answer itself (its elements when it is a list; nothing when it is null).
pub fn items_of(poll: &Poll, answer: &Value) -> Vec<Value> {
    let found: Vec<&Value> = match &poll.items {
        Some(path) => path.query(answer),
        None => vec![answer],
    };
    match found.as_slice() {
        [Value::Array(list)] => list.clone(),
        [Value::Null] => Vec::new(),
        _ => found
            .into_iter()
            .filter(|v| !v.is_null())
            .cloned()
            .collect(),
    }
}

/// An item's dedup key; see the module docs.
pub fn dedup_key(item: &Value, from: Option<&Value>) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (item.get("id").filter(|id| !id.is_null()), from) {
        (Some(id), Some(from)) => format!("poll:{}@{}", text(id), text(from)),
        (Some(id), None) => format!("poll:{}", text(id)),
        (None, _) => {
            // serde_json orders object keys, so equal items hash equal.
            let hash = Sha256::digest(item.to_string().as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            format!("poll:sha256:{hex}")
        }
    }
}

/// Orders cursor values: instants when both are RFC 3339 times, numbers when both are numbers,
/// else text.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            match (
                DateTime::parse_from_rfc3339(x),
                DateTime::parse_from_rfc3339(y),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            use std::str::FromStr;
            // Numbers keep their text (arbitrary precision): compare as decimals, so ids
            // beyond 2^53 order right.
            let dx = rust_decimal::Decimal::from_str(&x.to_string());
            let dy = rust_decimal::Decimal::from_str(&y.to_string());
            match (dx, dy) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => {
                    let fx = x.as_f64().unwrap_or(0.0);
                    let fy = y.as_f64().unwrap_or(0.0);
                    fx.partial_cmp(&fy).unwrap_or(Ordering::Equal)
                }
            }
        }
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Writes the cursor, never moving it back (two polls of one pipeline across a reload).
async fn store_cursor(runtime: &Runtime, key: &str, value: Value) -> Result<(), StateError> {
    let state = runtime.state().clone();
    let keys = vec![key.to_string()];
    tokio::task::spawn_blocking(move || {
        state.update(&keys, &mut |old| {
            let keep = match old.first() {
                Some(Some(old)) => compare(old, &value) == Ordering::Greater,
                _ => false,
            };
            let new = if keep {
                old.first().cloned().flatten()
            } else {
                Some(value.clone())
            };
            Ok((vec![new], Value::Null))
        })
    })
    .await
    .map_err(|e| StateError::Backend(format!("writing the cursor: {e}")))??;
    Ok(())
}

pub(super) async fn run(cx: SourceCx, source: PollSource) {
    drive(cx, Poll::compile(&source)).await
}

/// A `catch_up:` poll's task: as a poll source's, with its own payload field and keys.
pub(super) async fn run_catch_up(cx: SourceCx, catch_up: CatchUpConfig) {
    drive(cx, Poll::compile_catch_up(&catch_up)).await
}

async fn drive(mut cx: SourceCx, compiled: Result<Poll, PollConfigError>) {
    let poll = match compiled {
        Ok(p) => p,
        Err(e) => {
            // `check` refuses this, so only a project loaded around it gets here.
            tracing::error!(error = %e, "Poll cannot run");
            return cx.idle().await;
        }
    };
    let mut first = true;
    let mut last_error: Option<String> = None;
    loop {
        let wait = match &poll.when {
            When::Every(_) if first => Duration::ZERO,
            When::Every(every) => *every,
            When::Cron(cron) => {
                let now = chrono::Utc::now();
                match cron.next_after(now) {
                    Some(at) => (at - now).to_std().unwrap_or_default(),
                    None => {
                        tracing::warn!(cron = cron.as_str(), "The poll schedule never fires again");
                        return cx.idle().await;
                    }
                }
            }
        };
        first = false;
        if cx.sleep(wait).await {
            return;
        }
        match poll_once(&cx.runtime, &cx.pipeline, &poll).await {
            Ok(r) => {
                if last_error.take().is_some() {
                    tracing::info!("Poll works again");
                }
                tracing::debug!(
                    pages = r.pages,
                    new = r.new,
                    duplicates = r.duplicates,
                    "Polled"
                );
            }
            Err(e) => {
                // Said once per kind of failure, not at every interval of a long outage.
                let message = e.to_string();
                if last_error.as_deref() == Some(&message) {
                    tracing::debug!(error = %message, "Poll failed again");
                } else {
                    tracing::warn!(
                        pipeline = %cx.pipeline,
                        error = %message,
                        "Poll failed; trying again at each interval"
                    );
                    last_error = Some(message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn poll(items: Option<&str>) -> Poll {
        Poll::compile(&PollSource {
            connector: "c".into(),
            op: "list".into(),
            every: Some("1m".into()),
            cron: None,
            params: Map::new(),
            items: items.map(str::to_string),
            cursor: None,
            next: None,
            batch_size: None,
            offset: None,
        })
        .unwrap()
    }

    #[test]
    fn items_are_the_list_the_path_selects() {
        let answer = json!({"data": [{"id": 1}, {"id": 2}], "meta": {}});
        assert_eq!(items_of(&poll(Some("$.data")), &answer).len(), 2);
        assert_eq!(items_of(&poll(Some("$.data[*]")), &answer).len(), 2);
        assert_eq!(items_of(&poll(Some("$.missing")), &answer).len(), 0);
        assert_eq!(items_of(&poll(None), &json!([1, 2, 3])).len(), 3);
        assert_eq!(items_of(&poll(None), &json!({"one": 1})).len(), 1);
        assert_eq!(items_of(&poll(None), &Value::Null).len(), 0);
    }

    #[test]
    fn dedup_keys_tell_updates_from_repeats() {
        let item = json!({"id": 7, "updated_at": "2026-01-02T00:00:00Z"});
        let from = json!("2026-01-02T00:00:00Z");
        assert_eq!(dedup_key(&item, Some(&from)), "poll:7@2026-01-02T00:00:00Z");
        assert_eq!(dedup_key(&item, None), "poll:7");
        let a = dedup_key(&json!({"b": 1, "a": 2}), None);
        assert!(a.starts_with("poll:sha256:"));
        assert_eq!(a, dedup_key(&json!({"a": 2, "b": 1}), None));
        assert_ne!(a, dedup_key(&json!({"a": 3, "b": 1}), None));
    }

    #[test]
    fn cursor_values_compare_by_meaning() {
        let gt = |a: Value, b: Value| compare(&a, &b) == Ordering::Greater;
        assert!(gt(
            json!("2026-01-02T00:00:00Z"),
            json!("2026-01-01T23:00:00Z")
        ));
        // Same instant-order across offsets, where text order would be wrong.
        assert!(gt(
            json!("2026-01-01T10:00:00-05:00"),
            json!("2026-01-01T12:00:00Z")
        ));
        assert!(gt(json!(10), json!(9)));
        assert!(gt(
            serde_json::from_str::<Value>("9007199254740993").unwrap(),
            serde_json::from_str::<Value>("9007199254740992").unwrap()
        ));
        assert!(gt(json!("b"), json!("a")));
    }
}
