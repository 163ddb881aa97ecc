//! The HTTP request in front of the upgrade, over real sockets: where a
//! gateway behind other proxies decides routing, every reading of the
//! request that two parties could disagree on is refused or normalised.

mod support;

use std::net::SocketAddr;

use support::*;

/// A gateway with a `/node` service on `upstream` (as `/up`), an
/// `a.example.com`-only service, and a catch-all `/admin` route that must
/// never be reached by climbing out of `/node`.
async fn front_door(upstream: SocketAddr, gateway_extra: &str) -> SocketAddr {
    gateway(&format!(
        r#"
[gateway]
listen = ["127.0.0.1:0"]
{gateway_extra}

[[services]]
name = "node"
url = "ws://{upstream}/up"
  [[services.routes]]
  name = "node"
  paths = ["/node"]

[[services]]
name = "a-only"
url = "ws://{upstream}/a-only"
  [[services.routes]]
  name = "a-only"
  hosts = ["a.example.com"]
  paths = ["/h"]

[[services]]
name = "admin"
url = "ws://{upstream}/admin-service"
  [[services.routes]]
  name = "admin"
  paths = ["/admin"]
"#
    ))
    .await
}

#[tokio::test]
async fn two_host_headers_are_answered_400() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    let request = upgrade_request("/node", "Host: a.example.com\r\n");
    let response = raw_request(gw, request.as_bytes()).await;
    assert_eq!(response.status, 400, "{}", response.body_text());
    assert!(response.body_text().contains("more than one host"));
}

#[tokio::test]
async fn an_absolute_form_target_is_routed_by_its_authority_not_by_host() {
    let (upstream, mut rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    let request = upgrade_request_to("evil.com", "http://a.example.com/h", "");
    let response = raw_request(gw, request.as_bytes()).await;
    assert_eq!(response.status, 101, "{}", response.body_text());
    let conn = next_upstream(&mut rx).await;
    assert_eq!(conn.request.uri().path(), "/a-only");
    assert_eq!(conn.request.headers()["x-forwarded-host"], "a.example.com");

    // And the other way round: Host names the route, the target does not.
    let request = upgrade_request_to("a.example.com", "http://b.example.com/h", "");
    assert_eq!(raw_request(gw, request.as_bytes()).await.status, 404);
}

#[tokio::test]
async fn dot_segments_are_resolved_before_routing_and_upstream() {
    let (upstream, mut rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    // Climbing out of /node lands on /admin, the route that path names.
    let response = raw_request(gw, upgrade_request("/node/../admin", "").as_bytes()).await;
    assert_eq!(response.status, 101);
    let conn = next_upstream(&mut rx).await;
    assert_eq!(conn.request.uri().path(), "/admin-service");

    let response = raw_request(gw, upgrade_request("/node/a/./b/../c?x=1", "").as_bytes()).await;
    assert_eq!(response.status, 101);
    let conn = next_upstream(&mut rx).await;
    assert_eq!(conn.request.uri(), "/up/a/c?x=1");
}

#[tokio::test]
async fn encoded_slashes_and_dots_are_refused() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    for path in [
        "/node/..%2fadmin",
        "/node/%2f..%2fadmin",
        "/node/%2E%2E/admin",
    ] {
        let response = raw_request(gw, upgrade_request(path, "").as_bytes()).await;
        assert_eq!(response.status, 400, "{path}: {}", response.body_text());
        assert!(response.body_text().contains("encoded"), "{path}");
    }
}

#[tokio::test]
async fn targets_that_are_not_paths_or_urls_are_answered_400() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    for target in ["node", "*", "a.example.com:80"] {
        let response = raw_request(gw, upgrade_request(target, "").as_bytes()).await;
        assert_eq!(response.status, 400, "{target}: {}", response.body_text());
    }
    let mut raw = upgrade_request("/node/X", "").into_bytes();
    let at = raw.iter().position(|&b| b == b'X').unwrap();
    raw[at] = 0xe9;
    assert_eq!(raw_request(gw, &raw).await.status, 400);
}

#[tokio::test]
async fn duplicate_key_or_version_headers_are_answered_400() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    for extra in [
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
        "Sec-WebSocket-Version: 13\r\n",
    ] {
        let response = raw_request(gw, upgrade_request("/node", extra).as_bytes()).await;
        assert_eq!(response.status, 400, "{extra}: {}", response.body_text());
        assert!(response.body_text().contains("more than one"), "{extra}");
    }
}

#[tokio::test]
async fn a_subprotocol_that_is_not_a_token_is_the_clients_error() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    let request = upgrade_request("/node", "Sec-WebSocket-Protocol: a b\r\n");
    let response = raw_request(gw, request.as_bytes()).await;
    assert_eq!(response.status, 400, "{}", response.body_text());
    assert!(response.body_text().contains("not a token"));
}

/// A request with `n` extra header lines of `len` bytes each.
fn with_headers(n: usize, len: usize) -> String {
    let extra: String = (0..n)
        .map(|i| format!("X-Hop-{i}: {}\r\n", "v".repeat(len)))
        .collect();
    upgrade_request("/node", &extra)
}

#[tokio::test]
async fn the_default_header_limits_carry_what_proxies_in_front_add() {
    let (upstream, _rx) = scripted_upstream().await;
    let gw = front_door(upstream, "").await;
    // 90 headers, ~20 KiB: over the old fixed limits (64, 16 KiB).
    let response = raw_request(gw, with_headers(90, 200).as_bytes()).await;
    assert_eq!(response.status, 101, "{}", response.body_text());
    let response = raw_request(gw, with_headers(101, 10).as_bytes()).await;
    assert_eq!(response.status, 431);
    let response = raw_request(gw, with_headers(40, 1000).as_bytes()).await;
    assert_eq!(response.status, 431);
}

#[tokio::test]
async fn header_limits_are_configurable() {
    let (upstream, _rx) = scripted_upstream().await;
    let limits = "max_request_headers = 20\nmax_request_header_bytes = 2048";
    let gw = front_door(upstream, limits).await;
    let response = raw_request(gw, with_headers(10, 20).as_bytes()).await;
    assert_eq!(response.status, 101, "{}", response.body_text());
    for (n, len) in [(16, 10), (5, 500)] {
        let response = raw_request(gw, with_headers(n, len).as_bytes()).await;
        assert_eq!(response.status, 431, "{n} x {len}");
        assert!(response.body_text().contains("request header too large"));
    }
}
