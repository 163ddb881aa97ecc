//! Test harness: real upstreams and a real gateway on 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::Gateway;
use tokio::net::TcpListener;

/// No test may take longer than this.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `fut` bounded by [`LIMIT`].
pub async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut).await.expect("test timed out")
}

/// An echo upstream (frameway's) on a fresh port.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(frameway_gateway::echo::serve_echo(tcp));
        }
    });
    addr
}

/// Starts a gateway on `config` (TOML; its `listen` is replaced by a fresh
/// port) with `registry`; returns the address clients connect to.
pub async fn gateway_with(config: &str, registry: &Registry) -> SocketAddr {
    let mut config = Config::parse(config, "test", registry).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
    config.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let gateway = Gateway::bind(config).await.unwrap();
    let addr = gateway.local_addrs()[0];
    tokio::spawn(gateway.serve());
    addr
}

/// [`gateway_with`] and the built-in plugins.
pub async fn gateway(config: &str) -> SocketAddr {
    gateway_with(config, &Registry::with_builtins()).await
}

/// A config with one service at `upstream` and one route at `/` with
/// `plugins` (TOML `[[services.routes.plugins]]` entries, may be empty).
pub fn one_route(upstream: SocketAddr, plugins: &str) -> String {
    format!(
        r#"
[[services]]
name = "svc"
url = "ws://{upstream}"
  [[services.routes]]
  name = "route"
  paths = ["/"]
{plugins}
"#
    )
}
