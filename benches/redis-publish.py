#!/usr/bin/env python3
"""Appends RATE events/s of SIZE bytes to a Redis stream for benches/redis-load.sh, each one's data
`seq=<n> ts=<unix µs> ` padded with `x` (what the load tool counts missing and duplicated events and measures
latency from), until killed.

    python3 benches/redis-publish.py HOST PORT KEY RATE SIZE
"""
import socket
import sys
import time

host, port, key, rate, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


conn = socket.create_connection((host, port))
reader = conn.makefile("rb")
period = 1.0 / rate
next_at = time.monotonic()
seq = 0
while True:
    seq += 1
    data = ("seq=%d ts=%d " % (seq, int(time.time() * 1e6))).ljust(size, "x")
    conn.sendall(command("XADD", key, "MAXLEN", "~", 10000, "*", "data", data))
    reader.readline()  # the entry id
    next_at += period
    time.sleep(max(0.0, next_at - time.monotonic()))
