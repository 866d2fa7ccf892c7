//! `crossdock state`: inspect and seed the project's state store.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};
use crate::state::import::import_stock_csv;
use crate::state::{customers, stock, MemoryStore, SledStore, StateStore};

use super::StateCommand;

pub fn run(project: &Path, command: StateCommand, env: EnvLookup<'_>) -> ExitCode {
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
    let path = project.root.join(&project.config.state.path);
    let writes = matches!(
        command,
        StateCommand::Stock { set: Some(_), .. } | StateCommand::ImportStock { .. }
    );
    // Reading never creates a store: a project that has none yet reads as empty.
    let sled = if !writes && !path.exists() {
        None
    } else {
        match SledStore::open(&path) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                eprintln!("cannot open the state at {}: {e}", path.display());
                // sled lets one process in at a time: most often, the engine has it.
                eprintln!(
                    "  = help: if `crossdock run` is serving this project, read the state through \
its admin API (GET /api/state/customers/ID, /api/state/stock/SKU, /api/state/reservations/ORDER) \
or stop it first"
                );
                return ExitCode::from(1);
            }
        }
    };
    let store: Arc<dyn StateStore> = match &sled {
        Some(s) => s.clone(),
        None => Arc::new(MemoryStore::default()),
    };
    let result = match command {
        StateCommand::Customer { id } => customers::get(store.as_ref(), &id).map(|c| match c {
            Some(c) => format!(
                "customer {id}: lifetime value {}, {} orders, first {}, last {}",
                c.lifetime_value, c.orders, c.first_order, c.last_order
            ),
            None => format!("customer {id}: no orders recorded"),
        }),
        StateCommand::Stock { sku, set } => {
            let done = match set {
                Some(n) => stock::set(store.as_ref(), &sku, n).map(|_| ()),
                None => Ok(()),
            };
            done.and_then(|_| stock::level(store.as_ref(), &sku))
                .map(|level| match level {
                    Some(l) => format!(
                        "{sku}: on hand {}, reserved {}, available {}",
                        l["on_hand"], l["reserved"], l["available"]
                    ),
                    None => format!("{sku}: unknown SKU (available 0)"),
                })
        }
        StateCommand::Reservation { order_id } => stock::reservation(store.as_ref(), &order_id)
            .map(|r| match r {
                Some(r) => format!("reservation {order_id}: {r}"),
                None => format!("reservation {order_id}: none"),
            }),
        StateCommand::ImportStock {
            file,
            sku_column,
            qty_column,
            delimiter,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("cannot read {}: {e}", file.display());
                    return ExitCode::from(1);
                }
            };
            let delimiter = u8::try_from(delimiter).unwrap_or(b',');
            import_stock_csv(store.as_ref(), &bytes, delimiter, &sku_column, &qty_column).map(
                |report| {
                    let mut out = format!("set {} SKUs from {}", report.set, file.display());
                    for (line, why) in &report.refused {
                        out.push_str(&format!("\n  line {line} skipped: {why}"));
                    }
                    out
                },
            )
        }
    };
    // What was set is on disk before we say so.
    let result = match (&sled, writes) {
        (Some(s), true) => result.and_then(|text| s.flush().map(|_| text)),
        _ => result,
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
