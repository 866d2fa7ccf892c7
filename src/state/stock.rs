//! Stock levels and per-order reservations.
//!
//! Each SKU has an on-hand count and a reserved count; available is on hand less reserved
//! (never below zero). An order reserves all its items or none of them, in one atomic update
//! over the order's reservation key and every SKU it names, so two orders racing for the last
//! units cannot both win and stock is never over-reserved. A reservation is remembered per order
//! id with the answer it got: reserving the same order again (a redelivered webhook, a replayed
//! event) returns that first answer, even a refusal, and reserves nothing more, so replays are
//! deterministic. `release` (cancellation) and `commit` (shipment) end a reservation once.

use serde_json::{json, Value};

use super::{escape, StateError, StateStore};

/// One SKU the order could not get enough of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

/// The answer to [`reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveAnswer {
    pub ok: bool,
    pub shortfalls: Vec<Shortfall>,
}

impl ReserveAnswer {
    /// `{"ok": bool, "shortfalls": [{"sku", "requested", "available"}]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok,
            "shortfalls": self.shortfalls.iter().map(|s| json!({
                "sku": s.sku,
                "requested": s.requested,
                "available": s.available,
            })).collect::<Vec<_>>(),
        })
    }

    fn from_json(key: &str, v: &Value) -> Result<ReserveAnswer, StateError> {
        let corrupt = || StateError::Corrupt {
            key: key.to_string(),
            message: "reservation answer has the wrong shape".into(),
        };
        let ok = v.get("ok").and_then(Value::as_bool).ok_or_else(corrupt)?;
        let list = v
            .get("shortfalls")
            .and_then(Value::as_array)
            .ok_or_else(corrupt)?;
        let mut shortfalls = Vec::with_capacity(list.len());
        for s in list {
            shortfalls.push(Shortfall {
                sku: s
                    .get("sku")
                    .and_then(Value::as_str)
                    .ok_or_else(corrupt)?
                    .to_string(),
                requested: s
                    .get("requested")
                    .and_then(Value::as_i64)
                    .ok_or_else(corrupt)?,
                available: s
                    .get("available")
                    .and_then(Value::as_i64)
                    .ok_or_else(corrupt)?,
            });
        }
        Ok(ReserveAnswer { ok, shortfalls })
    }
}

/// On-hand and reserved counts of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Level {
    on_hand: i64,
    reserved: i64,
}

impl Level {
    fn read(key: &str, v: &Option<Value>) -> Result<Level, StateError> {
        let Some(v) = v else {
            return Ok(Level::default());
        };
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_i64)
                .ok_or_else(|| StateError::Corrupt {
                    key: key.to_string(),
                    message: format!("`{name}` is not an integer"),
                })
        };
        Ok(Level {
            on_hand: field("on_hand")?,
            reserved: field("reserved")?,
        })
    }

    fn available(self) -> i64 {
        self.on_hand.saturating_sub(self.reserved).max(0)
    }

    fn to_json(self) -> Value {
        json!({"on_hand": self.on_hand, "reserved": self.reserved})
    }
}

const RESERVED: &str = "reserved";
const REJECTED: &str = "rejected";
const RELEASED: &str = "released";
const COMMITTED: &str = "committed";

fn stock_key(sku: &str) -> String {
    format!("stock/{}", escape(sku))
}

fn reservation_key(order_id: &str) -> String {
    format!("reservation/{}", escape(order_id))
}

/// Set a SKU's on-hand count (a stock sync from the ERP). Reservations are kept; if the new
/// count is below what is reserved, available is zero until reservations end.
pub fn set(store: &dyn StateStore, sku: &str, on_hand: i64) -> Result<(), StateError> {
    if on_hand < 0 {
        return Err(StateError::Invalid(format!(
            "stock.set: on hand for {sku:?} cannot be negative (got {on_hand})"
        )));
    }
    let key = stock_key(sku);
    store.update(std::slice::from_ref(&key), &mut |current| {
        let level = Level {
            on_hand,
            ..Level::read(&key, &current[0])?
        };
        Ok((vec![Some(level.to_json())], Value::Null))
    })?;
    Ok(())
}

/// On hand less reserved, never below zero; zero for an unknown SKU.
pub fn available(store: &dyn StateStore, sku: &str) -> Result<i64, StateError> {
    let key = stock_key(sku);
    Ok(Level::read(&key, &store.get(&key)?)?.available())
}

/// A SKU's stock as stored: `{"on_hand", "reserved", "available"}`, or None for an unknown SKU.
pub fn level(store: &dyn StateStore, sku: &str) -> Result<Option<Value>, StateError> {
    let key = stock_key(sku);
    let Some(raw) = store.get(&key)? else {
        return Ok(None);
    };
    let level = Level::read(&key, &Some(raw))?;
    Ok(Some(
        json!({"on_hand": level.on_hand, "reserved": level.reserved, "available": level.available()}),
    ))
}

/// An order's reservation as stored (status, items, first answer), or None.
pub fn reservation(store: &dyn StateStore, order_id: &str) -> Result<Option<Value>, StateError> {
    store.get(&reservation_key(order_id))
}

/// Sum the quantities per SKU, keeping the order in which SKUs first appear.
fn merge_items(items: &[(String, i64)]) -> Result<Vec<(String, i64)>, StateError> {
    let mut merged: Vec<(String, i64)> = Vec::with_capacity(items.len());
    for (sku, qty) in items {
        if *qty <= 0 {
            return Err(StateError::Invalid(format!(
                "stock.reserve: quantity for {sku:?} must be positive (got {qty})"
            )));
        }
        match merged.iter_mut().find(|(s, _)| s == sku) {
            Some((_, q)) => {
                *q = q.checked_add(*qty).ok_or_else(|| {
                    StateError::Invalid(format!("stock.reserve: quantity for {sku:?} overflows"))
                })?;
            }
            None => merged.push((sku.clone(), *qty)),
        }
    }
    Ok(merged)
}

/// Reserve every item of an order, or none; idempotent per order id.
///
/// `items` are `(sku, quantity)`; a SKU listed twice counts its quantities together.
/// Quantities must be positive.
pub fn reserve(
    store: &dyn StateStore,
    order_id: &str,
    items: &[(String, i64)],
) -> Result<ReserveAnswer, StateError> {
    let items = merge_items(items)?;
    let rkey = reservation_key(order_id);
    let mut keys = Vec::with_capacity(items.len() + 1);
    keys.push(rkey.clone());
    keys.extend(items.iter().map(|(sku, _)| stock_key(sku)));

    let answer = store.update(&keys, &mut |current| {
        if let Some(existing) = &current[0] {
            // A repeat: the first answer stands and nothing moves.
            let answer = existing
                .get("answer")
                .cloned()
                .ok_or_else(|| StateError::Corrupt {
                    key: rkey.clone(),
                    message: "reservation has no `answer`".into(),
                })?;
            return Ok((current.to_vec(), answer));
        }
        let mut levels = Vec::with_capacity(items.len());
        let mut shortfalls = Vec::new();
        for ((sku, qty), (key, value)) in items.iter().zip(keys[1..].iter().zip(&current[1..])) {
            let level = Level::read(key, value)?;
            if *qty > level.available() {
                shortfalls.push(Shortfall {
                    sku: sku.clone(),
                    requested: *qty,
                    available: level.available(),
                });
            }
            levels.push(level);
        }
        let answer = ReserveAnswer {
            ok: shortfalls.is_empty(),
            shortfalls,
        }
        .to_json();
        let items_json: Vec<Value> = items
            .iter()
            .map(|(sku, qty)| json!({"sku": sku, "qty": qty}))
            .collect();
        let mut new = Vec::with_capacity(keys.len());
        if answer["ok"] == Value::Bool(true) {
            new.push(Some(
                json!({"status": RESERVED, "items": items_json, "answer": answer}),
            ));
            for ((_, qty), level) in items.iter().zip(levels) {
                let level = Level {
                    reserved: level.reserved.saturating_add(*qty),
                    ..level
                };
                new.push(Some(level.to_json()));
            }
        } else {
            new.push(Some(
                json!({"status": REJECTED, "items": items_json, "answer": answer}),
            ));
            new.extend(current[1..].iter().cloned());
        }
        Ok((new, answer))
    })?;
    ReserveAnswer::from_json(&rkey, &answer)
}

/// The items of a stored reservation, and its status.
fn read_reservation(key: &str, v: &Value) -> Result<(String, Vec<(String, i64)>), StateError> {
    let corrupt = |message: &str| StateError::Corrupt {
        key: key.to_string(),
        message: message.to_string(),
    };
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("no `status`"))?
        .to_string();
    let list = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| corrupt("no `items`"))?;
    let mut items = Vec::with_capacity(list.len());
    for item in list {
        let sku = item.get("sku").and_then(Value::as_str);
        let qty = item.get("qty").and_then(Value::as_i64);
        match (sku, qty) {
            (Some(sku), Some(qty)) => items.push((sku.to_string(), qty)),
            _ => return Err(corrupt("an item lacks `sku` or `qty`")),
        }
    }
    Ok((status, items))
}

/// End a live reservation: `release` gives the units back, `commit` also takes them off hand.
/// Returns whether a reservation was ended (false: unknown order, refused, or already ended).
fn end(store: &dyn StateStore, order_id: &str, commit: bool) -> Result<bool, StateError> {
    let rkey = reservation_key(order_id);
    let Some(v) = store.get(&rkey)? else {
        return Ok(false);
    };
    let (status, items) = read_reservation(&rkey, &v)?;
    if status != RESERVED {
        return Ok(false);
    }
    // A reservation's items never change once written, so the keys read here stay right; the
    // status is checked again inside the update in case another caller ended it meanwhile.
    let mut keys = Vec::with_capacity(items.len() + 1);
    keys.push(rkey.clone());
    keys.extend(items.iter().map(|(sku, _)| stock_key(sku)));
    let ended = store.update(&keys, &mut |current| {
        let Some(res) = &current[0] else {
            return Ok((current.to_vec(), Value::Bool(false)));
        };
        let (status, _) = read_reservation(&rkey, res)?;
        if status != RESERVED {
            return Ok((current.to_vec(), Value::Bool(false)));
        }
        let mut res = res.clone();
        res["status"] = Value::from(if commit { COMMITTED } else { RELEASED });
        let mut new = Vec::with_capacity(keys.len());
        new.push(Some(res));
        for ((_, qty), (key, value)) in items.iter().zip(keys[1..].iter().zip(&current[1..])) {
            let level = Level::read(key, value)?;
            let level = Level {
                // Saturating: a stock count set below the reservation must not go negative.
                on_hand: if commit {
                    level.on_hand.saturating_sub(*qty).max(0)
                } else {
                    level.on_hand
                },
                reserved: level.reserved.saturating_sub(*qty).max(0),
            };
            new.push(Some(level.to_json()));
        }
        Ok((new, Value::Bool(true)))
    })?;
    Ok(ended == Value::Bool(true))
}

/// Cancel an order's reservation: the units become available again.
pub fn release(store: &dyn StateStore, order_id: &str) -> Result<bool, StateError> {
    end(store, order_id, false)
}

/// Ship an order's reservation: on hand goes down by the reserved units and the reservation ends.
pub fn commit(store: &dyn StateStore, order_id: &str) -> Result<bool, StateError> {
    end(store, order_id, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use std::sync::Arc;

    fn items(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(s, q)| (s.to_string(), *q)).collect()
    }

    fn level(store: &dyn StateStore, sku: &str) -> Value {
        store.get(&stock_key(sku)).unwrap().unwrap()
    }

    #[test]
    fn reserve_is_all_or_nothing_with_shortfalls() {
        let store = MemoryStore::new();
        set(&store, "A", 5).unwrap();
        set(&store, "B", 1).unwrap();
        let answer = reserve(&store, "o-1", &items(&[("A", 2), ("B", 3), ("C", 1)])).unwrap();
        assert!(!answer.ok);
        assert_eq!(
            answer.shortfalls,
            vec![
                Shortfall {
                    sku: "B".into(),
                    requested: 3,
                    available: 1
                },
                Shortfall {
                    sku: "C".into(),
                    requested: 1,
                    available: 0
                },
            ]
        );
        // Nothing was reserved, not even the A that was there.
        assert_eq!(available(&store, "A").unwrap(), 5);
        assert_eq!(available(&store, "B").unwrap(), 1);
        assert_eq!(
            answer.to_json(),
            json!({"ok": false, "shortfalls": [
                {"sku": "B", "requested": 3, "available": 1},
                {"sku": "C", "requested": 1, "available": 0}]})
        );

        let ok = reserve(&store, "o-2", &items(&[("A", 2), ("B", 1), ("A", 1)])).unwrap();
        assert!(ok.ok && ok.shortfalls.is_empty());
        assert_eq!(available(&store, "A").unwrap(), 2);
        assert_eq!(available(&store, "B").unwrap(), 0);
    }

    #[test]
    fn reserve_is_idempotent_per_order() {
        let store = MemoryStore::new();
        set(&store, "A", 3).unwrap();
        let first = reserve(&store, "o-1", &items(&[("A", 2)])).unwrap();
        assert!(first.ok);
        let again = reserve(&store, "o-1", &items(&[("A", 2)])).unwrap();
        assert_eq!(again, first);
        assert_eq!(available(&store, "A").unwrap(), 1);

        // A refusal is remembered too: the replay answers the same even after a restock.
        let refused = reserve(&store, "o-2", &items(&[("A", 5)])).unwrap();
        assert!(!refused.ok);
        set(&store, "A", 100).unwrap();
        assert_eq!(
            reserve(&store, "o-2", &items(&[("A", 5)])).unwrap(),
            refused
        );
        assert_eq!(available(&store, "A").unwrap(), 98);
    }

    #[test]
    fn release_and_commit_move_the_right_quantities() {
        let store = MemoryStore::new();
        set(&store, "A", 10).unwrap();
        set(&store, "B", 4).unwrap();
        assert!(
            reserve(&store, "o-1", &items(&[("A", 3), ("B", 1)]))
                .unwrap()
                .ok
        );
        assert!(reserve(&store, "o-2", &items(&[("A", 2)])).unwrap().ok);
        assert_eq!(available(&store, "A").unwrap(), 5);

        assert!(release(&store, "o-1").unwrap());
        assert!(!release(&store, "o-1").unwrap(), "released once only");
        assert!(
            !commit(&store, "o-1").unwrap(),
            "a released order cannot ship"
        );
        assert_eq!(level(&store, "A"), json!({"on_hand": 10, "reserved": 2}));
        assert_eq!(level(&store, "B"), json!({"on_hand": 4, "reserved": 0}));

        assert!(commit(&store, "o-2").unwrap());
        assert!(!commit(&store, "o-2").unwrap(), "committed once only");
        assert!(!release(&store, "o-2").unwrap());
        assert_eq!(level(&store, "A"), json!({"on_hand": 8, "reserved": 0}));
        assert_eq!(available(&store, "A").unwrap(), 8);

        assert!(!release(&store, "unknown").unwrap());
        // A refused reservation holds nothing to release.
        assert!(!reserve(&store, "o-3", &items(&[("B", 9)])).unwrap().ok);
        assert!(!release(&store, "o-3").unwrap());
    }

    #[test]
    fn never_negative() {
        let store = MemoryStore::new();
        set(&store, "A", 5).unwrap();
        assert!(reserve(&store, "o-1", &items(&[("A", 4)])).unwrap().ok);
        // A recount below the reservation: available is zero, not negative.
        set(&store, "A", 2).unwrap();
        assert_eq!(available(&store, "A").unwrap(), 0);
        assert!(commit(&store, "o-1").unwrap());
        assert_eq!(level(&store, "A"), json!({"on_hand": 0, "reserved": 0}));
        assert!(set(&store, "A", -1).is_err());
        assert!(reserve(&store, "o-2", &items(&[("A", 0)])).is_err());
        assert!(reserve(&store, "o-2", &items(&[("A", -1)])).is_err());
        assert_eq!(store.get("reservation/o-2").unwrap(), None);
    }

    #[test]
    fn concurrent_reservations_never_over_reserve() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        set(&*store, "A", 50).unwrap();
        set(&*store, "B", 30).unwrap();
        // 8 threads, 40 orders each over 20 distinct order ids (so every id is tried twice by
        // the same thread and several times across threads). Each order wants 1 A and 1 B,
        // with the SKUs listed in different orders; demand (160 distinct orders) exceeds stock.
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut won = Vec::new();
                    for i in 0..40 {
                        let order = format!("o-{}", (t * 20 + i % 20) % 100);
                        let list = if i % 2 == 0 {
                            items(&[("A", 1), ("B", 1)])
                        } else {
                            items(&[("B", 1), ("A", 1)])
                        };
                        if reserve(&*store, &order, &list).unwrap().ok {
                            won.push(order);
                        }
                    }
                    won
                })
            })
            .collect();
        let mut winners = std::collections::BTreeSet::new();
        for h in handles {
            winners.extend(h.join().unwrap());
        }
        // 100 distinct order ids competing for 30 B: exactly 30 win, each reserved once.
        assert_eq!(winners.len(), 30);
        assert_eq!(level(&*store, "A"), json!({"on_hand": 50, "reserved": 30}));
        assert_eq!(level(&*store, "B"), json!({"on_hand": 30, "reserved": 30}));
        let reserved = store
            .scan_prefix("reservation/")
            .unwrap()
            .into_iter()
            .filter(|(_, v)| v["status"] == RESERVED)
            .count();
        assert_eq!(reserved, 30);
    }
}
