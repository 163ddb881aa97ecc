#!/usr/bin/env node
// Scripted client built on Node's `ws`: the second foreign client for
// interop tests, speaking the same JSON script as ../ws_client.py (the
// steps send_text, expect_text, send_binary_len, expect_binary_len with
// "pattern", expect_extensions and close).
//
//   node tests/peers/node/ws_client.mjs --url URL [--no-compression] < script.json
//
// Prints `OK` and exits 0 when every step passes, `FAIL <why>` and exits 1
// otherwise; the whole run is bounded by --timeout seconds. `ws` is
// installed by scripts/install-test-deps (npm ci in this directory).
import WebSocket from "ws";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1];
};
const url = option("--url");
const timeout = Number(option("--timeout", "30"));
const compression = !args.includes("--no-compression");

const fail = (why) => {
  console.log(`FAIL ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`timed out after ${timeout} s`), timeout * 1000).unref();

// Byte i is i % 251, as ws_client.py and the Rust tests make it.
const pattern = (n) => {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = i % 251;
  return bytes;
};

const stdin = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
};

const steps = await stdin();
const ws = new WebSocket(url, { perMessageDeflate: compression, maxPayload: 64 << 20 });
let extensions = null;
ws.on("upgrade", (response) => {
  extensions = response.headers["sec-websocket-extensions"] ?? null;
});

// Received messages in order, and whoever waits for the next one.
const inbox = [];
let waiting = null;
ws.on("message", (data, isBinary) => {
  inbox.push({ data, isBinary });
  if (waiting) waiting();
});
let closed = null;
ws.on("close", (code, reason) => {
  closed = { code, reason: reason.toString() };
  if (waiting) waiting();
});
ws.on("error", (e) => fail(`websocket error: ${e.message}`));
const next = () =>
  new Promise((resolve, reject) => {
    const take = () => {
      if (inbox.length) return resolve(inbox.shift());
      if (closed) return reject(new Error(`connection closed (${closed.code} ${closed.reason})`));
      waiting = take;
    };
    take();
  });

await new Promise((resolve) => ws.once("open", resolve));
const describe = (m) => `${m.isBinary ? "binary" : "text"}(${m.data.length})`;
for (const [i, step] of steps.entries()) {
  const [op] = Object.keys(step).filter((k) => k !== "pattern" && k !== "binary");
  const arg = step[op];
  try {
    if (op === "send_text") ws.send(arg);
    else if (op === "send_binary_len") ws.send(pattern(arg));
    else if (op === "expect_text") {
      const m = await next();
      if (m.isBinary || m.data.toString("utf8") !== arg) throw new Error(`expected text, got ${describe(m)}`);
    } else if (op === "expect_binary_len") {
      const m = await next();
      if (!m.isBinary || m.data.length !== arg) throw new Error(`expected binary of ${arg} bytes, got ${describe(m)}`);
      if (step.pattern && !m.data.equals(pattern(arg))) throw new Error(`binary of ${arg} bytes does not match the pattern`);
    } else if (op === "expect_extensions") {
      if (extensions !== arg) throw new Error(`expected extensions ${arg}, got ${extensions}`);
    } else if (op === "close") {
      ws.close(arg[0], arg[1]);
      await new Promise((resolve) => (closed ? resolve() : ws.once("close", resolve)));
    } else throw new Error(`unknown step ${op}`);
  } catch (e) {
    fail(`step ${i} ${JSON.stringify(step).slice(0, 80)}: ${e.message}`);
  }
}
console.log("OK");
process.exit(0);
