use super::*;
use std::collections::BTreeMap;

fn config(v: Value) -> RefreshConfig {
    serde_json::from_value(v).unwrap()
}

#[test]
fn shopee_token_request_sends_ids_as_numbers() {
    let values: BTreeMap<String, String> = [("partner_id", "2001887"), ("shop_id", "14701711")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let c = Compiled::compile(
        &config(json!({
            "path": "/api/v2/auth/access_token/get",
            "refresh_token": "r0",
            "sign": {"string": "{partner_id}{path}{timestamp}"},
            "body": {"refresh_token": "{refresh_token}", "partner_id": "{partner_id}", "shop_id": "{shop_id}"},
            "answer": {"access_token": "$.access_token", "refresh_token": "$.refresh_token", "expires_in": "$.expire_in"}
        })),
        "https://partner.shopeemobile.com/",
        &values,
    )
    .unwrap();
    assert_eq!(
        c.request.url,
        "https://partner.shopeemobile.com/api/v2/auth/access_token/get"
    );
    let (query, body) = c.request.render("r1");
    assert!(query.is_empty());
    assert_eq!(
        body.unwrap(),
        json!({"refresh_token": "r1", "partner_id": 2001887, "shop_id": 14701711})
    );
}

use crate::state::MemoryStore;
use std::sync::Mutex;

/// A token endpoint in memory: each refresh with the current refresh token hands out
/// `a<n>`/`r<n>` living `life` seconds; any other refresh token is refused.
struct Endpoint {
    current: Mutex<(u32, String)>,
    asked: Mutex<Vec<String>>,
    life: i64,
}

impl Endpoint {
    fn new(first: &str, life: i64) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            current: Mutex::new((0, first.to_string())),
            asked: Mutex::default(),
            life,
        })
    }

    async fn exchange(&self, refresh: String) -> Result<Answer, CallError> {
        self.asked.lock().unwrap().push(refresh.clone());
        let mut current = self.current.lock().unwrap();
        let (status, body) = if refresh == current.1 {
            current.0 += 1;
            current.1 = format!("r{}", current.0);
            let n = current.0;
            (
                reqwest::StatusCode::OK,
                json!({"access_token": format!("a{n}"), "refresh_token": format!("r{n}"), "expires_in": self.life}),
            )
        } else {
            (
                reqwest::StatusCode::BAD_REQUEST,
                json!({"error": "used refresh token"}),
            )
        };
        Ok(Answer {
            status,
            retry_after: None,
            body,
        })
    }
}

fn rotating(first: &str, state: &Arc<MemoryStore>) -> Rotating {
    let spec = Compiled::compile(
        &config(json!({
            "path": "/token", "refresh_token": first,
            "query": {"refresh_token": "{refresh_token}"},
            "answer": {"access_token": "$.access_token", "refresh_token": "$.refresh_token", "expires_in": "$.expires_in"}
        })),
        "https://x",
        &BTreeMap::new(),
    )
    .unwrap();
    let state: Arc<dyn StateStore> = state.clone();
    Rotating::new("shop", spec, Some(state))
}

/// A refusal renews once for a burst of callers; a second instance over the same state
/// (a restart) goes on from the newest refresh token; a new configured refresh token (the
/// shop authorised again) replaces the stored pair.
#[tokio::test]
async fn pairs_rotate_once_per_refusal_and_survive_a_restart() {
    let state = Arc::new(MemoryStore::new());
    let endpoint = Endpoint::new("r0", 3600);
    let exchange = |r: String| {
        let e = endpoint.clone();
        async move { e.exchange(r).await }
    };
    let tokens = rotating("r0", &state);
    let first = tokens.pair(&exchange).await.unwrap();
    assert_eq!(first.access_token, "a1");
    assert_eq!(tokens.pair(&exchange).await.unwrap().access_token, "a1");
    let (x, y) = tokio::join!(
        tokens.after_refusal(&first, &exchange),
        tokens.after_refusal(&first, &exchange)
    );
    assert_eq!(
        (
            x.unwrap().access_token.as_str(),
            y.unwrap().access_token.as_str()
        ),
        ("a2", "a2")
    );
    assert_eq!(*endpoint.asked.lock().unwrap(), ["r0", "r1"]);

    // A restart: the stored pair is still fresh, so no refresh at all.
    let restarted = rotating("r0", &state);
    assert_eq!(restarted.pair(&exchange).await.unwrap().access_token, "a2");
    // Refused: the next refresh uses the stored r2, not the configured r0.
    let stale = restarted.pair(&exchange).await.unwrap();
    assert_eq!(
        restarted
            .after_refusal(&stale, &exchange)
            .await
            .unwrap()
            .access_token,
        "a3"
    );
    assert_eq!(*endpoint.asked.lock().unwrap(), ["r0", "r1", "r2"]);

    // Authorised again: the new configured token wins over the stored pair.
    *endpoint.current.lock().unwrap() = (10, "fresh".into());
    let again = rotating("fresh", &state);
    assert_eq!(again.pair(&exchange).await.unwrap().access_token, "a11");

    // A used refresh token is a permanent error that says what to do.
    let old = rotating("r0", &state);
    let e = old.pair(&exchange).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("connector `shop`"), "{e}");
    assert!(e.to_string().contains("authorise the shop again"), "{e}");
}

#[test]
fn mistakes_name_their_key() {
    let bad = |v: Value| {
        Compiled::compile(&config(v), "https://x", &BTreeMap::new())
            .err()
            .unwrap()
    };
    let answer = json!({"access_token": "$.a", "refresh_token": "$.r"});
    let e = bad(
        json!({"path": "/t", "refresh_token": "r", "query": {"x": "{nope}"}, "answer": answer}),
    );
    assert_eq!(e.0, "query");
    let e = bad(json!({"path": "t", "refresh_token": "r", "answer": answer}));
    assert_eq!(e.0, "path");
    let e = bad(
        json!({"path": "/t", "refresh_token": "r", "answer": {"access_token": "$[", "refresh_token": "$.r"}}),
    );
    assert_eq!(e.0, "answer");
    let e = bad(
        json!({"path": "/t", "method": "GET", "refresh_token": "r", "body": {"a": "b"}, "answer": answer}),
    );
    assert_eq!(e.0, "body");
}
