#!/usr/bin/env python3
"""playback-auth under a steady offered load: h2load paces POST /v1/playback at --rate grants a
second in total (clients x per-client rate, HTTP/1.1 keep-alive) for --seconds, against a catalog
packaged by `packager demo-content`; prints achieved grants/s and p50/p99/max latency from
h2load's per-request log, median over --rounds. Target: p99 under 5 ms at 2,000/s.

The per-user rate limit is raised for the run (every request carries the same user's JWT);
identity, entitlement, catalog read, token signing and key unwrapping all happen per request."""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import free_port, wait_port  # noqa: E402
from bench import machine_busy_seconds, tree_cpu_seconds  # noqa: E402  (the same CPU accounting)
ROOT = os.path.dirname(HERE)
SECRET = "bench-identity-provider-secret-0123456789abcdef"
MASTER = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
KEY = "62656e63682d6b65792d626e63682d6b65792d62656e6368"


def jwt(tier="premium"):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench", "tier": tier, "country": "US", "exp": int(time.time()) + 3600}).encode())
    return (head + b"." + body + b"." + b64(hmac.new(SECRET.encode(), head + b"." + body, hashlib.sha256).digest())).decode()



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build/release"))
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="auth-bench-")
    conf = f"{d}/bench.conf"
    port = free_port()
    open(conf, "w").write(f'[auth]\nlisten = "127.0.0.1:{port}"\ncatalog = "{d}/catalog.sqlite"\njwt_hs256_secret = "{SECRET}"\n'
                          f'edges = ["https://edge-1.example", "https://edge-2.example"]\nrate_limit_per_minute = 1000000\n'
                          f'[token]\nkey_hex = "{KEY}"\n[catalog]\nmaster_key_hex = "{MASTER}"\n')
    out = subprocess.run([f"{a.bin}/packager", "demo-content", "--tracks", "3", "--seconds", "10", "--out", f"{d}/origin",
                          "--catalog", f"{d}/catalog.sqlite", "--config", conf], capture_output=True, text=True, check=True)
    tracks = [l.split("\t")[0] for l in out.stdout.splitlines()]
    open(f"{d}/body.json", "w").write(json.dumps({"track_id": tracks[0], "next": tracks[1:]}))
    server = subprocess.Popen([f"{a.bin}/playback-auth", "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    rows = []
    try:
        for rnd in range(a.rounds):
            log = f"{d}/h2load.log"
            if os.path.exists(log):
                os.remove(log)
            import resource
            busy0, own0 = machine_busy_seconds(), tree_cpu_seconds([server.pid])
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(["h2load", "--h1", "-c", str(a.clients), "--rps", str(a.rate // a.clients), "-D", str(a.seconds),
                                "-d", f"{d}/body.json", "-H", f"Authorization: Bearer {jwt()}", "-H", "Content-Type: application/json",
                                f"--log-file={log}", f"http://127.0.0.1:{port}/v1/playback"], capture_output=True, text=True, timeout=a.seconds + 60).stdout
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            busy, own = machine_busy_seconds() - busy0, tree_cpu_seconds([server.pid]) - own0
            client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            codes = re.search(r"status codes: (.*)", r).group(1)
            times = sorted(int(l.split("\t")[2]) / 1000 for l in open(log) if l.count("\t") >= 2)
            q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
            rps = len(times) / a.seconds
            # CPU per grant as bench.py counts per request: the machine's busy CPU minus h2load's
            # own, over the grants; and playback-auth's own process (all its threads).
            cpu = max(0.0, busy - client) / max(1, len(times)) * 1e6
            own_us = own / max(1, len(times)) * 1e6
            rows.append((rps, q(0.5), q(0.99), times[-1], cpu, own_us))
            print(f"round {rnd + 1}: offered {a.rate}/s, achieved {rps:.0f} grants/s, p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, "
                  f"max {times[-1]:.2f} ms, cpu {cpu:.0f} us/grant (own {own_us:.0f}) [{codes}]", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)
    med = lambda i: statistics.median(r[i] for r in rows)
    print(f"\nmedian over {a.rounds} rounds at {a.rate}/s offered: {med(0):.0f} grants/s, p50 {med(1):.2f} ms, p99 {med(2):.2f} ms, "
          f"max {med(3):.2f} ms, cpu {med(4):.0f} us per grant (playback-auth's own {med(5):.0f}) (target p99 < 5 ms)")


if __name__ == "__main__":
    main()
