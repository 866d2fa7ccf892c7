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
        let (child, port) = spawn(store, None, &[]);
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
        let (child, _) = spawn(&self.store, Some(self.port), &[]);
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three `nats-server`s with JetStream, routed to each other as one NATS cluster, each with its
/// own store: what `replicas: 3` is for.
pub struct NatsCluster {
    pub servers: Vec<Nats>,
}

impl NatsCluster {
    pub fn start(root: &Path) -> NatsCluster {
        // Route ports are given to every server up front: bound to find free ones, released.
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let store = root.join(format!("s{i}"));
                let args = [
                    "-n".to_string(),
                    format!("s{i}"),
                    "--cluster_name".into(),
                    "crossdock-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    all.clone(),
                ];
                let (child, port) = spawn(&store, None, &args);
                Nats {
                    child: Some(child),
                    port,
                    store,
                }
            })
            .collect();
        NatsCluster { servers }
    }

    /// Every server's client URL, comma-separated, as `cluster.nats.url` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(store: &Path, port: Option<u16>, extra: &[String]) -> (Child, u16) {
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
        .arg(store)
        .args(extra)
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
