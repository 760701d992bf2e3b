#!/usr/bin/env python3
"""Heap allocations and reference-count increments per request, exactly: the edge's calls to libc
malloc and to the Swift runtime's swift_retain (perf uprobes, counted by the kernel for the edge's
process only) during an h2load run of each scenario of bench.py (h2c or TLS),
divided by the responses. Unlike req/s or CPU time it does not move with a noisy machine, so a
change on the data path can be judged with it. --max N: exit 1 when a figure exceeds N (the stored
threshold in CI-like use); `+log` variants write the access log, `+geo` ones check regions.

usage: loadtest/allocs.py [--servers edge,edge-cache,edge-cache+log] [--scenarios hit-4k-h2c,chunk-h2c,hit-64k-tls]
                          [--requests 20000] [--edge-bin PATH] [--max N]
Needs: root (uprobes), perf (linux-perf), nginx, h2load; a release build of edge and edgectl."""
import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.dirname(HERE)
LIBC_CANDIDATES = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]


def add_probe(event, library, symbol):
    """A uprobe (kept once made; `perf probe -d EVENT` removes it)."""
    listed = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    if event in listed.split():
        return
    r = subprocess.run(["perf", "probe", "-x", library, "-a", symbol], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"allocs.py: cannot add the {symbol} uprobe (root and linux-perf needed): {r.stderr.strip()}")


def swift_core(edge_bin):
    """The Swift runtime the edge binary loads (its reference counting lives there)."""
    out = subprocess.run(["ldd", edge_bin], capture_output=True, text=True).stdout
    m = re.search(r"libswiftCore\.so => (\S+)", out)
    if not m:
        raise SystemExit(f"allocs.py: {edge_bin} does not load libswiftCore.so")
    return m.group(1)


def ensure_probes(edge_bin):
    libc = next((p for p in LIBC_CANDIDATES if os.path.exists(p)), None)
    if not libc:
        raise SystemExit("allocs.py: no libc.so.6 found for the malloc probe")
    add_probe("probe_libc:malloc", libc, "malloc")
    add_probe("probe_libswiftCore:swift_retain", swift_core(edge_bin), "swift_retain")


EVENTS = ["probe_libc:malloc", "probe_libswiftCore:swift_retain"]


def count(srv, urls, n, extra):
    """mallocs and retains in the edge's process during one h2load run, and the responses."""
    stat = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "-p", str(srv.proc.pid)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)   # perf attached
    out = subprocess.run(["h2load", "-i", urls, "-n", str(n), "-c", "32", "-m", "8", "-t", "1"] + extra,
                         capture_output=True, text=True, timeout=600).stdout
    time.sleep(0.2)
    stat.send_signal(2)
    err = stat.communicate(timeout=30)[1]
    counts = []
    for e in EVENTS:
        m = re.search(rf"^(\d+),,{re.escape(e)}", err, re.M)
        if not m:
            raise SystemExit(f"allocs.py: perf printed no count for {e}: {err.strip()[-300:]}")
        counts.append(int(m.group(1)))
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    return counts[0], counts[1], ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="edge,edge-cache,edge-cache+log")
    ap.add_argument("--scenarios", default="hit-4k-h2c,chunk-h2c")
    ap.add_argument("--requests", type=int, default=20000)
    bench.add_build_arguments(ap)
    ap.add_argument("--max", type=float, default=None, help="fail (exit 1) when a scenario allocates more per request")
    a = ap.parse_args()
    ensure_probes(a.edge_bin)
    content, paths = bench.prepare(a.run, 50, a.requests)
    scenarios = [s for s in bench.SCENARIOS if s[0] in a.scenarios.split(",")]
    classes = {"edge": bench.Edge, "edge-cache": bench.EdgeCache}
    over = []
    for name in a.servers.split(","):
        base, _, variant = name.partition("+")
        if base not in classes or variant not in ("", "log", "geo"):
            raise SystemExit(f"--servers: {name}? edge, edge-cache, with +log or +geo")
        for port in (bench.H2C, bench.TLS, bench.ORIGIN):
            bench.require_free(port)
        srv = classes[base](name, a.run, paths, access_log=variant == "log", geo=variant == "geo")
        srv.start(content, a.edge_bin, a.edgectl_bin)
        try:
            bench.warm(srv, a.run)   # as bench.py: every object cached and promoted before counting
            bench.settle(srv)
            for scenario, kind, extra in scenarios:
                mallocs, retains, ok = count(srv, srv.urls(kind), a.requests, extra)
                per = mallocs / max(1, ok)
                print(f"{scenario:12} {name:15} {per:7.2f} mallocs, {retains / max(1, ok):7.2f} retains per request "
                      f"({mallocs} and {retains} for {ok} responses)", flush=True)
                if a.max is not None and per > a.max:
                    over.append(f"{scenario} {name}: {per:.2f} > {a.max}")
        finally:
            srv.stop()
    if over:
        print("over --max: " + "; ".join(over))
        sys.exit(1)


if __name__ == "__main__":
    main()
