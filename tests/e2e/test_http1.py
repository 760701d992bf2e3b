"""HTTP/1.1 strictness over raw sockets (RFC 9112): framing attacks, limits, pipelining."""
import socket
import time

import pytest

from conftest import FILES, file_bytes, raw, sign

TRACK = "/audio/t0001/160/000.bin"


def status_of(out):
    return int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    (b"GET ftp://x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
])
def test_rejects_with_status_and_closes(edge, request_bytes, status):
    out = raw(edge.port, request_bytes)
    assert status_of(out) == status, out[:80]
    head = out.partition(b"\r\n\r\n")[0]
    assert b"connection: close" in head.lower()
    assert b"content-type: text/plain" in head.lower()


def test_uri_too_long_414(edge):
    out = raw(edge.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(out) == 414


def test_header_section_too_large_431(edge):
    out = raw(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 17000 + b"\r\n\r\n")
    assert status_of(out) == 431


def test_too_many_headers_431(edge):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(70))
    out = raw(edge.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status_of(out) == 431


def test_absolute_form_uses_its_path(edge):
    out = raw(edge.port, b"GET http://elsewhere.example/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(out) == 200 and out.endswith(b"ok\n")


def test_pipelining_in_order(edge, workdir):
    t = sign(acl="/audio/*")
    reqs = b"".join(f"GET {TRACK}?hdnts={t} HTTP/1.1\r\nHost: x\r\nRange: bytes={i * 10}-{i * 10 + 9}\r\n\r\n".encode() for i in range(5))
    reqs += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(edge.port, reqs)
    data = file_bytes(workdir, TRACK)
    rest = out
    for i in range(5):
        head, _, rest = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206")
        assert f"content-range: bytes {i * 10}-{i * 10 + 9}/".encode() in head.lower()
        assert rest[:10] == data[i * 10:i * 10 + 10]
        rest = rest[10:]
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"ok\n")


def test_keepalive_and_http10(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"ok\n"):
                got += s.recv(4096)
            assert got.startswith(b"HTTP/1.1 200")
    out = raw(edge.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status_of(out) == 200 and b"Connection: close" in out   # 1.0 without keep-alive: closed
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        got = s.recv(4096)
        assert b"Connection: keep-alive" in got
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_request_bytes_split_across_packets(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            s.sendall(bytes([b]))
            time.sleep(0.001)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok\n")


def test_server_survives_garbage(edge):
    import random
    rnd = random.Random(7)
    for _ in range(50):
        raw(edge.port, bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))), timeout=0.5)
    assert status_of(raw(edge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200
