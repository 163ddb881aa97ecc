//! A real browser against `frameway echo`: headless Debian Chromium opens a
//! page served by this test on 127.0.0.1, whose script connects to the echo
//! server, sends text and binary messages of several sizes and checks each
//! echo, then posts its findings back to the test. Browsers always offer
//! permessage-deflate; the test asserts it was negotiated and every echo
//! matched.
//!
//! The echo server sends in 16 KiB frames, so the larger echoes reach the
//! browser as fragmented compressed messages.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{echo_server, Server};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The page: `ECHO_URL` is replaced with the echo server's address.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>frameway permessage-deflate</title>
<pre id="out">running</pre>
<script>
const report = (result) => {
  document.getElementById("out").textContent = JSON.stringify(result);
  fetch("/result", { method: "POST", body: JSON.stringify(result) });
};
const pattern = (n) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = i % 251; return b; };
const noise = (n) => { const b = new Uint8Array(n); for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536))); return b; };
const words = (n) => { let s = ""; let i = 0; while (s.length < n) s += "wörd" + (i++ % 97) + " "; return s.slice(0, n); };
const cases = [];
for (const n of [0, 1, 125, 126, 4096, 65535, 65536, 70000, 300000, 1 << 20]) {
  cases.push({ kind: "text", size: n, data: words(n) });
  cases.push({ kind: "binary", size: n, data: pattern(n) });
}
cases.push({ kind: "binary-noise", size: 200000, data: noise(200000) });
const same = (a, b) => {
  if (typeof a === "string") return a === b;
  const x = new Uint8Array(b);
  if (x.length !== a.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== a[i]) return false;
  return true;
};
const result = { extensions: null, results: [], error: null };
try {
  const ws = new WebSocket("ECHO_URL");
  ws.binaryType = "arraybuffer";
  let i = 0;
  ws.onopen = () => { result.extensions = ws.extensions; ws.send(cases[0].data); };
  ws.onmessage = (ev) => {
    const c = cases[i];
    result.results.push({ kind: c.kind, size: c.size, ok: same(c.data, ev.data) });
    i += 1;
    if (i < cases.length) ws.send(cases[i].data); else ws.close(1000, "done");
  };
  ws.onclose = (ev) => { result.close = ev.code; report(result); };
  ws.onerror = () => { result.error = "websocket error"; };
} catch (e) {
  result.error = String(e);
  report(result);
}
</script>
"#;

/// Serves the page and waits for the script's POST to /result.
fn serve_page(listener: TcpListener, page: String, results: mpsc::Sender<String>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Some((path, body)) = read_request(&mut stream) else {
            continue;
        };
        let (status, content) = match path.as_str() {
            "/" => ("200 OK", page.as_str()),
            "/result" => {
                let _ = results.send(body);
                ("200 OK", "thanks")
            }
            _ => ("404 Not Found", "not here"),
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{content}",
            content.len()
        );
    }
}

/// The path and body of one HTTP/1.1 request (enough for Chromium's).
fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}

#[test]
fn chromium_negotiates_permessage_deflate_and_every_echo_matches() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/install-test-deps (scripts/test does), \
         which installs Debian's chromium package"
    );
    let (_echo, echo_port) = echo_server(&["--fragment-size", "16384"]);

    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    let page = PAGE.replace("ECHO_URL", &format!("ws://127.0.0.1:{echo_port}/"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve_page(http, page, tx));

    let profile = std::env::temp_dir().join(format!("frameway-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{http_port}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let chromium = Server(chromium);

    let body = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the page reported back within 90 s");
    drop(chromium);
    let _ = std::fs::remove_dir_all(&profile);

    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    eprintln!("chromium reported: {report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    let extensions = report["extensions"].as_str().unwrap_or_default();
    assert!(
        extensions.starts_with("permessage-deflate"),
        "the browser saw no permessage-deflate answer: {report}"
    );
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 21, "every case echoed: {report}");
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "echoes that differ: {failed:?}");
    assert_eq!(report["close"], 1000, "{report}");
}
