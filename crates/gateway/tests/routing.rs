//! Routing end to end: hosts, path prefixes, strip_path.

mod support;

use std::net::SocketAddr;

use support::*;

/// For each `(host, path, want)`: opens a WebSocket through the gateway at
/// `gw` with this `Host` and `path`, and checks that the upstream was asked
/// for the path and query `want`.
async fn assert_upstream_targets(
    gw: SocketAddr,
    conns: &mut tokio::sync::mpsc::UnboundedReceiver<UpstreamConn>,
    cases: &[(&str, &str, &str)],
) {
    for &(host, path, want) in cases {
        let _client = raw_ws_client(gw, &upgrade_request_to(host, path, ""), b"").await;
        let conn = next_upstream(conns).await;
        let target = conn.request.uri().path_and_query().unwrap().to_string();
        assert_eq!(target, want, "{host} {path}");
    }
}

/// A `[[services]]` entry at `url` with one route.
fn service(name: &str, url: &str, route: &str) -> String {
    format!(
        "[[services]]\nname = \"{name}\"\nurl = \"{url}\"\n  [[services.routes]]\n  name = \"{name}\"\n{route}\n"
    )
}

/// An exact host beats a wildcard, which beats a route without hosts; the
/// wildcard covers subdomains but not the bare domain, Host's port is
/// ignored, and (as in Kong) a host condition wins over a longer path.
#[tokio::test]
async fn routes_match_exact_and_wildcard_hosts() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = [
            service("any", &format!("ws://{up}/any"), "  paths = [\"/api\"]"),
            service(
                "wild",
                &format!("ws://{up}/wild"),
                "  paths = [\"/api\"]\n  hosts = [\"*.example.com\"]",
            ),
            service(
                "exact",
                &format!("ws://{up}/exact"),
                "  paths = [\"/api\"]\n  hosts = [\"chat.example.com\"]",
            ),
            service("v2", &format!("ws://{up}/v2"), "  paths = [\"/api/v2\"]"),
        ]
        .concat();
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("chat.example.com:8080", "/api/room", "/exact/room"),
                ("chat.example.com", "/api/room", "/exact/room"),
                ("other.example.com", "/api/room", "/wild/room"),
                ("example.com", "/api/room", "/any/room"),
                ("elsewhere.test", "/api/room", "/any/room"),
                ("chat.example.com", "/api/v2/room", "/exact/v2/room"),
                ("elsewhere.test", "/api/v2/room", "/v2/room"),
            ],
        )
        .await;
    })
    .await;
}

/// Of the prefixes matching a path, the longest wins, whether its route
/// comes before or after the shorter ones in the file.
#[tokio::test]
async fn the_longest_path_prefix_wins() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = [
            service("short", &format!("ws://{up}/short"), "  paths = [\"/api\"]"),
            service(
                "deep",
                &format!("ws://{up}/deep"),
                "  paths = [\"/api/v2/deep\"]",
            ),
            service("v2", &format!("ws://{up}/v2"), "  paths = [\"/api/v2\"]"),
        ]
        .concat();
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("gw.test", "/api/v2/deep/x", "/deep/x"),
                ("gw.test", "/api/v2/x", "/v2/x"),
                ("gw.test", "/api/v2", "/v2"),
                ("gw.test", "/api/x", "/short/x"),
                ("gw.test", "/api/v1/x", "/short/v1/x"),
            ],
        )
        .await;
    })
    .await;
}

/// By default the matched prefix is replaced by the service URL's path
/// (README's `/chat/room -> /socket/room`); `strip_path = false` keeps it
/// after the service's path. The query goes along either way, and the two
/// paths are joined by one slash.
#[tokio::test]
async fn strip_path_decides_the_path_the_upstream_sees() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = format!(
            r#"
[[services]]
name = "chat"
url = "ws://{up}/socket"
  [[services.routes]]
  name = "chat"
  paths = ["/chat"]
  [[services.routes]]
  name = "keep"
  paths = ["/keep"]
  strip_path = false
  [[services.routes]]
  name = "lobby"
  paths = ["/lobby/"]
"#
        );
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("gw.test", "/chat/room?x=1", "/socket/room?x=1"),
                ("gw.test", "/chat", "/socket"),
                ("gw.test", "/keep/room?x=1", "/socket/keep/room?x=1"),
                // What is left after the prefix is joined with one slash, as
                // Kong does, when it does not start with one.
                ("gw.test", "/lobby/hall", "/socket/hall"),
                ("gw.test", "/chatroom", "/socket/room"),
            ],
        )
        .await;
    })
    .await;
}
