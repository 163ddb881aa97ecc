//! Echo server on fastwebsockets, shaped like its `echo_server` example:
//! hyper does the upgrade, a FragmentCollector reassembles messages, each
//! connection runs unconstrained on a current-thread runtime.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(handle_client(fut)).await {
            if !matches!(
                e,
                WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed
            ) {
                eprintln!("connection: {e}");
            }
        }
    });
    Ok(response)
}

fn main() {
    let addr = frameway_bench_peers::listen_addr();
    frameway_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("fastwebsockets echo listening on ws://{addr}");
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
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("http: {e:?}");
                }
            });
        }
    })
}
