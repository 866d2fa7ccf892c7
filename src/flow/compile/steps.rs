//! A pipeline's steps, compiled into [`Step`]s with every reference checked, and which closing
//! `send`s may move their payload out of the record.

use super::connectors::check_connector_op;
use super::reads::{add_step_reads, NeedBuilder};
use super::{key, EventTenants, StepCx};
use crate::config::diag::{did_you_mean, Code};
use crate::config::model::{StepConfig, SwitchArmConfig};
use crate::config::span::PathSeg;
use crate::connectors::SendShape;
use crate::flow::{Arm, FieldPath, SendStep, SetValue, Step};

/// Compiles a list of steps. `need` is given for the pipeline's top-level steps, to learn what
/// they read of the body.
pub(super) fn compile_steps(
    cx: &mut StepCx<'_>,
    steps: &[serde_json::Value],
    base: &[PathSeg],
    mut need: Option<&mut NeedBuilder>,
) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    for (i, raw) in steps.iter().enumerate() {
        let mut path = base.to_vec();
        path.push(PathSeg::Index(i));
        // `undo:` sits beside any step's kind (`- script: reserve` / `  undo: [...]`).
        let (raw, undo) = split_undo(raw);
        let Some(step) = cx.section::<StepConfig>(&raw, &path) else {
            continue;
        };
        let label_path = crate::config::span::display_path(&path);
        let undo = undo.map(|list| compile_undo(cx, list, &[&path[..], &[key("undo")]].concat()));
        path.push(key(step.kind()));
        let compiled = compile_step(cx, &step, &path, &label_path);
        if let Some(need) = need.as_deref_mut() {
            add_step_reads(cx, &step, compiled.as_ref(), need);
            if undo.is_some() {
                // Undo steps run on the record as it was after the step: anything in it.
                need.all();
            }
        }
        match (compiled, undo) {
            (Some(step), Some(Some(undo))) => out.push(Step::Undoable {
                step: Box::new(step),
                at: label_path.into(),
                undo,
            }),
            (Some(step), None) => out.push(step),
            _ => {}
        }
    }
    out
}

/// The step without its `undo:` key, and that key's value.
fn split_undo(
    raw: &serde_json::Value,
) -> (
    std::borrow::Cow<'_, serde_json::Value>,
    Option<&serde_json::Value>,
) {
    match raw.as_object().and_then(|o| o.get("undo")) {
        Some(undo) => {
            let mut rest = raw.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("undo");
            }
            (std::borrow::Cow::Owned(rest), Some(undo))
        }
        None => (std::borrow::Cow::Borrowed(raw), None),
    }
}

/// A step's `undo:`: a non-empty list of steps.
fn compile_undo(
    cx: &mut StepCx<'_>,
    raw: &serde_json::Value,
    path: &[PathSeg],
) -> Option<Vec<Step>> {
    match raw.as_array() {
        Some(list) if !list.is_empty() => Some(compile_steps(cx, list, path, None)),
        _ => {
            cx.error_at(
                path,
                "`undo:` is a list of steps that undo this one's effects",
                Some("- script: stock-reserve\n    undo:\n      - script: stock-release".into()),
            );
            None
        }
    }
}

/// The most elements an `each` takes when it does not say `max:`.
const EACH_MAX: usize = 1000;

fn compile_each(
    cx: &mut StepCx<'_>,
    e: &crate::config::model::EachConfig,
    path: &[PathSeg],
    at: &str,
) -> Option<Step> {
    let mut ok = true;
    let items = plain_names(&e.items);
    if items.is_none() {
        cx.error_at(
            &[path, &[key("in")]].concat(),
            format!("`in: {}` must name one array by its field names", e.items),
            Some("in: $.order.lines".into()),
        );
        ok = false;
    }
    let mut field = |name: &str, text: &str| match FieldPath::parse(text) {
        Ok(p) => Some(p),
        Err(msg) => {
            cx.error_at(&[path, &[key(name)]].concat(), msg.to_string(), None);
            ok = false;
            None
        }
    };
    let item = field("as", e.item.as_deref().unwrap_or("item"));
    let into = e.into.as_deref().and_then(|t| field("into", t));
    if e.steps.is_empty() {
        cx.error_at(path, "an `each` needs `steps`", None);
        ok = false;
    }
    let steps = compile_steps(cx, &e.steps, &[path, &[key("steps")]].concat(), None);
    Some(Step::Each {
        label: format!("{at} (each {})", e.items).into(),
        items: items?.into(),
        item: item?,
        max: e.max.unwrap_or(EACH_MAX),
        into,
        steps,
    })
    .filter(|_| ok)
}

/// A flow's closing `send`s read a record that nothing changes or reads after them, so when
/// the caller does not want the final record (the runtime delivers actions and drops it),
/// their payloads can be moved out of it instead of copied: the copies were the largest
/// single cost of a flow in allocations. Only payloads named by a plain path (`$.account`,
/// `$.order.lines`) qualify, and only when no other closing send's payload contains or is
/// contained in theirs; one closing send of anything else (the whole record, a filter) keeps
/// every copy.
pub(super) fn mark_movable_payloads(steps: &mut [Step]) {
    let closing = steps
        .iter()
        .rev()
        .take_while(|s| matches!(s, Step::Send { .. }))
        .count();
    let start = steps.len() - closing;
    let mut paths = Vec::with_capacity(closing);
    for step in &steps[start..] {
        let Step::Send { send, .. } = step else {
            return;
        };
        let names = send.payload.as_ref().and_then(|p| plain_names(p.as_str()));
        match names {
            Some(names) => paths.push(names),
            None => return,
        }
    }
    let overlaps = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    for (i, step) in steps[start..].iter_mut().enumerate() {
        let alone = paths
            .iter()
            .enumerate()
            .all(|(j, other)| i == j || !overlaps(&paths[i], other));
        if let (Step::Send { send, .. }, true) = (step, alone) {
            send.movable = Some(paths[i].as_slice().into());
        }
    }
}

/// The object keys a JSONPath names from the root (`$.order.lines`), if it is only that.
fn plain_names(src: &str) -> Option<Vec<String>> {
    crate::projection::simple_path(src)?
        .into_iter()
        .map(|s| match s {
            crate::projection::PathStep::Name(n) => Some(n),
            crate::projection::PathStep::Elements => None,
        })
        .collect::<Option<Vec<String>>>()
        .filter(|names| !names.is_empty())
}

/// A connector built per tenant serves only events with a tenant of its own list: in a
/// pipeline whose source chooses none, or chooses from another list, every call through it
/// would fail at run time (or, were the ids shared, use another list's credentials), so it is
/// an error here, at the step that names it. Returns whether the connector can be used.
fn check_tenant(cx: &mut StepCx<'_>, at: &[PathSeg], connector: &str) -> bool {
    let Some(per_tenant) = cx.tenant_connectors.get(connector) else {
        return true;
    };
    let list = per_tenant.list.clone();
    let (message, help) = match &cx.event_tenants {
        EventTenants::Unknown => return true,
        EventTenants::Of(chosen) if *chosen == list => return true,
        EventTenants::None => (
            format!(
                "connector `{connector}` is built per tenant of list `{list}`, and this \
                 pipeline's events have no tenant"
            ),
            format!(
                "choose the tenant on the webhook (`tenants: {{ list: {list}, param: ... }}` or \
                 `from: ...`), or use a connector without `tenants:`"
            ),
        ),
        EventTenants::Of(chosen) => (
            format!(
                "connector `{connector}` is built per tenant of list `{list}`, and this \
                 pipeline's tenants are of list `{chosen}`"
            ),
            format!(
                "a step uses the event's tenant's own instance: choose the tenant from \
                 `{list}` on the webhook, or build the connector per tenant of `{chosen}`"
            ),
        ),
    };
    cx.error_at(at, message, Some(help));
    false
}

fn compile_step(
    cx: &mut StepCx<'_>,
    step: &StepConfig,
    path: &[PathSeg],
    at: &str,
) -> Option<Step> {
    match step {
        StepConfig::Map(m) => {
            let is_short = cx
                .file
                .doc
                .spans
                .get(path)
                .is_some_and(|s| s.style.is_some());
            let name_path = if is_short {
                path.to_vec()
            } else {
                [path, &[key("mapping")]].concat()
            };
            let mapping = match cx.mappings.get(&m.mapping) {
                Some(m) => m.clone(),
                None => {
                    let help = did_you_mean(&m.mapping, cx.mappings.keys().map(String::as_str))
                        .or_else(|| Some(format!("expected a file mappings/{}.yaml", m.mapping)));
                    cx.error_with(
                        Code::UnknownName,
                        &name_path,
                        format!("no mapping named `{}`", m.mapping),
                        help,
                    );
                    None
                }
            };
            let into = match &m.into {
                Some(into) => match FieldPath::parse(into) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        cx.error_at(&[path, &[key("into")]].concat(), e.to_string(), None);
                        return None;
                    }
                },
                None => None,
            };
            Some(Step::Map {
                label: format!("{at} (map {})", m.mapping).into(),
                mapping: mapping?,
                into,
            })
        }
        StepConfig::Script(name) => match cx.scripts.get(name) {
            Some(s) => {
                let script = s.clone()?;
                cx.reads_event_body |= script.reads_event_body();
                Some(Step::Script {
                    label: format!("{at} (script {name})").into(),
                    script,
                })
            }
            None => {
                let help = did_you_mean(name, cx.scripts.keys().map(String::as_str))
                    .or_else(|| Some(format!("expected a file scripts/{name}.rhai")));
                cx.error_with(
                    Code::UnknownName,
                    path,
                    format!("no script named `{name}`"),
                    help,
                );
                None
            }
        },
        StepConfig::Filter(src) => {
            let when = cx.expr(path, src)?;
            Some(Step::Filter {
                label: format!("{at} (filter)").into(),
                when,
            })
        }
        StepConfig::Switch(arms) => compile_switch(cx, arms, path, at),
        StepConfig::Each(e) => compile_each(cx, e, path, at),
        StepConfig::Set(fields) => {
            let (out, ok) = compile_values(cx, fields, path, true);
            ok.then(|| Step::Set {
                label: format!("{at} (set)").into(),
                fields: out,
            })
        }
        StepConfig::Fetch(f) => {
            check_connector_op(cx, &[path, &[key("from")]].concat(), &f.from, &f.op);
            check_tenant(cx, &[path, &[key("from")]].concat(), &f.from);
            let (params, mut ok) =
                compile_values(cx, &f.params, &[path, &[key("params")]].concat(), false);
            let into = match &f.into {
                Some(into) => match FieldPath::parse(into) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        cx.error_at(&[path, &[key("into")]].concat(), e.to_string(), None);
                        ok = false;
                        None
                    }
                },
                None => None,
            };
            ok.then(|| Step::Fetch {
                label: format!("{at} (fetch {} {})", f.from, f.op).into(),
                connector: f.from.clone(),
                op: f.op.clone(),
                params: params
                    .into_iter()
                    .map(|(p, v)| (p.to_string(), v))
                    .collect(),
                into,
            })
        }
        StepConfig::Send(s) => {
            let label = format!(
                "{at} (send {} {}{})",
                s.to,
                s.op,
                s.object
                    .as_ref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default()
            );
            let mut ok = true;
            match cx.connectors.get(&s.to) {
                Some(None) => ok = false,
                None if !cx.connectors_known => ok = false,
                None => {
                    let help = did_you_mean(&s.to, cx.connectors.keys().map(String::as_str))
                        .or_else(|| {
                            Some(
                                "connectors are declared under `connectors:` in crossdock.yaml"
                                    .into(),
                            )
                        });
                    cx.error_with(
                        Code::UnknownName,
                        &[path, &[key("to")]].concat(),
                        format!("no connector named `{}`", s.to),
                        help,
                    );
                    ok = false;
                }
                Some(Some(conn)) => {
                    cx.used_connectors.push(s.to.clone());
                    ok &= check_tenant(cx, &[path, &[key("to")]].concat(), &s.to);
                    let shape = SendShape {
                        op: &s.op,
                        object: s.object.as_deref(),
                        key: s.key.as_deref(),
                    };
                    for p in conn.as_kind().check_send(shape) {
                        cx.error_at(
                            &[path, &[key(p.field)]].concat(),
                            format!("send to `{}`: {}", s.to, p.message),
                            p.help,
                        );
                        ok = false;
                    }
                }
            }
            let payload = match &s.payload {
                Some(src) => {
                    let p = cx.jsonpath(&[path, &[key("payload")]].concat(), src);
                    ok &= p.is_some();
                    p
                }
                None => None,
            };
            ok.then(|| Step::Send {
                label: label.into(),
                send: SendStep {
                    connector: s.to.as_str().into(),
                    op: s.op.as_str().into(),
                    object: s.object.as_deref().map(Into::into),
                    key: s.key.as_deref().map(Into::into),
                    payload,
                    movable: None,
                    effect: at.into(),
                },
            })
        }
    }
}

/// The values of a `set` (targets are field paths) or of a fetch's `params` (names are plain).
fn compile_values(
    cx: &mut StepCx<'_>,
    fields: &serde_json::Map<String, serde_json::Value>,
    path: &[PathSeg],
    dotted: bool,
) -> (Vec<(FieldPath, SetValue)>, bool) {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in fields {
        let fpath = [path, &[key(name)]].concat();
        let parsed = if dotted {
            FieldPath::parse(name)
        } else {
            Ok(FieldPath::single(name))
        };
        let target = match parsed {
            Ok(t) => t,
            Err(e) => {
                cx.error_at(&fpath, e.to_string(), None);
                ok = false;
                continue;
            }
        };
        let value = match set_value_kind(value) {
            Some(("expr", src)) => cx
                .expr(&[&fpath[..], &[key("expr")]].concat(), src)
                .map(SetValue::Expr),
            Some(("from", src)) => cx
                .jsonpath(&[&fpath[..], &[key("from")]].concat(), src)
                .map(SetValue::From),
            _ => Some(SetValue::Literal(value.clone())),
        };
        match value {
            Some(v) => out.push((target, v)),
            None => ok = false,
        }
    }
    (out, ok)
}

/// `{ expr: "..." }` and `{ from: "$..." }` in a `set` are computed values; anything else is literal.
fn set_value_kind(value: &serde_json::Value) -> Option<(&'static str, &str)> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    if let Some(src) = obj.get("expr").and_then(|v| v.as_str()) {
        return Some(("expr", src));
    }
    obj.get("from")
        .and_then(|v| v.as_str())
        .map(|src| ("from", src))
}

fn compile_switch(
    cx: &mut StepCx<'_>,
    arms: &[SwitchArmConfig],
    path: &[PathSeg],
    at: &str,
) -> Option<Step> {
    let mut out = Vec::new();
    let mut ok = true;
    if arms.is_empty() {
        cx.error_at(path, "a switch needs at least one `when` arm", None);
        return None;
    }
    for (i, arm) in arms.iter().enumerate() {
        let arm_path = [path, &[PathSeg::Index(i)]].concat();
        let arm_at = format!("{at}.switch[{i}]");
        match (&arm.when, &arm.steps, &arm.otherwise) {
            (Some(when), Some(steps), None) => {
                let when = cx.expr(&[&arm_path[..], &[key("when")]].concat(), when);
                let steps =
                    compile_steps(cx, steps, &[&arm_path[..], &[key("steps")]].concat(), None);
                match when {
                    Some(w) => out.push(Arm {
                        when: Some(w),
                        steps,
                    }),
                    None => ok = false,
                }
            }
            (None, None, Some(steps)) => {
                if i + 1 != arms.len() {
                    cx.error_at(
                        &arm_path,
                        "`otherwise` must be the last arm of a switch",
                        None,
                    );
                    ok = false;
                }
                let steps = compile_steps(
                    cx,
                    steps,
                    &[&arm_path[..], &[key("otherwise")]].concat(),
                    None,
                );
                out.push(Arm { when: None, steps });
            }
            _ => {
                cx.error_at(
                    &arm_path,
                    format!("{arm_at}: an arm is either `when` with `steps`, or `otherwise`"),
                    Some("- when: 'record.total >= 100'\n            steps: [...]\n          - otherwise: [...]".into()),
                );
                ok = false;
            }
        }
    }
    ok.then(|| Step::Switch {
        label: format!("{at} (switch)").into(),
        arms: out,
    })
}
