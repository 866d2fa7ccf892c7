//! The cluster backend: several crossdock nodes sharing one NATS JetStream (docs/cluster.md).
//!
//! This module owns the connection to NATS, the names and settings of the streams, consumer
//! and key-value buckets (created at start when missing), publishing an accepted event to the
//! inbox stream and taking events from its shared consumer ([`inbox`]), the [`StateStore`] on
//! a key-value bucket with its locking protocol ([`state`]), the node registry and leases
//! ([`nodes`]), the dead letters, trails and progress of events every node reads
//! ([`records`]), and the index that lists and finds them ([`events`]). It must not know about flows, HTTP or the runtime's workers: the runtime
//! (`runtime::cluster`) drives it.
//!
//! async-nats 0.40 is used without the `server_2_10`/`server_2_11` features, and nothing here
//! needs more than nats-server 2.9 offers (no per-message TTL, no several filter subjects):
//! expiry is a bucket's `max_age`, dedup the stream's `duplicate_window`.
//!
//! [`StateStore`]: crate::state::StateStore

pub mod events;
pub mod inbox;
pub mod nodes;
pub mod records;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::config::model::ClusterConfig;

/// Why the cluster could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot read the NATS credentials file {path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("cannot set up JetStream {what} `{name}` (is JetStream enabled on the server, `-js`?): {message}")]
    Setup {
        what: &'static str,
        name: String,
        message: String,
    },
    #[error("NATS did not acknowledge in time or refused: {0}")]
    Unavailable(String),
    #[error("a message on the inbox stream is malformed: {0}")]
    Malformed(String),
}

/// `cluster:` with defaults filled in and durations read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub prefix: String,
    pub replicas: usize,
    pub ack_wait: Duration,
    pub max_inflight: usize,
    pub timeout: Duration,
    pub node: String,
    auth: Auth,
    tls: Option<Tls>,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Token(String),
    User(String, String),
    Nkey(String),
    Credentials(PathBuf),
}

#[derive(Debug, Clone)]
struct Tls {
    ca: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

impl Settings {
    /// Reads `cluster:` as `check` validated it; `root` is the project folder (files named in
    /// it are relative to it).
    pub fn from_config(root: &Path, config: &ClusterConfig) -> Settings {
        let nats = &config.nats;
        let duration = |s: &Option<String>, default: u64| {
            s.as_deref()
                .and_then(|t| humantime::parse_duration(t).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(default))
        };
        let auth = if let Some(t) = &nats.token {
            Auth::Token(t.clone())
        } else if let (Some(u), Some(p)) = (&nats.user, &nats.password) {
            Auth::User(u.clone(), p.clone())
        } else if let Some(n) = &nats.nkey {
            Auth::Nkey(n.clone())
        } else if let Some(c) = &nats.credentials {
            Auth::Credentials(root.join(c))
        } else {
            Auth::None
        };
        let tls = nats.tls.as_ref().map(|t| Tls {
            ca: t.ca.as_ref().map(|p| root.join(p)),
            client: t
                .cert
                .as_ref()
                .zip(t.key.as_ref())
                .map(|(c, k)| (root.join(c), root.join(k))),
        });
        Settings {
            url: nats.url.clone(),
            prefix: nats.prefix.clone().unwrap_or_else(|| "crossdock".into()),
            replicas: nats.replicas.unwrap_or(1).clamp(1, 5),
            ack_wait: duration(&nats.ack_wait, 30),
            max_inflight: nats.max_inflight.unwrap_or(256).max(1),
            timeout: duration(&nats.timeout, 5),
            node: config.node.clone().unwrap_or_else(host_name),
            auth,
            tls,
        }
    }

    /// The URL without credentials, as `/health` and logs show it.
    pub fn shown_url(&self) -> String {
        self.url
            .split(',')
            .map(str::trim)
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &u[..s + 3], &u[at + 1..]),
                _ => u.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn inbox_stream(&self) -> String {
        format!("{}_inbox", self.prefix)
    }

    pub fn inbox_subject(&self) -> String {
        format!("{}.inbox", self.prefix)
    }

    /// The one durable consumer every node pulls from.
    pub fn consumer(&self) -> String {
        "workers".into()
    }

    pub fn bucket(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    /// Opens a connection with these settings; `tag` names it on the server (`nats-server`'s
    /// connection list shows which node and which part of it).
    pub async fn connect(&self, tag: &str) -> Result<async_nats::Client, ClusterError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("crossdock {} {tag}", self.node))
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            // A lost server is looked for every few seconds at most, for ever: the node
            // answers 503 meanwhile and recovers by itself when NATS is back.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .max_reconnects(None);
        opts = match &self.auth {
            Auth::None => opts,
            Auth::Token(t) => opts.token(t.clone()),
            Auth::User(u, p) => opts.user_and_password(u.clone(), p.clone()),
            Auth::Nkey(n) => opts.nkey(n.clone()),
            Auth::Credentials(path) => {
                opts.credentials_file(path)
                    .await
                    .map_err(|e| ClusterError::Credentials {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
            }
        };
        if let Some(tls) = &self.tls {
            opts = opts.require_tls(true);
            if let Some(ca) = &tls.ca {
                opts = opts.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.client {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let urls: Vec<&str> = self.url.split(',').map(str::trim).collect();
        let connect = opts.connect(urls.as_slice());
        match tokio::time::timeout(self.timeout.saturating_mul(2), connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(ClusterError::Connect {
                url: self.shown_url(),
                message: e.to_string(),
            }),
            Err(_) => Err(ClusterError::Connect {
                url: self.shown_url(),
                message: format!("no answer within {}s", self.timeout.as_secs() * 2),
            }),
        }
    }

    /// A JetStream context whose requests wait at most `timeout`.
    pub fn jetstream(&self, client: async_nats::Client) -> jetstream::Context {
        let mut js = jetstream::new(client);
        js.set_timeout(self.timeout);
        js
    }

    /// A key-value bucket, created when missing. Values are kept one deep (`history: 1`):
    /// revisions are for compare-and-set, not for reading the past.
    pub async fn bucket_store(
        &self,
        js: &jetstream::Context,
        what: &str,
        max_age: Duration,
    ) -> Result<kv::Store, ClusterError> {
        let name = self.bucket(what);
        if let Ok(store) = js.get_key_value(&name).await {
            return Ok(store);
        }
        js.create_key_value(kv::Config {
            bucket: name.clone(),
            history: 1,
            max_age,
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::Setup {
            what: "key-value bucket",
            name,
            message: e.to_string(),
        })
    }
}

/// Milliseconds since the epoch, as locks, leases and the node registry stamp them.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The host's name, for a node that names itself nowhere.
fn host_name() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if name.is_empty() {
        "node".into()
    } else {
        name
    }
}

/// `cluster:` with nothing but a URL and a node name, for tests.
#[cfg(test)]
pub(crate) fn test_config(url: &str, node: &str) -> ClusterConfig {
    ClusterConfig {
        nats: crate::config::model::NatsConfig {
            url: url.into(),
            prefix: None,
            replicas: None,
            ack_wait: None,
            max_inflight: None,
            timeout: None,
            token: None,
            user: None,
            password: None,
            nkey: None,
            credentials: None,
            tls: None,
        },
        node: Some(node.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ClusterConfig {
        let mut c = test_config(url, "n1");
        c.nats.ack_wait = Some("10s".into());
        c
    }

    #[test]
    fn defaults_and_names() {
        let s = Settings::from_config(Path::new("/p"), &config("nats://127.0.0.1:4222"));
        assert_eq!(s.prefix, "crossdock");
        assert_eq!(s.replicas, 1);
        assert_eq!(s.ack_wait, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.inbox_stream(), "crossdock_inbox");
        assert_eq!(s.bucket("state"), "crossdock_state");
        assert_eq!(s.node, "n1");
    }

    #[test]
    fn shown_url_hides_credentials() {
        let s = Settings::from_config(
            Path::new("/p"),
            &config("nats://me:secret@a:4222, nats://b:4222"),
        );
        assert_eq!(s.shown_url(), "nats://a:4222,nats://b:4222");
    }
}
