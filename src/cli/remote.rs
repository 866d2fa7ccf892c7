//! Where `crossdock state` and `crossdock dry-run` find the project's state: the sled folder
//! when nothing holds it, else the running engine's admin API ([`Admin`]), whose state reads
//! [`RemoteStore`] turns back into a read-only `StateStore` for the commands' usual code.
//!
//! sled lets one process open the folder at a time, so a locked folder with an engine answering
//! at `server.listen` means that engine serves it (a folder held by another command is waited
//! for, as an open does); a cluster's state is in NATS, never in the folder, so a clustered project always goes
//! through the API; `--url` goes through it too (an engine elsewhere).
//!
//! [`Admin`] is the one client of the admin API in the CLI: `state`, `dry-run`, `dlq` and
//! `inbox` all reach the engine through it, and its failures are [`RemoteError`]s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::Url;
use serde_json::Value;

use crate::config::env::EnvLookup;
use crate::flow::Project;
use crate::state::{SledStore, StateError, StateStore, UpdateFn};

/// Why the state, or the engine that holds it, cannot be reached, or what the engine refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The folder cannot be opened and no engine answers for it.
    #[error("cannot open the state at {}: {reason}{hint}", path.display())]
    Open {
        path: PathBuf,
        reason: StateError,
        hint: &'static str,
    },
    /// The engine must be asked, and there is no token to ask it with.
    #[error(
        "{why}: set CROSSDOCK_ADMIN_TOKEN (the engine's admin token) to reach it through its \
         admin API, or stop the engine"
    )]
    NoToken { why: String },
    #[error("the engine's address {given}: {reason}")]
    Address { given: String, reason: String },
    #[error("{0} cannot be the engine's address")]
    NotABase(Url),
    /// The command's own HTTP client or runtime could not be made.
    #[error("{0}")]
    Client(String),
    #[error("--actor {actor:?}: {source}")]
    Actor {
        actor: String,
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("cannot reach the engine at {base} (give its address with --url): {source}")]
    Unreachable { base: Url, source: reqwest::Error },
    #[error(
        "the engine at {base} refused the admin token ({error}): set CROSSDOCK_ADMIN_TOKEN to \
         the token it was started with"
    )]
    Refused { base: Url, error: String },
    /// The engine has nothing at the address asked (its `error`, or a 404 status).
    #[error("{0}")]
    NotFound(String),
    /// Another refusal: the engine's `error`, or its status.
    #[error("{0}")]
    Answer(String),
    /// A 404 where the route must exist: the engine predates it.
    #[error("the engine at {base} has no /api/{path}: is it an older crossdock?")]
    NoRoute { base: Url, path: String },
}

/// Where the state is.
pub enum Target {
    /// The folder, opened by this command (None: no state yet, which reads as empty).
    Local(Option<Arc<SledStore>>),
    /// A running engine.
    Engine(Arc<Admin>),
}

/// Finds the state of `project`. `writes`: the command writes, so a missing folder is created
/// rather than read as empty.
pub fn locate(
    project: &Project,
    url: Option<&str>,
    actor: Option<&str>,
    env: EnvLookup<'_>,
    writes: bool,
) -> Result<Target, RemoteError> {
    let path = project.root.join(&project.config.state.path);
    if url.is_some() || project.config.cluster.is_some() {
        return Admin::connect(project, url, actor, env, &path)
            .map(|a| Target::Engine(Arc::new(a)));
    }
    if !writes && !path.exists() {
        return Ok(Target::Local(None));
    }
    match SledStore::open_unless_held(&path) {
        Ok(store) => Ok(Target::Local(Some(Arc::new(store)))),
        // Held, and an engine listens where the project says: it is the holder. Ask it.
        Err(_) if path.exists() && listening(&reachable(&project.config.server.listen)) => {
            Admin::connect(project, url, actor, env, &path).map(|a| Target::Engine(Arc::new(a)))
        }
        // Held by another command for a moment, or by an engine listening elsewhere: wait for
        // the lock as long as an open does, then say which.
        Err(_) if path.exists() => match SledStore::open(&path) {
            Ok(store) => Ok(Target::Local(Some(Arc::new(store)))),
            Err(reason) => Err(RemoteError::Open {
                path,
                reason,
                hint: "; if `crossdock run` serves this project on another address than \
                       `server.listen`, give it with --url (and CROSSDOCK_ADMIN_TOKEN)",
            }),
        },
        Err(reason) => Err(RemoteError::Open {
            path,
            reason,
            hint: "",
        }),
    }
}

/// Whether something accepts connections at `addr` (host:port), asked once with a short wait.
fn listening(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    let wait = std::time::Duration::from_millis(500);
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut all| all.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, wait).is_ok())
}

/// A client of the running engine's admin API.
pub struct Admin {
    base: Url,
    token: String,
    actor: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// What a request waits for at most: a stuck engine must not hang the command.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Admin {
    pub(super) fn connect(
        project: &Project,
        url: Option<&str>,
        actor: Option<&str>,
        env: EnvLookup<'_>,
        path: &Path,
    ) -> Result<Admin, RemoteError> {
        let why = if project.config.cluster.is_some() {
            "the project's state is in its cluster".to_string()
        } else if url.is_some() {
            "--url names a running engine".to_string()
        } else {
            format!("a running engine holds the state at {}", path.display())
        };
        let token = env("CROSSDOCK_ADMIN_TOKEN")
            .filter(|t| !t.is_empty())
            .ok_or(RemoteError::NoToken { why })?;
        let given = match url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", reachable(&project.config.server.listen)),
        };
        let base = match Url::parse(&given) {
            Ok(base) => base,
            Err(e) => {
                let reason = e.to_string();
                return Err(RemoteError::Address { given, reason });
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        Ok(Admin {
            base,
            token,
            actor: crate::state::audit::actor_name(actor),
            client,
            rt,
        })
    }

    /// `/api/` and `segments`, each percent-encoded as one path segment (a SKU may hold `/`).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, RemoteError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| RemoteError::NotABase(self.base.clone()))?
            .pop_if_empty()
            .push("api")
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Calls the API; `Ok(None)` for a 404 (nothing stored there).
    pub fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, RemoteError> {
        match self.request(method, segments, query, body) {
            Ok(answer) => Ok(Some(answer)),
            Err(RemoteError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls the API; a 404 is [`RemoteError::NotFound`] with the engine's own words.
    pub fn request(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, RemoteError> {
        let url = self.url(segments, query)?;
        // A name outside ASCII goes as its UTF-8 bytes, which a header may carry.
        let actor =
            reqwest::header::HeaderValue::from_bytes(self.actor.as_bytes()).map_err(|source| {
                RemoteError::Actor {
                    actor: self.actor.clone(),
                    source,
                }
            })?;
        let mut request = self
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .header("x-crossdock-actor", actor);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.rt.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|source| RemoteError::Unreachable {
                    base: self.base.clone(),
                    source,
                })?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(answer);
            }
            let error = answer
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("the engine answered {status}"));
            Err(match status {
                reqwest::StatusCode::NOT_FOUND => RemoteError::NotFound(error),
                reqwest::StatusCode::UNAUTHORIZED => RemoteError::Refused {
                    base: self.base.clone(),
                    error,
                },
                _ => RemoteError::Answer(error),
            })
        })
    }

    /// [`Admin::call`] where a 404 is an error too.
    pub fn must(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, RemoteError> {
        self.call(method, segments, &[], body)?
            .ok_or_else(|| RemoteError::NoRoute {
                base: self.base.clone(),
                path: segments.join("/"),
            })
    }

    pub fn address(&self) -> &str {
        self.base.as_str()
    }
}

/// The address to reach a server listening on `listen`: one that listens everywhere is
/// reached on loopback.
fn reachable(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    }
}

/// Keys remembered by a [`RemoteStore`] at most; past it, reads go to the engine each time.
const CACHE: usize = 100_000;

/// The running engine's state, read key by key through `GET /api/state/key` and remembered:
/// one dry run reads each key once, so its events see one value of it (and a large input does
/// not make a round trip per event). Writes are refused: a dry run writes into an overlay.
pub struct RemoteStore {
    admin: Arc<Admin>,
    seen: Mutex<HashMap<String, Option<Value>>>,
}

impl RemoteStore {
    pub fn new(admin: Arc<Admin>) -> RemoteStore {
        RemoteStore {
            admin,
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl StateStore for RemoteStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        if let Some(v) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(v.clone());
        }
        let answer = self
            .admin
            .call(
                reqwest::Method::GET,
                &["state", "key"],
                &[("key", key)],
                None,
            )
            .map_err(|e| StateError::Backend(e.to_string()))?
            .ok_or_else(|| {
                StateError::Backend(format!(
                    "the engine at {} cannot be read key by key: is it an older crossdock?",
                    self.admin.address()
                ))
            })?;
        let value = match answer.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < CACHE {
            seen.insert(key.to_string(), value.clone());
        }
        Ok(value)
    }

    fn update_distinct(&self, _keys: &[String], _f: UpdateFn<'_>) -> Result<Value, StateError> {
        Err(StateError::Backend(
            "the running engine's state is read-only here: write it through its admin API".into(),
        ))
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        Err(StateError::Backend(format!(
            "the running engine's state cannot be listed by prefix (`{prefix}`) through its admin API"
        )))
    }
}
