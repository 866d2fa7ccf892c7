//! The `file` source: watch a folder for CSV or JSON-lines drops (ERP and POS exports), make
//! one event per row, then move the file out of the way.
//!
//! Owns the life of a dropped file: when it is complete, how it becomes events (decoded by
//! [`crate::flow::input`], as `dry-run` and `test` read files), and where it goes after:
//!
//! - `processed/<name>` once its rows are in the inbox;
//! - `failed/<name>` with `failed/<name>.error.txt` when no row of it can be read (not CSV,
//!   empty);
//! - a file with some bad rows: the good rows become events and the file goes to `processed/`;
//!   `failed/<name>.error.txt` lists each bad row with its reason. Holding back a whole export
//!   for one bad line would stall every good line behind it; the list says what to fix and
//!   drop again.
//!
//! # Watching by polling
//!
//! The folder is listed every second rather than watched with inotify and friends: events from
//! those are lost on network shares and container volumes (where ERP exports tend to land),
//! need a rescan on overflow anyway, and say nothing about whether a writer is done. A file is
//! taken once two looks a second apart see the same size and modification time, so a file
//! still being written is left alone; names starting with `.` or ending in `.tmp` or `.part`
//! (the usual "writing" names) are never taken.
//!
//! # Exactly once per row
//!
//! A row's dedup key is `file:<name>:<size>:<mtime>:<row>`. If the engine stops mid-file, the
//! file is still in the folder; the next look submits it again and the rows already accepted
//! are duplicates, so nothing is sent twice (within the dedup window, 24 h by default). A file
//! dropped again with the same name but new content has a new size or time: new events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::SourceCx;
use crate::config::model::{FileFormat, FileSource};
use crate::flow::input::{self, Body, InputFormat};
use crate::runtime::Submitted;

/// How often the folder is listed.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A file's size and modification time (ms since the epoch): what tells one version of a file
/// from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ms: u128,
}

/// Whether a name is one writers use while a file is incomplete, or a hidden file.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// How a file went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    pub rows: usize,
    pub new: usize,
    pub duplicates: usize,
    /// Rows that could not be read: label and reason.
    pub bad: Vec<(String, String)>,
}

pub(super) async fn run(mut cx: SourceCx, source: FileSource) {
    let folder = cx.runtime.live().project.root.join(&source.path);
    let format = match source.format {
        FileFormat::Jsonl => InputFormat::JsonLines,
        FileFormat::Csv => InputFormat::Csv {
            delimiter: u8::try_from(source.delimiter.unwrap_or(',')).unwrap_or(b','),
        },
    };
    // Last look's stamps, to see which files stopped changing.
    let mut last: HashMap<String, Stamp> = HashMap::new();
    // Files handled whose move failed: not submitted again every second while they stay.
    let mut handled: HashMap<String, Stamp> = HashMap::new();
    let mut complained = false;
    loop {
        match look(&folder).await {
            Ok(now) => {
                complained = false;
                handled.retain(|name, stamp| now.get(name) == Some(stamp));
                let mut ready: Vec<(&String, &Stamp)> = now
                    .iter()
                    .filter(|(name, stamp)| {
                        last.get(*name) == Some(stamp) && handled.get(*name) != Some(stamp)
                    })
                    .collect();
                // Oldest first: exports are often numbered and meant in order.
                ready.sort_by_key(|(name, stamp)| (stamp.mtime_ms, (*name).clone()));
                for (name, stamp) in ready {
                    if cx.stopped() {
                        return;
                    }
                    match take(&cx, &folder, name, *stamp, format).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            tracing::error!(file = %name, error = %e, "Cannot finish the file; it stays where it is");
                            handled.insert(name.clone(), *stamp);
                        }
                    }
                }
                last = now;
            }
            Err(e) => {
                if !complained {
                    tracing::warn!(folder = %folder.display(), error = %e, "Cannot read the watched folder; trying every second");
                    complained = true;
                }
                last.clear();
            }
        }
        if cx.sleep(LOOK_EVERY).await {
            return;
        }
    }
}

/// The files of the folder that may be drops, with their stamps. Creates the folder.
async fn look(folder: &Path) -> std::io::Result<HashMap<String, Stamp>> {
    tokio::fs::create_dir_all(folder).await?;
    let mut out = HashMap::new();
    let mut dir = tokio::fs::read_dir(folder).await?;
    while let Some(entry) = dir.next_entry().await? {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_ignored(&name) {
            continue;
        }
        // processed/ and failed/ are folders, and so skipped here.
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime_ms = meta
            .modified()
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        out.insert(
            name,
            Stamp {
                size: meta.len(),
                mtime_ms,
            },
        );
    }
    Ok(out)
}

/// Submits a file's rows and moves it. `Ok(false)`: told to stop midway (the file stays, and
/// the next start goes on where this one ended).
async fn take(
    cx: &SourceCx,
    folder: &Path,
    name: &str,
    stamp: Stamp,
    format: InputFormat,
) -> std::io::Result<bool> {
    let path = folder.join(name);
    let bytes = tokio::fs::read(&path).await?;
    let decoded = input::decode(&bytes, format);
    let mut report = FileReport::default();
    let mut bodies = Vec::with_capacity(decoded.len());
    for row in decoded {
        let body = match row.body {
            Ok(Body::Value(v)) => Ok(v.to_string().into_bytes()),
            // JSON lines are only split by the decoder: the line must be JSON to be an event.
            Ok(Body::Json(raw)) => match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
                Ok(_) => Ok(raw.to_vec()),
                Err(e) => Err(format!("not JSON: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        match body {
            Ok(b) => bodies.push((row.label, b)),
            Err(e) => report.bad.push((row.label, e)),
        }
    }
    if bodies.is_empty() && !report.bad.is_empty() {
        tracing::warn!(file = %name, reason = %report.bad[0].1, "No row of the file can be read; moving it to failed/");
        settle(folder, "failed", name, &report.bad).await?;
        return Ok(true);
    }
    for (i, (label, body)) in bodies.iter().enumerate() {
        if cx.stopped() {
            return Ok(false);
        }
        let key = format!("file:{name}:{}:{}:{}", stamp.size, stamp.mtime_ms, i + 1);
        let mut headers = super::headers("file");
        headers.insert("x-crossdock-file".into(), name.to_string());
        headers.insert("x-crossdock-row".into(), label.clone());
        match cx
            .runtime
            .submit(&cx.pipeline, &[&key], headers, body)
            .await
        {
            Ok(Submitted::New(_)) => report.new += 1,
            Ok(Submitted::Duplicate(_)) => report.duplicates += 1,
            Err(e) => {
                // The file stays; the next look resumes it, and the rows accepted so far are
                // duplicates then.
                tracing::error!(file = %name, row = %label, error = %e, "Cannot accept a row; trying the file again later");
                return Ok(true);
            }
        }
        report.rows += 1;
    }
    settle(folder, "processed", name, &report.bad).await?;
    tracing::info!(
        file = %name,
        rows = report.rows,
        new = report.new,
        duplicates = report.duplicates,
        bad = report.bad.len(),
        "File processed"
    );
    Ok(true)
}

/// Moves `name` into `folder/sub/` under a free name, after writing the list of its bad rows
/// (if any) to `failed/`: a file in processed/ or failed/ is a file done with. One rename, in
/// the same file system: atomic, never half-moved.
async fn settle(
    folder: &Path,
    sub: &str,
    name: &str,
    bad: &[(String, String)],
) -> std::io::Result<String> {
    let to = free_name(folder, sub, name).await?;
    if !bad.is_empty() {
        write_errors(folder, &to, bad).await?;
    }
    tokio::fs::rename(folder.join(name), folder.join(sub).join(&to)).await?;
    Ok(to)
}

/// The name `name` can take in `folder/sub/` (created if need be) without replacing a file.
async fn free_name(folder: &Path, sub: &str, name: &str) -> std::io::Result<String> {
    let dir = folder.join(sub);
    tokio::fs::create_dir_all(&dir).await?;
    let mut target = name.to_string();
    let mut n = 1;
    while tokio::fs::try_exists(dir.join(&target)).await? {
        target = numbered(name, n);
        n += 1;
    }
    Ok(target)
}

/// `orders.csv` -> `orders.1.csv`.
fn numbered(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
        _ => format!("{name}.{n}"),
    }
}

/// `failed/<name>.error.txt`: one line per bad row.
async fn write_errors(folder: &Path, name: &str, bad: &[(String, String)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (label, reason) in bad {
        text.push_str(&format!("{label}: {reason}\n"));
    }
    let path: PathBuf = folder.join("failed").join(format!("{name}.error.txt"));
    tokio::fs::create_dir_all(folder.join("failed")).await?;
    tokio::fs::write(path, text).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_names_are_ignored() {
        for name in [".stock.csv", "stock.csv.tmp", "stock.csv.part"] {
            assert!(is_ignored(name), "{name}");
        }
        assert!(!is_ignored("stock.csv"));
    }

    #[test]
    fn a_second_copy_gets_a_number() {
        assert_eq!(numbered("orders.csv", 1), "orders.1.csv");
        assert_eq!(numbered("README", 2), "README.2");
        assert_eq!(numbered(".env", 1), ".env.1");
    }
}
