#!/usr/bin/env python3
"""The GRIP backend of benches/pushpin.conf.in: answers Pushpin's WebSocket-over-HTTP requests
(https://pushpin.org/docs/protocols/websocket-over-http/) on 127.0.0.1:28281. An OPEN is accepted with the GRIP
extension and a control message subscribing the connection to the channel "bench"; every other request (pings,
the client's messages, CLOSE) is answered with nothing to send. Loopback only; stops on SIGTERM."""
import http.server
import json
import socketserver

SUBSCRIBE = "c:" + json.dumps({"type": "subscribe", "channel": "bench"})


def event(kind, content=None):
    if content is None:
        return f"{kind}\r\n".encode()
    data = content.encode()
    return f"{kind} {len(data):x}\r\n".encode() + data + b"\r\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out = event("OPEN") + event("TEXT", SUBSCRIBE) if body.startswith(b"OPEN") else b""
        self.send_response(200)
        self.send_header("content-type", "application/websocket-events")
        self.send_header("sec-websocket-extensions", 'grip; message-prefix=""')
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    Server(("127.0.0.1", 28281), Handler).serve_forever()
