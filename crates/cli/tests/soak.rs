//! `frameway soak` against real servers: it passes a faithful echo, and
//! catches a gateway that changes messages.

mod support;

use support::{echo_route_config, echo_server, free_port, run, start};

fn report(args: &[&str]) -> (bool, serde_json::Value) {
    let out = run(args, "");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), json)
}

#[test]
fn a_faithful_echo_passes_with_every_message_accounted_for() {
    let (echo, port) = echo_server(&[]);
    let pid = echo.pid().to_string();
    let url = format!("ws://127.0.0.1:{port}/");
    let (ok, json) = report(&[
        "soak",
        &url,
        "--connections",
        "8",
        "--duration",
        "1",
        "--max-size",
        "70000",
        "--reconnect-chance",
        "0.05",
        "--watch-pid",
        &pid,
        "--json",
    ]);
    assert!(ok, "{json}");
    assert_eq!(json["passed"], true);
    assert!(json["messages_echoed"].as_f64().unwrap() > 10.0, "{json}");
    assert_eq!(json["messages_sent"], json["messages_echoed"]);
    assert_eq!(json["messages_lost"], 0.0);
    assert!(json["reconnects"].as_f64().unwrap() >= 1.0, "{json}");
    assert!(
        json["connections_with_deflate"].as_f64().unwrap() >= 1.0,
        "{json}"
    );
    assert!(
        json["watched_fds_highest"].as_f64().unwrap() > 0.0,
        "{json}"
    );
}

#[test]
fn a_gateway_that_changes_messages_fails_the_soak_as_corrupting_them() {
    let (_echo, echo_port) = echo_server(&[]);
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("frameway-soak-{port}"));
    std::fs::create_dir_all(dir.join("append")).unwrap();
    std::fs::write(
        dir.join("append/handler.lua"),
        "local P = { PRIORITY = 1, VERSION = \"1\" }\n\
         function P:ws_upstream_frame(conf, typ, data)\n  \
           kong.websocket.upstream.set_frame_data(data .. \"!\")\n\
         end\nreturn P\n",
    )
    .unwrap();
    let gateway = format!("lua_plugin_dirs = [{:?}]", dir.display());
    let plugin = "  [[services.routes.plugins]]\n  name = \"append\"\n";
    let path = dir.join("gateway.toml");
    std::fs::write(&path, echo_route_config(port, echo_port, &gateway, plugin)).unwrap();
    let _gateway = start(&["gateway", "--config", path.to_str().unwrap()]);
    let url = format!("ws://127.0.0.1:{port}/echo");
    let (ok, json) = report(&[
        "soak",
        &url,
        "--connections",
        "2",
        "--duration",
        "0.5",
        "--max-size",
        "1000",
        "--json",
    ]);
    assert!(!ok, "{json}");
    assert_eq!(json["passed"], false);
    assert_eq!(json["messages_corrupted"], json["messages_sent"], "{json}");
    let _ = std::fs::remove_dir_all(dir);
}
