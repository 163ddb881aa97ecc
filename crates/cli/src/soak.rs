//! `frameway soak`: a bounded soak of an echo server, or of a gateway route
//! to one, that accounts for every message.
//!
//! Each connection sends a message, waits for its echo and checks it byte
//! for byte before sending the next: a message that does not come back is
//! lost, one that comes back different is corrupted. Messages carry their
//! sequence number and a checksum of their body in their first 16 bytes (as
//! 32 hex digits in text messages), so a corrupted one in a capture says
//! which it was. Sizes are spread over 0 to `--max-size` bytes on a log
//! scale (as many 10-100 B messages as 10-100 KiB ones), a share of the
//! messages is sent as 2 to 5 fragments, a share of the connections offers
//! permessage-deflate, and connections close (1000) and reconnect at random.
//! A connection the other side ends, or that fails, counts as dropped.
//!
//! With `--watch-pid`, the report gives that process's resident memory and
//! open descriptors before the load, at their highest during it, and after
//! every connection has closed, and its CPU time per message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use frameway::client::{connect_with, ConnectOptions};
use frameway::{CloseCode, DeflateConfig, Message, OpCode, WebSocket, WebSocketConfig};
use tokio::time::{timeout, Instant};

use crate::proc_stat;

/// The longest soak allowed, so that no load loop is unbounded.
const MAX_DURATION: f64 = 24.0 * 3600.0;

/// How long an echo may take before its message counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct SoakArgs {
    /// The ws:// URL of an echo server (or of a gateway route to one).
    url: String,
    /// Connections open at once.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Seconds of load (at most a day).
    #[arg(long, default_value_t = 300.0)]
    duration: f64,
    /// The largest message, bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    max_size: usize,
    /// The share of connections that offer permessage-deflate (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    deflate_share: f64,
    /// The share of messages sent in fragments (0 to 1).
    #[arg(long, default_value_t = 0.25)]
    fragment_share: f64,
    /// The chance, after each echo, that the connection closes and a new
    /// one replaces it (0 to 1).
    #[arg(long, default_value_t = 0.002)]
    reconnect_chance: f64,
    /// A process (the gateway) whose memory, descriptors and CPU to report.
    #[arg(long = "watch-pid", value_name = "PID")]
    watch_pid: Option<u32>,
    /// Seed of the random choices, so that a failing run can be repeated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SoakArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        return Err(format!("--duration must be in (0, {MAX_DURATION}] seconds").into());
    }
    for (name, share) in [
        ("--deflate-share", args.deflate_share),
        ("--fragment-share", args.fragment_share),
        ("--reconnect-chance", args.reconnect_chance),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("{name} must be between 0 and 1").into());
        }
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    frameway::client::WsUrl::parse(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let report = crate::current_thread()?.block_on(soak(&args))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.passed() {
        Ok(())
    } else {
        Err("messages were lost, corrupted or dropped".into())
    }
}

/// What the connections counted.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    echoed: AtomicU64,
    lost: AtomicU64,
    corrupted: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    deflate: AtomicU64,
    reconnects: AtomicU64,
    dropped: AtomicU64,
    connect_failures: AtomicU64,
}

/// The watched process at one instant.
#[derive(Clone, Copy, Default)]
struct ProcessSample {
    rss_kib: u64,
    fds: u64,
    cpu_ticks: u64,
}

impl ProcessSample {
    fn take(pid: u32) -> Result<ProcessSample, String> {
        Ok(ProcessSample {
            rss_kib: proc_stat::rss_kib(&[pid])?,
            fds: proc_stat::open_fds(pid)?,
            cpu_ticks: proc_stat::cpu_ticks(pid)?,
        })
    }
}

struct Report {
    seconds: f64,
    counts: Counts,
    /// Before, highest during, after.
    process: Option<[ProcessSample; 3]>,
    cpu_seconds: f64,
}

async fn soak(args: &SoakArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let before = args.watch_pid.map(ProcessSample::take).transpose()?;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.connections {
        let plan = Plan {
            url: args.url.clone(),
            max_size: args.max_size,
            deflate_share: args.deflate_share,
            fragment_share: args.fragment_share,
            reconnect_chance: args.reconnect_chance,
            deadline,
        };
        let random = Random::new(args.seed.wrapping_mul(1_000_003) ^ index as u64);
        tasks.spawn(connection(plan, random, counts.clone()));
    }
    let mut highest = before.unwrap_or_default();
    let mut sampling = tokio::time::interval(Duration::from_secs(1));
    sampling.tick().await;
    let mut seconds = 0u64;
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = sampling.tick() => {
                if let Some(pid) = args.watch_pid {
                    let now = ProcessSample::take(pid)?;
                    highest.rss_kib = highest.rss_kib.max(now.rss_kib);
                    highest.fds = highest.fds.max(now.fds);
                }
                seconds += 1;
                if seconds % 10 != 0 {
                    continue;
                }
                eprintln!(
                    "soak: {:>5.0} s: {} echoed, {} lost, {} corrupted, {} dropped",
                    started.elapsed().as_secs_f64(),
                    counts.echoed.load(Relaxed),
                    counts.lost.load(Relaxed),
                    counts.corrupted.load(Relaxed),
                    counts.dropped.load(Relaxed),
                );
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // The watched process closes its side of each connection after ours:
    // give it a moment before reading what it holds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.watch_pid.map(ProcessSample::take).transpose()?;
    let process = before.zip(after).map(|(b, a)| [b, highest, a]);
    let cpu_seconds = process.map_or(0.0, |[b, _, a]| {
        a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / proc_stat::TICKS_PER_SEC
    });
    let counts = Arc::try_unwrap(counts).map_err(|_| "a connection outlived the soak")?;
    Ok(Report {
        seconds,
        counts,
        process,
        cpu_seconds,
    })
}

/// What every connection is asked to do.
struct Plan {
    url: String,
    max_size: usize,
    deflate_share: f64,
    fragment_share: f64,
    reconnect_chance: f64,
    deadline: Instant,
}

/// One connection slot: connects, exchanges messages until the deadline or
/// a random reconnect, and starts again.
async fn connection(plan: Plan, mut random: Random, counts: Arc<Counts>) {
    let mut seq = 0u64;
    while Instant::now() < plan.deadline {
        let mut config = WebSocketConfig::default();
        if random.chance(plan.deflate_share) {
            config = config.deflate(DeflateConfig::default());
        }
        let options = ConnectOptions::default()
            .connect_timeout(Duration::from_secs(10))
            .handshake_timeout(Duration::from_secs(10))
            .websocket(config);
        let (mut ws, response) = match connect_with(&plan.url, options).await {
            Ok(connected) => connected,
            Err(_) => {
                counts.connect_failures.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        counts.connections.fetch_add(1, Relaxed);
        if response.deflate().is_some() {
            counts.deflate.fetch_add(1, Relaxed);
        }
        loop {
            if Instant::now() >= plan.deadline {
                let _ = ws.close(CloseCode::NORMAL, "soak over").await;
                return;
            }
            seq += 1;
            let size = random.size(plan.max_size);
            let text = random.chance(0.2);
            let payload = payload(seq, size, text, &mut random);
            counts.sent.fetch_add(1, Relaxed);
            let fragments = if random.chance(plan.fragment_share) {
                2 + random.below(4) as usize
            } else {
                1
            };
            let echoed = async {
                send(&mut ws, &payload, text, fragments, &mut random).await?;
                echo(&mut ws).await
            };
            match timeout(ECHO_TIMEOUT, echoed).await {
                Ok(Some(echo)) if echo == payload => {
                    counts.echoed.fetch_add(1, Relaxed);
                    counts.bytes.fetch_add(size as u64, Relaxed);
                }
                Ok(Some(_)) => {
                    counts.corrupted.fetch_add(1, Relaxed);
                }
                Ok(None) | Err(_) => {
                    counts.lost.fetch_add(1, Relaxed);
                    counts.dropped.fetch_add(1, Relaxed);
                    break;
                }
            }
            if random.chance(plan.reconnect_chance) {
                counts.reconnects.fetch_add(1, Relaxed);
                if ws.close(CloseCode::NORMAL, "reconnect").await.is_err() {
                    counts.dropped.fetch_add(1, Relaxed);
                }
                break;
            }
        }
    }
}

type Ws = WebSocket<frameway::client::ClientStream>;

/// Sends `payload` whole or as `fragments` frames cut at random places.
async fn send(
    ws: &mut Ws,
    payload: &Bytes,
    text: bool,
    fragments: usize,
    random: &mut Random,
) -> Option<()> {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    if fragments == 1 {
        let message = if text {
            Message::text(String::from_utf8(payload.to_vec()).ok()?)
        } else {
            Message::binary(payload.clone())
        };
        return ws.send(message).await.ok();
    }
    let mut cuts: Vec<usize> = (1..fragments)
        .map(|_| random.below(payload.len() as u64 + 1) as usize)
        .collect();
    cuts.sort_unstable();
    let mut start = 0;
    for (i, end) in cuts.into_iter().chain([payload.len()]).enumerate() {
        let opcode = if i == 0 { opcode } else { OpCode::Continuation };
        let fin = i == fragments - 1;
        ws.send_frame(fin, opcode, &payload[start..end])
            .await
            .ok()?;
        start = end;
    }
    Some(())
}

/// The next data message, or `None` when the connection ended first.
async fn echo(ws: &mut Ws) -> Option<Bytes> {
    loop {
        match ws.recv().await?.ok()? {
            Message::Text(text) => return Some(Bytes::from(text.as_str().to_owned())),
            Message::Binary(data) => return Some(data),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return None,
        }
    }
}

/// Message `seq` of `size` bytes: its sequence number and the checksum of
/// the rest first (raw, or as hex digits in text), then random bytes (or
/// letters in text). Messages under 16 bytes are random only.
fn payload(seq: u64, size: usize, text: bool, random: &mut Random) -> Bytes {
    let mut body = vec![0u8; size.saturating_sub(16)];
    random.fill(&mut body);
    if text {
        body.iter_mut().for_each(|b| *b = b'a' + *b % 26);
    }
    let sum = fnv1a(&body);
    let mut out = Vec::with_capacity(size);
    if size >= 16 {
        if text {
            out.extend_from_slice(format!("{seq:016x}{sum:016x}").as_bytes());
            out.truncate(size);
        } else {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&sum.to_le_bytes());
        }
    }
    out.extend_from_slice(&body);
    out.resize(size, b'a');
    if size < 16 {
        random.fill(&mut out);
        if text {
            out.iter_mut().for_each(|b| *b = b'a' + *b % 26);
        }
    }
    Bytes::from(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xorshift64*: random enough to vary sizes and contents, and repeatable
/// from a seed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    /// A size up to `max`, spread on a log scale.
    fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let top = 1usize << self.below(u64::from(bits) + 1);
        (self.below(top as u64) as usize).min(max)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

impl Report {
    fn passed(&self) -> bool {
        let c = &self.counts;
        c.lost.load(Relaxed) == 0 && c.corrupted.load(Relaxed) == 0 && c.dropped.load(Relaxed) == 0
    }

    fn values(&self) -> Vec<(&'static str, f64)> {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Relaxed) as f64;
        let mut values = vec![
            ("seconds", self.seconds),
            ("messages_sent", n(&c.sent)),
            ("messages_echoed", n(&c.echoed)),
            ("messages_lost", n(&c.lost)),
            ("messages_corrupted", n(&c.corrupted)),
            ("payload_mib_echoed", n(&c.bytes) / (1024.0 * 1024.0)),
            ("connections", n(&c.connections)),
            ("connections_with_deflate", n(&c.deflate)),
            ("reconnects", n(&c.reconnects)),
            ("connections_dropped", n(&c.dropped)),
            ("connect_failures", n(&c.connect_failures)),
        ];
        if let Some([before, during, after]) = self.process {
            let per_message = self.cpu_seconds * 1e6 / n(&c.echoed).max(1.0);
            values.extend([
                ("watched_rss_kib_before", before.rss_kib as f64),
                ("watched_rss_kib_highest", during.rss_kib as f64),
                ("watched_rss_kib_after", after.rss_kib as f64),
                ("watched_fds_before", before.fds as f64),
                ("watched_fds_highest", during.fds as f64),
                ("watched_fds_after", after.fds as f64),
                ("watched_cpu_seconds", self.cpu_seconds),
                ("watched_cpu_us_per_message", per_message),
            ]);
        }
        values
    }

    fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        for (name, value) in self.values() {
            map.insert(name.to_owned(), serde_json::json!(value));
        }
        map.insert("passed".to_owned(), self.passed().into());
        serde_json::Value::Object(map).to_string()
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for (name, value) in self.values() {
            out += &format!("{name:>28}: {}\n", (value * 100.0).round() / 100.0);
        }
        out += &format!(
            "{:>28}: {}\n",
            "result",
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_sequence_and_checksum_and_text_stays_ascii() {
        let mut random = Random::new(7);
        let binary = payload(42, 1000, false, &mut random);
        assert_eq!(binary.len(), 1000);
        assert_eq!(binary[..8], 42u64.to_le_bytes());
        assert_eq!(binary[8..16], fnv1a(&binary[16..]).to_le_bytes());
        let text = payload(43, 40, true, &mut random);
        assert!(text.is_ascii());
        assert_eq!(&text[..16], b"000000000000002b");
        for size in 0..16 {
            assert_eq!(payload(1, size, true, &mut random).len(), size);
        }
    }

    #[test]
    fn sizes_stay_under_the_maximum_and_cover_every_scale() {
        let mut random = Random::new(3);
        let sizes: Vec<usize> = (0..10_000).map(|_| random.size(256 * 1024)).collect();
        assert!(sizes.iter().all(|&s| s <= 256 * 1024));
        for (low, high) in [
            (0, 100),
            (100, 10_000),
            (10_000, 100_000),
            (100_000, 262_145),
        ] {
            assert!(
                sizes.iter().any(|&s| (low..high).contains(&s)),
                "no size in {low}..{high}"
            );
        }
    }
}
