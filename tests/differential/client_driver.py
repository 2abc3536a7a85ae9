"""Client driver for tests/differential.rs: runs httpx and Python `websockets` clients on command. One JSON command per
line on stdin, one JSON answer per line on stdout (the first line out is {"ready": true}); EOF ends it.

  {"op": "httpx", "url", "method", "headers": [[n, v]...], "body_len": N, "http2": bool, "ca": PEM path or null}
      http2 over http:// is prior knowledge (h2c); over https:// ALPN. Answer: {"status", "http_version",
      "headers": [[n, v]...] (as received, in order), "body_b64"} or {"error"}.
  {"op": "ws", "url", "headers": [[n, v]...], "subprotocols": [...], "steps": [...]}
      steps: {"send": text} | {"send_len": N} (N × "x") | {"send_hex": hex} (binary) | {"recv": true} | {"close": [code, reason]}
      | {"wait_close": true}. Answer: {"status", "headers", "subprotocol", "messages": [{"text"}|{"hex"}],
      "close": {"code", "reason"} (the close frame received; null: none) or {"error"}.
A request body of body_len bytes is (i * 7) % 256.
"""

import asyncio
import base64
import json
import ssl
import sys


def body_bytes(n):
    return bytes((i * 7) % 256 for i in range(n))


def httpx_request(cmd):
    import httpx

    verify = True
    if cmd.get("ca"):
        verify = ssl.create_default_context(cafile=cmd["ca"])
    http2 = bool(cmd.get("http2"))
    with httpx.Client(http1=not http2 or cmd["url"].startswith("https:"), http2=http2, verify=verify, timeout=30) as client:
        body = body_bytes(cmd.get("body_len", 0)) if cmd.get("body_len") else None
        response = client.request(cmd.get("method", "GET"), cmd["url"], headers=cmd.get("headers", []), content=body)
        return {
            "status": response.status_code,
            "http_version": response.http_version,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in response.headers.raw],
            "body_b64": base64.b64encode(response.content).decode(),
        }


async def ws_session(cmd):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    out = {"messages": [], "close": None}
    async with connect(
        cmd["url"],
        additional_headers=[tuple(h) for h in cmd.get("headers", [])],
        subprotocols=cmd.get("subprotocols") or None,
        max_size=None,
        open_timeout=10,
        close_timeout=5,
    ) as ws:
        out["status"] = ws.response.status_code
        out["headers"] = [[n, v] for n, v in ws.response.headers.raw_items()]
        out["subprotocol"] = ws.subprotocol
        try:
            for step in cmd.get("steps", []):
                if "send" in step:
                    await ws.send(step["send"])
                elif "send_len" in step:
                    await ws.send("x" * step["send_len"])
                elif "send_hex" in step:
                    await ws.send(bytes.fromhex(step["send_hex"]))
                elif "recv" in step:
                    message = await asyncio.wait_for(ws.recv(), 10)
                    out["messages"].append({"hex": message.hex()} if isinstance(message, bytes) else {"text": message})
                elif "close" in step:
                    await ws.close(step["close"][0], step["close"][1])
                elif "wait_close" in step:
                    await asyncio.wait_for(ws.wait_closed(), 10)
        except ConnectionClosed:
            pass
        except (OSError, asyncio.TimeoutError) as error:
            out["error"] = f"{type(error).__name__}: {error}"
    await asyncio.wait_for(ws.wait_closed(), 10)
    received = ws.protocol.close_rcvd
    out["close"] = None if received is None else {"code": received.code, "reason": received.reason}
    return out


def handle(cmd):
    try:
        if cmd["op"] == "httpx":
            return httpx_request(cmd)
        if cmd["op"] == "ws":
            return asyncio.run(ws_session(cmd))
        return {"error": f"unknown op {cmd['op']}"}
    except Exception as error:  # noqa: BLE001  every failure is an observation to compare
        return {"error": f"{type(error).__name__}: {error}"}


def main():
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
