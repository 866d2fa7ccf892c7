//! The scope compiled code runs in: which context names the code refers to ([`Uses`], from its
//! AST), and building `record`, `event` and the state handles as Rhai values for one evaluation,
//! only those the code names. It must not compile or run code (that is `Rules`, `Script` and
//! `Expr`), nor keep anything between evaluations.

use std::sync::Arc;

use rhai::{Dynamic, ImmutableString, Map, Scope, AST};
use serde_json::Value;

use super::{convert, handles, Ctx, EventInfo, RunError};
use crate::projection::Need;

/// Which context names compiled code refers to; the scope gets only these.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Uses {
    pub(super) event: bool,
    /// `event.body` (or `event` whole) is read: converting the body is the costly part.
    pub(super) event_body: bool,
    pub(super) customers: bool,
    pub(super) stock: bool,
    pub(super) kv: bool,
    pub(super) value: bool,
}

impl Uses {
    pub(super) fn of(ast: &AST, event_body: bool) -> Uses {
        let mut uses = Uses {
            event_body,
            ..Uses::default()
        };
        // Over-approximates (a local variable named `event` counts), which only costs building
        // a value that is not read.
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            if let Some(rhai::ASTNode::Expr(rhai::Expr::Variable(v, ..))) = path.last() {
                match v.1.as_str() {
                    "event" => uses.event = true,
                    "customers" => uses.customers = true,
                    "stock" => uses.stock = true,
                    "kv" => uses.kv = true,
                    "value" => uses.value = true,
                    _ => {}
                }
            }
            true
        });
        uses
    }

    pub(super) fn any_context(self) -> bool {
        self.event || self.customers || self.stock || self.kv
    }
}

/// Build the pipeline scope: `record` (a variable: what the code assigns flows on), then the
/// context constants the code names.
pub(super) fn pipeline_scope(
    record: Dynamic,
    uses: Uses,
    ctx: &Ctx,
) -> Result<Scope<'static>, RunError> {
    let mut scope = Scope::new();
    scope.push_dynamic("record", record);
    if uses.event {
        scope.push_constant_dynamic("event", event_dynamic(ctx.event, uses.event_body)?);
    }
    if uses.customers {
        scope.push_constant(
            "customers",
            handles::Customers {
                store: ctx.state.clone(),
            },
        );
    }
    if uses.stock {
        scope.push_constant(
            "stock",
            handles::Stock {
                store: ctx.state.clone(),
            },
        );
    }
    if uses.kv {
        scope.push_constant(
            "kv",
            handles::Kv {
                store: ctx.state.clone(),
                pipeline: ImmutableString::from(ctx.event.pipeline.as_str()),
            },
        );
    }
    Ok(scope)
}

/// Headers the engine sets on a webhook's events: one per path parameter, and the tenant.
pub const PARAM_HEADER_PREFIX: &str = "x-crossdock-param-";
pub const TENANT_HEADER: &str = "x-crossdock-tenant";

fn event_dynamic(event: &EventInfo, with_body: bool) -> Result<Dynamic, RunError> {
    // The webhook's path parameters and tenant travel as the engine's own headers (a sender's
    // `x-crossdock-*` are dropped at the door); scripts read them by name.
    let mut params = Map::new();
    let mut tenant = Dynamic::UNIT;
    for (k, v) in &event.headers {
        if let Some(name) = k.strip_prefix(PARAM_HEADER_PREFIX) {
            params.insert(name.into(), Dynamic::from(v.clone()));
        } else if k == TENANT_HEADER {
            tenant = Dynamic::from(v.clone());
        }
    }
    let headers = handles::Headers(Arc::new(event.headers.clone()));
    let body = if with_body {
        convert::json_to_dynamic(&event.body)
            .map_err(|e| RunError::plain(format!("event.body: {e}")))?
    } else {
        Dynamic::UNIT
    };
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(event.id.clone()));
    map.insert("pipeline".into(), Dynamic::from(event.pipeline.clone()));
    map.insert("headers".into(), Dynamic::from(headers));
    map.insert("params".into(), Dynamic::from_map(params));
    map.insert("tenant".into(), tenant);
    map.insert(
        "received_at".into(),
        Dynamic::from(event.received_at.clone()),
    );
    map.insert("body".into(), body);
    Ok(Dynamic::from_map(map))
}

fn record_dynamic(record: &Value) -> Result<Dynamic, RunError> {
    convert::json_to_dynamic(record).map_err(|e| RunError::plain(format!("record: {e}")))
}

/// `record` as code that reads only `reads` of it sees it.
pub(super) fn projected_record(record: &Value, reads: &Need) -> Result<Dynamic, RunError> {
    if reads.is_all() {
        return record_dynamic(record);
    }
    convert::json_to_dynamic_projected(record, reads)
        .map_err(|e| RunError::plain(format!("record: {e}")))
}

pub(super) fn to_json(d: &Dynamic, what: &str) -> Result<Value, RunError> {
    convert::dynamic_to_json(d).map_err(|e| RunError::plain(format!("{what}: {e}")))
}
