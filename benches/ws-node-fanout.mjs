// A per-connection permessage-deflate peer for `SCENARIOS=deflate bash benches/matrix.sh`: a Node `ws` 8 server on
// 127.0.0.1:28380 fed by the load tool's SSE source on 127.0.0.1:28081, sending each event's data to every client.
// With `perMessageDeflate` on (ws's defaults: context takeover, a zlib deflate stream per connection, threshold
// 128 B), each send to a client that negotiated the extension is compressed for that connection, the way Pushpin
// (Condure) and Centrifugo compress. DEFLATE=0 turns the extension off. Needs tests/differential/node_modules
// (npm ci there).
import { createRequire } from "node:module";
import http from "node:http";

const require = createRequire(new URL("../tests/differential/", import.meta.url));
const { WebSocketServer } = require("ws");
const deflate = process.env.DEFLATE !== "0";
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 28380,
  perMessageDeflate: deflate ? { threshold: 128 } : false,
});

function follow() {
  http
    .get("http://127.0.0.1:28081/internal/events/bench", (res) => {
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        buf += chunk;
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const data = block
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (!data) continue;
          for (const ws of wss.clients) if (ws.readyState === 1) ws.send(data);
        }
      });
      res.on("end", () => setTimeout(follow, 100));
    })
    .on("error", () => setTimeout(follow, 100));
}
follow();
