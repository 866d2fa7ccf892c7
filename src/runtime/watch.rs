//! The file watcher behind hot reload: edits to crossdock.yaml, pipelines/, mappings/,
//! scripts/ and tenants/ reload the project once the edits have stopped for a moment. The
//! same watcher, with the same debounce, drives `crossdock test --watch` and `dry-run --watch`
//! ([`watch_paths`]): they watch a few more paths (test cases, an input file) and get each
//! burst of changes as one [`Changed`] batch instead of a reload.
//!
//! Watched: the project folder itself, not recursively (crossdock.yaml, and the three folders
//! appearing or being replaced), and each of the three folders recursively. Not the whole tree:
//! the state folder changes on every event and a `target/` folder can hold a million files.
//! Anything else that changes is ignored, save the extra paths a caller names: a folder is
//! watched recursively, a file through its folder (an editor that renames a new file over it
//! would leave a watch on the file itself watching nothing).
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

/// Starts watching `root`; reloads `runtime` after each burst of changes. The watcher lives as
/// long as the returned value.
pub fn start(runtime: Arc<Runtime>, root: &Path, debounce: Duration) -> notify::Result<Watch> {
    let (watch, mut batches) = watch_paths(root, &[], debounce)?;
    tokio::spawn(async move {
        while batches.recv().await.is_some() {
            let _ = runtime.reload("file change").await;
        }
    });
    Ok(watch)
}

/// One burst of changes, once it has been quiet for the debounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The paths that changed (created, written, removed, renamed), each once, sorted;
    /// absolute, as notify reports them.
    pub paths: Vec<PathBuf>,
}

/// Starts watching `root`'s project files and `extra` (folders recursively, files by name;
/// relative paths are taken from the current folder, missing ones are skipped) and sends a
/// [`Changed`] per burst of changes. Must be called inside a tokio runtime; the watcher lives
/// as long as the returned [`Watch`].
pub fn watch_paths(
    root: &Path,
    extra: &[PathBuf],
    debounce: Duration,
) -> notify::Result<(Watch, mpsc::UnboundedReceiver<Changed>)> {
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let root = absolute(root).map_err(notify::Error::io)?;
    // An absurd `reload_debounce` ("1000000y") would overflow the timer arithmetic below.
    let debounce = debounce.min(MAX_DEBOUNCE);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !is_change(&event.kind) {
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
    let mut extras = Extras::default();
    for path in extra {
        let path = absolute(path).map_err(notify::Error::io)?;
        if path.is_dir() {
            watcher.watch(&path, RecursiveMode::Recursive)?;
            extras.folders.push(path);
        } else if let Some(parent) = path.parent().filter(|p| p.is_dir()) {
            watcher.watch(parent, RecursiveMode::NonRecursive)?;
            extras.files.push(path);
        }
    }
    let watch = Watch {
        watcher: Arc::new(std::sync::Mutex::new(watcher)),
    };
    let (batches, out) = mpsc::unbounded_channel();
    tokio::spawn(debounced(
        Target {
            root,
            extras,
            watch: watch.clone(),
            watching,
        },
        rx,
        debounce,
        batches,
    ));
    Ok((watch, out))
}

/// The paths watched besides the project's own.
#[derive(Debug, Default)]
struct Extras {
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Extras {
    fn contain(&self, path: &Path) -> bool {
        self.files.iter().any(|f| f == path) || self.folders.iter().any(|d| path.starts_with(d))
    }
}

/// What the debounce task watches.
struct Target {
    root: PathBuf,
    extras: Extras,
    watch: Watch,
    /// The project folders watched now.
    watching: Vec<PathBuf>,
}

impl Target {
    fn relevant(&self, path: &Path) -> bool {
        relevant(&self.root, path) || self.extras.contain(path)
    }
}

/// Keeps the OS watcher alive.
#[derive(Clone)]
pub struct Watch {
    watcher: Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
}

/// Can an event of this kind change a file? Not an open or a read: a reload reads every
/// project file, and counting those opens (inotify reports them) made each reload schedule
/// the next, for ever.
fn is_change(kind: &notify::EventKind) -> bool {
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
    mut target: Target,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    debounce: Duration,
    batches: mpsc::UnboundedSender<Changed>,
) {
    while let Some(path) = rx.recv().await {
        if !target.relevant(&path) {
            continue;
        }
        let root = target.root.clone();
        let mut replaced: Vec<&str> = folder_itself(&root, &path).into_iter().collect();
        let mut paths = std::collections::BTreeSet::from([path]);
        // Quiet period: every further relevant change starts it again, up to the cap. Other
        // changes do not, so a file written often elsewhere under the root cannot hold a
        // reload back.
        let latest = tokio::time::Instant::now() + debounce * MAX_WAIT_FACTOR;
        let mut quiet_until = tokio::time::Instant::now() + debounce;
        loop {
            match tokio::time::timeout_at(quiet_until.min(latest), rx.recv()).await {
                Ok(Some(p)) => {
                    if target.relevant(&p) {
                        quiet_until = tokio::time::Instant::now() + debounce;
                        replaced.extend(folder_itself(&root, &p));
                        paths.insert(p);
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
            let known = target.watching.contains(&dir);
            if !dir.is_dir() || (known && !replaced.contains(&folder)) {
                continue;
            }
            let added = target.watch.watcher.lock().map(|mut w| {
                if known {
                    // The old watch names the folder that moved away; its removal can fail
                    // when that folder is gone already, which is what we want anyway.
                    let _ = w.unwatch(&dir);
                }
                w.watch(&dir, RecursiveMode::Recursive)
            });
            match added {
                Ok(Ok(())) if !known => target.watching.push(dir),
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(folder, error = %e, "Cannot watch the folder"),
                Err(_) => {}
            }
        }
        let changed = Changed {
            paths: paths.into_iter().collect(),
        };
        if batches.send(changed).is_err() {
            return;
        }
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
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
    }
}
