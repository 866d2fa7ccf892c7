//! `crossdock dlq` (list, show, retry and drop dead letters) and `crossdock inbox` (list and drop
//! pending events, accept a reported loss).
//!
//! sled lets one process open the state at a time. When the engine is not running, the
//! command opens the inbox itself (a retried letter then runs at the next start); when it is
//! running (or `--url` names one), the command asks the engine's admin API instead, with
//! `CROSSDOCK_ADMIN_TOKEN`, through the CLI's one client of it (`remote.rs` decides which).
//! `inbox accept-loss` works only on a stopped engine: a running one has nothing to accept.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use super::remote::{locate, Admin, Target};
use crate::config::env::EnvLookup;
use crate::runtime::inbox::DeadFilter;
use crate::runtime::{FlushPolicy, Inbox};
use crate::state::SledStore;

#[derive(Debug, Clone)]
pub enum Action {
    List { limit: usize },
    Show { id: String },
    Retry { id: String, full: bool },
    RetryAll { filter: Matching, full: bool },
    Drop { id: String, undo: bool },
    InboxList { limit: usize },
    InboxDrop { id: String },
    AcceptLoss,
}

/// `dlq retry --all`'s filters, as its options read them and the admin API's
/// `POST /api/dlq/retry` takes them.
#[derive(Debug, Clone, Default, serde::Serialize, clap::Args)]
pub struct Matching {
    /// With --all: of this pipeline
    #[arg(long, requires = "all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// With --all: whose reason contains this text (case ignored)
    #[arg(long, requires = "all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With --all: dead at or after this time (RFC 3339)
    #[arg(long, requires = "all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// With --all: dead before this time (RFC 3339)
    #[arg(long, requires = "all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// With --all: whose correlation key is NAME:VALUE (order:1001)
    #[arg(long, requires = "all")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Matching {
    fn filter(&self) -> Result<DeadFilter, String> {
        let time = |t: &Option<String>, what: &str| {
            t.as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|e| format!("--{what} `{t}` is not an RFC 3339 time: {e}"))
                })
                .transpose()
        };
        let key = match self.key.as_deref().map(|k| k.split_once(':')) {
            None => None,
            Some(Some((name, value))) if !name.is_empty() && !value.is_empty() => {
                Some((name.to_owned(), value.to_owned()))
            }
            Some(_) => return Err("--key: write NAME:VALUE, such as order:1001".into()),
        };
        Ok(DeadFilter {
            pipeline: self.pipeline.clone(),
            error: self.error.as_deref().map(str::to_lowercase),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            key,
        })
    }
}

/// Dead letters one `retry --all` takes at most, as the admin API does.
const RETRY_ALL_MAX: usize = 1000;

pub fn run(dir: &Path, url: Option<&str>, action: Action, env: EnvLookup<'_>) -> ExitCode {
    let (project, _) = match crate::flow::load(dir, env, Default::default()) {
        Ok(p) => p,
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!("{}", diags.summary());
            return ExitCode::from(1);
        }
    };
    let path = project.root.join(&project.config.state.path);
    // Writes: a missing folder is created (an empty inbox), as the engine would.
    let answer = match locate(&project, url, None, env, true) {
        Ok(Target::Local(store)) => match store {
            Some(store) => local(store, &path, &action),
            None => SledStore::open(&path)
                .map_err(|e| format!("cannot open the state at {}: {e}", path.display()))
                .and_then(|store| local(Arc::new(store), &path, &action)),
        },
        Ok(Target::Engine(_)) if matches!(action, Action::AcceptLoss) => Err(
            "the state is in use (is the engine running?): stop it first; a running engine has \
             no reported loss to accept"
                .to_string(),
        ),
        Ok(Target::Engine(admin)) => remote(&admin, &action),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(value) => {
            println!("{}", project.redactor.redact(&render(&action, &value)));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{}", project.redactor.redact(&message));
            ExitCode::from(1)
        }
    }
}

fn local(store: Arc<SledStore>, path: &Path, action: &Action) -> Result<Value, String> {
    let inbox = Inbox::open(store.clone(), FlushPolicy::Group).map_err(|e| e.to_string())?;
    let value = match action {
        Action::List { limit } => inbox
            .dead_letter_page(None, *limit)
            .map_err(|e| e.to_string())?,
        Action::Show { id } => match inbox.get_dead_letter(id).map_err(|e| e.to_string())? {
            Some(l) => serde_json::to_value(l).map_err(|e| e.to_string())?,
            None => return Err(format!("no dead letter `{id}`")),
        },
        Action::Retry { id, full } => match inbox
            .retry_dead_letter(id, *full)
            .map_err(|e| e.to_string())?
        {
            Some(_) => json!({ "event_id": id, "status": "queued: runs when the engine starts" }),
            None => return Err(format!("no dead letter `{id}`")),
        },
        Action::RetryAll { filter, full } => {
            let (letters, more) = inbox
                .dead_letters_matching(&filter.filter()?, RETRY_ALL_MAX)
                .map_err(|e| e.to_string())?;
            let mut ids = Vec::new();
            for letter in letters {
                if inbox
                    .retry_dead_letter(&letter.event.id, *full)
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    ids.push(letter.event.id);
                }
            }
            json!({ "retried": ids.len(), "event_ids": ids, "more": more,
                    "status": "queued: they run when the engine starts" })
        }
        Action::Drop { id, undo } => {
            let owed = inbox
                .get_dead_letter(id)
                .map_err(|e| e.to_string())?
                .map(|l| l.event.undo)
                .unwrap_or_default();
            if *undo && !owed.is_empty() {
                // Undo steps call connectors and run scripts: the engine's work.
                let steps: Vec<&str> = owed.iter().map(|u| u.step.as_str()).collect();
                return Err(format!(
                    "dead letter `{id}` owes compensations (the `undo:` of {}): drop it while \
                     the engine runs, which runs them first, or with --no-undo to drop it without",
                    steps.join(", ")
                ));
            }
            if inbox.drop_dead_letter(id).map_err(|e| e.to_string())? {
                json!({ "event_id": id, "status": "dropped" })
            } else {
                return Err(format!("no dead letter `{id}`"));
            }
        }
        Action::InboxList { limit } => inbox
            .pending_page(None, *limit)
            .map_err(|e| e.to_string())?,
        Action::InboxDrop { id } => {
            if inbox
                .drop_pending(id, "(dropped by hand)")
                .map_err(|e| e.to_string())?
            {
                json!({ "event_id": id, "status": "dropped" })
            } else {
                return Err(format!("no pending event `{id}`"));
            }
        }
        Action::AcceptLoss => {
            let (before, now) =
                crate::runtime::ledger::accept_loss(&store, path).map_err(|e| e.to_string())?;
            let id = |s: u64| crate::runtime::inbox::event_id(s);
            json!({
                "ledger_was": before.map(id),
                "ledger_now": if now == 0 { None } else { Some(id(now)) },
                "status": "the ledger now agrees with the store; events it lost stay lost",
            })
        }
    };
    store.flush().map_err(|e| e.to_string())?;
    Ok(value)
}

fn remote(admin: &Admin, action: &Action) -> Result<Value, String> {
    // Each route takes one query parameter at most.
    let one = |name: &'static str, value: &dyn ToString| Some((name, value.to_string()));
    let (method, segments, query, body) = match action {
        Action::List { limit } => (Method::GET, vec!["dlq"], one("limit", limit), None),
        Action::Show { id } => (Method::GET, vec!["dlq", id.as_str()], None, None),
        Action::Retry { id, full } => (
            Method::POST,
            vec!["dlq", id.as_str(), "retry"],
            one("full", full),
            None,
        ),
        Action::RetryAll { filter, full } => {
            let mut body = serde_json::to_value(filter).map_err(|e| e.to_string())?;
            body["full"] = json!(full);
            (Method::POST, vec!["dlq", "retry"], None, Some(body))
        }
        Action::Drop { id, undo } => (
            Method::DELETE,
            vec!["dlq", id.as_str()],
            one("undo", undo),
            None,
        ),
        Action::InboxList { limit } => (Method::GET, vec!["inbox"], one("limit", limit), None),
        Action::InboxDrop { id } => (Method::DELETE, vec!["inbox", id.as_str()], None, None),
        Action::AcceptLoss => return Err("accept-loss needs the engine stopped".into()),
    };
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    admin
        .request(method, &segments, &query, body.as_ref())
        .map_err(|e| e.to_string())
}

fn render(action: &Action, value: &Value) -> String {
    match action {
        Action::List { .. } => {
            let items = value.get("items").and_then(Value::as_array);
            let mut out = String::new();
            for item in items.into_iter().flatten() {
                let s = |k: &str| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                out.push_str(&format!(
                    "{}  {}  {}  {}\n",
                    s("event_id"),
                    s("pipeline"),
                    s("dead_at"),
                    s("reason")
                ));
            }
            let total = value.get("total").and_then(Value::as_u64).unwrap_or(0);
            out.push_str(&format!("{total} dead letters"));
            out
        }
        Action::InboxList { .. } => {
            let items = value.get("items").and_then(Value::as_array);
            let mut out = String::new();
            for item in items.into_iter().flatten() {
                let s = |k: &str| match item.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                out.push_str(&format!(
                    "{}  {}  {}  attempts {}  interrupted {}  {} bytes  {}\n",
                    s("event_id"),
                    s("pipeline"),
                    s("received_at"),
                    s("attempts"),
                    s("interrupted"),
                    s("bytes"),
                    s("last_error"),
                ));
            }
            let total = value.get("total").and_then(Value::as_u64).unwrap_or(0);
            let bytes = value.get("bytes").and_then(Value::as_u64).unwrap_or(0);
            out.push_str(&format!("{total} pending events ({bytes} bytes of body)"));
            out
        }
        _ => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}
