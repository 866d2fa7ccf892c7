//! The settings of a run that are not part of the project version: their defaults, and what
//! crossdock.yaml's `server:` and `state:` change of them. Owns no state and reads no file:
//! `check` has validated what it takes.

use std::time::Duration;

use super::inbox::FlushPolicy;
use super::pool;

/// Writes to the state store between two reopens under load (`state.reopen_every`).
pub const DEFAULT_REOPEN_EVERY: u64 = 300_000;

/// How far below ingress events run (`server.work_nice`) unless the project says: not at all.
/// A lower priority lets a burst of webhooks in faster, but it also slows a steady load's
/// events. At 5, a steady 3,000 events/s on two cores fell 60,000 events behind once
/// retention's sweeps ran (docs/performance.md, "Ingress first").
pub const DEFAULT_WORK_NICE: i32 = 0;

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
    /// Time without a write after which the state store is closed and reopened, to give back
    /// the memory sled kept (see `idle`); `None`: never.
    pub state_reopen_idle: Option<Duration>,
    /// Writes to the state store after which it is closed and reopened even under load, to
    /// bound the memory sled keeps when it is never idle (see `idle`); `None`: only when idle.
    pub state_reopen_every: Option<u64>,
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
    /// Nice steps the threads that run events (the work runtime's and the flow threads) are
    /// below the threads that accept them (`priority`); 0: the same priority.
    pub work_nice: i32,
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
            state_reopen_idle: Some(Duration::from_secs(15)),
            state_reopen_every: Some(DEFAULT_REOPEN_EVERY),
            call_timeout: Duration::from_secs(30),
            flush: FlushPolicy::Group,
            reload_debounce: Duration::from_millis(100),
            admin_token: None,
            flow_threads: pool::FlowPool::default_threads(),
            max_event_writes: 10_000,
            work_nice: DEFAULT_WORK_NICE,
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
        if let Some(n) = server.work_nice {
            self.work_nice = i32::from(n).min(super::priority::MAX_NICE);
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
        if let Some(n) = state.reopen_every {
            self.state_reopen_every = (n > 0).then_some(n);
        }
        self
    }
}
