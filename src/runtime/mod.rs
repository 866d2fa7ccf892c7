//! The running engine: the live project version, the durable inbox, the workers that take
//! events through flows and out through connectors, retries, dead letters and reloads.
//!
//! This module owns everything `crossdock run` does between "an event was accepted" and "its
//! actions reached their connectors (or it was dead-lettered)". HTTP is the [`crate::server`]'s
//! business: it verifies, calls [`Runtime::accept`] and answers. The sources that need no HTTP
//! (poll, schedule, file) are [`sources`]' tasks, started with the runtime; they too bring
//! events in through [`Runtime::submit`]. Flows, connectors and state are used, not defined,
//! here.
//!
//! # Versions
//!
//! The compiled project, its live connectors and its webhook routes form one [`Live`] value
//! behind an `ArcSwap`. A request or an event loads it once and keeps that `Arc` to the end, so
//! a reload (an atomic swap of the pointer) never changes a version under a running event:
//! events in flight finish on the version they started with, queued events run on the version
//! current when they start.
//!
//! # Shutdown
//!
//! [`Runtime::drain`] makes webhooks answer 503, stops starting events, and waits (up to a grace
//! period) for the events already running. Whatever has not finished stays in the inbox and is
//! resumed by the next start: the inbox, not memory, is the queue of record.

pub mod activity;
pub mod breaker;
pub mod cluster;
pub mod inbox;
pub mod ledger;
pub mod metrics;
mod pool;
pub mod refused;
pub mod retry;
pub mod sources;
pub mod storage;
pub mod turns;
pub mod versions;
pub mod watch;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::config::diag::Diagnostics;
use crate::config::env::EnvLookup;
use crate::config::model::SourceConfig;
use crate::connectors::{BuildContext, CallError, Connector, Reply, Request};
use crate::flow::{CompileOptions, Project, Webhook};
use crate::state::{Durability, SledStore, StateError, StateStore};

use self::breaker::Breaker;
pub use self::inbox::{Accepted, FlushPolicy, Inbox, InboxError, StoredEvent};
pub use self::worker::{drop_dead_letter, Dropped};

/// Settings of a run that are not part of the project version.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest webhook body accepted, in bytes.
    pub body_limit: usize,
    /// How long a client has to send a request's headers, counted from when it connects or
    /// from the previous answer on the connection (so also how long an idle one is kept).
    pub header_timeout: Duration,
    /// How long a client has to send a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Open HTTP connections; at the limit, the longest idle one is closed for a new one.
    pub max_connections: usize,
    /// A delivery with a dedup key seen within this window is a duplicate.
    pub dedup_window: Duration,
    /// How long trails are kept.
    pub trail_keep: Duration,
    /// Bytes of trails kept at most; the oldest go first.
    pub trail_keep_bytes: u64,
    /// How long a shutdown waits for running events.
    pub grace: Duration,
    /// Events of one pipeline running at once (unless the pipeline says otherwise).
    pub concurrency: usize,
    /// Accepted events not yet done above which new ones are refused with 503: a bound on
    /// memory (the queue to the workers holds them) that a sender's retry gets past later.
    pub max_backlog: usize,
    /// Bytes of body the accepted events not yet done may hold before new ones are refused
    /// with 503: `max_backlog` counts events, this bounds the memory their bodies take.
    pub max_backlog_bytes: usize,
    /// An event that was running this many times when the engine stopped abnormally is
    /// dead-lettered unrun at the next start (a poison event must not crash-loop the engine).
    pub quarantine_after: u32,
    /// Free bytes on the state's disk below which new events are refused.
    pub min_free: u64,
    /// Bytes of pages the state store keeps in memory (sled's cache).
    pub state_cache: u64,
    /// Longest a connector call may take before it counts as a retryable failure.
    pub call_timeout: Duration,
    pub flush: FlushPolicy,
    /// Quiet time after the last file change before a reload.
    pub reload_debounce: Duration,
    /// `CROSSDOCK_ADMIN_TOKEN`; without it the admin API answers 401 to everyone.
    pub admin_token: Option<String>,
    /// Threads that run flows (see `worker`); each pipeline may use half of them at once.
    pub flow_threads: usize,
    /// State keys one event may write; past it the event fails and keeps none.
    pub max_event_writes: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            body_limit: 4 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            dedup_window: crate::config::model::DEFAULT_DEDUP_WINDOW,
            trail_keep: Duration::from_secs(7 * 24 * 3600),
            trail_keep_bytes: 1 << 30,
            grace: Duration::from_secs(10),
            concurrency: 16,
            max_backlog: 100_000,
            max_backlog_bytes: 256 * 1024 * 1024,
            quarantine_after: 3,
            min_free: 128 * 1024 * 1024,
            state_cache: crate::state::sled::DEFAULT_CACHE,
            call_timeout: Duration::from_secs(30),
            flush: FlushPolicy::Group,
            reload_debounce: Duration::from_millis(100),
            admin_token: None,
            flow_threads: pool::FlowPool::default_threads(),
            max_event_writes: 10_000,
        }
    }
}

impl Settings {
    /// Takes what crossdock.yaml's `server:` says (`check` has validated it).
    pub fn with_server(mut self, server: &crate::config::model::ServerConfig) -> Settings {
        let duration =
            |s: &Option<String>| s.as_deref().and_then(|t| humantime::parse_duration(t).ok());
        if let Some(n) = server
            .max_body
            .as_deref()
            .and_then(|t| crate::config::model::parse_size(t).ok())
        {
            self.body_limit = n;
        }
        if let Some(d) = duration(&server.dedup_window) {
            self.dedup_window = d;
        }
        if let Some(d) = duration(&server.grace) {
            self.grace = d;
        }
        if let Some(d) = duration(&server.keep_trails) {
            self.trail_keep = d;
        }
        if let Some(n) = server
            .keep_trails_bytes
            .as_deref()
            .and_then(|t| crate::config::model::parse_size(t).ok())
        {
            self.trail_keep_bytes = n as u64;
        }
        if let Some(d) = duration(&server.reload_debounce) {
            self.reload_debounce = d;
        }
        if let Some(n) = server.max_backlog {
            self.max_backlog = n;
        }
        if let Some(n) = server
            .max_backlog_bytes
            .as_deref()
            .and_then(|t| crate::config::model::parse_size(t).ok())
        {
            self.max_backlog_bytes = n;
        }
        if let Some(n) = server.quarantine_after {
            self.quarantine_after = n.max(1);
        }
        if let Some(n) = server.max_event_writes {
            self.max_event_writes = n;
        }
        if let Some(d) = duration(&server.header_timeout).filter(|d| !d.is_zero()) {
            self.header_timeout = d;
        }
        if let Some(d) = duration(&server.body_timeout).filter(|d| !d.is_zero()) {
            self.body_timeout = d;
        }
        if let Some(n) = server.max_connections.filter(|n| *n > 0) {
            self.max_connections = n;
        }
        self
    }

    /// Takes what crossdock.yaml's `state:` says (`check` has validated it).
    pub fn with_state(mut self, state: &crate::config::model::StateConfig) -> Settings {
        if let Some(n) = state
            .min_free
            .as_deref()
            .and_then(|t| crate::config::model::parse_size(t).ok())
        {
            self.min_free = n as u64;
        }
        if let Some(n) = state
            .cache
            .as_deref()
            .and_then(|t| crate::config::model::parse_size(t).ok())
        {
            self.state_cache = n as u64;
        }
        self
    }
}

/// A connector as the running version holds it.
pub struct LiveConnector {
    pub connector: Arc<dyn Connector>,
    pub breaker: Arc<Breaker>,
    /// The config it was built from (with the environment filled in): a reload that leaves it
    /// unchanged keeps this connector, its pool and its token.
    config: Value,
    /// Set when the connector is unconfigured here: its calls go to this stand-in (`connector`
    /// is then the stand-in's).
    pub stand_in: Option<String>,
}

impl LiveConnector {
    /// One call through the connector's circuit breaker, with the timeout and the metrics:
    /// how every part of the runtime (sends, fetches, polls) calls a connector.
    pub async fn call(&self, request: Request<'_>, timeout: Duration) -> Result<Reply, CallError> {
        let name = request.connector;
        // Held across the call: if this future is dropped before the answer, the permit's
        // drop frees a half-open trial instead of leaving the breaker waiting for it.
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(wait) => {
                return Err(CallError::Retryable {
                    message: format!(
                        "connector `{name}` is failing (circuit open); next trial in {}s",
                        wait.as_secs().max(1)
                    ),
                    retry_after: Some(wait),
                });
            }
        };
        let result = match tokio::time::timeout(timeout, self.connector.call(request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Retryable {
                message: format!("no answer within {}s", timeout.as_secs()),
                retry_after: None,
            }),
        };
        match &result {
            Ok(_) => permit.success(),
            Err(CallError::Retryable { .. }) => {
                if permit.failure() {
                    tracing::warn!(connector = %name, "Circuit breaker opened");
                }
            }
            Err(CallError::Permanent { .. }) => permit.neutral(),
        }
        metrics::connector_call(name, result.is_ok());
        metrics::breaker_state(name, self.breaker.state().as_gauge());
        result
    }
}

/// A webhook path of the running version.
pub struct Route {
    pub pipeline: String,
    /// The signature scheme and `dedup_id:` as the flow compiled them.
    pub webhook: Arc<Webhook>,
}

/// One version of the project, ready to serve.
pub struct Live {
    pub project: Arc<Project>,
    pub connectors: BTreeMap<String, LiveConnector>,
    /// Each pipeline's `on_error`, resolved once for the version.
    pub retry: HashMap<String, retry::RetryPolicy>,
    pub routes: HashMap<String, Route>,
    /// Webhooks whose path has `{name}` parameters, tried in order when no plain path matches.
    pub patterns: Vec<Route>,
    /// RFC 3339.
    pub since: String,
}

/// A refused reload, as `GET /api/pipelines` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadError {
    pub at: String,
    /// The diagnostics, as `check` prints them.
    pub message: String,
    /// Per file: its diagnostics.
    pub files: BTreeMap<String, Vec<String>>,
}

pub struct Runtime {
    live: ArcSwap<Live>,
    pub inbox: Arc<Inbox>,
    pub store: Arc<SledStore>,
    pub storage: Arc<storage::Storage>,
    ledger: Arc<ledger::Ledger>,
    state: Arc<dyn StateStore>,
    pub settings: Settings,
    root: PathBuf,
    env: fn(&str) -> Option<String>,
    http: reqwest::Client,
    queue: mpsc::UnboundedSender<StoredEvent>,
    draining: AtomicBool,
    running: AtomicUsize,
    limits: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
    /// One event at a time per ordering key.
    turns: turns::Turns,
    last_reload_error: Mutex<Option<ReloadError>>,
    /// The versions run since the start (`GET /api/versions`).
    versions: versions::History,
    /// Serialises reloads: two at once would race to swap.
    reloading: tokio::sync::Mutex<()>,
    sources: sources::Hub,
    /// Where flows run, off the async workers.
    flows: pool::FlowPool,
    /// `cluster:` of crossdock.yaml, read at open; the link is made by
    /// [`Runtime::join_cluster`].
    cluster_settings: Option<crate::cluster::Settings>,
    cluster: std::sync::OnceLock<Arc<cluster::Link>>,
    /// The last deliveries refused for their signature, in memory only (`refused.rs`).
    pub refused: refused::RefusedDeliveries,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the project has errors")]
    Config(Diagnostics),
    #[error("cannot open the state at {path}: {source}")]
    State { path: PathBuf, source: StateError },
    #[error(transparent)]
    Inbox(#[from] InboxError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("{0}")]
    Build(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl Runtime {
    /// Loads the project in `dir`, opens its state and inbox, and builds the live version.
    /// Nothing runs until [`Runtime::start`].
    ///
    /// Flows run on flow threads of the runtime's own (and tokio's blocking threads, for flows
    /// that fetch): build tokio with `thread_stack_size(rules::engine::MIN_STACK)`, as
    /// `crossdock run` does, or a deeply nested script in a fetching flow can overflow a
    /// thread's default stack.
    pub fn open(
        dir: &Path,
        env: fn(&str) -> Option<String>,
        settings: Settings,
    ) -> Result<
        (
            Arc<Runtime>,
            Diagnostics,
            mpsc::UnboundedReceiver<StoredEvent>,
        ),
        StartError,
    > {
        let (project, warnings) = load(dir, &env).map_err(StartError::Config)?;
        let mut settings = settings
            .with_server(&project.config.server)
            .with_state(&project.config.state);
        let cluster_settings = project
            .config
            .cluster
            .as_ref()
            .map(|c| crate::cluster::Settings::from_config(&project.root, c));
        let mut state_path = project.root.join(&project.config.state.path);
        if let Some(c) = &cluster_settings {
            // The stream holds the events of record: a node's own store is its working copy
            // (see `cluster`), in a folder of its own so nodes can share a project folder.
            state_path = state_path.join(&c.node);
            settings.flush = FlushPolicy::Periodic;
        }
        let store = Arc::new(
            SledStore::open_with_cache(&state_path, Durability::default(), settings.state_cache)
                .map_err(|source| StartError::State {
                    path: state_path.clone(),
                    source,
                })?,
        );
        let shared: Arc<dyn StateStore> = match &cluster_settings {
            Some(c) => Arc::new(crate::cluster::state::JetStreamStore::open(c)?),
            None => store.clone(),
        };
        let ledger = Arc::new(ledger::Ledger::open(store.clone(), &state_path)?);
        let inbox = Arc::new(Inbox::open(store.clone(), settings.flush)?);
        let storage = Arc::new(storage::Storage::new(state_path.clone(), settings.min_free));
        let http = reqwest::Client::builder()
            .timeout(settings.call_timeout)
            .build()
            .map_err(|e| StartError::Build(format!("cannot build the HTTP client: {e}")))?;
        let history = versions::History::default();
        history.push(versions::Version::between(
            &BTreeMap::new(),
            &project.files,
            &project.version,
            "start",
            inbox::now_rfc3339(),
        ));
        let live = build_live(project, &http, store.clone(), None)
            .map_err(|e| StartError::Build(e.to_string()))?;
        let flows = pool::FlowPool::start(settings.flow_threads)
            .map_err(|e| StartError::Build(format!("cannot start the flow threads: {e}")))?;
        let (queue, rx) = mpsc::unbounded_channel();
        let runtime = Arc::new(Runtime {
            live: ArcSwap::from_pointee(live),
            inbox,
            state: shared,
            store,
            storage,
            ledger,
            settings,
            root: dir.to_path_buf(),
            env,
            http,
            queue,
            draining: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            limits: Mutex::new(HashMap::new()),
            turns: turns::Turns::default(),
            last_reload_error: Mutex::new(None),
            versions: history,
            reloading: tokio::sync::Mutex::new(()),
            sources: sources::Hub::default(),
            flows,
            cluster_settings,
            cluster: std::sync::OnceLock::new(),
            refused: Default::default(),
        });
        Ok((runtime, warnings, rx))
    }

    /// Starts the background work: group commit, workers, sweeping; and resumes every event
    /// left in the inbox by an earlier run.
    pub fn start(
        self: &Arc<Self>,
        rx: mpsc::UnboundedReceiver<StoredEvent>,
    ) -> Result<usize, InboxError> {
        tokio::spawn(self.inbox.committer.clone().run());
        tokio::spawn(
            self.storage
                .clone()
                .watch(self.store.clone(), self.inbox.committer.clone()),
        );
        tokio::spawn(self.clone().mark_ledger());
        tokio::spawn(worker::dispatch(self.clone(), rx));
        tokio::spawn(self.clone().sweep());
        sources::start(self.clone());
        if let Some(link) = self.cluster() {
            cluster::hand_back(self)?;
            tokio::spawn(cluster::consume(self.clone(), link.clone()));
            tokio::spawn(cluster::beat(self.clone(), link.clone()));
            return Ok(0);
        }
        let pending = self.inbox.pending()?;
        let n = pending.len();
        for event in pending {
            self.enqueue(event);
        }
        self.refresh_gauges();
        Ok(n)
    }

    /// Reloads on edits to the project's files (see [`watch`]); keep the value alive.
    pub fn watch(self: &Arc<Self>) -> notify::Result<watch::Watch> {
        watch::start(self.clone(), &self.root, self.settings.reload_debounce)
    }

    /// The version serving now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The poll, schedule and file sources' side of the runtime.
    pub fn sources(&self) -> &sources::Hub {
        &self.sources
    }

    /// Tells the sources the live version changed, so they follow it now rather than at their
    /// next look.
    pub fn sources_changed(&self) {
        self.sources.changed();
    }

    /// Connects to the cluster when crossdock.yaml has `cluster:` (before [`Runtime::start`]);
    /// false when it has none.
    pub async fn join_cluster(&self) -> Result<bool, StartError> {
        let Some(settings) = &self.cluster_settings else {
            return Ok(false);
        };
        let link = cluster::Link::connect(
            settings.clone(),
            self.settings.dedup_window,
            (self.settings.trail_keep, self.settings.trail_keep_bytes),
        )
        .await?;
        let _ = self.cluster.set(Arc::new(link));
        Ok(true)
    }

    /// The key an event's state commit marks itself with (`state::applied_key`). In a cluster
    /// an event's id is its place in the inbox stream, the same on every node, so a node
    /// running it again after another died finds that one's mark; the stream's epoch keeps
    /// the marks of a stream made anew (numbered from 1 again) apart from the old one's.
    pub(crate) fn applied_key(&self, event_id: &str) -> String {
        match self.cluster() {
            Some(link) => crate::state::applied_key(&format!("{}/{event_id}", link.inbox.epoch)),
            None => crate::state::applied_key(event_id),
        }
    }

    /// The cluster link, once [`Runtime::join_cluster`] made it.
    pub fn cluster(&self) -> Option<&Arc<cluster::Link>> {
        self.cluster.get()
    }

    /// Accepts an event for `pipeline` from any source: written to the inbox, durable (per the
    /// flush policy) when this returns, and handed to the workers. Any one of `dedup_keys`
    /// seen within the window gives `Duplicate` and nothing is queued. In a cluster, the
    /// inbox is the stream: durable on its servers when this returns, run by any node.
    pub async fn submit(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        mut headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Accepted, InboxError> {
        // Read once here, where the event enters, and kept with it: a reload that changes the
        // path does not reorder events already accepted.
        let key = self
            .live()
            .project
            .pipeline(pipeline)
            .and_then(|f| f.ordering_key.as_ref())
            .and_then(|k| k.of(body));
        match key {
            Some(key) => headers.insert(turns::ORDERING_HEADER.to_owned(), key),
            None => headers.remove(turns::ORDERING_HEADER),
        };
        if let Some(link) = self.cluster() {
            return link.publish(pipeline, dedup_keys, headers, body).await;
        }
        self.submit_local(pipeline, dedup_keys, headers, body).await
    }

    /// [`Runtime::submit`] to this node's own inbox.
    pub(crate) async fn submit_local(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Accepted, InboxError> {
        if self.inbox.pending_count() >= self.settings.max_backlog {
            return Err(InboxError::Busy(self.settings.max_backlog));
        }
        if self.inbox.pending_bytes().saturating_add(body.len()) > self.settings.max_backlog_bytes
            && self.inbox.pending_count() > 0
        {
            return Err(InboxError::BusyBytes(self.settings.max_backlog_bytes));
        }
        if let Some(why) = self.storage.refusal(self.inbox.committer.failure()) {
            return Err(InboxError::Storage(why));
        }
        // sled writes land in memory and its log buffer; the fsync is the committer's, so this
        // does not block the task for long.
        let written = self
            .inbox
            .accept(
                pipeline,
                dedup_keys,
                self.settings.dedup_window,
                headers,
                body,
            )
            .map_err(|e| self.storage_fault(e))?;
        let accepted = written;
        self.inbox
            .committer
            .durable()
            .await
            .map_err(|e| self.storage_fault(e))?;
        match &accepted {
            Accepted::New(event) => {
                metrics::received(pipeline);
                self.enqueue(event.clone());
            }
            Accepted::Duplicate(_) => metrics::duplicate(pipeline),
        }
        Ok(accepted)
    }

    /// Notes a write error of the store with [`storage::Storage`], so later events are refused
    /// at once and `/health` says so; passes the error on.
    fn storage_fault(&self, e: InboxError) -> InboxError {
        if e.is_storage() {
            self.storage.fault(&e.to_string());
        }
        e
    }

    /// Writes the ledger (see [`ledger`]) every second while events are accepted, and once
    /// more when the runtime drains.
    async fn mark_ledger(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.mark_ledger_now().await;
        }
    }

    async fn mark_ledger_now(&self) {
        let last = self.inbox.last_accepted();
        if last == 0 {
            return;
        }
        let ledger = self.ledger.clone();
        match tokio::task::spawn_blocking(move || ledger.mark(last)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "Cannot write the ledger"),
            Err(e) => tracing::warn!(error = %e, "The ledger task failed"),
        }
    }

    /// Hands an accepted (and durable) event to the workers.
    pub fn enqueue(&self, event: StoredEvent) {
        // The receiver lives as long as the runtime; if it is gone the event is still in the
        // inbox and the next start resumes it.
        let _ = self.queue.send(event);
    }

    /// The pipeline's slots. Sized when first needed; a reload that changes `concurrency`
    /// resizes it by replacing the semaphore (events holding the old one finish on it).
    fn limit_for(&self, pipeline: &str) -> Arc<Semaphore> {
        let wanted = self
            .live()
            .project
            .pipeline(pipeline)
            .and_then(|f| f.concurrency)
            .unwrap_or(self.settings.concurrency)
            .max(1);
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = limits
            .entry(pipeline.to_string())
            .or_insert_with(|| (wanted, Arc::new(Semaphore::new(wanted))));
        if entry.0 != wanted {
            *entry = (wanted, Arc::new(Semaphore::new(wanted)));
        }
        entry.1.clone()
    }

    /// Stops taking work and waits for running events, up to the grace period; then flushes.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        // A grace too long to add to the clock ("1000000y") means no deadline.
        let deadline = tokio::time::Instant::now().checked_add(self.settings.grace);
        while self.running.load(Ordering::SeqCst) > 0
            && deadline.is_none_or(|d| tokio::time::Instant::now() < d)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.running.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(
                running = left,
                "Grace period over; unfinished events stay in the inbox for the next start"
            );
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "Final flush failed");
        }
        self.mark_ledger_now().await;
    }

    /// Recompiles the project from disk and, if it passes `check`, swaps it in. On failure the
    /// running version stays and the diagnostics are kept for `GET /api/pipelines`.
    pub async fn reload(&self, why: &str) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let before = self.live().project.version.clone();
        let root = self.root.clone();
        let env = self.env;
        let loaded = tokio::task::spawn_blocking(move || load(&root, &env))
            .await
            .map_err(|e| ReloadError {
                at: inbox::now_rfc3339(),
                message: format!("the reload task failed: {e}"),
                files: BTreeMap::new(),
            });
        let result = match loaded {
            Err(e) => Err(e),
            Ok(loaded) => match loaded {
                Ok((project, _warnings)) => {
                    let old = self.live();
                    if project.version == old.project.version {
                        Ok(project.version.clone())
                    } else {
                        match build_live(project, &self.http, self.state.clone(), Some(&old)) {
                            Ok(live) => {
                                let version = live.project.version.clone();
                                self.versions.push(versions::Version::between(
                                    &old.project.files,
                                    &live.project.files,
                                    &version,
                                    why,
                                    inbox::now_rfc3339(),
                                ));
                                self.live.store(Arc::new(live));
                                self.sources_changed();
                                Ok(version)
                            }
                            // Shaped as `reload_error` shapes `check`'s diagnostics.
                            Err(e) => Err(ReloadError {
                                at: inbox::now_rfc3339(),
                                message: e.to_string(),
                                files: BTreeMap::from([(
                                    crate::config::PROJECT_FILE.to_string(),
                                    vec![format!("{}: {}", e.pos, e.message)],
                                )]),
                            }),
                        }
                    }
                }
                Err(diags) => Err(reload_error(&diags)),
            },
        };
        match &result {
            Ok(version) if *version == before => {
                tracing::debug!(trigger = why, "Reload found nothing changed");
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                metrics::reload_unchanged();
            }
            Ok(version) => {
                tracing::info!(version = %short(version), trigger = why, "Reloaded");
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                metrics::reload(true);
            }
            Err(e) => {
                tracing::error!(
                    trigger = why,
                    "Reload refused; the running version keeps serving:\n{}",
                    e.message
                );
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                metrics::reload(false);
            }
        }
        result
    }

    /// The versions run since the start, newest first (the last [`versions::KEPT`]).
    pub fn versions(&self) -> Vec<versions::Version> {
        self.versions.newest_first()
    }

    /// The project folder this engine serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Compiles the project as a reload would, with `edit`'s text in place of its file;
    /// nothing is swapped in. Blocking: call it off the async threads.
    pub fn compile_edited(
        &self,
        edit: crate::config::Edit<'_>,
    ) -> Result<(Project, Diagnostics), Diagnostics> {
        let env = self.env;
        crate::flow::load_edited(
            &self.root,
            &env,
            CompileOptions {
                strict_env: false,
                for_run: true,
            },
            Some(edit),
        )
    }

    pub fn last_reload_error(&self) -> Option<ReloadError> {
        self.last_reload_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Background upkeep: forget old dedup keys and trails (`inbox/retention.rs`), on a
    /// blocking thread and in small batches so ingress keeps writing meanwhile. Every 10 s at
    /// most, so that at a high rate the trails pass their byte bound by seconds of events, not
    /// minutes; more often for windows that short.
    async fn sweep(self: Arc<Self>) {
        let (window, keep) = (self.settings.dedup_window, self.settings.trail_keep);
        let every = (window.min(keep) / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let inbox = self.inbox.clone();
            let max_bytes = self.settings.trail_keep_bytes;
            let swept = tokio::task::spawn_blocking(move || {
                (
                    inbox.sweep_dedup(window),
                    inbox.sweep_trails(keep, max_bytes),
                )
            })
            .await;
            if let Ok((Err(e), _) | (_, Err(e))) = swept {
                tracing::warn!(error = %e, "Sweeping old dedup keys and trails failed");
            }
        }
    }

    /// Sets the gauges that mirror the inbox's counters and the store's size: called when
    /// `/metrics` is read, so they are as true as `/health`, not as old as the last sweep.
    pub fn refresh_gauges(&self) {
        let t = self.inbox.tally();
        metrics::inbox(&t, self.inbox.disk_bytes());
    }
}

/// The first 12 characters of a version hash, as logs show it.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

fn load(dir: &Path, env: EnvLookup<'_>) -> Result<(Project, Diagnostics), Diagnostics> {
    crate::flow::load(
        dir,
        env,
        CompileOptions {
            strict_env: false,
            for_run: true,
        },
    )
}

fn reload_error(diags: &Diagnostics) -> ReloadError {
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut message = String::new();
    for d in diags.iter().filter(|d| d.is_error()) {
        files
            .entry(d.file.to_string_lossy().replace('\\', "/"))
            .or_default()
            .push(format!("{}:{}: {}", d.pos.line, d.pos.col, d.message));
        message.push_str(&d.to_string());
        message.push_str("\n\n");
    }
    message.push_str(&diags.summary());
    ReloadError {
        at: inbox::now_rfc3339(),
        message,
        files,
    }
}

/// Why a project that passed `check` could not be made live: a connector that does not build
/// (signature schemes and `dedup_id` were built by `check` itself), located where
/// crossdock.yaml declares it.
#[derive(Debug, thiserror::Error)]
#[error("{}:{pos}: {message}", crate::config::PROJECT_FILE)]
struct LiveError {
    pos: crate::config::span::Pos,
    message: String,
}

impl LiveError {
    fn connector(project: &Project, name: &str, message: String) -> LiveError {
        LiveError {
            // Every connector is in the map; 1:1 (the file) should one ever not be.
            pos: project
                .connector_pos
                .get(name)
                .copied()
                .unwrap_or(crate::config::span::Pos { line: 1, col: 1 }),
            message,
        }
    }
}

/// Builds the live connectors and routes of a project; connectors whose config did not
/// change since `old` are kept as they are.
fn build_live(
    project: Project,
    http: &reqwest::Client,
    state: Arc<dyn StateStore>,
    old: Option<&Live>,
) -> Result<Live, LiveError> {
    let cx = BuildContext {
        root: project.root.clone(),
        http: http.clone(),
        state: Some(state),
    };
    let mut connectors = BTreeMap::new();
    // One instance per tenant, keyed `name@tenant` ([`tenant_key`]); the config as written is
    // never built (its `{tenant.KEY}`s are not filled).
    for (name, per_tenant) in &project.tenant_connectors {
        for (tenant, (config, raw)) in &per_tenant.configs {
            let key = tenant_key(name, tenant);
            if let Some(kept) = old.and_then(|o| o.connectors.get(&key)) {
                if kept.config == *raw {
                    connectors.insert(
                        key,
                        LiveConnector {
                            connector: kept.connector.clone(),
                            breaker: kept.breaker.clone(),
                            config: raw.clone(),
                            stand_in: None,
                        },
                    );
                    continue;
                }
            }
            let connector = config.as_kind().build(name, &cx).map_err(|e| {
                LiveError::connector(
                    &project,
                    name,
                    format!("connector `{name}` for tenant `{tenant}`: {e}"),
                )
            })?;
            let spec = project.breakers.get(name).copied().unwrap_or_default();
            connectors.insert(
                key,
                LiveConnector {
                    connector,
                    breaker: Arc::new(Breaker::new(spec.failures, spec.cooldown)),
                    config: raw.clone(),
                    stand_in: None,
                },
            );
        }
    }
    for (name, config) in &project.connectors {
        if project.tenant_connectors.contains_key(name) {
            continue;
        }
        let raw = project
            .config
            .connectors
            .get(name)
            .cloned()
            .unwrap_or(Value::Null);
        let stand_in = project.unconfigured.get(name).map(|u| u.to.clone());
        if let Some(kept) = old.and_then(|o| o.connectors.get(name)) {
            if kept.config == raw && kept.stand_in == stand_in {
                connectors.insert(
                    name.clone(),
                    LiveConnector {
                        connector: kept.connector.clone(),
                        breaker: kept.breaker.clone(),
                        config: raw,
                        stand_in,
                    },
                );
                continue;
            }
        }
        let connector = match &stand_in {
            // Never built: its credentials are missing. Calls go to the stand-in.
            Some(to) => match project.connectors.get(to) {
                Some(c) => c.as_kind().build(to, &cx).map_err(|e| {
                    LiveError::connector(&project, to, format!("connector `{to}`: {e}"))
                })?,
                None => {
                    return Err(LiveError::connector(
                        &project,
                        name,
                        format!("connector `{name}`: no stand-in `{to}`"),
                    ))
                }
            },
            None => config.as_kind().build(name, &cx).map_err(|e| {
                LiveError::connector(&project, name, format!("connector `{name}`: {e}"))
            })?,
        };
        connectors.insert(
            name.clone(),
            LiveConnector {
                connector,
                breaker: {
                    let spec = project.breakers.get(name).copied().unwrap_or_default();
                    Arc::new(Breaker::new(spec.failures, spec.cooldown))
                },
                config: raw,
                stand_in,
            },
        );
    }
    let mut routes = HashMap::new();
    let mut patterns = Vec::new();
    for (name, flow) in &project.pipelines {
        if let (SourceConfig::Webhook(hook), Some(webhook)) = (&flow.source, &flow.webhook) {
            let route = Route {
                pipeline: name.clone(),
                webhook: webhook.clone(),
            };
            if webhook.pattern.is_some() {
                patterns.push(route);
            } else {
                routes.insert(hook.path.clone(), route);
            }
        }
    }
    let retry = project
        .pipelines
        .iter()
        .map(|(name, flow)| {
            let policy = retry::RetryPolicy::from_config(flow.on_error.as_ref());
            (name.clone(), policy)
        })
        .collect();
    Ok(Live {
        retry,
        project: Arc::new(project),
        connectors,
        routes,
        patterns,
        since: inbox::now_rfc3339(),
    })
}

/// Where a tenant's instance of a connector is kept in [`Live::connectors`]. Tenant ids hold
/// no `@` (`flow::tenants::valid_id`), so no two pairs share a key.
fn tenant_key(connector: &str, tenant: &str) -> String {
    format!("{connector}@{tenant}")
}

/// The header that carries an event's tenant, set by the webhook that chose it (and taken off
/// whatever a sender put there).
pub use crate::rules::TENANT_HEADER;

impl Live {
    /// The live connector `name` for an event of `tenant`: its tenant's instance when the
    /// connector is built per tenant, else the one instance.
    pub fn connector(&self, name: &str, tenant: Option<&str>) -> Result<&LiveConnector, String> {
        let Some(per_tenant) = self.project.tenant_connectors.get(name) else {
            return self
                .connectors
                .get(name)
                .ok_or_else(|| format!("no connector `{name}` in this version"));
        };
        let Some(tenant) = tenant else {
            return Err(format!(
                "connector `{name}` is built per tenant of list `{}`, and this event has no \
                 tenant (it did not come through a webhook with `tenants:`)",
                per_tenant.list
            ));
        };
        self.connectors
            .get(&tenant_key(name, tenant))
            .ok_or_else(|| {
                format!(
                    "connector `{name}` has no tenant `{tenant}` in list `{}` in this version",
                    per_tenant.list
                )
            })
    }
}
