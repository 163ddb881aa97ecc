//! The `frameway` command: the gateway, an echo server, an interactive
//! client and a load generator.

mod bench;
mod client;
mod echo;
mod gateway;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let result = match cli.command {
        Command::Gateway(args) => gateway::run(args),
        Command::Echo(args) => echo::run(args),
        Command::Client(args) => client::run(args),
        Command::Bench(args) => bench::run(args),
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
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
