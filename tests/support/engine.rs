//! The real `crossdock` binary serving a project in a temporary folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Writes `files` (path relative to the project, contents) into a new temporary folder.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

/// Copies a folder and everything in it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the shipped example `examples/NAME` in a fresh folder, so the engine's state
/// lives there and not in the repository.
pub fn example_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        dir.path(),
    );
    dir
}

/// [`project`] from owned names and contents.
pub fn project_of(files: &[(String, String)]) -> tempfile::TempDir {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    project(&refs)
}

/// The repository's project (configuration, pipelines, mappings, scripts) in a fresh folder,
/// so the engine's state lives there.
pub fn shipped_project() -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo.join("crossdock.yaml"),
        dir.path().join("crossdock.yaml"),
    )
    .unwrap();
    for folder in ["pipelines", "mappings", "scripts"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(repo.join(folder)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                dir.path().join(folder).join(entry.file_name()),
            )
            .unwrap();
        }
    }
    dir
}

pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

pub struct Engine {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Engine {
    /// Starts `crossdock run DIR --listen 127.0.0.1:0` and waits until it serves.
    pub fn start(dir: &Path) -> Engine {
        Engine::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Engine {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossdock"));
        cmd.arg("run").arg(dir);
        Engine::spawn(cmd, dir, env)
    }

    /// [`Engine::start`] with more arguments after `run DIR` (e.g. `--log-format json`).
    pub fn start_args(dir: &Path, args: &[&str]) -> Engine {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossdock"));
        cmd.arg("run").arg(dir).args(args);
        Engine::spawn(cmd, dir, &[])
    }

    /// Starts `crossdock run` with no folder argument, from inside `dir`: the project is the
    /// relative `.`, as a user in the project's folder runs it.
    pub fn start_inside(dir: &Path) -> Engine {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossdock"));
        cmd.arg("run").current_dir(dir);
        Engine::spawn(cmd, dir, &[])
    }

    fn spawn(mut cmd: Command, dir: &Path, env: &[(&str, &str)]) -> Engine {
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CROSSDOCK_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("the engine did not start:\n{}", log.lock().unwrap());
            }
        };
        Engine {
            child,
            addr,
            dir: dir.to_path_buf(),
            log,
            stdout,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the engine logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The engine's process id, for reading what the OS knows of it (`/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the engine printed on standard output (the stdout connector).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// `kill -9`: no chance to flush or drain.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and returns at once: the engine starts draining.
    pub fn signal_term(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(self) -> ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends the signal `name` (`TERM`, `INT` as Ctrl-C sends it), then waits for the exit.
    pub fn stop_with(mut self, name: &str) -> ExitStatus {
        self.signal(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn admin(&self, path: &str) -> (u16, serde_json::Value) {
        let r = Engine::client()
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `/health` once nothing is pending: an action is written before its event is
    /// marked finished, so a test that saw the action must still wait for the count.
    pub async fn settled(&self) -> serde_json::Value {
        eventually("nothing pending", Duration::from_secs(20), || async {
            let (_, health) = self.admin("/health").await;
            (health["pending"] == 0).then_some(health)
        })
        .await
    }

    pub async fn admin_post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = Engine::client()
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        Engine::client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Posts a JSON body to a webhook path; returns the status and the answer.
    pub async fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.post_bytes(path, body.as_bytes()).await
    }

    /// [`Engine::post`] with one more header (a signature).
    pub async fn post_with(&self, path: &str, body: &str, header: (&str, &str)) -> u16 {
        Engine::client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .header(header.0, header.1)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// [`Engine::post`] with any bytes as the body.
    pub async fn post_bytes(&self, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let r = Engine::client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms until it returns Some, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines of a JSON-lines file, parsed; empty when it does not exist yet.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
