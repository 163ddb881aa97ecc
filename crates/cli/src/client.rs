//! `frameway client URL`: sends each line of stdin as a message and prints
//! every message that arrives.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use frameway::client::{connect_with, ConnectOptions};
use frameway::{CloseCode, CloseFrame, DeflateConfig, Message, WebSocketConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Args)]
pub struct ClientArgs {
    /// The ws:// or wss:// URL to connect to.
    url: String,
    /// Send lines as binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// An extra request header, as NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Do not verify the server's TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not offer permessage-deflate (offered by default).
    #[arg(long)]
    no_deflate: bool,
}

pub fn run(args: ClientArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = crate::runtime(1)?;
    let result = runtime.block_on(session(args));
    // Reading stdin blocks a thread of tokio's: when the server closed
    // first, that read is still waiting for a line that may never come, and
    // dropping the runtime would wait for it.
    runtime.shutdown_background();
    result
}

async fn session(args: ClientArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = ConnectOptions::default().ssl_verify(!args.insecure);
    if !args.no_deflate {
        options = options.websocket(WebSocketConfig::default().deflate(DeflateConfig::default()));
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?} is not NAME:VALUE"))?;
        options = options.header(name.trim(), value.trim());
    }
    for protocol in args.protocols {
        options = options.protocol(protocol);
    }
    if let Some(ca) = &args.ca {
        options = options.ca_file(ca);
    }
    let (ws, response) = connect_with(&args.url, options).await?;
    let mut agreed = Vec::new();
    if let Some(p) = response.protocol() {
        agreed.push(format!("subprotocol {p}"));
    }
    if let Some(params) = response.deflate() {
        agreed.push(params.to_string());
    }
    match agreed.is_empty() {
        true => eprintln!("connected to {}", args.url),
        false => eprintln!("connected to {} ({})", args.url, agreed.join(", ")),
    }
    let (mut reader, mut writer) = ws.split();

    let mut printer = tokio::spawn(async move {
        let stdout = std::io::stdout();
        while let Some(msg) = reader.recv().await {
            match msg? {
                Message::Text(text) => {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{text}");
                    let _ = out.flush();
                }
                Message::Binary(data) => {
                    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                    let _ = writeln!(stdout.lock(), "{hex}");
                }
                Message::Close(close) => match close {
                    Some(c) => eprintln!("closed by server: {} {}", c.code, c.reason),
                    None => eprintln!("closed by server (no status)"),
                },
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        Ok::<(), frameway::Error>(())
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => {
                    let msg = if args.binary { Message::binary(line.into_bytes()) } else { Message::text(line) };
                    writer.send(msg).await?;
                }
                None => break,
            },
            // The server closed first; the printer has reported why.
            done = &mut printer => return Ok(done??),
        }
    }
    // End of input: close cleanly and wait for the server's answer.
    writer
        .send(Message::Close(CloseFrame::new(CloseCode::NORMAL, "").ok()))
        .await?;
    match tokio::time::timeout(std::time::Duration::from_secs(5), printer).await {
        Ok(done) => Ok(done??),
        Err(_) => Err("the server did not finish the closing handshake within 5 s".into()),
    }
}
