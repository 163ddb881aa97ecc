#!/usr/bin/env python3
"""Echo server built on Python `websockets`: the foreign server for interop tests.

Run with .venv-peers/bin/python (see scripts/install-test-deps).

Contract with the tests that start it:
  * prints exactly one line `READY <port>` on stdout once listening, then
    nothing more on stdout (everything else goes to stderr);
  * exits by itself after --timeout seconds, so a crashed test never leaks it.

Behaviour: every text/binary message is echoed back with the same type; the
text message `close:CODE:REASON` makes the server close with that code/reason.
With --hello TEXT, each connection first receives TEXT (so that a test behind
a balancer knows which server it reached).
"""

import argparse
import asyncio
import logging
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--subprotocols", default="", help="comma-separated, e.g. a,b")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument("--cafile", help="CA used to verify client certificates")
    p.add_argument("--require-client-cert", action="store_true")
    p.add_argument("--max-size", type=int, default=None,
                   help="max message size in bytes (default: unbounded)")
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--deflate-no-context-takeover", action="store_true",
                   help="permessage-deflate without context takeover, both ways")
    p.add_argument("--deflate-window-bits", type=int,
                   help="permessage-deflate server_max_window_bits and client_max_window_bits")
    p.add_argument("--reject-status", type=int,
                   help="answer every handshake with this HTTP status")
    p.add_argument("--hello", help="send this text message first on every connection")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="lifetime in seconds; the server exits afterwards")
    p.add_argument("--verbose", action="store_true", help="websockets debug log")
    return p.parse_args()


def tls_context(args):
    if not args.certfile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.certfile, args.keyfile)
    if args.cafile:
        ctx.load_verify_locations(args.cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def compression_options(args):
    """`compression` and `extensions` arguments of serve()/connect()."""
    if args.no_compression:
        return {"compression": None}
    if not (args.deflate_no_context_takeover or args.deflate_window_bits):
        return {"compression": "deflate"}
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    bits = args.deflate_window_bits
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=args.deflate_no_context_takeover,
        client_no_context_takeover=args.deflate_no_context_takeover,
        server_max_window_bits=bits,
        client_max_window_bits=bits,
        # Decline clients that cannot be held to the window.
        require_client_max_window_bits=bits is not None,
    )
    return {"compression": None, "extensions": [factory]}


async def echo(ws, hello=None):
    if hello is not None:
        await ws.send(hello)
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    log(f"connection from {ws.remote_address}, subprotocol: {ws.subprotocol}, "
        f"extensions: {extensions}")
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("close:"):
                _, code, reason = msg.split(":", 2)
                await ws.close(int(code), reason)
                break
            await ws.send(msg)
    except ConnectionClosed:
        pass  # the peer's close (or a protocol error) is logged below
    log(f"closed: code={ws.close_code} reason={ws.close_reason!r}")


async def main(args):
    offered = [s for s in args.subprotocols.split(",") if s]

    # websockets' default picks in the *server's* order and refuses clients that
    # offer none; tests want the client's first supported choice, or no
    # subprotocol at all rather than a 400.
    def select_subprotocol(_conn, client_offers):
        return next((s for s in client_offers if s in offered), None)

    def process_request(conn, _request):
        if args.reject_status:
            return conn.respond(args.reject_status, "rejected by test")
        return None

    async with serve(
        lambda ws: echo(ws, args.hello),
        args.host,
        args.port,
        ssl=tls_context(args),
        subprotocols=offered or None,
        select_subprotocol=select_subprotocol,
        process_request=process_request,
        max_size=args.max_size,
        **compression_options(args),
        # No keepalive pings: tests should see only the frames they cause.
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        try:
            await asyncio.wait_for(server.serve_forever(), args.timeout)
        except asyncio.TimeoutError:
            log(f"timeout after {args.timeout}s, exiting")


if __name__ == "__main__":
    args = parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr)
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
