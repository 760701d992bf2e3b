#!/usr/bin/env python3
"""Instructions per request, exact and independent of machine noise: the edge runs under
valgrind's callgrind with collection off; after a warm-up, collection is switched on for one
h2load run of N requests and off again, and the instruction count (Ir) of that window is divided
by the requests. The same build, content and load give the same count on a busy machine and a
quiet one (within a fraction of a percent), so two builds can be compared precisely.

usage: loadtest/instructions.py [--edge-bin PATH] [--servers edge,edge-cache] [--scenarios hit-4k-h2c,...] [--requests 3000]
Needs: valgrind (callgrind_control), h2load, nginx (edge-cache's origin)."""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import make_content  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge-bin", default=os.path.join(bench.ROOT, ".build/release/edge"))
    ap.add_argument("--edgectl-bin", default=os.path.join(bench.ROOT, ".build/release/edgectl"))
    ap.add_argument("--servers", default="edge,edge-cache")
    ap.add_argument("--scenarios", default=",".join(s[0] for s in bench.SCENARIOS))
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--run", default="/tmp/edge-instructions")
    a = ap.parse_args()
    os.makedirs(a.run, exist_ok=True)
    content = os.path.join(a.run, "content")
    make_content.make(content, a.tracks)
    if not os.path.exists(os.path.join(a.run, "cert.pem")):
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", os.path.join(a.run, "key.pem"),
                               "-out", os.path.join(a.run, "cert.pem"), "-days", "30", "-subj", "/CN=localhost"], stderr=subprocess.DEVNULL)
    paths = make_content.paths(a.requests, a.tracks)
    out_prefix = os.path.join(a.run, "callgrind.out")
    # Debian's valgrind 3.19 cannot read the DWARF 5 the Swift toolchain's clang writes: count a
    # copy without debug information (the code is byte for byte the same).
    stripped = os.path.join(a.run, "edge-stripped")
    subprocess.check_call(["objcopy", "--strip-debug", a.edge_bin, stripped])
    wrapper = os.path.join(a.run, "edge-under-callgrind.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file={out_prefix}.%p "
                f"{stripped} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    bench.wait_port.__defaults__ = (60.0,)   # valgrind starts slowly
    classes = {"edge": bench.Edge, "edge-cache": bench.EdgeCache}
    print(f"instructions per request, {a.requests} requests per scenario, {os.path.abspath(a.edge_bin)}")
    for name in a.servers.split(","):
        srv = classes[name](name, a.run, paths)
        for f in glob.glob(out_prefix + ".*"):
            os.remove(f)
        srv.start(content, wrapper, a.edgectl_bin)
        try:
            pid = srv.proc.pid
            subprocess.run(["h2load", "-i", srv.urls("h2c"), "-n", str(a.requests), "-c", "4", "-m", "4", "-t", "1"],
                           capture_output=True, timeout=900)   # warm: caches, page cache, token cache
            for scenario, kind, extra in bench.SCENARIOS:
                if scenario not in a.scenarios.split(","):
                    continue
                subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
                subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
                r = subprocess.run(["h2load", "-i", srv.urls(kind), "-n", str(a.requests), "-c", "4", "-m", "4", "-t", "1"] + extra,
                                   capture_output=True, text=True, timeout=900).stdout
                subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
                subprocess.run(["callgrind_control", "-d", scenario, str(pid)], capture_output=True)
                time.sleep(0.5)
                ok = int(re.search(r"(\d+) succeeded", r).group(1))
                dumps = sorted(glob.glob(out_prefix + ".*"), key=os.path.getmtime)
                total = 0
                for d in dumps:
                    text = open(d, errors="replace").read()
                    if f"desc: Trigger: Client Request: {scenario}" in text or f"Client Request: {scenario}" in text:
                        m = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
                        total += int(m.group(1)) if m else 0
                        os.remove(d)
                print(f"{name:10} {scenario:12} {total / max(1, ok):12.0f} instructions/request  ({ok} ok)", flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
