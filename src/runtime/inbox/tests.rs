//! Unit tests of the parent module.

use super::*;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

pub(super) fn inbox() -> Inbox {
    Inbox::open(
        Arc::new(SledStore::temporary().unwrap()),
        FlushPolicy::Group,
    )
    .unwrap()
}

pub(super) fn accept(inbox: &Inbox, key: &str, window: Duration) -> Accepted {
    inbox
        .accept("p", &[key], window, BTreeMap::new(), br#"{"a":1}"#)
        .unwrap()
}

#[test]
fn duplicates_within_the_window_are_refused_and_point_at_the_first() {
    let inbox = inbox();
    let Accepted::New(first) = accept(&inbox, "k1", Duration::from_secs(60)) else {
        panic!("first delivery refused")
    };
    match accept(&inbox, "k1", Duration::from_secs(60)) {
        Accepted::Duplicate(id) => assert_eq!(id, first.meta.id),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        accept(&inbox, "k2", Duration::from_secs(60)),
        Accepted::New(_)
    ));
    // A window of zero: every delivery is new, and the key now points at the newest.
    assert!(matches!(
        accept(&inbox, "k1", Duration::ZERO),
        Accepted::New(_)
    ));
    assert_eq!(inbox.pending().unwrap().len(), 3);
}

#[test]
fn any_one_of_several_keys_makes_a_duplicate_and_a_loser_frees_what_it_claimed() {
    let inbox = inbox();
    let window = Duration::from_secs(60);
    let accept_keys = |keys: &[&str]| {
        inbox
            .accept("p", keys, window, BTreeMap::new(), b"{}")
            .unwrap()
    };
    let Accepted::New(first) = accept_keys(&["id:1", "sha256:h"]) else {
        panic!("first delivery refused")
    };
    // A new id with the same body: the second key decides.
    match accept_keys(&["id:2", "sha256:h"]) {
        Accepted::Duplicate(id) => assert_eq!(id, first.meta.id),
        other => panic!("{other:?}"),
    }
    // `id:2` was claimed and then given back with the withdrawn copy.
    assert!(matches!(accept_keys(&["id:2"]), Accepted::New(_)));
    assert!(matches!(accept_keys(&["id:1"]), Accepted::Duplicate(_)));
    assert_eq!(inbox.pending().unwrap().len(), 2);
    // Both keys of the first are swept with it.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(inbox.sweep_dedup(Duration::from_millis(10)).unwrap(), 3);
}

#[test]
fn a_duplicate_writes_nothing() {
    let inbox = inbox();
    let Accepted::New(first) = accept(&inbox, "k", Duration::from_secs(60)) else {
        panic!("first delivery refused")
    };
    for _ in 0..3 {
        assert!(matches!(
            accept(&inbox, "k", Duration::from_secs(60)),
            Accepted::Duplicate(id) if id == first.meta.id
        ));
    }
    // No event was written and withdrawn: the next one takes the next number.
    let Accepted::New(next) = accept(&inbox, "other", Duration::from_secs(60)) else {
        panic!("second delivery refused")
    };
    assert_eq!(next.seq, first.seq + 1);
    assert_eq!(inbox.pending().unwrap().len(), 2);
}

#[test]
fn events_survive_a_reopen_with_body_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let inbox = Inbox::open(store.clone(), FlushPolicy::Group).unwrap();
        let mut headers = BTreeMap::new();
        headers.insert("x-a".into(), "1".into());
        let Accepted::New(ev) = inbox
            .accept("p", &["k"], Duration::from_secs(1), headers, b"{\"b\":\n2}")
            .unwrap()
        else {
            panic!()
        };
        id = ev.meta.id.clone();
        store.flush().unwrap();
    }
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let inbox = Inbox::open(store, FlushPolicy::Group).unwrap();
    let pending = inbox.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].meta.id, id);
    assert_eq!(&*pending[0].body, b"{\"b\":\n2}");
    assert_eq!(pending[0].meta.headers["x-a"], "1");
    assert_eq!(parse_event_id(&id), Some(pending[0].seq));
}

#[test]
fn dead_letters_retry_and_drop() {
    let inbox = inbox();
    let Accepted::New(ev) = accept(&inbox, "k", Duration::from_secs(60)) else {
        panic!()
    };
    let trail = super::retention::tests::trail_of(&ev, "dead_lettered");
    let letter = DeadLetter {
        event: ev.meta.clone(),
        body: serde_json::json!({"a": 1}),
        reason: "boom".into(),
        version: "v1".into(),
        dead_at: now_rfc3339(),
    };
    inbox.dead_letter(&ev, &trail, &letter).unwrap();
    // Written again (a crash before the inbox entry went): still one letter.
    inbox.dead_letter(&ev, &trail, &letter).unwrap();
    assert_eq!(inbox.dead_letter_count(), 1);
    assert_eq!(inbox.pending().unwrap().len(), 0);
    assert_eq!(inbox.dead_letters(None, 10).unwrap().len(), 1);
    assert_eq!(
        inbox.trail(&ev.meta.id).unwrap().unwrap().status,
        "dead_lettered"
    );
    let back = inbox
        .retry_dead_letter(&ev.meta.id, false)
        .unwrap()
        .unwrap();
    assert_eq!(&*back.body, br#"{"a":1}"#);
    assert_eq!(inbox.pending().unwrap().len(), 1);
    assert_eq!(inbox.dead_letter_count(), 0);
    assert!(!inbox.drop_dead_letter(&ev.meta.id).unwrap());
    assert!(inbox
        .retry_dead_letter("evt_nonsense", false)
        .unwrap()
        .is_none());
}

/// The event ids of a page of trails, in order.
pub(super) fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// A trail with nothing in it but its id, pipeline and status: what these tests and
/// retention's store.
pub(super) fn bare_trail(event_id: String, pipeline: &str, status: &str) -> Trail {
    Trail {
        event_id,
        pipeline: pipeline.into(),
        version: "v".into(),
        received_at: now_rfc3339(),
        finished_at: now_rfc3339(),
        status: status.into(),
        attempts: 1,
        steps: Vec::new(),
        actions: Vec::new(),
        errors: Vec::new(),
        flow_us: 0,
        total_ms: 0,
        compensations: Vec::new(),
        keys: Default::default(),
        tenant: None,
        explanation: None,
    }
}

fn stored_trail(seq: u64, pipeline: &str) -> Trail {
    let status = if seq % 3 == 0 { "skipped" } else { "processed" };
    bare_trail(event_id(seq), pipeline, status)
}

#[test]
fn the_tenant_filter_keeps_that_tenants_trails_and_a_key_search_applies_it() {
    let inbox = inbox();
    for seq in 0..6 {
        let mut trail = stored_trail(seq, "p");
        trail.tenant = Some(if seq % 2 == 0 { "north" } else { "south" }.into());
        trail.keys.insert("sku".into(), "OAK-1".into());
        inbox.put_trail(seq, &trail).unwrap();
    }
    let north = TrailFilter {
        tenant: Some("north"),
        ..TrailFilter::default()
    };
    let listed = inbox.trail_page(&north, None, 10, 100).unwrap();
    assert_eq!(page_ids(&listed), [4, 2, 0].map(event_id));
    let by_key = inbox
        .key_page(("sku", "OAK-1"), &north, None, 10, 100)
        .unwrap();
    assert_eq!(page_ids(&by_key), [4, 2, 0].map(event_id));
    let nobody = TrailFilter {
        tenant: Some("west"),
        ..TrailFilter::default()
    };
    assert!(page_ids(&inbox.trail_page(&nobody, None, 10, 100).unwrap()).is_empty());
}

#[test]
fn trail_pages_go_newest_first_and_stop_at_the_scan_bound_with_a_cursor() {
    let inbox = inbox();
    for seq in 0..10 {
        let pipeline = if seq % 2 == 0 { "a" } else { "b" };
        inbox.put_trail(seq, &stored_trail(seq, pipeline)).unwrap();
    }
    let only_a = TrailFilter {
        pipeline: Some("a"),
        outcome: None,
        tenant: None,
        ..Default::default()
    };
    // Four trails read (9, 8, 7, 6): two kept, and where to go on from.
    let page = inbox.trail_page(&only_a, None, 100, 4).unwrap();
    assert_eq!(page_ids(&page), [event_id(8), event_id(6)]);
    assert_eq!(page["next"], event_id(6).as_str());
    assert_eq!(page["scanned"], 4);
    let mut all = page_ids(&page);
    let mut cursor = page["next"].as_str().map(String::from);
    while let Some(c) = cursor {
        let page = inbox.trail_page(&only_a, Some(&c), 100, 4).unwrap();
        all.extend(page_ids(&page));
        cursor = page["next"].as_str().map(String::from);
    }
    assert_eq!(all, [8, 6, 4, 2, 0].map(event_id));

    // A full page stops at `limit`; its `next` is the last item.
    let skipped = TrailFilter {
        pipeline: None,
        outcome: Some("skipped"),
        tenant: None,
        ..Default::default()
    };
    let page = inbox.trail_page(&skipped, None, 2, 1000).unwrap();
    assert_eq!(page_ids(&page), [event_id(9), event_id(6)]);
    assert_eq!(page["next"], event_id(6).as_str());
    let page = inbox
        .trail_page(&skipped, Some(&event_id(6)), 2, 1000)
        .unwrap();
    assert_eq!(page_ids(&page), [event_id(3), event_id(0)]);
    // Nothing older than event 0: the last page says so.
    let page = inbox
        .trail_page(&skipped, Some(&event_id(0)), 2, 1000)
        .unwrap();
    assert_eq!(page["items"], serde_json::json!([]));
    assert_eq!(page["next"], Value::Null);
}

#[test]
fn a_store_reopened_under_the_inbox_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let inbox = Inbox::open(store.clone(), FlushPolicy::Group).unwrap();
    let window = Duration::from_secs(60);
    let events: Vec<StoredEvent> = (0..4)
        .map(|n| match accept(&inbox, &format!("k{n}"), window) {
            Accepted::New(ev) => ev,
            other => panic!("{other:?}"),
        })
        .collect();
    let done = &events[0];
    inbox
        .finish(done, &super::retention::tests::trail_of(done, "processed"))
        .unwrap();
    assert!(store.reopen().unwrap());
    // Pending events, trails, dedup keys and the counters are as they were.
    let pending: Vec<u64> = inbox.pending().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(
        pending,
        events[1..].iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert!(inbox.trail(&done.meta.id).unwrap().is_some());
    assert!(matches!(accept(&inbox, "k0", window), Accepted::Duplicate(id) if id == done.meta.id));
    assert_eq!(inbox.audit().unwrap(), inbox.tally());
    // And the inbox keeps working on the reopened store: a new event, a finish, a retention
    // sweep.
    let Accepted::New(new) = accept(&inbox, "k9", window) else {
        panic!("a new key refused after the reopen")
    };
    assert!(new.seq > events[3].seq);
    inbox
        .finish(
            &events[1],
            &super::retention::tests::trail_of(&events[1], "processed"),
        )
        .unwrap();
    assert_eq!(
        inbox
            .sweep_trails(Duration::from_secs(3600), u64::MAX)
            .unwrap(),
        0
    );
    assert_eq!(inbox.pending().unwrap().len(), 3);
    assert_eq!(inbox.audit().unwrap(), inbox.tally());
}
