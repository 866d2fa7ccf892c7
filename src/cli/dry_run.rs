//! `crossdock dry-run`.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use crate::config::diag::did_you_mean;
use crate::config::env::EnvLookup;
use crate::flow::input::{decode, InputFormat};
use crate::flow::{load, CompileOptions, Outcome};
use crate::state::overlay::Overlay;
use crate::state::{MemoryStore, SledStore, StateChange, StateStore};
use crate::testing::{event_info, EventSpec};

pub struct Args<'a> {
    pub project: &'a Path,
    pub pipeline: &'a str,
    pub input: &'a str,
    pub json: bool,
    pub headers: &'a [String],
    pub received_at: Option<&'a str>,
    /// `CONNECTOR.OP=FILE`: answers for fetch steps.
    pub fetch: &'a [String],
    pub env: EnvLookup<'a>,
}

pub fn run(args: Args<'_>) -> ExitCode {
    let project = match load(args.project, args.env, CompileOptions::default()) {
        Ok((project, _)) => project,
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!(
                "{}; fix the project before a dry run (see `crossdock check`)",
                diags.summary()
            );
            return ExitCode::from(1);
        }
    };
    let Some(flow) = project.pipeline(args.pipeline) else {
        let help = did_you_mean(args.pipeline, project.pipelines.keys().map(String::as_str))
            .unwrap_or_else(|| {
                format!(
                    "pipelines: {}",
                    project
                        .pipelines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        eprintln!("no pipeline named `{}`; {help}", args.pipeline);
        return ExitCode::from(1);
    };
    let mut headers = BTreeMap::new();
    for h in args.headers {
        match h.split_once(['=', ':']) {
            Some((k, v)) => {
                headers.insert(k.trim().to_string(), v.trim().to_string());
            }
            None => {
                eprintln!("--header `{h}`: write NAME=VALUE");
                return ExitCode::from(2);
            }
        }
    }
    let bytes = match read_input(args.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.input);
            return ExitCode::from(1);
        }
    };
    // Every event of one dry run is received when the run starts: the output does not depend
    // on how long the events before took.
    let received_at = args
        .received_at
        .map(str::to_string)
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let spec = EventSpec {
        id: None,
        received_at: Some(received_at),
        headers,
    };

    let mut given = crate::flow::GivenAnswers {
        answers: BTreeMap::new(),
        hint: "give it with --fetch CONNECTOR.OP=FILE",
    };
    for f in args.fetch {
        let Some((key, file)) = f.split_once('=') else {
            eprintln!("--fetch `{f}`: write CONNECTOR.OP=FILE");
            return ExitCode::from(2);
        };
        let answer = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()));
        match answer {
            Ok(v) => {
                given.answers.insert(key.trim().to_string(), v);
            }
            Err(e) => {
                eprintln!("--fetch {key}: cannot read {file}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // Reads see the project's state; writes land in an overlay and are only reported.
    let base = project_state(&project);
    let overlay = Arc::new(Overlay::new(base));
    let state: Arc<dyn StateStore> = overlay.clone();
    let mut seen: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let mut mark = 0;
    let mut all_ok = true;
    let format = InputFormat::for_path(args.input, Some(&flow.source));
    let events = decode(&bytes, format);
    let many = events.len() > 1;
    // One write per buffer, not per line: a dry run over a large file prints many.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, decoded) in events.into_iter().enumerate() {
        let event = event_info(&flow.name, Some(&spec), i + 1, "dry-run");
        let mut outcome = flow.run_body(
            &project.rules,
            event,
            decoded.body,
            &decoded.label,
            &state,
            &given,
        );
        let (touched, next) = overlay.changes_since(mark);
        mark = next;
        outcome.state_changes = new_changes(&touched, &mut seen);
        all_ok &= outcome.ok();
        let text = if args.json {
            serde_json::to_string(&outcome).unwrap_or_default()
        } else {
            render(&outcome, many.then_some(decoded.label.as_str()))
        };
        let text = project.redactor.redact(&text);
        if writeln!(out, "{text}").is_err() {
            // The reader went away (`| head`): nothing more can be shown.
            return ExitCode::from(1);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The project's sled state when it exists (a dry run never creates one), else empty.
fn project_state(project: &crate::flow::Project) -> Arc<dyn StateStore> {
    let path = project.root.join(&project.config.state.path);
    if !path.exists() {
        return Arc::new(MemoryStore::default());
    }
    match SledStore::open(&path) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!(
                "warning: state at {} cannot be opened ({e}); this dry run reads an empty state \
(while `crossdock run` serves the project, POST /api/pipelines/NAME/dry-run reads its state)",
                path.display()
            );
            Arc::new(MemoryStore::default())
        }
    }
}

fn read_input(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// The changes the last event made, from the keys it touched: those whose value differs from
/// what the events before it left (or from the store, for a key no event changed yet).
fn new_changes(
    touched: &[StateChange],
    seen: &mut BTreeMap<String, Option<Value>>,
) -> Vec<StateChange> {
    let mut out = Vec::new();
    for c in touched {
        let previous = seen.get(&c.key).unwrap_or(&c.before);
        if *previous != c.after {
            out.push(StateChange {
                key: c.key.clone(),
                before: previous.clone(),
                after: c.after.clone(),
            });
            seen.insert(c.key.clone(), c.after.clone());
        }
    }
    out
}

/// The readable view: the same facts as the JSON, laid out for a person.
fn render(o: &Outcome, label: Option<&str>) -> String {
    let mut s = String::new();
    let from = label.map(|l| format!(" ({l})")).unwrap_or_default();
    s.push_str(&format!("── {} · event {}{from}\n", o.pipeline, o.event_id));
    if !o.triggered {
        if o.errors.is_empty() {
            s.push_str("not triggered: the trigger did not match; the event would be acknowledged and skipped\n");
        }
    } else if o.filtered {
        s.push_str("triggered, then dropped by a filter\n");
    } else {
        s.push_str("triggered\n");
    }
    if o.actions.is_empty() {
        s.push_str("actions: none\n");
    } else {
        s.push_str(&format!("actions ({}):\n", o.actions.len()));
        for (i, a) in o.actions.iter().enumerate() {
            let object = a
                .object
                .as_ref()
                .map(|x| format!(" {x}"))
                .unwrap_or_default();
            let key = a
                .key
                .as_ref()
                .map(|k| format!(" by {k}"))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {}. {} {}{object}{key}\n",
                i + 1,
                a.connector,
                a.op
            ));
            s.push_str(&indent(&pretty(&a.payload), 5));
        }
    }
    if !o.state_changes.is_empty() {
        s.push_str("state changes:\n");
        for c in &o.state_changes {
            let show =
                |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), |v| v.to_string());
            s.push_str(&format!(
                "  {}: {} → {}\n",
                c.key,
                show(&c.before),
                show(&c.after)
            ));
        }
    }
    if o.errors.is_empty() {
        s.push_str("errors: none\n");
    } else {
        s.push_str("errors:\n");
        for e in &o.errors {
            s.push_str(&format!("  {e}\n"));
        }
    }
    s
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}
