//! `frameway echo`: echoes every message back, with limits high enough for
//! Autobahn|Testsuite (16 MiB messages, a million fragments), and
//! permessage-deflate accepted unless `--no-deflate`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Poll};

use clap::Args;
use frameway::server::ServerConfig;
use frameway::{DeflateConfig, WebSocketConfig};
use tokio::net::TcpListener;

#[derive(Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message: u64,
    /// Worker threads (1 runs everything on the main thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Refuse permessage-deflate (accepted by default).
    #[arg(long)]
    no_deflate: bool,
    /// Send echoes in frames of at most this many payload bytes.
    #[arg(long, value_name = "BYTES")]
    fragment_size: Option<usize>,
}

pub fn run(args: EchoArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(args.threads)?.block_on(serve(args))
}

async fn serve(args: EchoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("frameway echo listening on ws://{}", listener.local_addr()?);
    let mut websocket = WebSocketConfig::default()
        .max_payload_len(args.max_message)
        .max_fragments(1 << 20);
    if !args.no_deflate {
        websocket = websocket.deflate(DeflateConfig::default());
    }
    websocket.fragment_size = args.fragment_size;
    let config = ServerConfig::default().websocket(websocket);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Running out of file descriptors must not stop the server.
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Every idle connection pays for its task's size, which tokio rounds
        // up to 128 bytes: so a poll function rather than an `async` block
        // (which would hold the echo future twice over, captured and moved
        // into its `.await`), and no peer address kept for the error line.
        let mut echo = frameway_gateway::echo::serve_echo_with(tcp, config.clone());
        tokio::spawn(std::future::poll_fn(move |cx| {
            if let Err(e) = ready!(Pin::new(&mut echo).poll(cx)) {
                eprintln!("echo connection failed: {e}");
            }
            Poll::Ready(())
        }));
    }
}
