//! The cluster's index of events, so any node lists and searches the events every node ran:
//! one stream beside the trails bucket, written when a node shares an event's trail.
//!
//! | subject | value | kept |
//! |---|---|---|
//! | `{prefix}.events.e.{id}` | the event's summary (as `GET /api/events` lists it) | its latest only |
//! | `{prefix}.events.k.{hash}.{id}` | the same summary, once per correlation key (hash of name and value) | its latest only |
//! | `{prefix}.events.r.{id}` | the delivery's headers and first [`RAW_KEEP`] body bytes | its latest only |
//!
//! The stream `{prefix}_events` keeps one message per subject (`max_msgs_per_subject: 1`), so an
//! event rewritten after each attempt is listed once, at its latest place; it forgets after
//! `keep_trails` and past its byte budget (the oldest first), as the nodes' own trails do.
//!
//! A page is read newest first by windows of stream sequences, each through a short-lived
//! consumer filtered on the subjects wanted (the server skips the rest): a window's messages
//! come oldest first and are turned round. Every page reads a bounded number of messages and
//! windows; a page cut short by that bound has a cursor to go on from, as on one machine.
//!
//! Values are bytes here: the runtime decides what a summary holds and which it keeps.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::records::unavailable;
use super::{ClusterError, Settings};

/// Body bytes of a finished event the index keeps for its raw view: within NATS's default
/// 1 MB message, with room for the headers.
pub const RAW_KEEP: usize = 512 * 1024;

/// Stream sequences a window of the whole list covers: it never holds more messages than this.
const LIST_WINDOW: u64 = 1024;
/// Stream sequences a window of a key search covers at first; halved while it holds more
/// than [`WINDOW_MESSAGES`] of the key's.
const KEY_WINDOW: u64 = 65_536;
/// Messages one window may bring at most.
const WINDOW_MESSAGES: usize = 1024;
/// Windows one page reads at most, however few messages they hold.
const MAX_WINDOWS: usize = 32;

/// The index as one node uses it.
#[derive(Clone)]
pub struct EventIndex {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
}

/// A page of summaries, newest first.
pub struct Page {
    pub items: Vec<Bytes>,
    /// Where the next page starts (a stream sequence), unless the index is read to its start.
    pub next: Option<u64>,
    /// Messages read.
    pub scanned: usize,
}

impl EventIndex {
    /// Binds the stream, creating it when missing: kept `keep` and at most `max_bytes`.
    pub async fn open(
        settings: &Settings,
        js: jetstream::Context,
        keep: Duration,
        max_bytes: u64,
    ) -> Result<EventIndex, ClusterError> {
        let name = format!("{}_events", settings.prefix);
        let subject = format!("{}.events", settings.prefix);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{subject}.>")],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            // A zero `max_age` is "for ever" to JetStream, the opposite of `keep_trails: 0s`.
            max_age: keep.max(Duration::from_secs(1)),
            max_bytes: i64::try_from(max_bytes.max(1 << 20)).unwrap_or(i64::MAX),
            max_messages_per_subject: 1,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| ClusterError::Setup {
                what: "stream",
                name,
                message: e.to_string(),
            })?;
        Ok(EventIndex {
            js,
            stream,
            subject,
        })
    }

    /// Indexes an event: its summary under its id and under each of its correlation keys, and
    /// its delivery when given (once it is finished). Returns when the stream has all of it.
    pub async fn put(
        &self,
        id: &str,
        summary: Bytes,
        keys: &[(&str, &str)],
        raw: Option<Bytes>,
    ) -> Result<(), ClusterError> {
        let mut writes = vec![(format!("{}.e.{id}", self.subject), summary.clone())];
        for (name, value) in keys {
            writes.push((self.key_subject(name, value, id), summary.clone()));
        }
        if let Some(raw) = raw {
            writes.push((format!("{}.r.{id}", self.subject), raw));
        }
        // Sent together, acknowledged together: one round trip, not one per message.
        let mut acks = Vec::with_capacity(writes.len());
        for (subject, payload) in writes {
            acks.push(
                self.js
                    .publish(subject, payload)
                    .await
                    .map_err(unavailable)?,
            );
        }
        for ack in acks {
            ack.await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// A finished event's delivery as [`EventIndex::put`] kept it.
    pub async fn raw(&self, id: &str) -> Result<Option<Bytes>, ClusterError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&format!("{}.r.{id}", self.subject))
            .await
        {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Summaries newest first (of the events whose correlation key `key` names, when given),
    /// those `keep` keeps, at most `limit`, from before the stream sequence `before`; at most
    /// about `scan` messages are read.
    pub async fn page(
        &self,
        key: Option<(&str, &str)>,
        before: Option<u64>,
        limit: usize,
        scan: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Page, ClusterError> {
        let (filter, mut window) = match key {
            Some((name, value)) => (self.key_subject(name, value, "*"), KEY_WINDOW),
            None => (format!("{}.e.*", self.subject), LIST_WINDOW),
        };
        let mut stream = self.stream.clone();
        let state = &stream.info().await.map_err(unavailable)?.state;
        let first = state.first_sequence.max(1);
        let mut hi = before.unwrap_or(u64::MAX).min(state.last_sequence + 1);
        let mut page = Page {
            items: Vec::new(),
            next: None,
            scanned: 0,
        };
        let mut windows = 0;
        while hi > first && page.items.len() < limit {
            if windows == MAX_WINDOWS || page.scanned + WINDOW_MESSAGES > scan.max(WINDOW_MESSAGES)
            {
                page.next = Some(hi);
                return Ok(page);
            }
            windows += 1;
            let lo = hi.saturating_sub(window).max(first);
            let Some(found) = self.window(&filter, lo, hi).await? else {
                // More than a window may bring: a narrower one, from the same end.
                window = (window / 2).max(1);
                continue;
            };
            page.scanned += found.len();
            hi = lo;
            for (seq, payload) in found.into_iter().rev() {
                if page.items.len() == limit {
                    // The rest of this window comes on the next page.
                    page.next = Some(seq + 1);
                    return Ok(page);
                }
                if keep(&payload) {
                    page.items.push(payload);
                }
            }
        }
        if hi > first {
            page.next = Some(hi);
        }
        Ok(page)
    }

    /// The messages on `filter` with sequences in `lo..hi`, oldest first; `None` when they are
    /// more than [`WINDOW_MESSAGES`].
    async fn window(
        &self,
        filter: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Option<Vec<(u64, Bytes)>>, ClusterError> {
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: lo },
                filter_subject: filter.to_string(),
                ack_policy: AckPolicy::None,
                // Gone by itself if this node dies before deleting it.
                inactive_threshold: Duration::from_secs(10),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let name = consumer.cached_info().name.clone();
        let read = read_window(&consumer, lo, hi).await;
        let stream = self.stream.clone();
        // Not waited for: the consumer expires anyway.
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        read
    }

    fn key_subject(&self, name: &str, value: &str, id: &str) -> String {
        let hash = super::inbox::message_id(name, value);
        format!("{}.k.{}.{id}", self.subject, &hash[..32])
    }
}

async fn read_window(
    consumer: &jetstream::consumer::PullConsumer,
    lo: u64,
    hi: u64,
) -> Result<Option<Vec<(u64, Bytes)>>, ClusterError> {
    let mut out = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .messages()
            .await
            .map_err(unavailable)?;
        let mut got = 0;
        while let Some(next) = batch.next().await {
            let message = next.map_err(unavailable)?;
            got += 1;
            let seq = message.info().map_err(unavailable)?.stream_sequence;
            if seq >= hi {
                return Ok(Some(out));
            }
            if seq >= lo {
                if out.len() == WINDOW_MESSAGES {
                    return Ok(None);
                }
                out.push((seq, message.message.payload));
            }
        }
        if got == 0 {
            return Ok(Some(out));
        }
    }
}
