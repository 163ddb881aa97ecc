//! Limits shared by a cluster: two real `frameway gateway` processes and
//! one real `redis-server`, with one consumer's connections spread over
//! both gateways (`policy = "redis"`).

mod support;

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use frameway::client::{connect, ClientStream};
use frameway::{Message, WebSocket};
use frameway_test_support::{bounded, RedisServer};
use support::{admin, echo_route_config, free_port, start_logged, Server};

/// One gateway of the cluster: its process, its log, its ports.
struct Gateway {
    process: Server,
    log: Receiver<String>,
    port: u16,
    admin: u16,
    file: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Two gateways in front of one `frameway echo`, with consumer alice
/// (four keys), key-auth, and `plugins` (global `[[plugins]]` entries).
fn cluster(plugins: &str) -> (Server, [Gateway; 2]) {
    let (echo, echo_port) = support::echo_server(&[]);
    let gateway = || {
        let (port, admin) = (free_port(), free_port());
        let rest = format!(
            r#"
[admin]
listen = "127.0.0.1:{admin}"

[[consumers]]
username = "alice"
keyauth_credentials = [{{ key = "a1" }}, {{ key = "a2" }}, {{ key = "a3" }}, {{ key = "a4" }}]

[[plugins]]
name = "key-auth"
{plugins}"#
        );
        let file = std::env::temp_dir().join(format!("frameway-cluster-{port}.toml"));
        std::fs::write(&file, echo_route_config(port, echo_port, "", &rest)).unwrap();
        let (process, log) = start_logged(&["gateway", "--config", file.to_str().unwrap()]);
        Gateway {
            process,
            log,
            port,
            admin,
            file,
        }
    };
    (echo, [gateway(), gateway()])
}

async fn open(gateway: &Gateway, key: &str) -> Result<WebSocket<ClientStream>, String> {
    let url = format!("ws://127.0.0.1:{}/echo?apikey={key}", gateway.port);
    connect(url.as_str())
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Sends `text` and returns what comes back: the echo, or the close.
async fn echo(ws: &mut WebSocket<ClientStream>, text: &str) -> Message {
    ws.send_text(text).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .expect("an answer")
        .expect("not the end")
        .expect("a message")
}

/// Long enough for every gateway to exchange its counts (sync_rate 0.05).
async fn sync() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// Waits, if need be, until the current hour has a minute left: the
/// hour windows of these tests must not roll over mid-test.
async fn clear_of_the_hours_end() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = 3600 - now.as_secs() % 3600;
    if left < 60 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

fn redis_table(redis: &RedisServer) -> String {
    format!(
        "redis = {{ host = \"127.0.0.1\", port = {}, timeout = 500 }}",
        redis.port()
    )
}

/// The values under the keys matching `pattern` in `redis`.
fn values(redis: &RedisServer, pattern: &str) -> Vec<u64> {
    let keys: Vec<String> = redis
        .command(&format!("KEYS {pattern}"))
        .lines()
        .filter(|l| !l.starts_with(['*', '$', '+']))
        .map(str::to_owned)
        .collect();
    keys.iter()
        .filter_map(|key| {
            let answer = redis.command(&format!("GET {key}"));
            answer.lines().nth(1).and_then(|n| n.parse().ok())
        })
        .collect()
}

#[tokio::test]
async fn a_consumers_message_rate_is_held_across_two_gateways() {
    // Outside the test's time bound, which the wait can exceed.
    clear_of_the_hours_end().await;
    bounded(async {
        let redis = RedisServer::start();
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-rate-limit\"\nconfig = {{ hour = 12, limit_by = \"consumer\", \
             policy = \"redis\", sync_rate = 0.05, {} }}\n",
            redis_table(&redis)
        );
        let (_echo, [one, two]) = cluster(&plugins);
        let mut laptop = open(&one, "a1").await.unwrap();
        let mut phone = open(&two, "a2").await.unwrap();
        for n in 0..5 {
            assert_eq!(echo(&mut laptop, &n.to_string()).await, Message::text(n.to_string()));
        }
        sync().await;
        // The second gateway counts from what the first one told Redis.
        assert_eq!(echo(&mut phone, "5").await, Message::text("5"));
        sync().await;
        for n in 6..12 {
            assert_eq!(echo(&mut phone, &n.to_string()).await, Message::text(n.to_string()));
        }
        let Message::Close(Some(close)) = echo(&mut phone, "12").await else {
            panic!("the thirteenth message closes the connection");
        };
        assert_eq!((close.code.as_u16(), close.reason.as_str()), (1008, "Rate limit exceeded"));
        sync().await;
        // And the first gateway has heard of the second one's messages.
        let Message::Close(Some(close)) = echo(&mut laptop, "13").await else {
            panic!("the first gateway refuses too");
        };
        assert_eq!(close.code.as_u16(), 1008);
        assert_eq!(values(&redis, "*websocket-rate-limit*"), vec![12]);
    })
    .await;
}

#[tokio::test]
async fn with_sync_rate_0_every_message_is_counted_in_redis_and_the_limit_is_exact() {
    // Outside the test's time bound, which the wait can exceed.
    clear_of_the_hours_end().await;
    bounded(async {
        let redis = RedisServer::start();
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-rate-limit\"\nconfig = {{ hour = 9, limit_by = \"consumer\", \
             policy = \"redis\", sync_rate = 0, window_type = \"sliding\", {} }}\n",
            redis_table(&redis)
        );
        let (_echo, [one, two]) = cluster(&plugins);
        let mut laptop = open(&one, "a1").await.unwrap();
        let mut phone = open(&two, "a2").await.unwrap();
        // No pause for a sync: each message is counted before it passes.
        for n in 0..9 {
            let ws = if n % 2 == 0 { &mut laptop } else { &mut phone };
            assert_eq!(echo(ws, &n.to_string()).await, Message::text(n.to_string()));
        }
        for ws in [&mut phone, &mut laptop] {
            let Message::Close(Some(close)) = echo(ws, "9").await else {
                panic!("the tenth message closes the connection, on either gateway");
            };
            assert_eq!(close.code.as_u16(), 1008);
        }
        assert_eq!(values(&redis, "*websocket-rate-limit*"), vec![9]);
    })
    .await;
}

#[tokio::test]
async fn open_connections_are_held_across_two_gateways_and_a_dead_ones_expire_with_its_lease() {
    bounded(async {
        let redis = RedisServer::start();
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-connection-limit\"\nconfig = {{ limit = 2, lease = 3, \
             policy = \"redis\", {} }}\n",
            redis_table(&redis)
        );
        let (_echo, [mut one, two]) = cluster(&plugins);
        let _on_one = open(&one, "a1").await.unwrap();
        let on_two = open(&two, "a2").await.unwrap();
        for gateway in [&one, &two] {
            let refused = open(gateway, "a3").await.expect_err("a third is refused");
            assert!(refused.contains("429"), "{refused}");
        }
        // A connection's end frees its place at once, not when its lease
        // runs out.
        drop(on_two);
        let freed = Instant::now();
        let mut _again = None;
        while _again.is_none() {
            assert!(
                freed.elapsed() < Duration::from_secs(2),
                "the place was not freed"
            );
            _again = open(&one, "a3").await.ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first gateway dies holding both places: they stay taken
        // until its lease (3 s) runs out, then the second gateway has them.
        one.process.0.kill().unwrap();
        let killed = Instant::now();
        let refused = open(&two, "a4")
            .await
            .expect_err("the dead gateway's places still count");
        assert!(refused.contains("429"), "{refused}");
        let mut taken = Vec::new();
        while taken.is_empty() {
            assert!(
                killed.elapsed() < Duration::from_secs(6),
                "the lease never ran out"
            );
            if let Ok(ws) = open(&two, "a4").await {
                taken.push(ws);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            killed.elapsed() > Duration::from_millis(500),
            "released before the lease ran out"
        );
        taken.push(open(&two, "a1").await.unwrap());
        let refused = open(&two, "a2").await.expect_err("the limit still holds");
        assert!(refused.contains("429"), "{refused}");
    })
    .await;
}

/// Every line `gateway` has logged so far.
fn logged(gateway: &Gateway) -> Vec<String> {
    gateway.log.try_iter().collect()
}

#[tokio::test]
async fn without_redis_both_gateways_go_on_alone_and_resynchronise_when_it_returns() {
    // Outside the test's time bound, which the wait can exceed.
    clear_of_the_hours_end().await;
    bounded(async {
        let mut redis = RedisServer::start();
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-rate-limit\"\nconfig = {{ hour = 1000, limit_by = \"consumer\", \
             policy = \"redis\", sync_rate = 0.05, {table} }}\n\
             [[plugins]]\nname = \"websocket-connection-limit\"\nconfig = {{ limit = 10, lease = 3, \
             policy = \"redis\", {table} }}\n",
            table = redis_table(&redis)
        );
        let (_echo, [one, two]) = cluster(&plugins);
        let mut laptop = open(&one, "a1").await.unwrap();
        let mut phone = open(&two, "a2").await.unwrap();
        assert_eq!(echo(&mut laptop, "before").await, Message::text("before"));
        sync().await;
        redis.stop();
        // Messages and handshakes go on, counted by each gateway alone.
        let mut sent = 0;
        for round in 0..3 {
            for ws in [&mut laptop, &mut phone] {
                let text = format!("during {round}");
                assert_eq!(echo(ws, &text).await, Message::text(text));
                sent += 1;
            }
            sync().await;
        }
        let mut tablet = open(&two, "a3").await.expect("handshakes go on");
        assert_eq!(echo(&mut tablet, "t").await, Message::text("t"));
        sent += 1;
        for gateway in [&one, &two] {
            // Each limit notices on its next call to Redis (the leases
            // within a third of their 3 s).
            let noticed = Instant::now();
            loop {
                let (_, metrics) = admin(gateway.admin, "GET", "/metrics");
                if metrics.contains("frameway_redis_outages_total 2") {
                    assert!(!metrics.contains("frameway_redis_failed_calls_total 0\n"));
                    break;
                }
                assert!(noticed.elapsed() < Duration::from_secs(5), "{metrics}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let lines = logged(gateway);
            for plugin in ["websocket-rate-limit", "websocket-connection-limit"] {
                let warned = lines
                    .iter()
                    .filter(|l| l.contains("Redis failed") && l.contains(plugin))
                    .count();
                assert_eq!(warned, 1, "{plugin} warns once per outage: {lines:#?}");
            }
        }
        // Redis returns, empty: what the gateways counted meanwhile is
        // pushed to it, and counts are shared again.
        redis.restart();
        let back = Instant::now();
        while values(&redis, "*websocket-rate-limit*") != vec![sent] {
            assert!(back.elapsed() < Duration::from_secs(5), "counts never resynchronised");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(echo(&mut phone, "after").await, Message::text("after"));
        sync().await;
        assert_eq!(values(&redis, "*websocket-rate-limit*"), vec![sent + 1]);
        for gateway in [&one, &two] {
            assert!(logged(gateway).iter().any(|l| l.contains("Redis answers again")));
        }
    })
    .await;
}

#[tokio::test]
async fn a_gateway_reaches_redis_over_tls_with_a_password_and_a_database() {
    // Outside the test's time bound, which the wait can exceed.
    clear_of_the_hours_end().await;
    bounded(async {
        let pki = support::TestPki::new("redis-tls");
        let redis = RedisServer::start_secured(&pki, "s3cret");
        // The gateway trusts the test CA as rustls-native-certs reads it:
        // from SSL_CERT_FILE (this test runs in a process of its own).
        std::env::set_var("SSL_CERT_FILE", pki.path("ca.pem"));
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-rate-limit\"\nconfig = {{ hour = 3, limit_by = \"consumer\", \
             policy = \"redis\", sync_rate = 0, fault_tolerant = false, redis = {{ host = \"127.0.0.1\", \
             port = {}, ssl = true, password = \"s3cret\", database = 2 }} }}\n",
            redis.tls_port().unwrap()
        );
        let (_echo, [one, _two]) = cluster(&plugins);
        let mut laptop = open(&one, "a1").await.unwrap();
        for n in 0..3 {
            assert_eq!(echo(&mut laptop, &n.to_string()).await, Message::text(n.to_string()));
        }
        let Message::Close(Some(close)) = echo(&mut laptop, "3").await else {
            panic!("the fourth message closes the connection");
        };
        assert_eq!(close.code.as_u16(), 1008);
        // Counted in database 2, not 0: the settings reached Redis.
        assert!(redis.command("SELECT 2\r\nKEYS *").contains("websocket-rate-limit"));
        assert!(!redis.command("KEYS *").contains("websocket-rate-limit"));
        assert!(!logged(&one).iter().any(|l| l.contains("Redis failed")));
    })
    .await;
}

#[tokio::test]
async fn across_a_reload_the_old_and_new_configurations_connections_add_up_and_are_released() {
    bounded(async {
        let redis = RedisServer::start();
        let plugins = format!(
            "[[plugins]]\nname = \"websocket-connection-limit\"\nconfig = {{ limit = 2, lease = 30, \
             policy = \"redis\", {} }}\n",
            redis_table(&redis)
        );
        let (_echo, [one, _two]) = cluster(&plugins);
        let before = open(&one, "a1").await.unwrap();
        assert_eq!(admin(one.admin, "POST", "/reload"), (200, "reloaded\n".into()));
        // The connection opened before the reload still counts under the
        // old configuration's plugin, beside the new one's.
        let _after = open(&one, "a2").await.unwrap();
        let refused = open(&one, "a3").await.expect_err("two are open");
        assert!(refused.contains("429"), "{refused}");
        // When the old configuration's last connection ends, its count in
        // Redis goes to zero at once (not after its 30 s lease).
        drop(before);
        let ended = Instant::now();
        let mut again = None;
        while again.is_none() {
            assert!(ended.elapsed() < Duration::from_secs(3), "the old place was never freed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            again = open(&one, "a3").await.ok();
        }
        // And the new configuration's count was never the old one's: two
        // are open again.
        let refused = open(&one, "a4").await.expect_err("two are open again");
        assert!(refused.contains("429"), "{refused}");
    })
    .await;
}
