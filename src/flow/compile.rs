//! From project sources to a compiled [`Project`], collecting every problem in one pass.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::config::diag::{did_you_mean, Diagnostic, Diagnostics};
use crate::config::env::{EnvLookup, Redactor};
use crate::config::model::{OnErrorConfig, SourceConfig as Source};
use crate::config::model::{PipelineFile, ProjectFile, StepConfig, SwitchArmConfig};
use crate::config::span::{PathSeg, Pos, ScalarStyle};

use crate::config::{read_project, stem, ProjectSources, YamlFile};
use crate::connectors::{ConnectorConfig, SendShape};
use crate::jsonpath::JsonPath;
use crate::mapping::spec::MappingFile;
use crate::mapping::{self, Mapping};
use crate::rules::{Expr, RuleError, Rules, Script};

use super::{Arm, DedupId, FieldPath, Flow, Project, SendStep, SetValue, Step, Webhook};
use crate::projection::{reads_event_body, Need};

/// How strict loading is about the environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Every unset `${VAR}` without a default is an error (`check --strict`).
    pub strict_env: bool,
    /// Unset variables in a connector that a pipeline sends to are errors (`run`).
    pub for_run: bool,
}

/// Reads and compiles the project in `dir`. On success, also returns the warnings.
pub fn load(
    dir: &Path,
    env: EnvLookup<'_>,
    opts: CompileOptions,
) -> Result<(Project, Diagnostics), Diagnostics> {
    let (sources, mut diags) = read_project(dir, env);
    let compiled = compile(&sources, opts);
    match compiled {
        Ok((project, warnings)) if !diags.has_errors() => {
            diags.extend(warnings);
            Ok((project, diags.sorted()))
        }
        Ok((_, warnings)) => {
            diags.extend(warnings);
            Err(diags.sorted())
        }
        Err(more) => {
            diags.extend(more);
            Err(diags.sorted())
        }
    }
}

/// Compiles sources that have been read. Errors and warnings come back together on failure.
pub fn compile(
    sources: &ProjectSources,
    opts: CompileOptions,
) -> Result<(Project, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    let rules = Rules::default();
    let mut fallbacks = BTreeMap::new();
    let mut breakers = BTreeMap::new();

    let config = sources
        .project
        .as_ref()
        .and_then(|f| deserialize::<ProjectFile>(f, &mut diags));
    if let (Some(c), Some(file)) = (&config, &sources.project) {
        check_server(&c.server, &c.state, file, &mut diags);
    }
    let connectors = match (&config, &sources.project) {
        (Some(c), Some(file)) => Some(compile_connectors(
            &sources.root,
            c,
            file,
            &mut fallbacks,
            &mut breakers,
            &mut diags,
        )),
        // Without a readable crossdock.yaml no connector is known; saying so at every `send`
        // would bury the one real problem.
        _ => None,
    };
    let no_connectors = BTreeMap::new();

    let scripts = compile_scripts(sources, &rules, &mut diags);
    let script_sources: HashMap<String, &str> = sources
        .scripts
        .iter()
        .map(|f| (stem(&f.path), f.text.as_str()))
        .collect();
    let limits = match (&config, &sources.project) {
        (Some(c), Some(file)) => mapping_limits(&c.limits, file, &mut diags),
        _ => mapping::Limits::default(),
    };
    let mappings = compile_mappings(sources, &rules, &limits, &mut diags);

    let mut pipelines = BTreeMap::new();
    let mut claims = SourceClaims::default();
    let mut used_connectors: Vec<String> = Vec::new();
    for file in &sources.pipelines {
        let Some(spec) = deserialize::<PipelineFile>(file, &mut diags) else {
            continue;
        };
        let mut cx = StepCx {
            file,
            rules: &rules,
            mappings: &mappings,
            scripts: &scripts,
            connectors: connectors.as_ref().unwrap_or(&no_connectors),
            connectors_known: connectors.is_some(),
            diags: &mut diags,
            used_connectors: &mut used_connectors,
            script_sources: &script_sources,
            reads_event_body: false,
        };
        let flow = compile_pipeline(&mut cx, spec, &mut claims);
        if let Some(flow) = flow {
            if pipelines.contains_key(&flow.name) {
                let at = file.doc.spans.value_pos(&[key("pipeline")]);
                diags.push(file.error(
                    at,
                    format!(
                        "a pipeline named `{}` is defined in another file too",
                        flow.name
                    ),
                ));
            } else {
                pipelines.insert(flow.name.clone(), Arc::new(flow));
            }
        }
    }

    let unconfigured = report_env(sources, opts, &used_connectors, &fallbacks, &mut diags);

    let diags = diags.sorted();
    match config {
        Some(config) if !diags.has_errors() => Ok((
            Project {
                connector_pos: match &sources.project {
                    Some(file) => config
                        .connectors
                        .keys()
                        .map(|name| {
                            let at = [key("connectors"), key(name)];
                            (name.clone(), file.doc.spans.key_pos(&at))
                        })
                        .collect(),
                    None => BTreeMap::new(),
                },
                root: sources.root.clone(),
                version: sources.version.clone(),
                connectors: connectors
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect(),
                config,
                rules,
                pipelines,
                unconfigured,
                breakers,
                redactor: Redactor::new(sources.secrets()),
            },
            diags,
        )),
        _ => Err(diags),
    }
}

fn key(s: &str) -> PathSeg {
    PathSeg::Key(s.to_string())
}

fn deserialize<T: serde::de::DeserializeOwned>(
    file: &YamlFile,
    diags: &mut Diagnostics,
) -> Option<T> {
    if file.doc.value.is_null() {
        diags.push(file.error(Pos { line: 1, col: 1 }, "file is empty"));
        return None;
    }
    file.section(&file.doc.value, &[], diags)
}

/// Names that exist but failed to compile map to `None`, so references to them do not add a
/// second, misleading "no such" error.
type Compiled<T> = HashMap<String, Option<Arc<T>>>;

/// Also collects each connector's `unconfigured: OTHER` and `breaker:` (common to every kind,
/// so they are taken off before the kind's own keys are checked).
fn compile_connectors(
    root: &Path,
    config: &ProjectFile,
    file: &YamlFile,
    fallbacks: &mut BTreeMap<String, String>,
    breakers: &mut BTreeMap<String, super::BreakerSpec>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Option<ConnectorConfig>> {
    let mut out = BTreeMap::new();
    for (name, raw) in &config.connectors {
        let path = [key("connectors"), key(name)];
        let mut raw = raw.clone();
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
                    let d = file.error(
                        file.doc.spans.value_pos(&at),
                        format!("no connector named `{t}`"),
                    );
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
) -> Option<super::BreakerSpec> {
    let config = file.section::<crate::config::model::BreakerConfig>(raw, at, diags)?;
    let pos = |field: &str| {
        let mut path = at.to_vec();
        path.push(key(field));
        file.doc.spans.value_pos(&path)
    };
    let mut spec = super::BreakerSpec::default();
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

fn compile_scripts(
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
                diags.push(Diagnostic::error(&file.path, pos, e.message).with_source(&file.text));
            }
        }
    }
    out
}

/// `limits:` of crossdock.yaml over the defaults; a bad value is reported and the default kept.
fn mapping_limits(
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
            Err(e) => diags.push(file.error(at("mapping_output"), e)),
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

fn compile_mappings(
    sources: &ProjectSources,
    rules: &Rules,
    limits: &mapping::Limits,
    diags: &mut Diagnostics,
) -> Compiled<Mapping> {
    let mut out = HashMap::new();
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
                        file.error(at, format!("mapping {}: {}", spec.mapping, issue.message)),
                    );
                }
            }
        }
    }
    out
}

/// The string at `path` in the file's document, if it is one.
fn scalar_text(file: &YamlFile, path: &[PathSeg]) -> Option<String> {
    let mut at = &file.doc.value;
    for seg in path {
        at = match seg {
            PathSeg::Key(k) => at.get(k)?,
            PathSeg::Index(i) => at.get(i)?,
        };
    }
    at.as_str().map(str::to_string)
}

/// The file name is how people find a pipeline or mapping: a name that differs is a warning.
fn check_name(file: &YamlFile, name: &str, what: &str, diags: &mut Diagnostics) {
    let stem = file.stem();
    if stem != name {
        let at = file.doc.spans.value_pos(&[key(what)]);
        diags.push(
            file.warning(at, format!("{what} `{name}` is in a file named `{stem}`"))
                .with_help(format!(
                    "name the file after the {what}, or the {what} after the file"
                )),
        );
    }
}

struct StepCx<'a> {
    file: &'a YamlFile,
    rules: &'a Rules,
    mappings: &'a Compiled<Mapping>,
    scripts: &'a Compiled<Script>,
    connectors: &'a BTreeMap<String, Option<ConnectorConfig>>,
    connectors_known: bool,
    diags: &'a mut Diagnostics,
    used_connectors: &'a mut Vec<String>,
    script_sources: &'a HashMap<String, &'a str>,
    /// Some Rhai in this pipeline reads `event.body` (or `event` whole), so bodies must be
    /// parsed whole.
    reads_event_body: bool,
}

/// What the top-level steps read of the body, worked out while they compile. `open` until a
/// `map` without `into` replaces the record: nothing after it sees the body.
struct NeedBuilder {
    need: Need,
    open: bool,
}

impl NeedBuilder {
    fn add(&mut self, f: impl FnOnce(&mut Need)) {
        if self.open {
            f(&mut self.need);
        }
    }
    fn all(&mut self) {
        self.add(|n| *n = Need::All);
    }
    fn finish(self) -> Need {
        // A record that is never replaced ends up in the output whole.
        if self.open {
            Need::All
        } else {
            self.need
        }
    }
}

impl StepCx<'_> {
    /// Deserialises one raw section of the file, reporting a failure as a diagnostic.
    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        raw: &serde_json::Value,
        path: &[PathSeg],
    ) -> Option<T> {
        self.file.section(raw, path, self.diags)
    }

    fn error_at(&mut self, path: &[PathSeg], message: impl Into<String>, help: Option<String>) {
        let at = self.file.doc.spans.value_pos(path);
        let d = self.file.error(at, message);
        self.diags.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    /// Compiles an inline Rhai expression, pointing errors at the YAML scalar's own text.
    fn expr(&mut self, path: &[PathSeg], src: &str) -> Option<Expr> {
        self.reads_event_body |= reads_event_body(src);
        match self.rules.compile_expr(src) {
            Ok(e) => Some(e),
            Err(e) => {
                let at = self.pos_in_scalar(path, src, &e);
                self.diags
                    .push(self.file.error(at, format!("Rhai: {}", e.message)));
                None
            }
        }
    }

    fn pos_in_scalar(&self, path: &[PathSeg], src: &str, e: &RuleError) -> Pos {
        let spans = &self.file.doc.spans;
        let (line, col) = (e.line.unwrap_or(1), e.col.unwrap_or(1));
        match spans.get(path).and_then(|s| s.style) {
            Some(ScalarStyle::Inline { .. }) => {
                let offset: usize = src
                    .split_inclusive('\n')
                    .take(line - 1)
                    .map(str::len)
                    .sum::<usize>()
                    + src
                        .lines()
                        .nth(line - 1)
                        .map_or(0, |l| l.chars().take(col - 1).map(char::len_utf8).sum());
                spans.offset_pos(path, src, offset)
            }
            Some(ScalarStyle::Block) => {
                // A block scalar's text starts on the line after its indicator, indented.
                let start = spans.value_pos(path);
                let file_line = start.line + line;
                let indent = self
                    .file
                    .file
                    .text
                    .lines()
                    .nth(file_line - 1)
                    .map_or(0, |l| l.chars().take_while(|c| *c == ' ').count());
                Pos {
                    line: file_line,
                    col: indent + col,
                }
            }
            None => spans.value_pos(path),
        }
    }

    fn jsonpath(&mut self, path: &[PathSeg], src: &str) -> Option<JsonPath> {
        match JsonPath::parse(src) {
            Ok(p) => Some(p),
            Err(e) => {
                let at = self.file.doc.spans.offset_pos(path, src, e.offset);
                self.diags.push(
                    self.file
                        .error(at, format!("JSONPath `{src}`: {}", e.message)),
                );
                None
            }
        }
    }
}

fn compile_pipeline(
    cx: &mut StepCx<'_>,
    spec: PipelineFile,
    claims: &mut SourceClaims,
) -> Option<Flow> {
    let file = cx.file;
    check_name(file, &spec.pipeline, "pipeline", cx.diags);
    let errors_before = cx.diags.errors().count();

    let source = cx.section::<Source>(&spec.source, &[key("source")]);
    let webhook = source
        .as_ref()
        .and_then(|source| check_source(cx, source, claims))
        .map(Arc::new);
    let trigger = spec
        .trigger
        .as_ref()
        .and_then(|t| cx.expr(&[key("trigger"), key("when")], &t.when));
    if spec.steps.is_empty() {
        cx.error_at(&[key("steps")], "a pipeline needs at least one step", None);
    }
    let mut need = NeedBuilder {
        need: Need::default(),
        open: true,
    };
    if let Some(t) = &spec.trigger {
        need.add(|n| n.add_rhai(&t.when));
    }
    let mut steps = compile_steps(cx, &spec.steps, &[key("steps")], Some(&mut need));
    mark_movable_payloads(&mut steps);
    let need = crate::projection::BodyParser::new(if cx.reads_event_body {
        Need::All
    } else {
        need.finish()
    });
    let on_error = match &spec.on_error {
        Some(raw) => {
            let on_error = cx.section::<OnErrorConfig>(raw, &[key("on_error")]);
            if let Some(o) = &on_error {
                check_on_error(cx, o);
            }
            on_error
        }
        None => None,
    };

    if cx.diags.errors().count() > errors_before {
        return None;
    }
    Some(Flow {
        name: spec.pipeline,
        description: spec.description,
        file: file.file.path.clone(),
        source: source?,
        on_error,
        concurrency: spec.concurrency.filter(|n| *n > 0),
        trigger,
        steps,
        need,
        webhook,
    })
}

/// What sources of earlier pipelines hold, where two pipelines cannot share: a webhook path,
/// a watched folder (two file sources would race to move the same drop). Values are the
/// holder's `file:line:col`.
#[derive(Default)]
struct SourceClaims {
    webhook_paths: HashMap<String, String>,
    folders: HashMap<String, String>,
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
fn check_source(
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
                    .with_help(
                        "anyone who can reach the port can post events to it; add the sender's \
                         signature check, e.g. `verify: { scheme: shopify, secret: \
                         \"${SHOPIFY_WEBHOOK_SECRET}\" }` (schemes: standard-webhooks, \
                         bigcommerce, shopify, stripe, github, hmac-sha256)",
                    );
                cx.diags.push(d);
            }
            if let Some(other) = claims.webhook_paths.get(&w.path) {
                let other = other.clone();
                cx.error_at(
                    &at,
                    format!("webhook path `{}` is already used at {other}", w.path),
                    None,
                );
            } else {
                claims.webhook_paths.insert(w.path.clone(), here(cx, &at));
            }
            let mut scheme = None;
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
                if tolerance_ok {
                    match crate::verify::build(v) {
                        Ok(built) => scheme = Some(built),
                        Err(e) => {
                            let at = [&base[..], &[key("verify")]].concat();
                            cx.error_at(&at, format!("verify: {e}"), None);
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
            return Some(Webhook { scheme, dedup_id });
        }
        Source::Poll(p) => {
            let at = [&base[..], &[key("connector")]].concat();
            check_connector_op(cx, &at, &p.connector, &p.op);
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
            if p.batch_size == Some(0) {
                cx.error_at(
                    &[&base[..], &[key("batch_size")]].concat(),
                    "batch_size must be at least 1",
                    None,
                );
            }
        }
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
                cx.error_at(
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
fn check_server(
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
        ("state", "min_free", &state.min_free),
        ("state", "cache", &state.cache),
    ];
    for (section, name, value) in sizes {
        let Some(text) = value else { continue };
        if let Err(e) = crate::config::model::parse_size(text) {
            let at = file.doc.spans.value_pos(&[key(section), key(name)]);
            diags.push(file.error(at, e));
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

fn check_on_error(cx: &mut StepCx<'_>, on_error: &OnErrorConfig) {
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

/// Checks that `name` is a connector and `op` one of its operations (for poll sources).
fn check_connector_op(cx: &mut StepCx<'_>, path: &[PathSeg], name: &str, op: &str) {
    let conn = match cx.connectors.get(name) {
        Some(Some(conn)) => conn,
        Some(None) => return,
        None if !cx.connectors_known => return,
        None => {
            let help = did_you_mean(name, cx.connectors.keys().map(String::as_str));
            cx.error_at(
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
        cx.error_at(
            &op_path,
            format!("connector `{name}` has no operation `{op}`"),
            None,
        );
    }
}

/// Compiles a list of steps. `need` is given for the pipeline's top-level steps, to learn what
/// they read of the body.
fn compile_steps(
    cx: &mut StepCx<'_>,
    steps: &[serde_json::Value],
    base: &[PathSeg],
    mut need: Option<&mut NeedBuilder>,
) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    for (i, raw) in steps.iter().enumerate() {
        let mut path = base.to_vec();
        path.push(PathSeg::Index(i));
        let Some(step) = cx.section::<StepConfig>(raw, &path) else {
            continue;
        };
        if let StepConfig::Script(name) = &step {
            let src = cx.script_sources.get(name).copied().unwrap_or_default();
            cx.reads_event_body |= reads_event_body(src);
        }
        if let Some(need) = need.as_deref_mut() {
            add_step_reads(cx, &step, need);
        }
        let label_path = crate::config::span::display_path(&path);
        path.push(key(step.kind()));
        if let Some(s) = compile_step(cx, &step, &path, &label_path) {
            out.push(s);
        }
    }
    out
}

/// A flow's closing `send`s read a record that nothing changes or reads after them, so when
/// the caller does not want the final record (the runtime delivers actions and drops it),
/// their payloads can be moved out of it instead of copied: the copies were the largest
/// single cost of a flow in allocations. Only payloads named by a plain path (`$.account`,
/// `$.order.lines`) qualify, and only when no other closing send's payload contains or is
/// contained in theirs; one closing send of anything else (the whole record, a filter) keeps
/// every copy.
fn mark_movable_payloads(steps: &mut [Step]) {
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
        let names = send
            .payload
            .as_ref()
            .and_then(|p| crate::projection::simple_path(p.as_str()))
            .and_then(|steps| {
                steps
                    .into_iter()
                    .map(|s| match s {
                        crate::projection::PathStep::Name(n) => Some(n),
                        crate::projection::PathStep::Elements => None,
                    })
                    .collect::<Option<Vec<String>>>()
            })
            .filter(|names| !names.is_empty());
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
                    cx.error_at(
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
                        cx.error_at(&[path, &[key("into")]].concat(), e, None);
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
            Some(s) => Some(Step::Script {
                label: format!("{at} (script {name})").into(),
                script: s.clone()?,
            }),
            None => {
                let help = did_you_mean(name, cx.scripts.keys().map(String::as_str))
                    .or_else(|| Some(format!("expected a file scripts/{name}.rhai")));
                cx.error_at(path, format!("no script named `{name}`"), help);
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
        StepConfig::Set(fields) => {
            let (out, ok) = compile_values(cx, fields, path, true);
            ok.then(|| Step::Set {
                label: format!("{at} (set)").into(),
                fields: out,
            })
        }
        StepConfig::Fetch(f) => {
            check_connector_op(cx, &[path, &[key("from")]].concat(), &f.from, &f.op);
            let (params, mut ok) =
                compile_values(cx, &f.params, &[path, &[key("params")]].concat(), false);
            let into = match &f.into {
                Some(into) => match FieldPath::parse(into) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        cx.error_at(&[path, &[key("into")]].concat(), e, None);
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
                    cx.error_at(
                        &[path, &[key("to")]].concat(),
                        format!("no connector named `{}`", s.to),
                        help,
                    );
                    ok = false;
                }
                Some(Some(conn)) => {
                    cx.used_connectors.push(s.to.clone());
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
                cx.error_at(&fpath, e, None);
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

/// Unset `${VAR}`s: warnings for `check`, errors with `--strict`, and errors at `run` for the
/// connectors pipelines actually use (a run without them would fail on the first event).
///
/// A connector with `unconfigured: OTHER` is allowed its unset variables: they are not reported
/// but returned, and its calls go to OTHER until they are set.
fn report_env(
    sources: &ProjectSources,
    opts: CompileOptions,
    used: &[String],
    fallbacks: &BTreeMap<String, String>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, super::Unconfigured> {
    let mut unconfigured: BTreeMap<String, super::Unconfigured> = BTreeMap::new();
    let project = sources.project.iter().map(|f| (f, true));
    let others = sources
        .pipelines
        .iter()
        .chain(&sources.mappings)
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
                    .or_insert_with(|| super::Unconfigured {
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
            diags.push(d.with_help(format!("export {var}=..., or write ${{{var}:-default}}")));
        }
    }
    unconfigured
}

/// Adds what one top-level step reads of the body (see [`NeedBuilder`]).
fn add_step_reads(cx: &StepCx<'_>, step: &StepConfig, need: &mut NeedBuilder) {
    match step {
        StepConfig::Map(m) => {
            match cx
                .mappings
                .get(&m.mapping)
                .cloned()
                .flatten()
                .and_then(|m| m.reads())
            {
                Some(paths) => need.add(|n| paths.iter().for_each(|p| n.add_jsonpath(p.as_str()))),
                None => need.all(),
            }
            if m.into.is_none() {
                need.open = false;
            }
        }
        StepConfig::Script(name) => {
            let src = cx.script_sources.get(name).copied().unwrap_or_default();
            need.add(|n| n.add_rhai(src));
        }
        StepConfig::Filter(src) => need.add(|n| n.add_rhai(src)),
        StepConfig::Set(fields) => {
            for value in fields.values() {
                match set_value_kind(value) {
                    Some(("expr", src)) => need.add(|n| n.add_rhai(src)),
                    Some((_, src)) => need.add(|n| n.add_jsonpath(src)),
                    None => {}
                }
            }
        }
        StepConfig::Send(s) => match &s.payload {
            Some(p) => need.add(|n| n.add_jsonpath(p)),
            None => need.all(),
        },
        StepConfig::Fetch(f) => {
            for value in f.params.values() {
                match set_value_kind(value) {
                    Some(("expr", src)) => need.add(|n| n.add_rhai(src)),
                    Some((_, src)) => need.add(|n| n.add_jsonpath(src)),
                    None => {}
                }
            }
            // Without `into` the answer replaces the record: later steps read it, not the body.
            if f.into.is_none() {
                need.open = false;
            }
        }
        // Arms may replace the record or not; not worth following.
        StepConfig::Switch(_) => need.all(),
    }
}
