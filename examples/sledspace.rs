//! How sled 0.34 uses and gives back disk space as the inbox uses it (docs/runtime.md,
//! "Retention and sizing"): N events of 2.5 KB written to an `inbox` table and removed, a
//! trail of 500 B kept for each; then every trail removed; then N more events written and
//! removed with one trail kept at a time; then the folder opened again. Prints the folder's
//! size (`du -sk`, blocks in use) after each phase.
//!
//!   cargo run --release --example sledspace -- 60000 /tmp/sledspace

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

use crossdock::state::SledStore;

fn du_kb(dir: &Path) -> String {
    let out = Command::new("du").arg("-sk").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(60_000);
    let dir = std::path::PathBuf::from(args.next().expect("a folder to write the store in"));
    let _ = std::fs::remove_dir_all(&dir);
    let body = vec![b'x'; 2500];
    let trail = vec![b't'; 500];
    {
        let store = SledStore::open(&dir).unwrap();
        let inbox = store.table("inbox").unwrap();
        let trails = store.table("trail").unwrap();
        let started = std::time::Instant::now();
        for i in 0..n {
            let k = i.to_be_bytes();
            inbox.insert(&k, &body).unwrap();
            trails.insert(&k, &trail).unwrap();
            inbox.remove(&k).unwrap();
        }
        store.flush().unwrap();
        println!(
            "{n} events, trails kept: {} KB ({:?})",
            du_kb(&dir),
            started.elapsed()
        );
        for i in 0..n {
            trails.remove(&i.to_be_bytes()).unwrap();
        }
        store.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        store.flush().unwrap();
        println!("every trail removed, 3 s later: {} KB", du_kb(&dir));
        for i in n..2 * n {
            let k = i.to_be_bytes();
            inbox.insert(&k, &body).unwrap();
            trails.insert(&k, &trail).unwrap();
            inbox.remove(&k).unwrap();
            trails.remove(&k).unwrap();
        }
        store.flush().unwrap();
        println!("{n} more written and removed: {} KB", du_kb(&dir));
    }
    let store = SledStore::open(&dir).unwrap();
    store.flush().unwrap();
    println!("opened again: {} KB", du_kb(&dir));
}
