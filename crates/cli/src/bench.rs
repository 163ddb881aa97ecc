//! `frameway bench`: a load generator for WebSocket echo servers and
//! proxies, in the style of uWebSockets' load_test. Each connection sends a
//! message and waits for its echo (closed loop), or sends at a fixed rate
//! (open loop, `--rate`). Frames are encoded and masked once per
//! connection and re-sent as they are, and echoes are counted by length, so
//! the generator spends its time on the socket, not on the protocol. With
//! `--receive` each connection only reads after its first round trip, and
//! counts what a pushing server streams to it (server push).
//!
//! Two additions serve `scripts/bench`: `--watch-pid PID` reports the CPU
//! time (utime + stime from `/proc/PID/stat`) those processes spent during
//! the measured window, per round trip, so the server's cost is read over
//! exactly the window the load tool measured, and their resident memory per
//! connection while busy (`VmRSS` from `/proc/PID/status`, before the
//! connections opened and at the end of the window); and `--hold N` opens N
//! connections and lets them idle, for the memory of idle ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use clap::Args;
use frameway::client::{tls_client_config, ConnectOptions, WsUrl};
use frameway::wire::deflate::{Deflate, DeflateConfig, PERMESSAGE_DEFLATE};
use frameway::wire::handshake::{
    generate_key, parse_response, validate_response, write_request, ClientRequest,
};
use frameway::wire::{Config, FrameDecoder, FrameEncoder, OpCode, Role};
use hdrhistogram::Histogram;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::{pacer, proc_stat};

/// The longest run allowed, so that no load loop is unbounded.
const MAX_DURATION: f64 = 3600.0;

#[derive(Args)]
pub struct BenchArgs {
    /// The ws:// or wss:// URL of an echo server (or of a gateway route to
    /// one).
    url: String,
    /// wss://: trust the CA certificates (PEM) in FILE too.
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// wss://: do not verify the server's certificate.
    #[arg(long)]
    insecure: bool,
    /// Concurrent connections.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Seconds to measure (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop: send this many messages per second in total, evenly spaced
    /// and round robin over the connections, whatever the replies; latency
    /// is measured from each message's scheduled time.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many measured round trips in total.
    #[arg(long)]
    messages: Option<u64>,
    /// Send text frames instead of binary ones.
    #[arg(long)]
    text: bool,
    /// Messages are JSON documents of --size bytes (records with ids,
    /// names and flags, compressible as API traffic is) instead of repeated
    /// letters; text frames.
    #[arg(long)]
    json_messages: bool,
    /// Offer permessage-deflate without context takeover either way, so
    /// that every message compresses alike: it is compressed once per
    /// connection, and the echo, compressed by the server in a fresh
    /// context, has one length to count by. The result reports the bytes
    /// each round trip put on the wire.
    #[arg(long)]
    deflate: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Worker threads (1 runs everything on the main thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A process (the server or proxy under test) whose CPU time over the
    /// measured window is reported per round trip, and, with `--hold`, whose
    /// resident memory is reported per connection. Repeat to add processes
    /// (their times and memory are summed). Linux only.
    #[arg(long = "watch-pid", value_name = "PID")]
    watch_pids: Vec<u32>,
    /// Instead of load: open N connections (each does the handshake and one
    /// round trip of --size bytes), hold them idle for --duration seconds,
    /// then report the watched processes' resident memory per connection.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "messages"])]
    hold: Option<usize>,
    /// Instead of load: open N connections, --open-concurrency at a time,
    /// each doing the handshake and one round trip and then closing; report
    /// handshakes per second, and the watched processes' CPU per handshake
    /// and peak resident memory (VmHWM).
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "messages", "hold"])]
    handshakes: Option<usize>,
    /// Server push: after each connection's first round trip, send the
    /// message once more (to subscribe) and only read. The server (a push
    /// upstream such as bench/peers' push-server, or a proxy in front of
    /// one) streams messages of --size bytes; reports the
    /// messages delivered per second and the watched processes' CPU per
    /// delivered message.
    #[arg(long, conflicts_with_all = ["rate", "messages", "hold", "handshakes", "deflate"])]
    receive: bool,
    /// Connections opened at once while connecting (--hold and load alike).
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
}

pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        return Err(format!("--duration must be between 0 and {MAX_DURATION} seconds").into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args
        .rate
        .is_some_and(|r| r.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
    {
        return Err("--rate must be positive".into());
    }
    if args.hold == Some(0) || args.hold.is_some_and(|n| n > MAX_HOLD) {
        return Err(format!("--hold must be between 1 and {MAX_HOLD}").into());
    }
    if args.handshakes == Some(0) || args.handshakes.is_some_and(|n| n > MAX_HOLD * 10) {
        return Err(format!("--handshakes must be between 1 and {}", MAX_HOLD * 10).into());
    }
    if args.open_concurrency == 0 {
        return Err("--open-concurrency must be at least 1".into());
    }
    for &pid in &args.watch_pids {
        proc_stat::cpu_ticks(pid).map_err(|e| format!("--watch-pid {pid}: {e}"))?;
    }
    let runtime = crate::runtime(args.threads)?;
    match (args.hold, args.handshakes) {
        (Some(n), _) => runtime.block_on(hold(args, n)),
        (None, Some(n)) => runtime.block_on(handshakes(args, n)),
        (None, None) if args.receive => runtime.block_on(receive(args)),
        (None, None) => runtime.block_on(bench(args)),
    }
}

/// The most connections `--hold` opens.
const MAX_HOLD: usize = 100_000;

/// How long one connection may take to open (handshake and first echo).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

struct Target {
    addr: SocketAddr,
    url: WsUrl,
    /// wss://: the TLS configuration and the name to ask for.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

fn target(args: &BenchArgs) -> Result<Target, Box<dyn std::error::Error>> {
    let url = WsUrl::parse(&args.url)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(url.host(), url.port()))?
        .next()
        .ok_or_else(|| format!("{} does not resolve", url.host()))?;
    let tls = if url.is_tls() {
        let mut options = ConnectOptions::default().ssl_verify(!args.insecure);
        if let Some(ca) = &args.ca {
            options = options.ca_file(ca);
        }
        let (config, name) = tls_client_config(&options, url.host())?;
        Some((TlsConnector::from(config), name))
    } else if args.ca.is_some() || args.insecure {
        return Err("--ca and --insecure apply to wss:// URLs".into());
    } else {
        None
    };
    Ok(Target { addr, url, tls })
}

/// What the connections share.
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    measured: AtomicU64,
    limit: u64,
}

async fn bench(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let target = Arc::new(target(&args)?);
    let shared = Arc::new(Shared {
        // On when the clock starts, so that what is counted is what is timed.
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        measured: AtomicU64::new(0),
        limit: args.messages.unwrap_or(u64::MAX),
    });
    let message = Arc::new(MessageSpec::from_args(&args));
    let mut tasks = tokio::task::JoinSet::new();
    let rss_before = proc_stat::rss_kib(&args.watch_pids)?;
    let conns = open_all(&target, args.connections, &message, args.open_concurrency).await?;
    let wire = WireBytes {
        sent: conns[0].frame.len(),
        echoed: conns[0].echo_len,
    };
    let (pacer, schedules) = match args.rate {
        Some(rate) => {
            let (pacer, schedules) = pacer::start(rate, conns.len())?;
            (Some(pacer), schedules)
        }
        None => (None, Vec::new()),
    };
    // Open loop: one schedule per connection; closed loop: none.
    let mut schedules = schedules.into_iter();
    for conn in conns {
        let shared = shared.clone();
        let schedule = schedules.next();
        tasks.spawn(async move {
            match schedule {
                Some(schedule) => conn.open_loop(&shared, schedule).await,
                None => conn.closed_loop(&shared).await,
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let cpu_before = proc_stat::CpuSample::take(&args.watch_pids)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while Instant::now() < deadline
        && shared.measured.load(Ordering::Relaxed) < shared.limit
        && !tasks.is_empty()
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            Some(done) = tasks.join_next() => {
                // A connection ends early when it reached --messages (its
                // timings count) or failed (the run fails with its error).
                histogram.add(&done??)?;
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu = proc_stat::CpuSample::take(&args.watch_pids)?.since(&cpu_before);
    let memory = proc_stat::RssChange {
        before_kib: rss_before,
        after_kib: proc_stat::rss_kib(&args.watch_pids)?,
    };
    shared.stop.store(true, Ordering::Relaxed);
    drop(pacer);
    let mut errors = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(h) => histogram.add(&h)?,
            Err(e) => {
                errors += 1;
                eprintln!("connection failed: {e}");
            }
        }
    }
    report(&args, &histogram, elapsed, errors, &cpu, memory, wire);
    Ok(())
}

/// `--receive`: every connection reads what the server pushes; the
/// messages delivered in the window are counted by length (every pushed
/// frame is as long as the first echo).
async fn receive(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let target = Arc::new(target(&args)?);
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        measured: AtomicU64::new(0),
        limit: u64::MAX,
    });
    let message = Arc::new(MessageSpec::from_args(&args));
    let rss_before = proc_stat::rss_kib(&args.watch_pids)?;
    let conns = open_all(&target, args.connections, &message, args.open_concurrency).await?;
    let frame_len = conns[0].echo_len as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        let shared = shared.clone();
        tasks.spawn(async move { conn.receive_loop(&shared).await });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let cpu_before = proc_stat::CpuSample::take(&args.watch_pids)?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = proc_stat::CpuSample::take(&args.watch_pids)?.since(&cpu_before);
    let memory = proc_stat::RssChange {
        before_kib: rss_before,
        after_kib: proc_stat::rss_kib(&args.watch_pids)?,
    };
    shared.stop.store(true, Ordering::Relaxed);
    let (mut bytes, mut errors) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(n) => bytes += n,
            Err(e) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("connection failed: {e}");
                }
            }
        }
    }
    let messages = bytes / frame_len;
    let per = |s: f64| {
        if messages > 0 {
            s * 1e6 / messages as f64
        } else {
            0.0
        }
    };
    let rate = messages as f64 / elapsed;
    if args.json {
        let value = serde_json::json!({
            "url": args.url, "mode": "receive", "connections": args.connections, "size": args.size,
            "duration_s": elapsed, "messages": messages, "msg_per_s": rate, "errors": errors,
            "server_cpu_us_per_msg": per(cpu.watched_secs),
            "server_cpu_share": cpu.watched_secs / elapsed,
            "client_cpu_us_per_msg": per(cpu.own_secs), "client_cpu_share": cpu.own_secs / elapsed,
            "rss_before_kib": memory.before_kib, "rss_busy_kib": memory.after_kib,
            "rss_busy_per_conn_bytes": memory.per_connection(args.connections),
        });
        println!("{value}");
    } else {
        println!(
            "frameway bench: {} ({} connections receiving {} B messages, {elapsed:.1} s)",
            args.url, args.connections, args.size
        );
        println!("{rate:.0} msg/s delivered ({messages} messages, {errors} errors)");
        if !args.watch_pids.is_empty() {
            println!(
                "server CPU {:.2} µs per delivered message ({:.0}% of a core)",
                per(cpu.watched_secs),
                100.0 * cpu.watched_secs / elapsed
            );
            print_busy_memory(memory, args.connections);
        }
    }
    if errors > 0 {
        return Err(format!("{errors} of {} connections failed", args.connections).into());
    }
    Ok(())
}

/// The message every connection sends, and how.
struct MessageSpec {
    opcode: OpCode,
    payload: Vec<u8>,
    deflate: Option<DeflateConfig>,
}

impl MessageSpec {
    fn from_args(args: &BenchArgs) -> MessageSpec {
        let payload = if args.json_messages {
            json_document(args.size)
        } else {
            (0..args.size).map(|i| b'a' + (i % 26) as u8).collect()
        };
        let opcode = if args.text || args.json_messages {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let deflate = args.deflate.then(|| {
            DeflateConfig::default()
                .client_no_context_takeover(true)
                .server_no_context_takeover(true)
                .compress_if_bigger_than(0)
        });
        MessageSpec {
            opcode,
            payload,
            deflate,
        }
    }
}

/// A JSON array of records, exactly `size` bytes long (padded with spaces
/// before the closing bracket), as an API might send.
fn json_document(size: usize) -> Vec<u8> {
    let mut doc = String::from("[");
    let mut id = 0u32;
    loop {
        let record = format!(
            "{}{{\"id\":{id},\"name\":\"user-{}\",\"active\":{},\"score\":{}.{}}}",
            if id == 0 { "" } else { "," },
            id * 7919 % 10_007,
            id % 3 == 0,
            id * 31 % 997,
            id % 10
        );
        if doc.len() + record.len() + 1 > size {
            break;
        }
        doc.push_str(&record);
        id += 1;
    }
    let mut doc = doc.into_bytes();
    doc.resize(size.saturating_sub(1), b' ');
    if size > 0 {
        doc.push(b']');
    }
    doc
}

/// Bytes on the wire per round trip: the client's frame and the echo's.
#[derive(Clone, Copy)]
struct WireBytes {
    sent: usize,
    echoed: usize,
}

/// Opens `n` connections, at most `concurrency` at a time.
async fn open_all(
    target: &Arc<Target>,
    n: usize,
    message: &Arc<MessageSpec>,
    concurrency: usize,
) -> Result<Vec<Connection>, Box<dyn std::error::Error>> {
    let mut opening = tokio::task::JoinSet::new();
    let mut conns = Vec::with_capacity(n);
    let mut started = 0;
    while conns.len() < n {
        while started < n && opening.len() < concurrency {
            let target = target.clone();
            let message = message.clone();
            opening.spawn(async move {
                match tokio::time::timeout(OPEN_TIMEOUT, Connection::open(&target, &message)).await
                {
                    Ok(conn) => conn.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no handshake and echo within {OPEN_TIMEOUT:?}")),
                }
            });
            started += 1;
        }
        let Some(done) = opening.join_next().await else {
            break;
        };
        let conn = done?.map_err(|e| format!("connection {} of {n}: {e}", conns.len() + 1))?;
        conns.push(conn);
    }
    Ok(conns)
}

/// `--handshakes N`: connections opened (handshake and one echo) and
/// closed, and what each cost the watched processes.
async fn handshakes(args: BenchArgs, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let target = Arc::new(target(&args)?);
    let message = Arc::new(MessageSpec::from_args(&args));
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut opening = tokio::task::JoinSet::new();
    let (mut started, mut errors) = (0, 0u64);
    let rss_before = proc_stat::rss_kib(&args.watch_pids)?;
    let cpu_before = proc_stat::CpuSample::take(&args.watch_pids)?;
    let clock = Instant::now();
    loop {
        while started < n && opening.len() < args.open_concurrency {
            let target = target.clone();
            let message = message.clone();
            opening.spawn(async move {
                let begun = Instant::now();
                match tokio::time::timeout(OPEN_TIMEOUT, Connection::open(&target, &message)).await
                {
                    // Dropped here: the socket closes once its echo came.
                    Ok(Ok(_conn)) => Ok(begun.elapsed()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no handshake and echo within {OPEN_TIMEOUT:?}")),
                }
            });
            started += 1;
        }
        let Some(done) = opening.join_next().await else {
            break;
        };
        match done? {
            Ok(took) => histogram.record(took.as_micros().max(1) as u64)?,
            Err(e) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("connection failed: {e}");
                }
            }
        }
    }
    let secs = clock.elapsed().as_secs_f64();
    let cpu = proc_stat::CpuSample::take(&args.watch_pids)?.since(&cpu_before);
    // The height of the burst: read at its end, VmRSS would show only what
    // the allocator kept.
    let rss_peak = proc_stat::peak_rss_kib(&args.watch_pids)?;
    let done = histogram.len() as f64;
    let per = |s: f64| if done > 0.0 { s * 1e6 / done } else { 0.0 };
    let q = |q: f64| histogram.value_at_quantile(q);
    if args.json {
        let value = serde_json::json!({
            "url": args.url, "mode": "handshakes", "connections": n, "size": args.size,
            "concurrency": args.open_concurrency, "seconds": secs, "errors": errors,
            "handshakes_per_s": done / secs, "p50_us": q(0.5), "p99_us": q(0.99),
            "server_cpu_us_per_handshake": per(cpu.watched_secs),
            "client_cpu_us_per_handshake": per(cpu.own_secs),
            "rss_before_kib": rss_before, "rss_peak_kib": rss_peak,
        });
        println!("{value}");
    } else {
        println!(
            "frameway bench: {} ({n} connections opened and closed, {} at a time)",
            args.url, args.open_concurrency
        );
        println!(
            "{:.0} handshakes/s; handshake + first echo p50 {} us, p99 {} us; {errors} errors",
            done / secs,
            q(0.5),
            q(0.99)
        );
        if !args.watch_pids.is_empty() {
            println!(
                "watched processes: {:.1} us CPU per handshake; peak RSS {} KiB ({} before)",
                per(cpu.watched_secs),
                rss_peak,
                rss_before
            );
        }
    }
    if errors > 0 {
        return Err(format!("{errors} of {n} connections failed").into());
    }
    Ok(())
}

/// `--hold N`: idle connections and the memory they cost the watched
/// processes.
async fn hold(args: BenchArgs, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let target = Arc::new(target(&args)?);
    let message = Arc::new(MessageSpec::from_args(&args));
    let rss_before = proc_stat::rss_kib(&args.watch_pids)?;
    let started = Instant::now();
    let conns = open_all(&target, n, &message, args.open_concurrency).await?;
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let memory = proc_stat::RssChange {
        before_kib: rss_before,
        after_kib: proc_stat::rss_kib(&args.watch_pids)?,
    };
    // Every connection must still be open: a server that dropped some
    // would look cheaper than it is.
    let mut closed = 0usize;
    for conn in &conns {
        let mut probe = [0u8; 1];
        // Nothing to read, or something (a ping): open. End of stream or
        // an error (a reset): closed.
        match conn.tcp.tcp().try_read(&mut probe) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    let per_conn = memory.per_connection(n);
    if args.json {
        let value = serde_json::json!({
            "url": args.url, "mode": "hold", "connections": n, "size": args.size,
            "open_s": open_secs, "held_s": args.duration, "watch_pids": args.watch_pids,
            "rss_before_kib": memory.before_kib, "rss_after_kib": memory.after_kib,
            "rss_per_conn_bytes": per_conn, "closed_early": closed,
        });
        println!("{value}");
    } else {
        println!("frameway bench: {} (holding {n} idle connections for {:.1} s; opened in {open_secs:.1} s)", args.url, args.duration);
        if args.watch_pids.is_empty() {
            println!("no --watch-pid: no memory reading");
        } else {
            println!(
                "RSS {} KiB -> {} KiB: {:.2} KiB per connection ({closed} closed early)",
                memory.before_kib,
                memory.after_kib,
                per_conn / 1024.0
            );
        }
    }
    drop(conns);
    if closed > 0 {
        return Err(
            format!("{closed} of {n} connections were closed by the server while idle").into(),
        );
    }
    Ok(())
}

fn report(
    args: &BenchArgs,
    h: &Histogram<u64>,
    elapsed: Duration,
    errors: u64,
    cpu: &proc_stat::CpuDelta,
    memory: proc_stat::RssChange,
    wire: WireBytes,
) {
    let secs = elapsed.as_secs_f64();
    let rate = h.len() as f64 / secs;
    let mb = rate * args.size as f64 / 1e6;
    let q = |q: f64| h.value_at_quantile(q);
    let mode = if args.rate.is_some() {
        "open loop"
    } else {
        "closed loop"
    };
    let per_msg = |s: f64| {
        if h.is_empty() {
            0.0
        } else {
            s * 1e6 / h.len() as f64
        }
    };
    if args.json {
        let value = serde_json::json!({
            "url": args.url, "connections": args.connections, "size": args.size, "mode": mode,
            "duration_s": secs, "messages": h.len(), "msg_per_s": rate, "mb_per_s": mb,
            "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": h.max(), "errors": errors,
            "watch_pids": args.watch_pids,
            "server_cpu_s": cpu.watched_secs, "server_cpu_us_per_msg": per_msg(cpu.watched_secs),
            "server_cpu_share": cpu.watched_secs / secs,
            "client_cpu_s": cpu.own_secs, "client_cpu_us_per_msg": per_msg(cpu.own_secs),
            "client_cpu_share": cpu.own_secs / secs,
            "deflate": args.deflate, "wire_bytes_sent": wire.sent, "wire_bytes_echoed": wire.echoed,
            "rss_before_kib": memory.before_kib, "rss_busy_kib": memory.after_kib,
            "rss_busy_per_conn_bytes": memory.per_connection(args.connections),
        });
        println!("{value}");
    } else {
        println!(
            "frameway bench: {} ({} connections, {} B {}{}, {mode}, {secs:.1} s)",
            args.url,
            args.connections,
            args.size,
            if args.json_messages {
                "JSON"
            } else if args.text {
                "text"
            } else {
                "binary"
            },
            if args.deflate { ", deflate" } else { "" }
        );
        println!(
            "on the wire per round trip: {} B sent, {} B echoed",
            wire.sent, wire.echoed
        );
        println!(
            "{rate:.0} msg/s  {mb:.2} MB/s  p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  ({} round trips, {errors} errors)",
            q(0.5),
            q(0.99),
            q(0.999),
            h.max(),
            h.len()
        );
        if !args.watch_pids.is_empty() {
            println!(
                "server CPU {:.2} µs per round trip ({:.0}% of a core); load tool {:.2} µs ({:.0}%)",
                per_msg(cpu.watched_secs),
                100.0 * cpu.watched_secs / secs,
                per_msg(cpu.own_secs),
                100.0 * cpu.own_secs / secs
            );
            print_busy_memory(memory, args.connections);
        }
    }
}

fn print_busy_memory(memory: proc_stat::RssChange, connections: usize) {
    println!(
        "server RSS {} KiB -> {} KiB while busy: {:.2} KiB per connection",
        memory.before_kib,
        memory.after_kib,
        memory.per_connection(connections) / 1024.0
    );
}

/// One connection: its socket, its pre-encoded frame, and the size of the
/// echo to wait for.
struct Connection {
    tcp: Stream,
    frame: Vec<u8>,
    echo_len: usize,
}

impl Connection {
    async fn open(
        target: &Target,
        message: &MessageSpec,
    ) -> Result<Connection, Box<dyn std::error::Error>> {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let mut tcp = match &target.tls {
            Some((connector, name)) => {
                Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
            }
            None => Stream::Plain(tcp),
        };
        let mut random = [0u8; 20];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let key = generate_key(random[..16].try_into().expect("16 bytes"));
        let offer = message.deflate.as_ref().map(|d| d.offer().to_string());
        let mut request = Vec::new();
        write_request(
            &ClientRequest {
                host: &target.url.host_header(),
                path: target.url.target(),
                key: &key,
                extensions: offer.as_deref(),
                ..Default::default()
            },
            &mut request,
        );
        tcp.write_all(&request).await?;
        let mut buf = BytesMut::with_capacity(4096);
        let (leftover, accepted) = loop {
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err("server closed during the handshake".into());
            }
            if let Some((response, len)) = parse_response(&buf, Default::default())? {
                let accepted = validate_response(&response, &key, &[], &[PERMESSAGE_DEFLATE])?;
                break (buf.split_off(len), accepted);
            }
        };
        if !leftover.is_empty() {
            return Err("server sent data before any message".into());
        }
        let deflate = match &message.deflate {
            Some(config) => match config.confirm(&accepted.extensions)? {
                Some(params) => Some(Deflate::new(Role::Client, params, config)),
                None => return Err("the server refused permessage-deflate (--deflate)".into()),
            },
            None => None,
        };
        let mut frame = BytesMut::new();
        let mask = Some([random[16], random[17], random[18], random[19]]);
        let mut encoder = FrameEncoder::new(u64::MAX);
        match deflate {
            Some(mut deflate) => {
                let mut compressed = Vec::new();
                deflate.compress(&message.payload, true, &mut compressed)?;
                encoder.encode_with_rsv1(
                    true,
                    message.opcode,
                    true,
                    &compressed,
                    mask,
                    &mut frame,
                )?;
                let mut conn = Connection {
                    tcp,
                    frame: frame.to_vec(),
                    echo_len: 0,
                };
                conn.check_echo(&message.payload, Some(deflate)).await?;
                Ok(conn)
            }
            None => {
                encoder.encode(true, message.opcode, &message.payload, mask, &mut frame)?;
                let mut conn = Connection {
                    tcp,
                    frame: frame.to_vec(),
                    echo_len: frame.len() - 4,
                };
                conn.check_echo(&message.payload, None).await?;
                Ok(conn)
            }
        }
    }

    /// The first round trip is decoded in full, so a server that does not
    /// echo is caught before its bytes are counted. A compressed echo is
    /// inflated, and its length is the one to count by from then on.
    async fn check_echo(
        &mut self,
        payload: &[u8],
        deflate: Option<Deflate>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        self.tcp.write_all(&self.frame).await?;
        let mut decoder = FrameDecoder::new(Config::new(Role::Client));
        if deflate.is_some() {
            decoder.allow_rsv1();
        }
        let mut buf = BytesMut::new();
        let frame = loop {
            if let Some(frame) = decoder.decode(&mut buf)? {
                break frame;
            }
            if self.tcp.read_buf(&mut buf).await? == 0 {
                return Err("server closed before echoing".into());
            }
        };
        let echoed = match (deflate, frame.rsv1) {
            (Some(mut deflate), true) => {
                let mut out = Vec::new();
                deflate.inflate(&frame.payload, true, u64::MAX, &mut out)?;
                out
            }
            (_, false) => frame.payload.to_vec(),
            (None, true) => return Err("a compressed echo without deflate".into()),
        };
        if !frame.fin || echoed != payload || !buf.is_empty() {
            return Err("the server's answer is not an echo of the message (unfragmented)".into());
        }
        let header = if frame.payload.len() < 126 {
            2
        } else if frame.payload.len() < 1 << 16 {
            4
        } else {
            10
        };
        self.echo_len = header + frame.payload.len();
        Ok(())
    }

    /// Sends its message once more (which subscribes to a push server),
    /// then reads until told to stop; returns the bytes read in the
    /// measured window.
    async fn receive_loop(mut self, shared: &Shared) -> Result<u64, String> {
        self.tcp
            .write_all(&self.frame)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut counted = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            // Bounded, so that a stalled server cannot hold the run open.
            let read = tokio::time::timeout(Duration::from_millis(100), self.tcp.read(&mut buf));
            let n = match read.await {
                Err(_) => continue,
                Ok(Ok(0)) => return Err("server closed the connection".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
            };
            if shared.measuring.load(Ordering::Relaxed) {
                counted += n as u64;
            }
        }
        Ok(counted)
    }

    async fn closed_loop(mut self, shared: &Shared) -> Result<Histogram<u64>, String> {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; self.echo_len.clamp(4096, 1 << 20)];
        while !shared.stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            self.tcp
                .write_all(&self.frame)
                .await
                .map_err(|e| e.to_string())?;
            let mut got = 0;
            while got < self.echo_len {
                let want = (self.echo_len - got).min(buf.len());
                let n = self
                    .tcp
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed the connection".into());
                }
                got += n;
            }
            if shared.measuring.load(Ordering::Relaxed) {
                let micros = sent.elapsed().as_micros().max(1) as u64;
                histogram.saturating_record(micros);
                if shared.measured.fetch_add(1, Ordering::Relaxed) + 1 >= shared.limit {
                    break;
                }
            }
        }
        Ok(histogram)
    }

    async fn open_loop(
        self,
        shared: &Shared,
        schedule: Receiver<Instant>,
    ) -> Result<Histogram<u64>, String> {
        match self.tcp {
            Stream::Plain(tcp) => {
                let (reader, writer) = tcp.into_split();
                open_loop(reader, writer, self.frame, self.echo_len, shared, schedule).await
            }
            Stream::Tls(tls) => {
                let (reader, writer) = tokio::io::split(tls);
                open_loop(reader, writer, self.frame, self.echo_len, shared, schedule).await
            }
        }
    }
}

/// Sends on `writer` as the pacer releases each message, and times the
/// echoes read on `reader` from the message's scheduled time.
async fn open_loop<R, W>(
    mut reader: R,
    mut writer: W,
    frame: Vec<u8>,
    echo_len: usize,
    shared: &Shared,
    mut schedule: Receiver<Instant>,
) -> Result<Histogram<u64>, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    {
        // Send times of messages whose echo has not arrived; bounded so a
        // stalled server cannot make the generator grow without limit.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1 << 16);
        let send = async move {
            while let Some(scheduled) = schedule.recv().await {
                if tx.send(scheduled).await.is_err() {
                    break;
                }
                writer.write_all(&frame).await.map_err(|e| e.to_string())?;
            }
            if shared.stop.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(format!(
                    "fell more than {} messages behind the schedule (the server stalled?)",
                    pacer::MAX_BEHIND
                ))
            }
        };
        let receive = async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = 0usize;
            while !shared.stop.load(Ordering::Relaxed) {
                let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    // The sender stops first and its half of the socket
                    // closes; a server may answer by closing too.
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    return Err("server closed the connection".into());
                }
                pending += n;
                while pending >= echo_len {
                    pending -= echo_len;
                    let Some(scheduled) = rx.recv().await else {
                        break;
                    };
                    if shared.measuring.load(Ordering::Relaxed) {
                        histogram.saturating_record(scheduled.elapsed().as_micros().max(1) as u64);
                        shared.measured.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(histogram)
        };
        let (sent, received) = tokio::join!(send, receive);
        sent?;
        received
    }
}

/// A connection's bytes: plain TCP, or TLS over it (wss://). An enum
/// rather than a trait object, so the plain path costs no indirection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
