//! The admin listener of a real `frameway gateway` process: `/metrics`
//! checked by Prometheus' own `promtool`, `/status`, `/status/ready` (503
//! once draining) and `POST /reload`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    admin, connected_client, echo_route_config, free_port, line_containing, start_logged, Server,
};

/// `promtool check metrics` on `text`: its verdict and output.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus) is installed by scripts/install-test-deps");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn metrics_status_readiness_and_reload_on_the_admin_listener() {
    let (_echo, echo_port) = support::echo_server(&[]);
    let (port, admin_port) = (free_port(), free_port());
    let path = std::env::temp_dir().join(format!("frameway-admin-{port}.toml"));
    let file = |extra: &str| {
        let gateway = format!(
            "drain_timeout = 60000\n{extra}\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\""
        );
        echo_route_config(port, echo_port, &gateway, "")
    };
    std::fs::write(&path, file("")).unwrap();
    let (gateway, logs) = start_logged(&[
        "gateway",
        "--workers",
        "2",
        "--config",
        path.to_str().unwrap(),
    ]);
    line_containing(&logs, "frameway admin listening", Duration::from_secs(10));
    let url = format!("ws://127.0.0.1:{port}/echo");
    let _open = Server(connected_client(&url));

    let (status, text) = admin(admin_port, "GET", "/metrics");
    assert_eq!(status, 200);
    let (valid, said) = promtool(&text);
    assert!(valid, "promtool refused /metrics: {said}\n{text}");
    for line in [
        r#"frameway_connections_open{route="echo",service="echo"} 1"#,
        r#"frameway_handshakes_total{status="101"} 1"#,
        r#"frameway_messages_total{route="echo",service="echo",direction="client",type="text"} 1"#,
        // The echo came back through the fast lane, which counts per pass.
        r#"frameway_messages_total{route="echo",service="echo",direction="upstream",type="text"} 1"#,
        "frameway_workers 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }

    let (status, body) = admin(admin_port, "GET", "/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["workers"], 2);
    assert_eq!(json["open_connections"], 1);
    assert_eq!(json["config_file"], path.to_str().unwrap());
    assert_eq!(json["config_sha1"].as_str().map(str::len), Some(40));
    assert_eq!(
        admin(admin_port, "GET", "/status/ready"),
        (200, "ready\n".into())
    );

    // A bad file is refused with its location, and counted.
    std::fs::write(&path, file("idle_timeout = \"soon\"")).unwrap();
    let (status, body) = admin(admin_port, "POST", "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&format!("{}:4:", path.display())), "{body}");
    std::fs::write(&path, file("")).unwrap();
    assert_eq!(
        admin(admin_port, "POST", "/reload"),
        (200, "reloaded\n".into())
    );
    let (_, text) = admin(admin_port, "GET", "/metrics");
    for line in [
        r#"frameway_reloads_total{result="ok"} 1"#,
        r#"frameway_reloads_total{result="error"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert_eq!(admin(admin_port, "GET", "/nothing").0, 404);

    // Draining: the open connection holds the process, and load balancers
    // are told to stop sending.
    let pid = gateway.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    line_containing(&logs, "no new connections", Duration::from_secs(10));
    assert_eq!(
        admin(admin_port, "GET", "/status/ready"),
        (503, "draining\n".into())
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn lua_handlers_stopped_by_their_limits_are_counted_by_plugin_and_limit() {
    let (_echo, echo_port) = support::echo_server(&[]);
    let (port, admin_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("frameway-lua-limits-{port}"));
    std::fs::create_dir_all(dir.join("spin")).unwrap();
    std::fs::write(
        dir.join("spin/handler.lua"),
        "local P = { PRIORITY = 1, VERSION = \"1\" }\n\
         function P:ws_client_frame(conf)\n  \
           if kong.websocket.client.get_frame() == \"spin\" then while true do end end\n\
           local t = {}\n  for i = 1, 1e7 do t[i] = (\"x\"):rep(64) .. i end\n\
         end\nreturn P\n",
    )
    .unwrap();
    let gateway = format!(
        "lua_plugin_dirs = [{:?}]\nlua_max_memory = 8388608\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"",
        dir.display()
    );
    let plugin = "  [[services.routes.plugins]]\n  name = \"spin\"\n";
    let path = dir.join("gateway.toml");
    std::fs::write(&path, echo_route_config(port, echo_port, &gateway, plugin)).unwrap();
    let (_gateway, logs) = start_logged(&["gateway", "--config", path.to_str().unwrap()]);
    line_containing(&logs, "frameway admin listening", Duration::from_secs(10));

    let url = format!("ws://127.0.0.1:{port}/echo");
    for message in ["spin\n", "grow\n"] {
        let out = support::run(&["client", &url], message);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("1011"),
            "a handler over its limit closes with 1011"
        );
    }
    let (_, text) = admin(admin_port, "GET", "/metrics");
    for line in [
        r#"frameway_lua_limit_hits_total{plugin="spin",limit="instructions"} 1"#,
        r#"frameway_lua_limit_hits_total{plugin="spin",limit="memory"} 1"#,
        r#"frameway_plugin_errors_total{plugin="spin"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let (valid, said) = promtool(&text);
    assert!(valid, "promtool refused /metrics: {said}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn upstream_targets_health_and_sessions_on_the_admin_listener() {
    let (_one, one) = support::echo_server(&[]);
    let (_two, two) = support::echo_server(&[]);
    let dead = free_port();
    let (port, admin_port) = (free_port(), free_port());
    let path = std::env::temp_dir().join(format!("frameway-upstreams-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[gateway]
listen = ["127.0.0.1:{port}"]

[admin]
listen = "127.0.0.1:{admin_port}"

[[upstreams]]
name = "echoes"
algorithm = "least-connections"
targets = [{{ target = "127.0.0.1:{one}" }}, {{ target = "localhost:{two}" }}, {{ target = "127.0.0.1:{dead}" }}]
[upstreams.healthchecks.active]
type = "tcp"
interval = 100
unhealthy = {{ failures = 1 }}

[[services]]
name = "echo"
url = "ws://echoes"
  [[services.routes]]
  name = "echo"
  paths = ["/echo"]
"#
        ),
    )
    .unwrap();
    let (_gateway, logs) = start_logged(&["gateway", "--config", path.to_str().unwrap()]);
    line_containing(&logs, "frameway admin listening", Duration::from_secs(10));
    line_containing(&logs, "active health check", Duration::from_secs(10));
    let url = format!("ws://127.0.0.1:{port}/echo");
    let _open = [
        Server(connected_client(&url)),
        Server(connected_client(&url)),
    ];

    let (status, body) = admin(admin_port, "GET", "/upstreams");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let targets = json["upstreams"][0]["targets"].as_array().unwrap().clone();
    let find = |p: u16| {
        targets
            .iter()
            .find(|t| t["address"] == format!("127.0.0.1:{p}"))
            .unwrap_or_else(|| panic!("no target on {p}: {body}"))
            .clone()
    };
    assert_eq!(find(dead)["health"], "unhealthy", "{body}");
    assert_eq!(find(two)["target"], format!("localhost:{two}"));
    for p in [one, two] {
        assert_eq!(find(p)["health"], "healthy", "{body}");
        assert_eq!(find(p)["sessions"], 1, "least-connections spreads: {body}");
    }

    let (_, text) = admin(admin_port, "GET", "/metrics");
    let (valid, said) = promtool(&text);
    assert!(valid, "promtool refused /metrics: {said}");
    for line in [
        format!(
            r#"frameway_upstream_target_health{{upstream="echoes",target="127.0.0.1:{dead}",address="127.0.0.1:{dead}"}} 0"#
        ),
        format!(
            r#"frameway_upstream_target_sessions{{upstream="echoes",target="127.0.0.1:{one}",address="127.0.0.1:{one}"}} 1"#
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let _ = std::fs::remove_file(path);
}
