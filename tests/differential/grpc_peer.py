"""gRPC peers for tests/differential.rs (grpcio, generic handlers, raw bytes; no code generation).

  grpc_peer.py server              serves test.Diff on 127.0.0.1:0 (plaintext HTTP/2, pushbridge's `protocol: h2c`),
                                   prints one line {"port": N}, serves until killed
  grpc_peer.py client TARGET CA    calls every method once (CA: a PEM file for TLS, "-" for plaintext h2c) and
                                   prints one JSON object: per call the replies, status code, details and the
                                   trailing metadata, which tests/differential.rs compares directly vs through
                                   pushbridge.

Methods: Echo (unary; trailing x-trail: t1), Meta (unary; replies with the request metadata the server saw, as
JSON), Fail (unary; FAILED_PRECONDITION with details and trailing metadata), Count (server streaming: "1".."N"),
Sum (client streaming), Chat (bidirectional: each message back upper-cased).
"""

import json
import sys
from concurrent import futures

import grpc

RAW = lambda b: b  # noqa: E731  raw bytes both ways


def echo(request, context):
    context.set_trailing_metadata([("x-trail", "t1")])
    return request


def meta(request, context):
    return json.dumps([[k, v if isinstance(v, str) else v.hex()] for k, v in context.invocation_metadata()]).encode()


def fail(request, context):
    context.set_trailing_metadata([("x-reason", "nope")])
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused on purpose")


def count(request, context):
    for i in range(1, int(request.decode()) + 1):
        yield str(i).encode()


def total(requests, context):
    return str(sum(int(r.decode()) for r in requests)).encode()


def chat(requests, context):
    for r in requests:
        yield r.upper()


def server():
    methods = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, RAW, RAW),
        "Meta": grpc.unary_unary_rpc_method_handler(meta, RAW, RAW),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, RAW, RAW),
        "Count": grpc.unary_stream_rpc_method_handler(count, RAW, RAW),
        "Sum": grpc.stream_unary_rpc_method_handler(total, RAW, RAW),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, RAW, RAW),
    }
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Diff", methods),))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(json.dumps({"port": port}), flush=True)
    srv.wait_for_termination()


def outcome(call_fn):
    try:
        replies, call = call_fn()
        return {"replies": replies, "code": call.code().name, "details": call.details() or "",
                "trailing": sorted([k, v] for k, v in call.trailing_metadata() or [])}
    except grpc.RpcError as error:
        return {"replies": None, "code": error.code().name, "details": error.details() or "",
                "trailing": sorted([k, v] for k, v in error.trailing_metadata() or [])}


def client(target, ca):
    if ca == "-":
        channel = grpc.insecure_channel(target)
    else:
        with open(ca, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=f.read()))
    md = [("x-md", "one"), ("x-md", "two"), ("x-bin-bin", b"\x00\x01")]
    out = {}
    with channel:
        grpc.channel_ready_future(channel).result(timeout=10)

        def unary(name, payload):
            fn = channel.unary_unary(f"/test.Diff/{name}", RAW, RAW)
            reply, call = fn.with_call(payload, metadata=md, timeout=10)
            return [reply.decode()], call

        def stream_out(name, payload):
            call = channel.unary_stream(f"/test.Diff/{name}", RAW, RAW)(payload, metadata=md, timeout=10)
            return [r.decode() for r in call], call

        def stream_in(name, payloads):
            fn = channel.stream_unary(f"/test.Diff/{name}", RAW, RAW)
            reply, call = fn.with_call(iter(payloads), metadata=md, timeout=10)
            return [reply.decode()], call

        def bidi(name, payloads):
            call = channel.stream_stream(f"/test.Diff/{name}", RAW, RAW)(iter(payloads), metadata=md, timeout=10)
            return [r.decode() for r in call], call

        out["echo"] = outcome(lambda: unary("Echo", b"hi" * 40000))
        out["meta"] = outcome(lambda: unary("Meta", b""))
        out["fail"] = outcome(lambda: unary("Fail", b"x"))
        out["count"] = outcome(lambda: stream_out("Count", b"5"))
        out["sum"] = outcome(lambda: stream_in("Sum", [b"1", b"2", b"39"]))
        out["chat"] = outcome(lambda: bidi("Chat", [b"a", b"bc", b"def"]))
    # The echo of 80 000 bytes is compared by length and content, not printed in full.
    echo_reply = out["echo"]["replies"]
    if echo_reply:
        out["echo"]["replies"] = [len(echo_reply[0]), echo_reply[0] == "hi" * 40000]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        client(sys.argv[2], sys.argv[3])
