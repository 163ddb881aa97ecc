//! Measures the heap one connection's permessage-deflate state holds: a
//! counting global allocator watches a server's [`Deflate`] while a client
//! and the server trade 16 KiB JSON-like messages, for several window
//! sizes, memory levels and with context takeover on and off in each
//! direction (`server`: the server's compressor; `client`: the client's,
//! which decides whether the server keeps its inflater).
//!
//! `cargo run --release -p frameway-wire --example deflate_memory` prints
//! the Markdown table that BENCHMARKS.md shows.
//!
//! - *idle*: held between messages (what every open connection costs);
//! - *peak*: the most held while a message is compressed or inflated,
//!   not counting the message buffers themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
use frameway_wire::Role;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn json(len: usize, seed: u64) -> Vec<u8> {
    let mut out = String::with_capacity(len + 128);
    let mut i = seed;
    while out.len() < len {
        i += 1;
        out.push_str(&format!(
            r#"{{"seq":{i},"symbol":"FW{}","price":{},"qty":{}}},"#,
            i % 37,
            (i * 7919) % 100_000,
            (i * 31) % 1000
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

/// (idle, peak) bytes of the server's deflate state, with its own
/// compressor's context takeover (`server`) and the client's (`client`).
fn measure(bits: u8, mem_level: u8, server: bool, client: bool) -> (usize, usize) {
    let mut params = DeflateParams::default();
    params.server_max_window_bits = bits;
    params.client_max_window_bits = bits;
    params.server_no_context_takeover = !server;
    params.client_no_context_takeover = !client;
    let config = DeflateConfig::default().mem_level(mem_level);
    let mut client = Deflate::new(Role::Client, params, &config);
    let messages: Vec<_> = (0..20).map(|i| json(16 << 10, i * 1000)).collect();
    // The wire bytes and outputs are allocated before measuring, so only
    // the server's own state is counted.
    let mut wires = Vec::new();
    for m in &messages {
        let mut wire = Vec::new();
        client.compress(m, true, &mut wire).unwrap();
        wires.push(wire);
    }
    let mut inflated = Vec::with_capacity(64 << 10);
    let mut compressed = Vec::with_capacity(64 << 10);

    let before = LIVE.load(Ordering::Relaxed);
    let mut server = Deflate::new(Role::Server, params, &config);
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    for (m, wire) in messages.iter().zip(&wires) {
        inflated.clear();
        server.inflate(wire, true, u64::MAX, &mut inflated).unwrap();
        assert_eq!(&inflated, m);
        compressed.clear();
        server.compress(m, true, &mut compressed).unwrap();
    }
    let idle = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    drop(server);
    (idle, peak)
}

fn kib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

fn main() {
    println!(
        "| window bits | memLevel | server takeover | client takeover | idle KiB | peak KiB |"
    );
    println!("| ---: | ---: | --- | --- | ---: | ---: |");
    let on_off = |on: bool| if on { "on" } else { "off" };
    for bits in [15, 12, 10, 9, 8] {
        for mem_level in [8, 1] {
            for (server, client) in [(true, true), (false, true), (false, false)] {
                let (idle, peak) = measure(bits, mem_level, server, client);
                println!(
                    "| {bits} | {mem_level} | {} | {} | {} | {} |",
                    on_off(server),
                    on_off(client),
                    kib(idle),
                    kib(peak)
                );
            }
        }
    }
}
