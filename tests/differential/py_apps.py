"""Third-party Python applications for tests/differential.rs, each answering "what I received" as JSON.

Usage: py_apps.py hypercorn|uvicorn|gunicorn|aiohttp|websockets
Binds 127.0.0.1:0, prints one line `{"port": N}` and serves until killed: the named server runs (by exec, with the
listening socket inherited as an fd) the app of this file made for it. What a request path ends with picks the
endpoint (any prefix works, so pushbridge can route by prefix):

  .../reject      413 without reading the request body (an early final response), Connection: close
  .../hints       103 Early Hints (where the server can send them), then the echo
  .../trailers    a streamed body with a `Trailer: x-checksum` trailer (where the server can send one)
  .../status/NNN  status NNN, body "status NNN" (none for 204 and 304)
  .../bytes/N     N bytes (i % 251)
  .../ws          a WebSocket echo (below)
  anything else   the echo, JSON: {"echo": server, "http_version", "method", "target" (raw path and query),
                  "headers": [[name, value], ...] (as the framework hands them over: order, duplicates, case
                  where it keeps them), "body_sha256", "body_len", "trailers" (null: not visible to the app),
                  "cookies" (the framework's own parse; null: it has none)}
Every answer but the WebSocket carries `X-Resp-Dup: 1`, `X-Resp-Dup: 2`, `Set-Cookie: s1=1; Path=/`, `Set-Cookie: s2=2; Path=/`.

WebSocket echo: the first message is the handshake the app saw, as JSON like the echo (plus "subprotocol"); then
text and binary messages come back as they are, except the text `close:CODE:REASON`, which closes with that code.
"""

import asyncio
import hashlib
import json
import os
import socket
import sys

RESPONSE_HEADERS = [("x-resp-dup", "1"), ("x-resp-dup", "2"), ("set-cookie", "s1=1; Path=/"), ("set-cookie", "s2=2; Path=/")]
REJECT_SIZE = b"too large\n"


def latin1(value):
    return value.decode("latin-1") if isinstance(value, bytes) else value


def endpoint(path):
    """(kind, argument) for a request path."""
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    last = parts[-1] if parts else ""
    if len(parts) >= 2 and parts[-2] in ("status", "bytes") and last.isdigit():
        return parts[-2], int(last)
    if last in ("reject", "hints", "trailers", "ws"):
        return last, None
    return "echo", None


def pattern(n):
    return bytes(i % 251 for i in range(n))


def echo(server, version, method, target, headers, body, trailers=None, cookies=None, **extra):
    out = {
        "echo": server,
        "http_version": version,
        "method": method,
        "target": latin1(target),
        "headers": [[latin1(n), latin1(v)] for n, v in headers],
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_len": len(body),
        "trailers": None if trailers is None else [[latin1(n), latin1(v)] for n, v in trailers],
        "cookies": cookies,
    }
    out.update(extra)
    return out


# ---------------------------------------------------------------------------------------------------- ASGI (hypercorn, uvicorn)


def asgi_target(scope):
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    return target


def make_asgi(server):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await asgi_ws(server, scope, receive, send)
            return
        await asgi_http(server, scope, receive, send)

    return app


async def asgi_body(receive):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


def asgi_headers(extra):
    return [(n.encode(), v.encode()) for n, v in extra + RESPONSE_HEADERS]


async def asgi_http(server, scope, receive, send):
    kind, arg = endpoint(scope["path"])
    extensions = scope.get("extensions") or {}
    if kind == "reject":
        headers = asgi_headers([("content-type", "text/plain"), ("connection", "close")])
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": REJECT_SIZE})
        return
    body = await asgi_body(receive)
    if kind == "status":
        empty = arg in (204, 304)
        await send({"type": "http.response.start", "status": arg, "headers": asgi_headers([("content-type", "text/plain")])})
        await send({"type": "http.response.body", "body": b"" if empty else f"status {arg}\n".encode()})
        return
    if kind == "bytes":
        headers = asgi_headers([("content-type", "application/octet-stream"), ("content-length", str(arg))])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": pattern(arg)})
        return
    if kind == "trailers" and "http.response.trailers" in extensions:
        headers = asgi_headers([("content-type", "text/plain"), ("trailer", "x-checksum")])
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": b"part one\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"part two\n"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
        return
    if kind == "hints" and "http.response.early_hint" in extensions:
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
    out = echo(server, scope["http_version"], scope["method"], asgi_target(scope), scope["headers"], body)
    data = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200, "headers": asgi_headers([("content-type", "application/json")])})
    await send({"type": "http.response.body", "body": data})


async def asgi_ws(server, scope, receive, send):
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    offered = scope.get("subprotocols") or []
    chosen = "chat" if "chat" in offered else None
    accept = {"type": "websocket.accept"}
    if chosen:
        accept["subprotocol"] = chosen
    await send(accept)
    hello = echo(server, scope.get("http_version", "1.1"), "GET", asgi_target(scope), scope["headers"], b"", subprotocol=chosen)
    await send({"type": "websocket.send", "text": json.dumps(hello)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


asgi_hypercorn = make_asgi("hypercorn")
asgi_uvicorn = make_asgi("uvicorn")

# ---------------------------------------------------------------------------------------------------- WSGI (gunicorn + Flask)


def make_flask():
    from flask import Flask, Response, request

    app = Flask("differential")

    def respond(body, status=200, content_type="text/plain", extra=()):
        response = Response(body, status=status, content_type=content_type)
        for name, value in list(extra) + RESPONSE_HEADERS:
            response.headers.add(name, value)
        return response

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def any_path(path):
        environ = request.environ
        kind, arg = endpoint(environ.get("PATH_INFO", "/"))
        if kind == "reject":
            return respond(REJECT_SIZE, 413, extra=[("connection", "close")])
        body = request.get_data(cache=False)
        if kind == "status":
            return respond(b"" if arg in (204, 304) else f"status {arg}\n".encode(), arg)
        if kind == "bytes":
            return respond(pattern(arg), content_type="application/octet-stream")
        # WSGI hands over no header list: the CGI variables, sorted (duplicates arrive joined by the server).
        headers = []
        for key in sorted(environ):
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-").lower(), environ[key]))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and environ[key]:
                headers.append((key.replace("_", "-").lower(), environ[key]))
        version = environ.get("SERVER_PROTOCOL", "").replace("HTTP/", "")
        out = echo("gunicorn", version, request.method, environ.get("RAW_URI", ""), headers, body, cookies=request.cookies.to_dict())
        return respond(json.dumps(out), content_type="application/json")

    return app


# ---------------------------------------------------------------------------------------------------- aiohttp


def make_aiohttp():
    from aiohttp import WSMsgType, web

    def respond(body, status=200, content_type="text/plain", extra=()):
        response = web.Response(body=body, status=status, headers={"content-type": content_type})
        for name, value in list(extra) + RESPONSE_HEADERS:
            response.headers.add(name, value)
        return response

    async def handler(request):
        kind, arg = endpoint(request.path)
        if kind == "ws":
            return await ws(request)
        if kind == "reject":
            return respond(REJECT_SIZE, 413, extra=[("connection", "close")])
        body = await request.read()
        if kind == "status":
            return respond(b"" if arg in (204, 304) else f"status {arg}\n".encode(), arg)
        if kind == "bytes":
            return respond(pattern(arg), content_type="application/octet-stream")
        version = f"{request.version.major}.{request.version.minor}"
        cookies = {k: v for k, v in request.cookies.items()}
        out = echo("aiohttp", version, request.method, request.raw_path, request.raw_headers, body, cookies=cookies)
        return respond(json.dumps(out).encode(), content_type="application/json")

    async def ws(request):
        response = web.WebSocketResponse(protocols=["chat"])
        await response.prepare(request)
        version = f"{request.version.major}.{request.version.minor}"
        hello = echo("aiohttp", version, request.method, request.raw_path, request.raw_headers, b"", subprotocol=response.ws_protocol)
        await response.send_str(json.dumps(hello))
        async for message in response:
            if message.type == WSMsgType.TEXT:
                if message.data.startswith("close:"):
                    _, code, reason = message.data.split(":", 2)
                    await response.close(code=int(code), message=reason.encode())
                    break
                await response.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await response.send_bytes(message.data)
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


# ---------------------------------------------------------------------------------------------------- websockets


async def websockets_main(sock):
    from websockets.asyncio.server import serve

    async def handler(connection):
        request = connection.request
        hello = echo(
            "websockets",
            "1.1",
            "GET",
            request.path,
            list(request.headers.raw_items()),
            b"",
            subprotocol=connection.subprotocol,
        )
        await connection.send(json.dumps(hello))
        async for message in connection:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await connection.close(int(code), reason)
                return
            await connection.send(message)

    # max_size: as pushbridge's websocket.max_message in the suite (1 MiB), so an oversized message gets 1009
    # from the app directly too.
    async with serve(handler, sock=sock, subprotocols=["chat"], max_size=1024 * 1024) as server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------------------- launcher


def main():
    which = sys.argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    here = os.path.dirname(os.path.abspath(__file__))
    bindir = os.path.dirname(sys.executable)
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    quiet = ["--log-level", "warning"]
    if which == "hypercorn":
        argv = [os.path.join(bindir, "hypercorn"), "--bind", f"fd://{fd}", "--root-path", "", *quiet, "py_apps:asgi_hypercorn"]
    elif which == "uvicorn":
        argv = [os.path.join(bindir, "uvicorn"), "--fd", str(fd), "--ws", "websockets-sansio", *quiet, "py_apps:asgi_uvicorn"]
    elif which == "gunicorn":
        argv = [os.path.join(bindir, "gunicorn"), "--bind", f"fd://{fd}", "--workers", "1", *quiet, "py_apps:make_flask()"]
    elif which == "aiohttp":
        from aiohttp import web

        web.run_app(make_aiohttp(), sock=sock, print=None, access_log=None)
        return
    elif which == "websockets":
        asyncio.run(websockets_main(sock))
        return
    else:
        sys.exit(f"unknown server {which}")
    os.chdir(here)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
