//! Customer order history: lifetime value, order count, first and last order date.
//!
//! Amounts are exact decimals (never floats) and are stored as strings so that no JSON layer
//! can round them. Recording is idempotent per (customer, order id): a webhook delivered twice
//! or an event replayed after a crash does not count the order twice. Dates are kept as
//! `YYYY-MM-DD`; a datetime argument counts on the date it is written with.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{escape, StateError, StateStore};

/// What is known about one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSummary {
    pub lifetime_value: Decimal,
    pub orders: i64,
    pub first_order: String,
    pub last_order: String,
}

impl CustomerSummary {
    /// The stored form (lifetime value as a decimal string).
    pub fn to_json(&self) -> Value {
        json!({
            "lifetime_value": self.lifetime_value.to_string(),
            "orders": self.orders,
            "first_order": self.first_order,
            "last_order": self.last_order,
        })
    }

    fn from_json(key: &str, v: &Value) -> Result<CustomerSummary, StateError> {
        let corrupt = |message: &str| StateError::Corrupt {
            key: key.to_string(),
            message: message.to_string(),
        };
        let lv = v
            .get("lifetime_value")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt("`lifetime_value` is not a string"))?;
        let lifetime_value = Decimal::from_str_exact(lv)
            .map_err(|e| corrupt(&format!("`lifetime_value` {lv:?}: {e}")))?;
        let orders = v
            .get("orders")
            .and_then(Value::as_i64)
            .ok_or_else(|| corrupt("`orders` is not an integer"))?;
        let date = |field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| corrupt(&format!("`{field}` is not a string")))
        };
        Ok(CustomerSummary {
            lifetime_value,
            orders,
            first_order: date("first_order")?,
            last_order: date("last_order")?,
        })
    }
}

fn customer_key(customer_id: &str) -> String {
    format!("customer/{}", escape(customer_id))
}

fn order_key(customer_id: &str, order_id: &str) -> String {
    format!(
        "customer-order/{}/{}",
        escape(customer_id),
        escape(order_id)
    )
}

/// Count an order for a customer, once per order id, and return the customer's summary.
///
/// `date` is an ISO 8601 date or datetime; the summary keeps its date part.
pub fn record_order(
    store: &dyn StateStore,
    customer_id: &str,
    order_id: &str,
    amount: Decimal,
    date: &str,
) -> Result<CustomerSummary, StateError> {
    let day = super::date::parse_day(date)
        .map(super::date::format_day)
        .map_err(|e| StateError::Invalid(format!("record_order: {e}")))?;
    let ckey = customer_key(customer_id);
    let okey = order_key(customer_id, order_id);
    let keys = [ckey.clone(), okey];
    let answer = store.update(&keys, &mut |current| {
        let summary = match &current[0] {
            Some(v) => Some(CustomerSummary::from_json(&ckey, v)?),
            None => None,
        };
        if current[1].is_some() {
            // Already counted: answer with the summary as it stands, write nothing new.
            let summary = summary.ok_or_else(|| StateError::Corrupt {
                key: ckey.clone(),
                message: "order recorded but customer missing".into(),
            })?;
            return Ok((
                vec![current[0].clone(), current[1].clone()],
                summary.to_json(),
            ));
        }
        let next = match summary {
            None => CustomerSummary {
                lifetime_value: amount,
                orders: 1,
                first_order: day.clone(),
                last_order: day.clone(),
            },
            Some(s) => CustomerSummary {
                lifetime_value: s.lifetime_value.checked_add(amount).ok_or_else(|| {
                    StateError::Invalid(format!(
                        "record_order: lifetime value of `{customer_id}` overflows"
                    ))
                })?,
                orders: s.orders.saturating_add(1),
                // ISO dates compare correctly as strings.
                first_order: s.first_order.min(day.clone()),
                last_order: s.last_order.max(day.clone()),
            },
        };
        let marker = json!({"amount": amount.to_string(), "date": day});
        let stored = next.to_json();
        Ok((vec![Some(stored.clone()), Some(marker)], stored))
    })?;
    CustomerSummary::from_json(&ckey, &answer)
}

/// A correction by hand of a customer's summary: each field given replaces the stored one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correction {
    pub lifetime_value: Option<Decimal>,
    pub orders: Option<i64>,
    /// `YYYY-MM-DD` (or a datetime, kept as its date).
    pub first_order: Option<String>,
    pub last_order: Option<String>,
}

/// Corrects a customer's summary (a refund the shop did not send, a merged account), in one
/// update; a customer with nothing recorded starts from zero orders, dated `today`. The
/// orders already counted stay counted: a redelivered one is still not counted twice.
pub fn correct(
    store: &dyn StateStore,
    customer_id: &str,
    fix: &Correction,
    today: &str,
) -> Result<CustomerSummary, StateError> {
    let day = |what: &str, s: &str| {
        super::date::parse_day(s)
            .map(super::date::format_day)
            .map_err(|e| StateError::Invalid(format!("customer {what}: {e}")))
    };
    let first = fix
        .first_order
        .as_deref()
        .map(|s| day("first order", s))
        .transpose()?;
    let last = fix
        .last_order
        .as_deref()
        .map(|s| day("last order", s))
        .transpose()?;
    let today = day("date", today)?;
    if fix.lifetime_value.is_some_and(|v| v.is_sign_negative()) {
        return Err(StateError::Invalid(
            "a customer's lifetime value cannot be negative".into(),
        ));
    }
    if fix.orders.is_some_and(|n| n < 0) {
        return Err(StateError::Invalid(
            "a customer's order count cannot be negative".into(),
        ));
    }
    let key = customer_key(customer_id);
    let answer = store.update(std::slice::from_ref(&key), &mut |current| {
        let was = match &current[0] {
            Some(v) => CustomerSummary::from_json(&key, v)?,
            None => CustomerSummary {
                lifetime_value: Decimal::ZERO,
                orders: 0,
                first_order: today.clone(),
                last_order: today.clone(),
            },
        };
        let next = CustomerSummary {
            lifetime_value: fix.lifetime_value.unwrap_or(was.lifetime_value),
            orders: fix.orders.unwrap_or(was.orders),
            first_order: first.clone().unwrap_or(was.first_order),
            last_order: last.clone().unwrap_or(was.last_order),
        };
        if next.first_order > next.last_order {
            return Err(StateError::Invalid(format!(
                "customer {customer_id}: first order {} is after last order {}",
                next.first_order, next.last_order
            )));
        }
        let stored = next.to_json();
        Ok((vec![Some(stored.clone())], stored))
    })?;
    CustomerSummary::from_json(&key, &answer)
}

/// The customer's summary, or None for a customer with no recorded order.
pub fn get(
    store: &dyn StateStore,
    customer_id: &str,
) -> Result<Option<CustomerSummary>, StateError> {
    let key = customer_key(customer_id);
    match store.get(&key)? {
        Some(v) => Ok(Some(CustomerSummary::from_json(&key, &v)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn lifetime_value_is_exact_and_orders_count_once() {
        let store = MemoryStore::new();
        record_order(&store, "c-42", "100", d("19.99"), "2026-01-05").unwrap();
        record_order(&store, "c-42", "101", d("0.10"), "2026-01-02T10:00:00Z").unwrap();
        let s = record_order(&store, "c-42", "102", d("0.20"), "2026-02-01").unwrap();
        assert_eq!(s.lifetime_value.to_string(), "20.29");
        assert_eq!(s.orders, 3);
        assert_eq!(s.first_order, "2026-01-02");
        assert_eq!(s.last_order, "2026-02-01");

        // The same order again changes nothing.
        let again = record_order(&store, "c-42", "101", d("0.10"), "2026-01-02").unwrap();
        assert_eq!(again, s);
        assert_eq!(get(&store, "c-42").unwrap(), Some(s.clone()));
        assert_eq!(
            store.get("customer/c-42").unwrap().unwrap()["lifetime_value"],
            "20.29"
        );

        // 0.1 + 0.2 is 0.3 in a lifetime value.
        record_order(&store, "c-7", "1", d("0.1"), "2026-01-01").unwrap();
        let s = record_order(&store, "c-7", "2", d("0.2"), "2026-01-01").unwrap();
        assert_eq!(s.lifetime_value, d("0.3"));

        assert_eq!(get(&store, "nobody").unwrap(), None);
    }

    #[test]
    fn order_ids_are_per_customer_and_ids_are_escaped() {
        let store = MemoryStore::new();
        record_order(&store, "a", "1", d("1"), "2026-01-01").unwrap();
        let b = record_order(&store, "b", "1", d("2"), "2026-01-01").unwrap();
        assert_eq!(b.orders, 1);
        let slash = record_order(&store, "a/x", "1", d("3"), "2026-01-01").unwrap();
        assert_eq!(slash.orders, 1);
        assert_eq!(get(&store, "a").unwrap().unwrap().orders, 1);
    }

    #[test]
    fn a_correction_replaces_the_fields_given_and_keeps_counted_orders() {
        let store = MemoryStore::new();
        record_order(&store, "c", "1", d("10"), "2026-01-05").unwrap();
        let fix = Correction {
            lifetime_value: Some(d("4.50")),
            ..Correction::default()
        };
        let s = correct(&store, "c", &fix, "2026-03-01").unwrap();
        assert_eq!((s.lifetime_value, s.orders), (d("4.50"), 1));
        assert_eq!(s.first_order, "2026-01-05");
        // The order counted before is still not counted again.
        let again = record_order(&store, "c", "1", d("10"), "2026-01-05").unwrap();
        assert_eq!(again.lifetime_value, d("4.50"));
        // A new customer starts today.
        let fresh = Correction {
            orders: Some(3),
            ..Correction::default()
        };
        let s = correct(&store, "new", &fresh, "2026-03-01T10:00:00Z").unwrap();
        assert_eq!((s.orders, s.first_order.as_str()), (3, "2026-03-01"));
        let backwards = Correction {
            first_order: Some("2026-04-01".into()),
            ..Correction::default()
        };
        assert!(correct(&store, "new", &backwards, "2026-03-01").is_err());
        let negative = Correction {
            lifetime_value: Some(d("-1")),
            ..Correction::default()
        };
        assert!(correct(&store, "new", &negative, "2026-03-01").is_err());
        assert_eq!(get(&store, "new").unwrap().unwrap().orders, 3);
    }

    #[test]
    fn bad_date_is_an_error_and_writes_nothing() {
        let store = MemoryStore::new();
        let err = record_order(&store, "c", "1", d("1"), "yesterday").unwrap_err();
        assert!(matches!(err, StateError::Invalid(_)), "{err}");
        assert_eq!(get(&store, "c").unwrap(), None);
    }
}
