use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;

use super::*;

fn spec(port: u16, weight: u32) -> TargetSpec {
    TargetSpec {
        name: format!("127.0.0.1:{port}"),
        host: "127.0.0.1".into(),
        port,
        weight,
    }
}

fn pool(algorithm: Algorithm, hash_on: HashOn, targets: Vec<TargetSpec>) -> Pool {
    Pool::new(PoolConfig {
        name: "backends".into(),
        algorithm,
        hash_on,
        hash_fallback: HashOn::None,
        targets,
        dns_refresh: Duration::from_secs(30),
        passive: PassiveCheck {
            failures: 3,
            unhealthy_timeout: Duration::from_secs(60),
        },
        active: None,
    })
}

fn counts(leases: &[Lease]) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for lease in leases {
        *counts.entry(lease.target().addr.port()).or_default() += 1;
    }
    counts
}

fn header_key(pool: &Pool, value: &str) -> Option<u64> {
    let mut headers = HeaderMap::new();
    headers.insert("x-room", value.parse().unwrap());
    pool.key(&KeySource {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        headers: &headers,
        path: "/",
        query: None,
    })
}

#[test]
fn weighted_round_robin_gives_each_target_its_share_interleaved() {
    let pool = pool(
        Algorithm::RoundRobin,
        HashOn::None,
        vec![spec(1, 100), spec(2, 50), spec(3, 0), spec(4, 150)],
    );
    let leases: Vec<Lease> = (0..3000).map(|_| pool.pick(None, &[]).unwrap()).collect();
    let counts = counts(&leases);
    assert_eq!(counts.get(&3), None, "weight 0 disables a target");
    for (port, share) in [(1, 1000), (2, 500), (4, 1500)] {
        assert_eq!(
            counts[&port], share,
            "smooth round-robin is exact per cycle"
        );
    }
    let first_six: Vec<u16> = leases[..6].iter().map(|l| l.target().addr.port()).collect();
    assert_eq!(
        first_six.iter().filter(|&&p| p == 4).count(),
        3,
        "{first_six:?}"
    );
}

#[test]
fn least_connections_evens_out_open_sessions_while_others_churn() {
    let pool = pool(
        Algorithm::LeastConnections,
        HashOn::None,
        vec![spec(1, 100), spec(2, 100), spec(3, 100)],
    );
    // Some clients hold their connections; then those on target 1 leave.
    let mut held: Vec<Lease> = Vec::new();
    for _ in 0..30 {
        held.push(pool.pick(None, &[]).unwrap());
    }
    held.retain(|l| l.target().addr.port() != 1);
    // Churn: connections that open and close, and some that stay.
    for i in 0..300 {
        let lease = pool.pick(None, &[]).unwrap();
        if i % 3 == 0 {
            held.push(lease);
        }
    }
    let counts = counts(&held);
    let (min, max) = (
        counts.values().min().copied().unwrap(),
        counts.values().max().copied().unwrap(),
    );
    assert!(max - min <= 1, "open sessions per target: {counts:?}");
    for target in pool.targets().iter() {
        assert_eq!(target.sessions() as usize, counts[&target.addr.port()]);
    }
}

#[test]
fn consistent_hashing_keeps_keys_and_moves_about_a_third_when_one_of_three_goes() {
    let all = vec![spec(1, 100), spec(2, 100), spec(3, 100)];
    let before = pool(
        Algorithm::ConsistentHashing,
        HashOn::Header("x-room".parse().unwrap()),
        all.clone(),
    );
    let rooms: Vec<String> = (0..1000).map(|i| format!("room-{i}")).collect();
    let placed: Vec<u16> = rooms
        .iter()
        .map(|room| {
            let key = header_key(&before, room);
            let first = before.pick(key, &[]).unwrap().target().addr.port();
            let again = before.pick(key, &[]).unwrap().target().addr.port();
            assert_eq!(first, again, "the same key goes to the same target");
            first
        })
        .collect();
    let per_target = |port| placed.iter().filter(|&&p| p == port).count();
    for port in 1..=3 {
        assert!(
            (250..420).contains(&per_target(port)),
            "{port}: {}",
            per_target(port)
        );
    }

    let after = pool(
        Algorithm::ConsistentHashing,
        HashOn::Header("x-room".parse().unwrap()),
        vec![spec(1, 100), spec(3, 100)],
    );
    let mut moved = 0;
    for (room, was) in rooms.iter().zip(&placed) {
        let now = after
            .pick(header_key(&after, room), &[])
            .unwrap()
            .target()
            .addr
            .port();
        if *was != 2 {
            assert_eq!(now, *was, "a key whose target stayed does not move");
        } else {
            moved += 1;
        }
    }
    assert_eq!(moved, per_target(2), "only the removed target's keys move");
}

#[test]
fn a_request_without_the_hash_key_falls_back_then_round_robins() {
    let mut config_pool = pool(
        Algorithm::ConsistentHashing,
        HashOn::Cookie("room".into()),
        vec![spec(1, 100), spec(2, 100)],
    );
    config_pool.hash_fallback = HashOn::Ip;
    let headers = HeaderMap::new();
    let source = |ip: [u8; 4]| KeySource {
        ip: IpAddr::V4(Ipv4Addr::from(ip)),
        headers: &headers,
        path: "/",
        query: None,
    };
    let key = config_pool.key(&source([10, 0, 0, 1]));
    assert!(key.is_some(), "the fallback key is the client's address");
    assert_eq!(key, config_pool.key(&source([10, 0, 0, 1])));
    config_pool.hash_fallback = HashOn::None;
    assert_eq!(config_pool.key(&source([10, 0, 0, 1])), None);
    let ports: Vec<u16> = (0..4)
        .map(|_| config_pool.pick(None, &[]).unwrap().target().addr.port())
        .collect();
    assert_eq!(ports, [1, 2, 1, 2]);
}

#[test]
fn failed_targets_are_skipped_until_their_unhealthy_timeout() {
    let pool = pool(
        Algorithm::RoundRobin,
        HashOn::None,
        vec![spec(1, 100), spec(2, 100)],
    );
    let one = pool.targets()[0].clone();
    for _ in 0..2 {
        pool.failed(&one);
    }
    assert!(
        one.is_healthy(),
        "two failures are under the threshold of 3"
    );
    pool.succeeded(&one);
    for _ in 0..2 {
        pool.failed(&one);
    }
    assert!(one.is_healthy(), "a success resets the count");
    pool.failed(&one);
    assert!(!one.is_healthy());
    for _ in 0..4 {
        assert_eq!(pool.pick(None, &[]).unwrap().target().addr.port(), 2);
    }
    let two = pool.targets()[1].addr;
    assert!(
        pool.pick(None, &[two]).is_none(),
        "no healthy target is left untried"
    );
}

#[test]
fn a_name_that_resolves_to_two_addresses_is_two_targets_and_both_serve() {
    let name = TargetSpec {
        name: "chat.internal:9000".into(),
        host: "chat.internal".into(),
        port: 9000,
        weight: 100,
    };
    let pool = pool(
        Algorithm::RoundRobin,
        HashOn::None,
        vec![name, spec(1, 100)],
    );
    let spec = pool.specs[0].clone();
    assert_eq!(
        pool.targets().len(),
        1,
        "an unresolved name has no address yet"
    );
    let a: SocketAddr = "10.0.0.1:9000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:9000".parse().unwrap();
    pool.set_addresses(&spec, vec![b, a]);
    let addrs: Vec<SocketAddr> = (0..6)
        .map(|_| pool.pick(None, &[]).unwrap().target().addr)
        .collect();
    assert!(addrs.contains(&a) && addrs.contains(&b), "{addrs:?}");

    // A session on an address that stays keeps being counted across a
    // refresh; an address that goes takes no new connections.
    let held = pool.pick(None, &[]).unwrap();
    let held_addr = held.target().addr;
    let stays = if held_addr == a { a } else { b };
    pool.set_addresses(&spec, vec![stays]);
    if held_addr == stays {
        let target = pool
            .targets()
            .iter()
            .find(|t| t.addr == stays)
            .unwrap()
            .clone();
        assert_eq!(target.sessions(), 1);
    }
    assert_eq!(pool.targets().len(), 2);
}
