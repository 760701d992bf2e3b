"""Origin-directory files are sent from a read-only mapping on cleartext and read on TLS. A file
truncated under a response must cut that response (never a SIGBUS that kills the edge, never
wrong bytes), and the edge keeps serving."""
import os
import socket
import ssl

import pytest

from conftest import curl, sign

SIZE = 24 << 20


def slow_get(port, path, tls):
    """A GET on a connection with a small receive buffer, so the response stalls in flight."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        s = ctx.wrap_socket(s)
    s.sendall(f"GET {path}?hdnts={sign(acl='/audio/*')} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    return s


def read_some(s, n):
    got = b""
    while len(got) < n:
        b = s.recv(65536)
        if not b:
            break
        got += b
    return got


def read_to_close(s):
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def mapped(pid, path):
    with open(f"/proc/{pid}/maps") as f:
        return any(line.rstrip().endswith(path) for line in f)


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_a_file_truncated_under_a_response_cuts_it_and_the_edge_lives(make_edge, workdir, tls):
    e = make_edge()
    name = f"/audio/truncated-{'tls' if tls else 'clear'}.bin"
    path = os.path.join(workdir, "origin") + name
    data = os.urandom(SIZE)
    with open(path, "wb") as f:
        f.write(data)
    s = slow_get(e.tls_port if tls else e.port, name, tls)
    got = read_some(s, 1 << 20)
    head, sep, body = got.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200"), head[:200]
    assert f"content-length: {SIZE}".encode() in head.lower()
    # Cleartext sends from the file's mapping; TLS reads (its sealing reads the bytes in user space).
    assert mapped(e.proc.pid, path) == (not tls)
    os.truncate(path, 0)
    body += read_to_close(s)
    s.close()
    assert len(body) < SIZE, "the response was cut, not completed with bytes the file no longer has"
    assert body == data[:len(body)], "every byte sent is the file's"
    assert e.proc.poll() is None, "the edge is alive (no SIGBUS)"
    if not tls:
        # The stalled connection had mapped pieces queued when the file shrank: their send failed
        # with EFAULT, which cuts the response (and is said on the error log) instead of trapping.
        assert "their origin-directory file was truncated while they were sent" in e.errors()
    status, _, _, _ = curl(f"{e.base}/healthz")
    assert status == 200
    os.unlink(path)


def test_mapped_file_bytes_max_zero_reads_every_file(make_edge, workdir):
    e = make_edge(limits={"mapped_file_bytes_max": 0})
    name = "/audio/never-mapped.bin"
    path = os.path.join(workdir, "origin") + name
    data = os.urandom(SIZE)
    with open(path, "wb") as f:
        f.write(data)
    s = slow_get(e.port, name, False)
    got = read_some(s, 1 << 20)
    assert got.startswith(b"HTTP/1.1 200")
    assert not mapped(e.proc.pid, path)
    head_bytes = len(got.partition(b"\r\n\r\n")[0]) + 4
    got += read_some(s, head_bytes + SIZE - len(got))   # kept alive: read to the length, not to a close
    s.close()
    assert got.partition(b"\r\n\r\n")[2] == data
    os.unlink(path)

