"""A gRPC application for pass-through tests (Python grpcio, generic handlers, raw bytes; no codegen).

Serves `test.Echo` on 127.0.0.1 (plaintext HTTP/2, what pushbridge reaches with `protocol: h2c`):
  Echo  (unary)         replies b"echo:" + request, trailing metadata x-trail: t1
  Fail  (unary)         fails FAILED_PRECONDITION "refused on purpose", trailing metadata x-reason: nope
  Count (unary-stream)  request b"N" streams b"1" .. b"N"
Prints "PORT <n>" once listening; exits when stdin closes (or on Ctrl-C).

Usage: grpc_app.py [PORT]   (default: any free port)
"""

import sys
from concurrent import futures

import grpc

IDENTITY = lambda b: b  # noqa: E731  raw bytes both ways


def echo(request, context):
    context.set_trailing_metadata([("x-trail", "t1")])
    return b"echo:" + request


def fail(request, context):
    context.set_trailing_metadata([("x-reason", "nope")])
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    context.set_details("refused on purpose")
    return b""


def count(request, context):
    for i in range(1, int(request.decode()) + 1):
        yield str(i).encode()


def main():
    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=IDENTITY, response_serializer=IDENTITY
            ),
            "Fail": grpc.unary_unary_rpc_method_handler(
                fail, request_deserializer=IDENTITY, response_serializer=IDENTITY
            ),
            "Count": grpc.unary_stream_rpc_method_handler(
                count, request_deserializer=IDENTITY, response_serializer=IDENTITY
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{sys.argv[1] if len(sys.argv) > 1 else 0}")
    server.start()
    print(f"PORT {port}", flush=True)
    try:
        if sys.stdin.isatty():
            server.wait_for_termination()
        else:
            sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.stop(0)


if __name__ == "__main__":
    main()
