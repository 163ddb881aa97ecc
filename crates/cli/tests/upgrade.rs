//! A zero-downtime upgrade as README describes it: a new process starts
//! beside the old one on the same address (SO_REUSEPORT), the old one gets
//! SIGTERM and drains; no connection attempt fails across the switch.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, run, start_logged};

#[test]
fn a_new_process_takes_over_the_address_while_the_old_one_drains() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["gateway", "--listen", listen.as_str(), "--workers", "1"];
    let (mut old, old_logs) = start_logged(&args);
    let (_new, new_logs) = start_logged(&args);
    let url = format!("ws://{listen}/echo");
    let mut failed = Vec::new();
    for i in 0..60 {
        if i == 20 {
            let pid = old.pid().to_string();
            assert!(Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success());
            // The old listener closes at once; from here on only the new
            // process accepts.
            std::thread::sleep(Duration::from_millis(100));
        }
        let line = format!("connection {i}\n");
        let out = run(&["client", &url], &line);
        if String::from_utf8_lossy(&out.stdout) != line {
            failed.push((i, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
    }
    assert!(
        failed.is_empty(),
        "connections failed across the switch: {failed:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = old.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // One access-log line per connection, from whichever process served it
    // (the last ones may still be finishing their close).
    let count = |logs: &std::sync::mpsc::Receiver<String>| {
        logs.try_iter()
            .filter(|l| l.contains("frameway::access"))
            .count()
    };
    let (mut by_old, mut by_new) = (0, 0);
    while by_old + by_new < 60 && Instant::now() < deadline {
        by_old += count(&old_logs);
        by_new += count(&new_logs);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(by_old + by_new, 60, "{by_old} + {by_new}");
    assert!(
        by_new >= 40,
        "the new process served the rest: {by_old} + {by_new}"
    );
}
