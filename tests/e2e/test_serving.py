"""Serving audio: byte ranges compared with the file on disk and with nginx on the same file,
over HTTP/1.1, h2c, TLS h2 and TLS HTTP/1.1."""
import re

import pytest

from conftest import FILES, PROTOCOLS, curl, file_bytes, sign

TRACK = "/audio/t0001/160/000.bin"
SIZE = FILES[TRACK]


def signed(edge_base, path=TRACK, acl="/audio/*"):
    return f"{edge_base}{path}?hdnts={sign(acl=acl)}"


def parse_multipart(body, content_type):
    boundary = re.search(r"boundary=(\S+)", content_type).group(1).encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head, re.I)
        parts.append(((int(cr.group(1)), int(cr.group(2)), int(cr.group(3))), data[:-2] if data.endswith(b"\r\n") else data))
    return parts


# Where nginx departs from RFC 9110 and this edge does not: nginx answers a syntactically invalid
# Range with 416; RFC 9110 §14.2 (and this edge) ignore it and send the whole representation.
NGINX_DIFFERS = {"bytes=abc": (200, 416), "bytes=5-1": (200, 416)}

RANGES = ["bytes=0-65535", "bytes=100-199", "bytes=199000-", "bytes=-500", "bytes=0-0", f"bytes={SIZE - 1}-{SIZE - 1}",
          "bytes=5000-9999999", "bytes=-9999999", f"bytes={SIZE}-", "bytes=99999999-", "bytes=abc", "bytes=5-1", "items=0-1",
          "bytes=0-9,100-109,1000-1099", "bytes=1000-1099,0-9"]


@pytest.mark.parametrize("proto", sorted(PROTOCOLS))
@pytest.mark.parametrize("rng", RANGES)
def test_ranges_match_disk_and_nginx(edge, nginx, workdir, proto, rng):
    base, args = PROTOCOLS[proto](edge)
    data = file_bytes(workdir, TRACK)
    status, headers, body, _ = curl(signed(base), *args, "-H", f"Range: {rng}")
    n_status, n_headers, n_body, _ = curl(nginx + TRACK, "-H", f"Range: {rng}")
    if rng in NGINX_DIFFERS:
        assert (status, n_status) == NGINX_DIFFERS[rng]
    else:
        assert status == n_status, (rng, status, n_status)
    if status == 200:
        assert body == data
    elif status == 416:
        assert headers["content-range"] == f"bytes */{SIZE}" == n_headers["content-range"]
    elif status == 206 and "content-range" in headers:
        assert headers["content-range"] == n_headers["content-range"]
        first, last = map(int, re.match(r"bytes (\d+)-(\d+)/", headers["content-range"]).groups())
        assert body == data[first:last + 1] == n_body
        assert int(headers["content-length"]) == len(body)
    else:
        assert headers["content-type"].startswith("multipart/byteranges")
        assert int(headers["content-length"]) == len(body)
        parts = parse_multipart(body, headers["content-type"])
        assert [p[0] for p in parts] == [p[0] for p in parse_multipart(n_body, n_headers["content-type"])]
        for (first, last, total), chunk in parts:
            assert total == SIZE and chunk == data[first:last + 1]


def test_overlapping_ranges_are_coalesced(edge, workdir):
    data = file_bytes(workdir, TRACK)
    status, headers, body, _ = curl(signed(edge.base), "-H", "Range: bytes=0-99,50-149,140-300")
    assert status == 206 and headers["content-range"] == f"bytes 0-300/{SIZE}" and body == data[:301]
    # The Range DoS: many overlapping ranges never send more than the file once.
    many = "bytes=" + ",".join(f"{i}-" for i in range(16))
    status, headers, body, _ = curl(signed(edge.base), "-H", f"Range: {many}")
    assert status == 206 and body == data


def test_too_many_ranges_sends_whole(edge, workdir):
    many = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    status, _, body, _ = curl(signed(edge.base), "-H", f"Range: {many}")
    assert status == 200 and body == file_bytes(workdir, TRACK)


def test_headers_and_validators(edge):
    status, h, _, _ = curl(signed(edge.base), "-r", "0-1")
    assert status == 206
    assert h["accept-ranges"] == "bytes"
    # Authorised by a token: private, and not past the token's life (600 s here).
    m = re.fullmatch(r"private, max-age=(\d+)", h["cache-control"])
    assert m and 590 <= int(m.group(1)) <= 600, h["cache-control"]
    assert h["content-type"] == "application/octet-stream"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', h["etag"])
    assert h["last-modified"].endswith(" GMT")
    _, h2, _, _ = curl(signed(edge.base, "/audio/big/track.m4a"), "-r", "0-1")
    assert h2["content-type"] == "audio/mp4"


def test_if_range(edge, workdir):
    _, h, _, _ = curl(signed(edge.base))
    etag, lm = h["etag"], h["last-modified"]
    data = file_bytes(workdir, TRACK)
    assert curl(signed(edge.base), "-r", "0-9", "-H", f"If-Range: {etag}")[0] == 206
    assert curl(signed(edge.base), "-r", "0-9", "-H", f"If-Range: {lm}")[0] == 206
    status, _, body, _ = curl(signed(edge.base), "-r", "0-9", "-H", 'If-Range: "stale"')
    assert status == 200 and body == data
    assert curl(signed(edge.base), "-r", "0-9", "-H", f"If-Range: W/{etag}")[0] == 200


def test_conditional_get(edge):
    _, h, _, _ = curl(signed(edge.base))
    status, h304, body, _ = curl(signed(edge.base), "-H", f"If-None-Match: {h['etag']}")
    assert status == 304 and body == b"" and h304["etag"] == h["etag"]
    assert curl(signed(edge.base), "-H", 'If-None-Match: "other"')[0] == 200
    assert curl(signed(edge.base), "-H", f"If-Modified-Since: {h['last-modified']}")[0] == 304


@pytest.mark.parametrize("proto", sorted(PROTOCOLS))
def test_head_has_length_and_no_body(edge, proto):
    base, args = PROTOCOLS[proto](edge)
    status, h, _, _ = curl(signed(base), *args, "-I")
    assert status == 200 and int(h["content-length"]) == SIZE


def test_head_sends_no_body_bytes(edge):
    from conftest import raw
    token = sign(acl="/audio/*")
    req = f"HEAD {TRACK}?hdnts={token} HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(edge.port, req.encode())
    head, _, rest = out.partition(b"\r\n\r\n")
    assert f"Content-Length: {SIZE}".encode() in head
    assert rest.startswith(b"HTTP/1.1 200 OK"), rest[:40]   # the next response follows at once: no body bytes


@pytest.mark.parametrize("path,size", [("/audio/tiny/one.bin", 1), ("/audio/tiny/empty.bin", 0), ("/audio/big/track.m4a", 3_000_000)])
@pytest.mark.parametrize("proto", ["http1", "h2c", "h2"])
def test_whole_files(edge, workdir, path, size, proto):
    base, args = PROTOCOLS[proto](edge)
    status, h, body, _ = curl(signed(base, path), *args)
    assert status == 200 and len(body) == size and body == file_bytes(workdir, path)


def test_empty_file_range_unsatisfiable(edge):
    status, h, _, _ = curl(signed(edge.base, "/audio/tiny/empty.bin"), "-r", "0-0")
    assert status == 416 and h["content-range"] == "bytes */0"


def test_routes(edge):
    assert curl(edge.base + "/healthz")[0] == 200
    assert curl(signed(edge.base, "/audio/t0001/160/missing.bin"))[0] == 404
    assert curl(edge.base + "/other")[0] == 404
    status, h, _, _ = curl(signed(edge.base), "-X", "POST")
    assert status == 405 and h["allow"] == "GET, HEAD"
    assert curl(signed(edge.base, "/audio/t0001/160"))[0] == 404   # a directory is not a file


def test_many_requests_h2load(edge, workdir, tmp_path):
    urls = tmp_path / "urls.txt"
    token = sign(acl="/audio/*")
    paths = [p for p in FILES if FILES[p] > 0]
    urls.write_text("".join(f"{edge.base}{p}?hdnts={token}\n" for p in paths * 50))
    import subprocess
    out = subprocess.run(["h2load", "-i", str(urls), "-n", "2000", "-c", "8", "-m", "8", "-H", "Range: bytes=0-1023"],
                         capture_output=True, text=True, timeout=120).stdout
    assert "2000 succeeded" in out and "2000 2xx" in out, out


def test_access_log_lines(make_edge):
    e = make_edge()
    token = sign(acl="/audio/*")
    curl(f"{e.base}{TRACK}?hdnts={token}", "-r", "0-99")
    curl(f"{e.tls_base}{TRACK}?hdnts={token}", "--http2", "-r", "0-99")
    curl(f"{e.base}{TRACK}?hdnts=garbage")
    # Workers flush their own buffers: order lines by what they are, not by position.
    lines = sorted(e.log_lines(), key=lambda l: (l["status"], l["protocol"] != "http/1.1"))
    assert len(lines) == 3
    ok = lines[0]
    for k in ("time", "client", "protocol", "method", "path", "status", "bytes", "range", "ttfb_us", "total_us", "token"):
        assert k in ok
    assert ok["path"] == TRACK and ok["status"] == 206 and ok["bytes"] == 100 and ok["range"] == "bytes=0-99" and ok["token"] == "ok"
    assert ok["client"] == "127.0.0.1" and ok["protocol"] == "http/1.1"
    assert lines[1]["protocol"] == "h2" and lines[1]["bytes"] == 100
    assert lines[2]["status"] == 403 and lines[2]["token"] == "malformed"
    assert all("hdnts" not in l["path"] and token not in str(l) for l in lines)
