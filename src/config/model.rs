//! The typed config: what `crossdock.yaml` and `pipelines/*.yaml` may say.
//!
//! Plain serde structs with `deny_unknown_fields`, deserialised from the documents read by
//! [`super::yaml`]. Nothing here checks references between files or compiles expressions:
//! that is the flow compiler's work, which reports through the span index.
//! (Mapping files have their own model in `crate::mapping::spec`.)

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// How long a dedup key is kept when `server.dedup_window` does not say.
pub const DEFAULT_DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `crossdock.yaml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub state: StateConfig,
    /// Raw here; each connector is deserialised on its own so one mistake hides no other.
    #[serde(default)]
    pub connectors: BTreeMap<String, Value>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `cluster:`: several nodes on NATS JetStream instead of the embedded store alone
    /// (docs/cluster.md).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// `cluster:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub nats: NatsConfig,
    /// This node's name, unique in the cluster (default: the host name). Its own files (the
    /// working copy of the events it runs) go under `state.path`/`{node}`.
    #[serde(default)]
    pub node: Option<String>,
}

/// `cluster.nats:`: where NATS is and how the streams and buckets are made.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port`, several separated by commas.
    pub url: String,
    /// Prefix of every stream and bucket name, so two projects can share one NATS (default
    /// `crossdock`; letters, digits, `-` and `_`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Servers each message and key is stored on (1 to 5, default 1).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// How long a node may hold an event without a sign of life before another gets it
    /// (default `30s`).
    #[serde(default)]
    pub ack_wait: Option<String>,
    /// Events one node holds at once (default 256).
    #[serde(default)]
    pub max_inflight: Option<usize>,
    /// How long to wait for NATS at start and for each acknowledgement (default `5s`).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// An NKey seed (`SU...`), best given as `${NATS_NKEY}`.
    #[serde(default)]
    pub nkey: Option<String>,
    /// A `.creds` file (JWT and seed), relative to the project folder.
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub tls: Option<NatsTlsConfig>,
}

/// `cluster.nats.tls:`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsTlsConfig {
    /// A PEM file of the CA that signed the server's certificate (relative to the project).
    #[serde(default)]
    pub ca: Option<String>,
    /// A client certificate and its key, PEM, for servers that ask for one.
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// `limits:`, what one event may spend; unset keys keep the defaults of
/// `crate::mapping::Limits` (docs/mappings.md).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// JSON nodes one mapping application's queries may visit.
    #[serde(default)]
    pub mapping_nodes: Option<u64>,
    /// Output one mapping application may produce, e.g. `16MB`.
    #[serde(default)]
    pub mapping_output: Option<String>,
    /// Wall-clock time of one mapping application, e.g. `2s`.
    #[serde(default)]
    pub mapping_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest webhook body, e.g. `4MB` (the default), `512KB`.
    #[serde(default)]
    pub max_body: Option<String>,
    /// A delivery whose dedup key was seen within this window is a duplicate (default `24h`).
    #[serde(default)]
    pub dedup_window: Option<String>,
    /// How long a shutdown waits for running events (default `10s`).
    #[serde(default)]
    pub grace: Option<String>,
    /// How long event trails are kept (default `7d`).
    #[serde(default)]
    pub keep_trails: Option<String>,
    /// Bytes of trails kept at most, the oldest going first (default `1GB`).
    #[serde(default, deserialize_with = "size_text")]
    #[schemars(with = "Option<Size>")]
    pub keep_trails_bytes: Option<String>,
    /// Quiet time after the last edit to a project file before the reload (default `100ms`).
    #[serde(default)]
    pub reload_debounce: Option<String>,
    /// Accepted events waiting to be processed above which webhooks answer 503 (default
    /// 100000).
    #[serde(default)]
    pub max_backlog: Option<usize>,
    /// Bytes of body the waiting events may hold above which webhooks answer 503 (default
    /// `256MB`).
    #[serde(default, deserialize_with = "size_text")]
    #[schemars(with = "Option<Size>")]
    pub max_backlog_bytes: Option<String>,
    /// Times an event may be running when the engine stops abnormally before it is
    /// dead-lettered unrun (default 3).
    #[serde(default)]
    pub quarantine_after: Option<u32>,
    /// State keys one event's scripts may write; past it the event fails and keeps none
    /// (default 10000).
    #[serde(default)]
    pub max_event_writes: Option<usize>,
    /// Time to send a request's headers, and to start the next one on a kept-alive connection
    /// (default `10s`).
    #[serde(default)]
    pub header_timeout: Option<String>,
    /// Time to send a request's body once its headers are in (default `30s`).
    #[serde(default)]
    pub body_timeout: Option<String>,
    /// Open HTTP connections at most (default 512).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// How many nice steps (0-19) the threads that run events sit below the threads that
    /// accept webhooks, so that a burst of webhooks gets more of the cores than the events
    /// already accepted, at the cost of a steady load's delivery (default 0: the same
    /// priority). Linux only.
    #[serde(default)]
    #[schemars(range(max = 19))]
    pub work_nice: Option<u8>,
    /// Whether the console may write the project's pipelines, mappings and scripts
    /// (`PUT /api/files/...`, "Save as test case"). Off by default: a production engine runs
    /// the files its deployment put there, and the admin token alone should not change them.
    #[serde(default)]
    pub console_save: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body: None,
            dedup_window: None,
            grace: None,
            keep_trails: None,
            keep_trails_bytes: None,
            reload_debounce: None,
            max_backlog: None,
            max_backlog_bytes: None,
            quarantine_after: None,
            max_event_writes: None,
            header_timeout: None,
            body_timeout: None,
            max_connections: None,
            work_nice: None,
            console_save: false,
        }
    }
}

/// The highest nice value Linux has (the lowest priority): `work_nice` goes up to it.
pub const MAX_NICE: i32 = 19;

/// A size written as text (`128MB`) or as a plain number of bytes (`0`), kept as text for
/// [`parse_size`].
fn size_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Size>::deserialize(d)?.map(|s| match s {
        Size::Text(t) => t,
        Size::Bytes(n) => n.to_string(),
    }))
}

/// The two ways to write a size that [`size_text`] reads (and so the schema describes).
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Size {
    Text(String),
    Bytes(u64),
}

/// Why a size in the config cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size; write e.g. 4MB, 512KB")]
    NotASize(String),
    #[error("`{0}` is not a size unit; use B, KB, MB or GB")]
    UnknownUnit(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses a size such as `4MB`, `512KB`, `1048576` (bytes; KB and MB are 1024-based).
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| SizeError::NotASize(text.to_owned()))?;
    let factor = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1024,
        "MB" | "MIB" | "M" => 1024 * 1024,
        "GB" | "GIB" | "G" => 1024 * 1024 * 1024,
        other => return Err(SizeError::UnknownUnit(other.to_owned())),
    };
    n.checked_mul(factor)
        .ok_or_else(|| SizeError::TooLarge(text.to_owned()))
}

/// A connector's `breaker:`, common to every kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Retryable failures in a row that open the breaker (default 5).
    #[serde(default)]
    pub failures: Option<u32>,
    /// How long it stays open (default `30s`).
    #[serde(default)]
    pub cooldown: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8787".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "default_state_path")]
    pub path: String,
    /// Free bytes on the state's disk below which new events are refused with 503 (default
    /// `128MB`; `0` never refuses for space).
    #[serde(default, deserialize_with = "size_text")]
    #[schemars(with = "Option<Size>")]
    pub min_free: Option<String>,
    /// Memory the store may keep of its pages (default `32MB`).
    #[serde(default, deserialize_with = "size_text")]
    #[schemars(with = "Option<Size>")]
    pub cache: Option<String>,
    /// Writes to the store after which it is closed and opened again even while events keep
    /// coming, to give back the memory it kept (default `300000`; `0`: only after 15 s
    /// without a write). Calls wait for the reopen, a fraction of a second.
    #[serde(default)]
    pub reopen_every: Option<u64>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: default_state_path(),
            min_free: None,
            cache: None,
            reopen_every: None,
        }
    }
}

fn default_state_path() -> String {
    ".crossdock/state".into()
}

/// `pipelines/<name>.yaml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub pipeline: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Sections are kept raw here and deserialised one by one by the compiler, so that a
    /// mistake in one step does not hide the mistakes in the others.
    #[schemars(with = "SourceConfig")]
    pub source: Value,
    /// A poll beside a webhook source that finds what the provider never delivered
    /// (docs/runtime.md, "Catch-up").
    #[serde(default)]
    #[schemars(with = "Option<CatchUpConfig>")]
    pub catch_up: Option<Value>,
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
    #[schemars(with = "Vec<StepConfig>")]
    pub steps: Vec<Value>,
    #[serde(default)]
    #[schemars(with = "Option<OnErrorConfig>")]
    pub on_error: Option<Value>,
    /// Events of this pipeline that run at once (default 16). 1 runs them one at a time in
    /// arrival order, except that an event waiting for a retry lets later ones pass.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Correlation keys: a name (letters, digits, `_`, `-`) and the JSONPath of its value in
    /// the body (a plain path: names and indexes). Read when the event runs and indexed with
    /// its trail, so `GET /api/events?key=NAME:VALUE` finds the events of an order, a SKU or
    /// a customer.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// A JSONPath into the event body naming the entity an event belongs to (`$.id`, an order
    /// id): events with the same value run one at a time, in the order they were accepted,
    /// on one machine and across a cluster. An event without a value there is not ordered.
    #[serde(default)]
    pub ordering_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    pub when: String,
}

/// Where a pipeline's events come from. One key: the source kind.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Webhook(WebhookSource),
    Poll(PollSource),
    Schedule(ScheduleSource),
    File(FileSource),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Webhook(_) => "webhook",
            SourceConfig::Poll(_) => "poll",
            SourceConfig::Schedule(_) => "schedule",
            SourceConfig::File(_) => "file",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    pub path: String,
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
    /// JSONPath to the provider's event id, for deduplication when no header carries one.
    #[serde(default)]
    pub dedup_id: Option<String>,
    /// Which tenants list, and which `{param}` of the path, choose the event's tenant.
    #[serde(default)]
    pub tenants: Option<WebhookTenantsConfig>,
    /// The business dedup key of a delivery: text with `{JSONPath}` fields of the body, e.g.
    /// `"order:{$.data.id}"`; a list is tried in order, the first whose fields are all there
    /// wins. A delivery whose key was seen within the dedup window is a duplicate, whichever
    /// way the first came (a catch-up poll's item included).
    #[serde(default)]
    pub key: Option<KeyTemplates>,
}

/// One key template, or several tried in order.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum KeyTemplates {
    One(String),
    Any(Vec<String>),
}

impl KeyTemplates {
    pub fn list(&self) -> Vec<&str> {
        match self {
            KeyTemplates::One(t) => vec![t.as_str()],
            KeyTemplates::Any(list) => list.iter().map(String::as_str).collect(),
        }
    }
}

/// `catch_up:`: a poll of the same objects as the pipeline's webhook, whose items share the
/// webhook's business key, so an object whose webhook never came is found and one that came
/// both ways is processed once.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatchUpConfig {
    /// The poll: the options of a `poll` source, without `cursor` (`since` replaces it).
    pub poll: PollSource,
    /// The field each call asks "changed since" with, and how far back it looks.
    pub since: CatchUpSince,
    /// Each item's business key, as the webhook's `key` (same text for the same object).
    pub key: KeyTemplates,
}

/// `since: { param: min_date_created, lookback: 2h }`: each poll sends `param` = now minus
/// `lookback`, so consecutive polls overlap and an object is seen more than once; the dedup
/// keys (kept for the dedup window) make the repeats duplicates.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatchUpSince {
    pub param: String,
    pub lookback: String,
    /// How the time is written: `rfc3339` (the default) or `unix` (seconds).
    #[serde(default)]
    pub format: SinceFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinceFormat {
    #[default]
    Rfc3339,
    Unix,
}

/// `tenants: { list: shops, param: shop }` (the path names the tenant) or
/// `tenants: { list: shops, from: $.shop_id, match: shop_id }` (a field of the body does) on a
/// webhook.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTenantsConfig {
    /// The file `tenants/<list>.yaml`.
    pub list: String,
    /// The path parameter whose value is the tenant's id.
    #[serde(default)]
    pub param: Option<String>,
    /// JSONPath into the body to the value that names the tenant.
    #[serde(default)]
    pub from: Option<String>,
    /// The tenant value `from` is compared with; the tenant's id when absent.
    #[serde(default, rename = "match")]
    pub match_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    pub scheme: VerifyScheme,
    pub secret: String,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub encoding: Option<SignatureEncoding>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// Timestamp tolerance, e.g. `5m`, for schemes that sign a timestamp.
    #[serde(default)]
    pub tolerance: Option<String>,
    /// The public URL the provider calls, for schemes that sign it (`shopee`).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The app's public key, for schemes that sign it ahead of the body (`tiktok-shop`,
    /// `lazada`).
    #[serde(default)]
    pub app_key: Option<String>,
}

/// A signature scheme's name (`shopify`, `hmac-sha256`, ...). The schemes are `verify`'s
/// registry, below this module, so the name is checked against it when flows compile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct VerifyScheme(pub String);

impl VerifyScheme {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for VerifyScheme {
    fn from(name: &str) -> Self {
        VerifyScheme(name.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// `poll`: call a connector's operation on a schedule and turn each item of the answer into
/// an event. See docs/config.md for how cursor and pages combine.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollSource {
    pub connector: String,
    pub op: String,
    #[serde(default)]
    pub every: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    /// Fixed fields of every call's payload (query parameters of a GET).
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// JSONPath to the list of items in each answer; the answer itself when absent.
    #[serde(default)]
    pub items: Option<String>,
    #[serde(default)]
    pub cursor: Option<PollCursor>,
    /// How to ask for the next page, when the answer says there is one.
    #[serde(default)]
    pub next: Option<PollNext>,
    /// Items per page: without `next`, a full page means there is more to fetch.
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Offset pagination (Lazada `offset`/`limit`, SFCC `start`/`count`/`total`), or by page
    /// number with `first_page`.
    #[serde(default)]
    pub offset: Option<Box<PollOffset>>,
}

/// Offset pagination: each page is asked from `param` = the number of items before it, with
/// `size_param` = `size`; a short page, or reaching `total`, ends the poll.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollOffset {
    pub param: String,
    pub size: u32,
    #[serde(default)]
    pub size_param: Option<String>,
    /// JSONPath into the answer to the number of items in all.
    #[serde(default)]
    pub total: Option<String>,
    /// Pages by number instead: `param` is the page's number, counting from this one (SAP
    /// Commerce OCC `currentPage` from 0, Adobe Commerce `searchCriteria[currentPage]` from 1).
    #[serde(default)]
    pub first_page: Option<u32>,
}

/// Where a poll resumes: the largest `from` value of the items seen so far, kept in the state
/// and sent as `param`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollCursor {
    /// The payload field the cursor value is sent in.
    pub param: String,
    /// JSONPath into each item to the value the cursor advances to (e.g. `$.updated_at`).
    pub from: String,
    /// The value before anything was seen; without it the first call has no cursor field.
    #[serde(default)]
    pub initial: Option<Value>,
}

/// Next-page pagination: `from` (JSONPath into the answer) gives a token sent as `param`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollNext {
    pub from: String,
    pub param: String,
    /// JSONPath into the answer to a flag that says whether there is a next page (Shopee's
    /// `more`); without it, a token means there is.
    #[serde(default)]
    pub more: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSource {
    pub cron: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub path: String,
    pub format: FileFormat,
    #[serde(default)]
    pub delimiter: Option<char>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Jsonl,
}

/// One step. One key: the step kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum StepConfig {
    Map(MapStepConfig),
    Script(String),
    Filter(String),
    Switch(Vec<SwitchArmConfig>),
    Set(serde_json::Map<String, Value>),
    Fetch(FetchConfig),
    Send(SendConfig),
    Each(EachConfig),
}

impl StepConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StepConfig::Map(_) => "map",
            StepConfig::Script(_) => "script",
            StepConfig::Filter(_) => "filter",
            StepConfig::Switch(_) => "switch",
            StepConfig::Set(_) => "set",
            StepConfig::Fetch(_) => "fetch",
            StepConfig::Send(_) => "send",
            StepConfig::Each(_) => "each",
        }
    }
}

/// `map: NAME` or `map: { mapping: NAME, into: FIELD }`.
#[derive(Debug, Clone)]
pub struct MapStepConfig {
    pub mapping: String,
    pub into: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MapStepFull {
    mapping: String,
    #[serde(default)]
    into: Option<String>,
}

/// What `map:` accepts, for the schema: the two forms [`MapStepConfig`]'s `Deserialize` reads.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum MapStepForms {
    Name(String),
    Full(MapStepFull),
}

impl JsonSchema for MapStepConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MapStep".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        MapStepForms::json_schema(g)
    }
}

impl<'de> Deserialize<'de> for MapStepConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MapStepConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping name, or { mapping: NAME, into: FIELD }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MapStepConfig, E> {
                Ok(MapStepConfig {
                    mapping: v.to_string(),
                    into: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapStepConfig, A::Error> {
                let full = MapStepFull::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MapStepConfig {
                    mapping: full.mapping,
                    into: full.into,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One arm of a `switch`: `{ when: EXPR, steps: [...] }` or `{ otherwise: [...] }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchArmConfig {
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<StepConfig>>")]
    pub steps: Option<Vec<Value>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<StepConfig>>")]
    pub otherwise: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    pub to: String,
    pub op: String,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// JSONPath into the record; the whole record when absent.
    #[serde(default)]
    pub payload: Option<String>,
}

/// `fetch: { from: CONNECTOR, op: OP, params: { NAME: VALUE }, into: FIELD }`: call a
/// connector and put its answer in the record (under `into`, or as the whole record).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    pub from: String,
    pub op: String,
    /// Values as in `set`: a literal, `{ from: JSONPath }` or `{ expr: RHAI }`.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    #[serde(default)]
    pub into: Option<String>,
}

/// `each: { in: $.lines, as: line, steps: [...] }`: the steps once per element of an array.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EachConfig {
    /// The array: a plain JSONPath of names (`$.order.lines`).
    #[serde(rename = "in")]
    pub items: String,
    /// The field of each element's record that holds the element; `item` when absent.
    #[serde(default, rename = "as")]
    pub item: Option<String>,
    /// At most this many elements (default 1000); more fail the step.
    #[serde(default)]
    pub max: Option<usize>,
    /// A field for the elements' final records, as an array.
    #[serde(default)]
    pub into: Option<String>,
    #[schemars(with = "Vec<StepConfig>")]
    pub steps: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnErrorConfig {
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    #[serde(default = "yes")]
    pub dead_letter: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub initial: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Exponential,
    Fixed,
}
