# The echo application of benches/autobahn.sh: pushbridge forwards each client WebSocket message as a POST
# (`client_messages.forward`); this publishes it back as an event on the same route through the publish listener
# (`{"data": <text>}`), so a client on a `ws.format: data` route gets its own text message back byte for byte.
# Binary messages cannot come back as binary (pushbridge events are text frames): answered 415, not published.
# Usage: echo_app.py PORT PUBLISH_URL
import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PUBLISH = urlsplit(sys.argv[2])
LOCK = threading.Lock()
# One kept-alive connection to the publish listener (a connection per message would pile up TIME_WAIT sockets).
CONN = http.client.HTTPConnection(PUBLISH.hostname, PUBLISH.port)


def publish(text):
    body = json.dumps({"data": text}).encode()
    for attempt in range(2):
        try:
            CONN.request("POST", PUBLISH.path, body, {"Content-Type": "application/json"})
            response = CONN.getresponse()
            response.read()
            return response.status
        except (http.client.HTTPException, OSError):
            CONN.close()
            if attempt:
                raise


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 200
        if self.headers.get("Content-Type", "").startswith("text/plain"):
            # pushbridge forwards one message at a time per client; the lock guards the shared connection.
            with LOCK:
                status = publish(body.decode("utf-8"))
        else:
            status = 415
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
