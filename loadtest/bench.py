#!/usr/bin/env python3
"""Side-by-side cache-hit benchmark: edge (directory origin), edge-cache (edge in front of an
nginx origin, serving cache hits), nginx (signed-URL edge: secure_link + slice + proxy_cache in
front of the same nginx origin) and H2O (static files, no token check), same content,
same h2load load, same run. Each round runs every server through every scenario; the table shows
the median over rounds of req/s, MB/s and p50/p99 request time, and edge's ratios.

usage: loadtest/bench.py [--rounds 3] [--requests 20000] [--servers edge,nginx,h2o] [--edge-bin PATH] [--edge-workers N]
                         [--baseline-bin PATH]
--baseline-bin: a second edge build (say, the commit before a change) run as edge@base and
edge-cache@base in the same rounds, interleaved, so a change's before/after shares the machine's
noise; the table adds the change's ratios.
edge+log, edge-cache+log, nginx+log in --servers: the same server writing an access log (edge's
JSON lines, nginx's combined format with buffer=64k), and a line per scenario with the log's cost:
its server CPU per request over the same server's without it.
edge+geo, edge-cache+geo: the edge with regional licensing on ([geo] with a MaxMind DB that maps
127.0.0.0/8 to US, tokens claiming geo=US,CA, so every request runs the whole check), and a line
per scenario with its cost the same way. Writing the DB needs mmdb-writer (the test venv has it).
busiest: the share of the server's CPU its busiest thread used in a run (1/n when n threads shared
the load evenly). On a machine whose cores h2load shares, how many threads a server spreads the
load over moves its CPU per request: H2O served nearly all of it on one of its two threads.
--edge-workers N: the edge with N workers instead of the bench configuration's 2.
Needs: nginx, h2o, h2load (nghttp2-client), openssl; a release build of edge."""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import hashlib
import base64

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import free_port, wait_port  # noqa: E402
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_content  # noqa: E402

H2C, TLS, ORIGIN = 18080, 18443, 18081
KEY_HEX = "62656e63682d6b65792d626e63682d6b65792d62656e6368"
NGINX_SECRET = "edge-bench-secret"

SCENARIOS = [
    ("hit-64k-h2c", "h2c", ["-H", "Range: bytes=0-65535"]),
    ("hit-64k-tls", "tls", ["-H", "Range: bytes=0-65535"]),
    ("hit-4k-h2c", "h2c", ["-H", "Range: bytes=4096-8191"]),
    ("chunk-h2c", "h2c", []),
]


def render(template, dest, **values):
    text = open(os.path.join(HERE, template)).read()
    for k, v in values.items():
        text = text.replace("@" + k + "@", str(v))
    with open(dest, "w") as f:
        f.write(text)



def require_free(port, wait_seconds=5):
    """The port is free, or becomes free within `wait_seconds`: a server that just exited may
    hold its listeners a moment longer (io_uring releases the files its requests pinned in a
    kernel work item after the process is gone)."""
    import socket
    deadline = time.time() + wait_seconds
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT leftovers are fine; listeners are not
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"port {port} is in use: stop whatever holds it (ss -ltnp) and run again")
        time.sleep(0.1)


def kill_pidfile(path):
    try:
        pid = int(open(path).read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


class Server:
    def __init__(self, name, run, paths, binary=None, access_log=False, geo=False):
        self.name, self.run, self.paths = name, run, paths
        self.binary = binary   # an edge build other than --edge-bin (the baseline)
        self.access_log = access_log   # the "+log" variants: one line per request, buffered
        self.geo = geo   # the "+geo" variants: regional licensing checked on every request
        self.proc = None
        self.wrapper = []   # a command the server runs under (instructions.py: valgrind)
        self.start_seconds = 10.0   # how long its ports may take to open
        self.workers = None   # the edge's worker count, when not the configuration's

    def log_path(self):
        return os.path.join(self.run, f"access-{self.name}.log")

    def root_pids(self):
        """The processes serving the load (their descendants count too)."""
        return [self.proc.pid] if self.proc else []

    def cpu_seconds(self):
        """CPU time the server's own processes have used so far (all threads, all workers)."""
        return tree_cpu_seconds(self.root_pids())

    def urls(self, kind):
        return os.path.join(self.run, f"urls-{self.name}-{kind}.txt")


class Edge(Server):
    def start(self, content, edge_bin, edgectl_bin):
        conf = os.path.join(self.run, "edge-bench.conf")
        render("edge-bench.conf", conf, RUN=self.run, CONTENT=content, H2C=H2C, TLS=TLS, KEY=KEY_HEX,
               ACCESS_LOG=self.log_path() if self.access_log else "")
        self.launch(conf, edge_bin, edgectl_bin)

    def add_geo(self, conf):
        """[geo] over a database that puts all of loopback in the US (written once per run)."""
        db = os.path.join(self.run, "geo-bench.mmdb")
        if not os.path.exists(db):
            venv = os.path.join(ROOT, ".build/venv/bin/python")
            subprocess.check_call([venv if os.path.exists(venv) else sys.executable, "-c",
                                   "from mmdb_writer import MMDBWriter; from netaddr import IPSet; "
                                   "w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-Country'); "
                                   "w.insert_network(IPSet(['127.0.0.0/8']), {'country': {'iso_code': 'US'}}); "
                                   "w.insert_network(IPSet(['10.0.0.0/8']), {'country': {'iso_code': 'DE'}}); "
                                   f"w.to_db_file({db!r})"])
        with open(conf, "a") as f:
            f.write(f'[geo]\ndatabase = "{db}"\n')

    def launch(self, conf, edge_bin, edgectl_bin):
        if self.geo:
            self.add_geo(conf)
        if self.workers:
            text = open(conf).read()
            with open(conf, "w") as f:
                f.write(re.sub(r"(?m)^workers = \d+$", f"workers = {self.workers}", text))
        self.proc = subprocess.Popen(self.wrapper + [self.binary or edge_bin, "--config", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.run, "edge.err"), "w"))
        wait_port(H2C, self.start_seconds)
        wait_port(TLS, self.start_seconds)
        token = subprocess.check_output([edgectl_bin, "sign", "--key-hex", KEY_HEX, "--acl", "/audio/*", "--ttl", "7200"]
                                        + (["--regions", "US,CA"] if self.geo else []), text=True).strip()
        for kind, base in (("h2c", f"http://127.0.0.1:{H2C}"), ("tls", f"https://127.0.0.1:{TLS}")):
            with open(self.urls(kind), "w") as f:
                f.writelines(f"{base}{p}?hdnts={token}\n" for p in self.paths)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class EdgeCache(Edge):
    """edge with the HTTP origin and its cache: nginx-origin behind it, warmed like nginx-edge."""
    def start(self, content, edge_bin, edgectl_bin):
        render("nginx-origin.conf", os.path.join(self.run, "nginx-origin.conf"), RUN=self.run, CONTENT=content, ORIGIN=ORIGIN)
        subprocess.check_call(["nginx", "-c", os.path.join(self.run, "nginx-origin.conf")])
        shutil.rmtree(os.path.join(self.run, "edge-cache"), ignore_errors=True)
        conf = os.path.join(self.run, "edge-cache-bench.conf")
        render("edge-cache-bench.conf", conf, RUN=self.run, H2C=H2C, TLS=TLS, KEY=KEY_HEX, ORIGIN=ORIGIN,
               ACCESS_LOG=self.log_path() if self.access_log else "")
        self.launch(conf, edge_bin, edgectl_bin)

    def stop(self):
        super().stop()
        kill_pidfile(os.path.join(self.run, "nginx-origin.pid"))
        time.sleep(1)


class Nginx(Server):
    def start(self, content, *_):
        render("nginx-origin.conf", os.path.join(self.run, "nginx-origin.conf"), RUN=self.run, CONTENT=content, ORIGIN=ORIGIN)
        render("nginx-edge.conf", os.path.join(self.run, "nginx-edge.conf"), RUN=self.run, H2C=H2C, TLS=TLS, ORIGIN=ORIGIN, SECRET=NGINX_SECRET,
               ACCESS_LOG=f"access_log {self.log_path()} combined buffer=64k flush=1s;" if self.access_log else "access_log off;")
        shutil.rmtree(os.path.join(self.run, "nginx-cache"), ignore_errors=True)
        subprocess.check_call(["nginx", "-c", os.path.join(self.run, "nginx-origin.conf")])
        subprocess.check_call(["nginx", "-c", os.path.join(self.run, "nginx-edge.conf")])
        wait_port(H2C)
        exp = int(time.time()) + 7200
        for kind, base in (("h2c", f"http://127.0.0.1:{H2C}"), ("tls", f"https://127.0.0.1:{TLS}")):
            with open(self.urls(kind), "w") as f:
                for p in self.paths:
                    h = base64.urlsafe_b64encode(hashlib.md5(f"{exp}{p} {NGINX_SECRET}".encode()).digest()).decode().rstrip("=")
                    f.write(f"{base}{p}?md5={h}&expires={exp}\n")

    def root_pids(self):
        try:
            return [int(open(os.path.join(self.run, "nginx-edge.pid")).read().strip())]
        except (OSError, ValueError):
            return []

    def stop(self):
        kill_pidfile(os.path.join(self.run, "nginx-edge.pid"))
        kill_pidfile(os.path.join(self.run, "nginx-origin.pid"))
        time.sleep(1)


class H2O(Server):
    def start(self, content, *_):
        conf = os.path.join(self.run, "h2o.conf")
        render("h2o-static.conf", conf, RUN=self.run, CONTENT=content, H2C=H2C, TLS=TLS)
        self.proc = subprocess.Popen(self.wrapper + ["h2o", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.run, "h2o.out"), "w"))
        wait_port(H2C, self.start_seconds)
        wait_port(TLS, self.start_seconds)
        for kind, base in (("h2c", f"http://127.0.0.1:{H2C}"), ("tls", f"https://127.0.0.1:{TLS}")):
            with open(self.urls(kind), "w") as f:
                f.writelines(f"{base}{p}\n" for p in self.paths)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        time.sleep(1)


def workers_count(text):
    """--edge-workers: a whole number from 1 to 256 (the bound edge.conf puts on server.workers)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{text!r}: a worker count from 1 to 256")
    return n


def add_build_arguments(ap):
    """--edge-bin, --edgectl-bin and --run, the same for every load-test script."""
    ap.add_argument("--edge-bin", default=os.path.join(ROOT, ".build/release/edge"))
    ap.add_argument("--edgectl-bin", default=os.path.join(ROOT, ".build/release/edgectl"))
    ap.add_argument("--run", default="/tmp/edge-loadtest")


def prepare(run, tracks, requests):
    """The run directory: content, a certificate, and the request paths."""
    os.makedirs(run, exist_ok=True)
    content = os.path.join(run, "content")
    make_content.make(content, tracks)
    # The certificate names 127.0.0.1 (loadtest replay checks it, with --ca; h2load does not).
    if not os.path.exists(os.path.join(run, "cert-ip.marker")):
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", os.path.join(run, "key.pem"),
                               "-out", os.path.join(run, "cert.pem"), "-days", "30", "-subj", "/CN=localhost",
                               "-addext", "subjectAltName=IP:127.0.0.1"], stderr=subprocess.DEVNULL)
        open(os.path.join(run, "cert-ip.marker"), "w").close()
    return content, make_content.paths(requests, tracks)


def tree_pids(roots):
    """`roots` and every descendant still alive."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            parents[int(d)] = int(text[text.rindex(")") + 2:].split()[1])
    todo, seen = [p for p in roots if p in parents], set()
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += [c for c, pp in parents.items() if pp == p]
    return seen


def thread_ticks(pids):
    """(user, system) clock ticks of every thread of `pids`, by (pid, tid)."""
    out = {}
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                text = open(f"/proc/{p}/task/{t}/stat").read()
            except OSError:
                continue
            f = text[text.rindex(")") + 2:].split()
            out[(p, t)] = (int(f[11]), int(f[12]))
    return out


def busiest_thread_share(before, after):
    """Of the CPU the server's threads used between two `thread_ticks` readings, the share of the
    busiest thread: 1.0 when one thread served the whole load, 1/n when n shared it evenly."""
    used = [sum(after[k]) - sum(before.get(k, (0, 0))) for k in after]
    total = sum(used)
    return max(used) / total if total > 0 else 0.0


def tree_cpu_seconds(roots):
    """utime + stime of `roots` and every descendant, from /proc (a process's own counters
    include all its threads)."""
    ticks = 0
    for p in tree_pids(roots):
        try:
            text = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        f = text[text.rindex(")") + 2:].split()
        ticks += int(f[11]) + int(f[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def warm(srv, run, timeout=600):
    """Every distinct URL asked for twice, before anything is measured. Once fills nginx's cache,
    the edge's and every page cache; twice, because a slice asked for twice lately is promoted
    from disk into RAM (read back and its checksum verified). One client: h2load starts every
    client at the top of the list, so 8 clients sharing -n N warmed only the first N/8 lines, and
    a generator going through the whole list (loadtest replay) met misses the h2load runs never
    saw. Callers then `settle`."""
    distinct = sorted(set(open(srv.urls("h2c")).read().split()))
    path = os.path.join(run, "warm-urls.txt")
    with open(path, "w") as f:
        f.writelines(u + "\n" for u in distinct)
    for _ in range(2):
        subprocess.run(["h2load", "-i", path, "-n", str(len(distinct)), "-c", "1", "-m", "16", "-t", "1"],
                       capture_output=True, timeout=timeout)


def settle(srv, quiet_seconds=0.02, seconds_max=30):
    """Waits until the server's own processes use under `quiet_seconds` of CPU in half a second
    (background work of the warm-up done), at most `seconds_max`."""
    deadline = time.time() + seconds_max
    while time.time() < deadline:
        before = srv.cpu_seconds()
        time.sleep(0.5)
        if srv.cpu_seconds() - before < quiet_seconds:
            return


def machine_busy_seconds():
    """CPU time the whole machine spent not idle (all cores), from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def h2load(srv, urls, n, c, m, extra, log):
    """One h2load run. Besides req/s and latency: the server's CPU per request, that is the
    machine's busy CPU during the run minus h2load's own (its rusage), divided by the requests.
    It survives a noisy shared machine far better than req/s."""
    import resource
    if os.path.exists(log):
        os.remove(log)
    pids = tree_pids(srv.root_pids())
    threads0 = thread_ticks(pids)
    busy0, own0 = machine_busy_seconds(), srv.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["h2load", "-i", urls, "-n", str(n), "-c", str(c), "-m", str(m), "-t", "1", f"--log-file={log}"] + extra,
                         capture_output=True, text=True, timeout=600).stdout
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, own = machine_busy_seconds() - busy0, srv.cpu_seconds() - own0
    share = busiest_thread_share(threads0, thread_ticks(pids))
    client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", out).group(1))
    mbs_m = re.search(r"req/s, ([0-9.]+)([KMG]?)B/s", out)
    mbs = float(mbs_m.group(1)) * {"": 1e-6, "K": 1e-3, "M": 1, "G": 1e3}[mbs_m.group(2)] * (1.048576 if mbs_m.group(2) else 1)
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    codes = re.search(r"status codes: (.*)", out).group(1).strip()
    times = sorted(int(l.split("\t")[2]) for l in open(log) if l.count("\t") >= 2)
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))] / 1000.0
    cpu_us = max(0.0, busy - client) / max(1, ok) * 1e6
    return {"rps": rps, "mbs": mbs, "p50": q(0.5), "p99": q(0.99), "ok": ok, "codes": codes, "cpu_us": cpu_us,
            "gen_us": client / max(1, ok) * 1e6, "own_us": own / max(1, ok) * 1e6, "busiest": share}


def replay(srv, loadtest_bin, urls, seconds, c, m, extra, out, ca):
    """The same load from `loadtest replay` (closed loop, one thread, like h2load -t 1): the
    project's own generator beside h2load. Same CPU accounting; gen_us is the generator's own."""
    import json
    import resource
    headers = []
    for i in range(0, len(extra), 2):
        if extra[i] == "-H":
            headers += ["--header", extra[i + 1]]
    busy0, own0 = machine_busy_seconds(), srv.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([loadtest_bin, "replay", "--urls", urls, "--connections", str(c), "--streams", str(m), "--rate", "0",
                        "--duration", str(seconds), "--quiet", "--json", out, "--ca", ca] + headers,
                       capture_output=True, text=True, timeout=600)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, own = machine_busy_seconds() - busy0, srv.cpu_seconds() - own0
    client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    r = json.load(open(out))
    ok = r["statuses"].get("200", 0) + r["statuses"].get("206", 0)
    ttfb = r["ttfb_ms"]["uncorrected"] or {"p50": 0, "p99": 0}
    codes = ", ".join(f"{k}xx {v}" for k, v in sorted(r["statuses"].items())) + (f", errors {r['errors']}" if r["errors"] else "")
    return {"rps": r["requests_per_second"], "mbs": r["bytes"] / 1e6 / max(1e-9, r["duration_seconds"]),
            "p50": ttfb["p50"], "p99": ttfb["p99"], "ok": ok, "codes": codes,
            "cpu_us": max(0.0, busy - client) / max(1, ok) * 1e6, "gen_us": client / max(1, ok) * 1e6,
            "own_us": own / max(1, ok) * 1e6, "busiest": 0.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tracks", type=int, default=50)
    ap.add_argument("--servers", default="edge,edge-cache,nginx,h2o")
    ap.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS))
    add_build_arguments(ap)
    ap.add_argument("--baseline-bin", help="a second edge build, run as edge@base and edge-cache@base")
    ap.add_argument("--generators", default="h2load",
                    help="h2load, loadtest (loadtest replay, closed loop, as long as h2load's run), or both")
    ap.add_argument("--loadtest-bin", default=os.path.join(ROOT, ".build/release/loadtest"))
    ap.add_argument("--edge-workers", type=workers_count,
                    help="the edge's worker count (edge, edge-cache and their variants), when not the bench "
                         "configuration's 2")
    a = ap.parse_args()
    generators = a.generators.split(",")
    content, paths = prepare(a.run, a.tracks, a.requests)
    classes = {"edge": Edge, "edge-cache": EdgeCache, "nginx": Nginx, "h2o": H2O}
    servers = []
    for s in a.servers.split(","):
        base, _, variant = s.partition("+")
        if base not in classes or variant not in ("", "log", "geo") or (variant and base == "h2o") \
                or (variant == "geo" and base == "nginx"):
            raise SystemExit(f"--servers: {s}? edge, edge-cache, nginx, h2o, or edge+log, edge-cache+log, nginx+log, "
                             "edge+geo, edge-cache+geo")
        options = {"access_log": variant == "log", "geo": variant == "geo"}
        servers.append(classes[base](s, a.run, paths, **options))
        if a.baseline_bin and base in ("edge", "edge-cache"):
            servers.append(classes[base](s + "@base", a.run, paths, binary=a.baseline_bin, **options))
    for srv in servers:
        if isinstance(srv, Edge):
            srv.workers = a.edge_workers
    edges = [s.name for s in servers if s.name.startswith("edge")]
    scenarios = [s for s in SCENARIOS if s[0] in a.scenarios.split(",")]
    results = {}
    for rnd in range(a.rounds):
        for srv in servers:
            for port in (H2C, TLS, ORIGIN):
                require_free(port)
            try:
                srv.start(content, a.edge_bin, a.edgectl_bin)
                warm(srv, a.run)
                # The first scenario measured used to pay for the promotions and the disk writes
                # of the warm (edge-cache 64 KiB: 80 us of server CPU per request, 28 in the next run).
                settle(srv)
                for name, kind, extra in scenarios:
                    seconds = None
                    for gen in generators:
                        if gen == "h2load":
                            r = h2load(srv, srv.urls(kind), a.requests, a.clients, a.streams, extra, os.path.join(a.run, "h2load.log"))
                            seconds = a.requests / max(1.0, r["rps"])
                        else:
                            r = replay(srv, a.loadtest_bin, srv.urls(kind), max(2.0, round(seconds or 5.0, 1)), a.clients, a.streams,
                                       extra, os.path.join(a.run, "replay.json"), os.path.join(a.run, "cert.pem"))
                        key = srv.name if gen == "h2load" else f"{srv.name}/lt"
                        results.setdefault((key, name), []).append(r)
                        print(f"round {rnd + 1} {key:13} {name:12} {r['rps']:10.0f} req/s {r['mbs']:8.1f} MB/s "
                              f"p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms cpu {r['cpu_us']:6.1f} us/req (own {r['own_us']:6.1f}) "
                              f"generator {r['gen_us']:5.1f} us/req busiest thread {r['busiest']:4.0%} ok={r['ok']} [{r['codes']}]", flush=True)
            finally:
                srv.stop()
    med = lambda k, s, f: statistics.median(x[f] for x in results[(k, s)])
    print(f"\nmedians over {a.rounds} round(s), {a.requests} requests, {a.clients} clients x {a.streams} streams, h2load -t 1, same machine")
    if "loadtest" in generators and "h2load" in generators:
        print("\ngenerators: loadtest replay against h2load, same server and scenario "
              "(req/s ratio; generator CPU per request, loadtest / h2load)")
        for name, _, _ in scenarios:
            for srv in servers:
                if (srv.name, name) in results and (srv.name + "/lt", name) in results:
                    print(f"{name:12} {srv.name:10} loadtest {med(srv.name + '/lt', name, 'rps'):8.0f} req/s, "
                          f"h2load {med(srv.name, name, 'rps'):8.0f} req/s: "
                          f"{med(srv.name + '/lt', name, 'rps') / med(srv.name, name, 'rps'):.2f}x req/s; generator "
                          f"{med(srv.name + '/lt', name, 'gen_us'):.1f} vs {med(srv.name, name, 'gen_us'):.1f} us/req: "
                          f"{med(srv.name + '/lt', name, 'gen_us') / max(0.01, med(srv.name, name, 'gen_us')):.2f}x CPU")
    print(f"{'scenario':12} {'server':10} {'req/s':>10} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10} "
          f"{'own us/req':>10} {'busiest':>7}   "
          "ratios (edge variant / this): req/s, server CPU per request")
    for name, _, _ in scenarios:
        for srv in servers:
            if (srv.name, name) not in results:
                continue
            ratio = ""
            def ratios(variants):
                return "  ".join(f"{e}: {med(e, name, 'rps') / med(srv.name, name, 'rps'):.2f}x req/s, "
                                 f"{med(e, name, 'cpu_us') / max(0.01, med(srv.name, name, 'cpu_us')):.2f}x CPU"
                                 for e in variants if (e, name) in results)
            if srv.name.endswith("@base"):
                ratio = "change: " + ratios([srv.name[:-len("@base")]])   # this build / the baseline
            elif srv.name not in edges:
                ratio = ratios(edges)
            print(f"{name:12} {srv.name:10} {med(srv.name, name, 'rps'):10.0f} {med(srv.name, name, 'mbs'):8.1f} "
                  f"{med(srv.name, name, 'p50'):8.2f} {med(srv.name, name, 'p99'):8.2f} {med(srv.name, name, 'cpu_us'):10.1f} "
                  f"{med(srv.name, name, 'own_us'):10.1f} {med(srv.name, name, 'busiest'):7.0%}   {ratio}")
    for suffix, what in (("+log", "access log"), ("+geo", "geo")):
        variants = [srv.name for srv in servers if srv.name.endswith(suffix)]
        if variants:
            print(f"\n{what}: server CPU per request with it over without it (same server, scenario, rounds)")
        for name, _, _ in scenarios:
            for with_it in variants:
                plain = with_it[:-len(suffix)]
                if (plain, name) in results and (with_it, name) in results:
                    print(f"{name:12} {plain:10} {med(with_it, name, 'cpu_us') / max(0.01, med(plain, name, 'cpu_us')):.2f}x CPU "
                          f"({med(with_it, name, 'cpu_us'):.1f} vs {med(plain, name, 'cpu_us'):.1f} us/req; own "
                          f"{med(with_it, name, 'own_us'):.1f} vs {med(plain, name, 'own_us'):.1f}), "
                          f"{med(with_it, name, 'rps') / med(plain, name, 'rps'):.2f}x req/s")


if __name__ == "__main__":
    main()
