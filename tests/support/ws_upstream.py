# A Python `websockets` push server as a pushbridge `ws` upstream (tests/upstream_ws.rs). Prints "port N", then
# per connection "connect since=S protocol=P"; sends the three events after `?since=` and closes, until seq 9.
import asyncio
import json
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import serve

LAST = 9


async def handler(ws):
    query = parse_qs(urlparse(ws.request.path).query)
    since = int(query.get("since", ["0"])[0])
    print(f"connect since={since} protocol={ws.subprotocol}", flush=True)
    for seq in range(since + 1, min(since + 3, LAST) + 1):
        await ws.send(json.dumps({"seq": seq, "type": "py", "payload": {"seq": seq}}))
    if since + 3 >= LAST:
        await ws.wait_closed()
    else:
        await ws.close()


async def main():
    async with serve(handler, "127.0.0.1", 0, subprotocols=["v1.feed"]) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
