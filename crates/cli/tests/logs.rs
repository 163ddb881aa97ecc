//! `frameway gateway --log-level/--log-format`: one access-log line per
//! finished connection, as JSON when asked, never with the query string.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{free_port, run, Server, BIN};

#[test]
fn every_finished_connection_gets_one_json_access_line_without_its_query() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "gateway",
            "--listen",
            &listen,
            "--workers",
            "1",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _gateway = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = || rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    while !next().expect("the gateway starts").contains("listening") {}

    let out = run(
        &["client", &format!("ws://{listen}/echo?token=s3cret")],
        "one\ntwo\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");

    let access = loop {
        let line = next().expect("an access-log line");
        if line.contains("frameway::access") {
            break line;
        }
    };
    let entry: serde_json::Value = serde_json::from_str(&access).expect("a JSON line");
    let fields = &entry["fields"];
    assert_eq!(fields["route"], "echo", "{access}");
    assert_eq!(fields["client_ip"], "127.0.0.1");
    assert_eq!(
        fields["client_messages"], 3,
        "two texts and the close: {access}"
    );
    assert_eq!(fields["client_close"], 1000);
    assert!(!access.contains("s3cret"), "{access}");
}

#[test]
fn a_bad_log_level_is_one_line_and_exit_2() {
    let out = run(&["gateway", "--log-level", "info,=[bad"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("frameway: error: --log-level"), "{err}");
}
