//! The runtime as one node of a cluster (docs/cluster.md): accepted events go to the inbox
//! stream, and this node's share comes back from the shared consumer into the local inbox,
//! whose workers run it as on one machine.
//!
//! This module owns the link between the two: which stream message each local event came
//! from (its [`Ticket`]), acknowledging it when the local inbox is done with the event
//! (processed, failed or dead-lettered, never while it waits for a retry), telling JetStream
//! the event is still being worked on every third of the ack wait, the node's beat in the
//! registry and the consumer's counters. It must not run events itself (the workers do) nor
//! know about HTTP.
//!
//! The local inbox is this node's working copy: the stream is the queue of record. At start
//! the events a previous run left in the local inbox are dropped from it: they were never
//! acknowledged, so the stream hands them out again, to this node or another.
//!
//! An event is numbered by its place in the stream (`evt_` and that sequence), on every node:
//! the id answered with 202 is the one its trail, dead letter and log lines carry. Before its
//! message is acknowledged, the event's trail and dead letter go to the cluster's buckets
//! ([`crate::cluster::records`]); while it waits for a retry, its progress (attempts, effects
//! done, the time of its next attempt) does too, and a node handed it after this one died
//! goes on from there, and a run of an event handed over again is counted there before it
//! begins (`quarantine_after` across the cluster). This module also answers the admin API's
//! dead letters from those buckets and retries a dead letter by publishing it to the stream
//! again; its events endpoints are answered by [`events`].

mod dead;
mod events;

pub use events::Known;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::inbox::{self, EventMeta, InboxError};
use super::{metrics, Runtime};
use crate::cluster::events::EventIndex;
use crate::cluster::inbox::{Counts, Delivery, InboxStream, Meta, Ticket, Turn};
use crate::cluster::nodes::{NodeInfo, Registry, BEAT};
use crate::cluster::records::Records;
use crate::cluster::{ClusterError, Settings};

/// A node's connection to the cluster.
pub struct Link {
    pub settings: Settings,
    pub inbox: InboxStream,
    pub registry: Registry,
    pub records: Records,
    pub index: EventIndex,
    client: async_nats::Client,
    started_at: String,
    /// Local sequence number → the stream message it came from.
    held: Mutex<Held>,
    counts: Mutex<Counts>,
    /// Whether the last publish, fetch or counter read reached NATS.
    reachable: AtomicBool,
    /// The cluster's dead letters as last counted (every [`BEAT`], and by each page of them),
    /// so `/health` does not list the bucket.
    dead_total: AtomicU64,
}

/// A stream message this node holds, and whether the event's progress is in the `runs`
/// bucket (to be forgotten when it is done).
struct Hold {
    ticket: Arc<Ticket>,
    run: bool,
}

#[derive(Default)]
struct Held {
    tickets: HashMap<u64, Hold>,
}

/// What `/health` shows of the cluster.
#[derive(Debug, Serialize)]
pub struct Health {
    pub url: String,
    pub node: String,
    pub connected: bool,
    /// Events this node runs now.
    pub held: usize,
    #[serde(flatten)]
    pub counts: Counts,
}

impl Link {
    /// Connects and binds the inbox stream, its consumer and the registry buckets (created
    /// when missing).
    pub async fn connect(
        settings: Settings,
        dedup_window: Duration,
        (keep_trails, keep_trails_bytes): (Duration, u64),
    ) -> Result<Link, ClusterError> {
        let client = settings.connect("inbox").await?;
        let js = settings.jetstream(client.clone());
        let inbox = InboxStream::open(&settings, js.clone(), dedup_window).await?;
        let registry = Registry::open(&settings, &js).await?;
        let records = Records::open(&settings, &js, keep_trails).await?;
        let index = EventIndex::open(&settings, js, keep_trails, keep_trails_bytes).await?;
        Ok(Link {
            settings,
            inbox,
            registry,
            records,
            index,
            client,
            started_at: inbox::now_rfc3339(),
            held: Mutex::new(Held::default()),
            counts: Mutex::new(Counts::default()),
            reachable: AtomicBool::new(true),
            dead_total: AtomicU64::new(0),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a run of a redelivered event in the `runs` bucket before it begins, so that an
    /// event that takes down every node running it is quarantined after `quarantine_after`
    /// runs in the whole cluster. Not counted when NATS does not take it: the event runs
    /// anyway (held here, it would otherwise wait for ever).
    pub(super) async fn count_run(&self, seq: u64, meta: &EventMeta) {
        if let Err(e) = self.put_progress(seq, meta).await {
            tracing::warn!(error = %e, "Cannot count the run of a redelivered event in the cluster; it runs uncounted")
        }
    }

    /// Writes an event's meta to the `runs` bucket, and marks it there to be forgotten when
    /// the event is done.
    async fn put_progress(&self, seq: u64, meta: &EventMeta) -> Result<(), ClusterError> {
        let bytes = serde_json::to_vec(meta).map_err(|e| ClusterError::Malformed(e.to_string()))?;
        self.records.put_run(&meta.id, bytes).await?;
        if let Some(hold) = self.held().tickets.get_mut(&seq) {
            hold.run = true;
        }
        Ok(())
    }

    pub fn health(&self) -> Health {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected
            && self.reachable.load(Ordering::Relaxed);
        Health {
            url: self.settings.shown_url(),
            node: self.settings.node.clone(),
            connected,
            held: self.held().tickets.len(),
            counts: *self.counts.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Publishes an accepted event; what [`Runtime::submit`] does in a cluster.
    pub(super) async fn publish(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        headers: std::collections::BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<super::Submitted, InboxError> {
        // While the connection is down a publish would wait out its timeout: answer at once.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            self.reachable.store(false, Ordering::Relaxed);
            return Err(InboxError::Storage(format!(
                "NATS at {} is not reachable",
                self.settings.shown_url()
            )));
        }
        let meta = Meta {
            pipeline: pipeline.to_string(),
            received_at: inbox::now_rfc3339(),
            headers,
            id: None,
        };
        // JetStream takes one message id: the first key is the strongest (a signed or
        // provider's delivery id before a body hash).
        let ordering_key = meta.headers.get(super::turns::ORDERING_HEADER);
        let published = self
            .inbox
            .publish(
                &meta,
                dedup_keys.first().copied(),
                ordering_key.map(String::as_str),
                body,
            )
            .await;
        self.reachable.store(published.is_ok(), Ordering::Relaxed);
        let published = published.map_err(|e| InboxError::Storage(e.to_string()))?;
        let id = inbox::event_id(published.seq);
        if published.duplicate {
            metrics::duplicate(pipeline);
            return Ok(super::Submitted::Duplicate(id));
        }
        metrics::received(pipeline);
        Ok(super::Submitted::New(id))
    }

    /// Files the ticket of an event placed in the local inbox, before a worker can see it. A
    /// second delivery of an event still here replaces the first's ticket: the server counts
    /// only the latest.
    fn file(&self, seq: u64, ticket: Ticket, run: bool) {
        let mut held = self.held();
        let run = run || held.tickets.get(&seq).is_some_and(|h| h.run);
        held.tickets.insert(
            seq,
            Hold {
                ticket: Arc::new(ticket),
                run,
            },
        );
    }

    /// Called when a worker let go of a local event: shares what became of it and, if the
    /// local inbox is done with it, acknowledges its message.
    pub(super) async fn settle(&self, runtime: &Runtime, seq: u64, id: &str) {
        match runtime.inbox.queued(id) {
            // Waiting for a retry: still ours, kept alive by the progress beat; its progress
            // is shared so that a node taking it over after this one's death goes on from it.
            Ok(Some(meta)) => {
                self.share_progress(runtime, seq, id, &meta).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the local inbox; the event's message stays unacknowledged");
                return;
            }
        }
        // Held while its outcome is shared, so the progress beat keeps it from being handed
        // to another node meanwhile; acknowledged with its latest delivery's ticket.
        let Some(run) = self.held().tickets.get(&seq).map(|h| h.run) else {
            return;
        };
        let shared = self.share_outcome(runtime, id, run).await;
        let Some(hold) = self.held().tickets.remove(&seq) else {
            return;
        };
        if shared {
            self.ack(&hold.ticket).await;
        }
    }

    async fn share_progress(&self, runtime: &Runtime, seq: u64, id: &str, meta: &EventMeta) {
        if let Err(e) = self.put_progress(seq, meta).await {
            tracing::warn!(error = %e, "Cannot share an event's progress; a node taking it over would start it from its first attempt")
        }
        self.share_trail(runtime, id, false).await;
    }

    async fn share_trail(&self, runtime: &Runtime, id: &str, finished: bool) {
        let trail = match runtime.inbox.trail(id) {
            Ok(Some(trail)) => trail,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read an event's trail to share it");
                return;
            }
        };
        if let Err(e) = self.put_trail(runtime, id, &trail, finished).await {
            // Informational: the event itself is not held up by its trail.
            tracing::warn!(error = %e, "Cannot share an event's trail; this node's admin API still has it");
        }
    }

    /// Shares a finished event's trail and dead letter; false when its dead letter could not
    /// be filed, so the message must stay unacknowledged (the event runs again elsewhere,
    /// rather than dying where no other node sees it).
    async fn share_outcome(&self, runtime: &Runtime, id: &str, run: bool) -> bool {
        self.share_trail(runtime, id, true).await;
        match runtime.inbox.get_dead_letter(id) {
            Ok(Some(letter)) => {
                let bytes = match serde_json::to_vec(&letter) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot encode a dead letter; its event stays unacknowledged");
                        return false;
                    }
                };
                let mut filed = Err(ClusterError::Unavailable("not tried".into()));
                // A few tries over some seconds: a NATS leader election takes about that.
                for wait in [0, 250, 1_000, 2_000, 4_000] {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    filed = self.records.put_dead(id, bytes.clone()).await;
                    if filed.is_ok() {
                        break;
                    }
                }
                if let Err(e) = filed {
                    tracing::error!(error = %e, "Cannot file a dead letter in the cluster; its event stays unacknowledged and runs again");
                    return false;
                }
                // The cluster's copy is the one the admin API shows and retries.
                if let Err(e) = runtime.inbox.drop_dead_letter(id) {
                    tracing::warn!(error = %e, "Cannot remove the local copy of a shared dead letter");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the local dead letters; the event's message stays unacknowledged");
                return false;
            }
        }
        if run {
            if let Err(e) = self.records.forget_run(id).await {
                tracing::debug!(error = %e, "Cannot forget an event's progress; it expires");
            }
        }
        true
    }

    async fn ack(&self, ticket: &Ticket) {
        if let Err(e) = ticket.done().await {
            // Not lost: the stream hands the event out again after the ack wait.
            tracing::warn!(error = %e, "Cannot acknowledge an event; it will run again");
        }
    }
}

/// The meta of an event not run yet.
fn fresh_meta(id: String, meta: Meta) -> EventMeta {
    EventMeta {
        id,
        pipeline: meta.pipeline,
        received_at: meta.received_at,
        headers: meta.headers,
        attempts: 0,
        not_before_ms: 0,
        done: Default::default(),
        undo: Vec::new(),
        full_rerun: false,
        errors: Vec::new(),
        interrupted: 0,
        keys: std::collections::BTreeMap::new(),
    }
}

fn unavailable(e: ClusterError) -> InboxError {
    InboxError::Storage(e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<T, InboxError> {
    serde_json::from_slice(bytes).map_err(|e| InboxError::Corrupt {
        key: id.to_string(),
        message: e.to_string(),
    })
}

/// Drops what a previous run left in the local inbox (see the module doc).
pub(super) fn hand_back(runtime: &Runtime) -> Result<usize, InboxError> {
    let version = runtime.live().project.version.clone();
    let mut n = 0;
    for event in runtime.inbox.pending()? {
        if runtime.inbox.drop_pending(&event.meta.id, &version)? {
            n += 1;
        }
    }
    if n > 0 {
        tracing::info!(
            events = n,
            "Unfinished events of the last run are left to the cluster's stream"
        );
    }
    Ok(n)
}

/// Takes this node's share of events from the shared consumer into the local inbox, keeping
/// at most `max_inflight` at once.
pub(super) async fn consume(runtime: Arc<Runtime>, link: Arc<Link>) {
    let max = link.settings.max_inflight;
    loop {
        if runtime.is_draining() {
            return;
        }
        let room = max.saturating_sub(link.held().tickets.len());
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let batch = link
            .inbox
            .fetch(room.min(256), Duration::from_secs(1))
            .await;
        let batch = match batch {
            Ok(b) => {
                link.reachable.store(true, Ordering::Relaxed);
                b
            }
            Err(e) => {
                link.reachable.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "Cannot take events from NATS; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for delivery in batch {
            if runtime.is_draining() {
                // Not acknowledged: handed out again after the ack wait.
                return;
            }
            if !its_turn(&link, &delivery).await {
                continue;
            }
            take(&runtime, &link, delivery).await;
        }
    }
}

/// Places a delivered event in the local inbox under its cluster-wide id, with the progress a
/// node before this one shared (a redelivery, or a retried dead letter).
async fn take(runtime: &Runtime, link: &Link, delivery: Delivery) {
    let id = delivery
        .meta
        .id
        .clone()
        .unwrap_or_else(|| inbox::event_id(delivery.stream_seq));
    let Some(seq) = inbox::parse_event_id(&id) else {
        // Never written by crossdock: dropped rather than handed round for ever.
        tracing::error!(event_id = %id, "An inbox message names no event id; dropped");
        link.ack(&delivery.ticket).await;
        return;
    };
    // Still on this node (running, waiting for its retry, or its outcome being shared): a
    // second copy must not run beside it, under the same turn of its ordering key.
    if let Some(hold) = link.held().tickets.get_mut(&seq) {
        hold.ticket = Arc::new(delivery.ticket);
        return;
    }
    let mut saved = None;
    // The first delivery of a new event has no progress yet: no read for it.
    if delivery.delivered > 1 || delivery.meta.id.is_some() {
        match link.records.run(&id).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<EventMeta>(&bytes) {
                Ok(meta) => saved = Some(meta),
                Err(e) => {
                    tracing::warn!(event_id = %id, error = %e, "An event's shared progress is unreadable; it starts again")
                }
            },
            Ok(None) => {}
            Err(e) => {
                link.reachable.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "Cannot read an event's progress from NATS; giving it back");
                let _ = delivery.ticket.give_back(Duration::from_millis(500)).await;
                return;
            }
        }
    }
    let run = saved.is_some();
    // A node before this one may have died running it: counted before it runs (the worker
    // does it, as for an event found in the inbox at a start).
    let again = delivery.delivered > 1 || delivery.meta.id.is_some();
    let meta = saved.unwrap_or_else(|| fresh_meta(id, delivery.meta));
    match runtime.inbox.place(seq, meta, &delivery.body) {
        Ok(Some(mut event)) => {
            event.resumed = again;
            link.file(seq, delivery.ticket, run);
            runtime.enqueue(event);
        }
        // Still here under an earlier delivery (running, or waiting for its retry).
        Ok(None) => link.file(seq, delivery.ticket, run),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot queue an event here; giving it back");
            let _ = delivery.ticket.give_back(Duration::from_secs(1)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether an event may run now; when it may not, it is given back (an older event of its
/// ordering key runs somewhere, or waits for its retry) or, when another node finished it
/// already, acknowledged.
async fn its_turn(link: &Link, delivery: &Delivery) -> bool {
    match link.inbox.turn(delivery).await {
        Ok(Turn::Now) => true,
        Ok(Turn::Done) => {
            link.ack(&delivery.ticket).await;
            false
        }
        Ok(Turn::Later) => {
            // Back off as it keeps coming back: the older event may be waiting out a long
            // retry.
            let _ = delivery.ticket.give_back(later(delivery.delivered)).await;
            false
        }
        Err(e) => {
            link.reachable.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "Cannot ask NATS whether an event's turn has come; giving it back");
            let _ = delivery.ticket.give_back(Duration::from_millis(500)).await;
            false
        }
    }
}

/// How long an event whose key's turn has not come is given back for, after `delivered`
/// deliveries: 20 ms, growing to 1 s.
fn later(delivered: i64) -> Duration {
    Duration::from_millis((20 * delivered.clamp(1, 50)) as u64)
}

/// Every third of the ack wait: tells JetStream each held event is still being worked on;
/// every [`BEAT`]: the node's registry entry and the consumer's counters.
pub(super) async fn beat(runtime: Arc<Runtime>, link: Arc<Link>) {
    let progress_every = (link.settings.ack_wait / 3).max(Duration::from_millis(100));
    let mut progress = tokio::time::interval(progress_every);
    let mut beat = tokio::time::interval(BEAT);
    loop {
        tokio::select! {
            _ = progress.tick() => {
                let tickets: Vec<Arc<Ticket>> =
                    link.held().tickets.values().map(|h| h.ticket.clone()).collect();
                for t in tickets {
                    let _ = t.progress().await;
                }
            }
            _ = beat.tick() => {
                let info = NodeInfo {
                    node: link.settings.node.clone(),
                    version: runtime.live().project.version.clone(),
                    crossdock: env!("CARGO_PKG_VERSION").to_string(),
                    started_at: link.started_at.clone(),
                    seen_ms: crate::cluster::now_ms(),
                };
                let beat_ok = link.registry.beat(&info).await.is_ok();
                if let Err(e) = link.count_dead_letters().await {
                    tracing::debug!(error = %e, "Cannot count the cluster's dead letters");
                }
                match link.inbox.counts().await {
                    Ok(c) => {
                        *link.counts.lock().unwrap_or_else(|p| p.into_inner()) = c;
                        metrics::cluster_consumer(c.pending, c.ack_pending, c.redelivered);
                        link.reachable.store(beat_ok, Ordering::Relaxed);
                    }
                    Err(_) => link.reachable.store(false, Ordering::Relaxed),
                }
            }
        }
    }
}
