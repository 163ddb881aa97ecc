//! The floor under every tokio proxy: relays bytes between each client and
//! a new connection to `--upstream ADDR`, both ways, without looking at
//! them (the upgrade and every frame pass through as they are), with
//! 64 KiB buffers like tuned nginx. One read and one write per message per
//! direction, as in every proxy measured; parsing frames, running plugins
//! and re-masking are what a WebSocket gateway adds to it.

use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--upstream" => upstream = args.next(),
            other => panic!("unknown argument {other:?}; usage: --listen ADDR --upstream ADDR"),
        }
    }
    let listen: std::net::SocketAddr = listen.expect("--listen ADDR").parse().expect("--listen");
    let upstream: std::net::SocketAddr = upstream
        .expect("--upstream ADDR")
        .parse()
        .expect("--upstream");
    frameway_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        eprintln!("floor relay listening on {listen}, to {upstream}");
        loop {
            let (mut client, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut up,
                    64 * 1024,
                    64 * 1024,
                )
                .await;
            });
        }
    })
}
