//! `frameway echo` and `frameway client` negotiate permessage-deflate by
//! default; `--no-deflate` on either side turns it off.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_frameway");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_server(args: &[&str]) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["echo", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    (Server(child), port)
}

/// Runs `frameway client` sending one long line; returns its stderr after
/// checking the echo.
fn client(port: u16, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["client", &format!("ws://127.0.0.1:{port}/")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = "compress me ".repeat(1000);
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), line.trim_end());
    stderr
}

#[test]
fn deflate_is_negotiated_by_default() {
    let (_server, port) = echo_server(&[]);
    let stderr = client(port, &[]);
    assert!(stderr.contains("(permessage-deflate"), "{stderr}");
}

#[test]
fn no_deflate_on_either_side_turns_it_off() {
    let (_server, port) = echo_server(&[]);
    let stderr = client(port, &["--no-deflate"]);
    assert!(!stderr.contains("permessage-deflate"), "{stderr}");
    let (_server, port) = echo_server(&["--no-deflate"]);
    let stderr = client(port, &[]);
    assert!(!stderr.contains("permessage-deflate"), "{stderr}");
}
