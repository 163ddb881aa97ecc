//! A real browser against `frameway echo` and through `frameway gateway`:
//! headless Debian Chromium opens a page served by this test on 127.0.0.1,
//! whose script connects to each target in turn, sends text and binary
//! messages of several sizes and checks each echo, then posts its findings
//! back to the test. Browsers always offer permessage-deflate; the tests
//! assert it was negotiated and every echo matched, and through the gateway
//! that the client leg gets it whether the upstream accepts it or not, and
//! that a Lua plugin rewriting text works on a compressed leg.
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

use support::{echo_server, free_port, start, Server};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The page: `TARGETS` is replaced with the WebSocket URLs to test, as a
/// JSON array of `{ url, redact }`.
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
// Each target in turn: { url, redact }. On a redacting route the
// gateway runs examples/plugins/redact-field, so a JSON message comes back
// with its "password" replaced.
const secret = (n) => JSON.stringify({ password: "hunter2", pad: words(n) });
const runOne = (target) => new Promise((done) => {
  const mine = target.redact
    ? cases.concat([{ kind: "json", size: 4096, data: secret(4096) }, { kind: "json", size: 1 << 20, data: secret(1 << 20) }])
    : cases;
  const run = { url: target.url, extensions: null, results: [], error: null };
  const ws = new WebSocket(target.url);
  ws.binaryType = "arraybuffer";
  let i = 0;
  ws.onopen = () => { run.extensions = ws.extensions; ws.send(mine[0].data); };
  ws.onmessage = (ev) => {
    const c = mine[i];
    const ok = c.kind === "json"
      ? (() => { const got = JSON.parse(ev.data); return got.password === "[redacted]" && got.pad === JSON.parse(c.data).pad; })()
      : same(c.data, ev.data);
    run.results.push({ kind: c.kind, size: c.size, ok });
    i += 1;
    if (i < mine.length) ws.send(mine[i].data); else ws.close(1000, "done");
  };
  ws.onclose = (ev) => { run.close = ev.code; done(run); };
  ws.onerror = () => { run.error = "websocket error"; };
});
(async () => {
  const runs = [];
  try {
    for (const target of TARGETS) runs.push(await runOne(target));
  } catch (e) {
    runs.push({ error: String(e) });
  }
  report(runs);
})();
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

/// Opens the page in headless Chromium, which tests each of `targets`
/// (`(url, redact)`) in turn, and returns its report: one JSON object per
/// target.
fn browse(targets: &[(String, bool)]) -> Vec<serde_json::Value> {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/install-test-deps (scripts/test does), \
         which installs Debian's chromium package"
    );
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    let targets: Vec<_> = targets
        .iter()
        .map(|(url, redact)| serde_json::json!({ "url": url, "redact": redact }))
        .collect();
    let page = PAGE.replace("TARGETS", &serde_json::Value::from(targets).to_string());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve_page(http, page, tx));

    let profile = std::env::temp_dir().join(format!(
        "frameway-chromium-{}-{http_port}",
        std::process::id()
    ));
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
        .recv_timeout(Duration::from_secs(120))
        .expect("the page reported back within 120 s");
    drop(chromium);
    let _ = std::fs::remove_dir_all(&profile);
    eprintln!("chromium reported: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Asserts that one target's run negotiated `extension` (empty: none),
/// echoed `cases` messages intact, and closed normally.
fn assert_run(run: &serde_json::Value, extension: &str, cases: usize) {
    assert_eq!(run["error"], serde_json::Value::Null, "{run}");
    let extensions = run["extensions"].as_str().unwrap_or_default();
    if extension.is_empty() {
        assert_eq!(extensions, "", "{run}");
    } else {
        assert!(
            extensions.starts_with(extension),
            "the browser saw no {extension} answer: {run}"
        );
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), cases, "every case echoed: {run}");
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "echoes that differ: {failed:?}");
    assert_eq!(run["close"], 1000, "{run}");
}

/// Text and binary messages of ten sizes, and one of noise.
const CASES: usize = 21;

#[test]
fn chromium_negotiates_permessage_deflate_and_every_echo_matches() {
    let (_echo, echo_port) = echo_server(&["--fragment-size", "16384"]);
    let runs = browse(&[(format!("ws://127.0.0.1:{echo_port}/"), false)]);
    assert_run(&runs[0], "permessage-deflate", CASES);
}

#[test]
fn chromium_through_the_gateway_gets_permessage_deflate_whatever_the_upstream_does() {
    let (_deflating, deflating) = echo_server(&["--fragment-size", "16384"]);
    let (_refusing, refusing) = echo_server(&["--no-deflate"]);
    let port = free_port();
    let plugins = format!("{}/../../examples/plugins", env!("CARGO_MANIFEST_DIR"));
    let config = format!(
        r#"[gateway]
listen = ["127.0.0.1:{port}"]
lua_plugin_dirs = ["{plugins}"]
# The largest text case is 1 Mi characters, some of two bytes.
client_max_payload = 4194304
upstream_max_payload = 4194304

[[services]]
name = "deflating"
url = "ws://127.0.0.1:{deflating}"
  [[services.routes]]
  name = "deflating"
  paths = ["/deflating"]
  [[services.routes]]
  name = "redacting"
  paths = ["/redacting"]
    [[services.routes.plugins]]
    name = "redact-field"
    config = {{ fields = ["password"] }}

[[services]]
name = "refusing"
url = "ws://127.0.0.1:{refusing}"
  [[services.routes]]
  name = "refusing"
  paths = ["/refusing"]
"#
    );
    let dir = std::env::temp_dir().join(format!("frameway-browser-gateway-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, config).unwrap();
    let _gateway = start(&["gateway", "--config", file.to_str().unwrap()]);

    let url = |path: &str| format!("ws://127.0.0.1:{port}/{path}");
    let runs = browse(&[
        (url("deflating"), false),
        (url("refusing"), false),
        (url("redacting"), true),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(runs.len(), 3, "{runs:?}");
    // The client leg is negotiated by the gateway, whatever the upstream
    // leg agreed; the redacting route adds two JSON messages.
    assert_run(&runs[0], "permessage-deflate", CASES);
    assert_run(&runs[1], "permessage-deflate", CASES);
    assert_run(&runs[2], "permessage-deflate", CASES + 2);
}
