//! Our server with Python `websockets` as the client, over real sockets.
//! (Our client against a Python server is in client_interop.rs.)

mod support;

use serde_json::json;
use support::{echo_server, python_client, tls_echo_server, TestPki};

#[tokio::test]
async fn python_client_messages_fragments_pings_and_close() {
    let addr = echo_server().await;
    let script = json!([
        {"send_text": "héllo from python"}, {"expect_text": "héllo from python"},
        {"send_binary_hex": "00ff10"}, {"expect_binary_hex": "00ff10"},
        {"send_text": ""}, {"expect_text": ""},
        {"send_binary_hex": ""}, {"expect_binary_hex": ""},
        {"send_binary_len": 16 << 20}, {"expect_binary_len": 16 << 20, "pattern": true},
        {"send_fragments": ["frag", "mén", "ted"], "binary": false}, {"expect_text": "fragménted"},
        {"ping": "70696e67"},
        {"close": [4000, "done here"]}
    ]);
    assert_eq!(
        python_client(&format!("ws://{addr}/"), script, &[]).await,
        "OK"
    );
}

#[tokio::test]
async fn python_client_sees_server_close_code_and_reason() {
    let addr = echo_server().await;
    let script = json!([{"send_text": "close:4002:server says bye"}, {"expect_close": [4002, "server says bye"]}]);
    assert_eq!(
        python_client(&format!("ws://{addr}/"), script, &[]).await,
        "OK"
    );
}

#[tokio::test]
async fn python_client_subprotocol() {
    let addr = echo_server().await;
    let script =
        json!([{"expect_subprotocol": "chat.v2"}, {"send_text": "x"}, {"expect_text": "x"}]);
    let out = python_client(
        &format!("ws://{addr}/"),
        script,
        &["--subprotocol", "chat.v2"],
    )
    .await;
    assert_eq!(out, "OK");
}

#[tokio::test]
async fn python_client_is_refused_with_403() {
    let addr = echo_server().await;
    let out = python_client(&format!("ws://{addr}/forbidden"), json!([]), &[]).await;
    assert!(out.starts_with("FAIL") && out.contains("403"), "{out}");
}

#[tokio::test]
async fn python_client_over_wss_with_test_ca_and_mtls() {
    let pki = TestPki::new("py-wss");
    let addr = tls_echo_server(&pki, false).await;
    let url = format!("wss://localhost:{}/", addr.port());
    let script = json!([{"send_text": "secure"}, {"expect_text": "secure"}, {"close": [1000, ""]}]);
    assert_eq!(
        python_client(&url, script.clone(), &["--cafile", &pki.path("ca.pem")]).await,
        "OK"
    );

    let addr = tls_echo_server(&pki, true).await;
    let url = format!("wss://localhost:{}/", addr.port());
    let with_cert = [
        "--cafile",
        &pki.path("ca.pem"),
        "--certfile",
        &pki.path("client.pem"),
        "--keyfile",
        &pki.path("client.key"),
    ];
    assert_eq!(python_client(&url, script.clone(), &with_cert).await, "OK");
    let without = python_client(&url, script, &["--cafile", &pki.path("ca.pem")]).await;
    assert!(
        without.starts_with("FAIL"),
        "mTLS must refuse a client without a certificate: {without}"
    );
}
