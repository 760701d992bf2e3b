#!/usr/bin/env python3
"""Request collapsing under a cold start: N clients (HTTP/1.1, one connection each, spread over
all workers by SO_REUSEPORT) ask for the same uncached chunk at once, through edge, in front of an
origin whose first byte takes --origin-ttfb-ms. Prints the origin requests per slice (should be
1), whether every client got the right bytes, and client TTFB percentiles next to the origin's
own TTFB: a miss's TTFB should be the origin's plus a few milliseconds, not the whole object's.

usage: loadtest/collapse.py [--clients 200] [--origin-ttfb-ms 50] [--rounds 5]"""
import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import free_port, wait_port  # noqa: E402
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from fault_origin import Origin  # noqa: E402  (the same real origin the tests use)



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--origin-ttfb-ms", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--edge-bin", default=os.path.join(ROOT, ".build/release/edge"))
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="edge-collapse-")
    slice_bytes = 262144
    origin = Origin(d + "/origin", slice_bytes)
    port = free_port()
    conf = f"{d}/edge.conf"
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\nworkers = 2\naccess_log = ""\n[token]\nrequired = false\n'
                f'[origin]\nurls = ["{origin.url}"]\n[cache]\ndir = "{d}/cache"\nslice_bytes = {slice_bytes}\n')
    edge = subprocess.Popen([a.edge_bin, "--config", conf], stderr=subprocess.DEVNULL)
    time.sleep(1)
    rows = []
    try:
        for rnd in range(a.rounds):
            path = f"/audio/cold{rnd}/160/000.bin"
            os.makedirs(os.path.dirname(d + "/origin" + path), exist_ok=True)
            want = random.Random(rnd).randbytes(a.size)
            open(d + "/origin" + path, "wb").write(want)
            origin.faults[path] = f"slow:{a.origin_ttfb_ms}"
            ttfb, ok = run_clients(port, path, a.clients, want)
            hit_ttfb, hit_ok = run_clients(port, path, a.clients, want)   # the same, now all hits: the reference
            ok = ok + hit_ok
            hit_ttfb.sort()
            reqs = origin.requests_for(path)
            slices = (a.size + slice_bytes - 1) // slice_bytes
            ttfb.sort()
            q = lambda p: ttfb[min(len(ttfb) - 1, int(p * len(ttfb)))]
            hq = lambda p: hit_ttfb[min(len(hit_ttfb) - 1, int(p * len(hit_ttfb)))]
            rows.append((len(reqs), slices, all(ok) and len(ok) == 2 * a.clients, q(0.5), q(0.99), hq(0.99)))
            print(f"round {rnd + 1}: origin requests {len(reqs)} for {slices} slice(s), all clients right bytes: {all(ok) and len(ok) == 2 * a.clients}; "
                  f"miss TTFB p50 {q(0.5):.1f} p99 {q(0.99):.1f} ms (origin TTFB {a.origin_ttfb_ms} ms); same load all hits: p99 {hq(0.99):.1f} ms",
                  flush=True)
    finally:
        edge.send_signal(signal.SIGTERM)
        edge.wait(timeout=30)
        origin.close()
        shutil.rmtree(d, ignore_errors=True)
    p50 = statistics.median(r[3] for r in rows)
    p99 = statistics.median(r[4] for r in rows)
    hit99 = statistics.median(r[5] for r in rows)
    print(f"\nmedian over {a.rounds} rounds: origin requests per slice {statistics.median(r[0] / r[1] for r in rows):.0f}, "
          f"all bytes right: {all(r[2] for r in rows)}; miss TTFB p50 {p50:.1f} ms p99 {p99:.1f} ms with origin TTFB {a.origin_ttfb_ms} ms "
          f"-> p99 minus origin TTFB {p99 - a.origin_ttfb_ms:.1f} ms (the same {a.clients} clients on hits: p99 {hit99:.1f} ms)")


def run_clients(port, path, n, want):
    """n connections opened first, then every request sent in one tight loop; one thread, a
    selector, first-byte times taken as each socket turns readable."""
    import selectors
    sel = selectors.DefaultSelector()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    time.sleep(0.2)
    start, first, data = {}, {}, {}
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        start[s] = time.perf_counter()
        s.sendall(req)
        data[s] = b""
    open_count = n
    while open_count:
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            try:
                b = s.recv(1 << 17)
            except BlockingIOError:
                continue
            if s not in first:
                first[s] = time.perf_counter()
            if b:
                data[s] += b
            else:
                sel.unregister(s)
                s.close()
                open_count -= 1
    ttfb = sorted((first[s] - start[s]) * 1000 for s in socks)
    return ttfb, [data[s].partition(b"\r\n\r\n")[2] == want for s in socks]


if __name__ == "__main__":
    main()
