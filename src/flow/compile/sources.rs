//! A pipeline's `source:` (webhook, poll, schedule, file) with the claims sources cannot share,
//! the durations, intervals and cron expressions they hold, a pipeline's `on_error:`, and the
//! `server:` and `state:` settings read as durations and sizes.

use super::connectors::check_connector_op;
use super::{key, StepCx};
use crate::config::diag::{did_you_mean, Code, Diagnostics};
use crate::config::model::{CatchUpConfig, KeyTemplates, OnErrorConfig, SourceConfig as Source};
use crate::config::span::PathSeg;
use crate::config::YamlFile;
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

/// The list a webhook's `tenants:` names and what chooses the tenant: the path parameter
/// `param`, or the body field at `from` compared with each tenant's `match` value (its id by
/// default).
fn tenant_choice<'t>(
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
fn verify_uses_tenant(v: &crate::config::model::VerifyConfig) -> bool {
    use crate::flow::tenants::uses_tenant;
    uses_tenant(&v.secret)
        || v.callback_url.as_deref().is_some_and(uses_tenant)
        || v.app_key.as_deref().is_some_and(uses_tenant)
}

/// One tenant's scheme: the `verify:` with that tenant's values in `secret`, `callback_url`
/// and `app_key`.
fn build_for_tenant(
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
fn reserved_route(path: &str) -> Option<&'static str> {
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
fn check_poll(cx: &mut StepCx<'_>, base: &[PathSeg], p: &crate::config::model::PollSource) {
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
fn business_key(
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
fn check_scheme_name(cx: &mut StepCx<'_>, base: &[PathSeg], name: &str) -> bool {
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

fn check_cron(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
    if let Err(e) = crate::config::cron::CronExpr::parse(text) {
        cx.error_at(
            path,
            e,
            Some("e.g. `*/5 * * * *` (every 5 minutes) or `0 2 * * *` (02:00 UTC daily)".into()),
        );
    }
}

/// A duration that a source waits between runs: zero would spin.
fn check_interval(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => cx.error_at(path, "the interval must be longer than 0", None),
        Ok(_) => {}
        Err(_) => check_duration(cx, path, text),
    }
}

/// The `server:` and `state:` settings that are text to be read as durations and sizes.
pub(super) fn check_server(
    server: &crate::config::model::ServerConfig,
    state: &crate::config::model::StateConfig,
    file: &YamlFile,
    diags: &mut Diagnostics,
) {
    let durations = [
        ("dedup_window", &server.dedup_window),
        ("grace", &server.grace),
        ("keep_trails", &server.keep_trails),
        ("reload_debounce", &server.reload_debounce),
        ("header_timeout", &server.header_timeout),
        ("body_timeout", &server.body_timeout),
    ];
    for (name, value) in durations {
        let Some(text) = value else { continue };
        let at = || file.doc.spans.value_pos(&[key("server"), key(name)]);
        match humantime::parse_duration(text) {
            Err(e) => diags.push(
                file.error(at(), format!("`{text}` is not a duration: {e}"))
                    .with_help("write e.g. 500ms, 30s, 5m, 24h or 7d"),
            ),
            // A zero timeout would close every connection before its first request.
            Ok(d) if d.is_zero() && name.ends_with("_timeout") => {
                diags.push(file.error(at(), format!("`{name}` must be longer than 0")))
            }
            Ok(_) => {}
        }
    }
    if server.max_connections == Some(0) {
        let at = file
            .doc
            .spans
            .value_pos(&[key("server"), key("max_connections")]);
        diags.push(file.error(at, "`max_connections` must be at least 1"));
    }
    let sizes = [
        ("server", "max_body", &server.max_body),
        ("server", "max_backlog_bytes", &server.max_backlog_bytes),
        ("server", "keep_trails_bytes", &server.keep_trails_bytes),
        ("state", "min_free", &state.min_free),
        ("state", "cache", &state.cache),
    ];
    for (section, name, value) in sizes {
        let Some(text) = value else { continue };
        if let Err(e) = crate::config::model::parse_size(text) {
            let at = file.doc.spans.value_pos(&[key(section), key(name)]);
            diags.push(file.error(at, e.to_string()));
        }
    }
}

fn check_duration(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
    if let Err(e) = humantime::parse_duration(text) {
        cx.error_at(
            path,
            format!("`{text}` is not a duration: {e}"),
            Some("write e.g. 500ms, 30s, 5m or 1h".into()),
        );
    }
}

pub(super) fn check_on_error(cx: &mut StepCx<'_>, on_error: &OnErrorConfig) {
    let Some(retry) = &on_error.retry else { return };
    let base = [key("on_error"), key("retry")];
    for (name, value) in [("initial", &retry.initial), ("max", &retry.max)] {
        if let Some(v) = value {
            check_duration(cx, &[&base[..], &[key(name)]].concat(), v);
        }
    }
    if retry.attempts == 0 {
        cx.error_at(
            &[&base[..], &[key("attempts")]].concat(),
            "attempts must be at least 1",
            None,
        );
    }
}
