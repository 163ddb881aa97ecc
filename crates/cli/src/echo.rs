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
use frameway_gateway::reuseport_listener;
use tokio::net::TcpListener;

#[derive(Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message: u64,
    /// Workers: one thread each, with its own runtime and its own listening
    /// socket (SO_REUSEPORT). Default: one per CPU this process may use.
    #[arg(long, visible_alias = "threads", value_name = "N", default_value_t = crate::default_workers())]
    workers: usize,
    /// Refuse permessage-deflate (accepted by default).
    #[arg(long)]
    no_deflate: bool,
    /// Send echoes in frames of at most this many payload bytes.
    #[arg(long, value_name = "BYTES")]
    fragment_size: Option<usize>,
}

pub fn run(args: EchoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut websocket = WebSocketConfig::default()
        .max_message_len(args.max_message)
        .max_send_len(args.max_message)
        .max_fragments(1 << 20);
    if !args.no_deflate {
        websocket = websocket.deflate(DeflateConfig::default());
    }
    websocket.fragment_size = args.fragment_size;
    let config = ServerConfig::default().websocket(websocket);
    let runtime = crate::current_thread()?;
    let listener = {
        let _context = runtime.enter();
        reuseport_listener(args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?
    };
    // Port 0 resolved once: every worker listens on the same address.
    let addr = listener.local_addr()?;
    for index in 1..args.workers.max(1) {
        let config = config.clone();
        crate::spawn_worker(
            index,
            move || async move { reuseport_listener(addr).map_err(|e| e.to_string()) },
            move |listener| serve(listener, config),
        )?;
    }
    eprintln!("frameway echo listening on ws://{addr}");
    runtime.block_on(serve(listener, config));
    Ok(())
}

async fn serve(listener: TcpListener, config: ServerConfig) {
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
