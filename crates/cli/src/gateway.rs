//! `frameway gateway`: runs the gateway on a configuration file, or on the
//! built-in default (127.0.0.1:8080, `/echo` to an in-process echo
//! upstream) when no file is given.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::Gateway;

#[derive(Args)]
pub struct GatewayArgs {
    /// The configuration file (TOML). Without it, the built-in default runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check FILE, report every error with its location, and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,
    /// Listen on ADDR instead of the configuration's plain listeners.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Worker threads (1 runs everything on the main thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: GatewayArgs) -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::with_builtins();
    if let Some(path) = &args.check {
        let config = Config::load(path, &registry)?;
        let routes = config.router.routes().len();
        println!(
            "{}: OK ({routes} route{})",
            path.display(),
            if routes == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path, &registry)?,
        None => Config::builtin(),
    };
    if let Some(addr) = args.listen {
        config.listen = vec![addr];
    }
    crate::runtime(args.threads)?.block_on(async {
        let gateway = Gateway::bind(config).await?;
        for addr in gateway.local_addrs() {
            eprintln!("frameway gateway listening on {addr}");
        }
        if args.config.is_none() {
            let addr = gateway.local_addrs()[0];
            eprintln!("built-in configuration: try `frameway client ws://{addr}/echo`");
        }
        gateway.serve().await;
        Ok(())
    })
}
