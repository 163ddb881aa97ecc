//! SIGHUP re-reads the configuration file, with real processes and a real
//! signal: new connections get the new plugins, open ones keep theirs, and
//! an invalid file is refused with its errors while the running
//! configuration stays.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

use support::{
    connected_client, echo_route_config, free_port, line_containing, run, start_logged, Server,
};

/// The gateway's file: `/echo` to `frameway echo`, with these route plugins.
fn config(port: u16, echo_port: u16, plugins: &str) -> String {
    echo_route_config(port, echo_port, "", plugins)
}

const SIZE_LIMIT: &str = r#"  [[services.routes.plugins]]
  name = "websocket-size-limit"
  config = { client_max_payload = 8 }
"#;

#[test]
fn sighup_serves_new_connections_with_the_new_file_and_refuses_a_bad_one() {
    let (_echo, echo_port) = support::echo_server(&[]);
    let port = free_port();
    let path = std::env::temp_dir().join(format!("frameway-reload-{port}.toml"));
    std::fs::write(&path, config(port, echo_port, "")).unwrap();
    let (gateway, logs) = start_logged(&["gateway", "--config", path.to_str().unwrap()]);
    let url = format!("ws://127.0.0.1:{port}/echo");
    let hangup = || {
        let pid = gateway.pid().to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    let long = "longer than eight bytes\n";
    assert_eq!(
        String::from_utf8_lossy(&run(&["client", &url], long).stdout),
        long
    );

    let mut open = Server(connected_client(&url));

    std::fs::write(&path, config(port, echo_port, SIZE_LIMIT)).unwrap();
    hangup();
    line_containing(&logs, "configuration reloaded", Duration::from_secs(10));
    let refused = run(&["client", &url], long);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("1009"),
        "the new plugin limits new connections: {err}"
    );
    // The connection opened before the reload keeps its (empty) chain.
    open.0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(long.as_bytes())
        .unwrap();
    let mut echoed = String::new();
    BufReader::new(open.0.stdout.as_mut().unwrap())
        .read_line(&mut echoed)
        .unwrap();
    assert_eq!(echoed, long);

    // A file with an error: refused, with its location; the size limit stays.
    std::fs::write(
        &path,
        config(port, echo_port, SIZE_LIMIT).replace("= 8", "= \"eight\""),
    )
    .unwrap();
    hangup();
    line_containing(&logs, "reload refused", Duration::from_secs(10));
    let error = line_containing(&logs, "websocket-size-limit", Duration::from_secs(5));
    assert!(
        error.contains(".toml:13:12: "),
        "the error and its location: {error}"
    );
    let still = run(&["client", &url], long);
    assert!(String::from_utf8_lossy(&still.stderr).contains("1009"));
    assert_eq!(
        String::from_utf8_lossy(&run(&["client", &url], "short\n").stdout),
        "short\n"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn sighup_leaves_the_built_in_configuration_running() {
    let port = free_port();
    let (gateway, logs) = start_logged(&["gateway", "--listen", &format!("127.0.0.1:{port}")]);
    let pid = gateway.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    line_containing(&logs, "no file to reload", Duration::from_secs(10));
    let out = run(
        &["client", &format!("ws://127.0.0.1:{port}/echo")],
        "alive\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alive\n");
}
