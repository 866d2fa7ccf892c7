//! `crossdock dlq` (list, show, retry and drop dead letters) and `crossdock inbox` (list and drop
//! pending events, accept a reported loss).
//!
//! sled lets one process open the state at a time. When the engine is not running, the
//! command opens the inbox itself (a retried letter then runs at the next start); when it is
//! running, the command asks the engine's admin API instead, with `CROSSDOCK_ADMIN_TOKEN`.
//! `inbox accept-loss` works only on a stopped engine: a running one has nothing to accept.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{json, Value};

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

/// `dlq retry --all`'s filters, as the admin API's `POST /api/dlq/retry` takes them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Matching {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
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
    let base = || {
        url.map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{}", project.config.server.listen))
    };
    // A cluster's dead letters are in NATS, never in the folder: any node's admin API answers.
    let clustered = project.config.cluster.is_some() && !matches!(action, Action::AcceptLoss);
    let opened = if clustered {
        None
    } else {
        Some(SledStore::open(&path))
    };
    let answer = match opened {
        None => remote(&base(), &action, env),
        Some(Ok(store)) => local(Arc::new(store), &path, &action),
        Some(Err(_)) if path.exists() && matches!(action, Action::AcceptLoss) => Err(
            "the state is in use (is the engine running?): stop it first; a running engine has \
             no reported loss to accept"
                .to_string(),
        ),
        // Locked: the engine has it open. Ask the engine.
        Some(Err(_)) if path.exists() => remote(&base(), &action, env),
        Some(Err(e)) => Err(format!("cannot open the state at {}: {e}", path.display())),
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

fn remote(engine: &str, action: &Action, env: EnvLookup<'_>) -> Result<Value, String> {
    let token = env("CROSSDOCK_ADMIN_TOKEN").filter(|t| !t.is_empty()).ok_or_else(|| {
        "the engine is running and holds the state: set CROSSDOCK_ADMIN_TOKEN to reach its admin API"
            .to_string()
    })?;
    let root = format!("{engine}/api");
    let base = format!("{root}/dlq");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let request = match action {
            Action::List { limit } => client.get(format!("{base}?limit={limit}")),
            Action::Show { id } => client.get(format!("{base}/{id}")),
            Action::Retry { id, full } => client.post(format!("{base}/{id}/retry?full={full}")),
            Action::RetryAll { filter, full } => {
                let mut body = serde_json::to_value(filter).map_err(|e| e.to_string())?;
                body["full"] = json!(full);
                client.post(format!("{base}/retry")).json(&body)
            }
            Action::Drop { id, undo } => client.delete(format!("{base}/{id}?undo={undo}")),
            Action::InboxList { limit } => client.get(format!("{root}/inbox?limit={limit}")),
            Action::InboxDrop { id } => client.delete(format!("{root}/inbox/{id}")),
            Action::AcceptLoss => return Err("accept-loss needs the engine stopped".into()),
        };
        let response = request.bearer_auth(token).send().await.map_err(|e| {
            format!("cannot reach the engine at {engine} (give its address with --url): {e}")
        })?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("the engine answered {status}")))
        }
    })
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
