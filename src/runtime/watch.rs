//! The file watcher behind hot reload: edits to crossdock.yaml, pipelines/, mappings/,
//! scripts/ and tenants/ reload the project once the edits have stopped for a moment.
//!
//! Watched: the project folder itself, not recursively (crossdock.yaml, and the three folders
//! appearing or being replaced), and each of the three folders recursively. Not the whole tree:
//! the state folder changes on every event and a `target/` folder can hold a million files.
//! Anything else that changes is ignored.
//!
//! Debounce: every relevant change restarts a short quiet period; the reload runs when it
//! ends, or at the latest [`MAX_WAIT_FACTOR`] debounces after the first change, so that a file
//! saved over and over cannot hold every reload back. An editor that writes a temporary file
//! and renames it over the original, or a burst of saves (a `git checkout`), gives one reload.
//! A reload that finds the same content hash as the running version changes nothing, so
//! spurious events cost one hash.
//!
//! Paths: notify reports absolute paths (a relative watch is joined to the current folder), so
//! the root is made absolute the same way before event paths are compared with it. A folder
//! that is replaced (renamed away, another renamed in) is watched again: a watch follows the
//! folder it was put on, not its name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Runtime;

const FOLDERS: [&str; 4] = ["pipelines", "mappings", "scripts", "tenants"];

/// A reload waits at most this many debounce periods after the first change of a burst.
const MAX_WAIT_FACTOR: u32 = 10;
/// The longest debounce the watcher honours.
const MAX_DEBOUNCE: Duration = Duration::from_secs(3600);

/// `root` as notify will report it: joined to the current folder when relative.
fn absolute(root: &Path) -> std::io::Result<PathBuf> {
    if root.is_absolute() {
        Ok(root.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(root))
    }
}

/// Starts watching `root`; the watcher lives as long as the returned value.
pub fn start(runtime: Arc<Runtime>, root: &Path, debounce: Duration) -> notify::Result<Watch> {
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let root = absolute(root).map_err(notify::Error::io)?;
    // An absurd `reload_debounce` ("1000000y") would overflow the timer arithmetic below.
    let debounce = debounce.min(MAX_DEBOUNCE);
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
        watcher: Arc::new(std::sync::Mutex::new(watcher)),
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
    watcher: Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
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

/// The project folder that `path` is itself (not a file inside it), if any: a change there
/// means the folder was created, removed or replaced.
fn folder_itself(root: &Path, path: &Path) -> Option<&'static str> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?;
    if parts.next().is_some() {
        return None;
    }
    FOLDERS.into_iter().find(|f| *f == first)
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
        let mut replaced: Vec<&str> = folder_itself(&root, &path).into_iter().collect();
        // Quiet period: every further relevant change starts it again, up to the cap. Other
        // changes do not, so a file written often elsewhere under the root cannot hold a
        // reload back.
        let latest = tokio::time::Instant::now() + debounce * MAX_WAIT_FACTOR;
        let mut quiet_until = tokio::time::Instant::now() + debounce;
        loop {
            match tokio::time::timeout_at(quiet_until.min(latest), rx.recv()).await {
                Ok(Some(p)) => {
                    if relevant(&root, &p) {
                        quiet_until = tokio::time::Instant::now() + debounce;
                        replaced.extend(folder_itself(&root, &p));
                    }
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        // A folder created since the start is watched from now on; one replaced is watched
        // again, at its new self.
        for folder in FOLDERS {
            let dir = root.join(folder);
            let known = watching.contains(&dir);
            if !dir.is_dir() || (known && !replaced.contains(&folder)) {
                continue;
            }
            let added = watch.watcher.lock().map(|mut w| {
                if known {
                    // The old watch names the folder that moved away; its removal can fail
                    // when that folder is gone already, which is what we want anyway.
                    let _ = w.unwatch(&dir);
                }
                w.watch(&dir, RecursiveMode::Recursive)
            });
            match added {
                Ok(Ok(())) if !known => watching.push(dir),
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(folder, error = %e, "Cannot watch the folder"),
                Err(_) => {}
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
        assert_eq!(
            folder_itself(root, Path::new("/p/scripts")),
            Some("scripts")
        );
        assert_eq!(folder_itself(root, Path::new("/p/scripts/a.rhai")), None);
        assert_eq!(folder_itself(root, Path::new("/p/crossdock.yaml")), None);
    }

    #[test]
    fn a_relative_root_compares_as_notify_reports_it() {
        let cwd = std::env::current_dir().unwrap();
        let root = absolute(Path::new(".")).unwrap();
        assert!(relevant(&root, &cwd.join("pipelines/a.yaml")));
        let root = absolute(Path::new("proj")).unwrap();
        assert!(relevant(&root, &cwd.join("proj/crossdock.yaml")));
        assert!(!relevant(&root, &cwd.join("crossdock.yaml")));
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
