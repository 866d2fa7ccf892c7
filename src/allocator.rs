//! Handing what mimalloc holds free back to the system, on the threads that hold it.
//!
//! mimalloc (the binary's allocator, src/main.rs) keeps each page of memory with the thread
//! that allocated from it: a block another thread frees waits in that page until its owner
//! allocates from the page again or collects. When the state store is closed and reopened
//! (`runtime::idle`), what sled held is freed by the thread that closed it, while its pages
//! belong to the threads that wrote it (tokio's workers, the store's writer, flow threads);
//! a quiet engine's threads hardly allocate, so those pages stayed resident
//! (docs/performance.md, "Memory after a burst"). So a reopen asks every long-lived thread to
//! collect ([`collect_everywhere`]) and each does at its next idle moment
//! ([`collect_if_asked`]: a tokio worker when it parks, a flow thread before it waits).
//!
//! Owns the crate's only `unsafe`: one call into mimalloc's C API, which the `mimalloc`
//! crate does not wrap. Does nothing until the binary says mimalloc is its allocator
//! ([`mimalloc_is_global`]): the library's tests and examples/sysalloc.rs run on malloc.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static MIMALLOC: AtomicBool = AtomicBool::new(false);
/// Bumped by each request to collect; a thread collects when it has not seen the latest.
static ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// Called once by a binary whose `#[global_allocator]` is mimalloc.
pub fn mimalloc_is_global() {
    MIMALLOC.store(true, Ordering::Relaxed);
}

/// Asks every thread to collect at its next idle moment, and collects on this one now.
pub fn collect_everywhere() {
    ASKED.fetch_add(1, Ordering::Relaxed);
    collect_if_asked();
}

/// Collects this thread's heap if a collection was asked for since it last did: cheap
/// otherwise (two loads), so it can sit in a thread's idle path.
pub fn collect_if_asked() {
    if !MIMALLOC.load(Ordering::Relaxed) {
        return;
    }
    let asked = ASKED.load(Ordering::Relaxed);
    // `try_with`: a thread being torn down has no thread-locals left, nor anything to give.
    let due = SEEN
        .try_with(|seen| seen.replace(asked) != asked)
        .unwrap_or(false);
    if due {
        // SAFETY: `mi_collect` takes no pointer and returns nothing; it frees the calling
        // thread's empty pages (taking in the blocks other threads freed into them) and
        // returns free arena memory to the OS, under mimalloc's own locks. It is meant to be
        // called from any thread at any time, and reaches only mimalloc's own state. With
        // mimalloc not the global allocator (checked above) it would only set up a heap.
        unsafe { libmimalloc_sys::mi_collect(true) }
    }
}
