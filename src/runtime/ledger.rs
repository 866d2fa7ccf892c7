//! The ledger: a record, kept outside sled's own files, of how far the inbox is known to reach,
//! so that a store that lost data is refused at start instead of silently resuming less.
//!
//! sled recovers a damaged log by keeping the longest prefix it can read: a truncated, emptied or
//! bit-flipped `db` file opens without complaint, holding fewer events (or none). The ledger
//! catches that. Every second at most, when events were accepted since the last mark, it
//!
//! 1. writes the highest accepted sequence number `S` into sled (table `ledger`, key `last_seq`),
//! 2. fsyncs sled, so `S` and every event up to it are on disk,
//! 3. writes `S` with a SHA-256 checksum to `ledger.json` in the state folder (a temporary file,
//!    fsynced, renamed over the old one, and the folder fsynced).
//!
//! At start, [`check`] compares the two: if sled's `last_seq` is below the file's, sled lost
//! writes it had confirmed as durable, and with them accepted events, and the engine refuses to
//! start. sled writes its log in order and recovers to a prefix, so any loss of confirmed data
//! also loses the newest `last_seq`, which is written after every event it covers. The file's
//! own checksum tells a damaged ledger from a damaged store.
//!
//! This module owns the file's format and the comparison; it must not decide what the runtime
//! does about a loss (the caller refuses to start; `crossdock inbox accept-loss` calls
//! [`accept_loss`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{SledStore, StateError, Table};

/// The file, in the state folder beside sled's own files.
pub const FILE: &str = "ledger.json";
const KEY: &[u8] = b"last_seq";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Mark {
    format: u32,
    last_seq: u64,
    /// SHA-256 of `"{format}:{last_seq}"`, hex.
    checksum: String,
}

fn checksum(format: u32, last_seq: u64) -> String {
    hex::encode(Sha256::digest(format!("{format}:{last_seq}").as_bytes()))
}

/// Why the store cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "the state store at {path} has lost data: events up to {expected} were accepted and \
         made durable, but the store holds {found}. Accepted events may be lost. Restore the \
         folder from a backup, or accept the loss and start with what is left: \
         `crossdock inbox accept-loss`"
    )]
    Lost {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "the ledger {path} is damaged ({message}), so whether the state store is whole cannot \
         be told. If the store is known to be good, `crossdock inbox accept-loss` writes a new \
         ledger from it"
    )]
    Damaged { path: PathBuf, message: String },
    #[error("the ledger {path} cannot be written: {message}")]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// The ledger of one state folder.
pub struct Ledger {
    dir: PathBuf,
    table: Table,
    store: std::sync::Arc<SledStore>,
    /// The last sequence number marked in both places.
    marked: std::sync::atomic::AtomicU64,
}

impl Ledger {
    /// Opens the ledger and checks the store against it (see the module docs).
    pub fn open(store: std::sync::Arc<SledStore>, dir: &Path) -> Result<Ledger, LedgerError> {
        let table = store.table("ledger")?;
        let in_store = stored(&table)?;
        let in_file = read_file(dir)?;
        if let Some(expected) = in_file {
            if in_store < expected {
                return Err(LedgerError::Lost {
                    path: dir.to_path_buf(),
                    expected: super::inbox::event_id(expected),
                    found: if in_store == 0 {
                        "no record of any".into()
                    } else {
                        format!("only those up to {}", super::inbox::event_id(in_store))
                    },
                });
            }
        }
        Ok(Ledger {
            dir: dir.to_path_buf(),
            table,
            store,
            marked: std::sync::atomic::AtomicU64::new(in_file.unwrap_or(0)),
        })
    }

    /// Marks `last_seq` as durable: in sled, fsynced, then in the file. Blocking; does nothing
    /// when it is already marked.
    pub fn mark(&self, last_seq: u64) -> Result<(), LedgerError> {
        use std::sync::atomic::Ordering;
        if last_seq <= self.marked.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.table.insert(KEY, &last_seq.to_be_bytes())?;
        self.store.flush()?;
        write_file(&self.dir, last_seq)?;
        self.marked.fetch_max(last_seq, Ordering::SeqCst);
        Ok(())
    }
}

fn stored(table: &Table) -> Result<u64, LedgerError> {
    Ok(table
        .get(KEY)?
        .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)))
        .unwrap_or(0))
}

fn read_file(dir: &Path) -> Result<Option<u64>, LedgerError> {
    let path = dir.join(FILE);
    let damaged = |message: String| LedgerError::Damaged {
        path: path.clone(),
        message,
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        // A store from before the ledger, or a new one: nothing to compare with yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let mark: Mark = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if mark.checksum != checksum(mark.format, mark.last_seq) {
        return Err(damaged("its checksum does not match".into()));
    }
    Ok(Some(mark.last_seq))
}

fn write_file(dir: &Path, last_seq: u64) -> Result<(), LedgerError> {
    let path = dir.join(FILE);
    let io = |e: std::io::Error| LedgerError::Io {
        path: path.clone(),
        message: e.to_string(),
    };
    let mark = Mark {
        format: 1,
        last_seq,
        checksum: checksum(1, last_seq),
    };
    let text = serde_json::to_vec(&mark).map_err(|e| LedgerError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, &path).map_err(io)?;
    // The rename is durable once the folder is.
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Makes the ledger agree with what the store holds now: the recovery after a loss was
/// reported (the lost events stay lost). Returns what the file said and what it says now.
pub fn accept_loss(store: &SledStore, dir: &Path) -> Result<(Option<u64>, u64), LedgerError> {
    let table = store.table("ledger")?;
    let before = match read_file(dir) {
        Ok(v) => v,
        Err(LedgerError::Damaged { .. }) => None,
        Err(e) => return Err(e),
    };
    let now = stored(&table)?;
    store.flush()?;
    write_file(dir, now)?;
    Ok((before, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_store_behind_its_ledger_is_refused_and_accept_loss_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let store = Arc::new(SledStore::open(&path).unwrap());
            let ledger = Ledger::open(store.clone(), &path).unwrap();
            ledger.mark(5).unwrap();
            ledger.mark(3).unwrap(); // never goes back
        }
        // The same store opens: it holds what the ledger says.
        {
            let store = Arc::new(SledStore::open(&path).unwrap());
            Ledger::open(store, &path).unwrap();
        }
        // A file that claims more than the store holds stands for a store that lost data.
        write_file(&path, 9).unwrap();
        let store = Arc::new(SledStore::open(&path).unwrap());
        match Ledger::open(store.clone(), &path) {
            Err(LedgerError::Lost {
                expected, found, ..
            }) => {
                assert_eq!(expected, super::super::inbox::event_id(9));
                assert_eq!(
                    found,
                    format!("only those up to {}", super::super::inbox::event_id(5))
                );
            }
            other => panic!("{:?}", other.err()),
        }
        assert_eq!(accept_loss(&store, &path).unwrap(), (Some(9), 5));
        Ledger::open(store, &path).unwrap();
    }

    #[test]
    fn a_damaged_ledger_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let store = Arc::new(SledStore::open(&path).unwrap());
        write_file(&path, 4).unwrap();
        let text = fs::read_to_string(path.join(FILE)).unwrap();
        fs::write(
            path.join(FILE),
            text.replace("\"last_seq\":4", "\"last_seq\":1"),
        )
        .unwrap();
        let err = Ledger::open(store, &path).err().unwrap();
        assert!(matches!(err, LedgerError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
