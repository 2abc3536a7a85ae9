"""A Python `websockets` client offering permessage-deflate, for tests/ws_compression.rs.

Usage: ws_deflate_client.py URL COUNT [WINDOW_BITS]. Prints the negotiated extension header, then COUNT messages
(one JSON string a line), sends a large compressed text message, prints `sent`, and closes when stdin ends.
WINDOW_BITS: offer server_max_window_bits and client_max_window_bits of that size (otherwise websockets' default
offer, `permessage-deflate; client_max_window_bits`).
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


async def main():
    url, count = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:
        bits = int(sys.argv[3])
        extensions = [ClientPerMessageDeflateFactory(server_max_window_bits=bits, client_max_window_bits=bits)]
        options = {"extensions": extensions, "compression": None}
    else:
        options = {"compression": "deflate"}
    async with connect(url, max_size=None, **options) as ws:
        print("extensions", ws.response.headers.get("Sec-WebSocket-Extensions", ""), flush=True)
        for _ in range(count):
            print(json.dumps(await ws.recv()), flush=True)
        await ws.send("client says " + "hello " * 1000)
        print("sent", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main())
