"""Cache and origin: a real origin (the fault-injecting one, and nginx), slices, one origin fetch
per slice however many clients wait, persistence across restarts and kill -9, faults that must
never produce wrong bytes or a bad cached slice."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import PROTOCOLS, curl, free_port, raw, read_until_close, sign, wait_port, write_files
from fault_origin import Origin

SLICE = 65536
FILES = {"/audio/c1/160/000.bin": 200_000, "/audio/c1/320/000.bin": 400_000, "/audio/c2/96/000.bin": 120_000,
         "/audio/pod/episode.m4a": 3_000_000, "/audio/c3/160/000.bin": 200_000, "/audio/c4/160/000.bin": 200_000,
         "/audio/small/one.bin": 1000}


@pytest.fixture(scope="module")
def origin_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("origin"))
    write_files(d, FILES)
    return d


def data(origin_dir, path):
    return open(origin_dir + path, "rb").read()


@pytest.fixture
def origin(origin_dir):
    o = Origin(origin_dir, SLICE)
    yield o
    o.close()


@pytest.fixture
def cached_edge(make_edge, origin, tmp_path):
    def start(**kw):
        cache = {"dir": str(tmp_path / "cache"), "slice_bytes": SLICE, **kw.pop("cache", {})}
        return make_edge(origins=kw.pop("origins", [origin.url]), cache=cache, **kw)
    return start


def url(e, path, base=None):
    return f"{base or e.base}{path}?hdnts={sign(acl='/audio/*')}"


@pytest.mark.parametrize("proto", sorted(PROTOCOLS))
def test_miss_then_hit_right_bytes(cached_edge, origin, origin_dir, proto):
    e = cached_edge()
    base, args = PROTOCOLS[proto](e)
    path = "/audio/c1/160/000.bin"
    status, h, body, _ = curl(url(e, path, base), *args)
    assert status == 200 and body == data(origin_dir, path)
    assert h["cache-status"] == "edge; fwd=miss; stored" and h["age"] == "0"
    assert len(origin.requests_for(path)) == 4   # 200000 bytes = 4 slices of 64 KiB
    status, h, body, _ = curl(url(e, path, base), *args, "-r", "70000-140000")
    assert status == 206 and body == data(origin_dir, path)[70000:140001] and h["cache-status"] == "edge; hit"
    assert len(origin.requests_for(path)) == 4


def test_origin_sees_no_token_and_no_client_headers(cached_edge, origin):
    e = cached_edge()
    curl(url(e, "/audio/c2/96/000.bin"), "-H", "Cookie: secret=1", "-H", "X-Forwarded-For: 1.2.3.4", "-H", "Connection: keep-alive, X-Hop")
    for _, rng, headers, target in origin.requests_for("/audio/c2/96/000.bin"):
        assert "?" not in target and "hdnts" not in target
        assert set(headers) == {"host", "range", "accept-encoding", "user-agent"}
        assert headers["accept-encoding"] == "identity"   # slices are stored as the representation's bytes


def test_seek_fetches_only_needed_slices(cached_edge, origin, origin_dir):
    e = cached_edge()
    path = "/audio/pod/episode.m4a"
    status, h, body, _ = curl(url(e, path), "-r", "2000000-2100000")
    assert status == 206 and body == data(origin_dir, path)[2000000:2100001]
    ranges = sorted(r[1] for r in origin.requests_for(path))
    assert ranges == [f"bytes={i * SLICE}-{(i + 1) * SLICE - 1}" for i in (30, 31, 32)]


def test_collapsing_many_clients_one_fetch_per_slice(cached_edge, origin, origin_dir):
    e = cached_edge(server={"workers": 2})
    path = "/audio/c1/320/000.bin"
    origin.faults[path] = "slow:300"   # every client arrives while the fill is in flight
    want = data(origin_dir, path)
    target = url(e, path).split(f":{e.port}")[1]
    results = []

    def client():
        out = read_until_close(e.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=20)
        results.append(out.partition(b"\r\n\r\n")[2])
    threads = [threading.Thread(target=client) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(r == want for r in results)
    reqs = origin.requests_for(path)
    assert len(reqs) == 7, [r[1] for r in reqs]   # 400000 bytes: 7 slices, each fetched once
    assert len({r[1] for r in reqs}) == 7


def test_restart_keeps_cache_warm(cached_edge, origin, origin_dir):
    e = cached_edge()
    paths = ["/audio/c1/160/000.bin", "/audio/c2/96/000.bin"]
    for p in paths:
        assert curl(url(e, p))[0] == 200
    before = len(origin.log)
    time.sleep(0.5)   # disk writes land
    assert e.stop() == 0
    e.start()
    assert "slices adopted" in e.errors()
    for p in paths:
        status, h, body, _ = curl(url(e, p))
        assert status == 200 and body == data(origin_dir, p) and h["cache-status"] == "edge; hit"
    assert len(origin.log) == before, "no origin traffic after a restart"


def test_kill9_mid_fill_and_corrupt_slice_never_served(cached_edge, origin, origin_dir, tmp_path):
    e = cached_edge()
    p1, p2 = "/audio/c3/160/000.bin", "/audio/c4/160/000.bin"
    assert curl(url(e, p1))[0] == 200
    time.sleep(0.5)
    origin.faults[p2] = "slow:2000"
    t = threading.Thread(target=lambda: curl(url(e, p2), timeout=10))
    t.start()
    time.sleep(0.5)
    e.proc.send_signal(signal.SIGKILL)   # fills of p2 in flight
    e.proc.wait()
    t.join()
    # Flip one byte of one slice file of p1 on disk: start-up must drop it.
    slices = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".slice")]
    assert slices
    with open(slices[0], "r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))
    origin.faults.pop(p2)
    e.start()
    err = e.errors()
    assert "cache: 1 slice files dropped at start-up: checksum mismatch" in err, err
    adopted, dropped = map(int, re.findall(r"(\d+) slices adopted, (\d+) dropped", err)[-1])   # this start-up's line
    assert adopted >= 1 and dropped == 1, err
    for p in (p1, p2):
        status, _, body, _ = curl(url(e, p))
        assert status == 200 and body == data(origin_dir, p)


@pytest.mark.parametrize("fault,status", [("500", 502), ("reset", 502), ("wrong-length", 502), ("404", 404)])
def test_origin_errors_answered_and_never_cached(cached_edge, origin, origin_dir, fault, status):
    e = cached_edge(origin_options={"attempts_max": 1})
    path = "/audio/c2/96/000.bin"
    origin.faults[path] = fault
    got, h, body, _ = curl(url(e, path))
    assert got == status
    origin.faults.pop(path)
    got, h, body, _ = curl(url(e, path))
    assert got == 200 and body == data(origin_dir, path) and h["cache-status"] == "edge; fwd=miss; stored"
    assert curl(e.base + "/healthz")[0] == 200   # the edge is still up


def test_die_mid_body_client_never_gets_wrong_bytes(cached_edge, origin, origin_dir):
    e = cached_edge(origin_options={"attempts_max": 1})
    path = "/audio/c1/160/000.bin"
    origin.faults[path] = "die"
    for proto in ("http1", "h2c"):
        base, args = PROTOCOLS[proto](e)
        status, h, body, _ = curl(url(e, path, base), *args)
        # Either refused before the head, or cut short: never a whole-looking wrong body.
        assert status == 502 or (status == 200 and body != data(origin_dir, path) and data(origin_dir, path).startswith(body))
    origin.faults.pop(path)
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)


def test_failover_to_next_upstream(cached_edge, origin, origin_dir):
    dead = free_port()   # nothing listens: connection refused
    e = cached_edge(origins=[f"http://127.0.0.1:{dead}", origin.url], origin_options={"attempts_max": 2, "failures_before_down": 2})
    for p in ("/audio/c1/160/000.bin", "/audio/c2/96/000.bin", "/audio/small/one.bin"):
        status, _, body, _ = curl(url(e, p))
        assert status == 200 and body == data(origin_dir, p)
    assert "marked down" in e.errors()


def test_first_byte_timeout_504(cached_edge, origin):
    e = cached_edge(origin_options={"first_byte_timeout_milliseconds": 300, "attempts_max": 1})
    origin.faults["/audio/c2/96/000.bin"] = "hang"
    t0 = time.time()
    assert curl(url(e, "/audio/c2/96/000.bin"))[0] == 504
    assert time.time() - t0 < 5


def test_changed_etag_on_one_slice_is_never_mixed(cached_edge, origin, origin_dir):
    e = cached_edge(origin_options={"attempts_max": 1})
    path = "/audio/c1/320/000.bin"
    origin.faults[path] = "etag-slice:3"
    status, h, body, _ = curl(url(e, path))
    assert body != data(origin_dir, path) or status != 200   # the response is cut, not spliced
    assert len(body) < 400_000
    origin.faults.pop(path)
    status, h, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)


def test_origin_ignoring_range(cached_edge, origin, origin_dir):
    e = cached_edge()
    path = "/audio/small/one.bin"
    origin.faults[path] = "ignore-range"
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)
    big = "/audio/c1/160/000.bin"   # larger than a slice: unusable without ranges
    origin.faults[big] = "ignore-range"
    assert curl(url(e, big), "-r", "100000-100010")[0] == 502


def test_disk_write_failure_degrades_to_serving(cached_edge, origin, origin_dir, tmp_path):
    e = cached_edge()
    import shutil
    shutil.rmtree(tmp_path / "cache" / "tmp")
    (tmp_path / "cache" / "tmp").write_text("not a directory")   # every slice write now fails
    path = "/audio/c2/96/000.bin"
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)
    time.sleep(0.6)
    assert "cache write failed" in e.errors()
    status, h, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)   # still served (RAM tier)


def test_unsatisfiable_range_on_cold_object(cached_edge, origin):
    e = cached_edge()
    status, h, _, _ = curl(url(e, "/audio/small/one.bin"), "-r", "5000-6000")
    assert status == 416 and h.get("content-range") == "bytes */1000"


def test_tiny_limits_still_correct_and_disk_bounded(cached_edge, origin, origin_dir, tmp_path):
    e = cached_edge(cache={"ram_bytes_limit": 100_000, "disk_bytes_limit": 300_000})
    for _ in range(2):
        for p in ("/audio/c1/160/000.bin", "/audio/c1/320/000.bin", "/audio/c2/96/000.bin"):
            status, _, body, _ = curl(url(e, p))
            assert status == 200 and body == data(origin_dir, p)
    time.sleep(0.6)   # evictions' unlinks land
    data_bytes = sum(os.path.getsize(os.path.join(r, f)) - 4096 for r, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".slice"))
    assert 0 < data_bytes <= 300_000


def test_nginx_as_origin(cached_edge, nginx, workdir, make_edge, tmp_path):
    e = make_edge(origins=[nginx], cache={"dir": str(tmp_path / "c2"), "slice_bytes": SLICE})
    path = "/audio/big/track.m4a"
    want = open(workdir + "/origin" + path, "rb").read()
    for rng in ("0-65535", "65000-200000", "2999000-"):
        status, _, body, _ = curl(url(e, path), "-r", rng)
        a, _, b = rng.partition("-")
        assert status == 206 and body == want[int(a):(int(b) + 1 if b else None)]
    status, _, body, _ = curl(url(e, path), "--http2-prior-knowledge")
    assert status == 200 and body == want


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_multipart_across_slices_cold_and_warm(cached_edge, origin, origin_dir, proto):
    from test_serving import parse_multipart
    e = cached_edge()
    base, args = PROTOCOLS[proto](e)
    path = "/audio/pod/episode.m4a"
    want = data(origin_dir, path)
    spec = "bytes=10-20,65530-65545,2999990-"   # three parts in three different slices
    for _ in range(2):   # cold (fills on the way), then warm
        status, h, body, _ = curl(url(e, path, base), *args, "-H", f"Range: {spec}")
        assert status == 206 and h["content-type"].startswith("multipart/byteranges")
        assert int(h["content-length"]) == len(body)
        parts = parse_multipart(body, h["content-type"])
        assert [p[0][:2] for p in parts] == [(10, 20), (65530, 65545), (2999990, 2999999)]
        for (a, b, total), chunk in parts:
            assert total == len(want) and chunk == want[a:b + 1]


def test_head_conditional_and_suffix_on_cold_objects(cached_edge, origin, origin_dir):
    e = cached_edge()
    path = "/audio/c1/160/000.bin"
    status, h, body, _ = curl(url(e, path), "-I")
    assert status == 200 and int(h["content-length"]) == 200_000 and "cache-status" in h
    status, h2, _, _ = curl(url(e, path), "-H", f"If-None-Match: {h['etag']}")
    assert status == 304 and h2["etag"] == h["etag"]
    other = "/audio/c2/96/000.bin"
    status, h3, body, _ = curl(url(e, other), "-r", "-1000")   # suffix range, object not cached yet
    assert status == 206 and body == data(origin_dir, other)[-1000:] and h3["content-range"] == "bytes 119000-119999/120000"
