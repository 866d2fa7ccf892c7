//! `crossdock state`: inspect, seed and correct the project's state store, in the folder or,
//! while an engine serves the project, through its admin API (`remote.rs` decides which).
//! Writes are recorded in the audit log either way: here through `state::audit::Audited`, by
//! the engine when it makes them.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use super::args::StockCsv;
use super::remote::{locate, Admin, RemoteError, RemoteStore, Target};
use super::StateCommand;
use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};
use crate::state::audit::{self, Audited};
use crate::state::import::{read_stock_csv, StockRows};
use crate::state::{customers, kv, stock, MemoryStore, StateError, StateStore};

/// Why a `state` command failed; printed (redacted) as the command's last word.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    State(#[from] StateError),
    /// An argument or input file the command cannot use.
    #[error("{0}")]
    Input(String),
}

/// Levels sent to the engine per request (its admin API takes 1,000 at most).
const IMPORT_CHUNK: usize = 500;

pub fn run(
    project: &Path,
    url: Option<&str>,
    actor: Option<&str>,
    command: StateCommand,
    env: EnvLookup<'_>,
) -> ExitCode {
    let project = match load(project, env, CompileOptions::default()) {
        Ok((p, _)) => p,
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!(
                "{}; fix the project first (see `crossdock check`)",
                diags.summary()
            );
            return ExitCode::from(1);
        }
    };
    let writes = matches!(
        command,
        StateCommand::Stock { set: Some(_), .. }
            | StateCommand::Kv { set: Some(_), .. }
            | StateCommand::ImportStock { .. }
    ) || matches!(
        &command,
        StateCommand::Customer { fix, .. } if fix.any()
    );
    let target = match locate(&project, url, actor, env, writes) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}", project.redactor.redact(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    let actor = audit::actor_name(actor);
    let result = match &target {
        Target::Local(sled) => {
            let store: Arc<dyn StateStore> = match sled {
                Some(s) => s.clone(),
                None => Arc::new(MemoryStore::default()),
            };
            let done = local(store.as_ref(), &actor, command);
            // What was set is on disk before we say so.
            match (sled, writes) {
                (Some(s), true) => done.and_then(|text| Ok(s.flush().map(|_| text)?)),
                _ => done,
            }
        }
        Target::Engine(admin) => engine(admin, command),
    };
    match result {
        Ok(text) => {
            println!("{}", project.redactor.redact(&text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", project.redactor.redact(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

/// The command on a store this process holds: writes through the audit log.
fn local(store: &dyn StateStore, actor: &str, command: StateCommand) -> Result<String, Failure> {
    match command {
        StateCommand::Customer { id, fix } => {
            let fix = customers::Correction {
                lifetime_value: decimal(fix.lifetime_value.as_deref())?,
                orders: fix.orders,
                first_order: fix.first_order,
                last_order: fix.last_order,
            };
            if fix != customers::Correction::default() {
                let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
                let audited = Audited::new(store, actor, &format!("customer correct {id}"));
                customers::correct(&audited, &id, &fix, &today)?;
            }
            Ok(show_customer(store, &id)?)
        }
        StateCommand::Stock { sku, set } => {
            if let Some(n) = set {
                let audited = Audited::new(store, actor, &format!("stock set {sku} {n}"));
                stock::set(&audited, &sku, n)?;
            }
            Ok(show_stock(store, &sku)?)
        }
        StateCommand::Reservation { order_id } => Ok(show_reservation(store, &order_id)?),
        StateCommand::Kv { pipeline, key, set } => {
            if let Some(text) = set {
                let value = json_value(&text)?;
                let audited = Audited::new(store, actor, &format!("kv set {pipeline} {key}"));
                kv::set(&audited, &pipeline, &key, value)?;
            }
            Ok(show_kv(store, &pipeline, &key)?)
        }
        StateCommand::ImportStock { csv } => {
            let (levels, refused) = read_csv(&csv)?;
            for (sku, n) in &levels {
                let action = format!("stock import {sku} {n}");
                stock::set(&Audited::new(store, actor, &action), sku, *n)?;
            }
            Ok(imported(levels.len(), &csv.file, &refused))
        }
        StateCommand::Audit { limit } => {
            let (items, head) = audit::recent(store, limit, None)?;
            Ok(show_audit(&items, head))
        }
    }
}

/// The command through the running engine's admin API: it writes (and logs); reads go through
/// a [`RemoteStore`] made after the write, so they see it.
fn engine(admin: &Arc<Admin>, command: StateCommand) -> Result<String, Failure> {
    let reader = || RemoteStore::new(admin.clone());
    match command {
        StateCommand::Customer { id, fix } => {
            let mut body = serde_json::Map::new();
            if let Some(v) = decimal(fix.lifetime_value.as_deref())? {
                body.insert("lifetime_value".into(), json!(v.to_string()));
            }
            if let Some(n) = fix.orders {
                body.insert("orders".into(), json!(n));
            }
            if let Some(d) = fix.first_order {
                body.insert("first_order".into(), json!(d));
            }
            if let Some(d) = fix.last_order {
                body.insert("last_order".into(), json!(d));
            }
            if !body.is_empty() {
                let path = ["state", "customers", id.as_str()];
                admin.must(Method::PATCH, &path, Some(&Value::Object(body)))?;
            }
            Ok(show_customer(&reader(), &id)?)
        }
        StateCommand::Stock { sku, set } => {
            if let Some(n) = set {
                let path = ["state", "stock", sku.as_str()];
                admin.must(Method::PUT, &path, Some(&json!({ "on_hand": n })))?;
            }
            Ok(show_stock(&reader(), &sku)?)
        }
        StateCommand::Reservation { order_id } => Ok(show_reservation(&reader(), &order_id)?),
        StateCommand::Kv { pipeline, key, set } => {
            if let Some(text) = set {
                let value = json_value(&text)?;
                let path = ["state", "kv", pipeline.as_str(), key.as_str()];
                admin.must(Method::PUT, &path, Some(&json!({ "value": value })))?;
            }
            Ok(show_kv(&reader(), &pipeline, &key)?)
        }
        StateCommand::ImportStock { csv } => {
            let (levels, refused) = read_csv(&csv)?;
            for chunk in levels.chunks(IMPORT_CHUNK) {
                let levels: Vec<Value> = chunk
                    .iter()
                    .map(|(sku, n)| json!({ "sku": sku, "on_hand": n }))
                    .collect();
                let body = json!({ "levels": levels });
                admin.must(Method::POST, &["state", "stock"], Some(&body))?;
            }
            Ok(imported(levels.len(), &csv.file, &refused))
        }
        StateCommand::Audit { limit } => {
            let limit = limit.to_string();
            let page = admin
                .call(Method::GET, &["state", "audit"], &[("limit", &limit)], None)?
                .ok_or_else(|| {
                    Failure::Input("the engine has no audit log: is it an older crossdock?".into())
                })?;
            let items = page
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let head = page.get("head").and_then(Value::as_u64).unwrap_or(0);
            Ok(show_audit(&items, head))
        }
    }
}

fn decimal(text: Option<&str>) -> Result<Option<rust_decimal::Decimal>, Failure> {
    text.map(|t| {
        rust_decimal::Decimal::from_str_exact(t.trim())
            .map_err(|e| Failure::Input(format!("--lifetime-value {t:?}: {e}")))
    })
    .transpose()
}

fn json_value(text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::Input(format!(
            "--set {text:?} is not JSON ({e}); a string is written in quotes: '\"text\"'"
        ))
    })
}

fn read_csv(csv: &StockCsv) -> Result<StockRows, Failure> {
    let StockCsv {
        file,
        sku_column,
        qty_column,
        delimiter,
    } = csv;
    let delimiter = *delimiter;
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", file.display())))?;
    let delimiter = u8::try_from(delimiter).unwrap_or(b',');
    read_stock_csv(&bytes, delimiter, sku_column, qty_column)
        .map_err(|e| Failure::Input(e.to_string()))
}

fn imported(set: usize, file: &Path, refused: &[(usize, String)]) -> String {
    let mut out = format!("set {set} SKUs from {}", file.display());
    for (line, why) in refused {
        out.push_str(&format!("\n  line {line} skipped: {why}"));
    }
    out
}

fn show_customer(store: &dyn StateStore, id: &str) -> Result<String, StateError> {
    customers::get(store, id).map(|c| match c {
        Some(c) => format!(
            "customer {id}: lifetime value {}, {} orders, first {}, last {}",
            c.lifetime_value, c.orders, c.first_order, c.last_order
        ),
        None => format!("customer {id}: no orders recorded"),
    })
}

fn show_stock(store: &dyn StateStore, sku: &str) -> Result<String, StateError> {
    stock::level(store, sku).map(|level| match level {
        Some(l) => format!(
            "{sku}: on hand {}, reserved {}, available {}",
            l["on_hand"], l["reserved"], l["available"]
        ),
        None => format!("{sku}: unknown SKU (available 0)"),
    })
}

fn show_reservation(store: &dyn StateStore, order_id: &str) -> Result<String, StateError> {
    stock::reservation(store, order_id).map(|r| match r {
        Some(r) => format!("reservation {order_id}: {r}"),
        None => format!("reservation {order_id}: none"),
    })
}

fn show_kv(store: &dyn StateStore, pipeline: &str, key: &str) -> Result<String, StateError> {
    kv::get(store, pipeline, key).map(|v| match v {
        Some(v) => format!("{pipeline} {key}: {v}"),
        None => format!("{pipeline} {key}: none"),
    })
}

/// One entry a line (then a line per key it changed), newest first.
fn show_audit(items: &[Value], head: u64) -> String {
    let mut out = String::new();
    for e in items {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!(
            "#{}  {}  {}  {}\n",
            e.get("seq").and_then(Value::as_u64).unwrap_or(0),
            s("at"),
            s("actor"),
            s("action")
        ));
        for c in e
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let show = |k: &str| match c.get(k) {
                None | Some(Value::Null) => "(none)".to_string(),
                Some(v) => v.to_string(),
            };
            out.push_str(&format!(
                "    {}: {} → {}\n",
                c.get("key").and_then(Value::as_str).unwrap_or(""),
                show("before"),
                show("after")
            ));
        }
    }
    let kept = head.min(audit::KEEP);
    out.push_str(&format!(
        "{} of {kept} entries kept ({head} written)",
        items.len()
    ));
    out
}
