//! What the `frameway` command's tests share: the binary, free ports, and
//! processes that are killed when the test ends, however it ends.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The `frameway` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_frameway");

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A long-running process, killed on drop.
pub struct Server(pub Child);

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program ARGS` with its stderr read line by line onto the
/// returned channel (so it never blocks on a full pipe).
pub fn spawn_logged(program: &str, args: &[&str]) -> (Server, Receiver<String>) {
    let mut child = Command::new(program)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Server(child), rx)
}

/// The next line of `lines` that contains `needle`, waiting at most `within`.
pub fn line_containing(lines: &Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(_) => panic!("no line with {needle:?} within {within:?}"),
        }
    }
}

/// Starts `frameway ARGS` and waits (bounded) until it logs `listening`.
pub fn start(args: &[&str]) -> Server {
    start_logged(args).0
}

/// [`start`], keeping the rest of its stderr.
pub fn start_logged(args: &[&str]) -> (Server, Receiver<String>) {
    let (server, lines) = spawn_logged(BIN, args);
    line_containing(&lines, "listening", Duration::from_secs(20));
    (server, lines)
}

/// `frameway echo` on a free port, with `args` added.
pub fn echo_server(args: &[&str]) -> (Server, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec!["echo", "--listen", &listen];
    all.extend_from_slice(args);
    (start(&all), port)
}

/// Runs `frameway ARGS` with `input` on stdin, bounded in time.
pub fn run(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("frameway {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

// Test certificates (a throwaway CA and a server certificate for
// 127.0.0.1), the same PKI the library's and the gateway's tests use.
#[allow(unused_imports)]
pub use frameway_test_support::TestPki;

/// `frameway client URL` with its stdin kept open: it stays connected
/// until the server closes. Its first line of output proves the echo works.
pub fn connected_client(url: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(["client", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"first line\n").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "first line\n");
    child
}

/// A gateway configuration listening on `port` with `gateway` lines in its
/// `[gateway]` table, and one route, `/echo`, to `frameway echo` on
/// `echo_port` with `plugins` (`[[services.routes.plugins]]` entries).
pub fn echo_route_config(port: u16, echo_port: u16, gateway: &str, plugins: &str) -> String {
    format!(
        r#"[gateway]
listen = ["127.0.0.1:{port}"]
{gateway}

[[services]]
name = "echo"
url = "ws://127.0.0.1:{echo_port}"
  [[services.routes]]
  name = "echo"
  paths = ["/echo"]
{plugins}"#
    )
}

/// One HTTP/1.1 request to the admin listener: the status and the body.
pub fn admin(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}
