//! What the async API costs a message beyond the protocol's own work: a
//! 20 B round trip through `send` and `recv` between two WebSockets over an
//! in-memory stream, without and with read and write timeouts.
//!
//! `cargo bench -p frameway --bench calls` (numbers in BENCHMARKS.md,
//! "Timeouts armed only for a call that waits").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use frameway::{Message, Role, WebSocket, WebSocketConfig};
use tokio::io::DuplexStream;

fn pair(config: &Arc<WebSocketConfig>) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    (
        WebSocket::from_raw_socket(near, Role::Client, config.clone(), Bytes::new()),
        WebSocket::from_raw_socket(far, Role::Server, config.clone(), Bytes::new()),
    )
}

fn round_trips(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let timed = WebSocketConfig {
        read_timeout: Some(Duration::from_secs(60)),
        write_timeout: Some(Duration::from_secs(60)),
        ..WebSocketConfig::default()
    };
    let configs = [
        ("no timeouts", WebSocketConfig::default()),
        ("read and write timeouts", timed),
    ];
    let payload = Bytes::from_static(&[b'x'; 20]);
    let mut group = c.benchmark_group("send and recv, 20 B round trip");
    for (name, config) in configs {
        let (mut client, mut server) = pair(&Arc::new(config));
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    client.send(Message::Binary(payload.clone())).await.unwrap();
                    let echoed = server.recv().await.unwrap().unwrap();
                    server.send(echoed).await.unwrap();
                    client.recv().await.unwrap().unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
