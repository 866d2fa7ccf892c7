//! Start-up and shutdown of the runtime: opening the state, inbox and ledger and building the
//! first live version, starting the background tasks (group commit, workers, sweeping, the
//! ledger, sources, a cluster's consumer), joining a cluster, and draining. Owns no event's
//! processing (`worker`) and no way in for events (`submit.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::live::build_live;
use super::reload::load;
use super::{
    cluster, inbox, ledger, metrics, pool, sources, storage, turns, versions, watch, worker,
    FlushPolicy, Inbox, InboxError, Runtime, Settings, StartError, StoredEvent,
};
use crate::config::diag::Diagnostics;
use crate::state::{Durability, SledStore, StateStore};

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
        let flows = pool::FlowPool::start(settings.flow_threads, settings.work_nice)
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
        self.start_on(rx, &tokio::runtime::Handle::current())
    }

    /// [`Runtime::start`], with events run on `work`: an async runtime apart from the one
    /// calling this (which serves HTTP and commits), whose threads may run at a lower priority
    /// (`priority`). What events start from there (connector calls, retries, fetches) stays
    /// there.
    pub fn start_on(
        self: &Arc<Self>,
        rx: mpsc::UnboundedReceiver<StoredEvent>,
        work: &tokio::runtime::Handle,
    ) -> Result<usize, InboxError> {
        tokio::spawn(self.inbox.committer.clone().run());
        tokio::spawn(
            self.storage
                .clone()
                .watch(self.store.clone(), self.inbox.committer.clone()),
        );
        tokio::spawn(self.clone().mark_ledger());
        work.spawn(worker::dispatch(self.clone(), rx));
        tokio::spawn(self.clone().sweep());
        if let Some(idle) = self.settings.state_reopen_idle {
            let when = super::idle::When {
                idle,
                every: self.settings.state_reopen_every,
            };
            tokio::spawn(super::idle::reopen_store(self.store.clone(), when));
        }
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
