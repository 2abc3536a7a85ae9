// A Node `ws` client with perMessageDeflate: true, for tests/ws_compression.rs (run with NODE_PATH at
// tests/differential/node_modules). Usage: node ws_deflate_client.mjs URL COUNT. Prints the negotiated extensions,
// COUNT messages (one JSON string a line), sends a large text message (compressed: over ws's 1 KiB threshold),
// twice, prints `sent`, and closes when stdin ends.
import { createRequire } from "node:module";

const require = createRequire(process.cwd() + "/");
const WebSocket = require("ws");
const [url, count] = [process.argv[2], Number(process.argv[3])];
const ws = new WebSocket(url, { perMessageDeflate: true });
let seen = 0;
let header = "";
ws.on("upgrade", (res) => (header = res.headers["sec-websocket-extensions"] || ""));
ws.on("open", () => console.log("extensions " + header + " (ws: " + ws.extensions + ")"));
ws.on("message", (data) => {
  console.log(JSON.stringify(data.toString()));
  if (++seen === count) {
    // Twice: the second message refers back into the first's window (no client_no_context_takeover offered).
    const text = "client says " + "hello ".repeat(1000);
    ws.send(text, () => ws.send(text, () => console.log("sent")));
  }
});
ws.on("error", (e) => console.log("error " + e.message));
process.stdin.on("end", () => ws.close());
process.stdin.resume();
