//! The CPU priority of the threads that run events, below that of the threads that accept
//! them (`server.work_nice`). Under a burst the kernel then gives more of the cores to
//! answering webhooks (a durable write and a 202) than to running the events already accepted,
//! which wait in the inbox, on disk. A lower priority matters only while threads compete for
//! the cores, but then also each time a thread wakes: an event's run wakes several in turn, so
//! too low a priority slows a steady load's events too (docs/performance.md, "Ingress first").
//!
//! Owns no thread: the work runtime and the flow threads call [`lower_this_thread`] as they
//! start. Linux only: elsewhere a nice value belongs to the process, not a thread, so it is
//! left alone there.

use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::config::model::MAX_NICE;

/// Lowers the calling thread's priority by `by` nice steps (capped at [`MAX_NICE`]); 0 leaves
/// it as it is. A thread may always lower its own priority, so this fails only where the
/// platform says no; that is logged once, and the thread runs at the process's priority.
pub fn lower_this_thread(by: i32) {
    if by <= 0 {
        return;
    }
    if let Err(e) = lower(by) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "Cannot lower the priority of the threads that run events; they run at the process's");
        }
    }
}

#[cfg(target_os = "linux")]
fn lower(by: i32) -> std::io::Result<()> {
    use rustix::process::{getpriority_process, setpriority_process};
    // On Linux the "process" of these calls is a thread id: the value is this thread's only.
    // Relative to what it has now, so a process started under `nice` keeps its place.
    let me = Some(rustix::thread::gettid());
    let now = getpriority_process(me)?;
    setpriority_process(me, (now + by).min(MAX_NICE))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn lower(_by: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = std::thread::spawn(nice_of_this_thread).join().unwrap();
        let lowered = std::thread::spawn(|| {
            lower_this_thread(5);
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 5).min(MAX_NICE));
        // The process and its other threads keep theirs.
        assert_eq!(
            std::thread::spawn(nice_of_this_thread).join().unwrap(),
            before
        );
        assert_eq!(
            std::thread::spawn(|| {
                lower_this_thread(0);
                nice_of_this_thread()
            })
            .join()
            .unwrap(),
            before
        );
    }
}
