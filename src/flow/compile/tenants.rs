//! `tenants/<list>.yaml` read into [`TenantList`]s, and connectors with `tenants: LIST` filled
//! in for each tenant of their list, every problem located in its file.
//!
//! A list is a map of tenant id to a map of plain values (text, numbers, booleans):
//!
//! ```yaml
//! acme:   { partner_key: "${ACME_PARTNER_KEY}", shop_id: 1001 }
//! globex: { partner_key: "${GLOBEX_PARTNER_KEY}", shop_id: 2002 }
//! ```

use super::key;
use crate::config::diag::{did_you_mean, Diagnostics};
use crate::config::{ProjectSources, YamlFile};
use crate::connectors::ConnectorConfig;
use crate::flow::tenants::{fill_value, valid_id, TenantList, MAX_ID_LEN, MAX_TENANTS};
use crate::flow::TenantConnector;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every readable list, by name; a list with a problem is left out (and reported).
pub(super) fn compile_tenants(
    sources: &ProjectSources,
    diags: &mut Diagnostics,
) -> BTreeMap<String, TenantList> {
    let mut out = BTreeMap::new();
    for file in &sources.tenants {
        if let Some(list) = compile_list(file, diags) {
            out.insert(list.name.clone(), list);
        }
    }
    out
}

fn compile_list(file: &YamlFile, diags: &mut Diagnostics) -> Option<TenantList> {
    let error = |diags: &mut Diagnostics, at: &[crate::config::span::PathSeg], m: String| {
        diags.push(file.error(file.doc.spans.value_pos(at), m));
    };
    let Some(map) = file.doc.value.as_object() else {
        error(
            diags,
            &[],
            "a tenants list is a map of tenant id to its values, e.g. `acme: { shop_id: 1001 }`"
                .into(),
        );
        return None;
    };
    if map.len() > MAX_TENANTS {
        error(
            diags,
            &[],
            format!(
                "{} tenants, more than the {MAX_TENANTS} one list may hold",
                map.len()
            ),
        );
        return None;
    }
    let mut tenants = BTreeMap::new();
    for (id, values) in map {
        let at = [key(id)];
        if !valid_id(id) {
            diags.push(file.error(
                file.doc.spans.key_pos(&at),
                format!(
                    "tenant id `{id}` must be 1 to {MAX_ID_LEN} letters, digits, `_`, `-` or `.`"
                ),
            ));
            continue;
        }
        let Some(values) = values.as_object() else {
            error(
                diags,
                &at,
                format!("tenant `{id}`: its values are a map, e.g. `{id}: {{ shop_id: 1001 }}`"),
            );
            continue;
        };
        let mut text = BTreeMap::new();
        for (name, value) in values {
            let scalar = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    error(
                        diags,
                        &[key(id), key(name)],
                        format!("tenant `{id}`: `{name}` must be text, a number or a boolean"),
                    );
                    continue;
                }
            };
            text.insert(name.clone(), scalar);
        }
        tenants.insert(id.clone(), text);
    }
    // The tenants that are right are kept, so the list's users are checked against them
    // rather than each reporting the list as missing.
    Some(TenantList {
        name: file.stem(),
        file: file.file.path.clone(),
        tenants,
    })
}

/// Where a list name is used (`tenants: NAME`), checks it names a list.
pub(super) fn check_list_name<'t>(
    file: &YamlFile,
    at: &[crate::config::span::PathSeg],
    name: &str,
    tenants: &'t BTreeMap<String, TenantList>,
    diags: &mut Diagnostics,
) -> Option<&'t TenantList> {
    if let Some(list) = tenants.get(name) {
        return Some(list);
    }
    let d = file.error(
        file.doc.spans.value_pos(at),
        format!("no tenants list `{name}` (a file tenants/{name}.yaml)"),
    );
    diags.push(
        match did_you_mean(name, tenants.keys().map(String::as_str)) {
            Some(help) => d.with_help(help),
            None => d,
        },
    );
    None
}

/// Each tenant connector's config per tenant. `lists` are the connectors' `tenants:` values,
/// taken off their raw config by `compile_connectors`.
pub(super) fn expand_connectors(
    file: &YamlFile,
    raw: &BTreeMap<String, Value>,
    lists: &BTreeMap<String, String>,
    tenants: &BTreeMap<String, TenantList>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, TenantConnector> {
    let mut out = BTreeMap::new();
    for (name, list_name) in lists {
        let path = [key("connectors"), key(name)];
        let at = [key("connectors"), key(name), key("tenants")];
        let Some(list) = check_list_name(file, &at, list_name, tenants, diags) else {
            continue;
        };
        let Some(mut template) = raw.get(name).cloned() else {
            continue;
        };
        if let Some(map) = template.as_object_mut() {
            for common in ["tenants", "breaker", "unconfigured"] {
                map.remove(common);
            }
        }
        let mut configs = BTreeMap::new();
        for (id, values) in &list.tenants {
            let filled = match fill_value(&template, id, values) {
                Ok(v) => v,
                Err(e) => {
                    diags.push(file.error(
                        file.doc.spans.key_pos(&path),
                        format!("connector `{name}`: {e} in {}", list.file.display()),
                    ));
                    continue;
                }
            };
            if let Some(config) = file.section::<ConnectorConfig>(&filled, &path, diags) {
                configs.insert(id.clone(), (config, filled));
            }
        }
        out.insert(
            name.clone(),
            TenantConnector {
                list: list_name.clone(),
                configs,
            },
        );
    }
    out
}
