//! The inbox's write-ahead log: how an accepted event becomes durable before its 202 without
//! a write to sled on the request's path.
//!
//! Owns the events accepted and not yet in the tables (staged), the dedup keys they claim, the
//! file `inbox.log` in the state folder, and landing staged events in the `inbox`, `dedup` and
//! `dedup-age` tables. Must not decide what is a duplicate (`accept.rs` does, under this
//! module's lock) nor queue events (the runtime does, once a round has landed them).
//!
//! # Why
//!
//! Written straight into sled, a new event cost three inserts in its B-tree and a read on the
//! request's thread, and each group commit round a flush of sled's log that woke its whole I/O
//! pool and held its process-wide lock while the fsync ran: about half of what ingress cost
//! (docs/performance.md). Here a request only copies its event into memory under a lock; the
//! committer writes every event of a round with one `write` and one `fdatasync` of a plain file,
//! then lands them in sled without a flush. sled's own flusher (or the next cut) makes the
//! landings durable later.
//!
//! # A round
//!
//! [`Wal::write`], on the committer's task:
//! 1. the staged events are taken;
//! 2. with a log, they are appended to it as frames and, under the group policy, `fdatasync`ed.
//!
//! Callers of `Committer::durable` return here: their events are on disk. Then
//! [`Wal::land`], on the lander's thread, batch after batch in the order they were written:
//! 3. the events are landed in the tables, then the landing mark `(generation, offset)` in the
//!    table `inbox-log`;
//! 4. their claims are released (the tables answer for their keys from now on).
//!
//! A worker starts an event only once its round has landed (`StoredEvent::after`), so an
//! event's removal is never ahead of its landing in sled's log. Landing takes longer than the
//! `fdatasync` (three sled inserts an event), so a round's landing runs beside the next
//! round's write instead of before it.
//!
//! # The cut ([`Wal::cut`])
//!
//! Every [`CUT_EVERY`] or [`CUT_BYTES`], the lander holds appends off, lands what was written,
//! flushes sled (which makes every landing durable) and starts the file again at its header
//! under the next generation.
//!
//! # Recovery ([`Wal::open`])
//!
//! The frames after the landing mark are landed again: inserts of the same value under the same
//! key, so landing twice is landing once. sled replays its own log in order, so an event whose
//! removal survived a crash had its landing and the mark after it survive too: a processed
//! event is never landed again. A frame whose length or checksum is wrong ends the log: it is a
//! write the crash cut short, never acknowledged (its round's `fdatasync` had not returned).
//!
//! # Frames
//!
//! `len: u32 LE`, `crc32(payload): u32 LE`, then the payload: `seq: u64 LE`, `at: u64 LE` (ms
//! since the epoch, the dedup claim's time), `keys: u32 LE`, each key as `len: u32 LE` and its
//! bytes, then the inbox value (see `record.rs`) to the end. The file starts with [`MAGIC`] and
//! the generation (`u64 LE`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{event_id, Backlog, InboxError};
use crate::state::{SledStore, Table};

/// The log's file, in the state folder.
pub const FILE: &str = "inbox.log";
const MAGIC: &[u8; 8] = b"CDINBOX1";
const HEADER: u64 = 16;
/// The log is cut (after a sled flush) at least this often while it holds anything...
pub const CUT_EVERY: Duration = Duration::from_secs(1);
/// ... and once it holds this many bytes: what a start replays at most, about.
pub const CUT_BYTES: u64 = 32 << 20;
/// A frame longer than this is damage, not an event (bodies are bounded far below it).
const MAX_FRAME: usize = 1 << 30;
const MARK_KEY: &[u8] = b"landed";

/// An event accepted and not yet landed.
pub(super) struct Staged {
    pub seq: u64,
    /// When its dedup keys were claimed (ms since the epoch).
    pub at: u64,
    pub keys: Vec<Vec<u8>>,
    /// The inbox value (`record::encode_event`).
    pub value: Vec<u8>,
    pub body_len: usize,
}

#[derive(Default)]
pub(super) struct Stage {
    events: Vec<Staged>,
    /// Dedup keys claimed by events not yet landed: `(at, seq)` of the newest claim.
    pub claims: HashMap<Vec<u8>, (u64, u64)>,
}

impl Stage {
    pub fn push(&mut self, event: Staged) {
        for key in &event.keys {
            self.claims.insert(key.clone(), (event.at, event.seq));
        }
        self.events.push(event);
    }
}

/// The tables a round writes.
struct Tables {
    inbox: Table,
    dedup: Table,
    dedup_age: Table,
    mark: Table,
}

impl Tables {
    fn land(&self, event: &Staged) -> Result<(), InboxError> {
        self.inbox.insert(&event.seq.to_be_bytes(), &event.value)?;
        if event.keys.is_empty() {
            return Ok(());
        }
        let claim = format!("{} {}", event.at, event_id(event.seq));
        for key in &event.keys {
            self.dedup.insert(key, claim.as_bytes())?;
            let mut age = event.at.to_be_bytes().to_vec();
            age.extend_from_slice(key);
            self.dedup_age.insert(&age, b"")?;
        }
        Ok(())
    }

    fn mark(&self) -> Result<(u64, u64), InboxError> {
        Ok(self
            .mark
            .get(MARK_KEY)?
            .and_then(|v| {
                let generation = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                let offset = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
                Some((generation, offset))
            })
            .unwrap_or((0, 0)))
    }

    fn set_mark(&self, generation: u64, offset: u64) -> Result<(), InboxError> {
        let mut value = generation.to_be_bytes().to_vec();
        value.extend_from_slice(&offset.to_be_bytes());
        Ok(self.mark.insert(MARK_KEY, &value)?)
    }
}

struct LogFile {
    file: File,
    path: PathBuf,
    generation: u64,
    len: u64,
    cut_at: Instant,
    /// A write failed and could not be undone: nothing more is appended until the next cut.
    broken: Option<String>,
    /// Reused for each round's frames.
    buf: Vec<u8>,
}

impl LogFile {
    /// A fresh, empty log of `generation`, made durable (file and folder) before it is used.
    fn create(path: &Path, generation: u64) -> std::io::Result<LogFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut log = LogFile {
            file,
            path: path.to_path_buf(),
            generation,
            len: 0,
            cut_at: Instant::now(),
            broken: None,
            buf: Vec::new(),
        };
        log.restart(generation)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(log)
    }

    fn restart(&mut self, generation: u64) -> std::io::Result<()> {
        self.file.set_len(0)?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&generation.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        self.generation = generation;
        self.len = HEADER;
        self.cut_at = Instant::now();
        self.broken = None;
        Ok(())
    }

    /// Appends the events' frames (and syncs them when `sync`); answers the new end.
    fn append(&mut self, events: &[Staged], sync: bool) -> Result<u64, String> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        self.buf.clear();
        for event in events {
            frame(&mut self.buf, event);
        }
        let written = self.file.write_all_at(&self.buf, self.len).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let message = format!("writing {}: {e}", self.path.display());
            // A part written and kept would end the log for a start before what follows it.
            if let Err(undo) = self.file.set_len(self.len) {
                self.broken = Some(format!("{message}; cutting it back: {undo}"));
            }
            return Err(message);
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > 4 * CUT_BYTES as usize {
            self.buf = Vec::new();
        }
        Ok(self.len)
    }

    fn due(&self) -> bool {
        self.broken.is_some()
            || (self.len > HEADER && (self.len >= CUT_BYTES || self.cut_at.elapsed() >= CUT_EVERY))
    }
}

fn frame(out: &mut Vec<u8>, event: &Staged) {
    let keys: usize = event.keys.iter().map(|k| 4 + k.len()).sum();
    let len = 8 + 8 + 4 + keys + event.value.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&event.seq.to_le_bytes());
    out.extend_from_slice(&event.at.to_le_bytes());
    out.extend_from_slice(&(event.keys.len() as u32).to_le_bytes());
    for key in &event.keys {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out.extend_from_slice(&event.value);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The frames of `bytes` up to the first that is cut short or damaged, and where that one
/// starts (`bytes.len()` when none is).
fn frames(bytes: &[u8]) -> (Vec<Staged>, usize) {
    let mut events = Vec::new();
    let mut at = 0;
    while let Some((event, next)) = read_frame(bytes, at) {
        events.push(event);
        at = next;
    }
    (events, at)
}

fn read_frame(bytes: &[u8], at: usize) -> Option<(Staged, usize)> {
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let len = u32_at(at)? as usize;
    let crc = u32_at(at + 4)?;
    if len > MAX_FRAME {
        return None;
    }
    let payload = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let u64_at = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(payload.get(i..i + 8)?.try_into().ok()?))
    };
    let seq = u64_at(0)?;
    let claimed_at = u64_at(8)?;
    let count = u32::from_le_bytes(payload.get(16..20)?.try_into().ok()?) as usize;
    let mut pos = 20;
    let mut keys = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let klen = u32::from_le_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
        keys.push(payload.get(pos + 4..(pos + 4).checked_add(klen)?)?.to_vec());
        pos += 4 + klen;
    }
    let value = payload.get(pos..)?.to_vec();
    let body_len = super::record::body_len(&value);
    Some((
        Staged {
            seq,
            at: claimed_at,
            keys,
            value,
            body_len,
        },
        at + 8 + len,
    ))
}

/// The staged events, their claims, and the log: see the module docs.
pub(super) struct Wal {
    stage: Mutex<Stage>,
    /// Rounds that released claims so far: a caller that read the tables before a release and
    /// looks at the claims after it reads the tables again (`accept.rs`).
    releases: AtomicU64,
    log: Option<Mutex<LogFile>>,
    /// Where the last batch landed ends in the log: the log can be cut once it reaches the
    /// log's end.
    landed_to: AtomicU64,
    /// `fdatasync` each round's frames (the group policy).
    sync: bool,
    tables: Tables,
    backlog: Arc<Backlog>,
}

/// Events written to the log (or, without one, taken from the stage) and not yet landed.
#[derive(Default)]
pub(super) struct Batch {
    events: Vec<Staged>,
    /// The log's generation and where the batch ends in it.
    end: Option<(u64, u64)>,
}

impl Wal {
    /// Lands what a log left in `store`'s folder holds past the landing mark, then starts a
    /// new log there when `logged` (else removes it: without a log, events are landed
    /// straight away and are as durable as sled's flushes make them).
    pub fn open(
        store: &SledStore,
        inbox: Table,
        dedup: Table,
        dedup_age: Table,
        backlog: Arc<Backlog>,
        logged: bool,
    ) -> Result<Wal, InboxError> {
        let tables = Tables {
            inbox,
            dedup,
            dedup_age,
            mark: store.table("inbox-log")?,
        };
        let io = |path: &Path, e: std::io::Error| {
            InboxError::State(crate::state::StateError::Backend(format!(
                "{}: {e}",
                path.display()
            )))
        };
        let mut log = None;
        if let Some(dir) = store.dir() {
            let path = dir.join(FILE);
            let (generation, replayed) = recover(&path, &tables).map_err(|e| match e {
                Recovery::Io(e) => io(&path, e),
                Recovery::Inbox(e) => e,
            })?;
            if replayed > 0 {
                store.flush()?;
                tracing::info!(
                    events = replayed,
                    "Landed the accepted events the inbox's log held past its last landing"
                );
            }
            if logged {
                log = Some(Mutex::new(
                    LogFile::create(&path, generation + 1).map_err(|e| io(&path, e))?,
                ));
            } else {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(&path, e)),
                    _ => {}
                }
            }
        }
        Ok(Wal {
            stage: Mutex::new(Stage::default()),
            releases: AtomicU64::new(0),
            log,
            landed_to: AtomicU64::new(HEADER),
            sync: logged,
            tables,
            backlog,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Stage> {
        // The stage's invariants hold between statements that cannot panic.
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::SeqCst)
    }

    /// Steps 1 and 2 of a round: the staged events taken and, with a log, appended to it
    /// (and synced under the group policy). On an error the events are given up: their
    /// callers answer 503, and their claims and counts go.
    pub fn write(&self) -> Result<Batch, String> {
        let events = std::mem::take(&mut self.lock().events);
        let Some(log) = &self.log else {
            return Ok(Batch { events, end: None });
        };
        if events.is_empty() {
            return Ok(Batch { events, end: None });
        }
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        match log.append(&events, self.sync) {
            Ok(end) => Ok(Batch {
                events,
                end: Some((log.generation, end)),
            }),
            Err(e) => {
                drop(log);
                self.give_up(&events);
                Err(e)
            }
        }
    }

    /// Steps 3 and 4: the batch landed in the tables, then its mark; batches must come in the
    /// order [`Wal::write`] made them. On an error nothing is given up: the events were
    /// acknowledged and the log keeps them for the next open.
    pub fn land(&self, batch: Batch) -> Result<(), String> {
        if batch.events.is_empty() {
            return Ok(());
        }
        for event in &batch.events {
            self.tables.land(event).map_err(|e| e.to_string())?;
        }
        if let Some((generation, end)) = batch.end {
            self.tables
                .set_mark(generation, end)
                .map_err(|e| e.to_string())?;
            self.landed_to.store(end, Ordering::SeqCst);
        }
        self.release(&batch.events);
        Ok(())
    }

    /// A whole round at once: for tools and tests that run no committer.
    pub fn round(&self) -> Result<(), String> {
        self.land(self.write()?)
    }

    /// Whether the log should be cut ([`Wal::cut`]).
    pub fn due(&self) -> bool {
        self.log
            .as_ref()
            .is_some_and(|log| log.lock().unwrap_or_else(|p| p.into_inner()).due())
    }

    /// Empties the log: with no appends meanwhile, lands the batches written and not yet
    /// landed (`next` hands them over, in order), runs `flush` (sled's), which makes every
    /// landing durable, then starts the log again under the next generation.
    pub fn cut(
        &self,
        flush: impl FnOnce() -> Result<(), String>,
        mut next: impl FnMut() -> Option<Batch>,
    ) -> Result<(), String> {
        let Some(log) = &self.log else {
            return flush();
        };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        while self.landed_to.load(Ordering::SeqCst) < log.len {
            // Written and being handed over: it comes, since writing needs no lock to send it.
            let Some(batch) = next() else {
                return Err("the log's rounds stopped before the cut".into());
            };
            self.land(batch)?;
        }
        flush()?;
        let generation = log.generation + 1;
        match log.restart(generation) {
            Ok(()) => {
                self.landed_to.store(HEADER, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                let message = format!("cutting {}: {e}", log.path.display());
                log.broken = Some(message.clone());
                Err(message)
            }
        }
    }

    /// Writes the staged events to the log and forgets them without landing them: what a
    /// crash right after a round's `fdatasync` leaves.
    #[cfg(test)]
    pub fn write_unlanded(&self) {
        assert!(self.log.is_some());
        self.write().unwrap();
    }

    fn release(&self, events: &[Staged]) {
        let mut stage = self.lock();
        for event in events {
            for key in &event.keys {
                if stage.claims.get(key).is_some_and(|c| c.1 == event.seq) {
                    stage.claims.remove(key);
                }
            }
        }
        drop(stage);
        self.releases.fetch_add(1, Ordering::SeqCst);
    }

    fn give_up(&self, events: &[Staged]) {
        for event in events {
            self.backlog.remove(event.body_len);
        }
        self.release(events);
    }
}

enum Recovery {
    Io(std::io::Error),
    Inbox(InboxError),
}

/// Lands the log's frames past the landing mark; answers the log's generation (or the mark's,
/// without a log) and how many it landed.
fn recover(path: &Path, tables: &Tables) -> Result<(u64, usize), Recovery> {
    let (marked_gen, marked_end) = tables.mark().map_err(Recovery::Inbox)?;
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(Recovery::Io)?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((marked_gen, 0)),
        Err(e) => return Err(Recovery::Io(e)),
    };
    // Cut short while it was made: it never held an event.
    if bytes.len() < HEADER as usize {
        return Ok((marked_gen, 0));
    }
    if &bytes[..8] != MAGIC {
        return Err(Recovery::Inbox(InboxError::Corrupt {
            key: path.display().to_string(),
            message: "it does not start as an inbox log does".into(),
        }));
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
    let from = match generation.cmp(&marked_gen) {
        std::cmp::Ordering::Greater => HEADER as usize,
        std::cmp::Ordering::Equal => usize::try_from(marked_end).unwrap_or(usize::MAX),
        // A mark newer than the log: the log was replaced by an older one. Landing it could
        // run events that finished long ago.
        std::cmp::Ordering::Less => {
            tracing::warn!(
                log = generation,
                mark = marked_gen,
                "The inbox's log is older than what the store has landed; it is not replayed"
            );
            return Ok((marked_gen, 0));
        }
    };
    let rest = bytes.get(from..).unwrap_or_default();
    let (events, good) = frames(rest);
    if good < rest.len() {
        tracing::warn!(
            bytes = rest.len() - good,
            "The inbox's log ends in a write cut short; it was never acknowledged and is dropped"
        );
    }
    for event in &events {
        tables.land(event).map_err(Recovery::Inbox)?;
    }
    Ok((generation, events.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(seq: u64, keys: &[&str]) -> Staged {
        Staged {
            seq,
            at: 1_700_000_000_000 + seq,
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            value: format!("{{\"id\":\"{}\"}}\n{{\"n\":{seq}}}", event_id(seq)).into_bytes(),
            body_len: 8,
        }
    }

    #[test]
    fn frames_read_back_until_the_first_damaged_one() {
        let mut bytes = Vec::new();
        for seq in 1..=3 {
            frame(&mut bytes, &staged(seq, &["p\0a", "p\0b"]));
        }
        let whole = bytes.len();
        let (events, good) = frames(&bytes);
        assert_eq!(good, whole);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(events[1].keys, [b"p\0a".to_vec(), b"p\0b".to_vec()]);
        assert_eq!(events[2].value, staged(3, &[]).value);
        assert_eq!(events[2].at, staged(3, &[]).at);

        // A write cut short: the last frame is dropped, the others kept.
        let (events, good) = frames(&bytes[..whole - 3]);
        assert_eq!(events.len(), 2);
        assert!(good < whole - 3);
        // A flipped byte in the second frame ends the log there.
        let mut damaged = bytes.clone();
        let second = whole / 3 + 20;
        damaged[second] ^= 0x40;
        let (events, _) = frames(&damaged);
        assert_eq!(events.len(), 1);
        // A length past any frame is damage too, not a reason to read on.
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(frames(&huge).0.is_empty());
    }
}
