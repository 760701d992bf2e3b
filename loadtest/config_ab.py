#!/usr/bin/env python3
"""The edge under bench.py's load with different configuration settings, interleaved round by
round so every variant shares the machine's noise: for tuning limits such as read_chunk_bytes and
output_buffer_bytes_max. Each variant is TOML appended to the server's bench configuration
(loadtest/edge-bench.conf for the directory edge, loadtest/edge-cache-bench.conf for edge-cache;
'|' stands for a newline); per round each variant gets a fresh edge (edge-cache: a fresh cache and
origin), a warm-up, and one h2load run of the scenario. Prints per round and the medians of
server CPU per request (bench.py's method), the edge's own CPU per request, req/s and p99.

usage: loadtest/config_ab.py --variant '[limits]|read_chunk_bytes = 65536'
                             --variant '[limits]|output_buffer_bytes_max = 32768|read_chunk_bytes = 16384'
                             [--server edge|edge-cache] [--scenario chunk-h2c] [--rounds 3] [--requests 20000]
Needs: h2load (edge-cache: nginx, the origin); a release build of edge and edgectl."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="TOML appended to edge-bench.conf; | is a newline")
    ap.add_argument("--scenario", default="chunk-h2c", choices=[s[0] for s in bench.SCENARIOS])
    ap.add_argument("--server", default="edge", choices=["edge", "edge-cache"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000)
    bench.add_build_arguments(ap)
    a = ap.parse_args()
    content, paths = bench.prepare(a.run, 50, a.requests)
    kind, extra = {s[0]: (s[1], s[2]) for s in bench.SCENARIOS}[a.scenario]
    template = open(os.path.join(HERE, f"{a.server}-bench.conf")).read()
    results = {v: [] for v in a.variant}
    for r in range(a.rounds):
        for v in a.variant:
            variant_template = os.path.join(a.run, "edge-ab.conf.in")
            with open(variant_template, "w") as f:
                f.write(template + "\n" + v.replace("|", "\n") + "\n")
            conf = os.path.join(a.run, "edge-ab.conf")
            bench.render(variant_template, conf, RUN=a.run, CONTENT=content, H2C=bench.H2C, TLS=bench.TLS,
                         KEY=bench.KEY_HEX, ORIGIN=bench.ORIGIN, ACCESS_LOG="")
            # A variant the edge refuses is named with the edge's own message, not a port that
            # never opened.
            check = subprocess.run([a.edge_bin, "--config", conf, "--check"], capture_output=True, text=True)
            if check.returncode != 0:
                raise SystemExit(f"config_ab.py: variant {v!r}: {(check.stderr or check.stdout).strip()}")
            for port in (bench.H2C, bench.TLS, bench.ORIGIN):
                bench.require_free(port)
            if a.server == "edge-cache":
                # The origin and an empty cache, as bench.py's EdgeCache starts them.
                origin_conf = os.path.join(a.run, "nginx-origin.conf")
                bench.render("nginx-origin.conf", origin_conf, RUN=a.run, CONTENT=content, ORIGIN=bench.ORIGIN)
                subprocess.check_call(["nginx", "-c", origin_conf])
                shutil.rmtree(os.path.join(a.run, "edge-cache"), ignore_errors=True)
                srv = bench.EdgeCache("edge-cache", a.run, paths)
            else:
                srv = bench.Edge("edge", a.run, paths)
            srv.launch(conf, a.edge_bin, a.edgectl_bin)
            try:
                bench.warm(srv, a.run)
                bench.settle(srv)
                m = bench.h2load(srv, srv.urls(kind), a.requests, 32, 8, extra, os.path.join(a.run, "ab-h2load.log"))
                if m["ok"] != a.requests:
                    raise SystemExit(f"config_ab.py: {v!r}: {m['ok']} of {a.requests} requests succeeded ({m['codes']})")
                results[v].append(m)
                print(f"round {r + 1} {v!r}: cpu {m['cpu_us']:.1f} us/req (own {m['own_us']:.1f}), {m['rps']:.0f} req/s, "
                      f"p99 {m['p99']:.2f} ms", flush=True)
            finally:
                srv.stop()
    first = a.variant[0]
    base = statistics.median(m["cpu_us"] for m in results[first])
    print(f"\nmedians over {a.rounds} round(s), {a.scenario}, {a.requests} requests:")
    for v in a.variant:
        cpu = statistics.median(m["cpu_us"] for m in results[v])
        own = statistics.median(m["own_us"] for m in results[v])
        rps = statistics.median(m["rps"] for m in results[v])
        p99 = statistics.median(m["p99"] for m in results[v])
        print(f"  {v!r}: cpu {cpu:.1f} us/req ({cpu / base:.2f}x the first), own {own:.1f}, {rps:.0f} req/s, "
              f"p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
