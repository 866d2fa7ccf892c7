//! The sources that `crossdock run` drives itself: `poll`, `schedule` and `file` (webhooks are
//! the server's), and the `catch_up:` poll beside a webhook. One task per pipeline with such a
//! source or a catch-up, kept in step with the live version.
//!
//! This module owns the supervisor: which source tasks run, starting and stopping them as
//! reloads add, remove or change pipelines. Each kind's own file owns what its task does; every
//! event they make goes in through [`Runtime::submit`], the one way in, so dedup, durability
//! and metrics are the same as for a webhook.
//!
//! # Following reloads
//!
//! The supervisor compares the live version's pipelines with its running tasks every second,
//! and at once when [`Hub::changed`] is called (a reload does). A task whose pipeline is gone
//! or whose `source:` config differs is told to stop; a changed one is started again only once
//! the old one has ended, so two tasks never work the same folder or cursor at once. Only the
//! source config is compared: the rest of the pipeline (steps, mappings) is the workers'
//! business, and a poll reads its connector from the live version at every call, so a changed
//! connector is picked up without a restart.
//!
//! # Stopping
//!
//! A stop is a `watch` signal the tasks look at between units of work (a poll, a tick, a row),
//! never inside one: a file is never left half-moved. Draining stops every task the same way.

pub mod file;
pub mod poll;
pub mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Live, LiveConnector, Runtime};
use crate::config::model::{CatchUpConfig, SourceConfig};

/// How often the supervisor compares running tasks with the live version when nothing
/// notified it.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the runtime holds for the sources: the change signal.
#[derive(Default)]
pub struct Hub {
    changed: Notify,
}

impl Hub {
    /// Asks the supervisor to compare its tasks with the live version now (after a reload).
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// The connector a poll calls. `Err` says why there is none.
    fn connector<'a>(&self, live: &'a Live, name: &str) -> Result<&'a LiveConnector, NoConnector> {
        match live.connectors.get(name) {
            None => Err(NoConnector::Missing(name.to_string())),
            // A stand-in takes a send's calls to show them; it has nothing to poll.
            Some(c) => match &c.stand_in {
                Some(to) => Err(NoConnector::StandIn {
                    name: name.to_string(),
                    to: to.to_string(),
                }),
                None => Ok(c),
            },
        }
    }
}

/// Why a source has no connector to call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoConnector {
    #[error("no connector `{0}` in the running version")]
    Missing(String),
    /// Its credentials are not set, so its calls go to a stand-in (`unconfigured:`).
    #[error("connector `{name}` is not configured here (its calls go to `{to}`): nothing to poll")]
    StandIn { name: String, to: String },
}

/// Starts the supervisor. It ends when the runtime drains.
pub fn start(runtime: Arc<Runtime>) -> JoinHandle<()> {
    tokio::spawn(supervise(runtime))
}

/// What a source task gets: the runtime, its pipeline, and its stop signal.
pub struct SourceCx {
    pub runtime: Arc<Runtime>,
    pub pipeline: String,
    stop: watch::Receiver<bool>,
    /// In a cluster: set when this node lost the source's lease (see `with_lease`).
    lease_lost: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl SourceCx {
    /// Should the task end now: told to stop, or the runtime is draining.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
            || self.runtime.is_draining()
            || self
                .lease_lost
                .as_ref()
                .is_some_and(|l| l.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Waits `d`, or less if told to stop; true when the task should end.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        if self.stopped() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            // A closed channel means the supervisor is gone: stop as well.
            _ = self.stop.changed() => {}
        }
        self.stopped()
    }

    /// Waits until told to stop: for a task whose config it cannot use (logged already).
    pub async fn idle(&mut self) {
        while !self.sleep(CHECK_EVERY).await {}
    }
}

/// What one pipeline's task runs: its own source, or the catch-up poll beside its webhook.
#[derive(Debug, Clone, PartialEq)]
enum Task {
    Source(SourceConfig),
    CatchUp(CatchUpConfig),
}

impl Task {
    fn kind(&self) -> &'static str {
        match self {
            Task::Source(s) => s.kind(),
            Task::CatchUp(_) => "catch_up",
        }
    }
}

struct Running {
    source: Task,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn supervise(runtime: Arc<Runtime>) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        if runtime.is_draining() {
            for r in running.values() {
                let _ = r.stop.send(true);
            }
            return;
        }
        reconcile(&runtime, &mut running);
        tokio::select! {
            _ = runtime.sources().changed.notified() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Stops the tasks the live version no longer wants as they are, and starts the missing ones.
fn reconcile(runtime: &Arc<Runtime>, running: &mut BTreeMap<String, Running>) {
    let live = runtime.live();
    let wanted: BTreeMap<&String, Task> = live
        .project
        .pipelines
        .iter()
        .filter_map(|(name, flow)| match (&flow.source, &flow.catch_up) {
            (SourceConfig::Webhook(_), None) => None,
            (SourceConfig::Webhook(_), Some(c)) => Some((name, Task::CatchUp(c.clone()))),
            (other, _) => Some((name, Task::Source(other.clone()))),
        })
        .collect();
    let names: Vec<String> = running.keys().cloned().collect();
    let mut ended: HashMap<String, JoinHandle<()>> = HashMap::new();
    for name in names {
        let Some(r) = running.get(&name) else {
            continue;
        };
        let same = wanted.get(&name).is_some_and(|s| *s == r.source);
        if same && !r.task.is_finished() {
            continue;
        }
        if let Some(r) = running.remove(&name) {
            if !same {
                tracing::info!(pipeline = %name, kind = r.source.kind(), "Stopping source: its pipeline was removed or its source changed");
            } else {
                tracing::warn!(pipeline = %name, kind = r.source.kind(), "Source task ended; starting it again");
            }
            let _ = r.stop.send(true);
            ended.insert(name, r.task);
        }
    }
    for (name, source) in wanted {
        if running.contains_key(name) {
            continue;
        }
        let (stop, stop_rx) = watch::channel(false);
        let cx = SourceCx {
            runtime: runtime.clone(),
            pipeline: name.clone(),
            stop: stop_rx,
            lease_lost: None,
        };
        let before = ended.remove(name);
        let span = tracing::info_span!("source", pipeline = %name, kind = source.kind());
        let config = source.clone();
        let source = &source;
        let task = tokio::spawn(
            async move {
                // The task this one replaces finishes its unit of work first.
                if let Some(before) = before {
                    let _ = before.await;
                }
                if cx.stopped() {
                    return;
                }
                match cx.runtime.cluster().cloned() {
                    Some(link) => with_lease(cx, config, link).await,
                    None => {
                        tracing::info!("Source started");
                        run(cx, config).await;
                        tracing::info!("Source stopped");
                    }
                }
            }
            .instrument(span),
        );
        running.insert(
            name.clone(),
            Running {
                source: source.clone(),
                stop,
                task,
            },
        );
    }
}

async fn run(cx: SourceCx, task: Task) {
    match task {
        Task::Source(SourceConfig::Poll(p)) => poll::run(cx, p).await,
        Task::Source(SourceConfig::Schedule(s)) => schedule::run(cx, s).await,
        Task::Source(SourceConfig::File(f)) => file::run(cx, f).await,
        Task::Source(SourceConfig::Webhook(_)) => {}
        Task::CatchUp(c) => poll::run_catch_up(cx, c).await,
    }
}

/// In a cluster, one node at a time runs a source: the one holding its lease
/// (`cluster::nodes`). Waits for the lease, runs the source while renewing it, and stops the
/// source at its next unit of work once the lease cannot be renewed for half its length (so
/// it has stopped before another node may take it). The cursor is in the shared state, so the
/// next holder resumes where this one stopped.
async fn with_lease(mut cx: SourceCx, config: Task, link: Arc<super::cluster::Link>) {
    use crate::cluster::nodes::{BEAT, LEASE};
    use std::sync::atomic::{AtomicBool, Ordering};
    let lease = format!("source/{}", cx.pipeline);
    loop {
        if let Ok(true) = link.registry.hold(&lease).await {
            break;
        }
        if cx.sleep(BEAT).await {
            return;
        }
    }
    tracing::info!(node = %link.settings.node, "Source started on this node (it holds the lease)");
    let lost = Arc::new(AtomicBool::new(false));
    cx.lease_lost = Some(lost.clone());
    let keeper = {
        let (link, lease, lost) = (link.clone(), lease.clone(), lost.clone());
        tokio::spawn(async move {
            let mut held_at = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(BEAT).await;
                match link.registry.hold(&lease).await {
                    Ok(true) => held_at = tokio::time::Instant::now(),
                    Ok(false) => break,
                    Err(_) if held_at.elapsed() < LEASE / 2 => {}
                    Err(_) => break,
                }
            }
            lost.store(true, Ordering::SeqCst);
        })
    };
    run(cx, config).await;
    keeper.abort();
    if lost.load(Ordering::SeqCst) {
        tracing::warn!("Source stopped: this node lost its lease");
    } else {
        // Stopped here (a reload, a drain): another node may take it at once.
        let _ = link.registry.release(&lease).await;
        tracing::info!("Source stopped");
    }
}

/// The headers every source event carries: which kind of source made it.
fn headers(kind: &str) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert("x-crossdock-source".to_string(), kind.to_string());
    h
}
