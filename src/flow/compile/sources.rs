//! A pipeline's `source:` (webhook, poll, schedule, file), with the claims sources cannot share
//! (a webhook path, a watched folder), and a `key:` parsed. The webhook's own checks (tenants,
//! its scheme's name, reserved routes, `catch_up:`) are in `webhook.rs`; durations, intervals
//! and cron expressions in `settings.rs`.

use super::connectors::check_connector_op;
use super::settings::{check_cron, check_duration, check_interval};
use super::webhook::{
    build_for_tenant, check_scheme_name, reserved_route, tenant_choice, verify_uses_tenant,
};
use super::{key, StepCx};
use crate::config::diag::Code;
use crate::config::model::{KeyTemplates, SourceConfig as Source};
use crate::config::span::PathSeg;
use crate::flow::key::BusinessKey;
use crate::flow::{DedupId, Webhook};
use crate::projection::Need;
use std::collections::HashMap;

/// What sources of earlier pipelines hold, where two pipelines cannot share: a webhook path,
/// a watched folder (two file sources would race to move the same drop). Values are the
/// holder's `file:line:col`.
#[derive(Default)]
pub(super) struct SourceClaims {
    webhook_paths: HashMap<String, String>,
    folders: HashMap<String, String>,
}

/// Checks a pipeline's source; for a webhook, also returns its ingress as built here, so
/// nothing after `check` parses `verify:` or `dedup_id:` again.
pub(super) fn check_source(
    cx: &mut StepCx<'_>,
    source: &Source,
    claims: &mut SourceClaims,
) -> Option<Webhook> {
    let base = [key("source"), key(source.kind())];
    let here = |cx: &StepCx<'_>, at: &[PathSeg]| {
        let pos = cx.file.doc.spans.value_pos(at);
        format!("{}:{}", cx.file.file.path.display(), pos)
    };
    match source {
        Source::Webhook(w) => {
            if let Some(v) = &w.verify {
                if !check_scheme_name(cx, &base, v.scheme.as_str()) {
                    // As when any other kind is unknown, nothing else of the source is checked.
                    return None;
                }
            }
            let at = [&base[..], &[key("path")]].concat();
            if !w.path.starts_with('/') {
                cx.error_at(
                    &at,
                    format!("webhook path `{}` must start with `/`", w.path),
                    None,
                );
            }
            if let Some(reserved) = reserved_route(&w.path) {
                cx.error_at(
                    &at,
                    format!(
                        "webhook path `{}` is taken by the engine's own `{reserved}`",
                        w.path
                    ),
                    Some(
                        "`/api`, `/health`, `/metrics` and `/ui` (and what is under `/api/` and \
                         `/ui/`) are the engine's; put webhooks elsewhere, e.g. under `/hooks/`"
                            .into(),
                    ),
                );
            }
            if w.verify.is_none() {
                let pos = cx.file.doc.spans.value_pos(&at);
                let d = cx
                    .file
                    .warning(pos, format!("webhook path `{}` has no `verify`", w.path))
                    .with_code(Code::NoVerify)
                    .with_help(format!(
                        "anyone who can reach the port can post events to it; add the sender's \
                         signature check, e.g. `verify: {{ scheme: shopify, secret: \
                         \"${{SHOPIFY_WEBHOOK_SECRET}}\" }}` (schemes: {})",
                        crate::verify::scheme_names().collect::<Vec<_>>().join(", ")
                    ));
                cx.diags.push(d);
            }
            if let Some(other) = claims.webhook_paths.get(&w.path) {
                let other = other.clone();
                cx.error_with(
                    Code::Duplicate,
                    &at,
                    format!("webhook path `{}` is already used at {other}", w.path),
                    None,
                );
            } else {
                claims.webhook_paths.insert(w.path.clone(), here(cx, &at));
            }
            let pattern = match crate::flow::tenants::PathPattern::parse(&w.path) {
                Ok(pattern) => pattern,
                Err(e) => {
                    cx.error_at(&at, format!("webhook path `{}`: {e}", w.path), None);
                    None
                }
            };
            let chosen = w
                .tenants
                .as_ref()
                .and_then(|t| tenant_choice(cx, &base, t, pattern.as_ref(), &w.path));
            let list = chosen.as_ref().map(|(list, _)| *list);
            let mut scheme = None;
            let mut tenant_schemes = std::collections::BTreeMap::new();
            if let Some(list) = list {
                for id in list.tenants.keys() {
                    tenant_schemes.insert(id.clone(), None);
                }
            }
            if let Some(v) = &w.verify {
                let tolerance_ok = match &v.tolerance {
                    Some(t) => {
                        let at = [&base[..], &[key("verify"), key("tolerance")]].concat();
                        let before = cx.diags.errors().count();
                        check_duration(cx, &at, t);
                        cx.diags.errors().count() == before
                    }
                    None => true,
                };
                // The scheme's own checks (a secret it cannot use, options it would ignore),
                // at load rather than at the first delivery.
                let per_tenant = w.tenants.is_some();
                if tolerance_ok && per_tenant {
                    for (id, values) in list.iter().flat_map(|l| &l.tenants) {
                        match build_for_tenant(v, id, values) {
                            Ok(built) => {
                                tenant_schemes.insert(id.clone(), Some(built));
                            }
                            Err(e) => {
                                let at = [&base[..], &[key("verify")]].concat();
                                let file = list.map(|l| l.file.display().to_string());
                                cx.error_at(
                                    &at,
                                    format!("{e} in {}", file.unwrap_or_default()),
                                    None,
                                );
                            }
                        }
                    }
                } else if tolerance_ok && verify_uses_tenant(v) {
                    let at = [&base[..], &[key("verify")]].concat();
                    cx.error_at(
                        &at,
                        "`{tenant.…}` in `verify` needs the webhook to choose a tenant",
                        Some(
                            "add `tenants: { list: LIST, param: PARAM }` to the webhook, with \
                             the path parameter that names the tenant"
                                .into(),
                        ),
                    );
                } else if tolerance_ok {
                    match crate::verify::build(v) {
                        Ok(built) => scheme = Some(built),
                        Err(e) => {
                            // An option that is wrong in itself is pointed at; the others
                            // concern the whole block. The message already says `verify:`.
                            let option = match &e {
                                crate::verify::BuildError::OptionNotTaken { option, .. } => {
                                    Some(*option)
                                }
                                crate::verify::BuildError::CallbackUrlInvalid(_) => {
                                    Some("callback_url")
                                }
                                _ => None,
                            };
                            let mut at = [&base[..], &[key("verify")]].concat();
                            at.extend(option.map(key));
                            cx.error_at(&at, e.to_string(), None);
                        }
                    }
                }
            }
            let dedup_id = w.dedup_id.as_ref().and_then(|id| {
                let path = cx.jsonpath(&[&base[..], &[key("dedup_id")]].concat(), id)?;
                let mut need = Need::default();
                need.add_jsonpath(id);
                Some(DedupId {
                    path,
                    parser: crate::projection::BodyParser::checking(need),
                })
            });
            let key = w.key.as_ref().and_then(|templates| {
                let at = [&base[..], &[key("key")]].concat();
                let parsed = business_key(cx, &at, templates)?;
                let mut need = Need::default();
                for src in parsed.sources.iter().chain(w.dedup_id.iter()) {
                    need.add_jsonpath(src);
                }
                Some(crate::flow::WebhookKey {
                    key: parsed,
                    parser: crate::projection::BodyParser::checking(need),
                })
            });
            let tenants = chosen.map(|(list, choose)| crate::flow::tenants::WebhookTenants {
                list: list.name.clone(),
                choose,
                schemes: tenant_schemes,
            });
            return Some(Webhook {
                scheme,
                dedup_id,
                key,
                pattern,
                tenants,
            });
        }
        Source::Poll(p) => check_poll(cx, &base, p),
        Source::Schedule(s) => check_cron(cx, &[&base[..], &[key("cron")]].concat(), &s.cron),
        Source::File(f) => {
            let at = [&base[..], &[key("path")]].concat();
            let folder = f.path.trim_start_matches("./").trim_end_matches('/');
            if folder.is_empty() || folder == "." {
                cx.error_at(
                    &at,
                    "`path` is the folder to watch, relative to the project (e.g. inbox/orders)",
                    None,
                );
            } else if let Some(other) = claims.folders.get(folder) {
                let other = other.clone();
                cx.error_with(
                    Code::Duplicate,
                    &at,
                    format!("folder `{}` is already watched at {other}", f.path),
                    None,
                );
            } else {
                claims.folders.insert(folder.to_string(), here(cx, &at));
            }
            if let Some(d) = f.delimiter {
                let at = [&base[..], &[key("delimiter")]].concat();
                if f.format != crate::config::model::FileFormat::Csv {
                    cx.error_at(&at, "`delimiter` is for `format: csv`", None);
                } else if !d.is_ascii() || d == '\n' || d == '"' {
                    cx.error_at(
                        &at,
                        format!("`{d}` cannot be a CSV delimiter"),
                        Some("use one ASCII character, e.g. `,`, `;` or a tab".into()),
                    );
                }
            }
        }
    }
    None
}

/// A poll's options, under `base` (`source.poll` or `catch_up.poll`).
pub(super) fn check_poll(
    cx: &mut StepCx<'_>,
    base: &[PathSeg],
    p: &crate::config::model::PollSource,
) {
    let base = base.to_vec();
    let at = [&base[..], &[key("connector")]].concat();
    check_connector_op(cx, &at, &p.connector, &p.op);
    if let Some(per_tenant) = cx.tenant_connectors.get(&p.connector) {
        cx.error_at(
            &at,
            format!(
                "connector `{}` is built per tenant of list `{}`, and a poll has no tenant",
                p.connector, per_tenant.list
            ),
            Some("poll through a connector without `tenants:`".into()),
        );
    }
    match (&p.every, &p.cron) {
        (Some(e), None) => {
            check_interval(cx, &[&base[..], &[key("every")]].concat(), e);
        }
        (None, Some(c)) => check_cron(cx, &[&base[..], &[key("cron")]].concat(), c),
        _ => cx.error_at(
            &base,
            "a poll source needs exactly one of `every` or `cron`",
            None,
        ),
    }
    if let Some(items) = &p.items {
        cx.jsonpath(&[&base[..], &[key("items")]].concat(), items);
    }
    if let Some(cursor) = &p.cursor {
        let at = [&base[..], &[key("cursor")]].concat();
        cx.jsonpath(&[&at[..], &[key("from")]].concat(), &cursor.from);
        if cursor.param.is_empty() {
            cx.error_at(
                &[&at[..], &[key("param")]].concat(),
                "`param` names the payload field the cursor is sent in",
                None,
            );
        }
        if let Some(initial) = &cursor.initial {
            if !(initial.is_string() || initial.is_number()) {
                cx.error_at(
                    &[&at[..], &[key("initial")]].concat(),
                    "the initial cursor is a string or a number",
                    None,
                );
            }
        }
    }
    if let Some(next) = &p.next {
        let at = [&base[..], &[key("next")]].concat();
        cx.jsonpath(&[&at[..], &[key("from")]].concat(), &next.from);
        let clash = p.cursor.as_ref().is_some_and(|c| c.param == next.param);
        if next.param.is_empty() || clash {
            cx.error_at(
                &[&at[..], &[key("param")]].concat(),
                "`param` names the payload field the next-page token is sent in \
                 (not the cursor's)",
                None,
            );
        }
    }
    if let Some(more) = p.next.as_ref().and_then(|n| n.more.as_ref()) {
        cx.jsonpath(&[&base[..], &[key("next"), key("more")]].concat(), more);
    }
    if let Some(offset) = &p.offset {
        let at = [&base[..], &[key("offset")]].concat();
        if p.next.is_some() || p.batch_size.is_some() {
            cx.error_at(
                &at,
                "`offset` pages on its own: leave out `next` and `batch_size`",
                None,
            );
        }
        if offset.size == 0 {
            cx.error_at(
                &[&at[..], &[key("size")]].concat(),
                "size must be at least 1",
                None,
            );
        }
        let names = [Some(&offset.param), offset.size_param.as_ref()];
        let cursor = p.cursor.as_ref().map(|c| &c.param);
        if offset.param.is_empty()
            || offset.size_param.as_ref() == Some(&offset.param)
            || names.iter().flatten().any(|n| Some(*n) == cursor)
        {
            cx.error_at(
                &[&at[..], &[key("param")]].concat(),
                "`param` and `size_param` name two payload fields, apart from the cursor's",
                None,
            );
        }
        if let Some(total) = &offset.total {
            cx.jsonpath(&[&at[..], &[key("total")]].concat(), total);
        }
    }
    if p.batch_size == Some(0) {
        cx.error_at(
            &[&base[..], &[key("batch_size")]].concat(),
            "batch_size must be at least 1",
            None,
        );
    }
}

/// A `key:` (one template or a list), parsed; errors point into the template's text.
pub(super) fn business_key(
    cx: &mut StepCx<'_>,
    at: &[PathSeg],
    templates: &KeyTemplates,
) -> Option<BusinessKey> {
    let texts = templates.list();
    if texts.is_empty() {
        cx.error_at(at, "`key` needs at least one template", None);
        return None;
    }
    match BusinessKey::parse(&texts) {
        Ok(parsed) => Some(parsed),
        Err((i, e)) => {
            let mut path = at.to_vec();
            if let KeyTemplates::Any(_) = templates {
                path.push(PathSeg::Index(i));
            }
            let pos = cx.file.doc.spans.offset_pos(&path, texts[i], e.offset);
            let code = if e.message.starts_with("JSONPath") {
                Code::Jsonpath
            } else {
                Code::InvalidValue
            };
            let d = cx
                .file
                .error(pos, format!("key `{}`: {}", texts[i], e.message))
                .with_code(code);
            cx.diags.push(d);
            None
        }
    }
}
