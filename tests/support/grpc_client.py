"""A gRPC client for pass-through tests (Python grpcio): calls test.Echo through pushbridge over TLS (ALPN h2),
trusting the CA file given, and prints what came back as one JSON object for the Rust test to check.

Usage: grpc_client.py HOST:PORT CA_FILE   (CA_FILE "-": plaintext h2c, for a listener without TLS)
"""

import json
import sys

import grpc

IDENTITY = lambda b: b  # noqa: E731


def main():
    target, ca_file = sys.argv[1], sys.argv[2]
    if ca_file == "-":
        channel = grpc.insecure_channel(target)
    else:
        with open(ca_file, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=f.read()))
    out = {}
    with channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        echo = channel.unary_unary("/test.Echo/Echo", request_serializer=IDENTITY, response_deserializer=IDENTITY)
        reply, call = echo.with_call(b"hi", timeout=10)
        out["echo"] = {
            "reply": reply.decode(),
            "code": call.code().name,
            "trailing": dict(call.trailing_metadata()),
        }
        fail = channel.unary_unary("/test.Echo/Fail", request_serializer=IDENTITY, response_deserializer=IDENTITY)
        try:
            fail(b"x", timeout=10)
            out["fail"] = {"code": "OK"}
        except grpc.RpcError as error:
            out["fail"] = {
                "code": error.code().name,
                "details": error.details(),
                "trailing": dict(error.trailing_metadata()),
            }
        count = channel.unary_stream("/test.Echo/Count", request_serializer=IDENTITY, response_deserializer=IDENTITY)
        stream = count(b"3", timeout=10)
        out["count"] = {"items": [item.decode() for item in stream], "code": stream.code().name}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
