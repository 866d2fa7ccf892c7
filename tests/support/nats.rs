//! A real `nats-server` with JetStream, started by a test on a free port with its store in a
//! folder of the test's own; stopped (`kill -9`) and started again on the same port and store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
}

impl Nats {
    /// `nats-server -js -sd DIR -a 127.0.0.1 -p -1` (a free port, read from its log).
    pub fn start(store: &Path) -> Nats {
        let (child, port) = spawn(store, None);
        Nats {
            child: Some(child),
            port,
            store: store.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: what it had not written is gone, as after a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill9();
        let (child, _) = spawn(&self.store, Some(self.port));
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(store: &Path, port: Option<u16>) -> (Child, u16) {
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "nats-server is needed for the cluster tests (Debian: apt-get install nats-server)",
        );
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = false;
        let mut port = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
            }
            if !ready && line.contains("Server is ready") {
                ready = true;
                let _ = tx.send(port);
            }
        }
    });
    let port = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(p)) => p,
        _ => {
            let _ = child.kill();
            panic!("nats-server did not start");
        }
    };
    (child, port)
}
