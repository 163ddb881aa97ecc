//! Echo server on tokio-tungstenite, shaped like its `autobahn-server`
//! example (read a message, send it back) on a current-thread runtime.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn handle(stream: TcpStream) -> tokio_tungstenite::tungstenite::Result<()> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

fn main() {
    let addr = frameway_bench_peers::listen_addr();
    frameway_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("tokio-tungstenite echo listening on ws://{addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = handle(stream).await;
            });
        }
    })
}
