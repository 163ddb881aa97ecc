//! Echo server on tokio-websockets, shaped like its `echo_server` example:
//! ServerBuilder accepts, messages go back whole, each connection runs
//! unconstrained on a current-thread runtime.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_websockets::{Config, Limits, ServerBuilder};

fn main() {
    let addr = frameway_bench_peers::listen_addr();
    frameway_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("tokio-websockets echo listening on ws://{addr}");
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = conn.set_nodelay(true);
            tokio::spawn(tokio::task::unconstrained(async move {
                let accepted = ServerBuilder::new()
                    .config(Config::default().frame_size(usize::MAX))
                    .limits(Limits::unlimited())
                    .accept(conn)
                    .await;
                let Ok((_request, mut server)) = accepted else {
                    return;
                };
                while let Some(Ok(item)) = server.next().await {
                    if (item.is_text() || item.is_binary()) && server.send(item).await.is_err() {
                        break;
                    }
                }
            }));
        }
    })
}
