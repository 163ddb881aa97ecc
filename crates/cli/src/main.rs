//! The `frameway` command: the gateway, an echo server, an interactive
//! client and a load generator.

mod bench;
mod client;
mod echo;
mod gateway;
mod pacer;
mod proc_stat;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc rather than glibc's malloc: see the `tikv-jemallocator`
// dependency in Cargo.toml for what it buys and costs.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Frameway: a WebSocket stack and gateway.
#[derive(Parser)]
#[command(name = "frameway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WebSocket gateway (built-in default config without --config).
    Gateway(gateway::GatewayArgs),
    /// Run a WebSocket echo server.
    Echo(echo::EchoArgs),
    /// Measure an echo server or gateway: messages/s and round-trip latency.
    Bench(bench::BenchArgs),
    /// Connect to a WebSocket server: send stdin lines, print what arrives.
    Client(client::ClientArgs),
    /// Soak an echo server or gateway: every message checked, lost and
    /// corrupted ones counted, the gateway's memory and descriptors watched.
    Soak(soak::SoakArgs),
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr: `level` (RUST_LOG-style directives) or else RUST_LOG,
/// else `info`.
fn init_logging(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = match &cli.command {
        Command::Gateway(args) => init_logging(args.log_level.as_deref(), args.log_format),
        _ => init_logging(None, LogFormat::Text),
    };
    if let Err(err) = logging {
        eprintln!("frameway: error: {err}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Gateway(args) => gateway::run(args),
        Command::Echo(args) => echo::run(args),
        Command::Client(args) => client::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Soak(args) => soak::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("frameway: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime: one thread unless more are asked for, since one thread
/// per process is the fastest shape for a WebSocket server on a pinned core.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// A current-thread runtime: one per worker.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The default of `--workers`: every CPU this process may run on (its
/// affinity mask, so `taskset -c 0 frameway gateway` runs one worker).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Starts worker `index` on a thread of its own with its own current-thread
/// runtime: `bind` runs there, then `serve` runs on what it bound, so no
/// connection ever moves between workers (nginx's and Pingora's shape).
/// Returns once the worker has bound (with the thread, to be joined when it
/// has served), or with why it could not.
fn spawn_worker<T, B, BF, S, SF>(
    index: usize,
    bind: B,
    serve: S,
) -> Result<std::thread::JoinHandle<()>, String>
where
    B: FnOnce() -> BF + Send + 'static,
    BF: std::future::Future<Output = Result<T, String>>,
    S: FnOnce(T) -> SF + Send + 'static,
    SF: std::future::Future<Output = ()>,
{
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("frameway-worker-{index}"))
        .spawn(move || {
            let runtime = match current_thread() {
                Ok(runtime) => runtime,
                Err(e) => return drop(bound_tx.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                match bind().await {
                    Ok(bound) => {
                        let _ = bound_tx.send(Ok(()));
                        serve(bound).await
                    }
                    Err(e) => drop(bound_tx.send(Err(e))),
                }
            })
        })
        .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    bound_rx
        .recv()
        .map_err(|_| format!("worker {index} ended before binding"))?
        .map_err(|e| format!("worker {index}: {e}"))?;
    Ok(thread)
}
