//! `frameway echo` and `frameway client` negotiate permessage-deflate by
//! default; `--no-deflate` on either side turns it off.

mod support;

use support::{echo_server, run};

/// Runs `frameway client` sending one long line; returns its stderr after
/// checking the echo.
fn client(port: u16, args: &[&str]) -> String {
    let url = format!("ws://127.0.0.1:{port}/");
    let mut all = vec!["client", &url];
    all.extend_from_slice(args);
    let line = "compress me ".repeat(1000);
    let out = run(&all, &format!("{line}\n"));
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
