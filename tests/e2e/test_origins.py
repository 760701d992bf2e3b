"""Real origins: private buckets whose requests must carry AWS Signature Version 4 (verified by
botocore's signer in the origin), origins named by host names resolved off the data path, IPv6
literals, and HTTPS origins with certificate checks."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import curl, sign, write_files
from fault_origin import Origin

SLICE = 65536
FILES = {"/audio/p1/160/000.bin": 200_000, "/audio/p2/160/000.bin": 150_000, "/audio/p3/160/000.bin": 100_000}
ACCESS_KEY = "AKIAEDGETESTEXAMPLE"
SECRET = "edge/test+secret/0123456789abcdefEXAMPLE"


@pytest.fixture(scope="module")
def origin_dir(workdir):
    d = os.path.join(workdir, "origins-test")   # under workdir: nginx's workers (www-data) read it too
    write_files(d, FILES)
    return d


def data(origin_dir, path):
    return open(origin_dir + path, "rb").read()


def url(e, path):
    return f"{e.base}{path}?hdnts={sign(acl='/audio/*')}"


def test_private_bucket_signed_requests(make_edge, origin_dir, tmp_path):
    bucket = Origin(origin_dir, SLICE, sigv4=(ACCESS_KEY, SECRET, "eu-west-1"))
    try:
        secret_file = tmp_path / "secret"
        secret_file.write_text(SECRET + "\n")
        e = make_edge(origins=[bucket.url], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                      origin_options={"auth": "s3-sigv4", "access_key_id": ACCESS_KEY,
                                      "secret_access_key_file": str(secret_file), "region": "eu-west-1"}, admin={})
        path = "/audio/p1/160/000.bin"
        status, h, body, _ = curl(url(e, path))
        assert status == 200 and body == data(origin_dir, path), (status, bucket.refused)
        assert bucket.refused == []
        assert len(bucket.requests_for(path)) == 4   # 4 slices, each signed
        for _, rng, headers, _ in bucket.requests_for(path):
            assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
            assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
        status, _, body, _ = curl(url(e, path), "-r", "100000-150000")
        assert status == 206 and body == data(origin_dir, path)[100000:150001]
        assert SECRET not in e.errors() and SECRET not in open(e.conf).read()
    finally:
        bucket.close()


def test_wrong_secret_is_a_502_never_cached(make_edge, origin_dir, tmp_path):
    bucket = Origin(origin_dir, SLICE, sigv4=(ACCESS_KEY, SECRET, "eu-west-1"))
    try:
        options = {"auth": "s3-sigv4", "access_key_id": ACCESS_KEY, "secret_access_key": "not-the-secret",
                   "region": "eu-west-1"}
        e = make_edge(origins=[bucket.url], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                      origin_options=options, admin={})
        path = "/audio/p2/160/000.bin"
        assert curl(url(e, path))[0] == 502
        assert curl(url(e, path))[0] == 502, "the 403 was not cached: the origin is asked again"
        assert {why for _, why in bucket.refused} == {"SignatureDoesNotMatch"}
        assert len(bucket.refused) >= 2
        assert e.admin("GET", "/admin/cache?prefix=/audio/p2/")[1]["objects"] == []
        # The right secret, by reload: the same edge now reads the bucket, bytes identical.
        conf = open(e.conf).read().replace('"not-the-secret"', f'"{SECRET}"')
        open(e.conf, "w").write(conf)
        status, out = e.admin("POST", "/admin/reload")
        assert status == 200 and out["applied"] == ["origin.auth"], out
        status, _, body, _ = curl(url(e, path))
        assert status == 200 and body == data(origin_dir, path)
        assert "not-the-secret" not in e.errors()
    finally:
        bucket.close()


def test_unsigned_request_to_a_private_bucket_is_refused(make_edge, origin_dir, tmp_path):
    """The control: without origin.auth the same bucket refuses the edge (the check is real)."""
    bucket = Origin(origin_dir, SLICE, sigv4=(ACCESS_KEY, SECRET, "eu-west-1"))
    try:
        e = make_edge(origins=[bucket.url], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE})
        assert curl(url(e, "/audio/p3/160/000.bin"))[0] == 502
        assert {why for _, why in bucket.refused} == {"no SigV4 Authorization"}
    finally:
        bucket.close()


HOSTS = "/etc/hosts"


@pytest.fixture
def hosts_entry():
    """Adds lines to /etc/hosts for the test (root, as CI runs), and takes them out again."""
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("/etc/hosts is not writable here (the test needs root to name an origin)")
    original = open(HOSTS).read()
    marker = f"# edge-e2e {os.getpid()}"

    def put(address, name, *more):
        """`name` at `address` (and at each of `more`), replacing what the test put before."""
        lines = [l for l in open(HOSTS).read().splitlines() if not l.endswith(marker)]
        open(HOSTS, "w").write("\n".join(lines + [f"{a} {name} {marker}" for a in (address, *more)]) + "\n")
    yield put
    open(HOSTS, "w").write(original)


def test_origin_named_localhost(make_edge, origin_dir, tmp_path):
    """Whatever localhost resolves to here (127.0.0.1, and ::1 on some machines, where a refused
    address hands over to the next), every fetch succeeds and the Host header carries the name."""
    o = Origin(origin_dir, SLICE)
    try:
        e = make_edge(origins=[f"http://localhost:{o.port}"], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE})
        assert "localhost resolves to" in e.errors(0.1)
        for path in FILES:
            status, _, body, _ = curl(url(e, path))
            assert status == 200 and body == data(origin_dir, path), path
        assert all(h["host"] == f"localhost:{o.port}" for _, _, h, _ in o.log)
    finally:
        o.close()


def test_origin_named_in_hosts_file_and_moved_at_reload(make_edge, origin_dir, tmp_path, hosts_entry):
    name = f"origin-{os.getpid()}.edge-test.internal"
    first = Origin(origin_dir, SLICE, host="127.0.0.2")
    second = Origin(origin_dir, SLICE, host="127.0.0.3", port=first.port)   # same port, another address
    try:
        hosts_entry("127.0.0.2", name)
        e = make_edge(origins=[f"http://{name}:{first.port}/"], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                      admin={})
        assert f"{name} resolves to 127.0.0.2" in e.errors(0.1)
        p1, p2 = "/audio/p1/160/000.bin", "/audio/p2/160/000.bin"
        assert curl(url(e, p1))[0] == 200
        assert first.requests_for(p1) and not second.log
        assert all(h["host"] == f"{name}:{first.port}" for _, _, h, _ in first.log)
        hosts_entry("127.0.0.3", name)
        status, out = e.admin("POST", "/admin/reload")
        assert status == 200, out
        assert f"{name} resolves to 127.0.0.3" in e.errors()
        status, _, body, _ = curl(url(e, p2))
        assert status == 200 and body == data(origin_dir, p2)
        assert second.requests_for(p2) and not first.requests_for(p2), "new fetches go to the new address"
        # The name stops resolving: its last good address is kept, and that is said.
        hosts_entry("127.0.0.3", "someone-else.edge-test.internal")
        assert e.admin("POST", "/admin/reload")[0] == 200
        assert f"{name} does not resolve" in e.errors() and "keeping its last addresses 127.0.0.3" in e.errors()
        p3 = "/audio/p3/160/000.bin"
        assert curl(url(e, p3))[0] == 200 and second.requests_for(p3)
    finally:
        first.close()
        second.close()


def test_ipv6_literal_origin(make_edge, origin_dir, tmp_path):
    o = Origin(origin_dir, SLICE, host="::1")
    try:
        e = make_edge(origins=[f"http://[::1]:{o.port}"], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE})
        path = "/audio/p2/160/000.bin"
        status, _, body, _ = curl(url(e, path))
        assert status == 200 and body == data(origin_dir, path)
        assert all(h["host"] == f"[::1]:{o.port}" for _, _, h, _ in o.log)
    finally:
        o.close()


def test_a_names_addresses_fail_over(make_edge, origin_dir, tmp_path, hosts_entry):
    """A name with three addresses, the first of them dead (nothing listens on 127.0.0.2): every
    fetch succeeds on one attempt, the dead address is named once in the log, then skipped."""
    name = f"pool-{os.getpid()}.edge-test.internal"
    live = Origin(origin_dir, SLICE, host="127.0.0.3")
    other = Origin(origin_dir, SLICE, host="127.0.0.4", port=live.port)
    try:
        hosts_entry("127.0.0.2", name, "127.0.0.3", "127.0.0.4")
        e = make_edge(origins=[f"http://{name}:{live.port}"], server={"workers": 1},
                      cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE}, origin_options={"attempts_max": 1})
        # glibc orders them by RFC 6724 (longest prefix shared with 127.0.0.1 first): the dead
        # address is tried first, so the failover below is certain to happen.
        assert f"{name} resolves to 127.0.0.2, 127.0.0.3, 127.0.0.4" in e.errors(0.1)
        for path in FILES:
            status, _, body, _ = curl(url(e, path))
            assert status == 200 and body == data(origin_dir, path), path
        assert e.errors().count("no connection to 127.0.0.2; trying its next address") == 1
        assert live.log and all(h["host"] == f"{name}:{live.port}" for _, _, h, _ in live.log)
    finally:
        live.close()
        other.close()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    """A CA, a server certificate it signed for localhost, 127.0.0.1 and ::1, and a second CA that
    signed nothing (the wrong one)."""
    d = tmp_path_factory.mktemp("ca")
    for name in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", f"/CN=edge test {name}", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))
    return d


@pytest.fixture
def https_origin(origin_dir, test_ca, tmp_path, request):
    """nginx serving origin_dir over TLS 1.2 and 1.3 (or the protocols given as the fixture's
    parameter) with the test CA's certificate, logging each request's protocol and whether its
    TLS session was resumed."""
    from conftest import free_port, wait_port
    protocols = getattr(request, "param", "TLSv1.2 TLSv1.3")
    port = free_port()
    conf = tmp_path / "nginx-https.conf"
    log = tmp_path / "https-access.log"
    conf.write_text(f"""worker_processes 1; daemon on; pid {tmp_path}/nginx-https.pid; error_log {tmp_path}/nginx.err warn;
events {{ worker_connections 256; }}
http {{ default_type application/octet-stream; max_ranges 16;
  log_format tls '$request_uri $ssl_protocol $ssl_session_reused $http_host';
  access_log {log} tls;
  ssl_session_cache shared:edge:1m; ssl_session_tickets on;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {test_ca}/server.pem; ssl_certificate_key {test_ca}/server.key;
           ssl_protocols {protocols}; keepalive_requests 1; root {origin_dir}; }} }}
""")
    subprocess.check_call(["nginx", "-c", str(conf)])
    wait_port(port)

    def lines():
        time.sleep(0.2)
        return [l.split() for l in open(log).read().splitlines()] if log.exists() else []
    yield {"port": port, "lines": lines}
    try:
        os.kill(int(open(f"{tmp_path}/nginx-https.pid").read()), signal.SIGTERM)
    except OSError:
        pass


def test_https_origin_verified_with_the_test_ca(make_edge, origin_dir, test_ca, https_origin, tmp_path):
    port = https_origin["port"]
    e = make_edge(origins=[f"https://localhost:{port}/"], server={"workers": 1},
                  cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                  origin_options={"ca_file": str(test_ca / "ca.pem")})
    for path in FILES:
        status, _, body, _ = curl(url(e, path))
        assert status == 200 and body == data(origin_dir, path), path
    lines = https_origin["lines"]()
    assert len(lines) == 4 + 3 + 2   # 200000, 150000 and 100000 bytes in slices of 64 KiB
    assert {l[3] for l in lines} == {f"localhost:{port}"}, "Host (and SNI) carry the name"
    assert lines[0][1] == "TLSv1.3"
    # keepalive_requests 1 makes nginx close each connection after its request: the later
    # connections resume the pool's TLS session.
    assert "r" in [l[2] for l in lines[3:]] and lines[-1][2] == "r", lines


@pytest.mark.parametrize("https_origin", ["TLSv1.2"], indirect=True)
def test_https_origin_over_tls12_and_by_address(make_edge, origin_dir, test_ca, https_origin, tmp_path):
    """An origin that speaks TLS 1.2 only, named by its address: the certificate names 127.0.0.1
    too, and an address is checked against its IP entries."""
    e = make_edge(origins=[f"https://127.0.0.1:{https_origin['port']}"],
                  cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                  origin_options={"ca_file": str(test_ca / "ca.pem")})
    path = "/audio/p3/160/000.bin"
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)
    lines = https_origin["lines"]()
    assert {l[1] for l in lines} == {"TLSv1.2"} and {l[3] for l in lines} == {f"127.0.0.1:{https_origin['port']}"}
    assert lines[-1][2] == "r", "TLS 1.2 sessions resume too"


def test_https_origin_with_the_wrong_ca_is_refused(make_edge, origin_dir, test_ca, https_origin, tmp_path):
    e = make_edge(origins=[f"https://localhost:{https_origin['port']}"],
                  cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                  origin_options={"ca_file": str(test_ca / "other-ca.pem")}, admin={})
    path = "/audio/p2/160/000.bin"
    assert curl(url(e, path))[0] == 502
    assert f"origin https://localhost:{https_origin['port']}: certificate refused: unable to get local issuer certificate; 502" in e.errors()
    assert https_origin["lines"]() == [], "no request reached the origin"
    assert e.admin("GET", "/admin/cache?prefix=/audio/p2/")[1]["objects"] == []
    status, text = e.admin("GET", "/metrics")
    assert 'edge_origin_errors_total{kind="tls"}' in text and any(
        l.startswith('edge_origin_errors_total{kind="tls"}') and float(l.split()[-1]) >= 1 for l in text.splitlines())
    # The system store does not know the test CA either: refused the same way.
    e2 = make_edge(origins=[f"https://localhost:{https_origin['port']}"],
                   cache={"dir": str(tmp_path / "cache2"), "slice_bytes": SLICE})
    assert curl(url(e2, path))[0] == 502 and "certificate refused" in e2.errors()


def test_https_origin_insecure_skip_verify_is_explicit_and_logged(make_edge, origin_dir, https_origin, tmp_path):
    e = make_edge(origins=[f"https://localhost:{https_origin['port']}"],
                  cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                  origin_options={"insecure_skip_verify": True})
    assert "the origins' TLS certificates are NOT checked" in e.errors(0.1)
    path = "/audio/p1/160/000.bin"
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)


def test_origin_tls_settings_that_cannot_work(make_edge, tmp_path):
    bad_ca = tmp_path / "not-a-ca.pem"
    bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(RuntimeError) as refused:
        make_edge(origins=["https://localhost:1"], cache={"dir": str(tmp_path / "cache")},
                  origin_options={"ca_file": str(bad_ca)})
    assert "origin.ca_file" in str(refused.value) and "cannot load trusted certificates" in str(refused.value)


CHILD_KEY = "child-key-for-the-shield-tier-0123"


@pytest.fixture
def tier(make_edge, origin_dir, tmp_path):
    """One origin, two parent edges in front of it, two child edges asking the parents (the
    player → child → parent → origin path), each cache named for Cache-Status."""
    o = Origin(origin_dir, SLICE)
    parents = [make_edge(origins=[o.url], server={"cache_name": f"parent-{i}"},
                         cache={"dir": str(tmp_path / f"parent-{i}"), "slice_bytes": SLICE},
                         token={"child_key": CHILD_KEY}) for i in (1, 2)]
    children = [make_edge(origins=[o.url], server={"cache_name": f"child-{i}"},
                          cache={"dir": str(tmp_path / f"child-{i}"), "slice_bytes": SLICE},
                          origin_options={"parents": [p.base for p in parents], "parent_key": CHILD_KEY}, admin={})
                for i in (1, 2)]
    yield {"origin": o, "parents": parents, "children": children}
    o.close()


def test_shield_tier_one_origin_fetch_per_slice_for_200_players(tier, origin_dir):
    import threading
    import urllib.request
    o, children = tier["origin"], tier["children"]
    path = "/audio/p1/160/000.bin"
    want = data(origin_dir, path)
    token = sign(acl="/audio/*")
    results = []

    def player(child):
        try:
            with urllib.request.urlopen(f"{child.base}{path}?hdnts={token}", timeout=30) as r:
                results.append((r.status, r.read(), r.headers["cache-status"]))
        except Exception as e:   # a failed player is counted, not raised in the thread
            results.append((0, repr(e).encode(), None))
    threads = [threading.Thread(target=player, args=(children[i % 2],)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 200, {r[0] for r in results}
    assert all(r[1] == want for r in results)
    # One origin request per slice, whichever child and parent the players went through.
    ranges = sorted(rng for _, rng, _, _ in o.requests_for(path))
    assert ranges == sorted(f"bytes={i * SLICE}-{(i + 1) * SLICE - 1}" for i in range(4)), ranges
    # The parent's entry comes first (nearest the origin), then the child's.
    statuses = {r[2] for r in results}
    assert any(re.fullmatch(r"parent-[12]; (fwd=miss; stored|hit), child-[12]; fwd=miss; stored", s) for s in statuses), statuses
    # The origin saw the parent, never a player's token; the parent saw the child's key, not the token.
    assert all("hdnts" not in target and "edge-child-key" not in h for _, _, h, target in o.log)
    served = [l for p in tier["parents"] for l in p.log_lines() if l["path"] == path]
    assert served and {l["token"] for l in served} == {"child"}


def rendezvous_weight(node, key):
    """The edge's Rendezvous.weight (FNV-1a of node, 0xFF, key; then a 64-bit mix)."""
    h = 0xcbf29ce484222325
    for b in node.encode() + b"\xff" + key.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 33
    return h


def test_shield_tier_a_parent_stopped_mid_test_hands_its_objects_to_the_other(tier, origin_dir):
    children, parents = tier["children"], tier["parents"]
    objects = [f"/audio/s{i:02}/x.bin" for i in range(16)]
    write_files(origin_dir, {p: 3000 + i for i, p in enumerate(objects)})
    first = {p: max(parents, key=lambda e: rendezvous_weight(e.base, p)) for p in objects}
    # Before: each object goes through the parent rendezvous hashing picks for it.
    for path in objects[:8]:
        status, h, body, _ = curl(url(children[0], path))
        assert status == 200 and body == data(origin_dir, path)
        assert h["cache-status"].startswith("parent-%d; " % (parents.index(first[path]) + 1)), (path, h["cache-status"])
    parents[0].stop()
    moved = [p for p in objects[8:] if first[p] is parents[0]]
    assert moved, "some of the later objects belonged to the stopped parent"
    for path in objects[8:]:
        for child in children:
            status, h, body, _ = curl(url(child, path))
            assert status == 200 and body == data(origin_dir, path), (path, status)
            assert h["cache-status"].startswith("parent-2; "), (path, h["cache-status"])


def test_shield_tier_keys(tier):
    parent = tier["parents"][0]
    path = "/audio/p2/160/000.bin"
    assert curl(f"{parent.base}{path}")[0] == 403, "no token and no key: refused"
    assert curl(f"{parent.base}{path}", "-H", "edge-child-key: not-the-key-0123456789")[0] == 403
    assert sorted(l["token"] for l in parent.log_lines()) == ["child_key", "missing"]   # two workers: any order
    assert curl(f"{parent.base}{path}", "-H", f"edge-child-key: {CHILD_KEY}")[0] == 200


def test_names_are_resolved_again_every_interval(make_edge, origin_dir, tmp_path, hosts_entry):
    name = f"moving-{os.getpid()}.edge-test.internal"
    first = Origin(origin_dir, SLICE, host="127.0.0.2")
    second = Origin(origin_dir, SLICE, host="127.0.0.3", port=first.port)
    try:
        hosts_entry("127.0.0.2", name)
        e = make_edge(origins=[f"http://{name}:{first.port}"], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                      origin_options={"resolve_interval_seconds": 1})
        assert curl(url(e, "/audio/p1/160/000.bin"))[0] == 200 and first.log
        hosts_entry("127.0.0.3", name)   # no reload: the resolver's interval notices
        deadline = time.time() + 10
        while f"{name} resolves to 127.0.0.3" not in e.errors(0.2) and time.time() < deadline:
            pass
        assert f"{name} resolves to 127.0.0.3" in e.errors(0)
        path = "/audio/p2/160/000.bin"
        assert curl(url(e, path))[0] == 200 and second.requests_for(path) and not first.requests_for(path)
    finally:
        first.close()
        second.close()


def test_check_reports_origins_that_cannot_work(make_edge, tmp_path):
    from conftest import BIN_DIR
    e = make_edge()
    bad_ca = tmp_path / "garbage.pem"
    bad_ca.write_text("not a certificate\n")
    conf = open(e.conf).read().replace(
        'urls = ["file://', 'ca_file = "%s"\nurls = ["https://no-such-host.invalid:8443", "http://also-missing.invalid"]\n#' % bad_ca)
    conf += '\n[cache]\ndir = "%s"\n' % (tmp_path / "cache")
    path = tmp_path / "check.conf"
    path.write_text(conf)
    out = subprocess.run([f"{BIN_DIR}/edge", "--config", str(path), "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "origin.ca_file: cannot load trusted certificates" in out.stderr, out.stderr
    assert "no-such-host.invalid does not resolve" in out.stderr and "also-missing.invalid does not resolve" in out.stderr


def test_shield_tier_falls_back_to_the_origin_when_configured(make_edge, origin_dir, tmp_path):
    o = Origin(origin_dir, SLICE)
    try:
        parent = make_edge(origins=[o.url], server={"cache_name": "parent"}, token={"child_key": CHILD_KEY},
                           cache={"dir": str(tmp_path / "parent"), "slice_bytes": SLICE})
        child = make_edge(origins=[o.url], server={"cache_name": "child"},
                          cache={"dir": str(tmp_path / "child"), "slice_bytes": SLICE},
                          origin_options={"parents": [parent.base], "parent_key": CHILD_KEY, "parents_fallback": "origin"})
        p1, p2 = "/audio/p1/160/000.bin", "/audio/p2/160/000.bin"
        status, h, _, _ = curl(url(child, p1))
        assert status == 200 and h["cache-status"] == "parent; fwd=miss; stored, child; fwd=miss; stored"
        parent.stop()
        status, h, body, _ = curl(url(child, p2))
        assert status == 200 and body == data(origin_dir, p2)
        assert h["cache-status"] == "child; fwd=miss; stored", "straight from the origin: one entry"
        assert all("edge-child-key" not in hd for path, _, hd, _ in o.log if path == p2), "the origin gets no child key"
    finally:
        o.close()


def test_private_bucket_with_a_key_prefix(make_edge, origin_dir, tmp_path):
    """https://host/bucket/prefix style: the prefix is part of the signed path."""
    path = "/audio/p2/160/000.bin"
    root = tmp_path / "store"
    write_files(str(root / "bucket" / "edge"), {path: len(data(origin_dir, path))})
    bucket = Origin(str(root), SLICE, sigv4=(ACCESS_KEY, SECRET, "us-east-1"))
    try:
        e = make_edge(origins=[bucket.url + "/bucket/edge"], cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE},
                      origin_options={"auth": "s3-sigv4", "access_key_id": ACCESS_KEY, "secret_access_key": SECRET,
                                      "region": "us-east-1"})
        status, _, body, _ = curl(url(e, path))
        assert status == 200 and body == open(str(root / "bucket" / "edge") + path, "rb").read(), bucket.refused
        assert bucket.refused == [] and {p for p, _, _, _ in bucket.log} == {"/bucket/edge" + path}
    finally:
        bucket.close()
