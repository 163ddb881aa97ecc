#!/usr/bin/env python3
"""Scripted client built on Python `websockets`: the foreign client for interop tests.

Run with .venv-peers/bin/python (see scripts/install-test-deps).

Connects to --url and runs a JSON script (a list of one-key steps, file or `-`
for stdin). Prints `OK` and exits 0 when every step passes; prints
`FAIL <why>` on stdout and exits 1 otherwise. Diagnostics go to stderr.
The whole run is bounded by --timeout seconds (a timeout is a FAIL).

Steps:
  {"send_text": "hi"}                 {"expect_text": "hi"}
  {"send_binary_hex": "00ff"}         {"expect_binary_hex": "00ff"}
  {"send_binary_len": N}              {"expect_binary_len": N, "pattern": true}
  {"send_fragments": ["a", "b"], "binary": false}   (binary: fragments are hex)
  {"ping": "hex payload"}             waits for the matching pong
  {"close": [code, reason]}           closes and waits for the peer's close frame
  {"expect_close": [code, reason]}    waits for the close; reason optional
  {"expect_subprotocol": "x"}         null means "none negotiated"
  {"expect_extensions": "x"}          the server's Sec-WebSocket-Extensions
                                      answer; null means none

The `*_len` pattern is byte i = i % 251 (a prime, so it never lines up with
frame or buffer sizes); Rust tests generate the same bytes to compare.
"""

import argparse
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


class StepFailed(Exception):
    pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def pattern(n):
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def describe(msg):
    """Short, printable summary of a received message for FAIL lines."""
    kind = "text" if isinstance(msg, str) else "binary"
    shown = msg if isinstance(msg, str) else msg.hex()
    if len(shown) > 60:
        shown = shown[:60] + "..."
    return f"{kind}({len(msg)}) {shown!r}"


async def recv(ws):
    try:
        return await ws.recv()
    except ConnectionClosed as e:
        raise StepFailed(f"connection closed ({e})") from None


async def run_step(ws, step):
    (op,) = [k for k in step if k not in ("binary", "pattern")]
    arg = step[op]
    if op == "send_text":
        await ws.send(arg)
    elif op == "send_binary_hex":
        await ws.send(bytes.fromhex(arg))
    elif op == "send_binary_len":
        await ws.send(pattern(arg))
    elif op == "send_fragments":
        # websockets sends an iterable as one fragmented message, one frame each.
        frags = [bytes.fromhex(f) for f in arg] if step.get("binary") else list(arg)
        await ws.send(frags)
    elif op == "expect_text":
        msg = await recv(ws)
        if msg != arg:
            raise StepFailed(f"expected text {arg[:60]!r}, got {describe(msg)}")
    elif op == "expect_binary_hex":
        msg = await recv(ws)
        if msg != bytes.fromhex(arg):
            raise StepFailed(f"expected binary {arg[:60]!r}, got {describe(msg)}")
    elif op == "expect_binary_len":
        msg = await recv(ws)
        if not isinstance(msg, bytes) or len(msg) != arg:
            raise StepFailed(f"expected binary of {arg} bytes, got {describe(msg)}")
        if step.get("pattern") and msg != pattern(arg):
            raise StepFailed(f"binary of {arg} bytes does not match the pattern")
    elif op == "ping":
        pong = await ws.ping(bytes.fromhex(arg))
        await pong
    elif op == "close":
        await ws.close(*arg)
    elif op == "expect_close":
        try:
            msg = await ws.recv()
            raise StepFailed(f"expected close, got {describe(msg)}")
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        got = [ws.close_code, ws.close_reason]
        if got[: len(arg)] != list(arg):
            raise StepFailed(f"expected close {arg}, got {got}")
    elif op == "expect_extensions":
        got = ws.response.headers.get("Sec-WebSocket-Extensions")
        if got != arg:
            raise StepFailed(f"expected extensions {arg!r}, got {got!r}")
    elif op == "expect_subprotocol":
        if ws.subprotocol != arg:
            raise StepFailed(f"expected subprotocol {arg!r}, got {ws.subprotocol!r}")
    else:
        raise StepFailed(f"unknown step {op!r}")


def tls_context(args):
    if not args.url.startswith("wss:"):
        return None
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.certfile:
        ctx.load_cert_chain(args.certfile, args.keyfile)
    return ctx


def compression_options(args):
    """`compression` and `extensions` arguments of connect()."""
    if args.no_compression:
        return {"compression": None}
    if not (args.deflate_no_context_takeover or args.deflate_window_bits):
        return {"compression": "deflate"}
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    bits = args.deflate_window_bits
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=args.deflate_no_context_takeover,
        client_no_context_takeover=args.deflate_no_context_takeover,
        server_max_window_bits=bits,
        client_max_window_bits=bits or True,
    )
    return {"compression": None, "extensions": [factory]}


async def main(args, steps):
    async with connect(
        args.url,
        ssl=tls_context(args),
        subprotocols=[args.subprotocol] if args.subprotocol else None,
        max_size=args.max_size,
        **compression_options(args),
        ping_interval=None,  # only the frames the script asks for
        open_timeout=args.timeout,
    ) as ws:
        log(f"connected, subprotocol: {ws.subprotocol}")
        for i, step in enumerate(steps):
            try:
                await run_step(ws, step)
            except (StepFailed, ConnectionClosed) as e:
                raise StepFailed(f"step {i} {json.dumps(step)[:80]}: {e}") from None


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--cafile", help="CA to trust for wss:// (default: system)")
    p.add_argument("--certfile", help="client certificate")
    p.add_argument("--keyfile")
    p.add_argument("--subprotocol")
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--deflate-no-context-takeover", action="store_true",
                   help="permessage-deflate without context takeover, both ways")
    p.add_argument("--deflate-window-bits", type=int,
                   help="permessage-deflate server_max_window_bits and client_max_window_bits")
    p.add_argument("--max-size", type=int, default=None,
                   help="max message size in bytes (default: unbounded)")
    p.add_argument("--script", required=True, help="JSON steps file, or - for stdin")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()

    with (sys.stdin if args.script == "-" else open(args.script)) as f:
        steps = json.load(f)
    try:
        asyncio.run(asyncio.wait_for(main(args, steps), args.timeout))
    except StepFailed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
    except asyncio.TimeoutError:
        print(f"FAIL timeout after {args.timeout}s", flush=True)
        sys.exit(1)
    except InvalidStatus as e:
        print(f"FAIL handshake rejected: HTTP {e.response.status_code}", flush=True)
        sys.exit(1)
    except Exception as e:  # connection refused, TLS errors, protocol errors...
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print("OK", flush=True)
