// Preliminary measurement of permessage-deflate (docs/BENCHMARKS.md): an SSE source of ~1 KiB JSON events and
// CLIENTS Node `ws` clients of pushbridge (benches/pushbridge-bench-deflate.yaml), offering permessage-deflate or
// not (DEFLATE=1|0). Reports deliveries, pushbridge's CPU per delivery (from /proc/PID/stat) and payload bytes per
// delivery (from its metrics). Needs tests/differential/node_modules (npm ci there).
//   PID=$(pgrep -n -x pushbridge) CLIENTS=1000 RATE=20 SECONDS=15 DEFLATE=1 node benches/deflate-load.mjs
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import http from "node:http";

const require = createRequire(new URL("../tests/differential/", import.meta.url));
const WebSocket = require("ws");
const env = (name, fallback) => Number(process.env[name] ?? fallback);
const [clients, rate, seconds, deflate, pid] =
  [env("CLIENTS", 1000), env("RATE", 20), env("SECONDS", 15), env("DEFLATE", 1), env("PID", 0)];

// A ~1 KiB JSON document: an order book snapshot with varying numbers.
let seq = 0;
function event() {
  seq += 1;
  const bids = [];
  for (let k = 0; k < 24; k++) {
    bids.push({ price: +(100 + Math.random() * 5).toFixed(2), qty: Math.floor(Math.random() * 5000), venue: "X" + (k % 4) });
  }
  return JSON.stringify({ seq, ts: Date.now(), symbol: "ACME", bids });
}

const feeds = new Set();
http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(": open\n\n");
  feeds.add(res);
  req.on("close", () => feeds.delete(res));
}).listen(28081, "127.0.0.1");
setInterval(() => {
  const data = event();
  for (const res of feeds) res.write(`id: ${seq}\ndata: ${data}\n\n`);
}, 1000 / rate);

const cpu = () => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks of 10 ms
};
const metric = async (name) => {
  const text = await (await fetch("http://127.0.0.1:28090/metrics")).text();
  return text.split("\n").filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
};

let received = 0, bad = 0, open = 0;
for (let i = 0; i < clients; i++) {
  const ws = new WebSocket("ws://127.0.0.1:28080/events/bench", { perMessageDeflate: deflate === 1 });
  ws.on("open", () => (open += 1));
  ws.on("message", (m) => {
    received += 1;
    if (m.length < 500) bad += 1;
  });
  ws.on("error", () => (bad += 1));
  if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
}
// Every client open and pushbridge's upstream connection (re)made to this run's source before the window.
while (open < clients || feeds.size === 0) await new Promise((r) => setTimeout(r, 100));
await new Promise((r) => setTimeout(r, 2000));
const before = { received, cpu: cpu(), bytes: await metric("pushbridge_ws_payload_bytes_total") };
await new Promise((r) => setTimeout(r, seconds * 1000));
const after = { received, cpu: cpu(), bytes: await metric("pushbridge_ws_payload_bytes_total") };
const deliveries = after.received - before.received;
const rss = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1];
console.log(JSON.stringify({
  deflate: deflate === 1, clients, rate, seconds, deliveries, bad,
  cpu_s: +(after.cpu - before.cpu).toFixed(2),
  cpu_us_per_delivery: +((after.cpu - before.cpu) * 1e6 / deliveries).toFixed(2),
  payload_bytes_per_delivery: +((after.bytes - before.bytes) / deliveries).toFixed(1),
  rss_kib: Number(rss),
}));
process.exit(0);
