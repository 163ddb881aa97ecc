//! Micro-benchmarks of the protocol core: masking, header parsing, UTF-8
//! validation, frame decoding and encoding, message assembly, the whole
//! protocol work of one echoed message, and the opening handshake's key.
//!
//! `cargo bench -p frameway-wire --bench core` (numbers in BENCHMARKS.md,
//! "Protocol core"). Pass a filter to run a part: `… --bench core -- mask`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use frameway_wire::{
    apply_mask, Config, FrameDecoder, FrameEncoder, FrameHeader, Message, MessageAssembler, Mode,
    OpCode, Passed, Protocol, Role, Utf8Validator,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(usize, &str); 5] = [
    (20, "20B"),
    (1024, "1KiB"),
    (16 << 10, "16KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Text of mixed widths: ASCII, 2-, 3- and 4-byte code points.
fn mixed_text(len: usize) -> Vec<u8> {
    let unit = "héllo wörld — ünïcödé ✓ 🦀 ".as_bytes();
    let mut out = Vec::with_capacity(len + unit.len());
    while out.len() < len {
        out.extend_from_slice(unit);
    }
    // Cut at a char boundary at or below `len`.
    let s = std::str::from_utf8(&out).expect("valid");
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// One whole frame as a client sends it (masked).
fn client_frame(opcode: OpCode, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameEncoder::new(u64::MAX)
        .encode(fin, opcode, data, Some(KEY), &mut out)
        .expect("encodable");
    out.to_vec()
}

/// A message split into `fragments` masked frames.
fn fragmented(opcode: OpCode, data: &[u8], fragments: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut encoder = FrameEncoder::new(u64::MAX);
    let chunk = data.len().div_ceil(fragments);
    let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        encoder
            .encode(i + 1 == pieces.len(), op, piece, Some(KEY), &mut out)
            .expect("encodable");
    }
    out.to_vec()
}

fn server_config() -> Config {
    let mut config = Config::new(Role::Server);
    config.limits = config
        .limits
        .with_max_message_len(64 << 20)
        .with_max_frame_len(64 << 20);
    config.max_send_len = 64 << 20;
    config
}

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    // Also either side of where the wide (AVX2) loop takes over.
    let around_wide = [(256, "256B"), (4 << 10, "4KiB")];
    for (len, name) in SIZES.into_iter().chain(around_wide) {
        let mut buf = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 0))
        });
        // A payload arriving cut at an odd offset, as reads split it.
        group.bench_function(BenchmarkId::new("offset3", name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf[3..]), KEY, 3))
        });
    }
    group.finish();
}

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    for (len, name) in [(20usize, "7bit"), (1024, "16bit"), (1 << 20, "64bit")] {
        let wire = client_frame(OpCode::Binary, true, &payload(len));
        let header_len = FrameHeader::decode(&wire)
            .expect("valid")
            .expect("complete")
            .1;
        let head = wire[..header_len].to_vec();
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| FrameHeader::decode(black_box(&head)))
        });
        let (parsed, _) = FrameHeader::decode(&head)
            .expect("valid")
            .expect("complete");
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            let mut out = [0u8; frameway_wire::MAX_HEADER_LEN];
            b.iter(|| black_box(&parsed).encode(&mut out))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for (len, name) in [(20usize, "20B"), (16 << 10, "16KiB"), (1 << 20, "1MiB")] {
        let ascii = payload(len);
        let mixed = mixed_text(len);
        group.throughput(Throughput::Bytes(ascii.len() as u64));
        group.bench_function(BenchmarkId::new("ascii", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&ascii)).and_then(|_| v.finish())
            })
        });
        group.throughput(Throughput::Bytes(mixed.len() as u64));
        group.bench_function(BenchmarkId::new("mixed", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&mixed)).and_then(|_| v.finish())
            })
        });
        if len >= 16 << 10 {
            // As it arrives from the socket: 1000-byte reads that cut code
            // points in two.
            group.bench_function(BenchmarkId::new("mixed_chunked", name), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for chunk in black_box(&mixed).chunks(1000) {
                        v.feed(chunk)?;
                    }
                    v.finish()
                })
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (len, name) in SIZES {
        for (opcode, kind) in [(OpCode::Binary, "binary"), (OpCode::Text, "text")] {
            let wire = client_frame(opcode, true, &payload(len));
            let mut decoder = FrameDecoder::new(server_config());
            group.throughput(Throughput::Bytes(len as u64));
            // Unmasking and (for text) validation in place; the buffer copy
            // is setup, not measured.
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| decoder.decode(&mut buf).expect("valid").expect("complete"),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (len, name) in SIZES {
        let data = payload(len);
        let mut encoder = FrameEncoder::new(u64::MAX);
        let mut out = BytesMut::with_capacity(len + 14);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("server", name), |b| {
            b.iter(|| {
                out.clear();
                encoder.encode(true, OpCode::Binary, black_box(&data), None, &mut out)
            })
        });
        group.bench_function(BenchmarkId::new("client_masked", name), |b| {
            b.iter(|| {
                out.clear();
                encoder.encode(true, OpCode::Binary, black_box(&data), Some(KEY), &mut out)
            })
        });
    }
    group.finish();
}

fn assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("assemble");
    // Whole messages through Protocol::read_message: decode, unmask,
    // validate, join fragments.
    for (len, fragments, name) in [
        (20usize, 1usize, "20B_1frame"),
        (16 << 10, 1, "16KiB_1frame"),
        (64 << 10, 16, "64KiB_16frames"),
        (1 << 20, 64, "1MiB_64frames"),
    ] {
        for (opcode, kind) in [(OpCode::Binary, "binary"), (OpCode::Text, "text")] {
            let wire = fragmented(opcode, &payload(len), fragments);
            let mut protocol = Protocol::new(server_config(), |b| b.fill(0));
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        protocol
                            .read_message(&mut buf)
                            .expect("valid")
                            .expect("complete")
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    // The assembler alone, on already-decoded frames.
    let data = payload(64 << 10);
    let frames: Vec<_> = {
        let wire = fragmented(OpCode::Binary, &data, 16);
        let mut decoder = FrameDecoder::new(server_config());
        let mut buf = BytesMut::from(&wire[..]);
        std::iter::from_fn(|| decoder.decode(&mut buf).expect("valid")).collect()
    };
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("assembler_only/64KiB_16frames", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut assembler = MessageAssembler::new();
                let mut done = None;
                for frame in frames {
                    done = assembler.push(frame);
                }
                done.expect("complete")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The protocol work of one echoed message on the server: read a masked
/// client message, queue the unmasked reply, hand the bytes to the socket.
fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo");
    for (len, name) in SIZES {
        let wire = client_frame(OpCode::Binary, true, &payload(len));
        let mut protocol = Protocol::new(server_config(), |b| b.fill(0));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let message: Message = protocol
                        .read_message(&mut buf)
                        .expect("valid")
                        .expect("complete");
                    protocol.send(&message).expect("sendable");
                    let n = protocol.output().len();
                    protocol.consume_output(n);
                    n
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A gateway's fast lane under server push: one 64 KiB read of frames
/// from the upstream, passed to the client leg's output
/// (`Protocol::pass_frames`) and handed to the socket. Throughput counts
/// frames, so the time per element is what relaying one pushed message
/// costs in user space, against the whole per-message cost of a byte relay.
/// `floor/20B` only walks the same read from one length byte to the next
/// frame, a chain of dependent loads no reordering hides: the least finding
/// frames of varying lengths costs. Frames alike in length need no walk (the
/// lane checks them four at a time at their stride), so `20B binary` may go
/// below it.
fn pass(c: &mut Criterion) {
    let mut group = c.benchmark_group("pass");
    // A 64 KiB read of `messages`, in turn.
    let read_of = |messages: &[Message]| {
        let mut upstream = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
        let (mut wire, mut frames) = (BytesMut::new(), 0);
        for message in messages.iter().cycle() {
            if wire.len() + message.as_payload().len() + 4 > 64 << 10 {
                break;
            }
            upstream.send(message).expect("sendable");
            wire.extend_from_slice(&upstream.take_output());
            frames += 1;
        }
        (wire, frames)
    };
    let text = |len| Message::text(String::from_utf8(payload(len)).expect("ASCII"));
    let binary = |len| Message::binary(payload(len));
    // No two neighbours alike: what a run of alike frames saves, mixed
    // lengths must not pay for.
    let mixed: Vec<Message> = (0..9).map(|i| binary(16 + i * 7 % 9)).collect();
    for (messages, name) in [
        (vec![text(20)], "20B"),
        (vec![binary(20)], "20B binary"),
        (mixed, "16-24B binary"),
        (vec![text(1024)], "1KiB"),
    ] {
        let (wire, frames) = read_of(&messages);
        let leg = |role| {
            let mut leg = Protocol::new(Config::new(role), |b| b.fill(0));
            leg.set_mode(Mode::Relay);
            leg
        };
        let (mut upstream_leg, mut client_leg) = (leg(Role::Client), leg(Role::Server));
        group.throughput(Throughput::Elements(frames));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            // One buffer refilled before each read (untimed), as a
            // connection reads into the same spare buffer: a fresh one each
            // time made its page faults part of the timing, which swung by
            // half from run to run.
            let mut buf = BytesMut::with_capacity(wire.len());
            b.iter_custom(|reads| {
                let mut spent = Duration::ZERO;
                for _ in 0..reads {
                    buf.clear();
                    buf.extend_from_slice(&wire);
                    let start = Instant::now();
                    upstream_leg
                        .pass_frames(
                            &mut buf,
                            &mut client_leg,
                            usize::MAX,
                            &mut Passed::default(),
                        )
                        .expect("valid frames");
                    let n = client_leg.output().len();
                    client_leg.consume_output(black_box(n));
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    let (wire, frames) = read_of(&[binary(20)]);
    group.throughput(Throughput::Elements(frames));
    group.bench_function("floor/20B", |b| {
        b.iter(|| {
            let wire = black_box(&wire[..]);
            let mut at = 0;
            while let Some(&len) = wire.get(at + 1) {
                at += 2 + usize::from(len);
            }
            at
        })
    });
    group.finish();
}

/// `Sec-WebSocket-Accept` from a client's key: a SHA-1 and a base64
/// encoding, twice per handshake the gateway proxies.
fn handshake_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.bench_function("accept_key", |b| {
        b.iter(|| frameway_wire::handshake::accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the whole suite takes about a minute and a half.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = core;
    config = config();
    targets = masking, header, utf8, decode, encode, assembly, echo, pass, handshake_key
}
criterion_main!(core);
