//! The `http` connector: a REST API described in YAML — base URL, headers, auth and named
//! operations — so integrating a new API needs no Rust.
//!
//! Owns turning one call into one HTTP request: the operation's path with `{name}`
//! placeholders filled from the payload, the rest of the payload as query parameters (GET,
//! DELETE) or as the JSON body (POST, PUT, PATCH), the configured headers and auth. Failures
//! are classified by the generic rules in `classify`; OAuth 2.0 tokens come from `oauth2`.
//! A call is made once, or twice when an OAuth 2.0 or rotating token is refused: retries are
//! the runtime's.
//!
//! The marketplace options live in files of their own: request signing (`sign/`), rotating
//! refresh tokens (`rotate/`), the shared request rate (`limit.rs`) and errors inside HTTP
//! 200 answers (`answer.rs`). Each is compiled once, by [`Extras::compile`], for `check` and
//! for the live connector alike.
//!
//! This file is the connector kind (`check`, dry runs, build) and those options compiled; the
//! YAML model is `config.rs`, the live connector and its calls `connector.rs`, and splitting
//! paths and templates into text and placeholders `path.rs`.

mod answer;
mod config;
mod connector;
mod limit;
mod path;
mod rotate;
pub mod sign;

use std::path::Path;
use std::sync::Arc;

use super::target::SchemaFile;
use super::{
    check_op, check_tls, BuildContext, BuildError, ConfigProblem, Connector, ConnectorKind,
    SendProblem, SendShape,
};
use answer::BodyErrors;
use limit::Limiter;
use rotate::Rotating;
use sign::Signer;

pub use config::{ClientAuth, HttpAuth, HttpConfig, Method, OAuth2ClientCredentials, Operation};
use connector::HttpConnector;
use path::{parse_path, parse_template, Piece};

impl ConnectorKind for HttpConfig {
    fn kind(&self) -> &'static str {
        "http"
    }
    fn operations(&self) -> Vec<String> {
        self.operations.keys().cloned().collect()
    }
    fn check_config(&self, root: &Path) -> Vec<ConfigProblem> {
        let mut problems = check_tls(root, self.tls.as_ref());
        if let Err(found) = Extras::compile(self, "check", None) {
            problems.extend(found);
        }
        for (op, spec) in &self.operations {
            let Some(file) = spec.body_schema_file() else {
                continue;
            };
            if let Err(e) = file.load(root) {
                problems.push(ConfigProblem {
                    at: vec!["operations".into(), op.clone().into(), "body_schema".into()],
                    message: format!("body_schema: {e}"),
                });
            }
        }
        problems
    }
    fn describe_call(&self, _op: &str) -> Option<String> {
        let extras = Extras::compile(self, "dry-run", None).ok()?;
        extras
            .signer
            .map(|s| format!("signed: adds {}", s.describe()))
    }
    fn build(&self, name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(HttpConnector::new(self, name, cx)?))
    }
    fn schema_file(&self, _name: &str, send: SendShape<'_>) -> Option<SchemaFile> {
        self.operations.get(send.op)?.body_schema_file()
    }
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        if self.operations.is_empty() {
            return vec![SendProblem {
                field: "op",
                message: format!(
                    "unknown operation `{}`: this http connector declares no operations",
                    send.op
                ),
                help: Some("declare it under `operations:` in crossdock.yaml".into()),
            }];
        }
        check_op(self, send.op)
    }
}

/// The marketplace options of a connector, compiled.
struct Extras {
    signer: Option<Signer>,
    /// The signer of the token request, when `auth.refresh.sign` is set.
    token_signer: Option<Signer>,
    rotating: Option<Rotating>,
    limiter: Option<Limiter>,
    body_errors: Option<BodyErrors>,
}

impl Extras {
    /// Every problem of every option, each located by the keys below the connector's own.
    fn compile(
        config: &HttpConfig,
        name: &str,
        state: Option<Arc<dyn crate::state::StateStore>>,
    ) -> Result<Extras, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut at = |first: &'static str, rest: &[&'static str], message: String| {
            problems.push(ConfigProblem {
                at: std::iter::once(first)
                    .chain(rest.iter().copied())
                    .map(Into::into)
                    .collect(),
                message,
            })
        };
        let has_token = matches!(
            config.auth,
            Some(HttpAuth::Refresh(_) | HttpAuth::Bearer { .. })
        );
        let signer = config.sign.as_ref().and_then(|c| {
            Signer::compile(c, &config.values, has_token)
                .map_err(|p| at("sign", &p.at, format!("sign: {}", p.message)))
                .ok()
        });
        let (rotating, token_signer) = match &config.auth {
            Some(HttpAuth::Refresh(r)) => {
                let compiled = rotate::Compiled::compile(r, &config.base_url, &config.values)
                    .map_err(|(k, m)| at("auth", &["refresh", k], format!("auth.refresh.{k}: {m}")))
                    .ok();
                let token_signer = match (&r.sign, &config.sign) {
                    (None, _) => None,
                    (Some(_), None) => {
                        at(
                            "auth",
                            &["refresh", "sign"],
                            "auth.refresh.sign: the connector has no `sign:` block to sign the \
                             token request with"
                                .into(),
                        );
                        None
                    }
                    (Some(o), Some(base)) => Signer::compile(&o.apply(base), &config.values, false)
                        .map_err(|p| {
                            let m = format!("auth.refresh.sign: {}", p.message);
                            at("auth", &["refresh", "sign"], m)
                        })
                        .ok(),
                };
                (
                    compiled.map(|c| Rotating::new(name, c, state)),
                    token_signer,
                )
            }
            _ => (None, None),
        };
        let limiter = config.rate.as_ref().and_then(|r| {
            Limiter::new(r)
                .map_err(|(k, m)| at("rate", &[k], format!("rate.{k}: {m}")))
                .ok()
        });
        let body_errors = config.body_errors.as_ref().and_then(|b| {
            BodyErrors::compile(b)
                .map_err(|(k, m)| at("body_errors", &[k], format!("body_errors.{k}: {m}")))
                .ok()
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Extras {
            signer,
            token_signer,
            rotating,
            limiter,
            body_errors,
        })
    }
}
