//! The `frameway` command as a user runs it: real processes, real sockets.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::Output;
use std::thread::JoinHandle;
use std::time::Duration;

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::Message;
use support::{echo_server, free_port, run, start, Server, TestPki};

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

// ------------------------------------------------- client: handshake ---

/// What one opening handshake carried, as the server saw it.
struct Seen {
    headers: http::HeaderMap,
    protocols: Vec<String>,
}

/// A WebSocket server in this process for one connection: it records the
/// client's handshake, accepts with the subprotocol `choose` if the client
/// offered it, and echoes until the client closes. `frameway echo` neither
/// reports headers nor picks subprotocols, hence this server. It gives up
/// after 20 s, so a client that never comes cannot hang the test.
fn inspecting_server(choose: Option<&'static str>) -> (u16, JoinHandle<Option<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let serve = async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let mut seen = None;
                let mut ws = accept_with(tcp, ServerConfig::default(), |request, offer| {
                    seen = Some(Seen {
                        headers: request.headers().clone(),
                        protocols: offer.protocols.clone(),
                    });
                    Decision::Accept {
                        protocol: choose.map(String::from),
                        headers: http::HeaderMap::new(),
                    }
                })
                .await
                .ok()?;
                while let Some(Ok(msg)) = ws.recv().await {
                    if let msg @ (Message::Text(_) | Message::Binary(_)) = msg {
                        ws.send(msg).await.ok()?;
                    }
                }
                seen
            };
            tokio::time::timeout(Duration::from_secs(20), serve)
                .await
                .ok()
                .flatten()
        })
    });
    (port, server)
}

/// `--header NAME:VALUE` (repeatable) puts each header, name and value
/// trimmed, on the opening request the server receives.
#[test]
fn client_header_reaches_the_server() {
    let (port, server) = inspecting_server(None);
    let out = client(
        &[
            "--header",
            "X-Frameway-Test: hello there",
            "--header",
            "Authorization:Bearer token123",
            &format!("ws://127.0.0.1:{port}/"),
        ],
        "ping\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping\n");
    let seen = server.join().unwrap().expect("the server saw a handshake");
    assert_eq!(seen.headers["x-frameway-test"], "hello there");
    assert_eq!(seen.headers["authorization"], "Bearer token123");
}

/// `--protocol P` (repeatable) offers each subprotocol in order, and the
/// one the server picks is reported on the client's `connected` line.
#[test]
fn client_protocol_is_offered_and_the_choice_reported() {
    let (port, server) = inspecting_server(Some("chat.v2"));
    let out = client(
        &[
            "--protocol",
            "chat.v1",
            "--protocol",
            "chat.v2",
            &format!("ws://127.0.0.1:{port}/"),
        ],
        "hi\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(subprotocol chat.v2"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let seen = server.join().unwrap().expect("the server saw a handshake");
    assert_eq!(seen.protocols, ["chat.v1", "chat.v2"]);
}

// ------------------------------------------------------- client: TLS ---

/// `frameway gateway` serving its in-process echo on a wss:// listener
/// with a certificate for 127.0.0.1 from a throwaway CA (`frameway echo`
/// speaks plain ws:// only). Returns the PKI (its `ca.pem` is the CA),
/// the gateway and the URL.
fn wss_gateway(name: &str) -> (TestPki, Server, String) {
    let pki = TestPki::new(&format!("cli-{name}"));
    let port = free_port();
    let config = format!(
        r#"[gateway]
listen = []
tls_listen = ["127.0.0.1:{port}"]
tls_cert = "server.pem"
tls_key = "server.key"

[[services]]
name = "echo"
url = "internal://echo"
  [[services.routes]]
  name = "echo"
  paths = ["/echo"]
"#
    );
    // Beside the certificates, which it names relative to itself; the
    // PKI's directory is removed when the PKI is dropped.
    let file = pki.dir.join("gateway.toml");
    std::fs::write(&file, config).unwrap();
    let gateway = start(&["gateway", "--config", file.to_str().unwrap()]);
    (pki, gateway, format!("wss://127.0.0.1:{port}/echo"))
}

/// `--ca FILE` adds a CA: a server whose certificate it signed is trusted,
/// and messages go both ways over TLS.
#[test]
fn client_ca_file_trusts_the_server() {
    let (pki, _gateway, url) = wss_gateway("ca");
    let out = client(&["--ca", &pki.path("ca.pem"), &url], "over tls\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
}

/// Without `--ca` the same server's certificate is verified against the
/// usual roots and refused, in one line that says it is the certificate.
#[test]
fn client_refuses_a_certificate_no_known_ca_signed() {
    let (_pki, _gateway, url) = wss_gateway("noca");
    let out = client(&[&url], "never sent\n");
    assert_one_line_error(&out, "invalid peer certificate");
    assert!(out.stdout.is_empty());
}

/// `--insecure` skips verification: the same untrusted server is accepted.
#[test]
fn client_insecure_skips_verification() {
    let (_pki, _gateway, url) = wss_gateway("insecure");
    let out = client(&["--insecure", &url], "unverified\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unverified\n");
}

// ------------------------------------------------------------- bench ---

/// Runs `frameway bench ws://127.0.0.1:PORT/ ARGS`, bounded in time.
fn bench(port: u16, args: &[&str]) -> Output {
    let url = format!("ws://127.0.0.1:{port}/");
    let mut all = vec!["bench", &url];
    all.extend_from_slice(args);
    run(&all, "")
}

/// A short run that must succeed (2 connections of 64 B, measured for 1 s
/// after 0.2 s of warm-up, plus `extra`); its stdout.
fn short_bench(port: u16, extra: &[&str]) -> String {
    let mut args = vec![
        "--connections",
        "2",
        "--size",
        "64",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ];
    args.extend_from_slice(extra);
    let out = bench(port, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number right after the word `name` in `line` (`p50 123 µs`).
fn number_after(line: &str, name: &str) -> f64 {
    let mut words = line.split_whitespace();
    words.find(|w| *w == name);
    let word = words
        .next()
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    word.parse()
        .unwrap_or_else(|_| panic!("{name} {word:?} in {line}"))
}

/// A short run against `frameway echo` exits 0 and prints its summary:
/// the run's shape, then `N msg/s … p50 X µs  p99 Y µs … (R round trips,
/// 0 errors)` with real numbers (R > 0, p50 ≤ p99).
#[test]
fn bench_measures_frameway_echo() {
    let (_server, port) = echo_server(&[]);
    let stdout = short_bench(port, &[]);
    assert!(
        stdout.contains("(2 connections, 64 B binary, closed loop"),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains(" msg/s "))
        .unwrap_or_else(|| panic!("no msg/s line in {stdout}"));
    let rate: f64 = summary.split_whitespace().next().unwrap().parse().unwrap();
    let (p50, p99) = (number_after(summary, "p50"), number_after(summary, "p99"));
    let (_, counts) = summary.rsplit_once('(').unwrap();
    let round_trips: u64 = counts.split_whitespace().next().unwrap().parse().unwrap();
    assert!(rate > 0.0 && round_trips > 0, "{summary}");
    assert!(p50 >= 1.0 && p50 <= p99, "{summary}");
    assert!(counts.ends_with(" round trips, 0 errors)"), "{summary}");
}

/// wss://: `--ca FILE` trusts the gateway's CA and the run measures over
/// TLS; `--insecure` accepts it unverified; without either the
/// certificate is refused in one line.
#[test]
fn bench_speaks_wss_with_ca_or_insecure() {
    let (pki, _gateway, url) = wss_gateway("bench");
    let ca = pki.path("ca.pem");
    let run_bench = |extra: &[&str]| {
        let mut args = vec!["bench", &url, "--connections", "2", "--size", "64"];
        args.extend_from_slice(&["--duration", "0.5", "--warmup", "0.1"]);
        args.extend_from_slice(extra);
        run(&args, "")
    };
    for extra in [&["--ca", ca.as_str()][..], &["--insecure"][..]] {
        let out = run_bench(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(" round trips, 0 errors)"), "{stdout}");
    }
    assert_one_line_error(&run_bench(&[]), "invalid peer certificate");
    let plain = run(&["bench", "ws://127.0.0.1:1/", "--insecure"], "");
    assert_one_line_error(&plain, "--ca and --insecure apply to wss:// urls");
}

/// `--messages N` reports the round trips it made: N, or a few more when
/// other connections were mid round trip as the Nth finished (each
/// connection stops at its next check), never the share of a connection
/// that ended first.
#[test]
fn bench_messages_reports_every_round_trip_up_to_the_limit() {
    let (_server, port) = echo_server(&[]);
    let out = bench(
        port,
        &[
            "--connections",
            "2",
            "--size",
            "64",
            "--warmup",
            "0",
            "--messages",
            "2000",
            "--duration",
            "30",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).expect("JSON");
    let messages = json["messages"].as_u64().expect("messages");
    assert!((2000..=2001).contains(&messages), "{json}");
}

#[test]
fn bench_handshakes_opens_and_closes_every_connection_and_reports_the_servers_cpu() {
    let (server, port) = echo_server(&[]);
    let pid = server.pid().to_string();
    let out = bench(
        port,
        &[
            "--handshakes",
            "200",
            "--open-concurrency",
            "8",
            "--watch-pid",
            &pid,
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).expect("JSON");
    assert_eq!(json["errors"], 0, "{json}");
    assert_eq!(json["mode"], "handshakes");
    assert!(json["handshakes_per_s"].as_f64().unwrap() > 0.0, "{json}");
    assert!(
        json["server_cpu_us_per_handshake"].as_f64().is_some(),
        "{json}"
    );
}

/// A push server on its own thread: answers one upgrade, echoes the first
/// frame, and once a second one subscribes pushes `count` copies of the
/// echo, keeping the connection open until the client leaves.
fn push_server(count: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut have = 0;
        let end = loop {
            have += conn.read(&mut buf[have..]).unwrap();
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = frameway::wire::handshake::accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        conn.write_all(answer.as_bytes()).unwrap();
        // The first frame: 64 B, masked (2 + 4 + 64 bytes).
        while have < end + 70 {
            have += conn.read(&mut buf[have..]).unwrap();
        }
        let mask: [u8; 4] = buf[end + 2..end + 6].try_into().unwrap();
        let mut frame = vec![0x82, 64];
        frame.extend((0..64).map(|i| buf[end + 6 + i] ^ mask[i % 4]));
        conn.write_all(&frame).unwrap();
        if have == end + 70 && conn.read(&mut buf).unwrap() == 0 {
            return;
        }
        for _ in 0..count {
            if conn.write_all(&frame).is_err() {
                return;
            }
        }
        let _ = conn.read(&mut buf);
    });
    port
}

/// `--receive` counts what the server pushes, by the echo's length: some
/// messages, never more than were pushed, and no errors.
#[test]
fn bench_receive_counts_pushed_messages() {
    let pushed = 200_000;
    let port = push_server(pushed);
    let out = bench(
        port,
        &[
            "--connections",
            "1",
            "--size",
            "64",
            "--receive",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).expect("JSON");
    assert_eq!(json["mode"], "receive");
    assert_eq!(json["errors"], 0, "{json}");
    let messages = json["messages"].as_u64().unwrap();
    assert!(messages > 0 && messages <= pushed as u64, "{json}");
}

/// `--json` prints exactly one JSON object with the result's fields (the
/// run's shape, counts, rates and latency quantiles in µs), consistent
/// with each other, and the run lasts `--duration` seconds.
#[test]
fn bench_json_is_one_object() {
    let (_server, port) = echo_server(&[]);
    let stdout = short_bench(port, &["--json"]);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let field = |name: &str| {
        json[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    assert_eq!(json["url"], format!("ws://127.0.0.1:{port}/"));
    assert_eq!(json["mode"], "closed loop");
    assert_eq!(field("connections"), 2.0);
    assert_eq!(field("size"), 64.0);
    assert_eq!(field("errors"), 0.0);
    // Measured for --duration, not less; the upper bound only catches a
    // run that ignores it (a loaded machine may overshoot a little).
    let secs = field("duration_s");
    assert!((1.0..5.0).contains(&secs), "{json}");
    let messages = field("messages");
    assert!(messages >= 1.0, "{json}");
    let rate = field("msg_per_s");
    assert!((rate - messages / secs).abs() <= rate * 1e-6, "{json}");
    assert!(
        (field("mb_per_s") - rate * 64.0 / 1e6).abs() <= rate * 1e-6,
        "{json}"
    );
    let (p50, p99, p999) = (field("p50_us"), field("p99_us"), field("p999_us"));
    assert!(p50 >= 1.0 && p50 <= p99 && p99 <= p999, "{json}");
    assert!(p999 <= field("max_us"), "{json}");
}

/// `--rate`: the open loop sends at the rate asked for, whatever the echoes
/// do, and reports the round trips of its window. The bounds are loose: a
/// loaded machine may deliver late, but not twice the schedule.
#[test]
fn bench_open_loop_sends_at_the_rate_asked_for() {
    let (_server, port) = echo_server(&[]);
    let stdout = short_bench(port, &["--rate", "400", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["mode"], "open loop", "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    let messages = json["messages"].as_f64().unwrap();
    let secs = json["duration_s"].as_f64().unwrap();
    assert!(
        (0.5 * 400.0 * secs..=1.1 * 400.0 * secs).contains(&messages),
        "{json}"
    );
}

/// Nothing listening: bench exits non-zero with one line naming the cause.
#[test]
fn bench_against_a_closed_port_is_one_line_error() {
    let out = bench(free_port(), &["--connections", "2", "--duration", "1"]);
    assert_one_line_error(&out, "refused");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
