//! Listeners follow a reload: an address the file adds is served by the
//! running process, one it removes stops accepting while the connections
//! opened on it go on.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{admin, connected_client, echo_route_config, free_port, run, start_logged, Server};

/// Whether something accepts TCP connections on `port`, once it has
/// settled: the workers apply a reload on their own, just after it is
/// answered.
fn accepting(port: u16, expected: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = TcpStream::connect(("127.0.0.1", port)).is_ok();
        if now == expected || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_adds_and_removes_listeners_and_open_connections_stay() {
    let (_echo, echo_port) = support::echo_server(&[]);
    let (first, second, admin_port) = (free_port(), free_port(), free_port());
    let path = std::env::temp_dir().join(format!("frameway-relisten-{first}.toml"));
    let file = |ports: &[u16]| {
        let listen: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        echo_route_config(ports[0], echo_port, "", "").replace(
            &format!("listen = [\"127.0.0.1:{}\"]", ports[0]),
            &format!("listen = [{}]", listen.join(", ")),
        ) + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n")
    };
    std::fs::write(&path, file(&[first])).unwrap();
    let (_gateway, _logs) = start_logged(&[
        "gateway",
        "--workers",
        "2",
        "--config",
        path.to_str().unwrap(),
    ]);
    let on = |port: u16| format!("ws://127.0.0.1:{port}/echo");
    let mut open = Server(connected_client(&on(first)));
    assert!(!accepting(second, false));

    std::fs::write(&path, file(&[first, second])).unwrap();
    assert_eq!(admin(admin_port, "POST", "/reload").0, 200);
    assert!(accepting(second, true), "the added address is served");
    let echoed = run(&["client", &on(second)], "through the new listener\n");
    assert_eq!(
        String::from_utf8_lossy(&echoed.stdout),
        "through the new listener\n"
    );

    std::fs::write(&path, file(&[second])).unwrap();
    assert_eq!(admin(admin_port, "POST", "/reload").0, 200);
    assert!(!accepting(first, false), "the removed address is closed");
    // The connection accepted there before goes on.
    let stdin = open.0.stdin.as_mut().unwrap();
    stdin.write_all(b"still here\n").unwrap();
    let mut line = String::new();
    BufReader::new(open.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "still here\n");
    let _ = std::fs::remove_file(&path);
}
