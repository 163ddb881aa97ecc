//! `frameway bench`: a load generator for WebSocket echo servers and
//! proxies, in the style of uWebSockets' load_test. Each connection sends a
//! message and waits for its echo (closed loop), or sends at a fixed rate
//! (open loop, `--rate`). Frames are encoded and masked once per
//! connection and re-sent as they are, and echoes are counted by length, so
//! the generator spends its time on the socket, not on the protocol.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use clap::Args;
use frameway::wire::handshake::{generate_key, parse_response, validate_response, write_request, ClientRequest};
use frameway::wire::{Config, FrameDecoder, FrameEncoder, OpCode, Role};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest run allowed, so that no load loop is unbounded.
const MAX_DURATION: f64 = 3600.0;

#[derive(Args)]
pub struct BenchArgs {
    /// The ws:// URL of an echo server (or of a gateway route to one).
    url: String,
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
    /// Open loop: send this many messages per second in total, whatever the
    /// replies; latency is measured from each message's scheduled time.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many measured round trips in total.
    #[arg(long)]
    messages: Option<u64>,
    /// Send text frames instead of binary ones.
    #[arg(long)]
    text: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Worker threads (1 runs everything on the main thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        return Err(format!("--duration must be between 0 and {MAX_DURATION} seconds").into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.rate.is_some_and(|r| r.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)) {
        return Err("--rate must be positive".into());
    }
    crate::runtime(args.threads)?.block_on(bench(args))
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn target(url: &str) -> Result<Target, Box<dyn std::error::Error>> {
    let uri: http::Uri = url.parse().map_err(|_| format!("invalid URL {url:?}"))?;
    if uri.scheme_str() != Some("ws") {
        return Err(format!("invalid URL {url:?}: bench speaks ws:// only").into());
    }
    let authority = uri.authority().ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))?
        .next()
        .ok_or_else(|| format!("{} does not resolve", authority.host()))?;
    Ok(Target {
        addr,
        host: authority.to_string(),
        path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
    })
}

/// What the connections share.
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    measured: AtomicU64,
    limit: u64,
}

async fn bench(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let target = Arc::new(target(&args.url)?);
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(args.warmup <= 0.0),
        stop: AtomicBool::new(false),
        measured: AtomicU64::new(0),
        limit: args.messages.unwrap_or(u64::MAX),
    });
    let interval = args.rate.map(|rate| Duration::from_secs_f64(args.connections as f64 / rate));
    let opcode = if args.text { OpCode::Text } else { OpCode::Binary };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let conn = Connection::open(&target, args.size, opcode).await?;
        let shared = shared.clone();
        tasks.spawn(async move {
            match interval {
                Some(interval) => conn.open_loop(&shared, interval).await,
                None => conn.closed_loop(&shared).await,
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    while Instant::now() < deadline && shared.measured.load(Ordering::Relaxed) < shared.limit && !tasks.is_empty() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            Some(done) = tasks.join_next() => {
                // A connection that ends early failed: report it.
                done??;
            }
        }
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
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
    report(&args, &histogram, elapsed, errors);
    Ok(())
}

fn report(args: &BenchArgs, h: &Histogram<u64>, elapsed: Duration, errors: u64) {
    let secs = elapsed.as_secs_f64();
    let rate = h.len() as f64 / secs;
    let mb = rate * args.size as f64 / 1e6;
    let q = |q: f64| h.value_at_quantile(q);
    let mode = if args.rate.is_some() { "open loop" } else { "closed loop" };
    if args.json {
        let value = serde_json::json!({
            "url": args.url, "connections": args.connections, "size": args.size, "mode": mode,
            "duration_s": secs, "messages": h.len(), "msg_per_s": rate, "mb_per_s": mb,
            "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": h.max(), "errors": errors,
        });
        println!("{value}");
    } else {
        println!(
            "frameway bench: {} ({} connections, {} B {}, {mode}, {secs:.1} s)",
            args.url,
            args.connections,
            args.size,
            if args.text { "text" } else { "binary" }
        );
        println!(
            "{rate:.0} msg/s  {mb:.2} MB/s  p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  ({} round trips, {errors} errors)",
            q(0.5),
            q(0.99),
            q(0.999),
            h.max(),
            h.len()
        );
    }
}

/// One connection: its socket, its pre-encoded frame, and the size of the
/// echo to wait for.
struct Connection {
    tcp: TcpStream,
    frame: Vec<u8>,
    echo_len: usize,
}

impl Connection {
    async fn open(target: &Target, size: usize, opcode: OpCode) -> Result<Connection, Box<dyn std::error::Error>> {
        let mut tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let mut random = [0u8; 20];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let key = generate_key(random[..16].try_into().expect("16 bytes"));
        let mut request = Vec::new();
        write_request(&ClientRequest { host: &target.host, path: &target.path, key: &key, ..Default::default() }, &mut request);
        tcp.write_all(&request).await?;
        let mut buf = BytesMut::with_capacity(4096);
        let leftover = loop {
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err("server closed during the handshake".into());
            }
            if let Some((response, len)) = parse_response(&buf, Default::default())? {
                validate_response(&response, &key, &[], &[])?;
                break buf.split_off(len);
            }
        };
        if !leftover.is_empty() {
            return Err("server sent data before any message".into());
        }
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut frame = BytesMut::new();
        let mask = Some([random[16], random[17], random[18], random[19]]);
        FrameEncoder::new(u64::MAX).encode(true, opcode, &payload, mask, &mut frame)?;
        let echo_len = frame.len() - 4;
        let mut conn = Connection { tcp, frame: frame.to_vec(), echo_len };
        conn.check_echo(&payload).await?;
        Ok(conn)
    }

    /// The first round trip is decoded in full, so a server that does not
    /// echo is caught before its bytes are counted.
    async fn check_echo(&mut self, payload: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
        self.tcp.write_all(&self.frame).await?;
        let mut echo = vec![0u8; self.echo_len];
        self.tcp.read_exact(&mut echo).await?;
        let mut buf = BytesMut::from(&echo[..]);
        let frame = FrameDecoder::new(Config::new(Role::Client)).decode(&mut buf)?;
        match frame {
            Some(f) if f.payload == payload && buf.is_empty() => Ok(()),
            _ => Err("the server's answer is not an echo of the message (unfragmented)".into()),
        }
    }

    async fn closed_loop(mut self, shared: &Shared) -> Result<Histogram<u64>, String> {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; self.echo_len.clamp(4096, 1 << 20)];
        while !shared.stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            self.tcp.write_all(&self.frame).await.map_err(|e| e.to_string())?;
            let mut got = 0;
            while got < self.echo_len {
                let want = (self.echo_len - got).min(buf.len());
                let n = self.tcp.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
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

    async fn open_loop(self, shared: &Shared, interval: Duration) -> Result<Histogram<u64>, String> {
        let (mut reader, mut writer) = self.tcp.into_split();
        // Send times of messages whose echo has not arrived; bounded so a
        // stalled server cannot make the generator grow without limit.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1 << 16);
        let frame = self.frame;
        let send = async move {
            let mut next = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next).await;
                if tx.send(next).await.is_err() {
                    break;
                }
                writer.write_all(&frame).await.map_err(|e| e.to_string())?;
                next += interval;
            }
            Ok::<(), String>(())
        };
        let echo_len = self.echo_len;
        let receive = async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = 0usize;
            while !shared.stop.load(Ordering::Relaxed) {
                let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed the connection".into());
                }
                pending += n;
                while pending >= echo_len {
                    pending -= echo_len;
                    let Some(scheduled) = rx.recv().await else { break };
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
