//! The audit log of state written by hand (the admin API, `crossdock state`): who changed which
//! keys, when, from what to what. Events' own writes are not logged here: their trails say
//! what they did.
//!
//! [`Audited`] is a [`StateStore`] over the real one: the domain functions (`stock::set`,
//! `customers::correct`, `kv::set`) run through it unchanged, and each `update` that changes
//! something appends one entry in the same atomic update as the change itself, so the log and
//! the state cannot disagree, on sled as on a cluster's bucket.
//!
//! Layout: `audit/head` holds `{"seq": N}`, the last entry's number; entry N is at
//! `audit/entry/{N:020}`. Appending reads the head, then updates the domain keys, the head and
//! the new entry together, checking inside the update that the head is still the one read (two
//! writers appending at once: one of them reads the head again and retries). The entry
//! [`KEEP`] places back is deleted by the same update, so the log holds the last [`KEEP`]
//! entries whatever is written.

use std::cell::Cell;

use serde_json::{json, Value};

use super::{check_arity, StateError, StateStore, UpdateFn};

/// Entries kept: older ones are deleted as new ones are appended.
pub const KEEP: u64 = 10_000;

/// The longest actor name kept; a longer one is cut.
const MAX_ACTOR: usize = 64;

/// Appends that found the head moved before one is given up (a writer appending in a loop
/// beside another could otherwise starve it).
const TRIES: usize = 64;

const HEAD: &str = "audit/head";

/// The prefix of the log's keys: refused as a domain key, so the log is only written here.
pub const PREFIX: &str = "audit/";

fn entry_key(seq: u64) -> String {
    format!("audit/entry/{seq:020}")
}

fn head_of(v: &Option<Value>) -> u64 {
    v.as_ref()
        .and_then(|v| v.get("seq"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A name fit for the log: printable, at most [`MAX_ACTOR`] characters, "admin" when empty.
pub fn actor_name(given: Option<&str>) -> String {
    let name: String = given
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ACTOR)
        .collect();
    if name.is_empty() {
        "admin".to_string()
    } else {
        name
    }
}

/// A [`StateStore`] that logs every update it makes to `base`, as `actor` doing `action`.
pub struct Audited<'a> {
    base: &'a dyn StateStore,
    actor: String,
    action: String,
}

impl<'a> Audited<'a> {
    /// `action` says what was asked, in words (`stock set OAK-1 12`), for whoever reads the log.
    pub fn new(base: &'a dyn StateStore, actor: &str, action: &str) -> Audited<'a> {
        Audited {
            base,
            actor: actor_name(Some(actor)),
            action: action.to_string(),
        }
    }
}

impl StateStore for Audited<'_> {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.base.get(key)
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        if let Some(k) = keys.iter().find(|k| k.starts_with(PREFIX)) {
            return Err(StateError::Invalid(format!(
                "`{k}` belongs to the audit log, which is written only by logging"
            )));
        }
        let n = keys.len();
        for _ in 0..TRIES {
            let head = head_of(&self.base.get(HEAD)?);
            let seq = head + 1;
            let mut all = keys.to_vec();
            all.push(HEAD.to_string());
            all.push(entry_key(seq));
            if seq > KEEP {
                all.push(entry_key(seq - KEEP));
            }
            let moved = Cell::new(false);
            let result = self.base.update(&all, &mut |current| {
                moved.set(false);
                if head_of(&current[n]) != head {
                    moved.set(true);
                    return Err(StateError::Backend("the audit log moved".into()));
                }
                let (mut new, answer) = f(&current[..n])?;
                check_arity(keys, &new)?;
                let changes: Vec<Value> = keys
                    .iter()
                    .zip(&current[..n])
                    .zip(&new)
                    .filter(|((_, before), after)| before != after)
                    .map(|((key, before), after)| {
                        json!({ "key": key, "before": before, "after": after })
                    })
                    .collect();
                if changes.is_empty() {
                    // Nothing changed: nothing to log; the log's keys are written as they are.
                    new.extend_from_slice(&current[n..]);
                    return Ok((new, answer));
                }
                new.push(Some(json!({ "seq": seq })));
                new.push(Some(json!({
                    "seq": seq,
                    "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "actor": self.actor,
                    "action": self.action,
                    "changes": changes,
                })));
                if seq > KEEP {
                    new.push(None);
                }
                Ok((new, answer))
            });
            match result {
                Err(_) if moved.get() => continue,
                other => return other,
            }
        }
        Err(StateError::Backend(format!(
            "the audit log kept moving: {TRIES} appends lost to other writers; try again"
        )))
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        self.base.scan_prefix(prefix)
    }

    fn make_durable(&self) -> Result<(), StateError> {
        self.base.make_durable()
    }
}

/// The newest entries, newest first: at most `limit` (and [`KEEP`]), older than entry `before`
/// when given (for paging), and the number of the last entry written.
pub fn recent(
    store: &dyn StateStore,
    limit: usize,
    before: Option<u64>,
) -> Result<(Vec<Value>, u64), StateError> {
    let head = head_of(&store.get(HEAD)?);
    let start = before.map_or(head, |b| b.saturating_sub(1).min(head));
    let limit = (limit as u64).min(KEEP);
    let mut out = Vec::new();
    let mut seq = start;
    while seq > 0 && (out.len() as u64) < limit && head - seq < KEEP {
        if let Some(entry) = store.get(&entry_key(seq))? {
            out.push(entry);
        }
        seq -= 1;
    }
    Ok((out, head))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::{customers, kv, stock, MemoryStore};

    #[test]
    fn each_change_is_one_entry_with_before_and_after() {
        let store = MemoryStore::new();
        stock::set(&Audited::new(&store, "ops", "stock set A 5"), "A", 5).unwrap();
        stock::reserve(&store, "o-1", &[("A".into(), 2)]).unwrap();
        stock::set(&Audited::new(&store, "", "stock set A 9"), "A", 9).unwrap();
        // Setting what is there changes nothing and logs nothing.
        stock::set(&Audited::new(&store, "ops", "stock set A 9"), "A", 9).unwrap();
        let (entries, head) = recent(&store, 10, None).unwrap();
        assert_eq!(head, 2);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["actor"], "admin");
        assert_eq!(entries[0]["action"], "stock set A 9");
        let change = &entries[0]["changes"][0];
        assert_eq!(change["key"], "stock/A");
        assert_eq!(change["before"], json!({"on_hand": 5, "reserved": 2}));
        assert_eq!(change["after"], json!({"on_hand": 9, "reserved": 2}));
        assert_eq!(entries[1]["actor"], "ops");
        assert_eq!(entries[1]["changes"][0]["before"], Value::Null);
        // Paging: older than entry 2.
        let (older, _) = recent(&store, 10, Some(2)).unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0]["seq"], 1);
    }

    #[test]
    fn a_failed_write_logs_nothing_and_the_log_cannot_be_written_as_state() {
        let store = MemoryStore::new();
        let audited = Audited::new(&store, "ops", "stock set A -1");
        assert!(stock::set(&audited, "A", -1).is_err());
        assert_eq!(recent(&store, 10, None).unwrap().1, 0);
        let err = kv::set(&audited, "p", "x", json!(1)).map(|_| ());
        assert!(err.is_ok());
        let forged = audited.update(&[HEAD.to_string()], &mut |_| {
            Ok((vec![Some(json!({"seq": 0}))], Value::Null))
        });
        assert!(matches!(forged, Err(StateError::Invalid(_))), "{forged:?}");
        assert_eq!(recent(&store, 10, None).unwrap().1, 1);
        assert!(customers::get(&store, "c").unwrap().is_none());
    }

    #[test]
    fn the_log_keeps_the_last_entries_only() {
        let store = MemoryStore::new();
        let total = KEEP + 25;
        for i in 0..total {
            let audited = Audited::new(&store, "ops", "kv set");
            kv::set(&audited, "p", "n", json!(i)).unwrap();
        }
        let entries = store.scan_prefix("audit/entry/").unwrap();
        assert_eq!(entries.len() as u64, KEEP);
        assert_eq!(entries[0].1["seq"], total - KEEP + 1);
        let (newest, head) = recent(&store, usize::MAX, None).unwrap();
        assert_eq!(head, total);
        assert_eq!(newest.len() as u64, KEEP);
        assert_eq!(newest[0]["changes"][0]["after"], json!(total - 1));
    }

    #[test]
    fn writers_appending_at_once_each_get_an_entry() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let audited = Audited::new(store.as_ref(), &format!("t{t}"), "kv set");
                        kv::set(&audited, "p", &format!("{t}-{i}"), json!(i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (entries, head) = recent(store.as_ref(), 1000, None).unwrap();
        assert_eq!(head, 200);
        assert_eq!(entries.len(), 200);
        let mut keys: Vec<&str> = entries
            .iter()
            .map(|e| e["changes"][0]["key"].as_str().unwrap())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 200);
    }
}
