#!/usr/bin/env python3
"""Instructions per request, exactly: the server runs under valgrind's callgrind, its counters are
zeroed after the warm-up, one h2load run of a bench.py scenario goes through it, and the
instructions it executed in user space (all threads, libraries included) are divided by the
responses. A noisy shared machine does not move the figure, so a change on the data path can be
judged with it; kernel work (the copies, the network stack) is not in it, which bench.py's CPU per
request covers. H2O runs the same way as the anchor. --top N prints the N functions with the most
instructions of their own per request; the profile stays in the run directory for
callgrind_annotate.

usage: loadtest/instructions.py [--servers edge,edge-cache,h2o] [--scenarios hit-4k-h2c,chunk-h2c]
                                [--requests 3000] [--top 25] [--edge-bin PATH] [--max N]
--max N: exit 1 when an edge figure exceeds N instructions per request (a stored threshold).
Needs: valgrind, nginx (edge-cache's origin), h2o, h2load; a release build of edge and edgectl."""
import argparse
import hashlib
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.dirname(HERE)


def without_debug_info(binary, run):
    """A copy of the binary without DWARF: valgrind 3.19 cannot read the Swift toolchain's and gives
    up. The symbol table stays, so the profile still names every function."""
    # Named after the binary's full path: two builds named "edge" (a baseline and the work tree's)
    # must not share one copy, which the older of the two would never replace.
    tag = hashlib.sha1(os.path.abspath(binary).encode()).hexdigest()[:8]
    out = os.path.join(run, f"{os.path.basename(binary)}-{tag}-nodebug")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(binary):
        subprocess.check_call(["objcopy", "--strip-debug", binary, out])
    return out


def callgrind(pid, command):
    r = subprocess.run(["callgrind_control", command, str(pid)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "OK" not in r.stdout:
        raise SystemExit(f"instructions.py: callgrind_control {command} {pid} failed: {(r.stdout + r.stderr).strip()}")


def measure(srv, prefix, urls, n, extra):
    """Instructions in the server's process during one h2load run of n requests, and the responses;
    the dump file of the run."""
    pid = srv.proc.pid   # valgrind runs the tool in the process it was started as
    callgrind(pid, "-z")
    out = subprocess.run(["h2load", "-i", urls, "-n", str(n), "-c", "32", "-m", "8", "-t", "1"] + extra,
                         capture_output=True, text=True, timeout=1800).stdout
    before = set(glob.glob(prefix + "*"))
    callgrind(pid, "-d")
    deadline = time.time() + 60
    while time.time() < deadline:
        dumps = [p for p in set(glob.glob(prefix + "*")) - before if os.path.getsize(p) > 0]
        if dumps:
            time.sleep(0.5)   # written whole
            dump = dumps[0]
            m = re.search(r"^summary: (\d+)", open(dump).read(), re.M)
            if m:
                ok = int(re.search(r"(\d+) succeeded", out).group(1))
                return int(m.group(1)), ok, dump
        time.sleep(0.2)
    raise SystemExit(f"instructions.py: no callgrind dump appeared for {srv.name}")


def top_functions(dump, requests, count):
    """(instructions of its own per request, function) for the `count` costliest functions."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", f"--threshold=100", dump],
                          capture_output=True, text=True).stdout
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    total = re.search(r"^\s*([\d,]+) \([ \d.]+%\)\s+PROGRAM TOTALS", text, re.M)
    # A thread's entry frames (clone, start_thread, the worker's loop) show the whole total as
    # their own when the counters were zeroed inside them; they are not a cost.
    whole = int(total.group(1).replace(",", "")) if total else -1
    rows = [(cost / requests, fn) for cost, fn in rows if cost < whole * 0.99]
    return rows[:count]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="edge,edge-cache,h2o")
    ap.add_argument("--scenarios", default="hit-4k-h2c,chunk-h2c")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--top", type=int, default=0)
    bench.add_build_arguments(ap)
    ap.add_argument("--max", type=float, default=None, help="fail (exit 1) when an edge scenario runs more per request")
    a = ap.parse_args()
    content, paths = bench.prepare(a.run, 50, a.requests)
    scenarios = [s for s in bench.SCENARIOS if s[0] in a.scenarios.split(",")]
    classes = {"edge": bench.Edge, "edge-cache": bench.EdgeCache, "h2o": bench.H2O}
    edge_bin = without_debug_info(a.edge_bin, a.run)
    over, results = [], {}
    for name in a.servers.split(","):
        base, _, variant = name.partition("+")
        if base not in classes or variant not in ("", "log", "geo") or (base == "h2o" and variant):
            raise SystemExit(f"--servers: {name}? edge, edge-cache (with +log or +geo), h2o")
        for port in (bench.H2C, bench.TLS, bench.ORIGIN):
            bench.require_free(port)
        prefix = os.path.join(a.run, f"callgrind-{name}.out")
        for old in glob.glob(prefix + "*"):
            os.remove(old)
        srv = classes[base](name, a.run, paths, access_log=variant == "log", geo=variant == "geo")
        srv.wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", "--quiet"]
        srv.start_seconds = 180.0
        # valgrind 3.19 holds its thread lock through a blocking io_uring_enter, so a second worker
        # would wait for the first one's ring; one worker runs the same code per request.
        srv.workers = 1
        srv.start(content, edge_bin, a.edgectl_bin)
        try:
            bench.warm(srv, a.run, timeout=1800)   # as bench.py: every object cached and promoted
            bench.settle(srv)
            for scenario, kind, extra in scenarios:
                if kind != "h2c":
                    continue   # TLS: the cipher's instructions swamp the server's own; bench.py covers it
                instructions, ok, dump = measure(srv, prefix, srv.urls(kind), a.requests, extra)
                per = instructions / max(1, ok)
                results[(scenario, name)] = per
                print(f"{scenario:12} {name:15} {per:10.0f} instructions per request ({instructions} for {ok} responses; "
                      f"{dump})", flush=True)
                for cost, fn in top_functions(dump, max(1, ok), a.top):
                    print(f"    {cost:9.0f}  {fn[:150]}")
                if a.max is not None and base != "h2o" and per > a.max:
                    over.append(f"{scenario} {name}: {per:.0f} > {a.max:.0f}")
        finally:
            # The counts are dumped; a SIGTERM shutdown under valgrind would wait on the same lock.
            if srv.proc and srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait(timeout=60)
            srv.stop()
    for scenario, _, _ in scenarios:
        anchor = results.get((scenario, "h2o"))
        if anchor:
            for (sc, name), per in results.items():
                if sc == scenario and name != "h2o":
                    print(f"{scenario:12} {name:15} {per / anchor:6.2f}x H2O's instructions per request")
    if over:
        print("over --max: " + "; ".join(over))
        sys.exit(1)


if __name__ == "__main__":
    main()
