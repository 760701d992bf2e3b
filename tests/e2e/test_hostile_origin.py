"""A misbehaving origin, case by case: whatever it sends, the edge stays up, never gives a player
wrong bytes, never persists anything wrong, and answers with a precise status and a log line.
After each fault the same object is fetched again from a healthy origin and across a restart:
what the cache kept must be exactly the origin's bytes."""
import os
import time

import pytest

from conftest import PROTOCOLS, curl
from test_cache import SLICE, cached_edge, data, origin, origin_dir, url  # noqa: F401  (fixtures)

PATH = "/audio/c1/160/000.bin"   # 200000 bytes: 4 slices


def alive(e):
    assert e.proc.poll() is None, "edge died"
    r = curl(e.base + "/healthz")
    assert r[0] == 200, (r, e.errors(), __import__("subprocess").run(["curl", "-sv", e.base + "/healthz"], capture_output=True, text=True).stderr)


def slice_files(tmp_path):
    return [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".slice")]


def fresh_fetch_is_right(e, origin, origin_dir, path=PATH):
    """Clears the fault and checks the object end to end, then again after a restart."""
    origin.faults.pop(path, None)
    for proto in ("http1", "h2c"):
        base, args = PROTOCOLS[proto](e)
        status, _, body, _ = curl(url(e, path, base), *args)
        assert status == 200 and body == data(origin_dir, path), proto
    time.sleep(0.5)   # slice files land
    assert e.stop() == 0
    e.start()
    status, h, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path) and h["cache-status"] == "edge; hit", (h, e.errors())


@pytest.mark.parametrize("claim", ["999999999999999999", "9223372036854775807", "99999999999999999999", "4294967297"])
def test_absurd_object_size_is_refused_and_never_persisted(cached_edge, origin, origin_dir, tmp_path, claim):
    e = cached_edge(origin_options={"attempts_max": 1})
    origin.faults[PATH] = f"size:{claim}"
    for args in ([], ["-r", "0-99"], ["-H", "Range: bytes=0-9,100-199,5000-"]):
        status, _, body, _ = curl(url(e, PATH), *args)
        assert status == 502, (claim, args, status)
    alive(e)
    time.sleep(0.5)
    assert slice_files(tmp_path) == [], "nothing of a refused object is stored"
    if len(claim) < 19:
        assert "object_bytes_max" in e.errors()
    assert e.stop() == 0
    e.start()   # no crash loop: nothing of it was persisted
    alive(e)
    fresh_fetch_is_right(e, origin, origin_dir)


def test_absurd_content_length_on_200_is_refused(cached_edge, origin, origin_dir):
    e = cached_edge(origin_options={"attempts_max": 1})
    origin.faults[PATH] = "size200:1000000000000000000"
    assert curl(url(e, PATH))[0] == 502
    alive(e)
    assert "object_bytes_max" in e.errors()
    fresh_fetch_is_right(e, origin, origin_dir)


def test_object_bytes_max_is_configurable(cached_edge, origin, origin_dir):
    e = cached_edge(cache={"object_bytes_max": 150_000}, origin_options={"attempts_max": 1})
    assert curl(url(e, PATH))[0] == 502                                  # 200000 > 150000
    assert curl(url(e, "/audio/c2/96/000.bin"))[0] == 200                # 120000 fits
    assert "claims 200000 bytes, over cache.object_bytes_max (150000)" in e.errors()


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_chunked_origin_is_decoded_never_stored_with_chunk_lines(cached_edge, origin, origin_dir, tmp_path, proto):
    e = cached_edge()
    origin.faults[PATH] = "chunked"
    base, args = PROTOCOLS[proto](e)
    status, _, body, _ = curl(url(e, PATH, base), *args)
    assert status == 200 and body == data(origin_dir, PATH)
    status, h, body, _ = curl(url(e, PATH, base), *args, "-r", "60000-70000")
    assert status == 206 and body == data(origin_dir, PATH)[60000:70001] and h["cache-status"] == "edge; hit"
    fresh_fetch_is_right(e, origin, origin_dir)


@pytest.mark.parametrize("fault,reason", [("chunked+cl", "both Transfer-Encoding and Content-Length"),
                                          ("gzip", "unsupported Content-Encoding gzip"),
                                          ("not-http", "bad status line"),
                                          ("huge-head", "response head too large")])
def test_unusable_responses_are_502_with_the_reason_logged(cached_edge, origin, origin_dir, tmp_path, fault, reason):
    e = cached_edge(origin_options={"attempts_max": 1})
    origin.faults[PATH] = fault
    for proto in ("http1", "h2c"):
        base, args = PROTOCOLS[proto](e)
        status, _, body, _ = curl(url(e, PATH, base), *args)
        assert status == 502, (proto, status)
    alive(e)
    assert reason in e.errors()
    assert slice_files(tmp_path) == []
    fresh_fetch_is_right(e, origin, origin_dir)


def test_early_hints_are_skipped(cached_edge, origin, origin_dir):
    e = cached_edge()
    origin.faults[PATH] = "early-hints"
    status, h, body, _ = curl(url(e, PATH))
    assert status == 200 and body == data(origin_dir, PATH) and h["cache-status"] == "edge; fwd=miss; stored"
    fresh_fetch_is_right(e, origin, origin_dir)


@pytest.mark.parametrize("fault", ["extra-bytes", "two-responses"])
def test_bytes_past_the_response_never_reach_a_player(cached_edge, origin, origin_dir, fault):
    e = cached_edge()
    origin.faults[PATH] = fault
    for proto in ("http1", "h2c"):
        base, args = PROTOCOLS[proto](e)
        status, _, body, _ = curl(url(e, PATH, base), *args)
        assert status == 200 and body == data(origin_dir, PATH), proto
    assert "bytes past the end of the response" in e.errors()
    fresh_fetch_is_right(e, origin, origin_dir)


def test_head_split_across_many_packets(cached_edge, origin, origin_dir):
    e = cached_edge()
    origin.faults[PATH] = "split-head"
    status, _, body, _ = curl(url(e, PATH))
    assert status == 200 and body == data(origin_dir, PATH)
    fresh_fetch_is_right(e, origin, origin_dir)


def test_slowloris_origin_is_cut_by_the_response_deadline(cached_edge, origin, origin_dir, tmp_path):
    # Each byte arrives well within the idle-read timeout; only the whole-response deadline stops it.
    e = cached_edge(origin_options={"attempts_max": 1, "response_timeout_milliseconds": 1500, "idle_read_timeout_milliseconds": 1000})
    origin.faults[PATH] = "slowloris"
    t0 = time.time()
    status, _, body, _ = curl(url(e, PATH, e.base), "--http1.1", "-r", "0-99", timeout=30)
    assert time.time() - t0 < 10
    # The origin sends its head at once, so the player has its 206 head; the body is then cut at the
    # deadline, never completed (it would take 10 s at one byte per 100 ms).
    assert status == 206 and len(body) < 100 and body == data(origin_dir, PATH)[:len(body)], (status, len(body))
    assert "response not complete in time" in e.errors()
    alive(e)
    time.sleep(0.3)
    assert slice_files(tmp_path) == []
    fresh_fetch_is_right(e, origin, origin_dir)


def test_lying_slice_headers_on_disk_never_stop_startup(cached_edge, origin, origin_dir, tmp_path):
    """A slice file whose header claims absurd sizes (or is garbage) is dropped and counted."""
    import struct
    e = cached_edge()
    assert curl(url(e, PATH))[0] == 200
    time.sleep(0.5)
    assert e.stop() == 0
    files = slice_files(tmp_path)
    assert len(files) == 4
    raw = open(files[0], "rb").read()
    with open(files[0], "r+b") as f:           # data length near 2^63
        f.seek(12); f.write(struct.pack("<Q", (1 << 63) - 1))
    with open(files[1], "r+b") as f:           # object size 10^18
        f.seek(20); f.write(struct.pack("<Q", 10 ** 18))
    with open(files[2], "r+b") as f:           # slice index past the object
        f.seek(28); f.write(struct.pack("<Q", 1 << 40))
    d = os.path.dirname(files[3])
    open(os.path.join(d, "0" * 32 + ".slice"), "wb").write(b"EDGESLC1" + b"\xff" * 5000)   # garbage
    open(os.path.join(d, "1" * 32 + ".slice"), "wb").write(raw[:4096] + b"\0" * (1 << 20))   # larger than a slice
    e.start()
    alive(e)
    err = e.errors()
    assert "1 slices adopted, 5 dropped" in err, err
    for why in ("data length out of range", "object size out of range", "slice index past the object"):
        assert why in err
    status, _, body, _ = curl(url(e, PATH))
    assert status == 200 and body == data(origin_dir, PATH)


def concurrent(fn, n):
    import threading
    out = [None] * n
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn(i))) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


SLOW = ["/audio/c1/160/000.bin", "/audio/c1/320/000.bin", "/audio/c2/96/000.bin", "/audio/c3/160/000.bin", "/audio/c4/160/000.bin",
        "/audio/small/one.bin"]


def test_waiting_per_worker_max_refuses_with_503(cached_edge, origin, origin_dir):
    e = cached_edge(server={"workers": 1}, limits={"waiting_per_worker_max": 2})
    for p in SLOW:
        origin.faults[p] = "slow:800"
    got = concurrent(lambda i: curl(url(e, SLOW[i])), len(SLOW))
    statuses = sorted(g[0] for g in got)
    assert statuses.count(503) >= len(SLOW) - 2 and all(s in (200, 503) for s in statuses), statuses
    for g, p in zip(got, SLOW):
        if g[0] == 200:
            assert g[2] == data(origin_dir, p)
        else:
            assert g[1].get("retry-after") == "1"
    assert "waiting_per_worker_max (2) reached" in e.errors()


def test_origin_queue_max_refuses_with_503(cached_edge, origin, origin_dir):
    e = cached_edge(server={"workers": 1}, origin_options={"connections_per_upstream_max": 1, "queue_max": 1})
    for p in SLOW:
        origin.faults[p] = "slow:500"
    got = concurrent(lambda i: curl(url(e, SLOW[i])), len(SLOW))
    statuses = sorted(g[0] for g in got)
    assert 503 in statuses and 200 in statuses, statuses
    for g, p in zip(got, SLOW):
        assert g[0] in (200, 503) and (g[0] != 200 or g[2] == data(origin_dir, p))
    assert "origin.queue_max (1) reached" in e.errors()


def test_disk_write_queue_max_keeps_slices_in_ram(cached_edge, origin, origin_dir, tmp_path):
    e = cached_edge(server={"workers": 1}, cache={"disk_writes_in_flight_max": 1, "disk_write_queue_max": 2})
    path = "/audio/pod/episode.m4a"   # 46 slices arriving back to back: writes overlap
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)
    status, h, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path) and h["cache-status"] == "edge; hit"   # from RAM
    assert "disk_write_queue_max (2) reached" in e.errors()
    time.sleep(0.5)
    assert 0 < len(slice_files(tmp_path)) < 46


def test_slices_beyond_the_writes_in_flight_wait_and_all_reach_disk(cached_edge, origin, origin_dir, tmp_path):
    """A burst of completed slices larger than disk_writes_in_flight_max is written in turn, none
    dropped: after a restart (RAM tier empty) every slice is a disk hit and the origin is not asked."""
    e = cached_edge(server={"workers": 1}, cache={"disk_writes_in_flight_max": 1})
    path = "/audio/pod/episode.m4a"
    status, _, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path)
    deadline = time.time() + 10
    while len(slice_files(tmp_path)) < 46 and time.time() < deadline:
        time.sleep(0.1)
    assert len(slice_files(tmp_path)) == 46
    assert "reached" not in e.errors()
    assert e.stop() == 0
    e.start()
    before = len(origin.requests_for(path))
    status, h, body, _ = curl(url(e, path))
    assert status == 200 and body == data(origin_dir, path) and h["cache-status"] == "edge; hit"
    assert len(origin.requests_for(path)) == before


def test_slice_file_gone_from_disk_is_fetched_again(cached_edge, origin, origin_dir, tmp_path):
    """A slice file the index lists disappears (another worker's eviction, an operator's rm): the
    response is still whole and right, the slice comes from the origin again, and later requests
    are hits, never an endless lookup loop or cut responses."""
    e = cached_edge()
    assert curl(url(e, PATH))[0] == 200
    time.sleep(0.5)
    assert e.stop() == 0
    e.start()   # RAM tier empty: every slice comes from disk
    files = slice_files(tmp_path)
    assert len(files) == 4
    before = len(origin.requests_for(PATH))
    for f in files[:2]:
        os.remove(f)
    for proto in ("http1", "h2c"):
        base, args = PROTOCOLS[proto](e)
        status, _, body, _ = curl(url(e, PATH, base), *args)
        assert status == 200 and body == data(origin_dir, PATH), proto
    alive(e)
    assert len(origin.requests_for(PATH)) - before == 2, "exactly the two missing slices fetched again"
    status, h, body, _ = curl(url(e, PATH))
    assert status == 200 and body == data(origin_dir, PATH) and h["cache-status"] == "edge; hit"
