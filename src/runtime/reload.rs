//! Reloads: compiling the project again from disk and, when it passes `check`, swapping the new
//! live version in (one reload at a time), keeping the versions run and the last refusal's
//! diagnostics; and compiling an edited file as a reload would, swapping nothing. Must not
//! change a version under a running event: a swap replaces the pointer, never the value.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::live::build_live;
use super::{inbox, metrics, short, versions, Runtime};
use crate::config::diag::Diagnostics;
use crate::config::env::EnvLookup;
use crate::flow::{CompileOptions, Project};

/// A refused reload, as `GET /api/pipelines` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadError {
    pub at: String,
    /// The diagnostics, as `check` prints them.
    pub message: String,
    /// Per file: its diagnostics.
    pub files: BTreeMap<String, Vec<String>>,
}

impl Runtime {
    /// Recompiles the project from disk and, if it passes `check`, swaps it in. On failure the
    /// running version stays and the diagnostics are kept for `GET /api/pipelines`.
    pub async fn reload(&self, why: &str) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let before = self.live().project.version.clone();
        let root = self.root.clone();
        let env = self.env;
        let loaded = tokio::task::spawn_blocking(move || load(&root, &env))
            .await
            .map_err(|e| ReloadError {
                at: inbox::now_rfc3339(),
                message: format!("the reload task failed: {e}"),
                files: BTreeMap::new(),
            });
        let result = match loaded {
            Err(e) => Err(e),
            Ok(loaded) => match loaded {
                Ok((project, _warnings)) => {
                    let old = self.live();
                    if project.version == old.project.version {
                        Ok(project.version.clone())
                    } else {
                        match build_live(project, &self.http, self.state.clone(), Some(&old)) {
                            Ok(live) => {
                                let version = live.project.version.clone();
                                self.versions.push(versions::Version::between(
                                    &old.project.files,
                                    &live.project.files,
                                    &version,
                                    why,
                                    inbox::now_rfc3339(),
                                ));
                                self.live.store(Arc::new(live));
                                self.sources_changed();
                                Ok(version)
                            }
                            // Shaped as `reload_error` shapes `check`'s diagnostics.
                            Err(e) => Err(ReloadError {
                                at: inbox::now_rfc3339(),
                                message: e.to_string(),
                                files: BTreeMap::from([(
                                    crate::config::PROJECT_FILE.to_string(),
                                    vec![format!("{}: {}", e.pos, e.message)],
                                )]),
                            }),
                        }
                    }
                }
                Err(diags) => Err(reload_error(&diags)),
            },
        };
        match &result {
            Ok(version) if *version == before => {
                tracing::debug!(trigger = why, "Reload found nothing changed");
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                metrics::reload_unchanged();
            }
            Ok(version) => {
                tracing::info!(version = %short(version), trigger = why, "Reloaded");
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                metrics::reload(true);
            }
            Err(e) => {
                tracing::error!(
                    trigger = why,
                    "Reload refused; the running version keeps serving:\n{}",
                    e.message
                );
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                metrics::reload(false);
            }
        }
        result
    }

    /// The versions run since the start, newest first (the last [`versions::KEPT`]).
    pub fn versions(&self) -> Vec<versions::Version> {
        self.versions.newest_first()
    }

    /// Compiles the project as a reload would, with `edit`'s text in place of its file;
    /// nothing is swapped in. Blocking: call it off the async threads.
    pub fn compile_edited(
        &self,
        edit: crate::config::Edit<'_>,
    ) -> Result<(Project, Diagnostics), Diagnostics> {
        let env = self.env;
        crate::flow::load_edited(
            &self.root,
            &env,
            CompileOptions {
                strict_env: false,
                for_run: true,
            },
            Some(edit),
        )
    }

    pub fn last_reload_error(&self) -> Option<ReloadError> {
        self.last_reload_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(super) fn load(dir: &Path, env: EnvLookup<'_>) -> Result<(Project, Diagnostics), Diagnostics> {
    crate::flow::load(
        dir,
        env,
        CompileOptions {
            strict_env: false,
            for_run: true,
        },
    )
}

fn reload_error(diags: &Diagnostics) -> ReloadError {
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut message = String::new();
    for d in diags.iter().filter(|d| d.is_error()) {
        files
            .entry(d.file.to_string_lossy().replace('\\', "/"))
            .or_default()
            .push(format!("{}:{}: {}", d.pos.line, d.pos.col, d.message));
        message.push_str(&d.to_string());
        message.push_str("\n\n");
    }
    message.push_str(&diags.summary());
    ReloadError {
        at: inbox::now_rfc3339(),
        message,
        files,
    }
}
