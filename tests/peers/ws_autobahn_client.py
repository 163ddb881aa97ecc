#!/usr/bin/env python3
"""Autobahn fuzzingserver client built on Python `websockets`.

A reference testee for `scripts/autobahn client`, which sets AUTOBAHN_URL and
AUTOBAHN_AGENT:
  scripts/autobahn client --cmd ".venv-peers/bin/python tests/peers/ws_autobahn_client.py"
Shows the protocol a client testee must follow: read /getCaseCount, run every
/runCase echoing each message, then /updateReports so wstest writes the report.
"""

import argparse
import asyncio
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException


async def run_case(base, agent, case):
    # max_size=None: group 9 sends 16 MiB messages.
    try:
        async with connect(f"{base}/runCase?case={case}&agent={agent}",
                           max_size=None, ping_interval=None) as ws:
            async for msg in ws:
                await ws.send(msg)
    except (WebSocketException, OSError) as e:
        # Failing cases are expected; wstest records what happened on the wire.
        print(f"case {case}: {type(e).__name__}: {e}", file=sys.stderr)


async def main(timeout):
    base = os.environ["AUTOBAHN_URL"]
    agent = os.environ.get("AUTOBAHN_AGENT", "websockets")
    async with connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.recv())
    print(f"{count} cases", file=sys.stderr)
    for case in range(1, count + 1):
        await run_case(base, agent, case)
    async with connect(f"{base}/updateReports?agent={agent}") as ws:
        await ws.wait_closed()  # wstest closes once the report is written


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=1200, help="whole-run limit in seconds")
    args = p.parse_args()
    asyncio.run(asyncio.wait_for(main(args.timeout), args.timeout))
