//! Graceful drain with real processes and real signals: SIGTERM stops
//! accepting at once, open connections end with 1001 on both legs, and the
//! process exits 0; a second SIGINT exits at once.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{connected_client, echo_route_config, free_port, start, Server};

/// A gateway proxying `/echo` to a `frameway echo`, with this `[gateway]`
/// drain setting and this many workers; its config file goes on drop.
struct Draining {
    gateway: Server,
    url: String,
    port: u16,
    file: std::path::PathBuf,
    _echo: Server,
}

impl Draining {
    fn start(drain: &str, workers: &str) -> Draining {
        let (echo, echo_port) = support::echo_server(&[]);
        let port = free_port();
        let file = std::env::temp_dir().join(format!("frameway-drain-{port}.toml"));
        std::fs::write(&file, echo_route_config(port, echo_port, drain, "")).unwrap();
        let gateway = start(&[
            "gateway",
            "--workers",
            workers,
            "--config",
            file.to_str().unwrap(),
        ]);
        Draining {
            gateway,
            url: format!("ws://127.0.0.1:{port}/echo"),
            port,
            file,
            _echo: echo,
        }
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for `server` to exit; its exit code.
fn exit_code(server: &mut Server, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the client printed to stderr by the time it exited (bounded).
fn client_stderr(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the client was never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn sigterm_closes_open_connections_with_1001_and_exits_0() {
    let mut running = Draining::start(
        "drain_timeout = 300
close_spread = 500",
        "2",
    );
    let clients: Vec<Child> = (0..4).map(|_| connected_client(&running.url)).collect();
    let gateway = &mut running.gateway;

    signal(gateway, "TERM");
    // Accepting stops at once (well before the drain timeout).
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", running.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    for client in clients {
        let err = client_stderr(client);
        assert!(err.contains("closed by server: 1001 going away"), "{err}");
    }
    assert_eq!(
        exit_code(&mut running.gateway, Duration::from_secs(20)),
        Some(0)
    );
}

#[test]
fn connections_that_end_during_the_drain_let_the_process_exit_early() {
    let mut running = Draining::start("drain_timeout = 600000", "1");
    let mut client = connected_client(&running.url);
    let gateway = &mut running.gateway;
    signal(gateway, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        gateway.0.try_wait().unwrap().is_none(),
        "waits for the open connection"
    );
    // The client leaves by itself: nothing is left to drain.
    drop(client.stdin.take());
    let err = client_stderr(client);
    assert!(!err.contains("1001"), "{err}");
    assert_eq!(exit_code(gateway, Duration::from_secs(20)), Some(0));
}

#[test]
fn a_second_sigint_exits_at_once() {
    let mut running = Draining::start("drain_timeout = 600000", "1");
    let client = Server(connected_client(&running.url));
    let gateway = &mut running.gateway;
    signal(gateway, "INT");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        gateway.0.try_wait().unwrap().is_none(),
        "the first SIGINT drains"
    );
    signal(gateway, "INT");
    assert_eq!(exit_code(gateway, Duration::from_secs(5)), Some(130));
    drop(client);
}
