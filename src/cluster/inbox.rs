//! The inbox as a JetStream stream: publishing an accepted event, taking events from the one
//! durable pull consumer all nodes share, acknowledging them when done.
//!
//! # Stream and consumer
//!
//! | name | kind | settings |
//! |---|---|---|
//! | `{prefix}_inbox` | stream on `{prefix}.inbox` and `{prefix}.inbox.>` | work queue, file storage, `replicas`, `duplicate_window` = `server.dedup_window` |
//! | `workers` | durable pull consumer of it | explicit ack, `ack_wait`, unlimited deliveries, `max_ack_pending` |
//!
//! A message is `{"pipeline", "received_at", "headers"}` as one line of JSON, `\n`, then the
//! body exactly as received, so the body's bytes (and a signature over them) are kept. Its
//! `Nats-Msg-Id` is a hash of the pipeline and the delivery's dedup key: a second publish with
//! the same id within the window is stored once and answered `duplicate` by the server, on
//! whichever node it arrives.
//!
//! The work-queue retention removes a message when it is acknowledged, so the stream holds
//! exactly the events not yet done. A work-queue stream refuses a second unfiltered consumer,
//! which is why every node binds the same durable one.
//!
//! # Ordering keys
//!
//! An event with an ordering key is published on `{prefix}.inbox.k.{hash}`, the hash of its
//! pipeline and key, and every other on `{prefix}.inbox`. Since the stream holds exactly the
//! events not yet done, the oldest message left on a key's subject is the one event of that
//! key that may run: [`InboxStream::turn`] asks the stream leader for it. A later event of the
//! key handed to a node before then is given back for a while.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClusterError, Settings};

/// Bytes of a message's metadata line past which it is refused as malformed (headers are kept
/// by the server within its own limits; this bounds what a node parses).
const MAX_META: usize = 256 * 1024;

/// What travels with a body through the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub pipeline: String,
    /// RFC 3339, when the first node accepted it.
    pub received_at: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The event's id when it has one already (a dead letter retried); otherwise its id comes
    /// from its place in the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The stream's answer to a publish.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// The message's sequence in the stream (the first one's, for a duplicate).
    pub seq: u64,
    pub duplicate: bool,
}

/// One event handed to this node by the consumer.
pub struct Delivery {
    pub meta: Meta,
    /// `{prefix}.inbox`, or its key's subject for an event with an ordering key.
    pub subject: String,
    pub body: Bytes,
    pub stream_seq: u64,
    /// 1 the first time; more when a node before this one did not finish it.
    pub delivered: i64,
    pub ticket: Ticket,
}

/// How a held event is acknowledged, kept apart from its body.
pub struct Ticket(Acker);

impl Ticket {
    /// The event is finished (delivered or dead-lettered): the stream forgets it.
    pub async fn done(&self) -> Result<(), ClusterError> {
        self.0
            .ack()
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    /// Still working on it: the ack wait starts again, so no other node takes it.
    pub async fn progress(&self) -> Result<(), ClusterError> {
        self.0
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    /// Given back: another node (or this one) gets it after `delay`.
    pub async fn give_back(&self, delay: Duration) -> Result<(), ClusterError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }
}

/// The consumer's counters, for `/metrics` and `/health`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Stored and not yet handed to any node.
    pub pending: u64,
    /// Handed to a node and not yet acknowledged.
    pub ack_pending: u64,
    /// Handed out more than once.
    pub redelivered: u64,
}

/// The inbox stream and its consumer, as one node uses them.
#[derive(Clone)]
pub struct InboxStream {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
    consumer: PullConsumer,
    /// When the stream was made (seconds since the epoch): its numbering starts again if it is
    /// ever made anew, and this tells the two numberings apart.
    pub epoch: i64,
}

/// Whether an event with an ordering key may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// It is its key's oldest event not done.
    Now,
    /// An older event of its key is not done yet.
    Later,
    /// It is not in the stream any more: another node finished it (this is a redelivery).
    Done,
}

impl InboxStream {
    /// Binds the stream and its consumer, creating them when missing.
    pub async fn open(
        settings: &Settings,
        js: jetstream::Context,
        dedup_window: Duration,
    ) -> Result<InboxStream, ClusterError> {
        let name = settings.inbox_stream();
        let setup = |what: &'static str, name: &str| {
            let name = name.to_string();
            move |e: String| ClusterError::Setup {
                what,
                name,
                message: e,
            }
        };
        let subjects = vec![
            settings.inbox_subject(),
            format!("{}.>", settings.inbox_subject()),
        ];
        let config = stream::Config {
            name: name.clone(),
            subjects: subjects.clone(),
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: dedup_window,
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| setup("stream", &name)(e.to_string()))?;
        // A stream made before ordering keys existed has only the first subject.
        let info = stream
            .info()
            .await
            .map_err(|e| setup("stream", &name)(e.to_string()))?;
        let epoch = info.created.unix_timestamp();
        if info.config.subjects != subjects {
            let mut updated = info.config.clone();
            updated.subjects = subjects;
            js.update_stream(updated)
                .await
                .map_err(|e| setup("stream", &name)(e.to_string()))?;
        }
        let consumer_name = settings.consumer();
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &consumer_name,
                pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_deliver: -1,
                    // Enough for every node's `max_inflight`; past it the server hands out
                    // nothing more until some are acknowledged.
                    max_ack_pending: 100_000,
                    num_replicas: settings.replicas,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| setup("consumer", &consumer_name)(e.to_string()))?;
        Ok(InboxStream {
            js,
            stream,
            subject: settings.inbox_subject(),
            consumer,
            epoch,
        })
    }

    /// Stores an event; returns once the stream has it on its `replicas` servers (that is
    /// what JetStream's publish acknowledgement means), or fails.
    pub async fn publish(
        &self,
        meta: &Meta,
        dedup_key: Option<&str>,
        ordering_key: Option<&str>,
        body: &[u8],
    ) -> Result<Published, ClusterError> {
        let mut payload = serde_json::to_vec(meta)
            .map_err(|e| ClusterError::Malformed(format!("cannot encode the event: {e}")))?;
        payload.push(b'\n');
        payload.extend_from_slice(body);
        let mut publish = Publish::build().payload(Bytes::from(payload));
        if let Some(key) = dedup_key {
            publish = publish.message_id(message_id(&meta.pipeline, key));
        }
        let unavailable = |e: String| ClusterError::Unavailable(e);
        let ack = self
            .js
            .send_publish(self.subject_for(&meta.pipeline, ordering_key), publish)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Published {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// The subject an event is published on (see the module doc).
    fn subject_for(&self, pipeline: &str, ordering_key: Option<&str>) -> String {
        match ordering_key {
            // Any bytes in a key: the hash keeps the subject one valid token.
            Some(key) => format!("{}.k.{}", self.subject, &message_id(pipeline, key)[..32]),
            None => self.subject.clone(),
        }
    }

    /// Whether `delivery` may run now (see the module doc); always for an event without an
    /// ordering key. Asked of the stream's leader, never of a replica that may lag.
    pub async fn turn(&self, delivery: &Delivery) -> Result<Turn, ClusterError> {
        if delivery.subject == self.subject {
            return Ok(Turn::Now);
        }
        match self
            .stream
            .get_first_raw_message_by_subject(&delivery.subject, 0)
            .await
        {
            Ok(first) if first.sequence < delivery.stream_seq => Ok(Turn::Later),
            Ok(first) if first.sequence == delivery.stream_seq => Ok(Turn::Now),
            // Only later ones are left: this one was finished and removed.
            Ok(_) => Ok(Turn::Done),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(Turn::Done),
            Err(e) => Err(ClusterError::Unavailable(e.to_string())),
        }
    }

    /// The event at `seq` while it is in the stream (not done yet), asked of its leader.
    pub async fn message(&self, seq: u64) -> Result<Option<(Meta, Bytes)>, ClusterError> {
        match self.stream.get_raw_message(seq).await {
            Ok(m) => parse(&m.payload).map(Some),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::Unavailable(e.to_string())),
        }
    }

    /// Up to `max` events, waiting at most `wait` for the first.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, ClusterError> {
        let unavailable = |e: String| ClusterError::Unavailable(e);
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(next) = batch.next().await {
            let message = next.map_err(|e| unavailable(e.to_string()))?;
            let (stream_seq, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => return Err(ClusterError::Malformed(e.to_string())),
            };
            let (message, acker) = message.split();
            let ticket = Ticket(acker);
            match parse(&message.payload) {
                Ok((meta, body)) => out.push(Delivery {
                    meta,
                    subject: message.subject.to_string(),
                    body,
                    stream_seq,
                    delivered,
                    ticket,
                }),
                Err(e) => {
                    // Never written by crossdock: end its redeliveries, keep going.
                    tracing::error!(stream_seq, error = %e, "Dropping a malformed inbox message");
                    let _ = ticket.0.ack_with(AckKind::Term).await;
                }
            }
        }
        Ok(out)
    }

    /// The consumer's counters, asked of the server.
    pub async fn counts(&self) -> Result<Counts, ClusterError> {
        let mut consumer = self.consumer.clone();
        let info = consumer
            .info()
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        Ok(Counts {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        })
    }
}

/// `Nats-Msg-Id` of a delivery: fixed length and header-safe whatever the key holds.
pub fn message_id(pipeline: &str, dedup_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(pipeline.as_bytes());
    h.update([0]);
    h.update(dedup_key.as_bytes());
    hex::encode(h.finalize())
}

/// Splits a message into its metadata and body.
fn parse(payload: &Bytes) -> Result<(Meta, Bytes), ClusterError> {
    let Some(end) = memchr::memchr(b'\n', payload) else {
        return Err(ClusterError::Malformed("no metadata line".into()));
    };
    if end > MAX_META {
        return Err(ClusterError::Malformed(format!(
            "a metadata line of {end} bytes"
        )));
    }
    let meta: Meta = serde_json::from_slice(&payload[..end])
        .map_err(|e| ClusterError::Malformed(e.to_string()))?;
    Ok((meta, payload.slice(end + 1..)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_message_keeps_the_body_bytes() {
        let meta = Meta {
            pipeline: "orders".into(),
            received_at: "2026-01-01T00:00:00.000Z".into(),
            headers: BTreeMap::from([("x-a".into(), "1\n2".into())]),
            id: None,
        };
        let mut payload = serde_json::to_vec(&meta).unwrap();
        payload.push(b'\n');
        payload.extend_from_slice(b"{\"a\":\n1}");
        let (back, body) = parse(&Bytes::from(payload)).unwrap();
        assert_eq!(back.pipeline, "orders");
        assert_eq!(back.headers["x-a"], "1\n2");
        assert_eq!(&body[..], b"{\"a\":\n1}");
        assert!(parse(&Bytes::from_static(b"no newline")).is_err());
        assert!(parse(&Bytes::from_static(b"{}\n")).is_err());
    }

    #[test]
    fn message_ids_keep_pipelines_apart() {
        assert_ne!(message_id("a", "id:1"), message_id("b", "id:1"));
        assert_eq!(message_id("a", "id:1").len(), 64);
    }
}
