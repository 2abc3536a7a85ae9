"""Markdown tables of benches/matrix.sh: one per scenario, each cell the median over the runs of its group.

    python3 benches/matrix-table.py target/bench-matrix.jsonl [INVOCATION]

Without INVOCATION, every line of the file counts (for tables of several invocations' runs).
"""

import json
import statistics
import sys
from collections import defaultdict

SERVER_ORDER = {"pushbridge": 0, "nchan": 1, "node": 2, "pushpin": 3}
KIND_ORDER = {"sse": 0, "long-poll": 1, "ws": 2, "tls": 3, "h2": 4, "ws-off": 5, "ws-deflate": 6}
KIND_NAMES = {"sse": "SSE", "long-poll": "held long-poll", "ws": "WebSocket", "tls": "SSE over TLS (h1)",
              "h2": "SSE over h2c"}


def load(path, invocation):
    groups = defaultdict(list)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if invocation and r.get("invocation") != invocation:
                continue
            groups[(r["scenario"], r["server"], r["kind"], r["clients"])].append(r)
    return groups


def med(runs, field):
    values = [v for v in (field(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}".replace(",", " ")


def rows(groups, scenario):
    keys = [k for k in groups if k[0] == scenario]
    keys.sort(key=lambda k: (KIND_ORDER.get(k[2], 9), k[3], SERVER_ORDER.get(k[1], 9)))
    return [(k[1], k[2], k[3], groups[k]) for k in keys]


def table(groups, scenario, title, columns):
    """One markdown table: a row per group of `scenario`, a cell per (header, value of the group's runs) column."""
    rs = rows(groups, scenario)
    if not rs:
        return
    print(f"\n### {title}\n")
    print("| " + " | ".join(header for header, _ in columns) + " |")
    print("|" + " --- |" * len(columns))
    for server, kind, clients, runs in rs:
        group = {"server": server, "kind": KIND_NAMES.get(kind, kind), "clients": clients}
        print("| " + " | ".join(str(cell(group, runs)) for _, cell in columns) + " |")


def median_of(field, digits=1):
    """A column cell: the median of `field` (a function of one run) over the group's runs."""
    return lambda group, runs: fmt(med(runs, field), digits)


IDLE_COLUMNS = [
    ("server", lambda g, runs: g["server"]),
    ("kind", lambda g, runs: g["kind"]),
    ("clients", lambda g, runs: g["clients"]),
    ("TCP connections", median_of(lambda r: r['connections'], 0)),
    ("runs", lambda g, runs: len(runs)),
    ("connected", median_of(lambda r: r['connected'], 0)),
    ("KiB per client", median_of(lambda r: r['kib_per_connection'])),
    ("KiB per TCP connection", median_of(lambda r: r['kib_per_tcp_connection'])),
    ("server RSS MiB (connected)", median_of(lambda r: (r['target_rss_kib_connected'] or 0) / 1024)),
]

LOAD_COLUMNS = [
    ("server", lambda g, runs: g["server"]),
    ("transport", lambda g, runs: g["kind"]),
    ("subscribers", lambda g, runs: g["clients"]),
    ("runs", lambda g, runs: len(runs)),
    ("published/s", median_of(lambda r: r['published_per_second'])),
    ("deliveries/s", median_of(lambda r: r['events_per_second'], 0)),
    ("p50 ms", median_of(lambda r: r['latency_ms']['p50'], 2)),
    ("p99 ms", median_of(lambda r: r['latency_ms']['p99'], 2)),
    ("server CPU µs/delivery", median_of(lambda r: r['target_cpu_us_per_event'], 2)),
    ("server CPU %", median_of(lambda r: r['target_cpu_percent'])),
    ("missing", median_of(lambda r: r['missing'], 0)),
    ("duplicated", median_of(lambda r: r['duplicated'], 0)),
    ("errors", median_of(lambda r: r['errors'], 0)),
]

# Loss is shown as the worst run, not the median: every run must have none.
TARGET_COLUMNS = [c for c in LOAD_COLUMNS if c[0] not in ("missing", "duplicated")] + [
    ("missing (max)", lambda g, runs: max(r['missing'] for r in runs)),
    ("duplicated (max)", lambda g, runs: max(r['duplicated'] for r in runs)),
]

def ratio(r):
    wire, read = r.get('ws_wire_bytes_per_message'), r.get('ws_message_bytes_per_message')
    return read / wire if wire and read else None


DEFLATE_COLUMNS = [
    ("server", lambda g, runs: g["server"]),
    ("clients offer", lambda g, runs: "permessage-deflate" if g["kind"] == "ws-deflate" else "nothing"),
    ("subscribers", lambda g, runs: g["clients"]),
    ("runs", lambda g, runs: len(runs)),
    ("clients with deflate", median_of(lambda r: r.get('ws_deflate_clients'), 0)),
    ("published/s", median_of(lambda r: r['published_per_second'])),
    ("deliveries/s", median_of(lambda r: r['events_per_second'], 0)),
    ("p50 ms", median_of(lambda r: r['latency_ms']['p50'], 2)),
    ("p99 ms", median_of(lambda r: r['latency_ms']['p99'], 2)),
    ("server CPU µs/delivery", median_of(lambda r: r['target_cpu_us_per_event'], 2)),
    ("server CPU %", median_of(lambda r: r['target_cpu_percent'])),
    ("payload B/message (wire)", median_of(lambda r: r.get('ws_wire_bytes_per_message'))),
    ("B/message (read)", median_of(lambda r: r.get('ws_message_bytes_per_message'))),
    ("ratio", median_of(ratio, 2)),
    ("KiB/conn", median_of(lambda r: r['kib_per_connection'])),
    ("missing (max)", lambda g, runs: max(r['missing'] for r in runs)),
    ("duplicated (max)", lambda g, runs: max(r['duplicated'] for r in runs)),
]


def main():
    path = sys.argv[1]
    invocation = sys.argv[2] if len(sys.argv) > 2 else None
    groups = load(path, invocation)
    n = len({r['invocation'] for runs in groups.values() for r in runs if 'invocation' in r})
    print(f"\nmedians per group ({sum(len(v) for v in groups.values())} runs, {n} invocation(s), {path})")
    table(groups, "idle", "a. idle connections: RSS per connection", IDLE_COLUMNS)
    table(groups, "cpu", "b. CPU per delivery", LOAD_COLUMNS)
    table(groups, "overload", "c. overload curve (SSE)", LOAD_COLUMNS)
    table(groups, "scale", "d. scale: idle SSE connections up to the fd limit", IDLE_COLUMNS)
    table(groups, "target", "e. issue 17 targets (missing and duplicated: the most of any run)", TARGET_COLUMNS)
    table(groups, "deflate", "f. WebSocket permessage-deflate (issue 20)", DEFLATE_COLUMNS)


if __name__ == "__main__":
    main()
