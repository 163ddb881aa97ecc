//! Balanced upstreams over real sockets: a gateway in front of several
//! Python `websockets` servers (real processes) that greet each connection
//! with their name, so that a client knows which target it reached.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use frameway::client::ConnectOptions;
use frameway::{CloseCode, Message};
use frameway_gateway::plugin::Registry;
use support::{bounded, connect_opts, gateway, gateway_addrs, python_server};
use tokio::process::Child;

/// A Python echo server that says `name` first on every connection.
async fn named(name: &str, extra: &[&str]) -> (Child, u16) {
    let mut args = vec!["--hello", name];
    args.extend_from_slice(extra);
    python_server(&args).await
}

/// Servers `a`, `b` and `c`, and their ports.
async fn three() -> ([Child; 3], [u16; 3]) {
    let (a, pa) = named("a", &[]).await;
    let (b, pb) = named("b", &[]).await;
    let (c, pc) = named("c", &[]).await;
    ([a, b, c], [pa, pb, pc])
}

/// `[[upstreams]]` named `backends` with `targets` (port, weight) and
/// `settings`, and a service on it with `service` settings.
fn config(settings: &str, targets: &[(u16, u32)], service: &str) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|(port, weight)| format!("{{ target = \"127.0.0.1:{port}\", weight = {weight} }}"))
        .collect();
    format!(
        r#"[[upstreams]]
name = "backends"
targets = [{}]
{settings}

[[services]]
name = "chat"
url = "ws://backends/socket"
{service}
  [[services.routes]]
  name = "chat"
  paths = ["/"]
"#,
        targets.join(", ")
    )
}

/// Connects through the gateway and returns the name of the server reached,
/// with the connection still open.
async fn reach(
    gateway: SocketAddr,
    options: ConnectOptions,
) -> (String, frameway::WebSocket<frameway::client::ClientStream>) {
    let mut ws = connect_opts(&format!("ws://{gateway}/"), options).await;
    let Some(Ok(Message::Text(name))) = ws.recv().await else {
        panic!("the server greets first");
    };
    (name.as_str().to_owned(), ws)
}

/// Connects, reads the greeting, closes: the server reached.
async fn visit(gateway: SocketAddr, options: ConnectOptions) -> String {
    let (name, mut ws) = reach(gateway, options).await;
    let _ = ws.close(CloseCode::NORMAL, "").await;
    name
}

fn tally(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_round_robin_spreads_3000_connections_by_weight() {
    // 3,000 handshakes through three Python servers: a few seconds alone,
    // far more on a loaded machine, so a longer bound than `bounded`'s.
    let bounded = |test| async move {
        tokio::time::timeout(std::time::Duration::from_secs(180), test)
            .await
            .expect("3,000 connections within 3 minutes")
    };
    bounded(async {
        let (_servers, [a, b, c]) = three().await;
        let gw = gateway(&config("", &[(a, 100), (b, 50), (c, 150)], "")).await;
        // 30 clients, 100 connections each, so that the run stays short.
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..30 {
            clients.spawn(async move {
                let mut names = Vec::new();
                for _ in 0..100 {
                    names.push(visit(gw, ConnectOptions::default()).await);
                }
                names
            });
        }
        let mut names = Vec::new();
        while let Some(done) = clients.join_next().await {
            names.extend(done.unwrap());
        }
        assert_eq!(names.len(), 3000);
        let counts = tally(names);
        for (name, expected) in [("a", 1000.0), ("b", 500.0), ("c", 1500.0)] {
            let got = counts[name] as f64;
            assert!(
                (got - expected).abs() <= expected * 0.05,
                "{name}: {got} of 3000, weight share {expected}: {counts:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn least_connections_fills_the_target_whose_clients_left() {
    bounded(async {
        let (_servers, [a, b, c]) = three().await;
        let settings = "algorithm = \"least-connections\"";
        let gw = gateway(&config(settings, &[(a, 100), (b, 100), (c, 100)], "")).await;
        let mut held = Vec::new();
        for _ in 0..9 {
            held.push(reach(gw, ConnectOptions::default()).await);
        }
        // Short connections come and go meanwhile.
        for _ in 0..20 {
            visit(gw, ConnectOptions::default()).await;
        }
        // Every client of `a` leaves; the next connections go there.
        held.retain(|(name, _)| name != "a");
        for _ in 0..6 {
            held.push(reach(gw, ConnectOptions::default()).await);
        }
        let counts = tally(held.iter().map(|(name, _)| name.clone()));
        assert_eq!(
            counts,
            tally(["a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c"].map(String::from)),
            "open sessions are even again"
        );
    })
    .await;
}

#[tokio::test]
async fn consistent_hashing_keeps_a_room_on_its_target_and_moves_only_a_removed_targets_rooms() {
    bounded(async {
        let (_servers, [a, b, c]) = three().await;
        let settings =
            "algorithm = \"consistent-hashing\"\nhash_on = \"header\"\nhash_on_header = \"X-Room\"";
        let all = gateway(&config(settings, &[(a, 100), (b, 100), (c, 100)], "")).await;
        let without_b = gateway(&config(settings, &[(a, 100), (c, 100)], "")).await;
        let room =
            |i: usize| ConnectOptions::default().header("X-Room", format!("room-{}", i % 50));

        let mut placed: HashMap<usize, String> = HashMap::new();
        for i in 0..1000 {
            let name = visit(all, room(i)).await;
            let first = placed.entry(i % 50).or_insert_with(|| name.clone());
            assert_eq!(*first, name, "room {} changed target", i % 50);
        }
        let on_b = placed.values().filter(|n| *n == "b").count();
        assert!((5..=30).contains(&on_b), "b has {on_b} of 50 rooms");
        let mut moved = 0;
        for (i, was) in &placed {
            let now = visit(without_b, room(*i)).await;
            if was == "b" {
                moved += 1;
            } else {
                assert_eq!(&now, was, "room {i} moved though its target stayed");
            }
        }
        assert_eq!(moved, on_b, "only the removed target's rooms move (1/N)");
    })
    .await;
}

#[tokio::test]
async fn a_killed_target_costs_no_connection_retries_skip_it_and_health_marks_it() {
    bounded(async {
        let (_a, a) = named("a", &[]).await;
        let (mut b_process, b) = named("b", &[]).await;
        let (_c, c) = named("c", &[]).await;
        let settings = "[upstreams.healthchecks.passive]\nunhealthy = { failures = 1 }";
        let gw = gateway(&config(settings, &[(a, 100), (b, 100), (c, 100)], "")).await;
        assert_eq!(visit(gw, ConnectOptions::default()).await, "a");
        b_process.kill().await.unwrap();
        // Every connection after the kill succeeds: the one that picks the
        // dead target is retried on the next (and b is then skipped).
        let names: Vec<String> = {
            let mut names = Vec::new();
            for _ in 0..300 {
                names.push(visit(gw, ConnectOptions::default()).await);
            }
            names
        };
        let counts = tally(names);
        assert_eq!(counts.get("b"), None, "{counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 300);
    })
    .await;
}

#[tokio::test]
async fn a_5xx_target_is_skipped_a_4xx_is_the_backends_answer_and_exhausted_tries_are_502() {
    bounded(async {
        let (_ok, ok) = named("ok", &[]).await;
        let (_busy, busy) = named("busy", &["--reject-status", "503"]).await;
        let gw = gateway(&config(
            "[upstreams.healthchecks.passive]\nunhealthy = { failures = 0 }",
            &[(busy, 100), (ok, 100)],
            "",
        ))
        .await;
        for _ in 0..10 {
            assert_eq!(visit(gw, ConnectOptions::default()).await, "ok");
        }

        let (_forbidden, forbidden) = named("x", &["--reject-status", "403"]).await;
        let gw = gateway(&config("", &[(forbidden, 100)], "")).await;
        let refused = frameway::connect(&format!("ws://{gw}/")).await.unwrap_err();
        assert!(refused.to_string().contains("403"), "{refused}");

        let (_b1, busy1) = named("b1", &["--reject-status", "503"]).await;
        let (_b2, busy2) = named("b2", &["--reject-status", "502"]).await;
        let gw = gateway(&config("", &[(busy1, 100), (busy2, 100)], "retries = 1")).await;
        let failed = frameway::connect(&format!("ws://{gw}/")).await.unwrap_err();
        assert!(failed.to_string().contains("502"), "{failed}");
        // Both are now unhealthy (passive checks): nothing is tried.
        for _ in 0..3 {
            let _ = frameway::connect(&format!("ws://{gw}/")).await;
        }
        let none = frameway::connect(&format!("ws://{gw}/")).await.unwrap_err();
        assert!(none.to_string().contains("503"), "{none}");
    })
    .await;
}

#[tokio::test]
async fn an_unhealthy_target_comes_back_once_its_probe_succeeds() {
    bounded(async {
        let (_a, a) = named("a", &[]).await;
        let (mut b_process, b) = named("b", &[]).await;
        let settings = r#"[upstreams.healthchecks.active]
type = "websocket"
interval = 100
timeout = 500
healthy = { successes = 1 }
unhealthy = { failures = 1 }
[upstreams.healthchecks.passive]
unhealthy_timeout = 600000"#;
        let config = config(settings, &[(a, 100), (b, 100)], "");
        let gw = gateway_addrs(&config, &Registry::with_builtins()).await[0];
        b_process.kill().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..10 {
            assert_eq!(visit(gw, ConnectOptions::default()).await, "a");
        }
        // b is back on its port: its probe succeeds and it takes
        // connections again, long before the passive timeout.
        let port = b.to_string();
        let (_b_again, _) = named("b", &["--port", &port]).await;
        let mut seen_b = false;
        for _ in 0..50 {
            seen_b |= visit(gw, ConnectOptions::default()).await == "b";
            if seen_b {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen_b, "b never came back");
    })
    .await;
}
