//! What the inbox stores, as bytes: an event's meta and body, dead letters, trails, dedup
//! values and event ids. Owns the encoding, not the tables (`mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InboxError;

/// What is stored about an event besides its body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMeta {
    pub id: String,
    pub pipeline: String,
    /// RFC 3339.
    pub received_at: String,
    /// Request headers, names in lower case (credentials removed).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be tried before this time (ms since the epoch); 0 for at once.
    #[serde(default)]
    pub not_before_ms: u64,
    /// The effects (`Action::effect`) that succeeded in earlier runs of the event: a retry,
    /// and a dead letter retried, skip them. A compensation that undid one takes it out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<String>,
    /// Compensations owed: the steps with `undo:` whose effects took place, each with the record
    /// its undo steps run on, in the order the steps ran. Run in reverse when the event fails
    /// for good, and when its dead letter is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<crate::flow::Undo>,
    /// A dead letter retried with `--full`: its next run commits its state writes again
    /// although an earlier run committed them (see `state::applied_key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_rerun: bool,
    /// Every failed attempt.
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// Runs that began after a restart and never came to an end: the engine stopped (a crash,
    /// an abort, `kill -9`) while the event was running. Written to disk before such a run
    /// starts, so an event that takes the process down is counted even as it does; at
    /// `quarantine_after` it is dead-lettered unrun instead of taking the engine down again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interrupted: u32,
    /// The pipeline's correlation keys found in the body by its last run (name → value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptError {
    /// RFC 3339.
    pub at: String,
    pub message: String,
}

/// An event as stored: meta and the body exactly as received.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub meta: EventMeta,
    pub body: Arc<[u8]>,
    /// Found in the inbox at start (not kept on disk): its next run is counted in
    /// [`EventMeta::interrupted`] before it begins.
    pub resumed: bool,
}

/// A dead letter: the original event, every attempt's error, and the version that failed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: EventMeta,
    /// The body as received (a string when it is not JSON).
    pub body: Value,
    pub reason: String,
    /// The project version the last attempt ran on.
    pub version: String,
    /// RFC 3339.
    pub dead_at: String,
}

/// What happened to one event: kept after it leaves the inbox, shown by the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trail {
    pub event_id: String,
    pub pipeline: String,
    /// The project version the event ran on (its last attempt).
    pub version: String,
    pub received_at: String,
    pub finished_at: String,
    /// `processed`, `skipped` (the trigger did not match), `filtered`, `retrying`,
    /// `dead_lettered` or `failed` (dropped: the pipeline keeps no dead letters).
    pub status: String,
    pub attempts: u32,
    /// The steps that ran, in order.
    #[serde(default)]
    pub steps: Vec<Arc<str>>,
    pub actions: Vec<ActionTrail>,
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// Time spent in the flow (mapping, rules, state), microseconds.
    pub flow_us: u64,
    /// From receipt to the end of the last attempt, milliseconds.
    pub total_ms: u64,
    /// The compensations run when the event failed for good or its dead letter was dropped,
    /// the latest step's first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensations: Vec<CompensationTrail>,
    /// The correlation keys of the event (name → value), indexed in the `keys` table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// The tenant the event is for, on a pipeline with `tenants:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What each step of the last attempt saw and did (docs/runtime.md, "An event's
    /// explanation"), secrets masked; none when no step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Box<crate::flow::explain::Explanation>>,
}

impl Trail {
    /// The trail of an event ending now with `status` on `version`, from what its meta holds:
    /// no steps, actions or times of its own yet.
    pub fn of(meta: &EventMeta, version: &str, status: &str) -> Trail {
        Trail {
            event_id: meta.id.clone(),
            pipeline: meta.pipeline.clone(),
            version: version.to_string(),
            received_at: meta.received_at.clone(),
            finished_at: now_rfc3339(),
            status: status.into(),
            attempts: meta.attempts,
            steps: Vec::new(),
            actions: Vec::new(),
            errors: meta.errors.clone(),
            flow_us: 0,
            total_ms: 0,
            compensations: Vec::new(),
            keys: meta.keys.clone(),
            tenant: meta.headers.get(crate::rules::TENANT_HEADER).cloned(),
            explanation: None,
        }
    }
}

/// One step's `undo:` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompensationTrail {
    /// The step undone, as in `EventMeta::undo`.
    pub step: String,
    /// `done`, `failed` (it is still owed: it runs again when the dead letter is dropped), or
    /// `not_needed` (a `send` that never took effect).
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Arc<str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionTrail>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionTrail {
    pub connector: Arc<str>,
    pub op: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub object: Option<Arc<str>>,
    /// `ok`, `failed`, `skipped` (done by an earlier attempt) or `not_run`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remote_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    pub ms: u64,
    /// When the call was made (RFC 3339); none for an action not called.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at: Option<String>,
}

pub fn event_id(seq: u64) -> String {
    format!("evt_{seq:016x}")
}

/// The sequence number in an event id, if it is one.
pub fn parse_event_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("evt_")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn parse_dedup(value: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let (at, id) = text.split_once(' ')?;
    Some((at.parse().ok()?, id))
}

pub(super) fn key_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, InboxError> {
    to_json_with(value, META_GUESS)
}

/// What an event's meta or a trail takes as JSON, about: room made at once rather than by
/// doubling from a few bytes (each doubling copies what is there).
const META_GUESS: usize = 1024;

/// As [`to_json`], into a vector with room for `capacity` bytes: a caller that appends a body
/// after the JSON counts it in.
pub(super) fn to_json_with<T: Serialize>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, InboxError> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).map_err(|e| InboxError::Corrupt {
        key: "(new)".into(),
        message: e.to_string(),
    })?;
    Ok(out)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, InboxError> {
    serde_json::from_slice(bytes).map_err(|e| InboxError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// The length of the body in an `inbox` value (what follows the meta's line).
pub(super) fn body_len(value: &[u8]) -> usize {
    let split = value
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(value.len());
    value.len().saturating_sub(split + 1)
}

/// The `keys` index entry of one correlation key of event `seq`: the name, the value, each
/// ended by a zero byte, then the sequence number (8 bytes BE), so one key's events are
/// contiguous and in arrival order.
pub(super) fn key_entry(name: &str, value: &str, seq: u64) -> Vec<u8> {
    let mut out = key_prefix(name, value);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

pub(super) fn key_prefix(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 10);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    out
}

/// A finished event's delivery as the `raw` table keeps it: the headers it was stored with
/// as JSON, `\n`, then the first [`RAW_KEEP`] bytes of its body.
pub(super) fn encode_raw(
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<Vec<u8>, InboxError> {
    // Fields in the order `json!` sorted them in, so entries written before read the same.
    #[derive(Serialize)]
    struct Meta<'a> {
        bytes: usize,
        headers: &'a BTreeMap<String, String>,
    }
    let kept = &body[..body.len().min(RAW_KEEP)];
    let meta = Meta {
        bytes: body.len(),
        headers,
    };
    let mut out = to_json_with(&meta, META_GUESS + kept.len())?;
    out.push(b'\n');
    out.extend_from_slice(kept);
    Ok(out)
}

/// The body bytes of a finished event kept for its raw view at most: a larger body keeps its
/// first bytes and says how long it was.
pub const RAW_KEEP: usize = 1024 * 1024;

/// An event's delivery as received: its stored headers, its body (all of it while the event
/// is in the inbox, at most [`RAW_KEEP`] bytes after), and the body's length as received.
#[derive(Debug, Clone)]
pub struct RawDelivery {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub bytes: usize,
}

pub(super) fn decode_raw(key: &str, value: &[u8]) -> Result<RawDelivery, InboxError> {
    #[derive(Deserialize)]
    struct Meta {
        headers: BTreeMap<String, String>,
        bytes: usize,
    }
    let split = value
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| InboxError::Corrupt {
            key: key.to_string(),
            message: "no end of meta".into(),
        })?;
    let meta: Meta = from_json(key, &value[..split])?;
    Ok(RawDelivery {
        headers: meta.headers,
        body: value[split + 1..].to_vec(),
        bytes: meta.bytes,
    })
}

pub(super) fn encode_event(meta: &EventMeta, body: &[u8]) -> Result<Vec<u8>, InboxError> {
    // Compact JSON never holds a raw newline, so the first one ends the meta.
    let mut out = to_json_with(meta, META_GUESS + body.len())?;
    out.push(b'\n');
    out.extend_from_slice(body);
    Ok(out)
}

pub(super) fn decode_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, InboxError> {
    let name = || format!("inbox/{}", key_seq(key).map(event_id).unwrap_or_default());
    let seq = key_seq(key).ok_or_else(|| InboxError::Corrupt {
        key: name(),
        message: "key is not a sequence number".into(),
    })?;
    let split = value
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| InboxError::Corrupt {
            key: name(),
            message: "no end of meta".into(),
        })?;
    let meta = from_json(&name(), &value[..split])?;
    Ok(StoredEvent {
        seq,
        meta,
        body: Arc::from(&value[split + 1..]),
        resumed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers with what JSON escapes, and more than one.
    fn headers() -> BTreeMap<String, String> {
        [
            ("content-type", "application/json"),
            ("webhook-id", "msg_\"1\"\\\t\u{1}é"),
            ("x-b", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn a_raw_entry_is_written_as_the_json_value_wrote_it_and_reads_back() {
        let headers = headers();
        let body = br#"{"a":"b\n"}"#;
        let mut was =
            serde_json::to_vec(&serde_json::json!({ "headers": &headers, "bytes": body.len() }))
                .unwrap();
        was.push(b'\n');
        was.extend_from_slice(body);
        let value = encode_raw(&headers, body).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&value),
            String::from_utf8_lossy(&was)
        );
        let back = decode_raw("evt", &value).unwrap();
        assert_eq!(
            (back.headers, back.body, back.bytes),
            (headers, body.to_vec(), body.len())
        );
    }

    #[test]
    fn an_event_is_written_as_serde_wrote_it() {
        let meta = EventMeta {
            id: event_id(7),
            pipeline: "p".into(),
            received_at: now_rfc3339(),
            headers: headers(),
            attempts: 2,
            not_before_ms: 5,
            done: BTreeSet::from(["a".to_owned()]),
            undo: Vec::new(),
            full_rerun: true,
            errors: vec![AttemptError {
                at: "t".into(),
                message: "m\"".into(),
            }],
            interrupted: 1,
            keys: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        };
        let body = b"{\"x\":\n1}";
        let mut was = serde_json::to_vec(&meta).unwrap();
        was.push(b'\n');
        was.extend_from_slice(body);
        assert_eq!(encode_event(&meta, body).unwrap(), was);
        let back = decode_event(&7u64.to_be_bytes(), &was).unwrap();
        assert_eq!((back.seq, &*back.body), (7, &body[..]));
        assert_eq!(back.meta.headers, meta.headers);
    }
}
