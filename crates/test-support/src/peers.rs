//! The foreign peers in `tests/peers/`: Python `websockets` (an independent
//! RFC 6455 implementation), a scripted client and an echo server run from
//! the venv that `scripts/install-test-deps` makes, and Node's `ws`, a
//! scripted client speaking the same script.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The interpreter of the Python peers' venv (made by scripts/install-test-deps).
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps (scripts/test does)",
        python.display()
    );
    python
}

/// The path of a peer script in `tests/peers/`.
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(name)
}

/// Runs tests/peers/ws_client.py with a JSON script; returns its stdout
/// (`OK` or `FAIL …`).
pub async fn python_client(url: &str, script: serde_json::Value, args: &[&str]) -> String {
    let mut command = Command::new(python());
    command.arg(peer_script("ws_client.py")).args([
        "--url",
        url,
        "--script",
        "-",
        "--timeout",
        "30",
    ]);
    run_script(command, script, args).await
}

/// Runs tests/peers/node/ws_client.mjs (Node's `ws`) with a JSON script in
/// ws_client.py's language (the steps it lists); returns its stdout (`OK`
/// or `FAIL …`).
pub async fn node_client(url: &str, script: serde_json::Value, args: &[&str]) -> String {
    let client = peer_script("node/ws_client.mjs");
    assert!(
        peer_script("node/node_modules/ws").exists(),
        "Node's ws is missing: run scripts/install-test-deps (scripts/test does)"
    );
    let mut command = Command::new("node");
    command.arg(client).args(["--url", url, "--timeout", "30"]);
    run_script(command, script, args).await
}

/// Runs a scripted client with `script` on its stdin; returns its stdout.
async fn run_script(mut command: Command, script: serde_json::Value, args: &[&str]) -> String {
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(script.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts tests/peers/ws_echo_server.py; returns the process (killed on
/// drop) and its port.
pub async fn python_server(args: &[&str]) -> (Child, u16) {
    spawn_python_server(args, Stdio::inherit()).await
}

/// [`python_server`], also returning its log (stderr: `connection from …,
/// subprotocol: …` and `closed: code=… reason=…` per connection), which is
/// still copied to the test's stderr.
pub async fn python_server_logged(args: &[&str]) -> (Child, u16, PeerLog) {
    let (mut child, port) = spawn_python_server(args, Stdio::piped()).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("[ws_echo_server.py] {line}");
            let _ = tx.send(line);
        }
    });
    (
        child,
        port,
        PeerLog {
            lines: rx,
            seen: Vec::new(),
        },
    )
}

async fn spawn_python_server(args: &[&str], stderr: Stdio) -> (Child, u16) {
    let mut child = Command::new(python())
        .arg(peer_script("ws_echo_server.py"))
        .args(["--port", "0", "--timeout", "60"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the peer printed READY");
    let port = line
        .strip_prefix("READY ")
        .expect("READY <port>")
        .parse()
        .unwrap();
    (child, port)
}

/// The stderr lines of a peer, as they arrive.
pub struct PeerLog {
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl PeerLog {
    /// Waits for a line containing `needle` and returns it; panics if the
    /// peer exits first.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        loop {
            let Some(line) = self.lines.recv().await else {
                panic!(
                    "the peer exited without logging {needle:?}; it logged {:?}",
                    self.seen
                );
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }
}
