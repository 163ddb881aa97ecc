//! `--workers`: one thread per worker, each with its own listening socket,
//! all on one address; by default one per CPU. Seen from /proc, with real
//! processes and connections.

mod support;

use std::time::Duration;

use support::{free_port, run, start, Server};

/// The threads of `server` that are workers: the main thread (worker 0)
/// and those named `frameway-worker-N`, with their voluntary context
/// switches (each wake-up from waiting on sockets counts one).
fn workers(server: &Server) -> Vec<(String, u64)> {
    let pid = server.pid();
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap();
        let name = name.trim().to_owned();
        let is_main = dir.file_name().unwrap().to_str() == Some(&pid.to_string());
        if !(is_main || name.starts_with("frameway-worke")) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        found.push((name, switches));
    }
    found.sort();
    found
}

#[test]
fn two_workers_listen_on_one_address_and_both_serve() {
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let gateway = start(&[
        "gateway",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "2",
    ]);
    let before = workers(&gateway);
    assert_eq!(before.len(), 2, "{before:?}");
    // Forty connections: the kernel spreads them over both listeners by
    // their ports (all on one worker: a chance of 2^-39).
    let out = run(
        &[
            "bench",
            &url,
            "--connections",
            "40",
            "--warmup",
            "0",
            "--duration",
            "5",
            "--messages",
            "4000",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(100));
    let after = workers(&gateway);
    for ((name, was), (_, is)) in before.iter().zip(&after) {
        assert!(
            is - was >= 20,
            "worker {name} served nothing: {before:?} -> {after:?}"
        );
    }
}

#[test]
fn by_default_every_cpu_gets_a_worker() {
    let port = free_port();
    let gateway = start(&["gateway", "--listen", &format!("127.0.0.1:{port}")]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(workers(&gateway).len(), cpus);
    let (echo, _) = support::echo_server(&[]);
    assert_eq!(workers(&echo).len(), cpus);
    let (one, _) = support::echo_server(&["--workers", "1"]);
    assert_eq!(workers(&one).len(), 1);
}
