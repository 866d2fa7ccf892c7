//! A node's answers about events in a cluster, from what every node shares: one event (its
//! trail, its progress, or its message still in the inbox stream), its delivery, and pages of
//! the cluster's events with their search by correlation key, from the events index
//! ([`crate::cluster::events`]). It also writes that index when a trail is shared. It must not
//! change an event.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{fresh_meta, parse, unavailable, Link};
use crate::cluster::events::RAW_KEEP;
use crate::runtime::inbox::{self, EventMeta, InboxError, RawDelivery, Trail, TrailFilter};
use crate::runtime::Runtime;

/// What the cluster knows of an event, for `GET /api/events/{id}`.
pub struct Known {
    /// Its meta while it waits to run (again), here or on another node.
    pub queued: Option<EventMeta>,
    /// Its last attempt's trail.
    pub trail: Option<Trail>,
    /// Its meta when it is in the inbox stream and no node shared anything of it yet: accepted,
    /// waiting for a node or running its first attempt.
    pub accepted: Option<EventMeta>,
}

/// The fields of a summary a [`TrailFilter`] reads.
#[derive(Deserialize)]
struct Summary<'a> {
    pipeline: &'a str,
    status: &'a str,
    #[serde(default)]
    tenant: Option<&'a str>,
    received_at: &'a str,
}

/// A page's cursor in a cluster: `s` and a place in the events index.
fn cursor(next: Option<u64>) -> Option<String> {
    next.map(|n| format!("s{n}"))
}

impl Link {
    /// Shares an event's trail: to the trails bucket, and its summary (and, once it is
    /// finished, its delivery) to the events index, both at once.
    pub(super) async fn put_trail(
        &self,
        runtime: &Runtime,
        id: &str,
        trail: &Trail,
        finished: bool,
    ) -> Result<(), crate::cluster::ClusterError> {
        let encode = |e: serde_json::Error| crate::cluster::ClusterError::Malformed(e.to_string());
        let bytes = serde_json::to_vec(trail).map_err(encode)?;
        let summary = serde_json::to_vec(&inbox::trail_summary(trail)).map_err(encode)?;
        let keys: Vec<(&str, &str)> = trail
            .keys
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let raw = match finished.then(|| runtime.inbox.raw(id)) {
            Some(Ok(Some(raw))) => Some(encode_raw(&raw).map_err(encode)?),
            _ => None,
        };
        let (trail, index) = tokio::join!(
            self.records.put_trail(id, bytes),
            self.index.put(id, Bytes::from(summary), &keys, raw),
        );
        trail.and(index)
    }

    /// An event as `GET /api/events/{id}` shows it, from the cluster's buckets and stream (the
    /// local inbox first, while it is here).
    pub async fn event(&self, runtime: &Runtime, id: &str) -> Result<Known, InboxError> {
        let trail = match self.records.trail(id).await.map_err(unavailable)? {
            Some(bytes) => Some(parse::<Trail>(id, &bytes)?),
            None => runtime.inbox.trail(id)?,
        };
        let mut known = Known {
            queued: runtime.inbox.queued(id)?,
            trail,
            accepted: None,
        };
        if known.queued.is_some() || known.trail.as_ref().is_some_and(|t| t.status != "retrying") {
            return Ok(known);
        }
        if let Some(bytes) = self.records.run(id).await.map_err(unavailable)? {
            known.queued = Some(parse::<EventMeta>(id, &bytes)?);
            return Ok(known);
        }
        if known.trail.is_none() {
            known.accepted = self.accepted(id).await?.map(|(meta, _)| meta);
        }
        Ok(known)
    }

    /// The event `id` while its message is in the inbox stream under that id.
    async fn accepted(&self, id: &str) -> Result<Option<(EventMeta, Bytes)>, InboxError> {
        let Some(seq) = inbox::parse_event_id(id) else {
            return Ok(None);
        };
        match self.inbox.message(seq).await.map_err(unavailable)? {
            // A retried dead letter's message carries the id it had: not this event.
            Some((meta, _)) if meta.id.as_deref().is_some_and(|other| other != id) => Ok(None),
            Some((meta, body)) => Ok(Some((fresh_meta(id.to_string(), meta), body))),
            None => Ok(None),
        }
    }

    /// An event's delivery from any node: kept here, kept in the events index when it
    /// finished, or its message while it is still in the inbox stream.
    pub async fn raw(
        &self,
        runtime: &Runtime,
        id: &str,
    ) -> Result<Option<RawDelivery>, InboxError> {
        if let Some(raw) = runtime.inbox.raw(id)? {
            return Ok(Some(raw));
        }
        if let Some(bytes) = self.index.raw(id).await.map_err(unavailable)? {
            return decode_raw(&bytes)
                .map(Some)
                .ok_or_else(|| InboxError::Corrupt {
                    key: id.to_string(),
                    message: "a kept delivery without its headers".into(),
                });
        }
        Ok(self.accepted(id).await?.map(|(meta, body)| RawDelivery {
            headers: meta.headers,
            bytes: body.len(),
            body: body.to_vec(),
        }))
    }

    /// A page of the cluster's events, newest first (by when their trail was last shared), as
    /// [`inbox::Inbox::trail_page`] and [`inbox::Inbox::key_page`] page a node's own; `next`
    /// is a place in the events index.
    pub async fn trail_page(
        &self,
        key: Option<(&str, &str)>,
        filter: &TrailFilter<'_>,
        cursor_in: Option<&str>,
        limit: usize,
        scan: usize,
    ) -> Result<Value, InboxError> {
        let before = cursor_in
            .and_then(|c| c.strip_prefix('s'))
            .and_then(|n| n.parse::<u64>().ok());
        let keeps = |bytes: &[u8]| {
            serde_json::from_slice::<Summary>(bytes)
                .is_ok_and(|s| filter.keeps_parts(s.pipeline, s.status, s.tenant, s.received_at))
        };
        let page = self
            .index
            .page(key, before, limit, scan, keeps)
            .await
            .map_err(unavailable)?;
        let items: Vec<Value> = page
            .items
            .iter()
            .filter_map(|bytes| serde_json::from_slice(bytes).ok())
            .collect();
        Ok(serde_json::json!({
            "items": items,
            "next": cursor(page.next),
            "scanned": page.scanned,
        }))
    }
}

/// A delivery as the events index keeps it: `{"bytes", "headers"}` as JSON, `\n`, then the
/// first [`RAW_KEEP`] bytes of the body.
#[derive(Serialize, Deserialize)]
struct RawMeta {
    bytes: usize,
    headers: BTreeMap<String, String>,
}

fn encode_raw(raw: &RawDelivery) -> Result<Bytes, serde_json::Error> {
    let kept = &raw.body[..raw.body.len().min(RAW_KEEP)];
    let mut out = serde_json::to_vec(&RawMeta {
        bytes: raw.bytes,
        headers: raw.headers.clone(),
    })?;
    out.push(b'\n');
    out.extend_from_slice(kept);
    Ok(Bytes::from(out))
}

fn decode_raw(bytes: &[u8]) -> Option<RawDelivery> {
    let end = memchr::memchr(b'\n', bytes)?;
    let meta: RawMeta = serde_json::from_slice(&bytes[..end]).ok()?;
    Some(RawDelivery {
        headers: meta.headers,
        body: bytes[end + 1..].to_vec(),
        bytes: meta.bytes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_delivery_reads_back_cut_to_its_budget() {
        let raw = RawDelivery {
            headers: BTreeMap::from([("x-a".into(), "1\n2".into())]),
            body: vec![b'x'; RAW_KEEP + 10],
            bytes: RAW_KEEP + 10,
        };
        let back = decode_raw(&encode_raw(&raw).unwrap()).unwrap();
        assert_eq!(back.headers, raw.headers);
        assert_eq!(back.body.len(), RAW_KEEP);
        assert_eq!(back.bytes, RAW_KEEP + 10);
        assert!(decode_raw(b"no newline").is_none());
    }
}
