//! The settings read as durations, sizes, intervals and cron expressions: a source's, a
//! pipeline's `on_error:`, and crossdock.yaml's `server:` and `state:`. Checks text only; what
//! the values mean at run time is the runtime's.

use super::{key, StepCx};
use crate::config::diag::Diagnostics;
use crate::config::model::{OnErrorConfig, MAX_NICE};
use crate::config::span::PathSeg;
use crate::config::YamlFile;

pub(super) fn check_cron(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
    if let Err(e) = crate::config::cron::CronExpr::parse(text) {
        cx.error_at(
            path,
            e,
            Some("e.g. `*/5 * * * *` (every 5 minutes) or `0 2 * * *` (02:00 UTC daily)".into()),
        );
    }
}

/// A duration that a source waits between runs: zero would spin.
pub(super) fn check_interval(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
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
    if let Some(n) = server.work_nice.filter(|n| i32::from(*n) > MAX_NICE) {
        let at = file.doc.spans.value_pos(&[key("server"), key("work_nice")]);
        diags.push(
            file.error(at, format!("`work_nice` is {n}: it goes from 0 to {MAX_NICE}"))
                .with_help("0 (the default) runs both alike; 5 or 10 lets a burst of webhooks in faster and delivers a steady load more slowly (docs/runtime.md, Ingress first)"),
        );
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

pub(super) fn check_duration(cx: &mut StepCx<'_>, path: &[PathSeg], text: &str) {
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
