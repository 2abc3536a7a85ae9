# A Python `websockets` application for `ws.subprotocols_upstream: pass` (tests/ws_subprotocols_upstream.rs). It
# chooses by path: /app/pick selects the last offered name, /app/none selects none, /app/rogue selects "rogue.v9"
# (never offered), /app/refuse answers 403, /app/flip selects the first offered name, closes after its message, and
# selects the second one on every later handshake. Prints "port N", then per handshake "offer <header or ->"; each
# connection gets one message "hello <selected or ->" and stays open.
import asyncio

from websockets.asyncio.server import serve
from websockets.http11 import Response
from websockets.datastructures import Headers


FLIPS = 0


def select(connection, offered):
    global FLIPS
    path = connection.request.path
    if path.startswith("/app/flip"):
        FLIPS += 1
        return offered[0] if FLIPS == 1 else offered[1]
    if path.startswith("/app/pick"):
        return offered[-1] if offered else None
    if path.startswith("/app/rogue"):
        return "rogue.v9"
    return None


def process_request(connection, request):
    print("offer " + request.headers.get("Sec-WebSocket-Protocol", "-"), flush=True)
    if request.path.startswith("/app/refuse"):
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
    return None


async def handler(ws):
    await ws.send("hello " + (ws.subprotocol or "-"))
    if ws.request.path.startswith("/app/flip"):
        await ws.close()
    await ws.wait_closed()


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select,
        process_request=process_request,
        compression=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
