//! `frameway gateway` out of file descriptors, as a real process under a
//! low `RLIMIT_NOFILE`: it logs the episode, not every failed accept, counts
//! every one in its metrics, and serves again once descriptors are free.

mod support;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{admin, free_port, line_containing, run, spawn_logged, BIN};

/// Lines of `rx` that arrive within `window`.
fn lines_within(rx: &mpsc::Receiver<String>, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    lines
}

#[test]
fn running_out_of_descriptors_is_logged_once_per_episode() {
    let (port, admin_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let path = std::env::temp_dir().join(format!("frameway-overload-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = [\"{listen}\"]\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
             [[services]]\nname = \"echo\"\nurl = \"internal://echo\"\n  [[services.routes]]\n  name = \"echo\"\n  paths = [\"/echo\"]\n"
        ),
    )
    .unwrap();
    let (_gateway, rx) = spawn_logged(
        "prlimit",
        // One worker: each worker's listener has episodes of its own.
        &[
            "--nofile=32:32",
            BIN,
            "gateway",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "1",
        ],
    );
    line_containing(&rx, "admin listening", Duration::from_secs(20));

    // More connections than descriptors: accepts fail while they are held
    // (the kernel keeps the rest in the listen backlog).
    let held: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(&listen).ok())
        .collect();
    let during = lines_within(&rx, Duration::from_millis(1500));
    let failures = during
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert_eq!(failures, 1, "one line per episode, got: {during:#?}");
    drop(held);

    let out = run(&["client", &format!("ws://{listen}/echo")], "still here\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
    let after = lines_within(&rx, Duration::from_millis(500));
    assert!(
        after.iter().any(|l| l.contains("accepting again after")),
        "the end of the episode is logged with its count: {after:#?}"
    );
    let (_, metrics) = admin(admin_port, "GET", "/metrics");
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("frameway_accept_failures_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no accept failure count:\n{metrics}"));
    assert!(failed >= 1, "every failed accept is counted: {failed}");
    let _ = std::fs::remove_file(path);
}
