#!/usr/bin/env python3
"""Where a server's CPU per request goes: user and system time of its own threads (from /proc),
and its system calls per request (a `perf stat` count of raw_syscalls:sys_enter on its
processes), over h2load runs of one bench.py scenario; optionally a `perf record -g` of the
last round for `perf report --sort dso`. bench.py's figure is the machine's CPU minus h2load's;
this one splits the server's own, which is what tells an io_uring server's kernel cost (few
calls, many requests per call) from its user-space cost.

usage: loadtest/cpu_split.py [--servers edge,edge-cache,h2o] [--scenario hit-4k-h2c] [--rounds 3]
                             [--requests 60000] [--perf-dir DIR] [--workers N] [--edge-bin PATH]
Needs: perf (linux-perf) for the system call count and the profile; h2load, nginx, h2o;
a release build of edge and edgectl."""
import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="edge,edge-cache,h2o")
    ap.add_argument("--scenario", default="hit-4k-h2c")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=60000)
    ap.add_argument("--perf-dir", help="write perf-<server>.data of the last round here")
    ap.add_argument("--workers", type=int, help="the edge's worker count, when not its configuration's")
    bench.add_build_arguments(ap)
    a = ap.parse_args()
    scenario = [s for s in bench.SCENARIOS if s[0] == a.scenario]
    if not scenario:
        raise SystemExit(f"--scenario: one of {', '.join(s[0] for s in bench.SCENARIOS)}")
    _, kind, extra = scenario[0]
    content, paths = bench.prepare(a.run, 50, a.requests)
    classes = {"edge": bench.Edge, "edge-cache": bench.EdgeCache, "nginx": bench.Nginx, "h2o": bench.H2O}
    hz = os.sysconf("SC_CLK_TCK")
    for name in a.servers.split(","):
        if name not in classes:
            raise SystemExit(f"--servers: {name}? edge, edge-cache, nginx, h2o")
        for port in (bench.H2C, bench.TLS, bench.ORIGIN):
            bench.require_free(port)
        srv = classes[name](name, a.run, paths)
        srv.workers = a.workers
        try:
            srv.start(content, a.edge_bin, a.edgectl_bin)
            bench.warm(srv, a.run)
            bench.settle(srv)
            pids = bench.tree_pids(srv.root_pids())
            targets = ",".join(map(str, sorted(pids)))
            for rnd in range(a.rounds):
                before = bench.thread_ticks(pids)
                record = None
                if a.perf_dir and rnd == a.rounds - 1:
                    record = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-o",
                                               os.path.join(a.perf_dir, f"perf-{name}.data"), "-p", targets],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                count = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", targets],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                time.sleep(0.3)   # both attached before the load starts
                r = bench.h2load(srv, srv.urls(kind), a.requests, 32, 8, extra, os.path.join(a.run, "h2load.log"))
                count.send_signal(2)
                counted = count.communicate(timeout=30)[1]
                if record:
                    record.send_signal(2)
                    record.wait(timeout=60)
                after = bench.thread_ticks(pids)
                ok = max(1, r["ok"])
                user = sum(u - before.get(k, (0, 0))[0] for k, (u, _) in after.items()) / hz / ok * 1e6
                system = sum(s - before.get(k, (0, 0))[1] for k, (_, s) in after.items()) / hz / ok * 1e6
                m = re.search(r"^([\d.]+),", counted, re.M)
                calls = f"{float(m.group(1)) / ok:.3f}" if m else "?"
                print(f"{name:11} {a.scenario:12} round {rnd + 1}: {r['rps']:8.0f} req/s, server CPU {r['cpu_us']:5.1f} us/req; "
                      f"own threads: user {user:5.2f} us/req, system {system:5.2f} us/req; system calls {calls}/req",
                      flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
