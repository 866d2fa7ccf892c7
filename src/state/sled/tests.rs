use super::*;
use serde_json::json;

/// The open database's handles, for looking at what sled holds; dropped before a reopen.
fn db(store: &SledStore) -> sled::Db {
    store.core.with(|open| Ok(open.db.clone())).unwrap()
}

fn tree(store: &SledStore) -> sled::Tree {
    store.core.with(|open| Ok(open.tree.clone())).unwrap()
}

#[test]
fn keeps_the_store_contract() {
    crate::state::contract::check(&SledStore::temporary().unwrap());
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_an_unstamped_one_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    // A store written before formats were stamped: plain sled, state in its tree.
    {
        let db = sled::open(&path).unwrap();
        db.open_tree(TREE).unwrap().insert("k", "1").unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.get("k").unwrap(), Some(json!(1)));
    assert_eq!(
        db(&store).get(FORMAT_KEY).unwrap().as_deref(),
        Some(FORMAT.to_string().as_bytes())
    );
    db(&store).insert(FORMAT_KEY, "2").unwrap();
    store.flush().unwrap();
    drop(store);
    match SledStore::open(&path) {
        Err(StateError::NewerFormat {
            found: 2,
            supported,
        }) => assert_eq!(supported, FORMAT),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn values_keep_every_digit() {
    let store = SledStore::temporary().unwrap();
    // Parsed, not `json!`: the macro would make 1.10 an f64.
    let text = r#"{"amount":"0.30","id":12345678901234567890,"x":1.10}"#;
    let big: Value = serde_json::from_str(text).unwrap();
    store
        .update(&["k".into()], &mut |_| {
            Ok((vec![Some(big.clone())], json!(null)))
        })
        .unwrap();
    assert_eq!(store.get("k").unwrap(), Some(big));
    assert_eq!(
        serde_json::to_string(&store.get("k").unwrap().unwrap()).unwrap(),
        text
    );
}

#[test]
fn corrupt_bytes_are_reported_with_their_key() {
    let store = SledStore::temporary().unwrap();
    tree(&store)
        .insert("stock/A", b"{not json".to_vec())
        .unwrap();
    assert!(matches!(
        store.get("stock/A"),
        Err(StateError::Corrupt { key, .. }) if key == "stock/A"
    ));
    let r = store.update(&["stock/A".into()], &mut |_| Ok((vec![None], json!(null))));
    assert!(matches!(r, Err(StateError::Corrupt { .. })), "{r:?}");
    // Nothing was written by the failed update.
    assert!(tree(&store).get("stock/A").unwrap().is_some());
}

#[test]
fn unchanged_values_are_not_rewritten() {
    let store = SledStore::temporary().unwrap();
    let both = ["a".to_string(), "b".to_string()];
    store
        .update(&both, &mut |_| {
            Ok((vec![Some(json!(1)), Some(json!(1))], json!(null)))
        })
        .unwrap();
    // Landed first, so the watch below cannot see it.
    store.land().unwrap();
    let mut events = tree(&store).watch_prefix("a");
    // No-op updates, on two keys and on one.
    store
        .update(&both, &mut |cur| Ok((cur.to_vec(), json!(null))))
        .unwrap();
    store
        .update(&both[..1], &mut |cur| Ok((cur.to_vec(), json!(null))))
        .unwrap();
    store
        .update(&both, &mut |_| {
            Ok((vec![Some(json!(2)), Some(json!(1))], json!(null)))
        })
        .unwrap();
    // The first event seen is the change to 2: the no-op updates wrote nothing.
    match events.next() {
        Some(::sled::Event::Insert { value, .. }) => assert_eq!(&*value, b"2"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn single_key_updates_are_atomic_under_contention() {
    let store = SledStore::temporary().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for _ in 0..250 {
                    // Half the writers update the one key alone, half together with a key
                    // of their own.
                    let mut add = |cur: &[Option<Value>]| {
                        let n = cur[0].as_ref().and_then(Value::as_i64).unwrap_or(0);
                        let mut new = vec![Some(json!(n + 1))];
                        new.extend(cur[1..].iter().map(|_| Some(json!(t))));
                        Ok((new, json!(n + 1)))
                    };
                    let keys = if t % 2 == 0 {
                        vec!["n".to_string()]
                    } else {
                        vec!["n".to_string(), format!("t{t}")]
                    };
                    store.update(&keys, &mut add).unwrap();
                }
            });
        }
    });
    assert_eq!(store.get("n").unwrap(), Some(json!(1000)));
    // A single-key update that fails or changes nothing writes nothing.
    let r = store.update(&["n".into()], &mut |_| {
        Err(StateError::Invalid("no".into()))
    });
    assert!(r.is_err());
    let r = store.update(&["n".into()], &mut |_| Ok((vec![], json!(null))));
    assert!(matches!(r, Err(StateError::Backend(_))), "{r:?}");
    store
        .update(&["n".into()], &mut |_| Ok((vec![None], json!(null))))
        .unwrap();
    assert_eq!(store.get("n").unwrap(), None);
}

#[test]
fn each_update_durability_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path().join("db"), Durability::EachUpdate).unwrap();
    assert_eq!(store.durability(), Durability::EachUpdate);
    store
        .update(&["a".into()], &mut |_| {
            Ok((vec![Some(json!(1))], json!(null)))
        })
        .unwrap();
    // Already on disk: an explicit flush finds nothing (or next to nothing) to write.
    assert_eq!(store.get("a").unwrap(), Some(json!(1)));
    store.flush().unwrap();
}

/// What sled itself holds for `key`, buffered writes aside.
fn in_sled(store: &SledStore, key: &str) -> Option<Value> {
    tree(store)
        .get(key)
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn updates_are_read_at_once_and_land_whole() {
    let store = SledStore::temporary().unwrap();
    let keys: Vec<String> = (0..3).map(|i| format!("k{i}")).collect();
    for n in 1..=500 {
        store
            .update(&keys, &mut |_| Ok((vec![Some(json!(n)); 3], json!(null))))
            .unwrap();
        // Seen by the next read and the next update, landed or not.
        assert_eq!(store.get("k2").unwrap(), Some(json!(n)));
    }
    store.land().unwrap();
    for key in &keys {
        assert_eq!(in_sled(&store, key), Some(json!(500)));
    }
    // A delete is buffered like any write.
    store
        .update(&keys[..1], &mut |_| Ok((vec![None], json!(null))))
        .unwrap();
    assert_eq!(store.get("k0").unwrap(), None);
    store.land().unwrap();
    assert_eq!(in_sled(&store, "k0"), None);
}

#[test]
fn a_table_write_lands_the_state_updates_made_before_it() {
    let store = SledStore::temporary().unwrap();
    let table = store.table("inbox").unwrap();
    let keys = ["a".to_string(), "b".to_string()];
    store
        .update(&keys, &mut |_| {
            Ok((vec![Some(json!(1)), Some(json!(2))], json!(null)))
        })
        .unwrap();
    table.insert(b"event", b"done").unwrap();
    // No explicit land: the table write waited for the update to be in sled's log first.
    assert_eq!(in_sled(&store, "a"), Some(json!(1)));
    assert_eq!(in_sled(&store, "b"), Some(json!(2)));
}

#[test]
fn dropping_the_store_lands_what_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        for n in 0..1000 {
            store
                .update(&[format!("k{n}"), "last".into()], &mut |_| {
                    Ok((vec![Some(json!(n)), Some(json!(n))], json!(null)))
                })
                .unwrap();
        }
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.get("last").unwrap(), Some(json!(999)));
    assert_eq!(store.scan_prefix("k").unwrap().len(), 1000);
}

#[test]
fn fsync_each_update_returns_once_landed_also_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), Durability::EachUpdate).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for n in 0..25 {
                    let key = format!("t{t}/{n}");
                    store
                        .update(std::slice::from_ref(&key), &mut |_| {
                            Ok((vec![Some(json!(n))], json!(null)))
                        })
                        .unwrap();
                    assert_eq!(in_sled(store, &key), Some(json!(n)));
                }
            });
        }
    });
}

#[test]
fn a_second_open_of_the_same_path_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    let second = SledStore::open(dir.path());
    assert!(matches!(second, Err(StateError::Backend(_))), "{second:?}");
}

#[test]
fn a_reopened_store_keeps_every_write_and_its_tables_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let inbox = store.table("inbox").unwrap();
    let id = store.generate_id().unwrap();
    for n in 0..500 {
        store
            .update(&[format!("k{n}"), "last".into()], &mut |_| {
                Ok((vec![Some(json!(n)), Some(json!(n))], json!(null)))
            })
            .unwrap();
        inbox
            .insert(format!("e{n:03}").as_bytes(), b"pending")
            .unwrap();
    }
    // The last updates are still buffered when the reopen starts: it lands them first.
    assert!(store.reopen().unwrap());
    assert_eq!(store.reopens(), 1);
    assert_eq!(store.get("last").unwrap(), Some(json!(499)));
    assert_eq!(in_sled(&store, "last"), Some(json!(499)));
    assert_eq!(store.scan_prefix("k").unwrap().len(), 500);
    // The table handed out before the reopen reads and writes the reopened database.
    assert_eq!(inbox.len(), 500);
    assert_eq!(
        inbox.get(b"e042").unwrap().as_deref(),
        Some(&b"pending"[..])
    );
    inbox.remove(b"e042").unwrap();
    inbox.insert(b"e500", b"pending").unwrap();
    // A table first opened after the reopen is opened again by the next one, as it was.
    let dead = store.table("dead").unwrap();
    dead.insert(b"d", b"1").unwrap();
    store
        .update(&["after".into()], &mut |_| {
            Ok((vec![Some(json!(1))], json!(null)))
        })
        .unwrap();
    assert!(store.generate_id().unwrap() > id);
    assert!(store.reopen().unwrap());
    assert_eq!(inbox.len(), 500);
    assert_eq!(inbox.get(b"e042").unwrap(), None);
    assert!(inbox.get(b"e500").unwrap().is_some());
    assert_eq!(dead.get(b"d").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get("after").unwrap(), Some(json!(1)));
    assert!(store.writes() >= 1003);
    // And all of it survives closing the store for good.
    drop((store, inbox, dead));
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.get("k0").unwrap(), Some(json!(0)));
    assert_eq!(store.table("inbox").unwrap().len(), 500);
}

#[test]
fn a_reopen_waits_for_the_calls_in_flight_and_they_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let table = store.table("t").unwrap();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (store, table) = (&store, &table);
            s.spawn(move || {
                for n in 0..300 {
                    let key = format!("t{t}/{n}");
                    store
                        .update(std::slice::from_ref(&key), &mut |_| {
                            Ok((vec![Some(json!(n))], json!(null)))
                        })
                        .unwrap();
                    table.insert(key.as_bytes(), b"x").unwrap();
                    assert_eq!(store.get(&key).unwrap(), Some(json!(n)));
                }
            });
        }
        s.spawn(|| {
            for _ in 0..5 {
                assert!(store.reopen().unwrap());
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    });
    assert_eq!(store.reopens(), 5);
    assert_eq!(store.scan_prefix("t").unwrap().len(), 900);
    assert_eq!(table.len(), 900);
}

#[test]
fn a_temporary_store_is_not_reopened() {
    let store = SledStore::temporary().unwrap();
    store
        .update(&["k".into()], &mut |_| {
            Ok((vec![Some(json!(1))], json!(null)))
        })
        .unwrap();
    assert!(!store.reopen().unwrap());
    assert_eq!(store.reopens(), 0);
    assert_eq!(store.get("k").unwrap(), Some(json!(1)));
}
