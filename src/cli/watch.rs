//! `--watch` for `test` and `dry-run`: run once, then again after every burst of saves, until
//! Ctrl-C. The engine's own file watcher and debounce (`runtime::watch`, `server.reload_debounce`)
//! decide when a burst is over, so an editor's save gives one run here as it gives one reload
//! in `crossdock run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::run::StopSignals;
use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};
use crate::runtime::watch::{watch_paths, Changed};

/// Runs `once`, then again after each burst of changes to the project or to `extra`; a run
/// that fails (a project that does not pass `check` included) has printed why, and the loop
/// waits for the next save. Exits 0 on Ctrl-C or SIGTERM.
pub fn run(
    project: &Path,
    extra: &[PathBuf],
    env: EnvLookup<'_>,
    mut once: impl FnMut() -> ExitCode,
) -> ExitCode {
    let debounce = debounce(project, env);
    // One worker: the watcher's debounce and the signals run there while `once` runs on this
    // thread, whose stack rules need.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let _in_runtime = rt.enter();
    // Before the first run: a Ctrl-C during it must end the loop, not kill the process.
    let mut signals = StopSignals::listen();
    let (_watch, mut batches) = match watch_paths(project, extra, debounce) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cannot watch {}: {e}", project.display());
            return ExitCode::from(1);
        }
    };
    let root = std::path::absolute(project).unwrap_or_else(|_| project.to_path_buf());
    let _ = once();
    eprintln!("watching for changes; Ctrl-C stops");
    loop {
        let next = rt.block_on(async {
            tokio::select! {
                batch = batches.recv() => batch,
                _ = signals.recv() => None,
            }
        });
        let Some(mut batch) = next else {
            return ExitCode::SUCCESS;
        };
        // Saves made while the last run ran came as batches of their own: one run for all.
        while let Ok(more) = batches.try_recv() {
            batch.paths.extend(more.paths);
        }
        let Some(line) = separator(&root, &batch, &chrono::Local::now().format("%H:%M:%S")) else {
            continue;
        };
        println!("\n{line}");
        let _ = once();
    }
}

/// The debounce `crossdock run` would use for this project: `server.reload_debounce`, or the
/// default when the project does not load (yet).
fn debounce(project: &Path, env: EnvLookup<'_>) -> Duration {
    let settings = crate::runtime::Settings::default();
    match load(project, env, CompileOptions::default()) {
        Ok((loaded, _)) => settings.with_server(&loaded.config.server).reload_debounce,
        Err(_) => settings.reload_debounce,
    }
}

/// The line printed before a run: the time and the files that changed, relative to the
/// project. Editors' and tools' scratch files are left out; None when nothing else changed,
/// so that a swap file appearing does not run anything.
fn separator(root: &Path, batch: &Changed, time: &dyn std::fmt::Display) -> Option<String> {
    let mut names: Vec<String> = Vec::new();
    for path in &batch.paths {
        if is_scratch(path) {
            continue;
        }
        let exists = path.exists();
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let shown = if exists {
            shown
        } else {
            format!("{shown} (removed)")
        };
        if !names.contains(&shown) {
            names.push(shown);
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(format!("── {time} ── changed: {}", names.join(", ")))
}

/// vim's `.x.swp` and `4913`, emacs's `#x#` and `.#x`, `x~` backups, the temporary file
/// `sed -i` renames over its target: hidden, backup or without an extension, which no file
/// the project reads is.
fn is_scratch(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with(['.', '#']) || name.ends_with('~') || path.extension().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_separator_names_what_changed_and_skips_scratch_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("mappings")).unwrap();
        let kept = root.path().join("mappings/order.yaml");
        std::fs::write(&kept, "x").unwrap();
        let batch = Changed {
            paths: vec![
                kept.clone(),
                root.path().join("mappings/4913"),
                root.path().join("mappings/.order.yaml.swp"),
                root.path().join("mappings/sedgDcqKw"),
                root.path().join("mappings/order.yaml~"),
                root.path().join("pipelines/gone.yaml"),
            ],
        };
        assert_eq!(
            separator(root.path(), &batch, &"12:00:00").as_deref(),
            Some("── 12:00:00 ── changed: mappings/order.yaml, pipelines/gone.yaml (removed)")
        );
        let scratch = Changed {
            paths: vec![root.path().join("mappings/4913")],
        };
        assert_eq!(separator(root.path(), &scratch, &"12:00:00"), None);
    }
}
