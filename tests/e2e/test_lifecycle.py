"""Start, check, TLS negotiation and resumption, graceful shutdown."""
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import EDGE_BIN, EDGECTL_BIN, curl, sign

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_repo_config_checks(workdir, tmp_path):
    # The repo's edge.conf, with its run/ paths pointed at files that exist here (setup.sh makes them).
    text = open(os.path.join(ROOT, "edge.conf")).read()
    text = text.replace('"run/cert.pem"', f'"{workdir}/cert.pem"').replace('"run/key.pem"', f'"{workdir}/key.pem"')
    text = text.replace('"run/access.log"', f'"{tmp_path}/access.log"').replace('"file:///tmp/edge-demo/origin"', f'"file://{workdir}/origin"')
    conf = tmp_path / "edge.conf"
    conf.write_text(text)
    out = subprocess.run([EDGE_BIN, "--check", "--config", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert subprocess.run([EDGECTL_BIN, "check", os.path.join(ROOT, "edge.conf")], capture_output=True).returncode == 0


def test_check_verifies_files(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text('[server]\nlisten_tls = ["127.0.0.1:9999"]\ntls_certificate = "/nonexistent/cert.pem"\ntls_private_key = "/nonexistent/key.pem"\n'
                    'access_log = "/nonexistent/dir/a.log"\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///nonexistent/o"]\n')
    out = subprocess.run([EDGE_BIN, "--check", "--config", str(conf)], capture_output=True, text=True)
    assert out.returncode != 0
    for key in ("server.tls_certificate", "no such readable file", "origin.urls: /nonexistent/o is not a directory", "server.access_log"):
        assert key in out.stderr, out.stderr


@pytest.mark.parametrize("text,key", [
    ('[server]\nlisten = ["127.0.0.1"]\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///tmp"]\n', "server.listen"),
    ('[server]\nlisten = ["127.0.0.1:1"]\n[token]\nkey_hex = "zz"\n[origin]\nurls = ["file:///tmp"]\n', "token.key_hex"),
    ('[server]\nlisten = ["127.0.0.1:1"]\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = []\n', "origin.urls"),
    ('[server]\nlisten = ["127.0.0.1:1"]\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///tmp"]\n[limits]\nheader_timeout_milliseconds = 5\n', "limits.header_timeout_milliseconds"),
    ('[server]\nlisten = ["127.0.0.1:1"]\nworkerz = 2\n', "server.workerz"),
    ('[server\n', "line 1"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    for cmd in ([EDGE_BIN, "--check", "--config", str(conf)], [EDGECTL_BIN, "check", str(conf)], [EDGE_BIN, "--config", str(conf)]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and key in out.stderr, (cmd, out.stderr)


def test_missing_config_file_and_bad_certificate(tmp_path, workdir):
    out = subprocess.run([EDGE_BIN, "--config", str(tmp_path / "nope.conf")], capture_output=True, text=True)
    assert out.returncode != 0 and "cannot read" in out.stderr
    conf = tmp_path / "c.conf"
    conf.write_text(f'[server]\nlisten_tls = ["127.0.0.1:1"]\ntls_certificate = "{tmp_path}/missing.pem"\ntls_private_key = "{workdir}/key.pem"\n'
                    '[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///tmp"]\n')
    out = subprocess.run([EDGE_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "missing.pem" in out.stderr


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        conf = tmp_path / "c.conf"
        conf.write_text(f'[server]\nlisten = ["127.0.0.1:{port}"]\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///tmp"]\n')
        out = subprocess.run([EDGE_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and f"127.0.0.1:{port}" in out.stderr


def openssl_client(port, *args, stdin=b"Q\n"):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                          input=stdin, capture_output=True, timeout=20).stdout.decode(errors="replace")


def test_the_swift_runtime_and_nghttp2_allocate_with_mimalloc():
    # The edge links mimalloc ahead of libc (Package.swift): the Swift runtime's objects and
    # nghttp2's allocations go to it, about 1,700 fewer instructions per 4 KiB range
    # (docs/ARCHITECTURE.md). A link that lost it, or put libc's malloc first, would pass every
    # other test; the dynamic linker's own report of its symbol bindings shows which one won.
    env = dict(os.environ, LD_DEBUG="bindings", LD_BIND_NOW="1")   # every symbol bound at start
    out = subprocess.run([EDGE_BIN, "--help"], capture_output=True, text=True, env=env, timeout=60)
    bound = {}
    for line in out.stderr.splitlines():
        if "normal symbol `malloc'" in line and " to " in line:
            who = line.split("binding file ")[1].split(" ")[0]
            bound[os.path.basename(who)] = line.split(" to ")[1].split(" ")[0]
    for library in ("libswiftCore.so", "libnghttp2.so.14"):
        assert library in bound, f"no malloc binding reported for {library}: {sorted(bound)}"
        assert "libmimalloc" in bound[library], f"{library}'s malloc is {bound[library]}"


def test_alpn_negotiation(edge):
    assert "ALPN protocol: h2" in openssl_client(edge.tls_port, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in openssl_client(edge.tls_port, "-alpn", "http/1.1")
    assert "No ALPN negotiated" in openssl_client(edge.tls_port)
    status, _, _, version = curl(edge.tls_base + "/healthz", "--http2")
    assert status == 200 and version == "2"


def test_tls_versions(edge):
    assert "Protocol  : TLSv1.2" in openssl_client(edge.tls_port, "-tls1_2") or "TLSv1.2" in openssl_client(edge.tls_port, "-tls1_2")
    assert "TLSv1.3" in openssl_client(edge.tls_port, "-tls1_3")
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{edge.tls_port}", "-tls1_1"], input=b"", capture_output=True, timeout=20)
    assert "Cipher is (NONE)" in out.stdout.decode(errors="replace") or out.returncode != 0


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_session_resumption(edge, tmp_path, version):
    sess = str(tmp_path / "sess.pem")
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    first = openssl_client(edge.tls_port, version, "-sess_out", sess, "-ign_eof", stdin=req)
    assert "New," in first
    second = openssl_client(edge.tls_port, version, "-sess_in", sess, "-ign_eof", stdin=req)
    assert "Reused," in second, second[-2000:]


def test_nghttp_over_tls(edge, workdir):
    t = sign(acl="/audio/*")
    out = subprocess.run(["nghttp", "-nv", f"{edge.tls_base}/audio/t0001/96/000.bin?hdnts={t}"], capture_output=True, text=True, timeout=20).stdout
    assert ":status: 200" in out and "content-length: 120000" in out


def test_sigterm_drains_in_flight_then_exits_zero(make_edge, workdir):
    e = make_edge(limits={"drain_timeout_milliseconds": 10000})
    t = sign(acl="/audio/*")
    # A slow download is in flight when SIGTERM arrives: it completes, whole, then edge exits 0.
    result = {}

    def download():
        result["r"] = curl(f"{e.base}/audio/big/track.m4a?hdnts={t}", "--limit-rate", "1M", timeout=30)
    th = threading.Thread(target=download)
    th.start()
    time.sleep(0.7)
    e.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):   # no new connections once draining
        socket.create_connection(("127.0.0.1", e.port), timeout=1).recv(1)
    th.join()
    status, _, body, _ = result["r"]
    assert status == 200 and len(body) == 3_000_000
    assert e.proc.wait(timeout=15) == 0


def test_sigterm_sends_goaway_to_h2(make_edge):
    from test_h2_conformance import GOAWAY, NO_ERROR, Peer
    e = make_edge(limits={"drain_timeout_milliseconds": 3000})
    idle = Peer(e.port)
    assert idle.ping_roundtrip()
    busy = Peer(e.port)
    busy.request(1, "/healthz")
    assert busy.expect_response(1)
    busy.request(3, "/healthz")
    e.proc.send_signal(signal.SIGTERM)
    for peer in (idle, busy):
        goaways = [p for t, f, sid, p in peer.frames(timeout=3) if t == GOAWAY]
        assert goaways, "a draining edge tells every HTTP/2 peer GOAWAY"
        last_stream, code = struct.unpack(">II", goaways[0][:8])
        assert code == NO_ERROR
        assert last_stream in (0, 1, 3) and (peer is idle) == (last_stream == 0)
        peer.close()
    assert e.proc.wait(timeout=15) == 0


def test_second_edge_on_same_port_refused(edge, tmp_path):
    # SO_REUSEPORT would let a second process share the port silently; edge refuses instead.
    conf = tmp_path / "c.conf"
    conf.write_text(f'[server]\nlisten = ["127.0.0.1:{edge.port}"]\n[token]\nkey_hex = "00112233445566778899aabbccddeeff"\n[origin]\nurls = ["file:///tmp"]\n')
    out = subprocess.run([EDGE_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "Address already in use" in out.stderr


def test_sighup_reopens_access_log(make_edge):
    e = make_edge()
    assert curl(e.base + "/healthz")[0] == 200
    time.sleep(0.6)
    os.rename(e.log, e.log + ".1")   # logrotate's move
    e.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert e.proc.poll() is None, "SIGHUP must not stop edge"
    assert curl(e.base + "/healthz")[0] == 200
    time.sleep(0.6)
    assert os.path.exists(e.log) and '"path":"/healthz"' in open(e.log).read()
    assert "reopened" in e.errors()


def test_tls13_key_update_asked_by_the_client_is_answered_and_the_stream_goes_on(edge):
    """The edge seals its own TLS 1.3 records after the handshake; OpenSSL's answer to a client's
    key update request is sealed again under the edge's keys, and what follows uses the next key
    (openssl s_client: "K" sends a key update that asks for one back)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{edge.tls_port}", "-servername", "localhost",
                          "-tls1_3", "-msg", "-crlf"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        p.stdin.write(b"K\n")
        p.stdin.flush()
        time.sleep(0.3)
        p.stdin.write(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        p.stdin.flush()
        time.sleep(0.7)
        p.stdin.write(b"Q\n")
        p.stdin.flush()
        out = p.communicate(timeout=20)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
    assert ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" in out, out[-3000:]
    assert "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in out, "the edge's answer, opened: " + out[-3000:]
    assert "HTTP/1.1 200" in out.split("<<< TLS 1.3, Handshake [length 0005], KeyUpdate", 1)[1], out[-3000:]
