#!/usr/bin/env python3
"""A burst of misses on a cold cache: edge-cache (bench.py's, in front of its nginx origin), then
`loadtest replay` over the distinct URLs, many in flight at once (32 connections x 32 streams),
for --seconds. Prints how many slices the requested objects have and how many reached the disk
tier, and the error log's lines about slices kept in RAM only: every slice of a burst should be
written (the queue behind disk_writes_in_flight_max), none lost to the RAM tier's evictions.

usage: loadtest/cold_burst.py [--edge-bin PATH] [--loadtest-bin PATH] [--seconds 0.3]
Needs: nginx, h2load, openssl; release builds of edge, edgectl and loadtest."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    bench.add_build_arguments(ap)
    ap.add_argument("--loadtest-bin", default=os.path.join(ROOT, ".build/release/loadtest"))
    ap.add_argument("--seconds", type=float, default=0.3)
    a = ap.parse_args()
    for port in (bench.H2C, bench.TLS, bench.ORIGIN):
        bench.require_free(port)
    content, paths = bench.prepare(a.run, 50, 20000)
    srv = bench.EdgeCache("edge-cache", a.run, paths, binary=a.edge_bin)
    srv.start(content, a.edge_bin, a.edgectl_bin)   # starts with an empty cache directory
    try:
        distinct = sorted(set(open(srv.urls("h2c")).read().split()))
        urls = os.path.join(a.run, "burst-urls.txt")
        with open(urls, "w") as f:
            f.writelines(u + "\n" for u in distinct)
        out = os.path.join(a.run, "burst.json")
        bench.subprocess.run([a.loadtest_bin, "replay", "--urls", urls, "--connections", "32", "--streams", "32",
                              "--rate", "0", "--duration", str(a.seconds), "--quiet", "--json", out],
                             check=True, capture_output=True)
        r = json.load(open(out))
        asked = min(r["requests"], len(distinct))   # the replay goes through the list in order
        slice_bytes = 262144
        expected = sum((os.path.getsize(content + u.split(f":{bench.H2C}", 1)[1].split("?")[0]) + slice_bytes - 1)
                       // slice_bytes for u in distinct[:asked])
        time.sleep(5)   # the writes finish
        cache = os.path.join(a.run, "edge-cache")
        written = sum(1 for _, _, fs in os.walk(cache) for f in fs if f.endswith(".slice"))
        dropped = [l for l in open(os.path.join(a.run, "edge.err")) if "kept in RAM only" in l]
        print(f"{a.edge_bin}: {asked} objects missed at once ({r['cache']['miss']} misses), {expected} slices; "
              f"{written} on disk ({written / max(1, expected):.0%}); {len(dropped)} error-log lines of slices kept in RAM only")
        for l in dropped[:4]:
            print("  " + l.strip()[-120:])
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
