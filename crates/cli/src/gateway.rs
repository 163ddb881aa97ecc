//! `frameway gateway`: runs the gateway on a configuration file, or on the
//! built-in default (127.0.0.1:8080, `/echo` to an in-process echo
//! upstream) when no file is given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use frameway_gateway::admin::{self, ConfigSource};
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::{reuseport_listener, Gateway};
use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Args)]
pub struct GatewayArgs {
    /// The configuration file: Frameway's TOML, or a Kong declarative file
    /// (kong.yml, YAML or JSON, told apart by its `_format_version`).
    /// Without it, the built-in default runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check FILE, report every error with its location, and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,
    /// Listen on ADDR instead of the configuration's plain listeners.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Workers: one thread each, with its own runtime and its own listening
    /// sockets (SO_REUSEPORT). Default: one per CPU this process may use.
    #[arg(long, visible_alias = "threads", value_name = "N", default_value_t = crate::default_workers())]
    workers: usize,
    /// What to log: a level (`info`, `debug`, ...) or RUST_LOG-style
    /// directives (`info,frameway::access=off`). Default: RUST_LOG, else `info`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log lines as text or as JSON objects, one per line.
    #[arg(long, value_enum, default_value_t = crate::LogFormat::Text)]
    pub log_format: crate::LogFormat,
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
    let admin_listen = config.admin_listen;
    let runtime = crate::current_thread()?;
    // The first worker binds here, so that a port 0 is resolved once and
    // every other worker listens on the same address.
    let gateway = runtime.block_on(Gateway::bind(config))?;
    // Before anything says "listening": a SIGHUP that arrives after that
    // line must reload, not end the process by its default action.
    let signals = runtime.block_on(async { Signals::install() });
    // The first worker hears the signals and tells the others: tokio's
    // `watch` works across runtimes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for index in 1..args.workers.max(1) {
        let sibling = gateway.sibling();
        let mut stop = stop_rx.clone();
        workers.push(crate::spawn_worker(
            index,
            move || async move { sibling.bind().await.map_err(|e| e.to_string()) },
            move |gateway| async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                gateway.serve_until(stopped).await
            },
        )?);
    }
    for addr in gateway.local_addrs() {
        eprintln!(
            "frameway gateway listening on {addr} ({} worker{})",
            args.workers.max(1),
            if args.workers > 1 { "s" } else { "" }
        );
    }
    if args.config.is_none() {
        let addr = gateway.local_addrs()[0];
        eprintln!("built-in configuration: try `frameway client ws://{addr}/echo`");
    }
    let source = Arc::new(ConfigSource::new(
        args.config.clone(),
        args.listen,
        gateway.reloader(),
        gateway.metrics(),
    ));
    if let Some(addr) = admin_listen {
        // SO_REUSEPORT like the data listeners: during an upgrade the new
        // process's admin listener binds beside the old one's.
        let listener = runtime
            .block_on(async { reuseport_listener(addr) })
            .map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?;
        eprintln!(
            "frameway admin listening on {addr} (/metrics, /status, /status/ready, POST /reload)"
        );
        runtime.spawn(admin::serve(listener, source.clone()));
    }
    runtime.spawn(reload_on_hangups(source, signals.hangup));
    runtime.block_on(gateway.serve_until(async move {
        stopped_by(signals.stop).await;
        stop_tx.send_replace(true);
    }));
    // The other workers may still be draining: this runtime goes on
    // serving the admin listener (readiness says 503) until they are done.
    let joined = runtime.spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    });
    let _ = runtime.block_on(joined);
    eprintln!("frameway gateway drained; exiting");
    Ok(())
}

/// The signals the gateway answers, installed at start.
struct Signals {
    /// `None` when the handler could not be installed (logged).
    hangup: Option<Signal>,
    /// SIGTERM and SIGINT; `None` as above.
    stop: Option<(Signal, Signal)>,
}

impl Signals {
    fn install() -> Self {
        let hangup = signal(SignalKind::hangup())
            .inspect_err(|e| tracing::warn!("cannot listen for SIGHUP ({e}): reloading is off"))
            .ok();
        let stop = signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
            .inspect_err(|e| {
                tracing::warn!("cannot listen for SIGTERM/SIGINT ({e}): the gateway will not drain")
            })
            .ok();
        Signals { hangup, stop }
    }
}

/// On every SIGHUP, reads the configuration file again (see
/// [`ConfigSource::reload`]). Without a file (the built-in configuration)
/// there is nothing to re-read, but SIGHUP must still not end the process,
/// as its default action would.
async fn reload_on_hangups(source: Arc<ConfigSource>, hangups: Option<Signal>) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        // Logged and counted by the reload itself.
        let _ = source.reload_off_the_worker().await;
    }
}

/// Resolves at the first SIGTERM or SIGINT; from then on a second SIGINT
/// ends the process at once (an operator who does not want to wait).
async fn stopped_by(stop: Option<(Signal, Signal)>) {
    let Some((mut term, mut int)) = stop else {
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    eprintln!("frameway gateway: {name}: draining (a second SIGINT exits at once)");
    tokio::spawn(async move {
        int.recv().await;
        eprintln!("frameway gateway: second SIGINT: exiting now");
        std::process::exit(130);
    });
}
