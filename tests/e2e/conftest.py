"""End-to-end fixtures: the real edge binary on loopback, real clients (curl, nghttp, h2load,
openssl), nginx on the same files as the reference for byte ranges."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDGE_BIN = os.environ.get("EDGE_BIN", os.path.join(ROOT, ".build/release/edge"))
EDGECTL_BIN = os.environ.get("EDGECTL_BIN", os.path.join(ROOT, ".build/release/edgectl"))
LOADTEST_BIN = os.environ.get("LOADTEST_BIN", os.path.join(os.path.dirname(EDGE_BIN), "loadtest"))
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
TRANSITION_KEY_HEX = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

# name -> size in bytes
FILES = {
    "/audio/t0001/96/000.bin": 120_000,
    "/audio/t0001/160/000.bin": 200_000,
    "/audio/t0001/320/000.bin": 400_000,
    "/audio/t0001/160/001.bin": 200_000,
    "/audio/t0002/160/000.bin": 200_000,
    "/audio/big/track.m4a": 3_000_000,
    "/audio/tiny/one.bin": 1,
    "/audio/tiny/empty.bin": 0,
}


sys.path.insert(0, os.path.join(ROOT, "loadtest"))
from harness import free_port, wait_port  # noqa: E402,F401  (shared with the benchmarks)


def write_files(root, files):
    """Writes each path (a key of `files`) under `root` with `files[path]` bytes, the same bytes
    every run (seeded by the path)."""
    for path, size in files.items():
        full = root + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(random.Random(path).randbytes(size))


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="edge-e2e-")
    os.chmod(d, 0o755)   # nginx workers (www-data) read the same files
    write_files(os.path.join(d, "origin"), FILES)
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", os.path.join(d, "key.pem"),
                           "-out", os.path.join(d, "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], stderr=subprocess.DEVNULL)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def file_bytes(workdir, path):
    with open(os.path.join(workdir, "origin") + path, "rb") as f:
        return f.read()


BIN_DIR = os.path.dirname(EDGE_BIN)
IDENTITY_SECRET = "e2e-identity-provider-secret-0123456789abcdef"
MASTER_KEY_HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"


def package_demo(d, tracks, seconds, chunk_seconds=None, regions=None):
    """`packager demo-content` into d/origin and d/catalog.sqlite at 24/96/160/320 kb/s; the
    track ids, in order."""
    conf = d / "pack.conf"
    conf.write_text(f'[catalog]\nmaster_key_hex = "{MASTER_KEY_HEX}"\n[packager]\nbitrates_kbps = [24, 96, 160, 320]\n'
                    + (f"chunk_seconds = {chunk_seconds}\n" if chunk_seconds else ""))
    out = subprocess.run([f"{BIN_DIR}/packager", "demo-content", "--tracks", str(tracks), "--seconds", str(seconds),
                          "--out", str(d / "origin"), "--catalog", str(d / "catalog.sqlite"), "--config", str(conf)]
                         + (["--regions", regions] if regions else []),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return [line.split("\t")[0] for line in out.stdout.splitlines()]


def start_playback_auth(d, edge_base, extra=""):
    """playback-auth on a free port over d/catalog.sqlite, granting for edge_base; `extra`: more
    [auth] lines. Returns (process, base URL)."""
    port = free_port()
    c = d / f"auth-{port}.conf"
    c.write_text(f'[auth]\nlisten = "127.0.0.1:{port}"\ncatalog = "{d}/catalog.sqlite"\njwt_hs256_secret = "{IDENTITY_SECRET}"\n'
                 f'edges = ["{edge_base}"]\n{extra}[token]\nkey_hex = "{KEY_HEX}"\n[catalog]\nmaster_key_hex = "{MASTER_KEY_HEX}"\n')
    proc = subprocess.Popen([f"{BIN_DIR}/playback-auth", "--config", str(c)], stdout=subprocess.DEVNULL,
                            stderr=open(d / f"auth-{port}.err", "w"))
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}"


class Edge:
    def __init__(self, workdir, limits=None, token=None, server=None, origins=None, cache=None, origin_options=None,
                 admin=None, geo=None):
        self.workdir = workdir
        self.port = free_port()
        self.tls_port = free_port()
        self.admin_port = free_port() if admin is not None else None
        self.log = os.path.join(workdir, f"access-{self.port}.log")
        self.conf = os.path.join(workdir, f"edge-{self.port}.conf")
        server = {"workers": 2, **(server or {})}
        token = {"key_hex": KEY_HEX, "transition_key_hex": TRANSITION_KEY_HEX, **(token or {})}
        lines = ["[server]", f'listen = ["127.0.0.1:{self.port}"]', f'listen_tls = ["127.0.0.1:{self.tls_port}"]',
                 f'tls_certificate = "{workdir}/cert.pem"', f'tls_private_key = "{workdir}/key.pem"', f'access_log = "{self.log}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in server.items()]
        lines += ["[token]"] + [f"{k} = {json.dumps(v)}" for k, v in token.items()]
        urls = origins or [f"file://{workdir}/origin"]
        lines += ["[origin]", f"urls = {json.dumps(urls)}"] + [f"{k} = {json.dumps(v)}" for k, v in (origin_options or {}).items()]
        if cache is not None:
            lines += ["[cache]"] + [f"{k} = {json.dumps(v)}" for k, v in cache.items()]
        lines += ["[limits]"] + [f"{k} = {json.dumps(v)}" for k, v in (limits or {}).items()]
        if admin is not None:
            admin = {"listen": [f"127.0.0.1:{self.admin_port}"], "token": ADMIN_TOKEN, **admin}
            lines += ["[admin]"] + [f"{k} = {json.dumps(v)}" for k, v in admin.items()]
        if geo is not None:
            lines += ["[geo]"] + [f"{k} = {json.dumps(v)}" for k, v in geo.items()]
        self.conf_lines = lines
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stderr = open(os.path.join(workdir, f"edge-{self.port}.err"), "w")
        self.start()

    def start(self):
        self.stderr.flush()
        starts = open(self.stderr.name).read().count("listening on")
        self.proc = subprocess.Popen([EDGE_BIN, "--config", self.conf], stdout=subprocess.DEVNULL, stderr=self.stderr)
        # Ready when every worker listens (it says so): a port that answers once may be only the
        # first worker's SO_REUSEPORT listener.
        end = time.time() + 10
        while open(self.stderr.name).read().count("listening on") == starts and time.time() < end and self.proc.poll() is None:
            time.sleep(0.02)
        # An edge that did not start (a port free_port() handed out was taken meanwhile, say) is a
        # clear error here, not a curl status 0 later against whatever holds the port.
        if self.proc.poll() is not None:
            raise RuntimeError(f"edge exited {self.proc.returncode} at start: {self.errors(0)[-2000:]}")
        wait_port(self.port)
        wait_port(self.tls_port)
        if self.admin_port:
            wait_port(self.admin_port)

    def errors(self, settle=0.6):
        time.sleep(settle)   # worker error lines are written through the ring on the 250 ms tick
        self.stderr.flush()
        return open(self.stderr.name).read()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_base(self):
        return f"http://127.0.0.1:{self.admin_port}"

    def admin(self, method, path, body=None, token=ADMIN_TOKEN, timeout=30):
        """One admin API call: (status, parsed JSON or text)."""
        import urllib.request
        import urllib.error
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.admin_base + path, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw_body, ctype = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, raw_body, ctype = e.code, e.read(), e.headers.get("content-type", "")
        return status, (json.loads(raw_body) if "json" in ctype else raw_body.decode())

    @property
    def tls_base(self):
        return f"https://127.0.0.1:{self.tls_port}"

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def log_lines(self, settle=0.6):
        time.sleep(settle)   # the access log is flushed through the ring on every 250 ms tick
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(l) for l in f if l.strip()]


def sign(acl=None, url=None, ttl=600, key=KEY_HEX, start=None, ip=None, regions=None):
    args = [EDGECTL_BIN, "sign", "--key-hex", key, "--ttl", str(ttl)]
    if regions:
        args += ["--regions", regions]
    if acl:
        args += ["--acl", acl]
    if url:
        args += ["--url", url]
    if start is not None:
        args += ["--start-time", str(start)]
    if ip:
        args += ["--ip", ip]
    return subprocess.check_output(args, text=True).strip()


@pytest.fixture(scope="session")
def edge(workdir):
    e = Edge(workdir)
    yield e
    assert e.stop() == 0, "edge must exit 0 on SIGTERM"


@pytest.fixture
def make_edge(workdir, request):
    started = []
    request.node.edges = started   # a failing test's report shows each edge's stderr (below)

    def start(**kw):
        e = Edge(workdir, **kw)
        started.append(e)
        return e
    yield start
    for e in started:
        e.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test carries what its edges wrote to stderr (and whether each is still running):
    the work directory is gone by the time anyone reads the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for e in getattr(item, "edges", []):
            alive = e.proc is not None and e.proc.poll() is None
            exit_text = "running" if alive else f"exited {e.proc.returncode if e.proc else '?'}"
            report.sections.append((f"edge :{e.port} stderr ({exit_text})", e.errors()[-4000:]))


@pytest.fixture(scope="session")
def nginx(workdir):
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon on; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err warn;
events {{ worker_connections 256; }}
http {{ access_log off; max_ranges 16; default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {workdir}/origin; }} }}
""")
    subprocess.check_call(["nginx", "-c", conf])
    wait_port(port)
    yield f"http://127.0.0.1:{port}"
    try:
        os.kill(int(open(f"{workdir}/nginx.pid").read()), signal.SIGTERM)
    except OSError:
        pass


def curl(url, *args, timeout=20):
    """Runs curl; returns (status, headers dict lower-case, body bytes, http_version)."""
    with tempfile.NamedTemporaryFile() as hdr, tempfile.NamedTemporaryFile() as body:
        cmd = ["curl", "-s", "-k", "--path-as-is", "-D", hdr.name, "-o", body.name, "-w", "%{http_code} %{http_version}", *args, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.split()
        headers = {}
        for line in open(hdr.name, "rb").read().decode("latin-1").splitlines():
            if ":" in line and not line.startswith("HTTP/"):
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return int(out[0]), headers, open(body.name, "rb").read(), out[1] if len(out) > 1 else ""


def read_until_close(port, data, timeout=5.0, recv_bytes=65536):
    """Sends raw bytes, returns everything the server sends until it closes the connection. Unlike
    `raw`, a timeout is an error (socket.timeout propagates): the server must close by itself."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(recv_bytes)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


def raw(port, data, timeout=5.0, read_all=True):
    """Sends raw bytes, returns everything the server sends until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        end = time.time() + timeout
        while time.time() < end:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
            if not read_all:
                break
        return b"".join(chunks)


PROTOCOLS = {
    "http1": lambda e: (e.base, ["--http1.1"]),
    "h2c": lambda e: (e.base, ["--http2-prior-knowledge"]),
    "h2": lambda e: (e.tls_base, ["--http2"]),
    "https1": lambda e: (e.tls_base, ["--http1.1"]),
}
