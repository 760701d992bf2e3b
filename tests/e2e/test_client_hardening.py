"""What a hostile client can try against the front ends: HTTP/2 streams that never complete,
request fields smuggled in trailers, split cookies, whitespace in ranges on cold objects, path
parameters, downstream caching of token-authorised responses, and deep HTTP/1.1 pipelines."""
import re
import socket
import time

import pytest
from hpack import Decoder

from conftest import PROTOCOLS, curl, file_bytes, raw, read_until_close, sign
from test_cache import cached_edge, data, origin, origin_dir, url  # noqa: F401  (fixtures)
from test_h2_conformance import CANCEL, DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, Peer, frame

TOKEN_ACL = "/audio/*"


def response_headers(peer, stream, timeout=3.0):
    """The decoded response head on `stream` (or None)."""
    dec = Decoder()
    for t, f, sid, p in peer.frames(timeout):
        if t == HEADERS and sid == stream:
            return dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v) for k, v in dec.decode(p))
    return None


def test_incomplete_h2_streams_are_reset_and_released(make_edge):
    e = make_edge(limits={"h2_stream_request_timeout_milliseconds": 500})
    peers = []
    for _ in range(5):
        p = Peer(e.port)
        for sid in range(1, 40, 2):   # HEADERS without END_STREAM, then silence
            p.request(sid, "/audio/t0001/96/000.bin", flags=END_HEADERS)
        peers.append(p)
    for p in peers:
        reset = {sid for t, f, sid, payload in p.frames(timeout=3.0) if t == RST_STREAM and int.from_bytes(payload, "big") == CANCEL}
        assert reset == set(range(1, 40, 2)), sorted(reset)
    # The server is fine and serves a new connection at once.
    assert curl(e.base + "/healthz", "--http2-prior-knowledge")[0] == 200


def test_incomplete_stream_with_partial_body_is_reset_too(make_edge):
    e = make_edge(limits={"h2_stream_request_timeout_milliseconds": 500, "request_body_bytes_max": 1000})
    p = Peer(e.port)
    p.request(1, "/healthz", flags=END_HEADERS)
    p.send(frame(DATA, 0, 1, b"x" * 10))   # a body that never ends
    assert any(t == RST_STREAM and sid == 1 for t, f, sid, _ in p.frames(timeout=3.0))


def test_h2_trailers_never_become_request_fields(edge, workdir):
    token = sign(acl=TOKEN_ACL)
    path = "/audio/t0001/96/000.bin"
    # The token only in trailers: refused.
    p = Peer(edge.port)
    p.request(1, path, flags=END_HEADERS)
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, p.enc.encode([("hdnts", token), ("range", "bytes=0-9")])))
    h = response_headers(p, 1)
    assert h and h[":status"] == "403", h
    # The token in the header block and a Range only in trailers: the whole object, not the range.
    p = Peer(edge.port)
    p.request(1, f"{path}?hdnts={token}", flags=END_HEADERS)
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, p.enc.encode([("range", "bytes=0-9")])))
    h = response_headers(p, 1)
    assert h and h[":status"] == "200" and h["content-length"] == str(len(file_bytes(workdir, path))), h


def test_h2_cookie_crumbs_are_joined(edge, workdir):
    token = sign(acl=TOKEN_ACL)
    path = "/audio/t0001/96/000.bin"
    p = Peer(edge.port)
    # RFC 9113 §8.2.3: one cookie field per crumb; the token is in the second one.
    p.request(1, path, extra=[("cookie", "a=1"), ("cookie", f"hdnts={token}"), ("range", "bytes=0-9")])
    h = response_headers(p, 1)
    assert h and h[":status"] == "206", h


@pytest.mark.parametrize("spec", ["bytes= -5", "bytes=\t-5", "bytes=-5", "bytes= 199990-"])
def test_cold_and_warm_objects_read_ranges_alike(cached_edge, origin, origin_dir, spec):
    e = cached_edge()
    path = "/audio/c1/160/000.bin"
    want = data(origin_dir, path)
    cold = curl(url(e, path), "-H", f"Range: {spec}")
    warm = curl(url(e, path), "-H", f"Range: {spec}")
    for status, h, body, _ in (cold, warm):
        assert status == 206, (spec, status)
        n = 5 if "-5" in spec else 10
        assert body == want[-n:] and h["content-range"] == f"bytes {len(want) - n}-{len(want) - 1}/{len(want)}"


@pytest.mark.parametrize("target", ["/audio/..;/t0001/96/000.bin", "/audio/t0001/.;/96/000.bin", "/audio/t0001/..%3b/96/000.bin",
                                    "/audio/t0001/96/000.bin;x=1"])
def test_path_parameters_are_refused(edge, target):
    status, _, body, _ = curl(f"{edge.base}{target}?hdnts={sign(acl=TOKEN_ACL)}")
    assert status == 400, (target, status, body)


def test_token_authorised_responses_are_private_until_the_token_expires(edge, workdir):
    path = "/audio/t0001/96/000.bin"
    ttl = 300
    for how in ("query", "cookie", "header"):
        token = sign(acl=TOKEN_ACL, ttl=ttl)
        args = []
        u = f"{edge.base}{path}"
        if how == "query":
            u += f"?hdnts={token}"
        elif how == "cookie":
            args = ["-H", f"Cookie: hdnts={token}"]
        else:
            args = ["-H", f"hdnts: {token}"]
        status, h, _, _ = curl(u, *args, "-r", "0-9")
        assert status == 206, how
        m = re.fullmatch(r"private, max-age=(\d+)", h["cache-control"])
        assert m and ttl - 5 <= int(m.group(1)) <= ttl, (how, h["cache-control"])


def test_tokenless_edge_keeps_public_immutable(make_edge):
    e = make_edge(token={"required": False})
    status, h, _, _ = curl(f"{e.base}/audio/t0001/96/000.bin", "-r", "0-9")
    assert status == 206 and h["cache-control"] == "public, max-age=31536000, immutable"


def test_deep_pipeline_of_bodiless_responses_does_not_recurse(make_edge):
    # One receive of 1 MiB holds ~31,000 pipelined requests answered without a body: each once
    # completed one stack frame deeper.
    e = make_edge(limits={"recv_buffer_bytes": 1048576, "requests_per_connection_max": 10_000_000, "header_bytes_max": 1048576,
                          "output_buffer_bytes_max": 67108864})
    req = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
    n = (1 << 20) // len(req)
    got = read_until_close(e.port, req * n + b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                           timeout=30, recv_bytes=1 << 20)
    assert e.proc.poll() is None, "edge died"
    assert got.count(b"HTTP/1.1 204 ") == n and got.endswith(b"ok\n")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def test_pipelining_client_that_never_reads_is_bounded(make_edge):
    # Answers queue up to output_buffer_bytes_max, then the edge stops reading requests.
    e = make_edge(limits={"output_buffer_bytes_max": 65536, "send_timeout_milliseconds": 2000, "requests_per_connection_max": 10_000_000})
    req = b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
    before = rss_kib(e.proc.pid)
    s = socket.create_connection(("127.0.0.1", e.port), timeout=3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = 0
    try:
        for _ in range(1000):
            s.sendall(req * 1000)   # 34 MB of requests (more than the kernel buffers), ~150 MB of answers if they all queued
            sent += 1
    except OSError:
        pass   # back-pressure: the edge stopped reading
    grown = rss_kib(e.proc.pid) - before
    s.close()
    assert sent < 1000, "the edge kept reading requests whose answers nobody read"
    assert grown < 16 * 1024, f"RSS grew {grown} KiB"
    assert e.proc.poll() is None
    assert curl(e.base + "/healthz")[0] == 200
