"""The operators' API on its own listener: bearer token, precise 400s, purge, pre-warm with pins,
the cache listing, Prometheus metrics (parsed by prometheus_client's text parser), reload."""
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_TOKEN, KEY_HEX, TRANSITION_KEY_HEX, curl, sign, write_files
from fault_origin import Origin

SLICE = 65536
FILES = {"/audio/a1/160.opus": 200_000, "/audio/a1/320.opus": 400_000, "/audio/a2/160.opus": 150_000,
         "/audio/other/x.bin": 300_000, "/audio/p/one.bin": 70_000}
NEW_KEY_HEX = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd"


@pytest.fixture(scope="module")
def origin_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("admin-origin"))
    write_files(d, FILES)
    return d


@pytest.fixture
def origin(origin_dir):
    o = Origin(origin_dir, SLICE)
    yield o
    o.close()


@pytest.fixture
def admin_edge(make_edge, origin, tmp_path):
    def start(cache=None, admin=None, **kw):
        cache = {"dir": str(tmp_path / "cache"), "slice_bytes": SLICE, "pinned_bytes_max": 4 << 20,
                 "disk_bytes_limit": 16 << 20, **(cache or {})}
        return make_edge(origins=[origin.url], cache=cache, admin=admin or {}, **kw)
    return start


def get(e, path, key=KEY_HEX):
    return curl(f"{e.base}{path}?hdnts={sign(acl='/audio/*', key=key)}")


def metrics(e):
    status, text = e.admin("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families


def sample(families, name, **labels):
    """The value of one sample (by its full name, e.g. edge_requests_total) with these labels."""
    for f in families.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def wait_job(e, job_id, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        status, j = e.admin("GET", f"/admin/prewarm/{job_id}")
        assert status == 200
        if j["state"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {j}")


def test_token_required_everywhere_but_health(admin_edge):
    e = admin_edge()
    for method, path in [("GET", "/metrics"), ("GET", "/admin/cache"), ("POST", "/admin/purge"),
                         ("GET", "/admin/prewarm"), ("POST", "/admin/prewarm"), ("DELETE", "/admin/prewarm/x"),
                         ("POST", "/admin/reload"), ("GET", "/admin/prewarm/x")]:
        for token in (None, "wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
            status, body = e.admin(method, path, body={} if method == "POST" else None, token=token)
            assert status == 401, (method, path, token, status)
            assert "bearer" in body["error"]
    assert e.admin("GET", "/healthz", token=None) == (200, {"status": "alive"})
    assert e.admin("GET", "/readyz", token=None) == (200, {"status": "ready", "reason": "ready"})


def test_admin_is_not_on_player_ports(admin_edge):
    e = admin_edge()
    status, _, _, _ = curl(f"{e.base}/admin/cache", "-H", f"Authorization: Bearer {ADMIN_TOKEN}")
    assert status == 404
    status, _, _, _ = curl(f"{e.base}/metrics", "-H", f"Authorization: Bearer {ADMIN_TOKEN}")
    assert status == 404


@pytest.mark.parametrize("body,fragment", [
    (b"not json", "JSON object"),
    (b"[1,2]", "JSON object"),
    ({}, "exactly one of path and prefix"),
    ({"path": "/audio/a1/160.opus", "prefix": "/audio/"}, "exactly one of path and prefix"),
    ({"path": 7}, "path: must be a string"),
    ({"path": "/audio/../etc/passwd"}, "path:"),
    ({"path": "/elsewhere/x"}, "path: /elsewhere/x is not under /audio/"),
    ({"prefix": "audio/"}, "prefix: must start with /audio/"),
    ({"paths": ["/audio/x"]}, 'unknown field "paths"'),
])
def test_purge_400s_name_the_field(admin_edge, body, fragment):
    e = admin_edge()
    status, out = e.admin("POST", "/admin/purge", body=body)
    assert status == 400 and fragment in out["error"], out


@pytest.mark.parametrize("body,fragment", [
    ({}, "exactly one of paths and tracks"),
    ({"paths": []}, "paths: must not be empty"),
    ({"paths": "/audio/a1/160.opus"}, "paths: must be an array of strings"),
    ({"paths": ["/audio/a1/160.opus"], "tracks": ["a1"]}, "exactly one of paths and tracks"),
    ({"tracks": ["bad id!"]}, "tracks:"),
    ({"paths": ["/audio/a1/160.opus"], "bitrates": [160]}, "bitrates: only with tracks"),
    ({"tracks": ["a1"], "bitrates": [0]}, "bitrates:"),
    ({"paths": ["/audio/a1/160.opus"], "pin_until": "tomorrow"}, "pin_until: tomorrow is not an RFC 3339 time"),
    ({"paths": ["/audio/a1/160.opus"], "pin_until": "2001-01-01T00:00:00Z"}, "pin_until: 2001-01-01T00:00:00Z is in the past"),
    ({"paths": ["/audio/a1/160.opus"], "origin_concurrency": 0}, "origin_concurrency: must be in 1...64"),
    ({"paths": ["/audio/a1/160.opus"], "origin_concurrency": True}, "origin_concurrency: must be an integer"),
    ({"paths": ["/audio/a1/160.opus"], "origin_bytes_per_second": 10}, "origin_bytes_per_second: must be at least 1024"),
    ({"paths": ["/audio/a1/160.opus"], "speed": 1}, 'unknown field "speed"'),
])
def test_prewarm_400s_name_the_field(admin_edge, body, fragment):
    e = admin_edge()
    status, out = e.admin("POST", "/admin/prewarm", body=body)
    assert status == 400 and fragment in out["error"], out


def test_unknown_job_and_bad_listing_arguments(admin_edge):
    e = admin_edge()
    assert e.admin("GET", "/admin/prewarm/pw-nope")[0] == 404
    assert e.admin("DELETE", "/admin/prewarm/pw-nope")[0] == 404
    assert e.admin("GET", "/admin/cache?limit=0")[0] == 400
    assert e.admin("GET", "/admin/cache?limit=x")[0] == 400
    assert e.admin("GET", "/admin/cache?prefix=audio")[0] == 400
    status, out = e.admin("POST", "/admin/purge", body=b"{" + b" " * (5 << 20) + b"}")
    assert status == 413


def test_purge_removes_from_both_tiers_and_the_next_request_goes_to_origin(admin_edge, origin, origin_dir, tmp_path):
    e = admin_edge()
    path = "/audio/a1/160.opus"
    status, h, body, _ = get(e, path)
    assert status == 200 and h["cache-status"].startswith("edge; fwd=miss")
    assert get(e, "/audio/a2/160.opus")[0] == 200
    time.sleep(0.5)   # slice files land
    status, h, _, _ = get(e, path)
    assert h["cache-status"] == "edge; hit"
    status, listing = e.admin("GET", "/admin/cache?prefix=/audio/a1/")
    assert status == 200 and [o["path"] for o in listing["objects"]] == [path]
    o = listing["objects"][0]
    assert o["size"] == 200_000 and o["slices_total"] == 4 and o["disk_slices"] == 4 and o["disk_bytes"] == 200_000
    assert o["hits"] >= 1 and o["last_access"]
    files_before = sum(len(f) for _, _, f in os.walk(tmp_path / "cache"))
    fetched = len(origin.requests_for(path))

    status, out = e.admin("POST", "/admin/purge", body={"path": path})
    assert status == 200 and out["objects"] == 1 and out["slices"] == 4 and out["files_removed"] == 4, out
    assert sum(len(f) for _, _, f in os.walk(tmp_path / "cache")) == files_before - 4
    assert e.admin("GET", "/admin/cache?prefix=/audio/a1/")[1]["objects"] == []
    # Every request after the purge, on any worker (several connections), goes to the origin first.
    status, h, body, _ = get(e, path)
    assert status == 200 and h["cache-status"].startswith("edge; fwd=miss") and body == open(origin_dir + path, "rb").read()
    assert len(origin.requests_for(path)) == fetched + 4
    # The other object stayed.
    assert get(e, "/audio/a2/160.opus")[1]["cache-status"] == "edge; hit"
    status, out = e.admin("POST", "/admin/purge", body={"prefix": "/audio/"})
    assert status == 200 and out["objects"] == 2


def test_prewarm_paths_pins_and_then_every_slice_is_a_hit(admin_edge, origin, origin_dir):
    e = admin_edge()
    paths = ["/audio/a1/160.opus", "/audio/a1/320.opus"]
    status, out = e.admin("POST", "/admin/prewarm", body={"paths": paths, "pin_until": "2126-01-01T00:00:00Z",
                                                          "origin_concurrency": 2})
    assert status == 202 and out["id"].startswith("pw-")
    j = wait_job(e, out["id"])
    assert j["state"] == "done", j
    assert j["objects_done"] == j["objects_total"] == 2 and j["bytes_done"] == j["bytes_total"] == 600_000
    assert j["pin_until"] == "2126-01-01T00:00:00Z"
    before = {p: len(origin.requests_for(p)) for p in paths}
    assert before == {paths[0]: 4, paths[1]: 7}, "one origin request per slice"
    for p in paths:
        for r in ("0-99", "65536-131071", "150000-199999"):
            status, h, body, _ = curl(f"{e.base}{p}?hdnts={sign(acl='/audio/*')}", "-r", r)
            assert status == 206 and h["cache-status"] == "edge; hit", (p, r, h)
    assert {p: len(origin.requests_for(p)) for p in paths} == before
    listing = e.admin("GET", "/admin/cache?prefix=/audio/a1/")[1]["objects"]
    assert all(o["pinned_until"] == "2126-01-01T00:00:00Z" and o["pinned_bytes"] == o["size"] for o in listing)
    families = metrics(e)
    assert sample(families, "edge_cache_pinned_bytes") == 600_000
    assert sample(families, "edge_prewarm_jobs", state="done") == 1
    # Listed; a cancel unpins what it filled, which stays cached.
    assert [x["id"] for x in e.admin("GET", "/admin/prewarm")[1]["jobs"]] == [out["id"]]
    status, j = e.admin("DELETE", f"/admin/prewarm/{out['id']}")
    assert status == 200 and j["state"] == "cancelled"
    assert sample(metrics(e), "edge_cache_pinned_bytes") == 0
    assert get(e, paths[0])[1]["cache-status"] == "edge; hit"


def test_prewarm_reports_origin_404_and_pin_budget(admin_edge, origin):
    e = admin_edge(cache={"pinned_bytes_max": 300_000})
    status, out = e.admin("POST", "/admin/prewarm", body={"paths": ["/audio/a1/160.opus", "/audio/none/x.bin"]})
    j = wait_job(e, out["id"])
    assert j["state"] == "failed" and j["objects_done"] == 1
    assert j["failures"] == [{"path": "/audio/none/x.bin", "slice": 0, "reason": "not found at the origin (404)"}]
    status, out = e.admin("POST", "/admin/prewarm", body={"paths": ["/audio/a1/320.opus"],
                                                          "pin_until": "2126-01-01T00:00:00Z"})
    j = wait_job(e, out["id"])
    assert j["state"] == "failed" and "pin budget exceeded" in j["reason"], j
    assert j["bytes_done"] == 0


def test_metrics_count_what_the_test_did(admin_edge, origin):
    e = admin_edge()
    for _ in range(3):
        assert get(e, "/audio/a2/160.opus")[0] == 200
    assert curl(f"{e.base}/audio/a2/160.opus")[0] == 403   # no token
    expired = sign(acl="/audio/*", ttl=10, start=1000)
    assert curl(f"{e.base}/audio/a2/160.opus?hdnts={expired}")[0] == 403
    time.sleep(0.5)
    f = metrics(e)
    assert sample(f, "edge_requests_total", protocol="http/1.1", status="200") == 3
    assert sample(f, "edge_requests_total", protocol="http/1.1", status="403") == 2
    assert sample(f, "edge_token_rejections_total", reason="missing") == 1
    assert sample(f, "edge_token_rejections_total", reason="expired") == 1
    assert sample(f, "edge_response_bytes_total", protocol="http/1.1") >= 3 * 150_000
    assert sample(f, "edge_origin_requests_total") == 3   # 150000 bytes: 3 slices, fetched once
    assert sample(f, "edge_origin_bytes_total") == 150_000
    assert sample(f, "edge_cache_lookups_total", tier="origin") == 3   # slices: 3 fetched by the first request
    assert sample(f, "edge_cache_lookups_total", tier="disk") + sample(f, "edge_cache_lookups_total", tier="ram") >= 6
    assert sample(f, "edge_ttfb_seconds_count") == 5
    assert sample(f, "edge_ttfb_seconds_bucket", le="+Inf") == 5
    assert sample(f, "edge_origin_latency_seconds_count") == 3
    assert sample(f, "edge_cache_bytes", tier="disk") == 150_000
    assert sample(f, "edge_ready") == 1
    # Counters only move forward between scrapes.
    assert get(e, "/audio/a2/160.opus")[0] == 200
    time.sleep(0.3)
    assert sample(metrics(e), "edge_requests_total", protocol="http/1.1", status="200") == 4
    # The access log's ttfb_us is measured at the event: a hit is not 0 µs.
    lines = [l for l in e.log_lines() if l["status"] == 200]
    assert all(l["ttfb_us"] > 0 and l["total_us"] >= l["ttfb_us"] for l in lines), lines


def test_disk_hits_are_promoted_into_ram_after_a_restart(admin_edge, origin, origin_dir):
    """After a restart the RAM tier is empty and the disk tier is whole: the first request reads
    the slice files, the second (twice lately) reads each file once more, whole and verified, into
    RAM, and from then on the object is served from memory. The origin is never asked again."""
    e = admin_edge()
    path = "/audio/a2/160.opus"   # 150000 bytes: 3 slices
    expected = open(origin_dir + path, "rb").read()
    assert get(e, path)[2] == expected
    time.sleep(0.5)   # slice files land
    fetched = len(origin.requests_for(path))
    assert fetched == 3
    assert e.stop() == 0
    e.start()
    listing = e.admin("GET", f"/admin/cache?prefix={path}")[1]["objects"]
    assert [(o["ram_slices"], o["disk_slices"]) for o in listing] == [(0, 3)]
    for _ in range(3):
        status, h, body, _ = get(e, path)
        assert status == 200 and h["cache-status"] == "edge; hit" and body == expected
    f = metrics(e)
    assert sample(f, "edge_cache_lookups_total", tier="disk") == 6, "two requests from disk: read, then promoted"
    assert sample(f, "edge_cache_lookups_total", tier="ram") == 3, "the third from RAM"
    assert sample(f, "edge_cache_lookups_total", tier="origin") == 0
    listing = e.admin("GET", f"/admin/cache?prefix={path}")[1]["objects"]
    assert [(o["ram_slices"], o["ram_bytes"], o["disk_slices"]) for o in listing] == [(3, 150_000, 3)]
    assert len(origin.requests_for(path)) == fetched


def test_reload_swaps_keys_and_refuses_a_broken_file(admin_edge):
    e = admin_edge()
    assert get(e, "/audio/p/one.bin", key=NEW_KEY_HEX)[0] == 403
    # The new key becomes the key; the old one stays accepted as the transition key.
    text = open(e.conf).read().replace(f'key_hex = "{KEY_HEX}"', f'key_hex = "{NEW_KEY_HEX}"').replace(
        f'transition_key_hex = "{TRANSITION_KEY_HEX}"', f'transition_key_hex = "{KEY_HEX}"')
    open(e.conf, "w").write(text)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 200 and "token.key_hex" in out["applied"] and out["needs_restart"] == []
    time.sleep(0.1)
    assert get(e, "/audio/p/one.bin", key=NEW_KEY_HEX)[0] == 200
    assert get(e, "/audio/p/one.bin", key=KEY_HEX)[0] == 200
    assert get(e, "/audio/p/one.bin", key=TRANSITION_KEY_HEX)[0] == 403
    # A broken file: refused, the running configuration keeps serving.
    open(e.conf, "w").write(text.replace("[token]", "[token]\nleeway_seconds = -5"))
    status, out = e.admin("POST", "/admin/reload")
    assert status == 400 and "token.leeway_seconds" in out["error"]
    assert get(e, "/audio/p/one.bin", key=NEW_KEY_HEX)[0] == 200
    # A setting that needs a restart is named, not applied; SIGHUP does the same as the API.
    open(e.conf, "w").write(text.replace("workers = 2", "workers = 1"))
    os.kill(e.proc.pid, 1)
    time.sleep(0.5)
    assert "SIGHUP: configuration reloaded" in e.errors()
    assert "needs a restart (not applied): server.workers" in e.errors()
    assert get(e, "/audio/p/one.bin", key=NEW_KEY_HEX)[0] == 200


def test_reload_applies_origin_limits_and_cache_bounds(admin_edge, origin, origin_dir):
    """Everything but the listeners, the workers and the cache's files changes on reload: new
    misses go to the new upstream, a smaller RAM tier evicts at once, a lower header bound holds
    for new connections; what needs a restart is named."""
    e = admin_edge(cache={"ram_bytes_limit": 4 << 20})
    second = Origin(origin_dir, SLICE)
    try:
        assert get(e, "/audio/a1/160.opus")[0] == 200
        assert len(origin.requests_for("/audio/a1/160.opus")) == 4
        assert sample(metrics(e), "edge_cache_bytes", tier="ram") == 200_000
        padded = ("-H", "X-Padding: " + "a" * 2000)
        assert curl(f"{e.base}/audio/a1/160.opus?hdnts={sign(acl='/audio/*')}", *padded)[0] == 200
        text = open(e.conf).read().replace(origin.url, second.url).replace(
            f"ram_bytes_limit = {4 << 20}", f"ram_bytes_limit = {SLICE}").replace(
            "[limits]", "[limits]\nheader_bytes_max = 1024\nrequest_line_bytes_max = 1024").replace(
            "workers = 2", "workers = 3").replace(e.log, e.log + ".renamed")
        open(e.conf, "w").write(text)
        status, out = e.admin("POST", "/admin/reload")
        assert status == 200, out
        assert out["applied"] == ["server.access_log", "origin.urls", "cache.ram_bytes_limit",
                                  "limits.request_line_bytes_max", "limits.header_bytes_max"], out
        assert out["needs_restart"] == ["server.workers"], out
        assert sample(metrics(e), "edge_cache_bytes", tier="ram") <= SLICE, "the RAM tier shrank at once"
        time.sleep(0.1)
        assert get(e, "/audio/a2/160.opus")[0] == 200
        assert len(second.requests_for("/audio/a2/160.opus")) == 3 and origin.requests_for("/audio/a2/160.opus") == []
        status, headers, body, _ = curl(f"{e.base}/audio/a1/160.opus?hdnts={sign(acl='/audio/*')}")
        assert status == 200 and headers["cache-status"] == "edge; hit" and len(body) == 200_000
        assert curl(f"{e.base}/audio/a1/160.opus?hdnts={sign(acl='/audio/*')}", *padded)[0] == 431
        assert "needs a restart (not applied): server.workers" in e.errors()
        # Lines logged after the reload go to the new file (lines still buffered then, too).
        assert "/audio/a2/160.opus" in [r["path"] for r in map(json.loads, open(e.log + ".renamed"))]
        assert "/audio/a2/160.opus" not in [r["path"] for r in e.log_lines(settle=0)]
        # An access log that cannot be opened refuses the whole reload, naming the key: the RAM
        # size in the same file does not apply either (the running file reloads as unchanged).
        open(e.conf, "w").write(text.replace(e.log + ".renamed", "/nonexistent/dir/access.log").replace(
            f"ram_bytes_limit = {SLICE}", f"ram_bytes_limit = {2 * SLICE}"))
        status, out = e.admin("POST", "/admin/reload")
        assert status == 400 and "server.access_log" in out["error"] and "/nonexistent/dir" in out["error"], out
        open(e.conf, "w").write(text)
        assert e.admin("POST", "/admin/reload")[1] == {"applied": [], "needs_restart": ["server.workers"]}
    finally:
        second.close()


def make_certificate(directory, name):
    """A self-signed certificate for 127.0.0.1 named `name`: (certificate path, key path, DER)."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                           "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
                          stderr=subprocess.DEVNULL)
    return cert, key, ssl.PEM_cert_to_DER_cert(open(cert).read())


def tls_connection(e):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(socket.create_connection(("127.0.0.1", e.tls_port), timeout=10))


def tls_get(conn, path):
    """One keep-alive HTTP/1.1 request on an open TLS connection; the status."""
    conn.sendall(f"GET {path}?hdnts={sign(acl='/audio/*')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1])


def test_reload_rotates_the_tls_certificate_for_new_connections(admin_edge, workdir, tmp_path):
    """Certificate renewal without a restart: new connections get the new certificate (named anew
    in the file, or rewritten in place under the same names); a connection opened before keeps
    working; a certificate that does not load is refused and the running one keeps serving."""
    e = admin_edge()
    first = tls_connection(e)
    assert tls_get(first, "/audio/p/one.bin") == 200
    original = first.getpeercert(binary_form=True)
    cert, key, rotated = make_certificate(str(tmp_path), "rotated.example")
    text = open(e.conf).read().replace(f"{workdir}/cert.pem", cert).replace(f"{workdir}/key.pem", key)
    open(e.conf, "w").write(text)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 200 and out["applied"] == ["server.tls_certificate (files)"] and out["needs_restart"] == [], out
    time.sleep(0.1)
    with tls_connection(e) as c:
        assert c.getpeercert(binary_form=True) == rotated != original
        assert tls_get(c, "/audio/p/one.bin") == 200
    assert tls_get(first, "/audio/p/one.bin") == 200 and first.getpeercert(binary_form=True) == original
    first.close()
    # Renewed in place: same file names, new contents.
    renewed_cert, renewed_key, renewed = make_certificate(str(tmp_path), "renewed.example")
    os.replace(renewed_cert, cert)
    os.replace(renewed_key, key)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 200 and out["applied"] == ["server.tls_certificate (files)"], out
    time.sleep(0.1)
    with tls_connection(e) as c:
        assert c.getpeercert(binary_form=True) == renewed
    # Nothing changed: nothing applied (session tickets keep their keys).
    assert e.admin("POST", "/admin/reload")[1]["applied"] == []
    # A key that is not the certificate's: refused, naming the setting; the running one serves.
    other_cert, other_key, _ = make_certificate(str(tmp_path), "other.example")
    os.replace(other_key, key)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 400 and "server.tls_certificate" in out["error"], out
    with tls_connection(e) as c:
        assert c.getpeercert(binary_form=True) == renewed
        assert tls_get(c, "/audio/p/one.bin") == 200


def test_reload_under_load_fails_no_request(admin_edge):
    """h2load runs while the configuration is swapped ten times (the signing key and the transition
    key trade places; the RAM tier shrinks to one slice and grows back; origin and limits
    settings change): every request succeeds."""
    import subprocess
    import threading
    e = admin_edge()
    assert get(e, "/audio/p/one.bin")[0] == 200
    url = f"{e.base}/audio/p/one.bin?hdnts={sign(acl='/audio/*')}"
    result = {}

    def load():
        result["out"] = subprocess.run(["h2load", "-D", "6", "-c", "8", "-m", "4", "-H", "Range: bytes=0-4095", url],
                                       capture_output=True, text=True, timeout=60).stdout
    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.5)
    original = open(e.conf).read()
    swapped = original.replace(f'key_hex = "{KEY_HEX}"', "key_hex = \"@NEW@\"").replace(
        f'transition_key_hex = "{TRANSITION_KEY_HEX}"', f'transition_key_hex = "{KEY_HEX}"').replace("@NEW@", NEW_KEY_HEX)
    swapped = swapped.replace("[cache]", f"[cache]\nram_bytes_limit = {SLICE}").replace(
        "[origin]", "[origin]\nattempts_max = 3").replace(
        "[limits]", "[limits]\nkeepalive_timeout_milliseconds = 30000\nh2_concurrent_streams_max = 64")
    for i in range(10):
        open(e.conf, "w").write(swapped if i % 2 == 0 else original)
        status, out = e.admin("POST", "/admin/reload")
        assert status == 200 and out["applied"] == [
            "token.key_hex", "token.transition_key_hex", "origin.attempts_max", "cache.ram_bytes_limit",
            "limits.keepalive_timeout_milliseconds", "limits.h2_concurrent_streams_max"], out
        time.sleep(0.4)
    t.join()
    out = result["out"]
    import re
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    assert m, out
    total, done, ok, failed, errored = map(int, m.groups())
    assert done > 1000 and ok == done and failed == 0 and errored == 0, out
    assert re.search(r"status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx", out) is None
    assert re.search(rf"status codes: {done} 2xx, 0 3xx, 0 4xx, 0 5xx", out), out


def test_purge_under_load_never_serves_the_purged_version(admin_edge, origin, origin_dir):
    """Clients keep reading an object on several connections while its content changes at the
    origin and an operator purges it: every response that started after the purge returned has
    the new bytes (none comes from the purged cache, on any worker)."""
    import threading
    import urllib.request
    e = admin_edge()
    path = "/audio/other/x.bin"
    old = open(origin_dir + path, "rb").read()
    assert get(e, path)[2] == old
    url = f"{e.base}{path}?hdnts={sign(acl='/audio/*')}"
    purged_at = [None]
    results = []
    stop = threading.Event()

    def reader():
        import http.client
        while not stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=20) as r:
                    body = r.read()
            except http.client.IncompleteRead:
                # A response begun on the old version whose next slice is now the new one: cut,
                # never spliced. Allowed only for responses that started before the purge.
                body = None
            results.append((started, body))

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    new = bytes(b ^ 0xFF for b in old)   # same size, different bytes (and ETag)
    try:
        open(origin_dir + path, "wb").write(new)
        status, out = e.admin("POST", "/admin/purge", body={"path": path})
        purged_at[0] = time.monotonic()
        assert status == 200 and out["objects"] == 1
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        open(origin_dir + path, "wb").write(old)
    after = [body for started, body in results if started > purged_at[0]]
    assert len(after) > 10
    assert all(body == new for body in after), sum(body == old for body in after)
    assert any(body == old for started, body in results if started < purged_at[0])
    assert all(body in (old, new, None) for _, body in results)


def test_openapi_document_matches_the_service(admin_edge, origin):
    """docs/admin-openapi.yaml: the paths and statuses are the ones the edge serves, and every field
    of a live answer is documented (and every documented field of a job appears in one)."""
    import yaml
    from conftest import ROOT
    doc = yaml.safe_load(open(os.path.join(ROOT, "docs", "admin-openapi.yaml")))
    schemas = doc["components"]["schemas"]
    assert set(doc["paths"]) == {"/healthz", "/readyz", "/metrics", "/admin/purge", "/admin/cache", "/admin/reload",
                                 "/admin/prewarm", "/admin/prewarm/{id}", "/admin/geo"}   # /admin/geo: test_geo.py
    e = admin_edge()
    status, out = e.admin("POST", "/admin/prewarm", body={"paths": ["/audio/a1/160.opus", "/audio/none/x"],
                                                          "pin_until": "2126-01-01T00:00:00Z", "not_before": "2001-01-01T00:00:00Z"})
    assert status == 202 and set(out) == set(schemas["JobStarted"]["properties"])
    job = wait_job(e, out["id"])
    assert set(job) - {"tracks", "bitrates"} <= set(schemas["Job"]["properties"])
    assert set(schemas["Job"]["properties"]) - {"tracks", "bitrates", "eta_seconds"} <= set(job), job
    assert set(job["failures"][0]) == set(schemas["Job"]["properties"]["failures"]["items"]["properties"])
    assert set(e.admin("GET", "/admin/prewarm")[1]) == set(schemas["JobList"]["properties"])
    listing = e.admin("GET", "/admin/cache")[1]
    assert set(listing) == set(schemas["CacheListing"]["properties"])
    documented = set(schemas["CachedObject"]["properties"])
    assert set(listing["objects"][0]) <= documented and documented - {"last_access"} <= set(listing["objects"][0])
    assert set(e.admin("POST", "/admin/purge", body={"prefix": "/audio/"})[1]) == set(schemas["PurgeResult"]["properties"])
    assert set(e.admin("POST", "/admin/reload")[1]) == set(schemas["ReloadResult"]["properties"])
    assert set(e.admin("GET", "/readyz", token=None)[1]) == set(schemas["Readiness"]["properties"])
    assert set(schemas["PrewarmRequest"]["properties"]) == {
        "paths", "tracks", "bitrates", "pin_until", "not_before", "origin_concurrency", "origin_bytes_per_second"}
    # The documented statuses are produced: every one is exercised by the tests in this file.
    assert set(doc["paths"]["/admin/prewarm"]["post"]["responses"]) == {"202", "400", "401", "409", "413", "429"}
    assert set(doc["paths"]["/admin/prewarm/{id}"]["get"]["responses"]) == {"200", "401", "404"}


def test_edgectl_purge_cache_stats_reload(admin_edge, origin):
    import subprocess
    from conftest import EDGECTL_BIN, free_port
    e = admin_edge()
    assert get(e, "/audio/a2/160.opus")[0] == 200
    time.sleep(0.5)

    def ctl(*args, edges=(e.admin_base,)):
        cmd = [EDGECTL_BIN, *args, "--token", ADMIN_TOKEN]
        for b in edges:
            cmd += ["--edge", b]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    r = ctl("cache", "--prefix", "/audio/a2/")
    assert r.returncode == 0 and "/audio/a2/160.opus\t150000\t" in r.stdout, r.stdout
    r = ctl("stats", "--count", "2", "--interval", "0.5")
    assert r.returncode == 0 and "hit%" in r.stdout and e.admin_base[:28] in r.stdout, r.stdout
    r = ctl("reload")
    assert r.returncode == 0 and "reloaded; applied: nothing changed" in r.stdout, r.stdout
    r = ctl("purge", "--prefix", "/audio/a2/")
    assert r.returncode == 0 and "purged 1 objects, 3 slices, 3 files" in r.stdout, r.stdout
    assert get(e, "/audio/a2/160.opus")[1]["cache-status"].startswith("edge; fwd=miss")
    # An edge that is down, or a wrong token: exit 1, naming the edge.
    dead = f"http://127.0.0.1:{free_port()}"
    r = ctl("purge", "--path", "/audio/a2/160.opus", edges=(e.admin_base, dead))
    assert r.returncode == 1 and f"purge failed on: {dead}" in r.stdout, r.stdout
    r = subprocess.run([EDGECTL_BIN, "reload", "--edge", e.admin_base, "--token", "wrong-token-0123456789"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "401" in r.stdout, r.stdout
