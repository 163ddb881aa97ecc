//! What the echo servers (the peers and floor-echo) share: `--listen ADDR`
//! and a current-thread tokio runtime (one thread per server, like
//! `frameway echo`); floor-relay takes the runtime.

use std::net::SocketAddr;

/// The address given as `--listen ADDR` (default 127.0.0.1:9001).
pub fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9001".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().expect("--listen needs ADDR"),
            other => match other.strip_prefix("--listen=") {
                Some(a) => addr = a.to_string(),
                None => panic!("unknown argument {other:?}; usage: --listen ADDR"),
            },
        }
    }
    addr.parse().expect("--listen: not an ADDR:PORT")
}

/// A current-thread tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}
