//! Kong's `rate-limiting` from a kong.yml, over real sockets: handshakes
//! per window, counted in the process or, with Kong's `redis_*` keys, in a
//! real Redis shared by two gateways.

mod support;

use frameway_test_support::redis::RedisServer;
use support::{bounded, echo_upstream, gateway, raw_request, upgrade_request};

fn kong_yml(up: std::net::SocketAddr, config: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: chat
  url: ws://{up}
  routes: [{{ name: chat, paths: [/] }}]
  plugins:
  - name: rate-limiting
    config: {config}
"#
    )
}

/// Statuses of `n` handshakes, spread over `gateways` in turn.
async fn statuses(gateways: &[std::net::SocketAddr], n: usize) -> Vec<u16> {
    let mut seen = Vec::new();
    for i in 0..n {
        let gw = gateways[i % gateways.len()];
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        seen.push(response.status);
    }
    seen
}

#[tokio::test]
async fn handshakes_over_the_minute_limit_are_answered_429_with_kongs_headers() {
    bounded(async {
        let up = echo_upstream().await;
        let gw = gateway(&kong_yml(up, "{ minute: 2, limit_by: ip, policy: local }")).await;
        let first = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(first.status, 101);
        assert_eq!(first.headers["x-ratelimit-limit-minute"], "2");
        assert_eq!(statuses(&[gw], 1).await, [101]);
        let refused = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.headers["retry-after"], "60");
        assert_eq!(
            String::from_utf8_lossy(&refused.body).trim(),
            r#"{"message":"API rate limit exceeded"}"#
        );
    })
    .await;
}

/// Kong's flat `redis_*` keys, `sync_rate` -1 (every handshake asks
/// Redis): two gateways share one allowance.
#[tokio::test]
async fn two_gateways_share_a_redis_counted_limit() {
    bounded(async {
        let redis = RedisServer::start();
        let up = echo_upstream().await;
        let config = format!(
            "{{ second: 1000, hour: 3, limit_by: service, policy: redis, redis_host: 127.0.0.1, \
             redis_port: {}, redis_timeout: 500, error_code: 503, error_message: slow down }}",
            redis.port()
        );
        let text = kong_yml(up, &config);
        let gateways = [gateway(&text).await, gateway(&text).await];
        assert_eq!(statuses(&gateways, 5).await, [101, 101, 101, 503, 503]);
    })
    .await;
}

#[test]
fn what_kongs_rate_limiting_has_and_frameway_not_is_refused_by_name() {
    let up = "127.0.0.1:1".parse().unwrap();
    for (config, why) in [
        (
            "{ month: 10 }",
            "month and year (calendar periods) are not supported",
        ),
        (
            "{ minute: 1, policy: cluster }",
            "policy = \"cluster\" counts in Kong's database",
        ),
        (
            "{ minute: 1, limit_by: path, path: /x }",
            "limit_by = \"path\" is not supported",
        ),
        (
            "{ minute: 1, redis_host: r }",
            "redis settings apply only to policy = \"redis\"",
        ),
    ] {
        let error = support::refused_config(&kong_yml(up, config), "kong.yml");
        assert!(error.contains(why), "{config}: {error}");
    }
}
