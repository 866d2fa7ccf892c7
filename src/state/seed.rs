//! Seeding a store from a pipeline test case's `state:` document.
//!
//! ```json
//! {"stock": {"SKU-1": 10},
//!  "customers": {"c-42": {"orders": [{"order_id": "100", "amount": "19.99", "date": "2026-01-02"}]}},
//!  "kv": {"pipeline-name": {"k": 1}}}
//! ```
//!
//! Seeding goes through the same domain functions the scripts call, so a seeded customer is
//! exactly what recording those orders would have produced. Unknown keys are errors: a typo in
//! a test fixture must not silently seed nothing.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{customers, kv, stock, StateError, StateStore};

fn invalid(path: &str, message: impl std::fmt::Display) -> StateError {
    StateError::Invalid(format!("seed {path}: {message}"))
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, StateError> {
    v.as_object()
        .ok_or_else(|| invalid(path, format!("expected an object, got {v}")))
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), StateError> {
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(
                path,
                format!("unknown key `{k}`, expected one of: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A string or an integer, as an id.
fn id(v: &Value, path: &str) -> Result<String, StateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(invalid(
            path,
            format!("expected a string or integer id, got {other}"),
        )),
    }
}

/// Write `seed` into `store`. See the module docs for the document's shape.
pub fn seed(store: &dyn StateStore, seed: &Value) -> Result<(), StateError> {
    let top = object(seed, "")?;
    only_keys(top, &["stock", "customers", "kv"], "")?;

    if let Some(stock_doc) = top.get("stock") {
        for (sku, n) in object(stock_doc, "stock")? {
            let path = format!("stock.{sku}");
            let n = n
                .as_i64()
                .ok_or_else(|| invalid(&path, format!("expected an integer, got {n}")))?;
            stock::set(store, sku, n).map_err(|e| invalid(&path, e))?;
        }
    }

    if let Some(customers_doc) = top.get("customers") {
        for (cid, c) in object(customers_doc, "customers")? {
            let path = format!("customers.{cid}");
            let c = object(c, &path)?;
            only_keys(c, &["orders"], &path)?;
            let Some(orders) = c.get("orders") else {
                continue;
            };
            let orders = orders
                .as_array()
                .ok_or_else(|| invalid(&path, "`orders` must be a list"))?;
            for (i, order) in orders.iter().enumerate() {
                let path = format!("{path}.orders[{i}]");
                let o = object(order, &path)?;
                only_keys(o, &["order_id", "amount", "date"], &path)?;
                let field = |name: &str| {
                    o.get(name)
                        .ok_or_else(|| invalid(&path, format!("missing `{name}`")))
                };
                let order_id = id(field("order_id")?, &path)?;
                let amount = match field("amount")? {
                    Value::String(s) => Decimal::from_str_exact(s.trim()).ok(),
                    Value::Number(n) => Decimal::from_str_exact(&n.to_string()).ok(),
                    _ => None,
                }
                .ok_or_else(|| invalid(&path, "`amount` must be a decimal number or string"))?;
                let date = field("date")?
                    .as_str()
                    .ok_or_else(|| invalid(&path, "`date` must be a string"))?;
                customers::record_order(store, cid, &order_id, amount, date)
                    .map_err(|e| invalid(&path, e))?;
            }
        }
    }

    if let Some(kv_doc) = top.get("kv") {
        for (pipeline, entries) in object(kv_doc, "kv")? {
            let path = format!("kv.{pipeline}");
            for (k, v) in object(entries, &path)? {
                kv::set(store, pipeline, k, v.clone()).map_err(|e| invalid(&path, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use serde_json::json;

    #[test]
    fn seeds_stock_customers_and_kv() {
        let store = MemoryStore::new();
        seed(
            &store,
            &json!({
                "stock": {"SKU-1": 10},
                "customers": {"c-42": {"orders": [
                    {"order_id": "100", "amount": "19.99", "date": "2026-01-02"},
                    {"order_id": 101, "amount": 0.01, "date": "2026-01-03T08:00:00Z"}
                ]}},
                "kv": {"pipeline-name": {"k": 1}}
            }),
        )
        .unwrap();
        assert_eq!(stock::available(&store, "SKU-1").unwrap(), 10);
        let c = customers::get(&store, "c-42").unwrap().unwrap();
        assert_eq!(c.lifetime_value.to_string(), "20.00");
        assert_eq!(c.orders, 2);
        assert_eq!(c.last_order, "2026-01-03");
        assert_eq!(
            kv::get(&store, "pipeline-name", "k").unwrap(),
            Some(json!(1))
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let store = MemoryStore::new();
        for (doc, needle) in [
            (json!({"stocks": {}}), "unknown key `stocks`"),
            (json!({"stock": {"A": "ten"}}), "stock.A"),
            (json!({"stock": {"A": -1}}), "negative"),
            (
                json!({"customers": {"c": {"order": []}}}),
                "unknown key `order`",
            ),
            (
                json!({"customers": {"c": {"orders": [{"order_id": "1", "amount": "12,50 EUR", "date": "2026-01-01"}]}}}),
                "amount",
            ),
            (
                json!({"customers": {"c": {"orders": [{"order_id": "1", "amount": "1"}]}}}),
                "missing `date`",
            ),
            (json!([]), "expected an object"),
        ] {
            let err = seed(&store, &doc).unwrap_err().to_string();
            assert!(err.contains(needle), "{doc}: {err}");
        }
    }
}
