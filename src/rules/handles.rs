//! The state handles scripts see as `customers`, `stock` and `kv`.
//!
//! Each handle is a small Rhai custom type holding the run's `StateStore` (and, for `kv`, the
//! pipeline name that namespaces it). Its methods convert Rhai arguments, call the domain logic
//! in `crate::state` and convert the answer back; they own no logic of their own, so scripts,
//! seeds and tests all go through the same code. State errors become script runtime errors
//! naming the method. Handles are pushed as constants: scripts use them, cannot replace them.

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, INT};

use super::convert::{dynamic_to_json, json_to_dynamic};
use super::functions::{describe, fail, to_decimal};
use crate::state::customers::CustomerSummary;
use crate::state::{customers, kv, stock, StateStore};

type FnResult<T> = Result<T, Box<EvalAltResult>>;

/// `customers` in scripts.
#[derive(Clone)]
pub(crate) struct Customers {
    pub(crate) store: Arc<dyn StateStore>,
}

/// `stock` in scripts.
#[derive(Clone)]
pub(crate) struct Stock {
    pub(crate) store: Arc<dyn StateStore>,
}

/// `kv` in scripts: the pipeline's own key-value namespace.
#[derive(Clone)]
pub(crate) struct Kv {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) pipeline: ImmutableString,
}

/// An id argument: a string, or an integer (order ids often arrive as numbers).
fn id(method: &str, what: &str, x: &Dynamic) -> FnResult<String> {
    if let Ok(s) = x.as_immutable_string_ref() {
        return Ok(s.to_string());
    }
    if let Ok(i) = x.as_int() {
        return Ok(i.to_string());
    }
    Err(fail(format!(
        "{method}: {what} must be a string or an integer, got {}",
        describe(x)
    )))
}

/// A quantity argument: an INT, or a decimal with no fraction (`2.0` from a JSON body).
fn quantity(method: &str, x: &Dynamic) -> FnResult<i64> {
    if let Ok(i) = x.as_int() {
        return Ok(i);
    }
    if let Ok(d) = x.as_decimal() {
        if d.fract().is_zero() {
            if let Ok(i) = i64::try_from(d) {
                return Ok(i);
            }
        }
    }
    Err(fail(format!(
        "{method}: quantity must be a whole number, got {}",
        describe(x)
    )))
}

fn state_err(method: &str) -> impl Fn(crate::state::StateError) -> Box<EvalAltResult> + '_ {
    move |e| fail(format!("{method}: {e}"))
}

fn summary(s: CustomerSummary) -> Dynamic {
    let mut map = Map::new();
    map.insert(
        "lifetime_value".into(),
        Dynamic::from_decimal(s.lifetime_value),
    );
    map.insert("orders".into(), Dynamic::from_int(s.orders));
    map.insert("first_order".into(), Dynamic::from(s.first_order));
    map.insert("last_order".into(), Dynamic::from(s.last_order));
    Dynamic::from_map(map)
}

fn record_order(
    c: &mut Customers,
    customer_id: Dynamic,
    order_id: Dynamic,
    amount: Dynamic,
    date: Dynamic,
) -> FnResult<Dynamic> {
    const M: &str = "customers.record_order";
    let customer_id = id(M, "customer id", &customer_id)?;
    let order_id = id(M, "order id", &order_id)?;
    let amount = to_decimal(&amount).map_err(|e| fail(format!("{M}: amount: {e}")))?;
    let date = date
        .as_immutable_string_ref()
        .map_err(|_| {
            fail(format!(
                "{M}: date must be a string, got {}",
                describe(&date)
            ))
        })?
        .to_string();
    customers::record_order(&*c.store, &customer_id, &order_id, amount, &date)
        .map(summary)
        .map_err(state_err(M))
}

fn customer_get(c: &mut Customers, customer_id: Dynamic) -> FnResult<Dynamic> {
    const M: &str = "customers.get";
    let customer_id = id(M, "customer id", &customer_id)?;
    Ok(customers::get(&*c.store, &customer_id)
        .map_err(state_err(M))?
        .map_or(Dynamic::UNIT, summary))
}

fn stock_set(s: &mut Stock, sku: Dynamic, on_hand: Dynamic) -> FnResult<()> {
    const M: &str = "stock.set";
    let sku = id(M, "sku", &sku)?;
    let on_hand = quantity(M, &on_hand)?;
    stock::set(&*s.store, &sku, on_hand).map_err(state_err(M))
}

fn stock_available(s: &mut Stock, sku: Dynamic) -> FnResult<INT> {
    const M: &str = "stock.available";
    let sku = id(M, "sku", &sku)?;
    stock::available(&*s.store, &sku).map_err(state_err(M))
}

fn stock_reserve(s: &mut Stock, order_id: Dynamic, items: Dynamic) -> FnResult<Dynamic> {
    const M: &str = "stock.reserve";
    let order_id = id(M, "order id", &order_id)?;
    let items = items.as_array_ref().map_err(|_| {
        fail(format!(
            "{M}: items must be an array like [#{{sku: \"A\", qty: 2}}], got {}",
            describe(&items)
        ))
    })?;
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let map = item.as_map_ref().map_err(|_| {
            fail(format!(
                "{M}: item {i} must be a map like #{{sku: \"A\", qty: 2}}, got {}",
                describe(item)
            ))
        })?;
        let field = |name: &str| {
            map.get(name)
                .filter(|v| !v.is_unit())
                .ok_or_else(|| fail(format!("{M}: item {i} has no `{name}`")))
        };
        let sku = id(M, "sku", field("sku")?)?;
        let qty = quantity(M, field("qty")?)?;
        list.push((sku, qty));
    }
    let answer = stock::reserve(&*s.store, &order_id, &list).map_err(state_err(M))?;
    json_to_dynamic(&answer.to_json()).map_err(|e| fail(format!("{M}: {e}")))
}

fn stock_release(s: &mut Stock, order_id: Dynamic) -> FnResult<bool> {
    const M: &str = "stock.release";
    let order_id = id(M, "order id", &order_id)?;
    stock::release(&*s.store, &order_id).map_err(state_err(M))
}

fn stock_commit(s: &mut Stock, order_id: Dynamic) -> FnResult<bool> {
    const M: &str = "stock.commit";
    let order_id = id(M, "order id", &order_id)?;
    stock::commit(&*s.store, &order_id).map_err(state_err(M))
}

fn kv_get(k: &mut Kv, key: Dynamic) -> FnResult<Dynamic> {
    const M: &str = "kv.get";
    let key = id(M, "key", &key)?;
    match kv::get(&*k.store, &k.pipeline, &key).map_err(state_err(M))? {
        Some(v) => json_to_dynamic(&v).map_err(|e| fail(format!("{M}: {e}"))),
        None => Ok(Dynamic::UNIT),
    }
}

fn kv_set(k: &mut Kv, key: Dynamic, value: Dynamic) -> FnResult<()> {
    const M: &str = "kv.set";
    let key = id(M, "key", &key)?;
    let value = dynamic_to_json(&value).map_err(|e| fail(format!("{M}: {e}")))?;
    kv::set(&*k.store, &k.pipeline, &key, value).map_err(state_err(M))
}

fn kv_incr_by(k: &mut Kv, key: Dynamic, by: INT) -> FnResult<INT> {
    const M: &str = "kv.incr";
    let key = id(M, "key", &key)?;
    kv::incr(&*k.store, &k.pipeline, &key, by).map_err(state_err(M))
}

/// `event.headers`: the request's headers, looked up by name without regard to case, as HTTP
/// names are (`event.headers["X-Shopify-Topic"]` and `["x-shopify-topic"]` are the same
/// header). A Rhai map would answer a name in another case with a quiet `()`. Names are kept in
/// lower case.
#[derive(Debug, Clone)]
pub struct Headers(pub Arc<std::collections::BTreeMap<String, String>>);

impl Headers {
    fn get(&self, name: &str) -> Dynamic {
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.0.get(&name.to_ascii_lowercase())
        } else {
            self.0.get(name)
        };
        found.map_or(Dynamic::UNIT, |v| Dynamic::from(v.clone()))
    }

    /// As a JSON object, when a script keeps the headers in the record.
    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Register the handle types and their methods on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Customers>("Customers")
        .register_fn("record_order", record_order)
        .register_fn("get", customer_get)
        .register_fn("to_string", |_: &mut Customers| "customers".to_string());
    engine
        .register_type_with_name::<Stock>("Stock")
        .register_fn("set", stock_set)
        .register_fn("available", stock_available)
        .register_fn("reserve", stock_reserve)
        .register_fn("release", stock_release)
        .register_fn("commit", stock_commit)
        .register_fn("to_string", |_: &mut Stock| "stock".to_string());
    engine
        .register_type_with_name::<Kv>("Kv")
        .register_fn("get", kv_get)
        .register_fn("set", kv_set)
        .register_fn("incr", |k: &mut Kv, key: Dynamic| kv_incr_by(k, key, 1))
        .register_fn("incr", kv_incr_by)
        .register_fn("to_string", |_: &mut Kv| "kv".to_string());
    engine
        .register_type_with_name::<Headers>("Headers")
        .register_indexer_get(|h: &mut Headers, name: ImmutableString| h.get(&name))
        .register_fn("get", |h: &mut Headers, name: ImmutableString| h.get(&name))
        // `"x-topic" in event.headers`
        .register_fn("contains", |h: &mut Headers, name: ImmutableString| {
            !h.get(&name).is_unit()
        })
        .register_fn("keys", |h: &mut Headers| {
            h.0.keys()
                .map(|k| Dynamic::from(k.clone()))
                .collect::<rhai::Array>()
        })
        .register_fn("len", |h: &mut Headers| h.0.len() as INT)
        .register_fn("to_string", |h: &mut Headers| h.to_json().to_string());
}
