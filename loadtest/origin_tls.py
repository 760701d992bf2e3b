#!/usr/bin/env python3
"""Miss TTFB through an HTTPS origin beside the cleartext one: edge-cache (bench.py's) in front of
nginx serving the same content over http:// and over https:// (a CA made for the run, verified
by the edge with origin.ca_file), a cold cache each round, and `loadtest replay` asking each
distinct URL once at a steady rate, so every request is a miss. Rounds alternate the two origins;
the table gives the medians of TTFB p50 and p99 over rounds, and their ratio.

usage: loadtest/origin_tls.py [--rounds 5] [--rate 100] [--seconds 3]
Needs: nginx, openssl; release builds of edge, edgectl and loadtest."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.dirname(HERE)
ORIGIN_TLS = bench.ORIGIN + 1


def make_ca(run):
    """A CA and a certificate it signed for localhost (once per run directory)."""
    d = os.path.join(run, "origin-ca")
    if os.path.exists(os.path.join(d, "server.pem")):
        return d
    os.makedirs(d, exist_ok=True)
    q = dict(check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-subj", "/CN=origin bench CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem"], **q)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=localhost", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr"], **q)
    open(f"{d}/ext.cnf", "w").write("subjectAltName=DNS:localhost\n")
    subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
                    "-CAcreateserial", "-days", "30", "-extfile", f"{d}/ext.cnf", "-out", f"{d}/server.pem"], **q)
    return d


class TLSOriginEdge(bench.EdgeCache):
    """bench.py's edge-cache, its origin's URL swapped for the HTTPS one when `https`."""
    https = False

    def start(self, content, edge_bin, edgectl_bin):
        conf = os.path.join(self.run, "nginx-origin-tls.conf")
        ca = make_ca(self.run)
        open(conf, "w").write(f"""worker_processes 1; pid {self.run}/nginx-origin.pid; error_log {self.run}/nginx-origin.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000; ssl_session_cache shared:o:1m;
  server {{ listen 127.0.0.1:{bench.ORIGIN}; root {content}; }}
  server {{ listen 127.0.0.1:{ORIGIN_TLS} ssl; ssl_certificate {ca}/server.pem; ssl_certificate_key {ca}/server.key; root {content}; }} }}
""")
        subprocess.check_call(["nginx", "-c", conf])
        shutil.rmtree(os.path.join(self.run, "edge-cache"), ignore_errors=True)
        conf = os.path.join(self.run, "edge-cache-bench.conf")
        bench.render("edge-cache-bench.conf", conf, RUN=self.run, H2C=bench.H2C, TLS=bench.TLS, KEY=bench.KEY_HEX,
                     ORIGIN=bench.ORIGIN, ACCESS_LOG="")
        if self.https:
            text = open(conf).read().replace(f'urls = ["http://127.0.0.1:{bench.ORIGIN}"]',
                                             f'urls = ["https://localhost:{ORIGIN_TLS}"]\nca_file = "{ca}/ca.pem"')
            open(conf, "w").write(text)
        self.launch(conf, edge_bin, edgectl_bin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=100, help="misses per second")
    ap.add_argument("--seconds", type=float, default=3)
    bench.add_build_arguments(ap)
    ap.add_argument("--loadtest-bin", default=os.path.join(ROOT, ".build/release/loadtest"))
    a = ap.parse_args()
    needed = int(a.rate * a.seconds) + 1
    content, paths = bench.prepare(a.run, max(50, needed // 10 + 1), 20000)
    results = {"http": [], "https": []}
    for rnd in range(a.rounds):
        for kind in ("http", "https"):
            for port in (bench.H2C, bench.TLS, bench.ORIGIN, ORIGIN_TLS):
                bench.require_free(port)
            srv = TLSOriginEdge(f"edge-cache-{kind}", a.run, paths)
            srv.https = kind == "https"
            srv.start(content, a.edge_bin, a.edgectl_bin)
            try:
                distinct = sorted(set(open(srv.urls("h2c")).read().split()))
                if len(distinct) < needed:
                    raise SystemExit(f"only {len(distinct)} distinct URLs for {needed} misses: lower --rate or --seconds")
                urls = os.path.join(a.run, "miss-urls.txt")
                with open(urls, "w") as f:
                    f.writelines(u + "\n" for u in distinct)
                out = os.path.join(a.run, f"miss-{kind}.json")
                subprocess.run([a.loadtest_bin, "replay", "--urls", urls, "--connections", "4", "--streams", "1",
                                "--rate", str(a.rate), "--duration", str(a.seconds), "--quiet", "--json", out],
                               check=True, capture_output=True)
                r = json.load(open(out))
                ttfb = r["ttfb_miss_ms"]   # by the edge's Cache-Status: misses only
                if r["cache"].get("miss", 0) != r["responses"]:
                    raise SystemExit(f"{kind}: {r['cache']} of {r['responses']} responses: not all misses")
                results[kind].append((ttfb["p50"], ttfb["p99"], r["requests"], r.get("errors", 0)))
                print(f"round {rnd + 1} {kind:5} miss TTFB p50 {ttfb['p50']:7.2f} ms  p99 {ttfb['p99']:7.2f} ms  "
                      f"({r['requests']} requests, {r.get('errors', 0)} errors)", flush=True)
            finally:
                srv.stop()
    med = lambda kind, i: statistics.median(x[i] for x in results[kind])
    print(f"\nmedians over {a.rounds} rounds, {a.rate:g} misses/s for {a.seconds:g} s, each URL once (a cold cache)")
    print(f"origin   miss TTFB p50 ms   p99 ms")
    for kind in ("http", "https"):
        print(f"{kind:6} {med(kind, 0):17.2f} {med(kind, 1):8.2f}")
    print(f"https / http: p50 {med('https', 0) / med('http', 0):.2f}x, p99 {med('https', 1) / med('http', 1):.2f}x")


if __name__ == "__main__":
    main()
