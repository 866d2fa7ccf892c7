//! Unset `${VAR}`s: warnings, errors, or a connector's fallback while they are unset.

use super::CompileOptions;
use crate::config::diag::{Code, Diagnostics};
use crate::config::span::PathSeg;
use crate::config::ProjectSources;
use std::collections::BTreeMap;

/// Unset `${VAR}`s: warnings for `check`, errors with `--strict`, and errors at `run` for the
/// connectors pipelines actually use (a run without them would fail on the first event).
///
/// A connector with `unconfigured: OTHER` is allowed its unset variables: they are not reported
/// but returned, and its calls go to OTHER until they are set.
pub(super) fn report_env(
    sources: &ProjectSources,
    opts: CompileOptions,
    used: &[String],
    fallbacks: &BTreeMap<String, String>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, crate::flow::Unconfigured> {
    let mut unconfigured: BTreeMap<String, crate::flow::Unconfigured> = BTreeMap::new();
    let project = sources.project.iter().map(|f| (f, true));
    let others = sources
        .pipelines
        .iter()
        .chain(&sources.mappings)
        .chain(&sources.tenants)
        .map(|f| (f, false));
    for (file, is_project) in project.chain(others) {
        for (path, var, pos) in &file.doc.unset_vars {
            let connector = match (is_project, path.first(), path.get(1)) {
                (true, Some(PathSeg::Key(c)), Some(PathSeg::Key(name))) if c == "connectors" => {
                    Some(name)
                }
                _ => None,
            };
            if let Some(to) = connector.and_then(|n| fallbacks.get(n)) {
                let entry = unconfigured
                    .entry(connector.cloned().unwrap_or_default())
                    .or_insert_with(|| crate::flow::Unconfigured {
                        to: to.clone(),
                        missing: Vec::new(),
                    });
                if !entry.missing.contains(var) {
                    entry.missing.push(var.clone());
                }
                continue;
            }
            let used_connector = connector.is_some_and(|n| used.contains(n));
            let message = format!("${{{var}}} is not set and has no default");
            let d = if opts.strict_env || (opts.for_run && (used_connector || connector.is_none()))
            {
                file.error(*pos, message)
            } else {
                file.warning(*pos, message)
            };
            diags.push(
                d.with_code(Code::UnsetEnv)
                    .with_help(format!("export {var}=..., or write ${{{var}:-default}}")),
            );
        }
    }
    unconfigured
}
