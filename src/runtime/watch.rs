//! The file watcher behind hot reload: edits to crossdock.yaml, pipelines/, mappings/ and
//! scripts/ reload the project once the edits have stopped for a moment.
//!
//! Watched: the project folder itself, not recursively (crossdock.yaml, and the three folders
//! appearing or being replaced), and each of the three folders recursively. Not the whole tree:
//! the state folder changes on every event and a `target/` folder can hold a million files.
//! Anything else that changes is ignored.
//!
//! Debounce: every relevant change restarts a short quiet period; the reload runs when it
//! ends. An editor that writes a temporary file and renames it over the original, or a burst
//! of saves (a `git checkout`), gives one reload. A reload that finds the same content hash as
//! the running version changes nothing, so spurious events cost one hash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Runtime;

const FOLDERS: [&str; 3] = ["pipelines", "mappings", "scripts"];

/// Starts watching `root`; the watcher lives as long as the returned value.
pub fn start(runtime: Arc<Runtime>, root: &Path, debounce: Duration) -> notify::Result<Watch> {
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let root = root.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !changes(&event.kind) {
                return;
            }
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(&root, RecursiveMode::NonRecursive)?;
    let mut watching = Vec::new();
    for folder in FOLDERS {
        let dir = root.join(folder);
        if dir.is_dir() {
            watcher.watch(&dir, RecursiveMode::Recursive)?;
            watching.push(dir);
        }
    }
    let watch = Watch {
        _watcher: Arc::new(std::sync::Mutex::new(watcher)),
    };
    tokio::spawn(debounced(
        runtime,
        root,
        rx,
        debounce,
        watch.clone(),
        watching,
    ));
    Ok(watch)
}

/// Keeps the OS watcher alive.
#[derive(Clone)]
pub struct Watch {
    _watcher: Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
}

/// Can an event of this kind change a file? Not an open or a read: a reload reads every
/// project file, and counting those opens (inotify reports them) made each reload schedule
/// the next, for ever.
fn changes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Is a change at `path` one that can change the project?
fn relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let mut parts = rel.components();
    let Some(first) = parts.next() else {
        return false;
    };
    let first = first.as_os_str().to_string_lossy();
    first == "crossdock.yaml" || FOLDERS.contains(&first.as_ref())
}

async fn debounced(
    runtime: Arc<Runtime>,
    root: PathBuf,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    debounce: Duration,
    watch: Watch,
    mut watching: Vec<PathBuf>,
) {
    while let Some(path) = rx.recv().await {
        if !relevant(&root, &path) {
            continue;
        }
        // Quiet period: every further relevant change starts it again. Other changes do not,
        // so a file written often elsewhere under the root cannot hold a reload back for ever.
        let mut quiet_until = tokio::time::Instant::now() + debounce;
        loop {
            match tokio::time::timeout_at(quiet_until, rx.recv()).await {
                Ok(Some(p)) => {
                    if relevant(&root, &p) {
                        quiet_until = tokio::time::Instant::now() + debounce;
                    }
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        // A folder created (or replaced) since the start is watched from now on.
        for folder in FOLDERS {
            let dir = root.join(folder);
            if dir.is_dir() && !watching.contains(&dir) {
                let added = watch
                    ._watcher
                    .lock()
                    .map(|mut w| w.watch(&dir, RecursiveMode::Recursive));
                if let Ok(Ok(())) = added {
                    watching.push(dir);
                }
            }
        }
        let _ = runtime.reload("file change").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_project_files_count() {
        let root = Path::new("/p");
        assert!(relevant(root, Path::new("/p/crossdock.yaml")));
        assert!(relevant(root, Path::new("/p/pipelines/a.yaml")));
        assert!(relevant(root, Path::new("/p/scripts/x/y.rhai")));
        assert!(relevant(root, Path::new("/p/mappings")));
        assert!(!relevant(root, Path::new("/p/.crossdock/state/db")));
        assert!(!relevant(root, Path::new("/p/target/debug/x")));
        assert!(!relevant(root, Path::new("/elsewhere/crossdock.yaml")));
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
        assert!(!changes(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes(&EventKind::Create(CreateKind::File)));
    }
}
