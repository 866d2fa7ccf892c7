//! The project's `scripts/` and `mappings/` files, compiled once before any pipeline names them,
//! and the `limits:` mappings run within.

use super::target::{mapping_writes, MappingWrites};
use super::{check_name, deserialize, key, scalar_text, Compiled};
use crate::config::diag::{Code, Diagnostic, Diagnostics};
use crate::config::span::Pos;
use crate::config::{stem, ProjectSources, YamlFile};
use crate::mapping::spec::MappingFile;
use crate::mapping::{self, Mapping};
use crate::rules::{Rules, Script};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn compile_scripts(
    sources: &ProjectSources,
    rules: &Rules,
    diags: &mut Diagnostics,
) -> Compiled<Script> {
    let mut out = HashMap::new();
    for file in &sources.scripts {
        let name = stem(&file.path);
        match rules.compile_script(&name, &file.text) {
            Ok(script) => {
                out.insert(name, Some(Arc::new(script)));
            }
            Err(e) => {
                out.insert(name, None);
                let pos = Pos {
                    line: e.line.unwrap_or(1),
                    col: e.col.unwrap_or(1),
                };
                diags.push(
                    Diagnostic::error(&file.path, pos, e.message)
                        .with_code(Code::Rhai)
                        .with_source(&file.text),
                );
            }
        }
    }
    out
}

/// `limits:` of crossdock.yaml over the defaults; a bad value is reported and the default kept.
pub(super) fn mapping_limits(
    config: &crate::config::model::LimitsConfig,
    file: &YamlFile,
    diags: &mut Diagnostics,
) -> mapping::Limits {
    let mut limits = mapping::Limits::default();
    let at = |name: &str| file.doc.spans.value_pos(&[key("limits"), key(name)]);
    if let Some(n) = config.mapping_nodes {
        limits.nodes = n;
    }
    if let Some(text) = &config.mapping_output {
        match crate::config::model::parse_size(text) {
            Ok(n) => limits.output_bytes = n as u64,
            Err(e) => diags.push(file.error(at("mapping_output"), e.to_string())),
        }
    }
    if let Some(text) = &config.mapping_time {
        match humantime::parse_duration(text) {
            Ok(d) => limits.time = d,
            Err(e) => diags.push(
                file.error(
                    at("mapping_time"),
                    format!("`{text}` is not a duration: {e}"),
                )
                .with_help("write e.g. 500ms, 2s or 1m"),
            ),
        }
    }
    limits
}

/// Also gives each compiled mapping's output fields, for the check of `send`s against their
/// targets' schemas.
pub(super) fn compile_mappings<'a>(
    sources: &'a ProjectSources,
    rules: &Rules,
    limits: &mapping::Limits,
    writes: &mut MappingWrites<'a>,
    diags: &mut Diagnostics,
) -> Compiled<Mapping> {
    let mut out = HashMap::new();
    // Known to exist, unusable: their own error says why.
    for name in &sources.unreadable_mappings {
        out.insert(name.clone(), None);
    }
    for file in &sources.mappings {
        let Some(spec) = deserialize::<MappingFile>(file, diags) else {
            let name = file
                .doc
                .value
                .get("mapping")
                .and_then(|v| v.as_str())
                .map_or_else(|| file.stem(), str::to_string);
            out.insert(name, None);
            continue;
        };
        check_name(file, &spec.mapping, "mapping", diags);
        match mapping::compile(&spec, rules) {
            Ok(m) => {
                let m = m.with_limits(limits.clone());
                writes.insert(spec.mapping.clone(), mapping_writes(file, &spec));
                if out
                    .insert(spec.mapping.clone(), Some(Arc::new(m)))
                    .is_some()
                {
                    let at = file.doc.spans.value_pos(&[key("mapping")]);
                    diags.push(file.error(
                        at,
                        format!(
                            "a mapping named `{}` is defined in another file too",
                            spec.mapping
                        ),
                    ));
                }
            }
            Err(issues) => {
                out.insert(spec.mapping.clone(), None);
                for issue in issues {
                    let at = match (issue.offset, scalar_text(file, &issue.path)) {
                        (Some(offset), Some(text)) => {
                            file.doc.spans.offset_pos(&issue.path, &text, offset)
                        }
                        _ => file.doc.spans.value_pos(&issue.path),
                    };
                    diags.push(
                        file.error(at, format!("mapping {}: {}", spec.mapping, issue.message))
                            .with_code(Code::Mapping),
                    );
                }
            }
        }
    }
    out
}
