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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::inbox::{self, Accepted, InboxError, StoredEvent};
use super::{metrics, Runtime};
use crate::cluster::inbox::{Counts, Delivery, InboxStream, Meta, Ticket, Turn};
use crate::cluster::nodes::{NodeInfo, Registry, BEAT};
use crate::cluster::{ClusterError, Settings};

/// A node's connection to the cluster.
pub struct Link {
    pub settings: Settings,
    pub inbox: InboxStream,
    pub registry: Registry,
    client: async_nats::Client,
    started_at: String,
    /// Local sequence number → the stream message it came from.
    held: Mutex<Held>,
    counts: Mutex<Counts>,
    /// Whether the last publish, fetch or counter read reached NATS.
    reachable: AtomicBool,
}

#[derive(Default)]
struct Held {
    tickets: HashMap<u64, Arc<Ticket>>,
    /// Done before their ticket was filed (a worker can finish an event before the consumer
    /// task that queued it gets the lock back).
    early: HashSet<u64>,
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
    pub async fn connect(settings: Settings, dedup_window: Duration) -> Result<Link, ClusterError> {
        let client = settings.connect("inbox").await?;
        let js = settings.jetstream(client.clone());
        let inbox = InboxStream::open(&settings, js.clone(), dedup_window).await?;
        let registry = Registry::open(&settings, &js).await?;
        Ok(Link {
            settings,
            inbox,
            registry,
            client,
            started_at: inbox::now_rfc3339(),
            held: Mutex::new(Held::default()),
            counts: Mutex::new(Counts::default()),
            reachable: AtomicBool::new(true),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
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
    ) -> Result<Accepted, InboxError> {
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
        let id = stream_event_id(published.seq);
        if published.duplicate {
            metrics::duplicate(pipeline);
            return Ok(Accepted::Duplicate(id));
        }
        metrics::received(pipeline);
        Ok(Accepted::New(StoredEvent {
            seq: published.seq,
            meta: inbox::EventMeta {
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
            },
            body: Arc::from(body),
            resumed: false,
        }))
    }

    fn file(&self, seq: u64, ticket: Ticket) -> Option<Arc<Ticket>> {
        let mut held = self.held();
        let ticket = Arc::new(ticket);
        if held.early.remove(&seq) {
            return Some(ticket);
        }
        held.tickets.insert(seq, ticket);
        None
    }

    /// Called when a worker let go of a local event: acknowledges its message if the local
    /// inbox is done with it.
    pub(super) async fn settle(&self, runtime: &Runtime, seq: u64, id: &str) {
        match runtime.inbox.queued(id) {
            // Waiting for a retry: still ours, kept alive by the progress beat.
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the local inbox; the event's message stays unacknowledged");
                return;
            }
        }
        let ticket = {
            let mut held = self.held();
            match held.tickets.remove(&seq) {
                Some(t) => t,
                None => {
                    held.early.insert(seq);
                    return;
                }
            }
        };
        self.ack(&ticket).await;
    }

    async fn ack(&self, ticket: &Ticket) {
        if let Err(e) = ticket.done().await {
            // Not lost: the stream hands the event out again after the ack wait.
            tracing::warn!(error = %e, "Cannot acknowledge an event; it will run again");
        }
    }
}

/// The id a webhook's answer carries: the event's place in the stream (the node that runs it
/// gives it a local id of its own, in its trail).
pub fn stream_event_id(seq: u64) -> String {
    format!("js_{seq:016x}")
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
            let stored = runtime
                .submit_local(
                    &delivery.meta.pipeline,
                    &[],
                    delivery.meta.headers,
                    &delivery.body,
                )
                .await;
            match stored {
                Ok(Accepted::New(event)) => {
                    if let Some(done) = link.file(event.seq, delivery.ticket) {
                        link.ack(&done).await;
                    }
                }
                Ok(Accepted::Duplicate(_)) => link.ack(&delivery.ticket).await,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot queue an event here; giving it back");
                    let _ = delivery.ticket.give_back(Duration::from_secs(1)).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
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
                let tickets: Vec<Arc<Ticket>> = link.held().tickets.values().cloned().collect();
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
