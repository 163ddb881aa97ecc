//! permessage-deflate throughput: compressing and inflating messages of
//! several sizes, JSON-like text (compressible) and random bytes (not),
//! with the default parameters (15-bit windows, context takeover, level 6).
//!
//! `cargo bench -p frameway-wire --bench deflate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
use frameway_wire::Role;

/// JSON-like text, what chat, trading and telemetry feeds send; `seed`
/// makes messages differ the way consecutive ones do.
fn json(len: usize, seed: u64) -> Vec<u8> {
    let mut out = String::with_capacity(len + 128);
    let mut i = seed * 100_003;
    while out.len() < len {
        i += 1;
        let price = (i * 7919) % 100_000;
        out.push_str(&format!(
            r#"{{"seq":{i},"symbol":"FW{}","price":{}.{:02},"side":"{}","qty":{}}},"#,
            i % 37,
            price / 100,
            price % 100,
            if i % 3 == 0 { "sell" } else { "buy" },
            (i * 31) % 1000
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

/// Incompressible bytes (xorshift from `seed`).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Distinct messages cycled through, so that context takeover finds what
/// it would in a real stream, not the same message again.
const DISTINCT: u64 = 16;

const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];

fn deflate(c: &mut Criterion) {
    let params = DeflateParams::default();
    let config = DeflateConfig::default();
    for (name, data) in [
        ("json", json as fn(usize, u64) -> Vec<u8>),
        ("random", noise),
    ] {
        let mut group = c.benchmark_group(format!("compress/{name}"));
        for size in SIZES {
            let inputs: Vec<_> = (0..DISTINCT).map(|seed| data(size, seed)).collect();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::from_parameter(size), &inputs, |b, inputs| {
                let mut client = Deflate::new(Role::Client, params, &config);
                let mut out = Vec::with_capacity(size + 64);
                let mut next = inputs.iter().cycle();
                b.iter(|| {
                    out.clear();
                    let input = next.next().expect("cycle");
                    client.compress(input, true, &mut out).unwrap();
                });
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("inflate/{name}"));
        for size in SIZES {
            // Compressed without context takeover, so each message inflates
            // on its own and can be inflated again and again; the inflater
            // keeps its state between them as with takeover.
            let mut solo = params;
            solo.client_no_context_takeover = true;
            let mut client = Deflate::new(Role::Client, solo, &config);
            let wires: Vec<_> = (0..DISTINCT)
                .map(|seed| {
                    let mut wire = Vec::new();
                    client.compress(&data(size, seed), true, &mut wire).unwrap();
                    wire
                })
                .collect();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::from_parameter(size), &wires, |b, wires| {
                let mut server = Deflate::new(Role::Server, params, &config);
                let mut out = Vec::with_capacity(size);
                let mut next = wires.iter().cycle();
                b.iter(|| {
                    out.clear();
                    let wire = next.next().expect("cycle");
                    server.inflate(wire, true, u64::MAX, &mut out).unwrap();
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, deflate);
criterion_main!(benches);
