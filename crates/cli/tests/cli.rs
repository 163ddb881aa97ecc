//! The `frameway` command as a user runs it: real processes, real sockets.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::Output;

use support::{echo_server, free_port, run};

/// Runs `frameway client ARGS` with `input` on stdin, bounded in time.
fn client(args: &[&str], input: &str) -> Output {
    let mut all = vec!["client"];
    all.extend_from_slice(args);
    run(&all, input)
}

#[test]
fn client_sends_lines_and_prints_echoes() {
    let (_server, port) = echo_server(&[]);
    let out = client(&[&format!("ws://127.0.0.1:{port}/")], "hello\nwörld\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nwörld\n");
}

#[test]
fn client_binary_mode_prints_hex() {
    let (_server, port) = echo_server(&[]);
    let out = client(&["--binary", &format!("ws://127.0.0.1:{port}/")], "AB\n");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4142\n");
}

fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("frameway: error: "), "{stderr}");
    assert!(
        stderr.to_lowercase().contains(needle),
        "{needle:?} in {stderr}"
    );
}

#[test]
fn bad_url_is_one_line_error() {
    assert_one_line_error(&client(&["http://127.0.0.1:1/"], ""), "invalid url");
}

#[test]
fn refused_connection_is_one_line_error() {
    let port = free_port();
    assert_one_line_error(
        &client(&[&format!("ws://127.0.0.1:{port}/")], ""),
        "refused",
    );
}

#[test]
fn refused_upgrade_reports_its_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Read;
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way")
            .unwrap();
    });
    assert_one_line_error(&client(&[&format!("ws://127.0.0.1:{port}/")], ""), "403");
    server.join().unwrap();
}
