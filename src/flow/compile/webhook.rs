//! A webhook source's own checks: the tenant its `tenants:` chooses and each tenant's built
//! scheme, the name of its signature scheme, the engine's routes its path must not shadow, and
//! `catch_up:` (a poll beside it). Must not check the other source kinds (`sources.rs`).

use super::settings::check_duration;
use super::sources::{business_key, check_poll};
use super::{key, StepCx};
use crate::config::diag::{did_you_mean, Code};
use crate::config::model::{CatchUpConfig, SourceConfig as Source};
use crate::config::span::PathSeg;
use crate::projection::Need;
use std::collections::HashMap;

/// The list a webhook's `tenants:` names and what chooses the tenant: the path parameter
/// `param`, or the body field at `from` compared with each tenant's `match` value (its id by
/// default).
pub(super) fn tenant_choice<'t>(
    cx: &mut StepCx<'t>,
    base: &[PathSeg],
    config: &crate::config::model::WebhookTenantsConfig,
    pattern: Option<&crate::flow::tenants::PathPattern>,
    path: &str,
) -> Option<(
    &'t crate::flow::tenants::TenantList,
    crate::flow::tenants::Choose,
)> {
    use crate::flow::tenants::Choose;
    let at = |field: &str| [base, &[key("tenants"), key(field)]].concat();
    let tenants = cx.tenants;
    let list =
        super::tenants::check_list_name(cx.file, &at("list"), &config.list, tenants, cx.diags);
    let choose = match (&config.param, &config.from) {
        (Some(param), None) => {
            if config.match_key.is_some() {
                cx.error_at(
                    &at("match"),
                    "`match` goes with `from` (a body field); a path parameter is compared with \
                     the tenant's id",
                    None,
                );
                return None;
            }
            if !pattern.is_some_and(|p| p.params().any(|n| n == param)) {
                cx.error_at(
                    &at("param"),
                    format!("`{param}` is not a parameter of the path `{path}`"),
                    Some(format!(
                        "the path names the tenant in a segment of its own, e.g. `path: /hooks/shopee/{{{param}}}`"
                    )),
                );
                return None;
            }
            Choose::Param(param.clone())
        }
        (None, Some(from)) => {
            let json_path = cx.jsonpath(&at("from"), from)?;
            let list = list?;
            let mut index = HashMap::new();
            for (id, values) in &list.tenants {
                let value = match &config.match_key {
                    None => id.clone(),
                    Some(name) => match values.get(name) {
                        Some(value) => value.clone(),
                        None => {
                            cx.error_at(
                                &at("match"),
                                format!("tenant `{id}` has no `{name}` in {}", list.file.display()),
                                None,
                            );
                            continue;
                        }
                    },
                };
                if let Some(other) = index.insert(value.clone(), id.clone()) {
                    cx.error_at(
                        &at("match"),
                        format!(
                            "tenants `{other}` and `{id}` have the same value `{value}`, so a body \
                             cannot tell them apart"
                        ),
                        None,
                    );
                }
            }
            let mut need = Need::default();
            need.add_jsonpath(from);
            Choose::Body {
                path: json_path,
                parser: crate::projection::BodyParser::checking(need),
                index,
            }
        }
        _ => {
            cx.error_at(
                &at("list"),
                "`tenants` needs one of `param` (the path names the tenant) or `from` (a body \
                 field does)",
                None,
            );
            return None;
        }
    };
    Some((list?, choose))
}

/// Whether a `verify:` uses `{tenant.…}` anywhere a tenant would fill.
pub(super) fn verify_uses_tenant(v: &crate::config::model::VerifyConfig) -> bool {
    use crate::flow::tenants::uses_tenant;
    uses_tenant(&v.secret)
        || v.callback_url.as_deref().is_some_and(uses_tenant)
        || v.app_key.as_deref().is_some_and(uses_tenant)
}

/// One tenant's scheme: the `verify:` with that tenant's values in `secret`, `callback_url`
/// and `app_key`.
pub(super) fn build_for_tenant(
    v: &crate::config::model::VerifyConfig,
    id: &str,
    values: &std::collections::BTreeMap<String, String>,
) -> Result<Box<dyn crate::verify::Scheme>, String> {
    use crate::flow::tenants::fill;
    let text = |t: &str| fill(t, id, values).map_err(|e| e.to_string());
    let filled = crate::config::model::VerifyConfig {
        secret: text(&v.secret)?,
        callback_url: v.callback_url.as_deref().map(text).transpose()?,
        app_key: v.app_key.as_deref().map(text).transpose()?,
        ..v.clone()
    };
    crate::verify::build(&filled).map_err(|e| format!("tenant `{id}`: {e}"))
}

/// The engine's own route a webhook path would shadow: `/health`, `/metrics`, and `/api` and
/// `/ui` with everything under them (the UI is kept for later).
pub(super) fn reserved_route(path: &str) -> Option<&'static str> {
    const EXACT: [&str; 2] = ["/health", "/metrics"];
    const TREES: [&str; 2] = ["/api", "/ui"];
    if let Some(r) = EXACT.iter().find(|r| **r == path) {
        return Some(r);
    }
    TREES.iter().copied().find(|r| {
        path.strip_prefix(r)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// `catch_up:` beside the pipeline's source: a poll whose items share the webhook's business
/// key. The combinations that cannot work are errors; a lookback the dedup keys do not
/// outlive, or one shorter than the time between polls, is a warning.
pub(super) fn check_catch_up(cx: &mut StepCx<'_>, catch_up: &CatchUpConfig, source: &Source) {
    let base = [key("catch_up")];
    let at = |more: &[&str]| {
        let mut path = base.to_vec();
        path.extend(more.iter().map(|m| key(m)));
        path
    };
    match source {
        Source::Webhook(w) => {
            if w.key.is_none() {
                cx.error_with(
                    Code::MissingKey,
                    &[key("source"), key("webhook")],
                    "a webhook with `catch_up` needs `key:`, the business key its deliveries \
                     share with the catch-up poll's items",
                    Some(
                        "e.g. `key: \"order:{$.data.id}\"` on the webhook and \
                         `key: \"order:{$.id}\"` in `catch_up`"
                            .into(),
                    ),
                );
            }
            if w.tenants.is_some() {
                cx.error_at(
                    &[key("source"), key("webhook"), key("tenants")],
                    "a webhook with `tenants:` cannot have a `catch_up`: the poll has no tenant",
                    None,
                );
            }
        }
        other => {
            cx.error_at(
                &base,
                format!(
                    "`catch_up` goes beside a `webhook` source, not a `{}` one",
                    other.kind()
                ),
                Some("a poll source alone already finds every item; drop `catch_up`".into()),
            );
            return;
        }
    }
    let poll = &catch_up.poll;
    check_poll(cx, &at(&["poll"]), poll);
    if poll.cursor.is_some() {
        cx.error_at(
            &at(&["poll", "cursor"]),
            "a catch-up poll asks for the last `since.lookback` each time, not from a cursor",
            Some("leave out `cursor`".into()),
        );
    }
    let since = &catch_up.since;
    let taken = [
        poll.offset.as_ref().map(|o| &o.param),
        poll.offset.as_ref().and_then(|o| o.size_param.as_ref()),
        poll.next.as_ref().map(|n| &n.param),
    ];
    if since.param.is_empty()
        || taken.iter().flatten().any(|p| **p == since.param)
        || poll.params.contains_key(&since.param)
    {
        cx.error_at(
            &at(&["since", "param"]),
            "`param` names the payload field the time is sent in, apart from `params` and the \
             page fields",
            None,
        );
    }
    let lookback_at = at(&["since", "lookback"]);
    match humantime::parse_duration(&since.lookback) {
        Err(_) => check_duration(cx, &lookback_at, &since.lookback),
        Ok(d) if d.is_zero() => {
            cx.error_at(&lookback_at, "the lookback must be longer than 0", None)
        }
        Ok(lookback) => {
            let pos = cx.file.doc.spans.value_pos(&lookback_at);
            if lookback > cx.dedup_window {
                let d = cx
                    .file
                    .warning(
                        pos,
                        format!(
                            "lookback `{}` is longer than the dedup window ({}): an item found \
                             again after its key expired is processed again",
                            since.lookback,
                            humantime::format_duration(cx.dedup_window)
                        ),
                    )
                    .with_code(Code::InvalidValue)
                    .with_help(
                        "shorten the lookback, or lengthen `server.dedup_window` in crossdock.yaml",
                    );
                cx.diags.push(d);
            }
            let every = poll
                .every
                .as_deref()
                .and_then(|e| humantime::parse_duration(e).ok());
            if every.is_some_and(|every| lookback < every) {
                let d = cx
                    .file
                    .warning(
                        pos,
                        format!(
                            "lookback `{}` is shorter than the time between polls: what changes \
                             in the gap is never looked at",
                            since.lookback
                        ),
                    )
                    .with_code(Code::InvalidValue)
                    .with_help("look back at least as far as `every`, better a few times it");
                cx.diags.push(d);
            }
        }
    }
    business_key(cx, &at(&["key"]), &catch_up.key);
}

/// Whether `name` is a registered signature scheme; if not, an error at `scheme:` worded as
/// for any unknown kind.
pub(super) fn check_scheme_name(cx: &mut StepCx<'_>, base: &[PathSeg], name: &str) -> bool {
    if crate::verify::scheme(name).is_some() {
        return true;
    }
    let names = crate::verify::scheme_names();
    let help = did_you_mean(name, names.clone()).unwrap_or_else(|| {
        let ticked: Vec<String> = names.map(|n| format!("`{n}`")).collect();
        format!("expected one of {}", ticked.join(", "))
    });
    let at = [base, &[key("verify"), key("scheme")]].concat();
    let pos = cx.file.doc.spans.key_pos(&at);
    let d = cx
        .file
        .error(pos, format!("unknown kind `{name}`"))
        .with_code(Code::UnknownKind);
    cx.diags.push(d.with_help(help));
    false
}
