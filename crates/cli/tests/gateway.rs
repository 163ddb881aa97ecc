//! `frameway gateway` as a user runs it: `--check`, the built-in default
//! configuration and a configuration file, with real processes and sockets.

mod support;

use std::path::PathBuf;

use support::{free_port, run, start};

/// The configuration of the gateway issue, as written there.
const ISSUE_EXAMPLE: &str = r#"[gateway]
listen = ["127.0.0.1:8080"]            # wss listeners take tls_cert / tls_key

[[services]]
name = "chat"
url = "ws://127.0.0.1:9000/socket"     # or wss://; connect/read/write timeouts, tls_verify
  [[services.routes]]
  name = "chat"
  paths = ["/chat"]                    # prefix match; strip_path = true by default
  [[services.plugins]]
  name = "websocket-size-limit"
  config = { client_max_payload = 1024, upstream_max_payload = 65536 }

[[plugins]]                            # global plugin
name = "key-auth"
config = { key_names = ["apikey"], keys = ["s3cret"] }
"#;

/// A file in a fresh temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "frameway-cli-gw-{}-{}",
            std::process::id(),
            name.replace('.', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn check_accepts_the_issue_example_as_written() {
    let file = TempFile::new("gateway.toml", ISSUE_EXAMPLE);
    let out = run(&["gateway", "--check", file.path()], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_its_location() {
    let text = r#"[gateway]
listen = ["not-an-address"]
client_max_payload = 0

[[services]]
name = "a"
url = "http://wrong"
  [[services.routes]]
  name = "r"
  paths = ["no-slash"]
  [[services.routes.plugins]]
  name = "no-such-plugin"

[[services]]
name = "a"
url = "ws://127.0.0.1:1"
  [[services.routes]]
  name = "r2"
  paths = ["/ok"]

[[plugins]]
name = "websocket-size-limit"
config = { client_max_payload = 0 }
"#;
    let file = TempFile::new("broken.toml", text);
    let out = run(&["gateway", "--check", file.path()], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // (line, the text the error points at)
    let expected = [
        (2, "\"not-an-address\""),
        (3, "0"),
        (7, "\"http://wrong\""),
        (10, "\"no-slash\""),
        (12, "\"no-such-plugin\""),
        (15, "\"a\""),
        (23, "{ client_max_payload"),
    ];
    let lines: Vec<&str> = text.lines().collect();
    for (line, what) in expected {
        let col = lines[line - 1].find(what).unwrap() + 1;
        let location = format!("{}:{line}:{col}:", file.path());
        assert!(
            stderr.contains(&location),
            "no error at {line}:{col} ({what}) in:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.matches(file.path()).count(),
        expected.len(),
        "one line per error:\n{stderr}"
    );
}

#[test]
fn check_reports_a_syntax_error_with_its_location() {
    let file = TempFile::new("syntax.toml", "[gateway]\nlisten = [\"127.0.0.1:1\"\n");
    let out = run(&["gateway", "--check", file.path()], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:2:", file.path())), "{stderr}");
}

#[test]
fn a_bad_file_never_starts_a_gateway() {
    let port = free_port();
    let file = TempFile::new(
        "bad.toml",
        &format!("[gateway]\nlisten = [\"127.0.0.1:{port}\"]\n[[plugins]]\nname = \"nope\"\n"),
    );
    let out = run(&["gateway", "--config", file.path()], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope"),
        "the error names the plugin: {stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn gateway_without_a_file_answers_on_echo() {
    let port = free_port();
    let _gateway = start(&["gateway", "--listen", &format!("127.0.0.1:{port}")]);
    let out = run(
        &["client", &format!("ws://127.0.0.1:{port}/echo")],
        "hello\nwörld\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nwörld\n");
}

#[test]
fn gateway_with_a_file_proxies_to_frameway_echo() {
    let echo_port = free_port();
    let _echo = start(&["echo", "--listen", &format!("127.0.0.1:{echo_port}")]);
    let port = free_port();
    let file = TempFile::new(
        "proxy.toml",
        &format!(
            r#"[gateway]
listen = ["127.0.0.1:{port}"]

[[services]]
name = "echo"
url = "ws://127.0.0.1:{echo_port}"
  [[services.routes]]
  name = "echo"
  paths = ["/chat"]
"#
        ),
    );
    let _gateway = start(&["gateway", "--config", file.path()]);
    let out = run(
        &["client", &format!("ws://127.0.0.1:{port}/chat")],
        "via the gateway\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via the gateway\n");
    let missing = run(&["client", &format!("ws://127.0.0.1:{port}/none")], "");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

/// A Kong declarative file is checked like a native one: every field
/// Frameway lacks is named with the file, its line and its column.
#[test]
fn check_reads_a_kong_yml_and_names_what_frameway_lacks() {
    let text = r#"_format_version: "3.0"
services:
- name: chat
  url: http://127.0.0.1:9000
  routes:
  - name: chat
    paths: [/chat]
    sources: [{ ip: 10.0.0.0/8 }]
consumers:
- username: alice
  acls: [{ group: admins }]
"#;
    let file = TempFile::new("kong.yml", text);
    let out = run(&["gateway", "--check", file.path()], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!(
            "{}:8:14: route \"chat\": `sources` is not supported by Frameway",
            file.path()
        ),
        format!(
            "{}:11:3: consumer \"alice\": `acls` is not supported by Frameway",
            file.path()
        ),
    ] {
        assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    }

    let served = TempFile::new(
        "kong-ok.yml",
        &text
            .replace("    sources: [{ ip: 10.0.0.0/8 }]\n", "")
            .replace("  acls: [{ group: admins }]\n", ""),
    );
    let out = run(&["gateway", "--check", served.path()], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 route)"));
}
