//! `frameway gateway --log-level/--log-format`: one access-log line per
//! finished connection, as JSON when asked, never with the query string.

mod support;

use std::time::Duration;

use support::{free_port, line_containing, run, start_logged};

#[test]
fn every_finished_connection_gets_one_json_access_line_without_its_query() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_gateway, lines) = start_logged(&[
        "gateway",
        "--listen",
        &listen,
        "--workers",
        "1",
        "--log-format",
        "json",
    ]);

    let out = run(
        &["client", &format!("ws://{listen}/echo?token=s3cret")],
        "one\ntwo\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");

    let access = line_containing(&lines, "frameway::access", Duration::from_secs(10));
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
