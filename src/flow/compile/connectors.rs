//! Connectors from `crossdock.yaml`: each kind's config, its `breaker:` and `unconfigured:`,
//! and the check that a source names a connector and one of its operations.

use super::{key, StepCx};
use crate::config::diag::{did_you_mean, Code, Diagnostics};
use crate::config::model::ProjectFile;
use crate::config::span::PathSeg;
use crate::config::YamlFile;
use crate::connectors::ConnectorConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Also collects each connector's `unconfigured: OTHER` and `breaker:` (common to every kind,
/// so they are taken off before the kind's own keys are checked).
pub(super) fn compile_connectors(
    root: &Path,
    config: &ProjectFile,
    file: &YamlFile,
    fallbacks: &mut BTreeMap<String, String>,
    breakers: &mut BTreeMap<String, crate::flow::BreakerSpec>,
    tenant_lists: &mut BTreeMap<String, String>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Option<ConnectorConfig>> {
    let mut out = BTreeMap::new();
    for (name, raw) in &config.connectors {
        let path = [key("connectors"), key(name)];
        let mut raw = raw.clone();
        // `tenants: LIST`: built once per tenant (`tenants.rs`); the config as written, with
        // its `{tenant.KEY}`s, is still checked here for what every tenant's shares.
        if let Some(list) = raw.as_object_mut().and_then(|m| m.remove("tenants")) {
            match list.as_str() {
                Some(list) => {
                    tenant_lists.insert(name.clone(), list.to_owned());
                }
                None => {
                    let at = [key("connectors"), key(name), key("tenants")];
                    diags.push(file.error(
                        file.doc.spans.value_pos(&at),
                        "`tenants` names a tenants list (a file in tenants/)",
                    ));
                }
            }
        }
        if let Some(spec) = raw.as_object_mut().and_then(|m| m.remove("breaker")) {
            let at = [key("connectors"), key(name), key("breaker")];
            if let Some(spec) = compile_breaker(file, &at, &spec, diags) {
                breakers.insert(name.clone(), spec);
            }
        }
        if let Some(target) = raw.as_object_mut().and_then(|m| m.remove("unconfigured")) {
            let at = [key("connectors"), key(name), key("unconfigured")];
            match target.as_str() {
                Some(t) if t == name => diags.push(file.error(
                    file.doc.spans.value_pos(&at),
                    "a connector cannot stand in for itself",
                )),
                Some(t) if config.connectors.contains_key(t) => {
                    fallbacks.insert(name.clone(), t.to_string());
                }
                Some(t) => {
                    let help = crate::config::diag::did_you_mean(
                        t,
                        config.connectors.keys().map(String::as_str),
                    );
                    let d = file
                        .error(
                            file.doc.spans.value_pos(&at),
                            format!("no connector named `{t}`"),
                        )
                        .with_code(Code::UnknownName);
                    diags.push(match help {
                        Some(h) => d.with_help(h),
                        None => d,
                    });
                }
                None => diags.push(file.error(
                    file.doc.spans.value_pos(&at),
                    "`unconfigured` names another connector",
                )),
            }
        }
        let conn = file.section::<ConnectorConfig>(&raw, &path, diags);
        for problem in conn.iter().flat_map(|c| c.as_kind().check_config(root)) {
            let at: Vec<_> = path
                .iter()
                .cloned()
                .chain(problem.at.iter().map(|k| key(k)))
                .collect();
            diags.push(file.error(file.doc.spans.value_pos(&at), problem.message));
        }
        out.insert(name.clone(), conn);
    }
    for (name, target) in fallbacks.iter() {
        if fallbacks.contains_key(target) {
            let at = [key("connectors"), key(name), key("unconfigured")];
            diags.push(file.error(
                file.doc.spans.value_pos(&at),
                format!("`{target}` has an `unconfigured` of its own; name a connector that is always ready"),
            ));
        }
    }
    out
}

fn compile_breaker(
    file: &YamlFile,
    at: &[PathSeg],
    raw: &serde_json::Value,
    diags: &mut Diagnostics,
) -> Option<crate::flow::BreakerSpec> {
    let config = file.section::<crate::config::model::BreakerConfig>(raw, at, diags)?;
    let pos = |field: &str| {
        let mut path = at.to_vec();
        path.push(key(field));
        file.doc.spans.value_pos(&path)
    };
    let mut spec = crate::flow::BreakerSpec::default();
    let mut ok = true;
    match config.failures {
        Some(0) => {
            diags.push(file.error(pos("failures"), "`failures` must be at least 1"));
            ok = false;
        }
        Some(n) => spec.failures = n,
        None => {}
    }
    if let Some(text) = &config.cooldown {
        match humantime::parse_duration(text) {
            Ok(d) => spec.cooldown = d,
            Err(e) => {
                diags.push(
                    file.error(pos("cooldown"), format!("`{text}` is not a duration: {e}"))
                        .with_help("write e.g. 500ms, 30s or 5m"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(spec)
}

/// Checks that `name` is a connector and `op` one of its operations (for poll sources).
pub(super) fn check_connector_op(cx: &mut StepCx<'_>, path: &[PathSeg], name: &str, op: &str) {
    let conn = match cx.connectors.get(name) {
        Some(Some(conn)) => conn,
        Some(None) => return,
        None if !cx.connectors_known => return,
        None => {
            let help = did_you_mean(name, cx.connectors.keys().map(String::as_str));
            cx.error_with(
                Code::UnknownName,
                path,
                format!("no connector named `{name}` in crossdock.yaml"),
                help,
            );
            return;
        }
    };
    cx.used_connectors.push(name.to_string());
    let kind = conn.as_kind();
    if !kind.operations().iter().any(|o| o == op) {
        let mut op_path = path.to_vec();
        op_path.pop();
        op_path.push(key("op"));
        cx.error_with(
            Code::UnknownName,
            &op_path,
            format!("connector `{name}` has no operation `{op}`"),
            None,
        );
    }
}
