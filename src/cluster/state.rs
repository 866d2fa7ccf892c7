//! [`JetStreamStore`]: the [`StateStore`] every node of a cluster shares, on JetStream
//! key-value buckets, with all-or-nothing updates over several keys.
//!
//! # Buckets
//!
//! | bucket | key | value | `max_age` |
//! |---|---|---|---|
//! | `{prefix}_state` | the state key, [`encode`]d | the JSON value | none |
//! | `{prefix}_locks` | the same encoded key | `{"txn", "at"}`: who holds it since when (ms) | 1 min |
//! | `{prefix}_txn` | a transaction id | `{"writes": [{"key", "value", "rev"}]}` | 1 h |
//!
//! # The protocol of [`StateStore::update`] (docs/state.md says why it is safe)
//!
//! 1. Lock every key, in key order (so two updates never wait on each other in a cycle), by
//!    creating its entry in `locks`; `create` succeeds for one writer only. A lock older than
//!    [`LOCK_STALE`] belongs to a node that died mid-update: it is recovered (step 6) and
//!    taken.
//! 2. Read every key with its revision.
//! 3. Run the closure on the values; on its error release the locks, write nothing.
//! 4. When more than one key changes, write the transaction record to `txn`: every new value
//!    with the revision it replaces. From here the update happens even if this node dies.
//! 5. Write each changed key with compare-and-set on the revision read in 2 (a delete is a
//!    delete expecting that revision), then delete the record and the locks.
//! 6. Recovery of a dead holder's lock: if its transaction record is there, apply each write
//!    whose key still has the revision the record names (the ones already written have moved
//!    on, so nothing is written twice or over a later value), delete the record, then delete
//!    the lock expecting its revision (so of two recovering nodes one wins).
//!
//! Reads (`get`) take no lock: they see each key as last written, and between steps 5's
//! writes an update of several keys is visible half done to a plain read. Every update reads
//! under the locks, so no decision is ever taken on half an update.
//!
//! The trait is synchronous (flows run on threads of their own); the store keeps a thread
//! with a single-threaded tokio runtime and its own NATS connection, and each call waits on
//! it. So a caller on an async worker cannot deadlock the store, whatever it blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ClusterError, Settings};
use crate::state::{check_arity, StateError, StateStore, UpdateFn};

/// A lock held longer than this is taken to belong to a dead node. An update holds its locks
/// for a few round trips to NATS (milliseconds); nodes' clocks must agree to well within it.
pub const LOCK_STALE: Duration = Duration::from_secs(5);

/// How long an update waits for the locks of its keys before it fails.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// A state key as a key-value key: letters, digits, `-`, `/` and `_` as they are, every other
/// byte as `=XX`. Per byte, so the encoding of a prefix is a prefix of the encoding.
pub fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode`]; `None` for what `encode` never makes.
pub fn decode(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Serialize, Deserialize)]
struct Lock {
    txn: String,
    at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TxnWrite {
    /// Encoded.
    key: String,
    value: Option<Value>,
    /// The revision the write replaces (0: the key did not exist).
    rev: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Txn {
    writes: Vec<TxnWrite>,
}

#[derive(Clone)]
struct Buckets {
    state: kv::Store,
    locks: kv::Store,
    txn: kv::Store,
}

/// The shared state store of a cluster.
pub struct JetStreamStore {
    handle: tokio::runtime::Handle,
    buckets: Buckets,
    node: String,
    next_txn: AtomicU64,
    /// Dropping it ends the store's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("NATS: {e}"))
}

impl JetStreamStore {
    /// Connects (on a thread of its own) and opens the buckets, creating them when missing.
    pub fn open(settings: &Settings) -> Result<JetStreamStore, ClusterError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let node = settings.node.clone();
        let settings = settings.clone();
        let spawned = std::thread::Builder::new()
            .name("crossdock-state".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ClusterError::Unavailable(e.to_string())));
                        return;
                    }
                };
                let opened = rt.block_on(async {
                    let client = settings.connect("state").await?;
                    let js = settings.jetstream(client);
                    Ok::<_, ClusterError>(Buckets {
                        state: settings.bucket_store(&js, "state", Duration::ZERO).await?,
                        locks: settings
                            .bucket_store(&js, "locks", Duration::from_secs(60))
                            .await?,
                        txn: settings
                            .bucket_store(&js, "txn", Duration::from_secs(3600))
                            .await?,
                    })
                });
                let ok = opened.is_ok();
                let _ = ready_tx.send(opened.map(|b| (b, rt.handle().clone())));
                if ok {
                    // Serves the calls spawned onto the handle until the store is dropped.
                    let _ = rt.block_on(stop_rx);
                }
            });
        if let Err(e) = spawned {
            return Err(ClusterError::Unavailable(e.to_string()));
        }
        let (buckets, handle) = ready_rx
            .recv()
            .map_err(|_| ClusterError::Unavailable("the state thread ended".into()))??;
        Ok(JetStreamStore {
            handle,
            buckets,
            node,
            next_txn: AtomicU64::new(0),
            _stop: stop_tx,
        })
    }

    /// Runs `fut` on the store's thread and waits for it.
    fn block<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StateError::Backend("the state thread ended".into()))?
    }

    fn txn_id(&self) -> String {
        let n = self.next_txn.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{n}", encode(&self.node), super::now_ms())
    }
}

/// A key's value and revision (0 when it never existed; a deleted key keeps its delete
/// marker's revision, which a create must name).
async fn read(store: &kv::Store, key: &str) -> Result<(Option<Value>, u64), StateError> {
    match store.entry(key).await.map_err(backend)? {
        None => Ok((None, 0)),
        Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => {
            Ok((None, e.revision))
        }
        Some(e) => {
            let value = serde_json::from_slice(&e.value).map_err(|err| StateError::Corrupt {
                key: decode(key).unwrap_or_else(|| key.to_string()),
                message: err.to_string(),
            })?;
            Ok((Some(value), e.revision))
        }
    }
}

/// Writes `value` over revision `rev`; false when the key has moved on.
async fn write(
    store: &kv::Store,
    key: &str,
    value: &Option<Value>,
    rev: u64,
) -> Result<bool, StateError> {
    match value {
        Some(v) => {
            let bytes = serde_json::to_vec(v).map_err(backend)?;
            match store.update(key, Bytes::from(bytes), rev).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(backend(e)),
            }
        }
        None if rev == 0 => Ok(true),
        None => match store.delete_expect_revision(key, Some(rev)).await {
            Ok(()) => Ok(true),
            // The server answers a wrong revision as an API error; tell it by reading back.
            Err(e) => match store.entry(key).await.map_err(backend)? {
                Some(now) if now.revision != rev => Ok(false),
                _ => Err(backend(e)),
            },
        },
    }
}

/// Takes the lock of `key` for `txn`, waiting (and recovering a dead holder's lock) until
/// `deadline`. Returns the lock's revision.
async fn lock(b: &Buckets, key: &str, txn: &str, deadline: Instant) -> Result<u64, StateError> {
    let mut pause = Duration::from_millis(1);
    loop {
        let me = serde_json::to_vec(&Lock {
            txn: txn.to_string(),
            at: super::now_ms(),
        })
        .map_err(backend)?;
        match b.locks.create(key, Bytes::from(me)).await {
            Ok(rev) => return Ok(rev),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(backend(e)),
        }
        if let Some(held) = b.locks.entry(key).await.map_err(backend)? {
            if held.operation == Operation::Put {
                let holder: Option<Lock> = serde_json::from_slice(&held.value).ok();
                let age = holder
                    .as_ref()
                    .map_or(u64::MAX, |l| super::now_ms().saturating_sub(l.at));
                if age > LOCK_STALE.as_millis() as u64 {
                    if let Some(holder) = holder {
                        roll_forward(b, &holder.txn).await?;
                    }
                    tracing::warn!(key = %decode(key).unwrap_or_default(), "Took over a state lock left by a stopped node");
                    let _ = b
                        .locks
                        .delete_expect_revision(key, Some(held.revision))
                        .await;
                    continue;
                }
            } else {
                // Deleted between our create and our read: try again at once.
                continue;
            }
        }
        if Instant::now() >= deadline {
            return Err(StateError::Backend(format!(
                "state key `{}` stayed locked for {}s",
                decode(key).unwrap_or_default(),
                LOCK_WAIT.as_secs()
            )));
        }
        // Jittered so that waiters do not retry in step.
        let jitter = rand::random::<u64>() % (pause.as_micros() as u64 + 1);
        tokio::time::sleep(pause + Duration::from_micros(jitter)).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Finishes the writes of a transaction whose node stopped after its record (step 6).
async fn roll_forward(b: &Buckets, txn: &str) -> Result<(), StateError> {
    let Some(record) = b.txn.get(txn).await.map_err(backend)? else {
        return Ok(());
    };
    let Ok(record) = serde_json::from_slice::<Txn>(&record) else {
        tracing::error!(txn, "A transaction record is malformed; it is dropped");
        let _ = b.txn.delete(txn).await;
        return Ok(());
    };
    let mut applied = 0;
    for w in &record.writes {
        if write(&b.state, &w.key, &w.value, w.rev).await? {
            applied += 1;
        }
    }
    tracing::warn!(
        txn,
        applied,
        of = record.writes.len(),
        "Completed a state update left half done by a stopped node"
    );
    b.txn.delete(txn).await.map_err(backend)?;
    Ok(())
}

async fn unlock(b: &Buckets, held: &[(String, u64)]) {
    for (key, rev) in held {
        if let Err(e) = b.locks.delete_expect_revision(key, Some(*rev)).await {
            tracing::warn!(error = %e, "Cannot release a state lock; it expires on its own");
        }
    }
}

impl StateStore for JetStreamStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        if key.is_empty() {
            return Ok(None);
        }
        let store = self.buckets.state.clone();
        let key = encode(key);
        self.block(async move { read(&store, &key).await.map(|(v, _)| v) })
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        if keys.iter().any(String::is_empty) {
            return Err(StateError::Invalid("an empty state key".into()));
        }
        let encoded: Vec<String> = keys.iter().map(|k| encode(k)).collect();
        let txn = self.txn_id();
        // Steps 1 and 2.
        let b = self.buckets.clone();
        let (held, current) = {
            let (encoded, txn) = (encoded.clone(), txn.clone());
            self.block(async move {
                let mut order: Vec<&String> = encoded.iter().collect();
                order.sort();
                let deadline = Instant::now() + LOCK_WAIT;
                let mut held = Vec::with_capacity(order.len());
                for key in order {
                    match lock(&b, key, &txn, deadline).await {
                        Ok(rev) => held.push((key.clone(), rev)),
                        Err(e) => {
                            unlock(&b, &held).await;
                            return Err(e);
                        }
                    }
                }
                let mut current = Vec::with_capacity(encoded.len());
                for key in &encoded {
                    match read(&b.state, key).await {
                        Ok(v) => current.push(v),
                        Err(e) => {
                            unlock(&b, &held).await;
                            return Err(e);
                        }
                    }
                }
                Ok((held, current))
            })?
        };
        // Step 3.
        let values: Vec<Option<Value>> = current.iter().map(|(v, _)| v.clone()).collect();
        let decided = f(&values).and_then(|(new, answer)| {
            check_arity(keys, &new)?;
            Ok((new, answer))
        });
        let b = self.buckets.clone();
        let (new, answer) = match decided {
            Ok(d) => d,
            Err(e) => {
                self.block(async move {
                    unlock(&b, &held).await;
                    Ok(())
                })?;
                return Err(e);
            }
        };
        let writes: Vec<TxnWrite> = encoded
            .into_iter()
            .zip(current)
            .zip(new)
            .filter(|((_, (old, _)), new)| old != new)
            .map(|((key, (_, rev)), value)| TxnWrite { key, value, rev })
            .collect();
        // Steps 4 and 5.
        self.block(async move {
            if writes.len() > 1 {
                let record = Txn { writes };
                let bytes = match serde_json::to_vec(&record) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        unlock(&b, &held).await;
                        return Err(backend(e));
                    }
                };
                if let Err(e) = b.txn.put(&txn, bytes).await {
                    unlock(&b, &held).await;
                    return Err(backend(e));
                }
                apply(&b, &txn, &record.writes, &held).await
            } else {
                let outcome = match writes.first() {
                    Some(w) => match write(&b.state, &w.key, &w.value, w.rev).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(lost_lock(&w.key)),
                        Err(e) => Err(e),
                    },
                    None => Ok(()),
                };
                unlock(&b, &held).await;
                outcome
            }
        })?;
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        let store = self.buckets.state.clone();
        let prefix = prefix.to_string();
        self.block(async move {
            let mut keys = store.keys().await.map_err(backend)?;
            let mut found = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(backend)?;
                if let Some(plain) = decode(&key).filter(|k| k.starts_with(&prefix)) {
                    found.push((plain, key));
                }
            }
            found.sort();
            let mut out = Vec::with_capacity(found.len());
            for (plain, key) in found {
                if let (Some(v), _) = read(&store, &key).await? {
                    out.push((plain, v));
                }
            }
            Ok(out)
        })
    }
}

/// Step 5 for a transaction with a record: each write by compare-and-set, then the record and
/// the locks go. A write that finds its key moved on means the locks were taken from this
/// node as stale; the record stays for the taker's recovery to finish.
async fn apply(
    b: &Buckets,
    txn: &str,
    writes: &[TxnWrite],
    held: &[(String, u64)],
) -> Result<(), StateError> {
    for w in writes {
        if !write(&b.state, &w.key, &w.value, w.rev).await? {
            return Err(lost_lock(&w.key));
        }
    }
    b.txn.delete(txn).await.map_err(backend)?;
    unlock(b, held).await;
    Ok(())
}

fn lost_lock(key: &str) -> StateError {
    StateError::Backend(format!(
        "state key `{}` changed under its lock (this node held it longer than {}s)",
        decode(key).unwrap_or_default(),
        LOCK_STALE.as_secs()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;

    #[test]
    fn keys_encode_to_what_nats_takes_and_back() {
        for key in [
            "stock/SKU-1",
            "kv/p/a.b",
            "customer/é=x%2F",
            "reservation/ 1",
        ] {
            let e = encode(key);
            assert!(e
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=')));
            assert_eq!(decode(&e).as_deref(), Some(key));
        }
        assert!(encode("kv/p/ab").starts_with(&encode("kv/p/")));
        assert_eq!(decode("=G1"), None);
        assert_eq!(decode("=4"), None);
    }

    /// A real nats-server with JetStream on a free port, its store in a temp folder; killed on
    /// drop.
    struct Server {
        child: std::process::Child,
        port: u16,
        /// The server's store, deleted after it stopped.
        _store: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nats-server is needed for these tests (apt-get install nats-server)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut port = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                }
                if line.contains("Server is ready") {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
        Server {
            child,
            port,
            _store: dir,
        }
    }

    fn open(server: &Server, node: &str) -> JetStreamStore {
        let config = super::super::test_config(&format!("nats://127.0.0.1:{}", server.port), node);
        JetStreamStore::open(&Settings::from_config(std::path::Path::new("."), &config)).unwrap()
    }

    #[test]
    fn keeps_the_store_contract() {
        let s = server();
        crate::state::contract::check(&open(&s, "n1"));
    }

    #[test]
    fn concurrent_updates_over_two_keys_from_two_nodes_lose_nothing() {
        let s = server();
        let stores = [Arc::new(open(&s, "n1")), Arc::new(open(&s, "n2"))];
        let keys = vec!["count/a".to_string(), "count/b".to_string()];
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (store, keys) = (stores[i % 2].clone(), keys.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        store
                            .update(&keys, &mut |cur| {
                                let n = |v: &Option<Value>| {
                                    v.as_ref().and_then(Value::as_i64).unwrap_or(0)
                                };
                                Ok((
                                    vec![Some(json!(n(&cur[0]) + 1)), Some(json!(n(&cur[1]) + 2))],
                                    Value::Null,
                                ))
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stores[0].get("count/a").unwrap(), Some(json!(100)));
        assert_eq!(stores[1].get("count/b").unwrap(), Some(json!(200)));
    }

    #[test]
    fn a_stopped_nodes_half_done_update_is_finished_by_the_next() {
        let s = server();
        let store = open(&s, "n1");
        let keys = vec!["stock/A".to_string(), "stock/B".to_string()];
        store
            .update(&keys, &mut |_| {
                Ok((vec![Some(json!(1)), Some(json!(1))], Value::Null))
            })
            .unwrap();
        // What a node that died after writing A (of A and B) leaves: both locks, stamped long
        // ago, and its record.
        let b = store.buckets.clone();
        store
            .block(async move {
                let (_, rev_a) = read(&b.state, "stock/A").await?;
                let (_, rev_b) = read(&b.state, "stock/B").await?;
                let record = Txn {
                    writes: vec![
                        TxnWrite {
                            key: "stock/A".into(),
                            value: Some(json!(2)),
                            rev: rev_a,
                        },
                        TxnWrite {
                            key: "stock/B".into(),
                            value: Some(json!(2)),
                            rev: rev_b,
                        },
                    ],
                };
                let old = serde_json::to_vec(&Lock {
                    txn: "dead-1".into(),
                    at: 1,
                })
                .unwrap();
                for k in ["stock/A", "stock/B"] {
                    b.locks
                        .create(k, Bytes::from(old.clone()))
                        .await
                        .map_err(backend)?;
                }
                b.txn
                    .put("dead-1", Bytes::from(serde_json::to_vec(&record).unwrap()))
                    .await
                    .map_err(backend)?;
                assert!(write(&b.state, "stock/A", &Some(json!(2)), rev_a).await?);
                Ok(())
            })
            .unwrap();
        // Half done, as a plain read shows it.
        assert_eq!(store.get("stock/A").unwrap(), Some(json!(2)));
        assert_eq!(store.get("stock/B").unwrap(), Some(json!(1)));
        // The next update of these keys (another node's) finishes it first, and decides on the
        // whole result.
        let other = open(&s, "n2");
        let seen = other
            .update(&keys, &mut |cur| Ok((cur.to_vec(), json!(cur))))
            .unwrap();
        assert_eq!(seen, json!([2, 2]));
        assert_eq!(other.get("stock/B").unwrap(), Some(json!(2)));
    }
}
