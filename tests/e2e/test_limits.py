"""Every bound is configured and hit: connections, timeouts, slow readers, HTTP/2 stream and
header limits, requests per connection."""
import socket
import subprocess
import time

from conftest import curl, raw, sign

TRACK = "/audio/t0001/160/000.bin"


def test_connection_limit(make_edge):
    e = make_edge(server={"workers": 1}, limits={"connections_per_worker_max": 4})
    time.sleep(0.5)   # the start-up port probes are torn down
    conns = [socket.create_connection(("127.0.0.1", e.port), timeout=3) for _ in range(5)]
    time.sleep(0.3)
    answered = 0
    for s in conns:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answered += s.recv(100).startswith(b"HTTP/1.1 200")
        except (ConnectionResetError, BrokenPipeError):
            pass
    assert answered == 4, "exactly the configured number of connections is served"
    assert "connections_per_worker_max (4) reached" in e.errors()
    for s in conns:
        s.close()
    time.sleep(0.3)
    assert curl(e.base + "/healthz")[0] == 200   # slots come back once closed


def test_header_timeout_408(make_edge):
    e = make_edge(limits={"header_timeout_milliseconds": 500})
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # never finished
        t0 = time.time()
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408") and time.time() - t0 < 3
        assert s.recv(4096) == b""


def test_idle_connection_closed(make_edge):
    e = make_edge(limits={"header_timeout_milliseconds": 400, "keepalive_timeout_milliseconds": 600})
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        t0 = time.time()
        assert s.recv(10) == b""   # silent connection: closed after the header timeout
        assert time.time() - t0 < 3
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        t0 = time.time()
        assert s.recv(10) == b""   # kept alive, then closed when idle
        assert 0.3 < time.time() - t0 < 3


def test_slow_reader_is_cut_off(make_edge):
    e = make_edge(limits={"send_timeout_milliseconds": 700, "output_buffer_bytes_max": 16384, "read_chunk_bytes": 16384})
    t = sign(acl="/audio/*")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", e.port))
    s.sendall(f"GET /audio/big/track.m4a?hdnts={t} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(2.5)   # read nothing: the server's send stalls on a zero window
    s.settimeout(5)
    received = b""
    closed = False
    try:
        while True:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            received += b
    except ConnectionResetError:
        closed = True
    # A timeout here (socket.timeout) fails the test: the server must have cut the connection.
    s.close()
    assert closed
    assert received.startswith(b"HTTP/1.1 200 "), received[:100]   # the response had started
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Length: 3000000" in head
    assert 0 < len(body) < 3_000_000, "the stalled response must be cut, not completed"
    assert curl(e.base + "/healthz")[0] == 200


def test_requests_per_connection(make_edge):
    e = make_edge(limits={"requests_per_connection_max": 2})
    out = raw(e.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert out.count(b"HTTP/1.1 200") == 2 and out.count(b"Connection: close") == 1


def test_h2_settings_advertise_limits(make_edge):
    e = make_edge(limits={"h2_concurrent_streams_max": 7, "h2_header_list_bytes_max": 4096})
    out = subprocess.run(["nghttp", "-nv", e.base + "/healthz"], capture_output=True, text=True, timeout=20).stdout
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7" in out
    assert "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):4096" in out


def test_h2_streams_over_limit_refused_connection_survives(make_edge):
    e = make_edge(limits={"h2_concurrent_streams_max": 4})
    t = sign(acl="/audio/*")
    # h2load opens 32 streams before it has seen the SETTINGS: the excess is refused (RST_STREAM
    # REFUSED_STREAM, RFC 9113 §5.1.2), the rest is served, and nothing else breaks.
    out = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "32", "-H", "Range: bytes=0-99", f"{e.base}{TRACK}?hdnts={t}"],
                         capture_output=True, text=True, timeout=60).stdout
    import re
    done = re.search(r"(\d+) succeeded, (\d+) failed", out)
    assert int(done.group(1)) >= 100 and int(done.group(1)) + int(done.group(2)) == 400, out
    assert " 0 4xx, 0 5xx" in out, out
    # Within the limit, everything is served.
    out = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "4", "-H", "Range: bytes=0-99", f"{e.base}{TRACK}?hdnts={t}"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "400 succeeded" in out, out


def test_h2_header_list_too_large_431(make_edge):
    e = make_edge(limits={"h2_header_list_bytes_max": 1024})
    status, _, _, _ = curl(e.base + "/healthz", "--http2-prior-knowledge", "-H", "X-Big: " + "v" * 2000)
    assert status == 431
    assert curl(e.base + "/healthz", "--http2-prior-knowledge")[0] == 200


def test_h2_request_body_refused(edge):
    status, _, _, _ = curl(edge.base + "/healthz", "--http2-prior-knowledge", "--data-binary", "x" * 100, "-X", "GET")
    assert status == 413


def test_no_descriptor_leak_after_resets(make_edge):
    import os
    import struct
    e = make_edge(server={"workers": 1})
    time.sleep(0.3)
    fds = lambda: len(os.listdir(f"/proc/{e.proc.pid}/fd"))
    before = fds()
    t = sign(acl="/audio/*")
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", e.port), timeout=3)
        if i % 2:
            s.sendall(f"GET /audio/big/track.m4a?hdnts={t} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
        s.close()
    time.sleep(1.0)
    assert fds() <= before + 2, (before, fds())
    assert curl(e.base + "/healthz")[0] == 200
